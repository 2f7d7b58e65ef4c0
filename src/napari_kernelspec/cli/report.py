"""``kernelspec report``: one self-contained HTML report, plus JSON and CSV beside it."""

from __future__ import annotations

import argparse
import sys

from ._common import add_analysis_options

HELP = "write a static HTML report comparing models"
DESCRIPTION = "Write one self-contained HTML report, plus JSON and CSV beside it."


def add_parser(parser: argparse.ArgumentParser) -> None:
    from ..report.write import DEFAULT_OUT

    parser.add_argument(
        "--models",
        default="all",
        metavar="LIST|all",
        help="comma-separated model names or files; 'all' (default) is the eight seed models",
    )
    add_analysis_options(parser)
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="PATH",
        help=f"the HTML file (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="the JSON of all results (default: --out with .json)"
    )
    parser.add_argument(
        "--image",
        action="append",
        metavar="PATH",
        help="an image for the feature maps (the first) and top patches (all); repeat for "
        "more (default: scikit-image's photo of Chelsea the cat)",
    )


def run(args: argparse.Namespace) -> int:
    from ..base.errors import KernelSpecError
    from ..report import write_report

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
            images=args.image,
        )
    except OSError as exc:
        where = exc.filename or args.out
        raise KernelSpecError(
            f"cannot write {where}: {exc.strerror or exc}; pick a writable path"
        ) from None
    sys.stdout.write(f"report written to {files.html}\n(data: {files.json}, {files.csv})\n")
    return 0
