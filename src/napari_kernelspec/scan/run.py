"""`run_scan`: analyse many sources on a Dask cluster and write the results as they arrive.

The cluster is Dask's: a `distributed.LocalCluster` of worker processes (one thread each,
since the analysis is single-threaded numpy and the GIL would serialise threads), or the
scheduler of an existing cluster given by address. Tasks go out through `Client.submit`
with ``pure=False`` (every source is analysed, even a repeated one) and ``retries``; a
worker that dies is replaced by its nanny and its tasks are run again by the scheduler.
Results come back through `distributed.as_completed`. At most `window` tasks are in flight
and at most `batch_size` results wait to be written, so the client's memory stays bounded
whatever the number of sources.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import KernelSpecError
from ..base.text import redact
from .store import ScanStore, default_models_out
from .worker import ScanParameters, SourceResult, analyse_source

__all__ = ["ScanInterrupted", "ScanSummary", "run_scan"]

logger = logging.getLogger(__name__)

#: Sources per written batch (one part file each), unless `run_scan` is told otherwise.
DEFAULT_BATCH = 64
#: A batch is also written once its oldest result has waited this long (seconds).
FLUSH_SECONDS = 10.0
#: Dask retries of a task whose worker failed (a bad source never raises: see `worker`).
RETRIES = 2


@dataclass(frozen=True)
class ScanSummary:
    """What a scan did.

    Attributes
    ----------
    total : int
        Sources named (after expansion).
    skipped : int
        Already in the output (``resume``), not analysed again.
    analysed, failed : int
        Sources analysed in this run, and how many of them became error rows.
    out, models_out : Path
        The filters and models datasets.
    seconds : float
        Wall time of the scan, cluster start included.
    n_workers : int
        Worker threads the scheduler had.
    """

    total: int
    skipped: int
    analysed: int
    failed: int
    out: Path
    models_out: Path
    seconds: float
    n_workers: int

    @property
    def ok(self) -> bool:
        return self.failed == 0


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during a scan; the batches written so far are kept (see `--resume`)."""

    def __init__(self, written: int, out: Path) -> None:
        super().__init__(f"interrupted after {written} sources written to {out}")
        self.written, self.out = written, out


#: Dask's configuration of the environment its nanny sets before it starts a worker.
_PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def _client(scheduler: str | None, workers: int | None, timeout: float) -> tuple[Any, Any]:
    """A Dask client and the LocalCluster it owns (None for an existing scheduler)."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise KernelSpecError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with "
                "`dask scheduler` or leave out --scheduler to use local worker processes"
            ) from None
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            client.close()
            raise KernelSpecError(
                f"the scheduler at {scheduler} has no workers after {timeout:.0f} s; start "
                f"some with `dask worker {scheduler}`"
            ) from None
        return client, None
    import dask

    n = workers or os.cpu_count() or 1
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, so glibc hands freed
    # memory back to the OS at once. An analysis allocates and frees a few MB per source;
    # with that setting one took 65-78 ms instead of 35-39 ms (measured in a worker and in a
    # plain process with the variable set), halving a scan's throughput. Our own cluster's
    # workers keep glibc's default (a user's `--scheduler` workers keep their settings).
    with dask.config.set({f"{_PRE_SPAWN}.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port (the HTTP server always runs)
            silence_logs=logging.ERROR,
        )
    return Client(cluster, set_as_default=False), cluster


def _failed_task(source: str, exc: BaseException) -> SourceResult:
    """The row of a task that Dask itself gave up on (e.g. its workers kept dying)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return SourceResult(
        source, {"source": redact(source), "error": redact(f"task failed: {text}")}
    )


