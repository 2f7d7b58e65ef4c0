"""The napari widget: pick a model, see its first-layer kernels, spectra and clusters.

A thin front end: loading, analysis and the layer data (`_napari.compute`) run on the
shared latest-wins `JobRunner` (`_napari.jobs`); this module turns controls into requests
and hands finished arrays to layers in the main thread. Its parts live beside it: the
controls (`controls`), the cluster table (`table`), hover text (`hover`), exports
(`export`), filter navigation (`navigate`), kernels / spectra / side by side (`arrange`).

Sources: the seed models, any torchvision name, a checkpoint file, or a folder of checkpoints
of one model: a training history (`History`), shown with a leading step axis that napari's
dims slider scrubs; the widget's current result, table and summary follow the step.
Arrangements: the kernels or the spectra, or both side by side with one set of frames.

Responsiveness
--------------
- Continuous controls (threshold slider, min samples) are debounced (`DEBOUNCE_MS`): a drag
  makes one request when it pauses, not one per intermediate value.
- One job runs at a time; a request made while it runs waits in a single slot that the next
  request replaces, so superseded requests are dropped before they start. A running job
  checks between its stages (load, analysis, layer data) whether it is still wanted.
- Only what changed is rebuilt and handed over: a threshold change rebuilds the per-filter
  points and metadata (no image data), a view change the kernel mosaic, a method change the
  spectra. The cluster frames are a Points layer (one square per filter): napari's Shapes
  layer took 1.0-1.3 s on the main thread for 768 rectangles (measured here).

Lifetime
--------
When the widget leaves its dock (closed, or the viewer closes) it shuts down: its runner is
closed (late results reach nothing), progress bars in napari's activity panel are closed, and
every viewer, camera, layer and session callback is disconnected. A
new widget adopts the layers a previous one left in the viewer instead of adding copies.

Public surface for other widgets
--------------------------------
What it shows goes to the viewer's `Session` (`session_for`): the other widgets follow it
there. `bank`, `result` (properties), `layers` (role -> napari layer), `current_filter`,
`focus_filter(i)`; `export_table`, `export_kernels`, `export_view` write files.
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container

from ...base.text import printable
from ..actions import register_actions
from ..compute import (
    AUTO,
    History,
    Outcome,
    Request,
    analysis_matches,
    auto_threshold_supported,
    compute,
    summary_html,
    unanalysed,
)
from ..layer_updates import framed_bounds, update_layer
from ..legends import show_colour_bar
from ..session import session_for
from ..zoom import follow_zoom, update_index_text
from .arrange import SIDE_BY_SIDE, Arrangement
from .controls import CHECKPOINT, HISTORY, SLIDER_MIN, TORCHVISION, build_controls
from .export import Exports
from .hover import HoverText
from .jobs import qt_runner
from .lifetime import on_close, scrolled
from .navigate import Navigation
from .table import ClusterTable

if TYPE_CHECKING:
    import napari

    from ...analysis.pipeline import AnalysisResult
    from ...base.bank import KernelBank
    from ..jobs import Job

__all__ = [
    "CHECKPOINT",
    "DEBOUNCE_MS",
    "HISTORY",
    "SIDE_BY_SIDE",
    "TORCHVISION",
    "WIDGET_NAME",
    "KernelSpectrumWidget",
    "Request",
    "compute",
]

logger = logging.getLogger(__name__)

#: Display name of the widget in the manifest (``Plugins > Kernel spectrum``).
WIDGET_NAME = "Kernel spectrum"

#: Quiet time after the last change of a continuous control before a request is made.
DEBOUNCE_MS = 150
_BANK_CACHE_SIZE = 4
#: Metadata key marking layers the widget manages (a reopened widget adopts them).
_OWNER_KEY = "widget"


class KernelSpectrumWidget(ClusterTable, HoverText, Exports, Navigation, Arrangement, Container):
    """First-layer kernels, spectra and clusters of a CNN as napari layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer to draw into (injected by napari).
    autostart : bool
        Load the selected model right away (as the seed tool did).

    Notes
    -----
    What it shows is published to the viewer's `Session` (``self.session``), through which
    the Feature maps and Explain widgets follow it; ``bank_changed``, ``result_changed`` and
    ``filter_focused`` are the session's signals.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, autostart: bool = True) -> None:
        super().__init__(labels=False)
        # napari hands plugins a proxy that makes a new wrapper object on every attribute
        # access, so layers could not be told apart by identity: keep the viewer itself.
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.session = session_for(self.viewer)
        self._jobs = qt_runner(self.native)
        self._applied = 0
        # Loaded banks by (source, weights); a history folder's entry is a `History`.
        self._banks: OrderedDict[tuple[str, str], KernelBank | History] = OrderedDict()
        self._result: AnalysisResult | None = None
        self._asked: float | str | None = None  # threshold asked for `_result`
        self._bank: KernelBank | None = None
        self._history: History | None = None  # the training history shown, if any
        self._shown_request: Request | None = None  # the request the layers show
        self._failed: Request | None = None  # the last request that failed (generation 0)
        self._applying = False
        self._step: int | None = None  # its step shown by the dims slider
        self._view_of_layers: str | None = None
        self._side_of_layers = False
        self._layers: dict[str, Any] = {}
        self._auto_names: dict[str, str] = {}
        self._bounds: Any = None
        self._highlight: list[int] = []
        self._closed = False
        self._labels_layer: Any = None  # the mosaic labels (`legends.update_mosaic_labels`)
        self._focusing = False
        self._syncing = False
        self._connections: list[tuple[Any, Callable[..., Any]]] = []
        self._warned: set[str] = set()
        self.last_error: str | None = None
        self._auto_supported = auto_threshold_supported()
        scrolled(self, build_controls(self))  # three docks fit a 1920x1080 screen
        self._setup_qt()
        self._sync_source_controls()

        self.model.changed.connect(self._on_model)
        self.torchvision_name.native.editingFinished.connect(self._on_source_text)
        for path_edit in (self.checkpoint, self.history_folder):
            # A path typed by hand is taken on Enter or when the field loses focus; one
            # chosen in the dialog (or set from code) at once.
            path_edit.changed.connect(partial(self._on_path, path_edit))
            path_edit.line_edit.native.returnPressed.connect(self._on_source_text)
            path_edit.line_edit.native.editingFinished.connect(self._on_path_edited)
        self.weights.changed.connect(self.request_update)
        self.method.changed.connect(self.request_update)
        self.threshold.changed.connect(self._on_threshold)
        self.auto_threshold.changed.connect(self.request_update)
        self.min_samples.changed.connect(self._schedule_update)
        self.view.changed.connect(self.request_update)
        self.show_.changed.connect(self._on_show)
        self.focus.changed.connect(self.focus_filter)
        self.focus_button.changed.connect(lambda: self.focus_filter(self.focus.value))
        self.fit_button.changed.connect(self._fit)
        self.export_table_button.changed.connect(lambda: self._export_dialog("table"))
        self.export_kernels_button.changed.connect(lambda: self._export_dialog("kernels"))
        self.export_view_button.changed.connect(lambda: self._export_dialog("view"))
        self._connect(self.viewer.cursor.events.position, self._on_cursor)
        self._connect(self.viewer.events.status, self._on_status)
        self._connect(self.viewer.layers.events.removed, self._on_layer_removed)
        self._connect(self.viewer.layers.events.inserted, self._on_layer_inserted)
        self._connect(self.viewer.dims.events.current_step, self._on_dims)
        self.viewer.mouse_drag_callbacks.append(self._on_click)

        register_actions()  # shortcuts in napari's Preferences > Shortcuts
        follow_zoom(self.viewer)  # filter indices sized to the tiles at any zoom
        self._adopt_layers()
        if autostart:
            self.request_update()

    # --- Qt details ----------------------------------------------------------------------

    def _setup_qt(self) -> None:
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QSizePolicy

        self._debounce = QTimer()
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.request_update)
        self._step_signal = QTimer()
        self._step_signal.setSingleShot(True)
        self._step_signal.setInterval(DEBOUNCE_MS)
        self._step_signal.timeout.connect(self._emit_step)

        for label in (self.summary, self.hover):
            label.native.setWordWrap(True)
            # Long hover text wraps instead of widening the dock.
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.native.setMinimumWidth(10)
        self.hover.native.setMinimumHeight(3 * self.hover.native.fontMetrics().height())

        self.setup_table()
        self._connect(self.session.filter_focused, self._on_session_focus)
        self._connect(self.session.requested, self._on_session_request)

        self._watcher = on_close(self.native, self.close_widget)

    def _connect(self, emitter: Any, callback: Callable[..., Any]) -> None:
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    # --- requests ------------------------------------------------------------------------

    def source(self) -> str | None:
        """The model name or file path the controls select, or None when incomplete."""
        choice = self.model.value
        if choice == TORCHVISION:
            text = self.torchvision_name.value.strip()
            return text or None
        if choice == CHECKPOINT:
            text = str(self.checkpoint.line_edit.value).strip()
            path = Path(text).expanduser()
            return str(path) if text and path.is_file() else None
        if choice == HISTORY:
            # An empty FileEdit's value is Path("."): never load the working directory.
            text = str(self.history_folder.line_edit.value).strip()
            path = Path(text).expanduser()
            return str(path) if text and path.is_dir() else None
        return str(choice)

    def _sync_source_controls(self) -> None:
        self.torchvision_name.visible = self.model.value == TORCHVISION
        self.checkpoint.visible = self.model.value == CHECKPOINT
        self.history_folder.visible = self.model.value == HISTORY
        self.weights.enabled = self.model.value not in (CHECKPOINT, HISTORY)

    def _on_model(self) -> None:
        self._sync_source_controls()
        self.request_update()

    def _on_path(self, path_edit: Any, *args: Any) -> None:
        if not path_edit.line_edit.native.hasFocus():  # typing: wait for editingFinished
            self._on_source_text()

    def _on_path_edited(self) -> None:
        """A path field lost focus (or Enter): load what it names, unless that just failed
        (Enter, a new choice in the dialog or another model control retries)."""
        wanted = self._controls_request()
        if wanted is not None and wanted == self._failed:
            return
        self._on_source_text()

    def _on_source_text(self) -> None:
        if self.model.value in (TORCHVISION, CHECKPOINT, HISTORY):
            self.request_update()

    def _on_threshold(self) -> None:
        if self.auto_threshold.value:
            with self.auto_threshold.changed.blocked():
                self.auto_threshold.value = False
        self._schedule_update()

    def _schedule_update(self) -> None:
        """Request an update once the control has been still for `DEBOUNCE_MS`."""
        if not self._closed:
            self._debounce.start()

    @property
    def _generation(self) -> int:
        return self._jobs.generation

    def request_update(self) -> Request | None:
        """Ask for the current controls now (reusing the loaded bank and analysis).

        Returns
        -------
        Request or None
            None when the controls name no source yet (empty name, no file) or the widget
            is closed.
        """
        if self._closed:
            return None
        self._debounce.stop()
        request = self._controls_request()
        if request is None:
            what = {
                TORCHVISION: "a torchvision model name",
                HISTORY: "a folder of checkpoints",
            }.get(self.model.value, "a file")
            self.summary.value = f"Give {what}."
            return None
        return self._submit(request)

    def _controls_request(self) -> Request | None:
        """What the controls ask for (generation 0), or None when they name no source."""
        source = self.source()
        if source is None:
            return None
        threshold: float | str = round(float(self.threshold.value), 6)
        if self.auto_threshold.value and self._auto_supported:
            threshold = AUTO
        request = Request(
            generation=0,  # numbered by `_submit`
            source=source,
            weights=self.weights.value,
            method=self.method.value,
            threshold=threshold,
            min_samples=int(self.min_samples.value),
            view=self.view.value,
            history=self.model.value == HISTORY,
            side_by_side=self.show_.value == SIDE_BY_SIDE,
        )
        return replace(request, origin=self._origin())

    def _origin(self) -> tuple[float, float]:
        """Where the mosaics go: where they are, unless something else lies there now;
        else right of every other layer (`layout.beside_all`)."""
        from ..layout import beside_all, overlaps, world_extent

        ours = [*self.layers.values(), *[lay for lay in [self._labels_layer] if lay is not None]]
        shown = self._shown_request
        if shown is not None and ours:
            others = [lay for lay in self.viewer.layers if all(lay is not o for o in ours)]
            if not overlaps(world_extent(ours), world_extent(others)):
                return shown.origin
        return beside_all(self.viewer, (0.0, 0.0), skip=ours)

    def _submit(self, request: Request) -> Request:
        """Number `request` as the newest and run it (or park it behind the running one).

        Asking again for what is already on its way (a path field losing focus while its
        folder loads) changes nothing: the load in flight is not made stale.
        """
        self._debounce.stop()
        jobs, same = self._jobs, replace(request, generation=0)
        for job in (jobs.pending, jobs.running):
            if (
                job is not None
                and job.generation == jobs.generation
                and replace(job.payload, generation=0) == same
            ):
                return job.payload
        if self._shows(request):
            # Nothing to recompute (e.g. a slider moved back, or back to the shown model
            # after a failed one): it is what is shown.
            jobs.cancel()
            self._applied = jobs.generation
            if self._result is not None:
                self.last_error, self._failed = None, None
                self.summary.value = self._summary_text()
            return replace(request, generation=jobs.generation)
        return self._enqueue(request)

    def _enqueue(self, request: Request) -> Request:
        request = replace(request, generation=self._jobs.generation + 1)
        self._jobs.submit(
            prepare=partial(self._prepare, request), on_done=self._on_done, payload=request
        )
        return request

    def _shows(self, request: Request) -> bool:
        """True if the layers show what `request` asks for already."""
        cached = self._banks.get(request.bank_key)
        if (
            cached is None
            or len(self.layers) != 3
            or request.view != self._view_of_layers
            or request.side_by_side != self._side_of_layers
        ):
            return False
        if request.history:
            shown = self._history
            return (
                shown is not None
                and isinstance(cached, History)
                and shown.banks is cached.banks
                and analysis_matches(shown.results[0], request, shown.asked)
            )
        return (
            self._history is None
            and self._result is not None
            and self._shown_request is not None
            and self._shown_request.origin == request.origin
            and self._result.bank is cached
            and analysis_matches(self._result, request, self._asked)
        )

    def _prepare(self, request: Request) -> tuple[Callable[..., Outcome], str]:
        """The work `request` needs, from what is loaded when it starts (main thread)."""
        if request.history:
            return self._prepare_history(request)
        bank = self._banks.get(request.bank_key)
        if isinstance(bank, History):
            bank = None
        result = self._result if analysis_matches(self._result, request, self._asked) else None
        shown = None
        if (
            len(self.layers) == 3
            and self._result is not None
            and self._view_of_layers
            and self._history is None
        ):
            shown = (self._result, self._view_of_layers)
        what = "Loading" if bank is None else "Analysing" if result is None else "Rendering"
        desc = f"{what} {Path(request.source).name if bank is None else bank.display_name}"
        self.hover.value = f"{desc}…"
        return partial(compute, request, bank, result, shown), desc

    def _prepare_history(self, request: Request) -> tuple[Callable[..., Outcome], str]:
        cached = self._banks.get(request.bank_key)
        history = cached if isinstance(cached, History) else None
        shown = self._history
        if (
            history is None
            and shown is not None
            and self._shown_request is not None
            and self._shown_request.bank_key == request.bank_key
        ):
            history = shown  # out of the bank cache, but still what the layers show
        keep_images = False
        if history is not None and shown is not None and shown.banks is history.banks:
            history = shown  # its analyses are reused or re-cut (`_compute_history`)
            keep_images = (
                len(self.layers) == 3
                and all(lay.ndim == 3 for lay in self.layers.values())
                and bool(shown.results)
                and shown.results[0].method == request.method
                and self._view_of_layers == request.view
            )
        name = Path(request.source).name
        if history is None:
            desc = f"Loading the checkpoints of {name}"
        elif not history.results or not analysis_matches(
            history.results[0], request, history.asked
        ):
            desc = f"Analysing {len(history)} steps of {name}"
        else:
            desc = f"Rendering {name}"
        self.hover.value = f"{desc}…"
        work = partial(
            compute, request, None, None, None, history=history, keep_images=keep_images
        )
        return work, desc

    def _on_done(self, job: Job) -> None:
        """A job finished (main thread): warnings, then its result or error."""
        if self._closed:
            return
        for message in job.warnings:
            self._on_warned((message,))
        if job.error is not None:
            self._on_errored(job.payload.generation, job.error)
        elif job.value is not None:
            self._on_returned(job.value)
        if self._jobs.pending is None and self.hover.value.endswith("…"):
            self.hover.value = ""

    @property
    def busy(self) -> bool:
        """True while the newest request has not been applied (or one is about to be made)."""
        if self._closed:
            return False
        return (
            self._applied < self._jobs.generation
            or self._debounce.isActive()
            or self._jobs.pending is not None
        )

    @property
    def _running(self) -> int:
        """Number of running workers (0 or 1)."""
        return int(self._jobs.running is not None)

    def _on_errored(self, generation: int, exc: BaseException) -> None:
        # Not a user mistake (those come back as Outcome.error): log it with its traceback
        # and stop waiting for it.
        if self._closed:
            return
        logger.error("kernelspec worker failed", exc_info=exc)
        if generation >= self._jobs.generation:
            self._applied = generation
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.summary.value = f"Error: {html.escape(self.last_error)}"

    def _on_warned(self, args: tuple[Any, ...]) -> None:
        """Show a warning raised in the worker (e.g. untrained weights) as a notification."""
        if self._closed or not args:
            return
        from napari.utils.notifications import show_warning

        message = str(args[0])
        if message not in self._warned:
            self._warned.add(message)
            show_warning(message)

    def _on_returned(self, outcome: Outcome) -> None:
        if self._closed:
            return
        request = outcome.request
        loaded = unanalysed(outcome.history) if outcome.history is not None else outcome.bank
        if loaded is not None:
            self._banks[request.bank_key] = loaded
            self._banks.move_to_end(request.bank_key)
            while len(self._banks) > _BANK_CACHE_SIZE:
                self._banks.popitem(last=False)
        if outcome.cancelled or request.generation < self._jobs.generation:
            return  # stale: a newer request is on its way
        self._applied = request.generation
        if outcome.error is not None:
            from napari.utils.notifications import show_error

            self.last_error = outcome.error
            self._failed = replace(request, generation=0)
            self.summary.value = f"Error: {html.escape(outcome.error)}"
            show_error(outcome.error)
            return
        self.last_error, self._failed = None, None
        self._apply(outcome)

    # --- layers (main thread only) -------------------------------------------------------

    def _adopt_layers(self) -> None:
        """Take over the layers a previous widget of this viewer left behind."""
        found: dict[str, Any] = {}
        for lay in self.viewer.layers:
            meta = lay.metadata.get("kernelspec") if isinstance(lay.metadata, dict) else None
            if isinstance(meta, dict) and meta.get(_OWNER_KEY) and meta.get("role"):
                found[str(meta["role"])] = lay
        if set(found) == {"kernels", "spectra", "clusters"}:
            self._layers = found
            self._auto_names = {role: lay.name for role, lay in found.items()}
            for lay in found.values():
                self._watch_layer(lay)

    def _watch_layer(self, layer: Any) -> None:
        # The layer itself is bound in (a napari event's `source` is not always the layer).
        self._connect(layer.events.visible, partial(self._on_layer_visible, layer))

    def _apply(self, outcome: Outcome) -> None:
        # Layers are removed and added below: the dims events that fires must not be taken
        # for a slider move through the previous history (`_on_dims`).
        self._applying = True
        try:
            self._apply_outcome(outcome)
        finally:
            self._applying = False
        self._step_signal.stop()  # this apply announced the step it shows

    def _apply_outcome(self, outcome: Outcome) -> None:
        from ..layers import spectrum_colormap

        result = outcome.result
        assert result is not None
        for data in outcome.layers:
            data.kwargs["metadata"]["kernelspec"][_OWNER_KEY] = True
        alive = self.layers
        ndim = 3 if outcome.history is not None else 2
        if len(alive) < 3 or any(lay.ndim != ndim for lay in alive.values()):
            # First run, the user deleted one of our layers, or a switch between a history
            # (a leading step axis) and one model: (re)create all three.
            if any(d.data is None for d in outcome.layers):
                self._rebuild(outcome)  # pixels were left out for layers that are gone
                return
            labels = [lay for lay in [self._labels_layer] if lay in self.viewer.layers]
            for lay in [*alive.values(), *labels]:  # all go: napari resets the new step axis
                self.viewer.layers.remove(lay)
            self._labels_layer = None
            self._layers = {}
            for data in outcome.layers:
                kwargs = dict(data.kwargs)
                if data.role == "spectra":
                    kwargs["colormap"] = spectrum_colormap()
                add = getattr(self.viewer, f"add_{data.layer_type}")
                layer = add(data.data, **kwargs)
                self._layers[data.role] = layer
                self._auto_names[data.role] = layer.name
                self._watch_layer(layer)
        else:
            # Another model reuses the same three layers: removing a napari layer costs a
            # full garbage collection (about 0.2 s each), updating one does not.
            for data in outcome.layers:
                layer = self._layers[data.role]
                update_layer(layer, data)
                name = data.kwargs["name"]
                if layer.name == self._auto_names.get(data.role):  # not renamed by the user
                    layer.name = name
                    self._auto_names[data.role] = layer.name
        show_colour_bar(self._layers["spectra"])  # the spectra's value range
        clusters = self._layers["clusters"]
        clusters.editable = False  # frames are not for dragging or deleting
        with contextlib.suppress(Exception):
            if self.viewer.layers.selection.active is clusters:
                self.viewer.layers.selection.active = self._layers["kernels"]
        bounds = framed_bounds(clusters.metadata["kernelspec"])
        if bounds != self._bounds:
            self._bounds = bounds
            self._fit()
        update_index_text(self.viewer)
        self._history = outcome.history
        self._step = None
        if outcome.history is not None:
            self._step = self._dims_step()
            result = outcome.history.results[self._step]
        self._bank = result.bank
        self._result = result
        self._view_of_layers = outcome.request.view
        self._side_of_layers = outcome.request.side_by_side
        self._shown_request = outcome.request
        self._asked = outcome.request.threshold
        if outcome.request.threshold == AUTO:
            with self.threshold.changed.blocked():
                self.threshold.value = float(np.clip(result.threshold, SLIDER_MIN, 0.999))
        with self.focus.changed.blocked():
            self.focus.max = max(0, result.n_filters - 1)
        self._apply_visibility()
        self._refresh_thumbnails()
        self._update_table(result)
        self.summary.value = self._summary_text()
        self._highlight = []
        self._refresh_hover()
        self._publish()

    def _summary_text(self) -> str:
        assert self._result is not None
        text = summary_html(self._result)
        if self._history is not None and self._step is not None:
            name = html.escape(printable(self._history.steps[self._step]))
            text += (
                f"<br>step <b>{name}</b> ({self._step + 1} of {len(self._history)}) · "
                "the dims slider scrubs through training"
            )
        return text

    def _dims_step(self) -> int:
        """The history step under napari's dims slider (0 when not known)."""
        history, layer = self._history, self.layers.get("kernels")
        if history is None or layer is None or layer.ndim != 3:
            return 0
        point = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        t = point[0] if point.size and np.isfinite(point[0]) else 0.0
        return int(np.clip(round(float(t)), 0, len(history) - 1))

    def _on_dims(self, event: Any = None) -> None:
        """The dims slider moved: show the step's clusters, table and summary."""
        if self._closed or self._applying or self._history is None or not self._history.results:
            return
        step = self._dims_step()
        if step == self._step:
            return
        self._step = step
        result = self._history.results[step]
        self._bank, self._result = result.bank, result
        if self._asked == AUTO:  # each step has its own automatic threshold
            with self.threshold.changed.blocked():
                self.threshold.value = float(np.clip(result.threshold, SLIDER_MIN, 0.999))
        self._update_table(result)
        self.summary.value = self._summary_text()
        self._refresh_thumbnails()
        self._refresh_legends(labels=False)  # the step's tiles under the indices
        self._refresh_hover()
        # Linked widgets (feature maps, explain) follow once the slider pauses.
        self._step_signal.start()

    def _emit_step(self) -> None:
        if self._closed or self._result is None:
            return
        self._publish()

    def _publish(self) -> None:
        """Tell the viewer's session (and so the linked widgets) what is shown now."""
        assert self._result is not None
        history, request = self._history, self._shown_request
        self.session.show(
            self._result,
            source=request.source if request is not None else None,
            steps=history.steps if history is not None else (),
            step=self._step,
        )

    def _rebuild(self, outcome: Outcome) -> None:
        """The layers vanished while a partial update was computed: compute them all."""
        self._result = None
        self._view_of_layers = None
        self._enqueue(outcome.request)

    def _on_layer_inserted(self, event: Any = None) -> None:
        """A layer added where the mosaics lie (an image, the filter map) moves them aside."""
        layer = getattr(event, "value", None)
        shown = self._shown_request
        if self._closed or self._applying or layer is None or shown is None:
            return
        if any(layer is own for own in self._layers.values()):
            return
        if self._origin() != shown.origin:
            self.request_update()

    def _on_layer_removed(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        for _role, lay in list(self._layers.items()):
            if lay is layer:
                self._disconnect_layer(lay)

    def _disconnect_layer(self, layer: Any) -> None:
        keep = []
        for emitter, callback in self._connections:
            if getattr(callback, "args", (None,))[:1] == (layer,):
                with contextlib.suppress(Exception):
                    emitter.disconnect(callback)
            else:
                keep.append((emitter, callback))
        self._connections = keep

    @property
    def layers(self) -> dict[str, Any]:
        """The widget's current layers by role (``kernels``, ``spectra``, ``clusters``)."""
        return {role: lay for role, lay in self._layers.items() if lay in self.viewer.layers}

    @property
    def result(self) -> AnalysisResult | None:
        """The analysis shown now."""
        return self._result

    @property
    def bank(self) -> KernelBank | None:
        """The filters shown now."""
        return self._bank

    @property
    def current_filter(self) -> int | None:
        """The focused filter (a click, a table row, a shortcut, `focus_filter`, another
        widget): the session's."""
        return self.session.current_filter

    @property
    def bank_changed(self) -> Any:
        """The session's ``bank_changed(bank)`` signal."""
        return self.session.bank_changed

    @property
    def result_changed(self) -> Any:
        """The session's ``result_changed(result)`` signal."""
        return self.session.result_changed

    @property
    def filter_focused(self) -> Any:
        """The session's ``filter_focused(index)`` signal."""
        return self.session.filter_focused

    # --- lifetime ------------------------------------------------------------------------

    def wait_idle_condition(self) -> bool:
        """True once the newest request is applied and no worker runs (for tests)."""
        return not self.busy and self._jobs.running is None

    @property
    def closed(self) -> bool:
        """True once the widget left its dock: it then does nothing more."""
        return self._closed

    def close_widget(self) -> None:
        """Stop for good: quit and detach workers, close progress, disconnect every callback.

        Called when the widget leaves its dock (closed by the user, or the viewer closes);
        safe to call more than once. The layers stay in the viewer; a new widget adopts them.
        """
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):
            self._debounce.stop()
            self._step_signal.stop()
        self._jobs.close()  # a running job sees it is stale and reports nothing
        for emitter, callback in self._connections:
            with contextlib.suppress(Exception):
                emitter.disconnect(callback)
        self._connections = []
        with contextlib.suppress(Exception):
            self.viewer.mouse_drag_callbacks.remove(self._on_click)
