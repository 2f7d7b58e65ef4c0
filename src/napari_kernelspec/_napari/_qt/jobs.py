"""The Qt side of `_napari.jobs`: results delivered on the main thread, napari's progress."""

from __future__ import annotations

from typing import Any

from ..jobs import JobRunner

__all__ = ["qt_runner"]


class _NullFile:
    """A file that drops what is written: napari's progress must never print to a terminal."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def napari_progress(desc: str) -> Any:
    """An indeterminate bar in napari's activity panel (never printed to a terminal)."""
    from napari.utils import progress

    return progress(total=0, desc=desc, file=_NullFile(), leave=False)


def qt_runner(parent: Any, name: str = "kernelspec-worker") -> JobRunner:
    """A `JobRunner` whose results reach the main thread through a queued Qt signal.

    Parameters
    ----------
    parent : QObject
        Owner of the signal bridge (the widget's native widget): once it is deleted,
        late results are dropped.
    """
    from qtpy.QtCore import QObject, Signal

    class _Bridge(QObject):
        call = Signal(object)

    bridge = _Bridge(parent)
    bridge.call.connect(lambda fn: fn())
    runner = JobRunner(post=bridge.call.emit, progress=napari_progress, name=name)
    runner.bridge = bridge  # type: ignore[attr-defined]  # kept alive with the runner
    return runner
