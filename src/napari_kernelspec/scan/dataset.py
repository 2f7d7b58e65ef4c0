"""A layer over a large dataset on Dask, resumable: `compute_dataset`.

The dataset's partitions (`imaging.dataset.run.partition_tasks`) go to the cluster as tasks
of `imaging.dataset.partition.process_partition` (a module-level function: workers import
it by name and read their own images). At most `window` tasks are in flight, so the
client holds only finished partitions (bounded per-filter state plus a small row per
image). Each finished partition is stored at once (`imaging.dataset.store`), so a run that
was interrupted resumes with the partitions it had; the merge is the same as in one
process (Chan's update for the statistics, a stable top-k for the patches), which a test
checks against `dataset_statistics` without Dask.

The cluster is the scan's (`scan.run._client`): a `LocalCluster` of one-thread worker
processes, or a running scheduler by address.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..base.bank import KernelBank
from ..imaging.dataset.partition import PartitionResult, PartitionTask, process_partition
from ..imaging.dataset.run import DatasetResult, dataset_statistics
from ..imaging.dataset.sources import DatasetSource
from .run import RETRIES, _client

__all__ = ["PARTITIONS", "compute_dataset", "dask_compute"]

#: The folder inside the output folder that keeps finished partitions until the end.
PARTITIONS = "partitions"


def dask_compute(client: Any, retries: int = RETRIES, window: int | None = None):
    """A `compute` function for `dataset_statistics` that runs the partitions on `client`.

    Results are yielded as they finish (any order); a task's error (an unreadable image) is
    raised as it was raised on the worker.
    """

    def compute(tasks: Sequence[PartitionTask]) -> Iterator[PartitionResult]:
        from distributed import as_completed

        if not tasks:
            return
        n = window or max(4, 2 * sum(client.nthreads().values()))
        queue = iter(tasks)
        first = [t for _, t in zip(range(n), queue, strict=False)]
        futures = as_completed(
            [client.submit(process_partition, t, pure=False, retries=retries) for t in first],
            loop=client.loop,
        )
        for future in futures:
            result = future.result()
            future.release()
            nxt = next(queue, None)
            if nxt is not None:
                futures.add(client.submit(process_partition, nxt, pure=False, retries=retries))
            yield result

    return compute


def compute_dataset(
    model: KernelBank | str | os.PathLike[str],
    source: DatasetSource,
    out: str | os.PathLike[str],
    layer: str | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    resume: bool = False,
    progress: bool = True,
    timeout: float = 30.0,
    **options: Any,
) -> DatasetResult:
    """`dataset_statistics` with its partitions kept in ``out/partitions`` (resumable),
    in this process or on Dask.

    Parameters
    ----------
    model, source, layer
        As for `dataset_statistics`.
    out : path-like
        The output folder; finished partitions go to its ``partitions`` folder.
    scheduler : str, optional
        A running Dask scheduler's address.
    workers : int, optional
        Worker processes of a local Dask cluster. With neither (nor `client`) the partitions
        are computed here, one after the other.
    client : distributed.Client, optional
        A client to use (not closed here).
    resume : bool
        Reuse the partitions an interrupted run left in ``out/partitions``.
    progress : bool
        A tqdm bar of images on stderr.
    **options
        Passed to `dataset_statistics` (weights, embedding, k, neighbours, normalize,
        batch_size, partition_size, tsne).

    Returns
    -------
    DatasetResult
    """
    from tqdm import tqdm

    created = client is None and bool(scheduler or workers)
    cluster = None
    if created:
        client, cluster = _client(scheduler, workers, timeout)
    bar = tqdm(
        total=len(source),
        unit="image",
        desc="kernelspec dataset",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        return dataset_statistics(
            model,
            source,
            layer,
            store=Path(out) / PARTITIONS,
            resume=resume,
            compute=dask_compute(client) if client is not None else None,
            progress=bar.update,
            **options,
        )
    finally:
        bar.close()
        if created:
            client.close()
            if cluster is not None:
                cluster.close()
