"""The napari widget: pick a model, see its first-layer kernels, spectra and clusters.

A thin front end: loading (`load_kernels`), analysis (`analyze`) and the layer data
(`_napari.layers`) all run in a worker thread; this module turns controls into requests and
hands finished arrays to layers in the main thread.

Sources: the seed models, any torchvision name, a checkpoint file, or a folder of checkpoints
of one model: a training history (`History`), shown with a leading step axis that napari's
dims slider scrubs; the widget's current result, table and summary follow the step.
Arrangements: the kernels or the spectra, or both side by side with one set of frames.

Responsiveness
--------------
- Continuous controls (threshold slider, min samples) are debounced (`DEBOUNCE_MS`): a drag
  makes one request when it pauses, not one per intermediate value.
- One worker runs at a time; a request made while it runs waits in a single slot that the next
  request replaces, so superseded requests are dropped before they start. A running worker
  checks between its stages (load, analysis, layer data) whether it is still wanted.
- Only what changed is rebuilt and handed over: a threshold change rebuilds the per-filter
  points and metadata (no image data), a view change the kernel mosaic, a method change the
  spectra. The cluster frames are a Points layer (one square per filter): napari's Shapes
  layer took 1.0-1.3 s on the main thread for 768 rectangles (measured here).

Lifetime
--------
When the widget leaves its dock (closed, or the viewer closes) it shuts down: workers are
detached (daemon threads whose late results reach nothing), progress bars in napari's
activity panel are closed, and every viewer, camera and layer callback is disconnected. A
new widget adopts the layers a previous one left in the viewer instead of adding copies.

Public surface for other widgets
--------------------------------
`bank`, `result` (properties), `layers` (role -> napari layer), `current_filter`,
`focus_filter(i)`, and the psygnal signals `bank_changed(bank)`, `result_changed(result)`,
`filter_focused(index)`; `export_table`, `export_kernels`, `export_view` write files.
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    Table,
)
from psygnal import Signal

from ...analysis.pipeline import DEFAULT_MIN_SAMPLES, DEFAULT_THRESHOLD
from ...analysis.views import VIEW_LABELS, VIEWS
from ...base.errors import KernelSpecError
from ...base.text import printable
from ...sources.loading import WEIGHTS
from ...sources.models import SEED_MODELS
from ..zoom import camera_of, follow_zoom, update_index_text

if TYPE_CHECKING:
    import os

    import napari

    from ...analysis.pipeline import AnalysisResult
    from ...base.bank import KernelBank
    from ..layers import LayerData

__all__ = ["DEBOUNCE_MS", "WIDGET_NAME", "KernelSpectrumWidget", "Request", "compute"]

logger = logging.getLogger(__name__)

#: Display name of the widget in the manifest (``Plugins > Kernel spectrum``).
WIDGET_NAME = "Kernel spectrum"

#: Quiet time after the last change of a continuous control before a request is made.
DEBOUNCE_MS = 150

TORCHVISION = "__torchvision__"
CHECKPOINT = "__checkpoint__"
HISTORY = "__history__"
SHOW = ("kernels", "spectra")
#: The "show" choice with both mosaics next to each other, framed by one set of frames.
SIDE_BY_SIDE = "side by side"
AUTO = "auto"
#: Lowest value of the threshold slider: automatic thresholds of large kernels reach 0.4.
SLIDER_MIN = 0.05
_BANK_CACHE_SIZE = 4
_DEFAULT_VIEW = "colour"
#: The view "raw" shows input channel 0 only: say so where it is chosen.
_VIEW_CHOICE_LABELS = {"raw": "raw weights (channel 0)"}
#: Metadata key marking layers the widget manages (a reopened widget adopts them).
_OWNER_KEY = "widget"
_HOVER_MARK = "  ▸ "
#: Share of the canvas the fitted mosaic fills (the rest is margin around the frames).
_FIT_FILL = 0.92


@dataclass(frozen=True)
class Request:
    """Everything one update needs, frozen when the controls changed.

    Attributes
    ----------
    generation : int
        Request number; only the newest one is applied.
    source : str
        Model name or file path.
    weights : {"auto", "pretrained", "random"}
    method : {"response", "seed"}
    threshold : float or "auto"
        "auto" lets the analysis choose it from the chance level (where supported).
    min_samples : int
    view : str
        One of `views.VIEWS`.
    history : bool
        `source` is a folder of checkpoints of one model: a training history.
    side_by_side : bool
        The kernels to the right of the spectra (`layers.beside`), framed on both.
    """

    generation: int
    source: str
    weights: str
    method: str
    threshold: float | str
    min_samples: int
    view: str
    history: bool = False
    side_by_side: bool = False

    @property
    def bank_key(self) -> tuple[str, str]:
        return self.source, self.weights

    @property
    def analysis_key(self) -> tuple[str, float | str, int]:
        return self.method, self.threshold, self.min_samples


@dataclass(frozen=True)
class History:
    """A training history as the widget holds it.

    Attributes
    ----------
    banks : tuple of KernelBank
        One per step (T), all of one shape.
    steps : tuple of str
        Step names.
    results : tuple of AnalysisResult
        One analysis per step; empty until analysed.
    asked : float or "auto" or None
        The threshold asked for `results` ("auto" or a number).
    """

    banks: tuple[KernelBank, ...]
    steps: tuple[str, ...]
    results: tuple[AnalysisResult, ...] = ()
    asked: float | str | None = None

    def __len__(self) -> int:
        return len(self.banks)


@dataclass
class Outcome:
    """What a worker hands back to the main thread.

    Attributes
    ----------
    request : Request
    bank : KernelBank or None
    result : AnalysisResult or None
    layers : list of LayerData
        One per role; ``data`` is None where the layer's pixels do not change (only its
        metadata does), e.g. both images after a threshold change.
    error : str or None
        The one-line message of a `KernelSpecError`.
    cancelled : bool
        The request was superseded while the worker ran; nothing to apply.
    history : History or None
        For a history request: the loaded steps (and their analyses once done); ``result``
        is then the first step's analysis.
    """

    request: Request
    bank: KernelBank | None = None
    result: AnalysisResult | None = None
    layers: list[LayerData] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False
    history: History | None = None


def analysis_matches(
    result: AnalysisResult | None, request: Request, asked: float | str | None = None
) -> bool:
    """True if `result` is the analysis `request` asks for (bank aside).

    `asked` is the threshold of the request that produced `result` ("auto" or a number):
    an automatic threshold matches only another automatic one, whatever value it chose.
    """
    if result is None:
        return False
    if (result.method, result.min_samples) != (request.method, request.min_samples):
        return False
    if AUTO in (request.threshold, asked):
        return request.threshold == asked
    return math.isclose(float(result.threshold), float(request.threshold), abs_tol=5e-7)


def compute(
    request: Request,
    bank: KernelBank | None = None,
    result: AnalysisResult | None = None,
    shown: tuple[AnalysisResult, str] | None = None,
    is_stale: Callable[[], bool] = lambda: False,
    history: History | None = None,
    keep_images: bool = False,
) -> Outcome:
    """Do what `request` needs that is not done yet (runs in a worker thread, no Qt).

    Parameters
    ----------
    request : Request
    bank : KernelBank, optional
        The already loaded bank of ``request.bank_key``; loaded when None.
    result : AnalysisResult, optional
        The analysis of `bank` that `request` asks for, if already computed.
    shown : (AnalysisResult, str), optional
        What the layers show now (analysis and kernel view): pixels that would not change
        are not rebuilt. None rebuilds everything.
    is_stale : callable
        Returns True once a newer request exists; checked between stages.
    history : History, optional
        For a history request: the steps already loaded, with their analyses if those are
        what `request` asks for (`bank`, `result` and `shown` are then unused).
    keep_images : bool
        For a history request: the layers show these steps' mosaics already (same banks,
        method and view), so only the frames and metadata are built.

    Returns
    -------
    Outcome
        With ``error`` set instead of raising for a `KernelSpecError`.
    """
    from .. import layers as _layers

    if request.history:
        return _compute_history(request, history, is_stale, keep_images)
    try:
        if bank is None:
            from ...sources.loading import load_kernels
            from ..commands import preload_torch

            preload_torch()
            bank = load_kernels(request.source, weights=request.weights)
        if is_stale():
            return Outcome(request, bank=bank, cancelled=True)
        old = shown[0] if shown is not None else None
        if (result is None or result.bank is not bank) and _can_rethreshold(old, bank, request):
            # A threshold change: clusters and pairs from the shown analysis' similarity
            # matrices (milliseconds, not the whole analysis). None for a newer result type.
            from ...analysis import pipeline

            result = pipeline.rethreshold(old, float(request.threshold))  # type: ignore[arg-type]
        if result is None or result.bank is not bank:
            from ...analysis.pipeline import analyze

            result = analyze(
                bank,
                method=request.method,
                threshold=request.threshold,  # type: ignore[arg-type]
                min_samples=request.min_samples,
            )
        if is_stale():
            return Outcome(request, bank=bank, result=result, cancelled=True)
        geometry = _layers.result_geometry(result)
        kernels_at = _layers.beside(geometry) if request.side_by_side else None
        old, old_view = shown if shown is not None else (None, None)
        same_bank = old is not None and old.bank is bank
        same_spectra = same_bank and old is not None and old.method == result.method
        spectra = _layers.spectra_layer(result, geometry, with_data=not same_spectra)
        kernels = _layers.kernels_layer(
            result,
            request.view,
            kernels_at or geometry,
            with_data=not (same_bank and old_view == request.view),
        )
        built = [spectra, kernels, _layers.clusters_layer(result, geometry, kernels_at=kernels_at)]
    except KernelSpecError as exc:
        return Outcome(request, bank=bank, error=str(exc))
    return Outcome(request, bank=bank, result=result, layers=built)


def _compute_history(
    request: Request,
    history: History | None,
    is_stale: Callable[[], bool],
    keep_images: bool = False,
) -> Outcome:
    """`compute` for a folder of checkpoints: load the steps, analyse each, stack the layers.

    The steps of `history` are reused when given; so are its analyses (a view change), or
    they are re-cut at a new threshold with `pipeline.rethreshold` (a slider move).
    """
    from ...analysis import pipeline
    from ..history import check_history_memory, history_label, history_layer_data, load_steps

    def analyse(bank: KernelBank) -> AnalysisResult:
        return pipeline.analyze(
            bank,
            method=request.method,
            threshold=request.threshold,  # type: ignore[arg-type]
            min_samples=request.min_samples,
        )

    first = None
    try:
        if history is None:
            from ..commands import preload_torch

            preload_torch()
            loaded = load_steps(request.source, analyse, is_stale)
            if loaded is None:
                return Outcome(request, cancelled=True)
            banks, steps, first = loaded
            history = History(tuple(banks), tuple(steps))
        if not history.results or not analysis_matches(history.results[0], request, history.asked):
            old = history.results or (None,) * len(history)
            results: list[AnalysisResult] = []
            for bank, previous in zip(history.banks, old, strict=True):
                result = first if not results else None
                if (
                    result is None
                    and previous is not None
                    and _can_rethreshold(previous, bank, request)
                ):
                    result = pipeline.rethreshold(previous, float(request.threshold))  # type: ignore[arg-type]
                if result is None:  # (rethreshold: None for a result type it does not know)
                    result = analyse(bank)
                    if not results:  # another method or min samples: check the memory again
                        check_history_memory(result, len(history))
                results.append(result)
                if is_stale():
                    return Outcome(request, history=_unanalysed(history), cancelled=True)
            history = replace(history, results=tuple(results), asked=request.threshold)
        built = history_layer_data(
            history.results,
            history.steps,
            request.view,
            history_label(request.source),
            side_by_side=request.side_by_side,
            with_images=not keep_images,
        )
    except KernelSpecError as exc:
        return Outcome(request, error=str(exc), history=history)
    return Outcome(request, result=history.results[0], layers=built, history=history)


def _unanalysed(history: History) -> History:
    return replace(history, results=(), asked=None)


def _can_rethreshold(
    old: AnalysisResult | None, bank: KernelBank | None, request: Request
) -> bool:
    return (
        old is not None
        and old.bank is bank
        and request.threshold != AUTO
        and (old.method, old.min_samples) == (request.method, request.min_samples)
    )


class _Latest:
    """The newest request number and whether the widget closed (read by worker threads)."""

    def __init__(self) -> None:
        self.generation = 0
        self.closed = False

    def stale(self, generation: int) -> bool:
        return self.closed or generation < self.generation


#: Worker threads still running, joined (bounded) when the interpreter exits.
_RUNNING: set[threading.Thread] = set()
_EXIT_WAIT_S = 60.0


def _track(thread: threading.Thread) -> None:
    if not _RUNNING:
        import atexit

        atexit.unregister(_join_running)  # registered once
        atexit.register(_join_running)
    _RUNNING.add(thread)


def _join_running() -> None:
    """Let loads that outlive the viewer finish before the interpreter tears down.

    A daemon thread still inside torch when Python exits ends the process with C++'s
    "terminate called without an active exception" (SIGABRT, seen when only the widget was
    closed and the script exited during a slow load). Joining here, after napari has closed,
    costs at most one load and reports nothing (the widget is closed).
    """
    import time

    deadline = time.monotonic() + _EXIT_WAIT_S
    for thread in list(_RUNNING):
        thread.join(max(0.0, deadline - time.monotonic()))


class _Job:
    """One `compute` call on a daemon thread, reported back through a Qt signal.

    A daemon thread, not a Qt thread pool: a load cannot be interrupted, and a pool thread
    still running when the viewer closes reported into deleted Qt objects and aborted the
    process (exit 134). A daemon thread never keeps the process alive, and once the widget
    closed it reports nothing.
    """

    def __init__(
        self, request: Request, run: Callable[[], Outcome], latest: _Latest, bridge: Any
    ) -> None:
        self.request = request
        self._run = run
        self._latest = latest
        self._bridge = bridge
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.warnings: list[str] = []

    def start(self) -> None:
        thread = threading.Thread(target=self._main, name="kernelspec-worker", daemon=True)
        _track(thread)
        thread.start()

    def _main(self) -> None:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.outcome = self._run()
            except Exception as exc:  # reported on the main thread with its traceback
                self.error = exc
        self.warnings = [str(w.message) for w in caught]
        _RUNNING.discard(threading.current_thread())
        if self._latest.closed:
            return
        with contextlib.suppress(RuntimeError):  # the widget was deleted meanwhile
            self._bridge.done.emit(self)


class _NullFile:
    """A file that drops what is written: napari's progress must never print to a terminal."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class KernelSpectrumWidget(Container):
    """First-layer kernels, spectra and clusters of a CNN as napari layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer to draw into (injected by napari).
    autostart : bool
        Load the selected model right away (as the seed tool did).

    Signals
    -------
    bank_changed(KernelBank)
        A different bank is shown (model, weights or file changed).
    result_changed(AnalysisResult)
        A new analysis is shown (any control that changes the analysis).
    filter_focused(int)
        A filter was chosen: `focus_filter`, a click on a tile, a table row, ``]`` / ``[``.
    """

    bank_changed = Signal(object)
    result_changed = Signal(object)
    filter_focused = Signal(int)

    def __init__(self, napari_viewer: napari.viewer.Viewer, autostart: bool = True) -> None:
        super().__init__(labels=True)
        # napari hands plugins a proxy that makes a new wrapper object on every attribute
        # access, so layers could not be told apart by identity: keep the viewer itself.
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self._latest = _Latest()
        self._applied = 0
        self._worker: Any = None
        self._pending: Request | None = None
        self._progress: Any = None
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
        self._current_filter: int | None = None
        self._highlight: list[int] = []
        self._closed = False
        self._syncing = False
        self._connections: list[tuple[Any, Callable[..., Any]]] = []
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self._auto_supported = _auto_threshold_supported()

        model_choices = [(name, key) for key, name in SEED_MODELS.items()]
        model_choices += [
            ("torchvision model…", TORCHVISION),
            ("checkpoint file…", CHECKPOINT),
            ("training history (folder)…", HISTORY),
        ]
        self.model = ComboBox(label="model", choices=model_choices, value="alexnet")
        self.torchvision_name = LineEdit(
            label="torchvision name", value="", tooltip="e.g. convnext_tiny, vit_b_16 (Enter)"
        )
        self.checkpoint = FileEdit(
            label="checkpoint",
            mode="r",
            filter="Weights (*.pth *.pt *.ckpt *.safetensors *.npy *.npz)",
        )
        self.history_folder = FileEdit(
            label="checkpoint folder",
            mode="d",
            tooltip="a folder of checkpoints of one model (epoch_000.pt, epoch_001.pt, …, in "
            "natural order of their names); napari's dims slider then scrubs through training",
        )
        self.weights = ComboBox(
            label="weights",
            choices=list(WEIGHTS),
            value="auto",
            tooltip="auto: pretrained if available, else random (untrained) with a warning",
        )
        self.view = ComboBox(
            label="view",
            choices=[(_VIEW_CHOICE_LABELS.get(v, VIEW_LABELS[v]), v) for v in VIEWS],
            value=_DEFAULT_VIEW,
            tooltip="raw weights: input channel 0 only, one grey scale for all filters; "
            "hover a kernel to read every channel's raw weight",
        )
        self.method = ComboBox(
            label="spectrum",
            choices=[("response (cycles/pixel)", "response"), ("seed (resized FFT)", "seed")],
            value="response",
        )
        self.threshold = FloatSlider(
            label="similarity ≥",
            min=SLIDER_MIN,
            max=0.999,
            step=0.001,
            value=DEFAULT_THRESHOLD,
            tooltip="tuning-similarity threshold of clusters (response: correlation of the "
            "spectra' shapes, whose chance level is near 0; seed: cosine of the seed spectra); "
            "a fixed number also sets duplicates and sign pairs",
        )
        self.auto_threshold = CheckBox(
            text="auto (from the chance level)",
            value=self._auto_supported,
            enabled=self._auto_supported,
            label="",
            tooltip="let the analysis pick the threshold that random filters of this shape "
            "rarely reach; moving the slider turns this off",
        )
        self.min_samples = SpinBox(label="min samples", min=1, max=4096, value=DEFAULT_MIN_SAMPLES)
        self.show_ = ComboBox(
            label="show",
            choices=[*SHOW, SIDE_BY_SIDE],
            value="kernels",
            tooltip="side by side: the kernels right of the spectra, each filter framed on "
            "both; \\ toggles kernels and spectra; ] and [ step through the filters",
        )
        self.focus = SpinBox(label="focus filter", min=0, max=0, value=0)
        self.focus_button = PushButton(text="zoom to filter")
        self.fit_button = PushButton(text="show all")
        self.export_table_button = PushButton(text="table CSV…")
        self.export_kernels_button = PushButton(text="kernels .npy…")
        self.export_view_button = PushButton(text="view PNG…")
        self.summary = Label(label="", value="")
        self.hover = Label(label="", value="")
        self.table = Table(value=_table_value([]), label="")
        self.table.read_only = True
        self.extend(
            [
                self.model,
                self.torchvision_name,
                self.checkpoint,
                self.history_folder,
                self.weights,
                self.view,
                self.method,
                self.threshold,
                self.auto_threshold,
                self.min_samples,
                self.show_,
                self.focus,
                Container(
                    widgets=[self.focus_button, self.fit_button], layout="horizontal", label=""
                ),
                Container(
                    widgets=[
                        self.export_table_button,
                        self.export_kernels_button,
                        self.export_view_button,
                    ],
                    layout="horizontal",
                    label="export",
                ),
                self.summary,
                self.hover,
                self.table,
            ]
        )
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
        self._connect(self.viewer.dims.events.current_step, self._on_dims)
        self.viewer.mouse_drag_callbacks.append(self._on_click)

        follow_zoom(self.viewer)  # filter indices sized to the tiles at any zoom
        self._adopt_layers()
        if autostart:
            self.request_update()

    # --- Qt details ----------------------------------------------------------------------

    def _setup_qt(self) -> None:
        from qtpy.QtCore import QEvent, QObject, Qt, QTimer
        from qtpy.QtCore import Signal as QtSignal
        from qtpy.QtGui import QKeySequence, QShortcut
        from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy

        class _Bridge(QObject):
            done = QtSignal(object)

        self._bridge = _Bridge(self.native)
        self._bridge.done.connect(self._on_done)

        self._debounce = QTimer()
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.request_update)
        self._step_signal = QTimer()
        self._step_signal.setSingleShot(True)
        self._step_signal.setInterval(DEBOUNCE_MS)
        self._step_signal.timeout.connect(self._emit_step)
        self._announced: KernelBank | None = None  # the bank of the last bank_changed

        for label in (self.summary, self.hover):
            label.native.setWordWrap(True)
            # Long hover text wraps instead of widening the dock.
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.native.setMinimumWidth(10)
        self.hover.native.setMinimumHeight(3 * self.hover.native.fontMetrics().height())

        table = self.table.native
        table.verticalHeader().setVisible(False)  # row numbers repeated the cluster column
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setWordWrap(True)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        table.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        table.itemSelectionChanged.connect(self._on_table_selection)
        table.cellDoubleClicked.connect(self._on_table_double_click)

        native = self.native
        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        self._shortcuts = []
        for key, slot in (
            ("]", lambda: self.step_filter(1)),
            ("[", lambda: self.step_filter(-1)),
            ("\\", self.toggle_show),
        ):
            shortcut = QShortcut(QKeySequence(key), native)
            shortcut.setContext(context)
            shortcut.activated.connect(slot)
            self._shortcuts.append(shortcut)

        widget = self

        class _Watcher(QObject):
            """Shuts the widget down when it leaves its dock (closed, or the viewer closes)."""

            def eventFilter(self, obj: Any, event: Any) -> bool:
                if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
                    widget.close_widget()
                return False

        self._watcher = _Watcher(native)
        native.installEventFilter(self._watcher)
        native.destroyed.connect(self._on_destroyed)

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
        return self._latest.generation

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
        return request

    def _submit(self, request: Request) -> Request:
        """Number `request` as the newest and run it (or park it behind the running one).

        Asking again for what is already on its way (a path field losing focus while its
        folder loads) changes nothing: the load in flight is not made stale.
        """
        self._debounce.stop()
        same = replace(request, generation=0)
        if self._pending is not None and replace(self._pending, generation=0) == same:
            return self._pending
        running = self._worker.request if self._worker is not None else None
        if (
            running is not None
            and self._pending is None
            and running.generation == self._latest.generation
            and replace(running, generation=0) == same
        ):
            return running
        self._latest.generation += 1
        request = replace(request, generation=self._latest.generation)
        if self._shows(request):
            # Nothing to recompute (e.g. a slider moved back, or back to the shown model
            # after a failed one): it is what is shown.
            self._pending = None
            self._applied = request.generation
            if self._result is not None:
                self.last_error, self._failed = None, None
                self.summary.value = self._summary_text()
            return request
        if self._worker is not None:
            self._pending = request  # replaces (drops) any older waiting request
        else:
            self._start(request)
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
            and self._result.bank is cached
            and analysis_matches(self._result, request, self._asked)
        )

    def _start(self, request: Request) -> None:
        if request.history:
            self._start_history(request)
            return
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
        latest, generation = self._latest, request.generation

        def latest_is_stale() -> bool:
            return latest.stale(generation)

        self._run_job(
            request, desc, lambda: compute(request, bank, result, shown, latest_is_stale)
        )

    def _run_job(self, request: Request, desc: str, run: Callable[[], Outcome]) -> None:
        job = _Job(request=request, run=run, latest=self._latest, bridge=self._bridge)
        self._worker = job
        self._open_progress(desc)
        self.hover.value = f"{desc}…"
        job.start()

    def _start_history(self, request: Request) -> None:
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
        latest, generation = self._latest, request.generation
        self._run_job(
            request,
            desc,
            lambda: compute(
                request,
                is_stale=lambda: latest.stale(generation),
                history=history,
                keep_images=keep_images,
            ),
        )

    def _on_done(self, job: _Job) -> None:
        """A job finished (main thread): warnings, then its result or error, then the next."""
        if self._closed or job is not self._worker:
            return
        for message in job.warnings:
            self._on_warned((message,))
        if job.error is not None:
            self._on_errored(job.request.generation, job.error)
        elif job.outcome is not None:
            self._on_returned(job.outcome)
        self._on_finished(job)

    def _open_progress(self, desc: str) -> None:
        """An indeterminate bar in napari's activity panel (never printed to a terminal)."""
        from napari.utils import progress

        self._close_progress()
        try:
            self._progress = progress(total=0, desc=desc, file=_NullFile(), leave=False)
        except Exception:  # the activity panel is optional: never fail a request on it
            logger.debug("no activity progress", exc_info=True)
            self._progress = None

    def _close_progress(self) -> None:
        bar, self._progress = self._progress, None
        if bar is not None:
            with contextlib.suppress(Exception):
                bar.close()

    @property
    def busy(self) -> bool:
        """True while the newest request has not been applied (or one is about to be made)."""
        return (
            self._applied < self._latest.generation
            or self._debounce.isActive()
            or self._pending is not None
        )

    @property
    def _running(self) -> int:
        """Number of running workers (0 or 1)."""
        return int(self._worker is not None)

    def _on_finished(self, worker: Any) -> None:
        if self._closed or worker is not self._worker:
            return
        self._worker = None
        self._close_progress()
        pending, self._pending = self._pending, None
        if pending is not None and pending.generation == self._latest.generation:
            self._start(pending)
        elif self.hover.value.endswith("…"):
            self.hover.value = ""

    def _on_errored(self, generation: int, exc: BaseException) -> None:
        # Not a user mistake (those come back as Outcome.error): log it with its traceback
        # and stop waiting for it.
        if self._closed:
            return
        logger.error("kernelspec worker failed", exc_info=exc)
        if generation >= self._latest.generation:
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
        loaded = _unanalysed(outcome.history) if outcome.history is not None else outcome.bank
        if loaded is not None:
            self._banks[request.bank_key] = loaded
            self._banks.move_to_end(request.bank_key)
            while len(self._banks) > _BANK_CACHE_SIZE:
                self._banks.popitem(last=False)
        if outcome.cancelled or request.generation < self._latest.generation:
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
            for lay in alive.values():
                self.viewer.layers.remove(lay)
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
                _update_layer(layer, data)
                name = data.kwargs["name"]
                if layer.name == self._auto_names.get(data.role):  # not renamed by the user
                    layer.name = name
                    self._auto_names[data.role] = layer.name
        clusters = self._layers["clusters"]
        clusters.editable = False  # frames are not for dragging or deleting
        with contextlib.suppress(Exception):
            if self.viewer.layers.selection.active is clusters:
                self.viewer.layers.selection.active = self._layers["kernels"]
        bounds = _framed_bounds(clusters.metadata["kernelspec"])
        if bounds != self._bounds:
            self._bounds = bounds
            self._fit()
        update_index_text(self.viewer)
        self._history = outcome.history
        self._step = None
        if outcome.history is not None:
            self._step = self._dims_step()
            result = outcome.history.results[self._step]
        bank_changed = self._announced is not result.bank
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
        if self._current_filter is not None and self._current_filter >= result.n_filters:
            self._current_filter = None
        self._refresh_hover()
        if bank_changed:
            self._announced = result.bank
            self.bank_changed.emit(result.bank)
        self.result_changed.emit(result)

    def _summary_text(self) -> str:
        assert self._result is not None
        text = _summary(self._result)
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
        self._refresh_hover()
        # Linked widgets (feature maps, explain) follow once the slider pauses.
        self._step_signal.start()

    def _emit_step(self) -> None:
        if self._closed or self._result is None:
            return
        if self._announced is not self._result.bank:
            self._announced = self._result.bank
            self.bank_changed.emit(self._result.bank)
        self.result_changed.emit(self._result)

    def _rebuild(self, outcome: Outcome) -> None:
        """The layers vanished while a partial update was computed: compute them all."""
        self._result = None
        self._view_of_layers = None
        self._latest.generation += 1
        self._start(replace(outcome.request, generation=self._latest.generation))

    def _on_show(self) -> None:
        side = self.show_.value == SIDE_BY_SIDE
        shown, wanted, failed = self._shown_request, self._controls_request(), self._failed
        names_nothing = wanted is None or (
            failed is not None and replace(wanted, side_by_side=failed.side_by_side) == failed
        )
        if shown is not None and names_nothing:
            # The model controls name nothing loadable now (no file yet, the name that just
            # failed): rearrange what the layers show instead.
            if not self._closed:
                self._submit(replace(shown, side_by_side=side))
        else:
            self.request_update()  # side by side: the kernels move in a worker (no reload)
        if side == self._side_of_layers:
            self._apply_visibility()  # otherwise `_apply` does it with the moved layers

    def _refresh_thumbnails(self) -> None:
        """Thumbnails of the hidden mosaics (napari updates only visible layers')."""
        for role in SHOW:
            layer = self.layers.get(role)
            if layer is not None and not layer.visible:
                thumbnail = _thumbnail(layer, self._step)
                if thumbnail is not None:
                    layer.thumbnail = thumbnail

    def _apply_visibility(self) -> None:
        show = self.show_.value
        layers = self.layers
        self._syncing = True
        try:
            for role in SHOW:
                visible = show in (role, SIDE_BY_SIDE)
                if role in layers and layers[role].visible != visible:
                    layers[role].visible = visible
        finally:
            self._syncing = False
        self._refresh_hover()  # the hover text of the layer now hidden must go

    def _on_layer_visible(self, layer: Any, event: Any = None) -> None:
        """Keep the "show" control in step with the layer list's eye buttons."""
        if self._closed or self._syncing:
            return
        if self.show_.value == SIDE_BY_SIDE:
            if not layer.visible:  # one mosaic hidden: show the other one alone
                layers = self.layers
                for role in SHOW:
                    if layers.get(role) is layer:
                        self.show_.value = SHOW[1 - SHOW.index(role)]
            return
        if not layer.visible:
            return
        layers = self.layers
        for role in SHOW:
            if layers.get(role) is layer and self.show_.value != role:
                self.show_.value = role  # -> _apply_visibility hides the other one
        self._refresh_hover()

    def toggle_show(self) -> None:
        """Show the spectra if the kernels are shown, and the other way round."""
        show = self.show_.value
        self.show_.value = SHOW[1 - SHOW.index(show)] if show in SHOW else SHOW[0]

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

    def _update_table(self, result: AnalysisResult) -> None:
        from ...analysis.palette import cluster_colors, to_hex
        from .swatches import paint_swatches

        clusters = result.clusters
        colours = [to_hex(c) for c in cluster_colors(len(clusters))]
        rows = [[f"{k}", len(m), ", ".join(str(i) for i in m)] for k, m in enumerate(clusters)]
        native = self.table.native
        with _blocked(native):
            self.table.value = _table_value(rows)
            paint_swatches(self.table, 0, colours)
            native.resizeRowsToContents()

    def _on_table_selection(self) -> None:
        if self._result is None:
            return
        rows = sorted({index.row() for index in self.table.native.selectedIndexes()})
        clusters = self._result.clusters
        members = [i for r in rows if 0 <= r < len(clusters) for i in clusters[r]]
        self.highlight(members)
        if members and (self._current_filter not in members):
            self._set_current(members[0])

    def _on_table_double_click(self, row: int, column: int) -> None:
        if self._result is not None and 0 <= row < self._result.n_clusters:
            self.focus_filter(self._result.clusters[row][0])

    def highlight(self, filters: list[int]) -> None:
        """Draw the frames of `filters` thicker and dim the other frames (empty: reset)."""
        from ..layers import FRAME_WIDTH, cluster_edge_colors

        layer = self.layers.get("clusters")
        if layer is None or self._result is None:
            return
        n = self._result.n_filters
        chosen = np.zeros(n, dtype=bool)
        chosen[[i for i in filters if 0 <= i < n]] = True
        # A frame per marker: markers are filters, per step of a history and per mosaic
        # side by side; the layer's features say whose each one is.
        features = layer.features
        labels = features["cluster"].to_numpy(dtype=int)
        rgba = cluster_edge_colors(labels)
        width = np.full(len(labels), FRAME_WIDTH)
        if chosen.any():
            every = chosen[features["index"].to_numpy(dtype=int)]
            rgba[~every, 3] *= 0.35
            rgba[every, 3] = 1.0
            rgba[every & (labels < 0), :3] = 1.0  # unclustered: white frame
            width[every] = 2 * FRAME_WIDTH
        layer.border_color = rgba
        layer.border_width = width
        self._highlight = [int(i) for i in np.flatnonzero(chosen)]

    @property
    def highlighted(self) -> list[int]:
        """Filters whose frames are highlighted (a selected table row, a clicked cluster)."""
        return list(self._highlight)

    def _select_row(self, cluster: int) -> None:
        native = self.table.native
        if 0 <= cluster < native.rowCount():
            native.selectRow(cluster)  # -> _on_table_selection highlights the members
        else:
            native.clearSelection()

    def _on_click(self, viewer: Any, event: Any) -> Any:
        """A click (not a drag) on a tile chooses that filter and its cluster's row."""
        if self._closed or self._result is None:
            return
        press = np.asarray(getattr(event, "pos", (0, 0)), dtype=float)
        yield
        while event.type == "mouse_move":
            yield
        moved = np.asarray(getattr(event, "pos", (0, 0)), dtype=float) - press
        if self._closed or np.abs(moved).max(initial=0.0) > 4:
            return  # a drag (pan), not a click
        index = self._tile_at(event.position)
        if index is not None:
            self.choose_filter(index)

    def choose_filter(self, index: int) -> None:
        """Make `index` the current filter and select its cluster's row (no camera move)."""
        if self._result is None or not 0 <= int(index) < self._result.n_filters:
            return
        self._set_current(int(index))
        lab = int(self._result.labels[index])
        if lab >= 0:
            self._select_row(lab)
        else:
            with _blocked(self.table.native):
                self.table.native.clearSelection()
            self.highlight([int(index)])

    def _tile_at(self, position: Any) -> int | None:
        from ..layers import framed_geometries

        layer = self.layers.get("clusters")
        if layer is None:
            return None
        for geometry in framed_geometries(layer.metadata["kernelspec"]):
            index = geometry.tile_at(position)
            if index is not None:
                return index
        return None

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
        """The filter chosen last (click, table row, ``]`` / ``[``, `focus_filter`)."""
        return self._current_filter

    # --- inspecting ----------------------------------------------------------------------

    def _set_current(self, index: int) -> None:
        self._current_filter = int(index)
        with self.focus.changed.blocked():
            self.focus.value = int(index)
        self.filter_focused.emit(int(index))

    def focus_filter(self, index: int) -> None:
        """Choose filter `index`: centre the camera on its tile, zoom so it fills about half
        the canvas, and emit `filter_focused`."""
        from ..layers import MosaicGeometry

        layer = self.layers.get("clusters")
        if self._result is None or layer is None or not 0 <= int(index) < self._result.n_filters:
            return
        geometry = MosaicGeometry.from_dict(layer.metadata["kernelspec"]["geometry"])
        centre = geometry.centre(int(index))
        canvas = min(self.viewer.canvas.size) or 600
        camera = self.camera
        camera.center = centre
        camera.zoom = 0.5 * canvas / geometry.pitch
        self._set_current(int(index))

    def step_filter(self, step: int) -> None:
        """Focus the next (`step` = 1) or previous (-1) filter."""
        if self._result is None:
            return
        current = self._current_filter if self._current_filter is not None else -step
        self.focus_filter(int(np.clip(current + step, 0, self._result.n_filters - 1)))

    def _fit(self) -> None:
        """Fit the camera to the mosaic, frames included, with a margin on every side.

        From the mosaic's own bounds: napari's layer extents can lag behind a data change
        within the same event-loop turn (seen after switching to the seed method).
        """
        layer = self.layers.get("clusters")
        if layer is None:
            self.viewer.reset_view()
            return
        (y0, x0), (y1, x1) = _framed_bounds(layer.metadata["kernelspec"])
        height, width = (float(v) for v in self.viewer.canvas.size)
        camera = self.camera
        camera.center = ((y0 + y1) / 2, (x0 + x1) / 2)
        if height > 0 and width > 0:
            camera.zoom = _FIT_FILL * min(height / (y1 - y0), width / (x1 - x0))

    @property
    def camera(self) -> Any:
        """The viewer's camera (``viewer.scene.camera`` from napari 0.9 on)."""
        return camera_of(self.viewer)

    def hover_text(self, position: Any) -> str | None:
        """Filter, cluster and descriptors of the tile under world `position`, or None.

        Reads the metadata of the topmost visible kernelspec layer, so layers opened by the
        reader work too; over the spectra it adds the frequency under the cursor, over the
        widget's kernels the raw weight of every input channel at the pixel.
        """
        from ..history import step_metadata
        from ..layers import describe_position

        for lay in reversed(list(self.viewer.layers)):
            meta = lay.metadata.get("kernelspec") if isinstance(lay.metadata, dict) else None
            # The frames have no pixels: the image below answers for them.
            if not lay.visible or not meta or meta.get("role") not in SHOW:
                continue
            if meta.get("history"):  # a training history: the step under the dims slider
                t = np.asarray(lay.world_to_data(self.viewer.dims.point), dtype=float)[0]
                meta = step_metadata(meta, round(float(t)) if np.isfinite(t) else 0)
            text = describe_position(meta, position, with_frequency=meta["role"] == "spectra")
            if text is None:
                continue
            if meta["role"] == "kernels" and lay is self.layers.get("kernels"):
                text += self._raw_weights_text(lay, position)
            return text
        return None

    def _raw_weights_text(self, layer: Any, position: Any) -> str:
        """`` · w(y, x) = (c0, c1, ...)``: raw weights of the kernel pixel under `position`."""
        if self._bank is None:
            return ""
        weights = self._bank.weights
        _, _c, h, w = weights.shape
        pos = np.asarray(position, dtype=float).ravel()
        data = np.asarray(layer.world_to_data(pos), dtype=float)[-2:]
        row, col = (math.floor(v + 0.5) for v in data)
        ncols = int(layer.metadata["kernelspec"]["geometry"]["ncols"])
        tr, y = divmod(row, h + 1)
        tc, x = divmod(col, w + 1)
        index = tr * ncols + tc
        if row < 0 or col < 0 or y >= h or x >= w or tc >= ncols or index >= len(weights):
            return ""
        values = ", ".join(f"{v:+.4g}" for v in weights[index, :, y, x].tolist())
        return f" · raw w(y {y}, x {x}) = ({values})"

    def _refresh_hover(self) -> None:
        """Recompute the hover text (after a model switch the old model's text must go)."""
        self._on_cursor()
        status = self.viewer.status
        if isinstance(status, dict) and _HOVER_MARK in str(status.get("coordinates", "")):
            coords = str(status["coordinates"]).split(_HOVER_MARK)[0]
            self.viewer.status = {**status, "coordinates": coords}
            self._on_status()
        elif isinstance(status, str) and _HOVER_MARK in status:
            self.viewer.status = status.split(_HOVER_MARK)[0]
            self._on_status()

    def _on_cursor(self, event: Any = None) -> None:
        if self._closed:
            return
        text = self.hover_text(self.viewer.cursor.position)
        if text is not None:
            self.hover.value = html.escape(text)
        elif not self.hover.value.endswith("…"):
            self.hover.value = ""

    def _on_status(self, event: Any = None) -> None:
        """Add the hovered filter to the status napari computed (race-free with its thread)."""
        if self._closed or not self.viewer.mouse_over_canvas:
            return
        text = self.hover_text(self.viewer.cursor.position)
        if text is None:
            return
        status = self.viewer.status
        if isinstance(status, dict):
            coords = str(status.get("coordinates", ""))
            if text in coords:
                return
            coords = coords.split(_HOVER_MARK)[0]
            self.viewer.status = {**status, "coordinates": f"{coords}{_HOVER_MARK}{text}"}
        elif text not in str(status):
            self.viewer.status = f"{str(status).split(_HOVER_MARK)[0]}{_HOVER_MARK}{text}"

    # --- export --------------------------------------------------------------------------

    def export_table(self, path: str | os.PathLike[str]) -> Path:
        """Write the filter table (one row per filter) as CSV; cells neutralised.

        Raises
        ------
        KernelSpecError
            When nothing is shown yet.
        """
        from ...base.atomic import atomic_write
        from ..layers import filter_table_csv

        result = self._need_result()
        path = Path(path)
        with atomic_write(path, "w") as handle:
            handle.write(filter_table_csv(result))
        return path

    def export_kernels(self, path: str | os.PathLike[str]) -> Path:
        """Write the raw float32 weights, (N, C, H, W), as a ``.npy`` file."""
        from ...base.atomic import atomic_write

        result = self._need_result()
        path = Path(path)
        with atomic_write(path, "wb") as handle:
            np.save(handle, np.asarray(result.bank.weights, dtype=np.float32))
        return path

    def export_view(self, path: str | os.PathLike[str]) -> Path:
        """Write what the canvas shows now as a PNG."""
        from PIL import Image

        from ...base.atomic import atomic_write

        image = self.viewer.screenshot(canvas_only=True, flash=False)
        path = Path(path)
        with atomic_write(path, "wb") as handle:
            Image.fromarray(np.asarray(image)[..., :3]).save(handle, format="PNG")
        return path

    def _need_result(self) -> AnalysisResult:
        if self._result is None:
            raise KernelSpecError("nothing to export yet: choose a model and wait for it")
        return self._result

    def _export_dialog(self, what: str) -> None:
        from qtpy.QtWidgets import QFileDialog

        if self._result is None:
            return
        stem = f"{self._result.bank.model}_{self._result.bank.layer}".replace("/", "_")
        suffix, kind, write = {
            "table": (".csv", "CSV (*.csv)", self.export_table),
            "kernels": (".npy", "NumPy (*.npy)", self.export_kernels),
            "view": (".png", "PNG (*.png)", self.export_view),
        }[what]
        path, _ = QFileDialog.getSaveFileName(self.native, f"Export {what}", stem + suffix, kind)
        if not path:
            return
        try:
            written = write(path)
        except (KernelSpecError, OSError) as exc:
            from napari.utils.notifications import show_error

            show_error(printable(f"could not write {path}: {exc}"))
            return
        from napari.utils.notifications import show_info

        show_info(f"wrote {printable(written)}")

    # --- lifetime ------------------------------------------------------------------------

    def wait_idle_condition(self) -> bool:
        """True once the newest request is applied and no worker runs (for tests)."""
        return not self.busy and self._worker is None

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
        self._latest.closed = True
        with contextlib.suppress(RuntimeError):
            self._debounce.stop()
            self._step_signal.stop()
        self._pending = None
        self._worker = None  # a running job sees `closed` and reports nothing
        self._close_progress()
        for emitter, callback in self._connections:
            with contextlib.suppress(Exception):
                emitter.disconnect(callback)
        self._connections = []
        with contextlib.suppress(Exception):
            self.viewer.mouse_drag_callbacks.remove(self._on_click)

    def _on_destroyed(self, *args: Any) -> None:
        self.close_widget()


