"""When a dock widget's life ends: closed by the user, or the viewer closes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["MAIN", "OTHER", "Lifetime", "LinkedModel", "on_close", "on_selection", "scrolled"]

#: The model choice that follows the Kernel spectrum widget's model.
MAIN = "__main_widget__"
#: The model choice that reads a torchvision name or a weights file from a text field.
OTHER = "__other__"


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

    def _start_dock(self, napari_viewer: Any, name: str) -> None:
        """Set a dock's common fields: the viewer (unwrapped from napari's proxy), its
        session, a Qt job runner named `name`, and the empty connection and layer records."""
        from ..session import session_for
        from .jobs import qt_runner

        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.session = session_for(self.viewer)
        self._jobs = qt_runner(self.native, name=name)
        self._applied = 0
        self._closed = False
        self._connections = []
        self._layers: dict[str, Any] = {}
        self.last_error: str | None = None

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


class LinkedModel:
    """Part of a dock widget (a mixin): the model choices, the seed models and "other model
    or file…", led by "main widget's model" once the session has a bank."""

    _model_choices: list[tuple[str, str]]

    def _init_model_choices(self) -> None:
        from ...sources.models import SEED_MODELS

        self._model_choices = [(name, key) for key, name in SEED_MODELS.items()]
        self._model_choices += [("other model or file…", OTHER)]

    def _model_choice_list(self, *_: Any) -> list[tuple[str, str]]:
        session = getattr(self, "session", None)  # (called while the controls are built)
        linked = [("main widget's model", MAIN)] if session and session.bank else []
        return [*linked, *self._model_choices]


def on_selection(points: Any, callback: Callable[..., Any]) -> None:
    """Call `callback` when the selected points of the Points layer `points` change."""
    events = points.selected_data.events  # psygnal's Selection (napari >= 0.6)
    signal = getattr(events, "items_changed", None)
    signal = events.changed if signal is None else signal
    signal.connect(callback)


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
