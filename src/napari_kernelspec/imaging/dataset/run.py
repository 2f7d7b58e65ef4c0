"""`dataset_statistics`: one layer over a whole dataset, and the tables it gives.

The images are cut into partitions of `partition_size` images. Each partition is computed
by `partition.process_partition` (here one after the other, or on Dask when a `compute`
function is given: see `scan.dataset`), optionally stored (`store.PartitionStore`, for
resuming) and merged in image order: the statistics by Chan's parallel update, the top
patches by a stable top-k, the per-image rows by concatenation. Only then are the
embedding's PCA / t-SNE and the nearest neighbours computed, on the small per-image rows.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...base.bank import KernelBank
from ...base.errors import KernelSpecError
from .. import network as _network
from ..maps import resolve_bank
from ..patches import TopPatches
from . import neighbours as nb
from .partition import (
    EMBEDDINGS,
    DatasetParameters,
    PartitionResult,
    PartitionTask,
    merge_top_patches,
    process_partition,
)
from .sources import DatasetSource
from .stats import FilterStatistics, selectivity_index

__all__ = [
    "DEFAULT_NEIGHBOURS",
    "DEFAULT_PARTITION",
    "TABLES",
    "DatasetResult",
    "dataset_statistics",
    "partition_tasks",
]

#: Nearest neighbours per image.
DEFAULT_NEIGHBOURS = 5
#: Images per partition (a Dask task, a stored part).
DEFAULT_PARTITION = 256
#: The Parquet files `DatasetResult.write` writes.
TABLES = (
    "filter_stats.parquet",
    "filter_classes.parquet",
    "images.parquet",
    "top_patches.parquet",
)

SELECTIVITY_NOTE = (
    "class-selectivity index (Morcos et al. 2018): (mu_max - mu_rest) / (mu_max + mu_rest) of "
    "the per-class mean activations after ReLU; 0 = every class alike, 1 = one class only"
)

Compute = Callable[[Sequence[PartitionTask]], Iterable[PartitionResult]]


@dataclass(frozen=True, eq=False)
class DatasetResult:
    """A layer over a dataset.

    Attributes
    ----------
    source : DatasetSource
    bank : KernelBank
    stats : FilterStatistics
        Per class (slots 0 .. C-1) and unlabelled (slot C).
    top : TopPatches
        Image indices are rows of `source.items`.
    embedding : (M, D) ndarray of float32
        Per image: the global average of the layer's maps after ReLU, or the penultimate
        features (``meta["embedding"]``).
    thumbnails : (M, 32, 32, 3) ndarray of uint8
        The pixel space of the pixel neighbours.
    pca, tsne : (M, 2) ndarray of float64
        Coordinates of the embedding (t-SNE NaN when not computed).
    nn_feature, nn_pixel : (M, k) ndarray of int64
        Each image's nearest other images (rows), nearest first.
    meta : dict
        JSON-safe: model, layer, weights, preprocessing, embedding, counts and summary
        numbers (``feature_same_class``, ``pixel_same_class``, ``tsne_knn_accuracy``).
    """

    source: DatasetSource
    bank: KernelBank = field(repr=False)
    stats: FilterStatistics = field(repr=False)
    top: TopPatches = field(repr=False)
    embedding: np.ndarray = field(repr=False)
    thumbnails: np.ndarray = field(repr=False)
    pca: np.ndarray = field(repr=False)
    tsne: np.ndarray = field(repr=False)
    nn_feature: np.ndarray = field(repr=False)
    nn_pixel: np.ndarray = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return self.source.labels

    @property
    def classes(self) -> tuple[str, ...]:
        return self.source.classes

    def selectivity(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) selectivity index and (N,) preferred class index (-1: none); see `stats`."""
        return selectivity_index(self.stats.means()[: self.stats.n_classes])

    def same_class(self) -> tuple[np.ndarray, np.ndarray]:
        """(M,) share of same-class neighbours in feature and in pixel space (NaN: no class)."""
        return (
            nb.same_class_share(self.nn_feature, self.labels),
            nb.same_class_share(self.nn_pixel, self.labels),
        )

    # --- tables ------------------------------------------------------------------------

    def filter_table(self) -> Any:
        """``filter_stats``: one row per filter (pyarrow Table)."""
        import pyarrow as pa

        overall = self.stats.overall()
        si, preferred = self.selectivity()
        names = [self.classes[p] if p >= 0 else None for p in preferred]
        return pa.table(
            {
                "index": pa.array(np.arange(self.stats.n_filters), pa.int32()),
                "fire_fraction": overall.fire_fraction()[0],
                "mean": overall.means()[0],
                "variance": overall.variance()[0],
                "selectivity": si,
                "preferred_class": pa.array(names, pa.string()),
            }
        )

    def class_table(self) -> Any:
        """``filter_classes``: one row per filter and class (pyarrow Table)."""
        import pyarrow as pa

        n, c = self.stats.n_filters, self.stats.n_classes
        fire = self.stats.fire_fraction()[:c]
        return pa.table(
            {
                "index": pa.array(np.tile(np.arange(n), c), pa.int32()),
                "class": pa.array(np.repeat(np.asarray(self.classes, object), n), pa.string()),
                "fire_fraction": fire.reshape(-1),
                "mean": self.stats.means()[:c].reshape(-1),
                "variance": self.stats.variance()[:c].reshape(-1),
            }
        )

    def image_table(self) -> Any:
        """``images``: one row per image (pyarrow Table)."""
        import pyarrow as pa

        feature, pixel = self.same_class()
        labels = self.labels
        return pa.table(
            {
                "path": pa.array([key for key, _ in self.source.items], pa.string()),
                "class": pa.array(
                    [self.classes[i] if i >= 0 else None for i in labels], pa.string()
                ),
                "pca_x": self.pca[:, 0],
                "pca_y": self.pca[:, 1],
                "tsne_x": self.tsne[:, 0],
                "tsne_y": self.tsne[:, 1],
                "nn_feature": pa.array(self.nn_feature.tolist(), pa.list_(pa.int64())),
                "nn_pixel": pa.array(self.nn_pixel.tolist(), pa.list_(pa.int64())),
                "nn_feature_same_class": feature,
                "nn_pixel_same_class": pixel,
            }
        )

    def patches_table(self) -> Any:
        """``top_patches``: one row per filter and patch, best first (pyarrow Table)."""
        import pyarrow as pa

        n, k = self.top.image_index.shape
        keep = (self.top.image_index >= 0).reshape(-1)
        image = self.top.image_index.reshape(-1)[keep]
        boxes = self.top.boxes.reshape(-1, 4)[keep]
        keys = [key for key, _ in self.source.items]
        return pa.table(
            {
                "index": pa.array(np.repeat(np.arange(n), k)[keep], pa.int32()),
                "rank": pa.array(np.tile(np.arange(k), n)[keep], pa.int32()),
                "image": pa.array(image, pa.int64()),
                "path": pa.array([keys[i] for i in image], pa.string()),
                "y0": boxes[:, 0],
                "x0": boxes[:, 1],
                "y1": boxes[:, 2],
                "x1": boxes[:, 3],
                "activation": self.top.activations.reshape(-1)[keep],
            }
        )

    def tables(self) -> dict[str, Any]:
        """File name -> pyarrow Table, for the four files of `TABLES`."""
        return dict(
            zip(
                TABLES,
                (
                    self.filter_table(),
                    self.class_table(),
                    self.image_table(),
                    self.patches_table(),
                ),
                strict=True,
            )
        )

    def write(
        self, out: str | os.PathLike[str], extra: Sequence[tuple[str, bytes]] = ()
    ) -> list[str]:
        """Write the Parquet tables (and `extra` files) into folder `out`, all replaced
        together (none is half-written). Returns the paths written.
        """
        import json

        import pyarrow.parquet as pq

        from ...base.atomic import write_together

        folder = os.fspath(out)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise KernelSpecError(f"{folder} is a file; give a folder for the tables")
        meta = {b"kernelspec": json.dumps(self.meta, default=str).encode()}
        contents: list[tuple[str, bytes]] = []
        for name, table in self.tables().items():
            buffer = io.BytesIO()
            pq.write_table(table.replace_schema_metadata(meta), buffer)
            contents.append((os.path.join(folder, name), buffer.getvalue()))
        contents += [(os.path.join(folder, name), data) for name, data in extra]
        try:
            os.makedirs(folder, exist_ok=True)
            write_together(contents)
        except OSError as exc:
            raise KernelSpecError(
                f"cannot write {folder}: {exc.strerror or exc}; pick a writable folder"
            ) from None
        return [p for p, _ in contents]