def _auto_threshold_supported() -> bool:
    """True if `analyze` accepts ``threshold="auto"`` (chance-level thresholds)."""
    from ...analysis.pipeline import check_parameters

    try:
        check_parameters("response", AUTO, DEFAULT_MIN_SAMPLES)  # type: ignore[arg-type]
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _blocked(qobject: Any) -> Any:
    previous = qobject.blockSignals(True)
    try:
        yield
    finally:
        qobject.blockSignals(previous)


def _update_layer(layer: Any, data: LayerData) -> None:
    """Apply new layer data in place (same layer object: no piling up of copies).

    ``data.data`` None keeps the layer's pixels and only replaces its metadata.
    """
    kwargs = data.kwargs
    if data.layer_type == "points":
        # Each setter costs a refresh (768 points: 50-90 ms for the data, 76 ms for the
        # text): set only what changed. A threshold change changes colours and features.
        if data.data is not None and not _same_array(layer.data, data.data):
            layer.data = data.data
        if not np.allclose(layer.size, kwargs["size"]):
            layer.size = kwargs["size"]
        layer.features = kwargs["features"]  # reassign: in-place edits fire no event
        layer.border_color = kwargs["border_color"]
        if not np.allclose(layer.border_width, kwargs["border_width"]):
            layer.border_width = kwargs["border_width"]
        text = kwargs["text"]
        if (
            layer.text.string.format != text["string"]
            or not np.allclose(layer.text.translation, text["translation"])
            or len(layer.text.values) != len(layer.data)
        ):
            layer.text = text
    elif data.data is not None:
        layer.data = data.data
        if "contrast_limits" in kwargs:
            layer.contrast_limits = kwargs["contrast_limits"]
    # The grid can change without new pixels (the seed method's smaller spectra).
    scale = tuple(kwargs.get("scale", (1.0, 1.0)))
    translate = tuple(kwargs.get("translate", (0.0, 0.0)))
    if tuple(layer.scale) != scale:
        layer.scale = scale
    if tuple(layer.translate) != translate:
        layer.translate = translate
    layer.metadata = dict(kwargs["metadata"])


