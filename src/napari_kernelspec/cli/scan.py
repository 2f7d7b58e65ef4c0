"""``kernelspec scan``: many models and checkpoints on Dask, one Parquet row per filter."""

from __future__ import annotations

import argparse
import sys

from ._common import (
    add_analysis_options,
    add_cluster_options,
    add_geometry_options,
    geometry,
    quiet_dask_logs,
    whole_number,
)

HELP = "analyse many models or checkpoints on Dask and write Parquet tables"
DESCRIPTION = (
    "Analyse every source on a Dask cluster (local worker processes, or a running scheduler) "
    "and write one Parquet row per filter (--out) and one per source (--models-out), batch "
    "by batch as the results arrive. A source that fails becomes a row with its error. "
    "Exit status: 0 all analysed, 1 some failed, 2 usage error."
)

EXIT_FAILED = 1


def add_parser(parser: argparse.ArgumentParser) -> None:
    from ..scan.run import DEFAULT_BATCH

    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="model names, weights files, folders (searched recursively), globs "
        "('runs/*/epoch_*.pth'), or @list.txt (one source per line)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="filters dataset: a folder of Parquet parts, one row per filter "
        "(e.g. filters.parquet)",
    )
    parser.add_argument(
        "--models-out",
        metavar="PATH",
        help="models dataset, one row per source with its summary, time and error (null "
        "for an analysed source; default: --out with '-models', e.g. filters-models.parquet)",
    )
    add_cluster_options(parser, "one per CPU")
    parser.add_argument("--layer", help="conv layer by module name or key (default: the first)")
    add_analysis_options(parser)
    add_geometry_options(parser)
    parser.add_argument(
        "--resume", action="store_true", help="skip the sources already in the outputs"
    )
    parser.add_argument(
        "--batch-size",
        type=whole_number("--batch-size"),
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"sources per written part file (default {DEFAULT_BATCH})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..scan.expand import expand_sources
    from ..scan.run import ScanInterrupted, run_scan
    from ..scan.worker import ScanParameters

    quiet_dask_logs()
    left_out: list[tuple[str, str]] = []
    sources = expand_sources(args.sources, left_out)
    if left_out:
        from ..base.text import printable

        shown = "; ".join(f"{printable(p, 80)} ({why})" for p, why in left_out[:10])
        more = f"; and {len(left_out) - 10} more" if len(left_out) > 10 else ""
        sys.stderr.write(f"skipped {len(left_out)} files that hold no weights: {shown}{more}\n")
    params = ScanParameters(
        weights=args.weights,
        layer=args.layer,
        method=args.method,
        threshold=args.threshold,
        min_samples=args.min_samples,
        alpha=args.alpha,
        **geometry(args),
    )
    try:
        summary = run_scan(
            sources,
            args.out,
            args.models_out,
            params=params,
            scheduler=args.scheduler,
            workers=args.workers,
            resume=args.resume,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except ScanInterrupted as exc:
        sys.stderr.write(
            f"kernelspec: interrupted; {exc.written} sources are in {exc.out}: run the same "
            "command with --resume to scan the rest\n"
        )
        return 130
    skipped = f", {summary.skipped} already there" if summary.skipped else ""
    line = (
        f"scanned {summary.analysed} of {summary.total} sources in {summary.seconds:.1f} s"
        f"{skipped}: {summary.analysed - summary.failed} analysed, {summary.failed} failed"
    )
    if summary.failed:
        line += f" (their errors are in the 'error' column of {summary.models_out})"
    sys.stdout.write(f"{line}\nfilters: {summary.out}\nmodels: {summary.models_out}\n")
    return EXIT_FAILED if summary.failed else 0
