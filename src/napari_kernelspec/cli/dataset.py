"""``kernelspec dataset``: one layer over a dataset, as Parquet tables and an HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import add_cluster_options, add_weights_option, quiet_dask_logs, whole_number

HELP = "per-class filter statistics, top patches, embedding and neighbours over a dataset"
DESCRIPTION = (
    "Run a folder of images (one subfolder per class, or no classes) or a bundled sample "
    "through one convolution layer, in batches, and write into --out: filter_stats.parquet "
    "(fire fraction, mean, variance, class-selectivity index, preferred class per filter), "
    "filter_classes.parquet (the same per class), images.parquet (PCA / t-SNE of each "
    "image's embedding, its nearest neighbours in feature and pixel space), "
    "top_patches.parquet and report.html. Large folders run on Dask (--workers or "
    "--scheduler); an interrupted run continues with --resume."
)


def add_parser(parser: argparse.ArgumentParser) -> None:
    from ..imaging.dataset.partition import EMBEDDINGS
    from ..imaging.dataset.run import DEFAULT_NEIGHBOURS, DEFAULT_PARTITION
    from ..imaging.dataset.sources import SAMPLES
    from ..imaging.images import NORMALIZE

    parser.add_argument(
        "source", metavar="SOURCE", help="a model name (see 'kernelspec models') or weights file"
    )
    parser.add_argument(
        "folder",
        nargs="?",
        metavar="FOLDER",
        help="images: FOLDER/<class>/<image> (classes) or images directly in FOLDER (none)",
    )
    parser.add_argument("--sample", choices=SAMPLES, help="a bundled dataset instead of FOLDER")
    parser.add_argument("--layer", help="a convolution by module name (default: the first)")
    add_weights_option(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="the output folder")
    parser.add_argument(
        "--embedding",
        choices=("auto", *EMBEDDINGS),
        default="auto",
        help="per-image vector: layer = global average of the layer's maps; penultimate = "
        "the input of the model's last linear layer (default auto: penultimate for models, "
        "layer for weights files)",
    )
    parser.add_argument(
        "--normalize",
        choices=NORMALIZE,
        default="auto",
        help="auto (default): the weights' own preprocessing; none: the images as given",
    )
    parser.add_argument(
        "--k", type=whole_number("k"), default=9, help="top patches per filter (default 9)"
    )
    parser.add_argument(
        "--neighbours",
        type=whole_number("--neighbours"),
        default=DEFAULT_NEIGHBOURS,
        metavar="K",
        help=f"nearest neighbours per image (default {DEFAULT_NEIGHBOURS})",
    )
    parser.add_argument("--no-tsne", action="store_true", help="skip t-SNE (NaN coordinates)")
    parser.add_argument(
        "--batch-size",
        type=whole_number("--batch-size"),
        default=16,
        metavar="N",
        help="images per forward pass (default 16)",
    )
    parser.add_argument(
        "--partition-size",
        type=whole_number("--partition-size"),
        default=DEFAULT_PARTITION,
        metavar="N",
        help=f"images per Dask task and stored partition (default {DEFAULT_PARTITION})",
    )
    add_cluster_options(parser, "none, this process")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the partitions an interrupted run left in DIR/partitions",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import shutil

    import numpy as np

    from ..base.errors import KernelSpecError
    from ..base.text import printable
    from ..imaging.dataset.sources import open_source
    from ..report.dataset import write_dataset
    from ..scan.dataset import PARTITIONS

    if (args.folder is None) == (args.sample is None):
        raise KernelSpecError("give a FOLDER of images or --sample digits (one of them)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise KernelSpecError(f"--out {printable(str(out))} is a file; give a folder")
    source = open_source(args.folder, args.sample)
    if args.scheduler or args.workers:
        quiet_dask_logs()
    existed = out.exists()
    try:
        result = _compute(args, source, out)
    except KernelSpecError:
        _remove_if_empty(out / PARTITIONS, out if not existed else None)
        raise
    except KeyboardInterrupt:
        kept = len(list((out / PARTITIONS).glob("part-*.npz")))
        sys.stderr.write(
            f"kernelspec: interrupted; {kept} finished partitions are in "
            f"{printable(str(out / PARTITIONS))}: run the same command with --resume\n"
        )
        return 130
    write_dataset(result, out)
    shutil.rmtree(out / PARTITIONS, ignore_errors=True)  # done: nothing left to resume
    meta = result.meta
    name = f"{printable(meta['display_name'])} {printable(meta['layer'])}"
    si, _ = result.selectivity()

    def show(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else "n/a"

    lines = [
        f"{name}: {meta['n_images']} images, {len(result.classes)} classes, "
        f"{result.stats.n_filters} filters",
        f"same-class neighbours: feature space {show(meta['feature_same_class'])}, pixel "
        f"space {show(meta['pixel_same_class'])}; t-SNE {meta['neighbours']}-NN accuracy "
        f"{show(meta['tsne_knn_accuracy'])}",
        f"written to {printable(str(out))}: filter_stats.parquet, filter_classes.parquet, "
        "images.parquet, top_patches.parquet, report.html",
    ]
    if result.classes and np.isfinite(si).any():
        lines.insert(1, f"median class selectivity {float(np.nanmedian(si)):.3f}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _compute(args: argparse.Namespace, source: Any, out: Path) -> Any:
    from ..scan.dataset import compute_dataset

    return compute_dataset(
        args.source,
        source,
        out,
        args.layer,
        scheduler=args.scheduler,
        workers=args.workers,
        resume=args.resume,
        progress=not args.no_progress,
        weights=args.weights,
        embedding=args.embedding,
        k=args.k,
        neighbours=args.neighbours,
        normalize=args.normalize,
        batch_size=args.batch_size,
        partition_size=args.partition_size,
        tsne=not args.no_tsne,
    )


def _remove_if_empty(partitions: Path, out: Path | None) -> None:
    """After an error: no finished partition means nothing to resume, so leave no folder."""
    if partitions.is_dir() and not any(partitions.glob("part-*.npz")):
        for p in partitions.iterdir():
            p.unlink()
        partitions.rmdir()
    if out is not None and out.is_dir() and not any(out.iterdir()):
        out.rmdir()
