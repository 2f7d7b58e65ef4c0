"""The napari widget: pick a model, see its first-layer kernels, spectra and clusters.

A thin front end: loading (`load_kernels`), analysis (`analyze`) and the layer data
(`_napari.layers`) all run in a worker thread; this module only turns controls into
requests and applies finished results to layers in the main thread.

Requests are numbered. A worker's result is applied only if it answers the newest request, so
a slow load that finishes late never overwrites what the user asked for since. Loaded banks
are kept (a few, most recent first), so a threshold, method or view change never reloads the
model, and a method/threshold/min-samples change never recomputes anything but the analysis.
"""

from __future__ import annotations

import html
import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    Table,
)

from ...analysis.pipeline import DEFAULT_MIN_SAMPLES, DEFAULT_THRESHOLD
from ...analysis.views import VIEW_LABELS, VIEWS
from ...base.errors import KernelSpecError
from ...sources.loading import WEIGHTS
from ...sources.models import SEED_MODELS

if TYPE_CHECKING:
    import napari

    from ...analysis.pipeline import AnalysisResult
    from ...base.bank import KernelBank
    from ..layers import LayerData

__all__ = ["WIDGET_NAME", "KernelSpectrumWidget", "Request", "compute"]

logger = logging.getLogger(__name__)

#: Display name of the widget in the manifest (``Plugins > Kernel spectrum``).
WIDGET_NAME = "Kernel spectrum"

