"""``kernelspec analyze``: analyse one layer and print a summary (or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from ..base.text import number, percent, printable
from ._common import add_analysis_options, add_geometry_options, geometry, write_json

if TYPE_CHECKING:
    from ..analysis import AnalysisResult
    from ..base.bank import KernelBank

HELP = "analyse the first conv layer of a model or checkpoint"
DESCRIPTION = "Analyse one layer and print a summary (or JSON)."

#: Clusters listed in the summary, and members listed per cluster (--json has them all).
MOST_CLUSTERS = 10
MOST_MEMBERS = 24


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a model name (see 'kernelspec models'), a file (.pth .pt .ckpt "
        ".safetensors .npy .npz), an http(s):// URL of a checkpoint, hf://owner/repo[/file]"
        "[@revision] or timm:MODEL[.TAG] (only the layer's bytes are fetched)",
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


def _cluster_lines(clusters: Sequence[Sequence[int]]) -> list[str]:
    """One line per cluster, the first `MOST_CLUSTERS` of them, long member lists cut."""
    lines = []
    for k, members in enumerate(clusters[:MOST_CLUSTERS]):
        shown = ", ".join(map(str, members[:MOST_MEMBERS]))
        if len(members) > MOST_MEMBERS:
            shown += f", ... ({len(members) - MOST_MEMBERS} more)"
        lines.append(f"cluster {k} ({len(members)} filters): {shown}")
    if len(clusters) > MOST_CLUSTERS:
        lines.append(f"... {len(clusters) - MOST_CLUSTERS} more clusters; --json has them all")
    return lines


def _descriptor_line(result: AnalysisResult) -> str:
    """The descriptor statistics of the report's comparison table ("n/a" where undefined)."""
    from ..report.render import summary_statistics

    s = summary_statistics(result)
    return (
        f"median peak frequency: {number(s['peak'])} c/px   "
        f"median orientation selectivity: {number(s['selectivity'], 2)}   "
        f"mean aliasing fraction: {number(s['aliasing'])}   "
        f"achromatic filters: {percent(s['achromatic'])}"
    )


def _geometry(bank: KernelBank) -> str:
    if not bank.stride_known:
        return "stride unknown (1 assumed: the file does not record it; aliasing reads 0)"
    return f"stride {bank.stride[0]}x{bank.stride[1]}, padding {bank.padding[0]}x{bank.padding[1]}"


def print_summary(result: AnalysisResult, out: TextIO) -> None:
    """A readable summary of one analysis, in the spirit of the seed tool's console output.

    Names from files (model, layer, provenance) go through `printable`; at most
    `MOST_CLUSTERS` clusters are listed.
    """
    bank = result.bank
    n, c, h, w = bank.weights.shape
    source = bank.source
    if not bank.is_trained:
        source += " (UNTRAINED: seeded random initialisation, not learned filters)"
    elif bank.source == "pretrained" and "weights" in bank.provenance:
        source += f" ({bank.provenance['weights']})"
    if "accuracy" in bank.provenance:
        source += f", held-out accuracy {percent(bank.provenance['accuracy'], 1)}"
    lines = [
        f"model: {printable(bank.display_name)}   layer: {printable(bank.layer)}",
        f"weights: {printable(source)}",
        f"filters: {n} x {c} channels x {h}x{w}, " + _geometry(bank),
        f"method: {result.method}   threshold: {_threshold(result)}   "
        f"min samples: {result.min_samples}",
        f"clusters found: {result.n_clusters} "
        f"({int((result.labels >= 0).sum())} of {n} filters clustered)",
        chance_line(result),
    ]
    lines += _cluster_lines(result.clusters)
    rt = result.redundancy_threshold
    lines.append(f"duplicates (cos >= {rt:g}): {_format_pairs(result.duplicates)}")
    lines.append(f"sign pairs (cos <= -{rt:g}): {_format_pairs(result.sign_pairs)}")
    lines.append(_descriptor_line(result))
    lines += [f"note: {note}" for note in result.notes]
    out.write("\n".join(lines) + "\n")


def _threshold(result: AnalysisResult) -> str:
    if result.threshold_rule == "auto":
        return f"{result.threshold:.3f} (auto: the null clusters at most {100 * result.alpha:g} %)"
    return f"{result.threshold:g}"


def chance_line(result: AnalysisResult) -> str:
    """``"34 % clustered; matched null: 2 %; structure p = 0.005"``
    (`analysis.summary.summary_line`), then on a line of its own the similarity 1 % of null
    pairs reach."""
    from ..analysis.summary import summary_line

    text = summary_line(result)
    if result.chance_similarity == result.chance_similarity:  # not NaN
        text += (
            f"\nnull similarity: {result.chance_similarity:.2f} reached by 1% of "
            f"{result.null_model or 'null'} null pairs"
        )
    return text


def run(args: argparse.Namespace) -> int:
    from ..analysis import analyze
    from ..sources.loading import load_kernels

    bank = load_kernels(args.source, weights=args.weights, layer=args.layer, **geometry(args))
    result = analyze(
        bank,
        method=args.method,
        threshold=args.threshold,
        min_samples=args.min_samples,
        alpha=args.alpha,
    )
    if args.json == "-":
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.json:
        write_json(result.to_dict(), args.json)
    print_summary(result, sys.stdout)
    if args.json:
        sys.stdout.write(f"full result written to {printable(args.json)}\n")
    return 0
