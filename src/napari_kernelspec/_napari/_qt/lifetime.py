"""When a dock widget's life ends: closed by the user, or the viewer closes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["Lifetime", "on_close", "scrolled"]


def on_close(native: Any, close: Callable[[], None]) -> Any:
    """Call `close()` once `native` leaves its dock or is destroyed.

    napari's dock close removes the widget from its dock (a parent change to None) before
    it is deleted; the viewer's close destroys it. Both end the widget's work.

    Returns
    -------
    QObject
        The event filter (kept by `native`, its parent).
    """
    from qtpy.QtCore import QEvent, QObject

    class _Watcher(QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
                close()
            return False

    watcher = _Watcher(native)
    native.installEventFilter(watcher)
    native.destroyed.connect(lambda *args: _quietly(close))
    return watcher


def _quietly(close: Callable[[], None]) -> None:
    # At interpreter exit the Python side may be half torn down already.
    with contextlib.suppress(AttributeError, RuntimeError):
        close()


class Lifetime:
    """Part of a dock widget (a mixin): tracked connections, and `close_widget` that cancels
    its `JobRunner` (``self._jobs``) and disconnects them all. Needs ``_closed``,
    ``_connections`` and ``_jobs`` set in ``__init__``."""

    _closed: bool
    _connections: list[tuple[Any, Any]]
    _jobs: Any

    def _connect(self, emitter: Any, callback: Any) -> None:
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    @property
    def closed(self) -> bool:
        """True once the dock was closed: the widget then does nothing more."""
        return self._closed

    def close_widget(self) -> None:
        """Stop for good: cancel the job, disconnect every callback. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._jobs.close()
        for emitter, callback in self._connections:
            with contextlib.suppress(Exception):
                emitter.disconnect(callback)
        self._connections = []
        self._on_closed()

    def _on_closed(self) -> None:
        """What else the widget lets go of (after its connections)."""


def scrolled(outer: Any, widgets: list[Any], labels: bool = True) -> Any:
    """Put `widgets` in a scroll area that fills `outer` (a magicgui Container).

    napari docks a magicgui widget's ``native`` (the inner widget even of a
    ``scrollable=True`` Container), so a dock's minimum height was its controls' sum and three
    docks did not fit a 1080-pixel screen. Inside this scroll area a dock can shrink.

    Returns
    -------
    magicgui.widgets.Container
        The body holding `widgets` (iterate it to walk the controls).
    """
    from magicgui.widgets import Container
    from qtpy.QtWidgets import QFrame, QScrollArea

    body = Container(widgets=widgets, labels=labels)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(body.native)
    layout = outer.native.layout()
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(area)
    outer.body = body
    return body
