"""``kernelspec analyze``: analyse one layer and print a summary (or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from ._common import add_analysis_options, add_geometry_options, geometry, write_json

if TYPE_CHECKING:
    from ..analysis import AnalysisResult
    from ..base.bank import KernelBank

HELP = "analyse the first conv layer of a model or checkpoint"
DESCRIPTION = "Analyse one layer and print a summary (or JSON)."


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a model name (see 'kernelspec models') or a file: .pth .pt .ckpt "
        ".safetensors .npy .npz",
    )
    parser.add_argument(
        "--layer", help="conv layer by module name or state-dict key (default: the first)"
    )
    add_analysis_options(parser)
    add_geometry_options(parser)
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="write the full result as JSON to PATH; '-' writes only the JSON to stdout",
    )


def _format_pairs(pairs: Sequence[tuple[int, int, float]], most: int = 20) -> str:
    if not pairs:
        return "none"
    shown = ", ".join(f"({i}, {j}, {c:+.3f})" for i, j, c in pairs[:most])
    more = f", ... ({len(pairs) - most} more)" if len(pairs) > most else ""
    return f"{len(pairs)}: {shown}{more}"


def _geometry(bank: KernelBank) -> str:
    if not bank.stride_known:
        return "stride unknown (1 assumed: the file does not record it; aliasing reads 0)"
    return f"stride {bank.stride[0]}x{bank.stride[1]}, padding {bank.padding[0]}x{bank.padding[1]}"


def print_summary(result: AnalysisResult, out: TextIO) -> None:
    """A readable summary of one analysis, in the spirit of the seed tool's console output."""
    bank = result.bank
    n, c, h, w = bank.weights.shape
    source = bank.source
    if not bank.is_trained:
        source += " (UNTRAINED: seeded random initialisation, not learned filters)"
    elif bank.source == "pretrained" and "weights" in bank.provenance:
        source += f" ({bank.provenance['weights']})"
    if "accuracy" in bank.provenance:
        source += f", held-out accuracy {bank.provenance['accuracy']:.1%}"
    lines = [
        f"model: {bank.display_name}   layer: {bank.layer}",
        f"weights: {source}",
        f"filters: {n} x {c} channels x {h}x{w}, " + _geometry(bank),
        f"method: {result.method}   threshold: {result.threshold:g}   "
        f"min samples: {result.min_samples}",
        f"clusters found: {result.n_clusters} "
        f"({int((result.labels >= 0).sum())} of {n} filters clustered)",
    ]
    lines += [f"cluster {k}: filters {members}" for k, members in enumerate(result.clusters)]
    lines.append(f"duplicates (cos >= {result.threshold:g}): {_format_pairs(result.duplicates)}")
    lines.append(f"sign pairs (cos <= -{result.threshold:g}): {_format_pairs(result.sign_pairs)}")
    out.write("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> int:
    from ..analysis import analyze
    from ..sources.loading import load_kernels

    bank = load_kernels(args.source, weights=args.weights, layer=args.layer, **geometry(args))
    result = analyze(
        bank, method=args.method, threshold=args.threshold, min_samples=args.min_samples
    )
    if args.json == "-":
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.json:
        write_json(result.to_dict(), args.json)
    print_summary(result, sys.stdout)
    if args.json:
        sys.stdout.write(f"full result written to {args.json}\n")
    return 0