TORCHVISION = "__torchvision__"
CHECKPOINT = "__checkpoint__"
SHOW = ("kernels", "spectra")
_BANK_CACHE_SIZE = 4
_DEFAULT_VIEW = "colour"


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
    threshold : float
    min_samples : int
    view : str
        One of `views.VIEWS`.
    """

    generation: int
    source: str
    weights: str
    method: str
    threshold: float
    min_samples: int
    view: str

    @property
    def bank_key(self) -> tuple[str, str]:
        return self.source, self.weights

    @property
    def analysis_key(self) -> tuple[str, float, int]:
        return self.method, self.threshold, self.min_samples


@dataclass
class Outcome:
    """What a worker hands back to the main thread.

    Attributes
    ----------
    request : Request
    bank : KernelBank or None
    result : AnalysisResult or None
    layers : list of LayerData
        Only the layers that must change (all three after a new analysis, only the kernels
        after a view change).
    error : str or None
        The one-line message of a `KernelSpecError`.
    """

    request: Request
    bank: KernelBank | None = None
    result: AnalysisResult | None = None
    layers: list[LayerData] = field(default_factory=list)
    error: str | None = None


def compute(
    request: Request, bank: KernelBank | None = None, result: AnalysisResult | None = None
) -> Outcome:
    """Do what `request` needs that is not done yet (runs in a worker thread, no Qt).

    Parameters
    ----------
    request : Request
    bank : KernelBank, optional
        The already loaded bank of ``request.bank_key``; loaded when None.
    result : AnalysisResult, optional
        The analysis of `bank` with ``request.analysis_key``; computed when None. When given,
        only the kernels layer is rebuilt (a view change).

    Returns
    -------
    Outcome
        With ``error`` set instead of raising for a `KernelSpecError`.
    """
    from ...analysis.pipeline import analyze
    from .. import layers as _layers

    try:
        if bank is None:
            from ...sources.loading import load_kernels
            from ..commands import preload_torch

            preload_torch()

            bank = load_kernels(request.source, weights=request.weights)
        view_only = result is not None and result.bank is bank
        if not view_only:
            result = analyze(
                bank,
                method=request.method,
                threshold=request.threshold,
                min_samples=request.min_samples,
            )
        assert result is not None
        geometry = _layers.result_geometry(result)
        if view_only:
            built = [_layers.kernels_layer(result, request.view, geometry)]
        else:
            built = _layers.layer_data(result, request.view)
    except KernelSpecError as exc:
        return Outcome(request, bank=bank, error=str(exc))
    return Outcome(request, bank=bank, result=result, layers=built)


class KernelSpectrumWidget(Container):
    """First-layer kernels, spectra and clusters of a CNN as napari layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer to draw into (injected by napari).
    autostart : bool
        Load the selected model right away (as the seed tool did).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, autostart: bool = True) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._generation = 0
        self._applied = 0
        self._running = 0
        self._banks: OrderedDict[tuple[str, str], KernelBank] = OrderedDict()
        self._result: AnalysisResult | None = None
        self._view_of_layers: str | None = None
        self._layers: dict[str, Any] = {}
        self._label: str | None = None
        self._workers: set[Any] = set()
        self.last_error: str | None = None

        model_choices = [(name, key) for key, name in SEED_MODELS.items()]
        model_choices += [("torchvision model…", TORCHVISION), ("checkpoint file…", CHECKPOINT)]
        self.model = ComboBox(label="model", choices=model_choices, value="alexnet")
        self.torchvision_name = LineEdit(
            label="torchvision name", value="", tooltip="e.g. convnext_tiny, vit_b_16 (Enter)"
        )
        self.checkpoint = FileEdit(
            label="checkpoint",
            mode="r",
            filter="Weights (*.pth *.pt *.ckpt *.safetensors *.npy *.npz)",
        )
        self.weights = ComboBox(
            label="weights",
            choices=list(WEIGHTS),
            value="auto",
            tooltip="auto: pretrained if available, else random (untrained) with a warning",
        )
        self.view = ComboBox(
            label="view", choices=[(VIEW_LABELS[v], v) for v in VIEWS], value=_DEFAULT_VIEW
        )
        self.method = ComboBox(
            label="spectrum",
            choices=[("response (cycles/pixel)", "response"), ("seed (resized FFT)", "seed")],
            value="response",
        )
        self.threshold = FloatSlider(
            label="similarity ≥",
            min=0.5,
            max=0.999,
            step=0.001,
            value=DEFAULT_THRESHOLD,
            tooltip="cosine similarity threshold of clusters, duplicates and sign pairs",
        )
        self.min_samples = SpinBox(label="min samples", min=1, max=4096, value=DEFAULT_MIN_SAMPLES)
        self.show_ = ComboBox(label="show", choices=list(SHOW), value="kernels")
        self.focus = SpinBox(label="focus filter", min=0, max=0, value=0)
        self.focus_button = PushButton(text="zoom to filter")
        self.fit_button = PushButton(text="show all")
        self.progress = ProgressBar(label="", min=0, max=0, visible=False)
        self.summary = Label(label="", value="")
        self.hover = Label(label="", value="")
        self.table = Table(value=_table_value([]), label="")
        self.table.read_only = True
        self.extend(
            [
                self.model,
                self.torchvision_name,
                self.checkpoint,
                self.weights,
                self.view,
                self.method,
                self.threshold,
                self.min_samples,
                self.show_,
                self.focus,
                Container(
                    widgets=[self.focus_button, self.fit_button], layout="horizontal", label=""
                ),
                self.progress,
                self.summary,
                self.hover,
                self.table,
            ]
        )
        self.summary.native.setWordWrap(True)
        self.hover.native.setWordWrap(True)
        self._sync_source_controls()

        self.model.changed.connect(self._on_model)
        self.torchvision_name.native.editingFinished.connect(self._on_source_text)
        self.checkpoint.changed.connect(self._on_source_text)
        self.weights.changed.connect(self.request_update)
        self.method.changed.connect(self.request_update)
        self.threshold.changed.connect(self.request_update)
        self.min_samples.changed.connect(self.request_update)
        self.view.changed.connect(self.request_update)
        self.show_.changed.connect(self._apply_visibility)
        self.focus.changed.connect(self.focus_filter)
        self.focus_button.changed.connect(lambda: self.focus_filter(self.focus.value))
        self.fit_button.changed.connect(lambda: self.viewer.reset_view())
        self.table.native.cellDoubleClicked.connect(self._on_table_double_click)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        self.viewer.events.status.connect(self._on_status)

        if autostart:
            self.request_update()

    # --- requests ------------------------------------------------------------------------

    def source(self) -> str | None:
        """The model name or file path the controls select, or None when incomplete."""
        choice = self.model.value
        if choice == TORCHVISION:
            text = self.torchvision_name.value.strip()
            return text or None
        if choice == CHECKPOINT:
            path = Path(str(self.checkpoint.value)).expanduser()
            return str(path) if path.is_file() else None
        return str(choice)

    def _sync_source_controls(self) -> None:
        self.torchvision_name.visible = self.model.value == TORCHVISION
        self.checkpoint.visible = self.model.value == CHECKPOINT
        self.weights.enabled = self.model.value != CHECKPOINT

    def _on_model(self) -> None:
        self._sync_source_controls()
        self.request_update()

    def _on_source_text(self) -> None:
        if self.model.value in (TORCHVISION, CHECKPOINT):
            self.request_update()

    def request_update(self) -> Request | None:
        """Start a worker for the current controls (reusing the loaded bank and analysis).

        Returns
        -------
        Request or None
            None when the controls name no source yet (empty name, no file).
        """
        source = self.source()
        if source is None:
            what = "a torchvision model name" if self.model.value == TORCHVISION else "a file"
            self.summary.value = f"Give {what}."
            return None
        self._generation += 1
        request = Request(
            generation=self._generation,
            source=source,
            weights=self.weights.value,
            method=self.method.value,
            threshold=round(float(self.threshold.value), 6),
            min_samples=int(self.min_samples.value),
            view=self.view.value,
        )
        bank = self._banks.get(request.bank_key)
        result = self._result
        if (
            len(self.layers) < 3
            or bank is None
            or result is None
            or result.bank is not bank
            or (result.method, result.threshold, result.min_samples) != request.analysis_key
        ):
            result = None
        if bank is not None and result is not None and request.view == self._view_of_layers:
            # Nothing to recompute (e.g. a slider moved back): make sure it is what is shown.
            self._applied = request.generation
            return request
        self._start(request, bank, result)
        return request

    def _start(
        self, request: Request, bank: KernelBank | None, result: AnalysisResult | None
    ) -> None:
        from napari.qt.threading import create_worker

        what = "Loading" if bank is None else "Analysing" if result is None else "Rendering"
        desc = f"{what} {Path(request.source).name if bank is None else bank.display_name}"
        worker = create_worker(compute, request, bank, result, _progress={"desc": desc})
        worker.returned.connect(self._on_returned)
        worker.errored.connect(lambda exc, g=request.generation: self._on_errored(g, exc))
        worker.finished.connect(lambda: self._on_finished(worker))
        self._workers.add(worker)
        self._running += 1
        self.progress.visible = True
        self.progress.label = desc
        self.hover.value = f"{desc}…"
        worker.start()

    @property
    def busy(self) -> bool:
        """True while the newest request has not been applied."""
        return self._applied < self._generation

    def _on_finished(self, worker: Any) -> None:
        self._workers.discard(worker)
        self._running -= 1
        if self._running <= 0:
            self._running = 0
            self.progress.visible = False
            if self.hover.value.endswith("…"):
                self.hover.value = ""

    def _on_errored(self, generation: int, exc: BaseException) -> None:
        # Not a user mistake (those come back as Outcome.error): napari's worker already
        # reports it with its traceback. Only stop waiting for it.
        if generation >= self._generation:
            self._applied = generation
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.summary.value = f"Error: {self.last_error}"

    def _on_returned(self, outcome: Outcome) -> None:
        request = outcome.request
        if outcome.bank is not None:
            self._banks[request.bank_key] = outcome.bank
            self._banks.move_to_end(request.bank_key)
            while len(self._banks) > _BANK_CACHE_SIZE:
                self._banks.popitem(last=False)
        if request.generation < self._generation:
            return  # stale: a newer request is on its way
        self._applied = request.generation
        if outcome.error is not None:
            from napari.utils.notifications import show_error

            self.last_error = outcome.error
            self.summary.value = f"Error: {outcome.error}"
            show_error(outcome.error)
            return
        self.last_error = None
        self._apply(outcome)

    # --- layers (main thread only) -------------------------------------------------------

    def _apply(self, outcome: Outcome) -> None:
        from ..layers import model_label

        result = outcome.result
        assert result is not None
        label = model_label(result.bank)
        alive = {role: lay for role, lay in self._layers.items() if lay in self.viewer.layers}
        if len(alive) < 3:
            # First run, or the user deleted one of our layers: (re)create all three. A view
            # change never reaches here without the other two, since a fresh model always
            # comes with all three.
            for lay in alive.values():
                self.viewer.layers.remove(lay)
            self._layers = {}
            for data in outcome.layers:
                add = getattr(self.viewer, f"add_{data.layer_type}")
                self._layers[data.role] = add(data.data, **data.kwargs)
        else:
            # Another model reuses the same three layers, renamed: removing a napari layer
            # costs a full garbage collection (about 0.2 s each), updating one does not.
            for data in outcome.layers:
                layer = self._layers[data.role]
                _update_layer(layer, data)
                layer.name = data.kwargs["name"]
        if label != self._label or len(alive) < 3:
            self._label = label
            self.viewer.reset_view()
        self._result = result
        self._view_of_layers = outcome.request.view
        self.focus.max = max(0, result.n_filters - 1)
        self._apply_visibility()
        if len(outcome.layers) > 1:
            self._update_table(result)
            self.summary.value = _summary(result)

    def _apply_visibility(self) -> None:
        show = self.show_.value
        if "kernels" in self._layers:
            self._layers["kernels"].visible = show == "kernels"
        if "spectra" in self._layers:
            self._layers["spectra"].visible = show == "spectra"

    def _update_table(self, result: AnalysisResult) -> None:
        from ...analysis.palette import cluster_colors, to_hex
        from .swatches import paint_swatches

        clusters = result.clusters
        colours = [to_hex(c) for c in cluster_colors(len(clusters))]
        rows = [[f"{k}", len(m), ", ".join(str(i) for i in m)] for k, m in enumerate(clusters)]
        self.table.value = _table_value(rows)
        paint_swatches(self.table, 0, colours)

    def _on_table_double_click(self, row: int, column: int) -> None:
        if self._result is not None and 0 <= row < self._result.n_clusters:
            self.focus.value = self._result.clusters[row][0]
            self.focus_filter(self.focus.value)

    @property
    def layers(self) -> dict[str, Any]:
        """The widget's current layers by role (``kernels``, ``spectra``, ``clusters``)."""
        return {role: lay for role, lay in self._layers.items() if lay in self.viewer.layers}

    @property
    def result(self) -> AnalysisResult | None:
        """The analysis shown now."""
        return self._result

    # --- inspecting ----------------------------------------------------------------------

    def focus_filter(self, index: int) -> None:
        """Centre the camera on tile `index` and zoom so that it fills about half the canvas."""
        from ..layers import result_geometry

        if self._result is None or not 0 <= int(index) < self._result.n_filters:
            return
        geometry = result_geometry(self._result)
        centre = geometry.centre(int(index))
        canvas = min(self.viewer.canvas.size) or 600
        camera = self.camera
        camera.center = centre
        camera.zoom = 0.5 * canvas / geometry.pitch

    @property
    def camera(self) -> Any:
        """The viewer's camera (``viewer.scene.camera`` from napari 0.9 on)."""
        scene = getattr(self.viewer, "scene", None)
        return scene.camera if scene is not None else self.viewer.camera

    def hover_text(self, position: Any) -> str | None:
        """Filter, cluster and descriptors of the tile under world `position`, or None.

        Reads the metadata of the topmost visible kernelspec layer, so layers opened by the
        reader work too; over the spectra it adds the frequency under the cursor.
        """
        from ..layers import describe_position

        for lay in reversed(list(self.viewer.layers)):
            meta = lay.metadata.get("kernelspec") if isinstance(lay.metadata, dict) else None
            # Rectangles have no pixels: the image below answers for them.
            if not lay.visible or not meta or meta["role"] == "clusters":
                continue
            text = describe_position(meta, position, with_frequency=meta["role"] == "spectra")
            if text is not None:
                return text
        return None

    def _on_cursor(self, event: Any = None) -> None:
        text = self.hover_text(self.viewer.cursor.position)
        if text is not None:
            self.hover.value = text
        elif not self.hover.value.endswith("…"):
            self.hover.value = ""

    def _on_status(self, event: Any = None) -> None:
        """Add the hovered filter to the status napari computed (race-free with its thread)."""
        if not self.viewer.mouse_over_canvas:
            return
        text = self.hover_text(self.viewer.cursor.position)
        if text is None:
            return
        status = self.viewer.status
        if isinstance(status, dict):
            coords = str(status.get("coordinates", ""))
            if text in coords:
                return
            self.viewer.status = {**status, "coordinates": f"{coords}  ▸ {text}"}
        elif text not in str(status):
            self.viewer.status = f"{status}  ▸ {text}"

    # --- lifetime ------------------------------------------------------------------------

    def wait_idle_condition(self) -> bool:
        """True once the newest request is applied and no worker runs (for tests)."""
        return not self.busy and self._running == 0