def run_scan(
    sources: Sequence[str],
    out: str | os.PathLike[str],
    models_out: str | os.PathLike[str] | None = None,
    *,
    params: ScanParameters | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    batch_size: int = DEFAULT_BATCH,
    flush_seconds: float = FLUSH_SECONDS,
    retries: int = RETRIES,
    timeout: float = 30.0,
    progress: bool = True,
) -> ScanSummary:
    """Analyse every source on Dask; write one row per filter and one per source.

    Parameters
    ----------
    sources : sequence of str
        Model names and weights files (see `expand.expand_sources`).
    out : path-like
        The filters dataset folder (``filters.parquet``).
    models_out : path-like, optional
        The models dataset folder; default `store.default_models_out` (`out` with
        ``-models``). It is always written: it holds the error rows and the commit records
        that ``resume`` reads.
    params : ScanParameters, optional
        Weights, layer, method, threshold and min_samples for every source.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:port``); default: a local cluster.
    workers : int, optional
        Worker processes of the local cluster (default: the number of CPUs).
    resume : bool
        Skip the sources already in the outputs and add the others.
    batch_size : int
        Results per written part file.
    flush_seconds : float
        Write a smaller batch once its first result has waited this long.
    retries : int
        Dask retries per task.
    timeout : float
        Seconds to wait for the scheduler and its first worker.
    progress : bool
        Show a tqdm bar (done / failed / remaining) on stderr.

    Returns
    -------
    ScanSummary

    Raises
    ------
    KernelSpecError
        Bad parameters or outputs (checked before any cluster starts), an unreachable
        scheduler or one without workers.
    ScanInterrupted
        On Ctrl-C, after writing the results that had arrived.
    """
    from ..analysis.pipeline import check_parameters

    params = params or ScanParameters()
    check_parameters(params.method, params.threshold, params.min_samples, params.alpha)
    if batch_size < 1:
        raise KernelSpecError(f"batch size is {batch_size}; it must be at least 1")
    if workers is not None and workers < 1:
        raise KernelSpecError(f"--workers is {workers}; it must be at least 1")
    start = time.perf_counter()
    models_out = Path(models_out) if models_out is not None else default_models_out(out)
    store = ScanStore(out, models_out, params, resume=resume)
    if store.n_removed:
        logger.info("removed %d uncommitted part(s) of an interrupted scan", store.n_removed)
    todo = [
        s for s in dict.fromkeys(sources) if s not in store.done and redact(s) not in store.done
    ]
    skipped = len(set(sources)) - len(todo)
    if not todo:
        return ScanSummary(len(sources), skipped, 0, 0, store.out, models_out, 0.0, 0)

    from tqdm import tqdm

    client, cluster = _client(scheduler, workers, timeout)
    bar = tqdm(
        total=len(todo),
        unit="source",
        desc="kernelspec scan",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    done = failed = written = 0
    n_workers = 0
    buffer: list[SourceResult] = []
    try:
        from distributed import as_completed

        n_workers = sum(client.nthreads().values())
        window = max(16, 8 * n_workers)
        queue = iter(todo)

        def submit(source: str) -> Any:
            return client.submit(analyse_source, source, params, pure=False, retries=retries)

        first = [s for _, s in zip(range(window), queue, strict=False)]
        initial = client.map(analyse_source, first, params=params, pure=False, retries=retries)
        pending = {f.key: s for f, s in zip(initial, first, strict=True)}
        futures = as_completed(initial, loop=client.loop)
        del initial
        oldest = None
        try:
            for future in futures:
                source = pending.pop(future.key)
                try:
                    result = future.result()
                except Exception as exc:  # Dask gave up on the task, not on the source
                    result = _failed_task(source, exc)
                future.release()
                buffer.append(result)
                done += 1
                failed += not result.ok
                oldest = oldest or time.monotonic()
                if len(buffer) >= batch_size or time.monotonic() - oldest >= flush_seconds:
                    store.write(buffer)
                    written += len(buffer)
                    buffer, oldest = [], None
                nxt = next(queue, None)
                if nxt is not None:
                    f = submit(nxt)
                    pending[f.key] = nxt
                    futures.add(f)
                bar.set_postfix_str(
                    f"done {done - failed}, failed {failed}, remaining {len(todo) - done}",
                    refresh=False,
                )
                bar.update(1)
        except KeyboardInterrupt:
            store.write(buffer)
            written += len(buffer)
            buffer = []
            raise ScanInterrupted(written + skipped, store.out) from None
        store.write(buffer)
        buffer = []
    finally:
        bar.close()
        client.close()
        if cluster is not None:
            cluster.close()
    return ScanSummary(
        total=len(sources),
        skipped=skipped,
        analysed=done,
        failed=failed,
        out=store.out,
        models_out=models_out,
        seconds=time.perf_counter() - start,
        n_workers=n_workers,
    )
