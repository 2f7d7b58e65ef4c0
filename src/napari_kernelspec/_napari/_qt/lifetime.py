"""When a dock widget's life ends: closed by the user, or the viewer closes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["on_close"]


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