def _framed_bounds(meta: dict[str, Any]) -> tuple[tuple[float, float], tuple[float, float]]:
    """World bounds of every mosaic the clusters layer frames (both, side by side)."""
    from ..layers import framed_geometries

    corners = np.array([g.bounds() for g in framed_geometries(meta)])  # (k, 2, 2)
    (y0, x0), (y1, x1) = corners[:, 0].min(axis=0), corners[:, 1].max(axis=0)
    return (float(y0), float(x0)), (float(y1), float(x1))


def _thumbnail(layer: Any, step: int | None = None) -> np.ndarray | None:
    """The thumbnail napari would show for an image layer, made while the layer is hidden.

    napari skips slicing (and so the thumbnail) of a hidden layer: after a model switch the
    hidden mosaic's thumbnail showed the previous model. The shown step sampled as napari
    samples it (nearest, `scipy.ndimage.zoom`), through the layer's colormap and contrast
    limits: the same pixels napari shows once the layer is visible (a test compares them).

    Returns
    -------
    (h, w, 4) uint8 ndarray, or None for a layer that is not an image
    """
    data = getattr(layer, "data", None)
    if not isinstance(data, np.ndarray) or not hasattr(layer, "contrast_limits"):
        return None
    from scipy import ndimage

    image = data[int(np.clip(step or 0, 0, len(data) - 1))] if data.ndim > 2 + layer.rgb else data
    side = np.asarray(layer.thumbnail).shape[:2]
    shape = np.asarray(image.shape[:2], dtype=float)
    # napari's own sampling (nearest, no prefilter) so the picture matches the one napari
    # makes once the layer is shown again
    fitted = np.clip(np.min(np.divide(side, shape)) * shape, 1, side)
    zoom = tuple(fitted / shape) + ((1.0,) if layer.rgb else ())
    small = ndimage.zoom(np.asarray(image, dtype=float), zoom, order=0, prefilter=False)
    low, high = layer.contrast_limits
    small = np.clip((small - low) / max(high - low, 1e-12), 0.0, 1.0)
    if layer.rgb:
        rgba = np.concatenate([small[..., :3], np.ones((*small.shape[:2], 1))], axis=-1)
    else:
        small = small ** float(getattr(layer, "gamma", 1.0))
        rgba = np.asarray(layer.colormap.map(small.ravel())).reshape(*small.shape, 4)
        rgba[np.isnan(small)] = getattr(layer.colormap, "nan_color", (0.0, 0.0, 0.0, 1.0))
    rgba[..., 3] *= float(layer.opacity)
    return (np.nan_to_num(rgba) * 255).round().astype(np.uint8)