def partition_tasks(
    source: DatasetSource, bank: KernelBank, params: DatasetParameters, size: int
) -> list[PartitionTask]:
    """The dataset cut into partitions of `size` images, in order."""
    n_classes = len(source.classes)
    return [
        PartitionTask(s, source.items[s : s + size], n_classes, bank, params)
        for s in range(0, len(source), size)
    ]


def _in_process(tasks: Sequence[PartitionTask]) -> Iterator[PartitionResult]:
    for task in tasks:
        yield process_partition(task)


def dataset_statistics(
    model: KernelBank | str | os.PathLike[str],
    source: DatasetSource,
    layer: str | None = None,
    *,
    weights: str = "auto",
    embedding: str = "auto",
    k: int = 9,
    neighbours: int = DEFAULT_NEIGHBOURS,
    normalize: str = "auto",
    batch_size: int = 16,
    partition_size: int = DEFAULT_PARTITION,
    tsne: bool = True,
    store: str | os.PathLike[str] | None = None,
    resume: bool = False,
    compute: Compute | None = None,
    progress: Callable[[int], None] | None = None,
) -> DatasetResult:
    """A layer's statistics, top patches and image embedding over a whole dataset.

    Parameters
    ----------
    model : KernelBank, str or path-like
        A bank or anything `load_kernels` takes (model name, weights file).
    source : DatasetSource
        The images (`sources.open_source`).
    layer : str, optional
        A convolution of the model; default its first.
    weights : {"auto", "pretrained", "random"}
        For model names.
    embedding : {"auto", "layer", "penultimate"}
        Per-image vector: the global average of the layer's maps after ReLU, or the input of
        the model's last linear layer. ``"auto"``: penultimate for models, layer for files.
    k : int
        Top patches per filter.
    neighbours : int
        Nearest neighbours per image (pixel and feature space).
    normalize : {"auto", "none"}
        The weights' own preprocessing (ImageNet mean / std for torchvision models), or
        none (see `feature_maps`).
    batch_size : int
        Images per forward pass.
    partition_size : int
        Images per partition (one Dask task, one stored part).
    tsne : bool
        Compute t-SNE coordinates (seconds for a few thousand images); NaN otherwise.
    store : path-like, optional
        Keep each finished partition in this folder (`store.PartitionStore`).
    resume : bool
        Reuse the partitions already in `store`.
    compute : callable, optional
        ``compute(tasks) -> iterable of PartitionResult`` in any order (Dask:
        `scan.dataset.dask_compute`); default one after the other in this process.
    progress : callable, optional
        Called with the number of images of every finished partition.

    Returns
    -------
    DatasetResult

    Raises
    ------
    KernelSpecError
        Bad parameters, an empty dataset, an image that cannot be read or is too small, a
        store of another run.
    """
    from .store import PartitionStore, fingerprint

    for name, value, least in (
        ("k", k, 1),
        ("neighbours", neighbours, 1),
        ("batch size", batch_size, 1),
        ("partition size", partition_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise KernelSpecError(f"{name} must be a whole number >= {least}, got {value!r}")
    if embedding not in ("auto", *EMBEDDINGS):
        raise KernelSpecError(
            f"embedding must be one of auto, {', '.join(EMBEDDINGS)}, got {embedding!r}"
        )
    if len(source) == 0:
        raise KernelSpecError("the dataset has no images")
    bank = resolve_bank(model, weights, layer)
    if embedding == "auto":
        embedding = "penultimate" if bank.source in _network.MODEL_SOURCES else "layer"
    if embedding == "penultimate" and bank.source not in _network.MODEL_SOURCES:
        raise KernelSpecError(
            f"{bank.display_name} is a weights file: it has no classifier whose penultimate "
            "features could embed the images; embed with the layer's average maps instead"
        )
    params = DatasetParameters(embedding, int(k), normalize, int(batch_size))
    tasks = partition_tasks(source, bank, params, int(partition_size))
    results: dict[int, PartitionResult] = {}
    saved = None
    if store is not None:
        saved = PartitionStore(
            store, fingerprint(bank, source.items, params.to_dict(), partition_size), resume
        )
        ranges = {(t.start, t.stop) for t in tasks}
        for start, stop in saved.done() & ranges:
            results[start] = saved.read(start, stop, bank)
            if progress is not None:
                progress(stop - start)
    todo = [t for t in tasks if t.start not in results]
    for result in (compute or _in_process)(todo):
        if saved is not None:
            saved.write(result)
        results[result.start] = result
        if progress is not None:
            progress(result.stop - result.start)
    ordered = [results[t.start] for t in tasks]
    return _assemble(source, bank, params, ordered, int(neighbours), tsne)


def _assemble(
    source: DatasetSource,
    bank: KernelBank,
    params: DatasetParameters,
    parts: list[PartitionResult],
    neighbours: int,
    tsne: bool,
) -> DatasetResult:
    stats = parts[0].stats
    for part in parts[1:]:
        stats = stats.merge(part.stats)
    top = merge_top_patches([p.top for p in parts])
    embedding = np.concatenate([p.embedding for p in parts])
    thumbnails = np.concatenate([p.thumbnails for p in parts])
    labels = source.labels
    pca = nb.pca_2d(embedding)
    tsne_xy = nb.tsne_2d(embedding) if tsne else np.full((len(embedding), 2), np.nan)
    nn_feature = nb.nearest_neighbours(embedding, neighbours)
    pixels = thumbnails.reshape(len(thumbnails), -1).astype(np.float32) / 255.0
    nn_pixel = nb.nearest_neighbours(pixels, neighbours)
    feature_share = nb.same_class_share(nn_feature, labels)
    pixel_share = nb.same_class_share(nn_pixel, labels)

    def average(x: np.ndarray) -> float | None:
        return float(np.nanmean(x)) if np.isfinite(x).any() else None

    knn = nb.knn_accuracy(tsne_xy, labels, neighbours) if tsne else float("nan")
    meta: dict[str, Any] = {
        "model": bank.model,
        "display_name": bank.display_name,
        "layer": bank.layer,
        "weights": bank.source,
        "trained": bank.is_trained,
        "dataset": source.description,
        "n_images": len(source),
        "classes": list(source.classes),
        **parts[0].meta,
        "activation": "the layer's output after ReLU (a position fires where it is above 0)",
        "selectivity": SELECTIVITY_NOTE,
        "embedding": (
            "input of the model's last linear layer (penultimate features)"
            if params.embedding == "penultimate"
            else f"global average of {bank.layer}'s maps after ReLU"
        ),
        "embedding_kind": params.embedding,
        "embedding_dims": int(embedding.shape[1]),
        "neighbours": int(nn_feature.shape[1]),  # fewer than asked in a set that small
        "pixel_space": "32x32 RGB thumbnails in [0, 1], Euclidean",
        "feature_space": "the embedding, Euclidean",
        "k": params.k,
        "feature_same_class": average(feature_share),
        "pixel_same_class": average(pixel_share),
        "tsne_knn_accuracy": None if np.isnan(knn) else knn,
        "tsne_knn": f"{neighbours}-nearest-neighbour accuracy in the t-SNE plane, 5-fold "
        "stratified cross-validation",
    }
    return DatasetResult(
        source, bank, stats, top, embedding, thumbnails, pca, tsne_xy, nn_feature, nn_pixel, meta
    )
