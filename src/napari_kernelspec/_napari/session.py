"""What the napari widgets of one viewer show, in one Qt-free object that emits events.

The three widgets (Kernel spectrum, Feature maps, Explain filters) are views of the
viewer's `Session`: the main widget publishes the model it shows (`Session.show`), any
widget the focused filter (`Session.focus`); the others listen to the session's psygnal
signals. No widget looks another one up. `session_for(viewer)` gives every widget of a
viewer the same session.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psygnal import Signal

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult
    from ..base.bank import KernelBank

__all__ = ["REQUESTS", "ExplanationRun", "Session", "session_for"]

#: What `Session.request` may ask of the main widget.
REQUESTS = ("zoom", "fit", "toggle", "side_by_side")


@dataclass(eq=False)
class ExplanationRun:
    """One Explain run: its name and the layers it added (a napari layer group)."""

    name: str
    layers: list[Any] = field(default_factory=list)


class Session:
    """The model, analysis, step, filter, image and explanations the widgets show.

    Signals
    -------
    bank_changed(KernelBank)
        Another bank is shown (emitted only when the bank object changes).
    result_changed(AnalysisResult)
        A new analysis is shown (also a history step or a threshold change).
    filter_focused(int)
        Another filter is the focused one.
    image_changed(object)
        The image layer the widgets explain (None: none).
    explanations_changed()
        An explanation run was added or the runs were cleared.
    requested(str)
        A command for the main widget, from a shortcut or another widget: one of
        `REQUESTS` ("zoom", "fit", "toggle", "side_by_side").
    """

    bank_changed = Signal(object)
    result_changed = Signal(object)
    filter_focused = Signal(int)
    image_changed = Signal(object)
    explanations_changed = Signal()
    requested = Signal(str)

    def __init__(self) -> None:
        self.source: str | None = None
        self.bank: KernelBank | None = None
        self.result: AnalysisResult | None = None
        self.steps: tuple[str, ...] = ()
        self.step: int | None = None
        self.current_filter: int | None = None
        self.image: Any = None
        self.explanations: list[ExplanationRun] = []

    def show(
        self,
        result: AnalysisResult,
        source: str | None = None,
        steps: tuple[str, ...] = (),
        step: int | None = None,
    ) -> None:
        """Publish what the main widget shows: `result` (of a history step when `steps`)."""
        bank_changed = result.bank is not self.bank
        self.bank, self.result = result.bank, result
        if source is not None:
            self.source = source
        self.steps, self.step = tuple(steps), step
        if self.current_filter is not None and self.current_filter >= result.n_filters:
            self.current_filter = None
        if bank_changed:
            self.bank_changed.emit(result.bank)
        self.result_changed.emit(result)

    def focus(self, index: int) -> bool:
        """Make filter `index` the focused one; False (and no event) if it already is."""
        index = int(index)
        if index < 0 or (self.result is not None and index >= self.result.n_filters):
            raise ValueError(f"filter {index} is out of range")
        if index == self.current_filter:
            return False
        self.current_filter = index
        self.filter_focused.emit(index)
        return True

    def step_filter(self, step: int) -> int | None:
        """Focus the next (`step` 1) or previous (-1) filter, clipped to the bank."""
        if self.result is None:
            return None
        n = int(self.result.n_filters)
        current = self.current_filter if self.current_filter is not None else -int(step)
        index = min(max(current + int(step), 0), n - 1)
        self.focus(index)
        return index

    def request(self, what: str) -> None:
        """Ask the main widget for `what` (see `REQUESTS`)."""
        if what not in REQUESTS:
            raise ValueError(f"unknown request {what!r}; expected one of {REQUESTS}")
        self.requested.emit(what)

    def set_image(self, layer: Any) -> None:
        """The image layer to explain and to compute feature maps of."""
        if layer is not self.image:
            self.image = layer
            self.image_changed.emit(layer)

    def add_explanation(self, name: str, layers: list[Any]) -> ExplanationRun:
        """Record one Explain run's layers under a unique `name` ("name (2)" when taken)."""
        taken = {run.name for run in self.explanations}
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name} ({k})", k + 1
        run = ExplanationRun(unique, list(layers))
        self.explanations.append(run)
        self.explanations_changed.emit()
        return run

    def clear_explanations(self) -> list[ExplanationRun]:
        """Forget every run; returns them (their layers are for the caller to remove)."""
        runs, self.explanations = self.explanations, []
        if runs:
            self.explanations_changed.emit()
        return runs


#: Sessions by viewer identity (napari's viewers compare equal by their fields, so not a
#: WeakKeyDictionary); an entry goes when its viewer is garbage collected.
_SESSIONS: dict[int, Session] = {}


def session_for(viewer: Any) -> Session:
    """The session of `viewer` (made on first use, dropped with the viewer)."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari's plugin proxy
    key = id(viewer)
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = Session()
        weakref.finalize(viewer, _SESSIONS.pop, key, None)
    return session