def _same_array(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _table_value(rows: list[list[Any]]) -> dict[str, Any]:
    """magicgui's "split" table value: cluster, size, member filters."""
    return {
        "data": rows,
        "index": list(range(len(rows))),
        "columns": ["cluster", "size", "filters"],
    }


def _summary(result: AnalysisResult) -> str:
    bank = result.bank
    n, c, h, w = bank.weights.shape
    trained = {
        "pretrained": "pretrained weights",
        "random": "UNTRAINED (random init)",
        "trained-digits": "trained on digits",
        "checkpoint": "checkpoint",
        "array": "array",
    }.get(bank.source, bank.source)
    stride = f"stride {bank.stride[0]}" if bank.stride_known else "stride unknown (1 assumed)"
    rule = getattr(result, "threshold_rule", None)
    threshold = f"≥ {result.threshold:.3f}" + (f", {rule}" if rule else "")
    parts = [
        f"<b>{html.escape(printable(bank.display_name))}</b> · "
        f"{html.escape(printable(bank.layer))} · {n}×{c}×{h}×{w} · {stride} · {trained}",
        f"{result.n_clusters} clusters, {result.clustered_fraction:.0%} of filters clustered "
        f"({result.method}, {threshold})",
    ]
    chance = getattr(result, "chance_similarity", None)
    chance_fraction = getattr(result, "chance_clustered_fraction", None)
    if chance is not None or chance_fraction is not None:
        bits = []
        if chance is not None:
            bits.append(f"similarity {float(chance):.3f}")
        if chance_fraction is not None:
            bits.append(f"random filters of this shape {float(chance_fraction):.0%} clustered")
        parts.append("chance: " + ", ".join(bits))
    parts.append(f"{len(result.duplicates)} duplicate pairs, {len(result.sign_pairs)} sign pairs")
    return "<br>".join(parts)
