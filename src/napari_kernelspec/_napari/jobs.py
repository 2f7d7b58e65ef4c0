"""One latest-wins job runner for every background computation of the napari widgets (no Qt).

A widget submits work (a function of ``is_stale``); one job runs at a time; a job submitted
while another runs waits in a single slot that the next submission replaces, so superseded
work is dropped before it starts. A running job checks ``is_stale()`` between its stages.
Results, errors and warnings come back through `post`, which the Qt adapter
(`_qt.jobs.qt_runner`) points at the main thread; without it (tests, scripts) they are
delivered in the worker thread.

Why daemon threads and not a Qt thread pool (napari's ``thread_worker``): a load inside
torch cannot be interrupted, and a pool thread still running when the viewer closed reported
into deleted Qt objects and aborted the process (exit 134, "wrapped C/C++ object ... has
been deleted"). A daemon thread never keeps the process alive; once the runner is closed it
reports nothing. Threads still running at interpreter exit are joined (bounded,
`EXIT_WAIT_S`): a daemon thread inside torch at exit ended the process with SIGABRT.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXIT_WAIT_S", "Job", "JobRunner"]

logger = logging.getLogger(__name__)

#: Longest wait at interpreter exit for jobs that outlived their widget.
EXIT_WAIT_S = 60.0

_RUNNING: set[threading.Thread] = set()
_RUNNING_LOCK = threading.Lock()


def _track(thread: threading.Thread) -> None:
    with _RUNNING_LOCK:
        if not _RUNNING:
            import atexit

            atexit.unregister(join_running)  # registered once
            atexit.register(join_running)
        _RUNNING.add(thread)


def join_running(timeout: float = EXIT_WAIT_S) -> None:
    """Wait (at most `timeout` s in all) for the job threads still running."""
    import time

    deadline = time.monotonic() + timeout
    with _RUNNING_LOCK:
        threads = list(_RUNNING)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


@dataclass(eq=False)
class Job:
    """One submitted piece of work and what came of it.

    Attributes
    ----------
    generation : int
        Submission number in its runner; only the newest one is delivered.
    work : callable
        ``work(is_stale) -> value``; runs in a worker thread.
    desc : str
        What it does, for a progress bar ("Loading alexnet").
    payload : object
        Anything the submitter wants back with the result (e.g. its request).
    value, error : object, BaseException or None
        The return value, or the exception it raised.
    warnings : list of str
        Warnings raised while it ran.
    """

    generation: int
    work: Callable[[Callable[[], bool]], Any]
    desc: str = ""
    payload: Any = None
    on_done: Callable[[Job], None] | None = None
    prepare: Callable[[], tuple[Callable[[Callable[[], bool]], Any], str]] | None = None
    value: Any = None
    error: BaseException | None = None
    warnings: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None


class JobRunner:
    """Run the newest submitted job; drop superseded ones; stop for good on `close`.

    Parameters
    ----------
    post : callable, optional
        ``post(fn)`` calls ``fn()`` on the thread that owns the widgets (the Qt adapter
        emits a queued signal). Default: call it at once, in the worker thread.
    progress : callable, optional
        ``progress(desc)`` opens a progress indicator and returns an object with
        ``close()`` (napari's ``progress`` in the Qt adapter); closed when the job ends.
    name : str
        Thread name.
    """

    def __init__(
        self,
        post: Callable[[Callable[[], None]], None] | None = None,
        progress: Callable[[str], Any] | None = None,
        name: str = "kernelspec-worker",
    ) -> None:
        self._post = post or (lambda fn: fn())
        self._progress_factory = progress
        self._progress: Any = None
        self._name = name
        self._lock = threading.Lock()
        self.generation = 0
        self.running: Job | None = None
        self.pending: Job | None = None
        self.closed = False

    # --- state read by worker threads -------------------------------------------------

    def is_stale(self, generation: int) -> bool:
        """True once a newer job was submitted, the runner was cancelled or closed."""
        return self.closed or generation < self.generation

    @property
    def busy(self) -> bool:
        """True while a job runs or waits."""
        return self.running is not None or self.pending is not None

    # --- main thread ----------------------------------------------------------------------

    def submit(
        self,
        work: Callable[[Callable[[], bool]], Any] | None = None,
        on_done: Callable[[Job], None] | None = None,
        desc: str = "",
        payload: Any = None,
        prepare: Callable[[], tuple[Callable[[Callable[[], bool]], Any], str]] | None = None,
    ) -> Job | None:
        """Make `work` the newest job: run it now, or after the running one.

        ``prepare() -> (work, desc)``, called on the owner's thread when the job starts,
        builds the work from what is known then (e.g. the bank the previous job loaded).

        Returns
        -------
        Job or None
            None once the runner is closed.
        """
        if self.closed:
            return None
        self.generation += 1
        if work is None and prepare is None:
            raise ValueError("submit needs work or prepare")
        job = Job(
            self.generation,
            work or (lambda is_stale: None),
            desc=desc,
            payload=payload,
            on_done=on_done,
            prepare=prepare,
        )
        if self.running is None:
            self._start(job)
        else:
            self.pending = job  # replaces (drops) an older waiting job
        return job

    def cancel(self) -> None:
        """Drop the waiting job and tell the running one it is stale (nothing delivered)."""
        self.generation += 1
        self.pending = None

    def close(self) -> None:
        """Stop for good: cancel, close the progress bar, deliver nothing more. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.cancel()
        self.running = None
        self._close_progress()

    def post(self, fn: Callable[[], None]) -> None:
        """Call `fn` on the owner's thread (from a worker: progress), unless closed."""
        if self.closed:
            return
        with contextlib.suppress(RuntimeError):  # the Qt receiver was deleted
            self._post(lambda: None if self.closed else fn())

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until no job runs or waits (worker-thread delivery only; for tests).

        Returns True if idle within `timeout`.
        """
        import time

        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            job = self.running
            if job is not None and job.thread is not None:
                job.thread.join(max(0.0, min(0.05, deadline - time.monotonic())))
            else:
                time.sleep(0.005)
        return not self.busy

    def _start(self, job: Job) -> None:
        if job.prepare is not None:
            job.work, job.desc = job.prepare()
        self.running = job
        self._open_progress(job.desc)
        thread = threading.Thread(target=self._main, args=(job,), name=self._name, daemon=True)
        job.thread = thread
        _track(thread)
        thread.start()

    def _main(self, job: Job) -> None:
        import warnings

        generation = job.generation
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                job.value = job.work(lambda: self.is_stale(generation))
            except Exception as exc:  # delivered with its traceback
                job.error = exc
        job.warnings = [str(w.message) for w in caught]
        with _RUNNING_LOCK:
            _RUNNING.discard(threading.current_thread())
        if self.closed:
            return
        with contextlib.suppress(RuntimeError):  # the Qt receiver was deleted meanwhile
            self._post(lambda: self._finished(job))

    def _finished(self, job: Job) -> None:
        """Back on the owner's thread: deliver `job` if it is the newest, start the next."""
        if self.closed or job is not self.running:
            return
        # Delivered while still "running": what the handler submits waits, and the next
        # job is prepared from what this one left (e.g. its loaded bank).
        if job.on_done is not None:
            try:
                job.on_done(job)
            except Exception:  # a bug in a handler must not stop the runner
                logger.exception("kernelspec job handler failed")
        if self.closed:
            return
        self.running = None
        self._close_progress()
        pending, self.pending = self.pending, None
        if pending is not None and pending.generation == self.generation:
            self._start(pending)

    def _open_progress(self, desc: str) -> None:
        self._close_progress()
        if self._progress_factory is None:
            return
        try:
            self._progress = self._progress_factory(desc)
        except Exception:  # the activity panel is optional: never fail a job on it
            logger.debug("no progress bar", exc_info=True)
            self._progress = None

    def _close_progress(self) -> None:
        bar, self._progress = self._progress, None
        if bar is not None:
            with contextlib.suppress(Exception):
                bar.close()