def _update_layer(layer: Any, data: LayerData) -> None:
    """Apply new layer data in place (same layer object: no piling up of copies)."""
    kwargs = data.kwargs
    if data.layer_type == "shapes":
        layer.data = data.data
        layer.features = kwargs["features"]  # reassign: in-place edits fire no event
        if len(data.data):
            layer.edge_color = kwargs["edge_color"]
        layer.edge_width = kwargs["edge_width"]
        layer.text = kwargs["text"]
    else:
        layer.data = data.data
        if "contrast_limits" in kwargs:
            layer.contrast_limits = kwargs["contrast_limits"]
    layer.scale = kwargs.get("scale", (1.0, 1.0))
    layer.translate = kwargs.get("translate", (0.0, 0.0))
    layer.metadata = dict(kwargs["metadata"])
    layer.refresh()


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
    parts = [
        f"<b>{html.escape(bank.display_name)}</b> · {html.escape(bank.layer)} · "
        f"{n}×{c}×{h}×{w} · {stride} · {trained}",
        f"{result.n_clusters} clusters, {result.clustered_fraction:.0%} of filters clustered "
        f"({result.method}, ≥ {result.threshold:.3f})",
        f"{len(result.duplicates)} duplicate pairs, {len(result.sign_pairs)} sign pairs",
    ]
    return "<br>".join(parts)


def replace_request(request: Request, **changes: Any) -> Request:
    """A copy of `request` with `changes` (helper for tests)."""
    return replace(request, **changes)
