"""The ``kernelspec`` command line: ``models``, ``analyze`` and ``report``.

A user's mistake ends with exit status 2 and one line ``kernelspec: error: ...`` on stderr
that says what to do; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

from .errors import KernelSpecError

if TYPE_CHECKING:
    from .analysis import AnalysisResult
    from .bank import KernelBank

__all__ = ["main"]

PROG = "kernelspec"
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threshold must be a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"threshold {text} is outside (0, 1]; use a cosine similarity such as 0.93"
        )
    return value


def _min_samples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"min-samples must be a whole number, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"min-samples is {value}; it must be at least 1")
    return value


def _add_analysis_options(parser: argparse.ArgumentParser) -> None:
    from .analysis import DEFAULT_MIN_SAMPLES, DEFAULT_THRESHOLD
    from .loading import WEIGHTS
    from .spectra import METHODS

    parser.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="auto",
        help="auto (default): pretrained where cached or downloadable, else random with a "
        "warning; pretrained: fail if unavailable; random: the architecture's seeded init",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="response",
        help="response (default): true frequency response on a cycles/pixel axis, complete-"
        "linkage clusters; seed: the original tool's spectra and DBSCAN clusters",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=DEFAULT_THRESHOLD,
        help="similarity threshold in (0, 1] for clusters, duplicates and sign pairs "
        f"(default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--min-samples",
        type=_min_samples,
        default=DEFAULT_MIN_SAMPLES,
        help=f"smallest cluster size (default {DEFAULT_MIN_SAMPLES})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``kernelspec`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="What the first convolutional layer of a CNN has learned: kernels, "
        "frequency responses, clusters of similar filters and redundant filters.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    models = sub.add_parser("models", help="list the models that can be analysed")
    models.add_argument("--all", action="store_true", help="add every supported torchvision model")

    analyze = sub.add_parser(
        "analyze",
        help="analyse the first conv layer of a model or checkpoint",
        description="Analyse one layer and print a summary (or JSON).",
    )
    analyze.add_argument(
        "source",
        metavar="SOURCE",
        help="a model name (see 'kernelspec models') or a file: .pth .pt .ckpt "
        ".safetensors .npy .npz",
    )
    analyze.add_argument(
        "--layer", help="conv layer by module name or state-dict key (default: the first)"
    )
    _add_analysis_options(analyze)
    analyze.add_argument(
        "--json",
        metavar="PATH",
        help="write the full result as JSON to PATH; '-' writes only the JSON to stdout",
    )

    report = sub.add_parser(
        "report",
        help="write a static HTML report comparing models",
        description="Write one self-contained HTML report, plus JSON and CSV beside it.",
    )
    report.add_argument(
        "--models",
        default="all",
        metavar="LIST|all",
        help="comma-separated model names or files; 'all' (default) is the eight seed models",
    )
    _add_analysis_options(report)
    from .report.write import DEFAULT_OUT

    report.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="PATH",
        help=f"the HTML file (default {DEFAULT_OUT})",
    )
    report.add_argument(
        "--json", metavar="PATH", help="the JSON of all results (default: --out with .json)"
    )
    return parser


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


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import SEED_MODELS, available_models

    for name in available_models(include_all=args.all):
        sys.stdout.write(f"{name:<22}{SEED_MODELS.get(name, '')}".rstrip() + "\n")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from ._atomic import atomic_write
    from .analysis import analyze
    from .loading import load_kernels

    bank = load_kernels(args.source, weights=args.weights, layer=args.layer)
    result = analyze(
        bank, method=args.method, threshold=args.threshold, min_samples=args.min_samples
    )
    if args.json == "-":
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.json:
        try:
            with atomic_write(args.json, "w") as fh:
                json.dump(result.to_dict(), fh, indent=2)
        except OSError as exc:
            raise KernelSpecError(
                f"cannot write {args.json}: {exc.strerror or exc}; pick a writable path"
            ) from None
    print_summary(result, sys.stdout)
    if args.json:
        sys.stdout.write(f"full result written to {args.json}\n")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not names:
        raise KernelSpecError("--models is empty; give model names or files, or 'all'")
    sources = None if names == ["all"] else names
    try:
        files = write_report(
            sources,
            weights=args.weights,
            method=args.method,
            threshold=args.threshold,
            min_samples=args.min_samples,
            out=args.out,
            json_path=args.json,
        )
    except OSError as exc:
        where = exc.filename or args.out
        raise KernelSpecError(
            f"cannot write {where}: {exc.strerror or exc}; pick a writable path"
        ) from None
    sys.stdout.write(f"report written to {files.html}\n(data: {files.json}, {files.csv})\n")
    return 0


_COMMANDS = {"models": _cmd_models, "analyze": _cmd_analyze, "report": _cmd_report}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(f"{PROG}: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kernelspec`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(message)s", stream=sys.stderr)
    logging.getLogger("napari_kernelspec").setLevel(logging.INFO)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return _COMMANDS[args.command](args)
        except KernelSpecError as exc:
            sys.stderr.write(f"{PROG}: error: {exc}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:
            sys.stderr.write(f"{PROG}: interrupted; nothing was written\n")
            return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
