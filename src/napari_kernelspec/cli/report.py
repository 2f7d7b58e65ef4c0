"""``kernelspec report``: one self-contained HTML report, plus JSON and CSV beside it."""

from __future__ import annotations

import argparse
import sys

from ._common import add_analysis_options, add_arch_option, add_geometry_options, geometry

HELP = "write a static HTML report comparing models"
DESCRIPTION = (
    "Write one self-contained HTML report, plus JSON and CSV beside it. Exit status: 0 all "
    "models reported, 1 some could not be analysed (a note in the report names them), 2 "
    "usage error (an unknown model name is refused before any work)."
)


def add_parser(parser: argparse.ArgumentParser) -> None:
    from ..report.write import DEFAULT_OUT

    parser.add_argument(
        "--models",
        default="all",
        metavar="LIST|all",
        help="comma-separated model names or files; 'all' (default) is the eight seed models",
    )
    add_analysis_options(parser)
    add_geometry_options(parser)
    add_arch_option(parser)
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
        "--history",
        metavar="DIR",
        help="a training history (folder of checkpoints of one model, or a list file): adds "
        "drift charts and mosaics; without --models the first and last steps are compared",
    )
    from ..report.explain import DEFAULT_SIZE, DEFAULT_STEPS

    parser.add_argument(
        "--explain",
        metavar="LAYER",
        help="add the images that maximise the first 16 filters of the first layer and of "
        "LAYER (a conv name, or middle / last) to each model's section",
    )
    parser.add_argument(
        "--explain-steps", type=int, default=DEFAULT_STEPS, metavar="N",
        help=f"Adam steps of those images (default {DEFAULT_STEPS})",
    )  # fmt: skip
    parser.add_argument(
        "--explain-size", type=int, default=DEFAULT_SIZE, metavar="PX",
        help=f"their size in pixels (default {DEFAULT_SIZE})",
    )  # fmt: skip
    parser.add_argument(
        "--image",
        action="append",
        metavar="PATH",
        help="an image for the feature maps (the first) and top patches (all); repeat for "
        "more (default: scikit-image's photo of Chelsea the cat)",
    )


def run(args: argparse.Namespace) -> int:
    from ..base.errors import KernelSpecError
    from ..base.text import printable
    from ..report import write_report

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not names:
        raise KernelSpecError("--models is empty; give model names or files, or 'all'")
    sources = None if names == ["all"] else names
    if args.history and args.models == "all":  # the default: the history's own steps
        sources = []
    try:
        files = write_report(
            sources,
            weights=args.weights,
            method=args.method,
            threshold=args.threshold,
            alpha=args.alpha,
            min_samples=args.min_samples,
            out=args.out,
            json_path=args.json,
            progress=True,
            history=args.history,
            explain=args.explain,
            explain_options={"steps": args.explain_steps, "size": args.explain_size},
            images=args.image,
            geometry={k: v for k, v in geometry(args).items() if v is not None},
            arch=args.arch,
        )
    except OSError as exc:
        where = exc.filename or args.out
        raise KernelSpecError(
            f"cannot write {printable(where)}: {exc.strerror or exc}; pick a writable path"
        ) from None
    html, data, table = (printable(p) for p in (files.html, files.json, files.csv))
    sys.stdout.write(f"report written to {html}\n(data: {data}, {table})\n")
    for failure in files.failures:  # noted in the report too; the status says it: 1
        sys.stderr.write(
            f"kernelspec: warning: {printable(failure['model'])} was left out of the report: "
            f"{printable(failure['error'])}\n"
        )
    return 1 if files.failures else 0
