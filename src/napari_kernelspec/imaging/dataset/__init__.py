"""A layer over a dataset: per-filter statistics per class, top patches across the set, an
embedding of every image and its nearest neighbours in pixel and feature space.

Modules: `sources` (where the images come from: a class-per-subfolder folder, an
unlabelled folder, the bundled digits), `stats` (mergeable per-filter accumulators and the
class-selectivity index), `partition` (what one batch of images contributes; a module-level
function so that Dask workers import it by name), `neighbours` (PCA, t-SNE, k nearest
neighbours), `run` (`dataset_statistics`, `DatasetResult` and its Parquet tables) and
`store` (per-partition results on disk, for resuming).

torch, torchvision, Pillow, scikit-learn and pyarrow are imported inside the functions that
need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "DatasetResult",
    "DatasetSource",
    "FilterStatistics",
    "dataset_statistics",
    "digits_source",
    "folder_source",
    "open_source",
]

_LAZY = {
    "DatasetResult": "run",
    "dataset_statistics": "run",
    "DatasetSource": "sources",
    "digits_source": "sources",
    "folder_source": "sources",
    "open_source": "sources",
    "FilterStatistics": "stats",
}

if TYPE_CHECKING:
    from .run import DatasetResult, dataset_statistics
    from .sources import DatasetSource, digits_source, folder_source, open_source
    from .stats import FilterStatistics


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
