"""Many sources at once: `run_scan` analyses models and checkpoints on a Dask cluster and
writes one Parquet row per filter and one per source, as the results arrive.

Modules: `expand` (SOURCES arguments -> a list of sources), `worker` (the function a Dask
worker runs for one source), `store` (the Parquet datasets: batches as part files, resume),
`run` (the cluster, the task window and the progress bar). dask, distributed, pyarrow and
tqdm are imported inside the functions that need them.
"""

from __future__ import annotations

__all__ = ["ScanSummary", "run_scan"]


def __getattr__(name: str):  # lazy: `import napari_kernelspec.scan` stays light
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
