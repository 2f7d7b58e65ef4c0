"""The feature-maps widget: what one layer's filters do to an open image.

A thin front end over `napari_kernelspec.imaging`: the maps, the top patches and the filter
map are computed in a worker thread (`compute_maps`); this module turns controls into
requests and applies the newest finished one to layers in the main thread. The maps are one
Image layer (N, H', W') lying on the source image, so napari's slider on axis 0 picks the
filter; the focused filter's top patches appear under the image, their boxes on it.

It works alone (its own model controls) or follows the viewer's `Session`: the "main
widget's model" choice takes the bank and clusters the main widget shows, and filter focus
goes both ways through the session. The image is the selected image layer (or the one
chosen); the plugin's own layers are never offered. Work runs on the shared latest-wins
`JobRunner`; closing the dock cancels it and disconnects everything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, SpinBox

from ...base.errors import KernelSpecError
from ...imaging.embedding import EMBEDDINGS
from ...imaging.images import NORMALIZE
from ...sources.loading import WEIGHTS
from ..legends import show_colour_bar
from .lifetime import MAIN, OTHER, Lifetime, LinkedModel, on_close, on_selection, scrolled

if TYPE_CHECKING:
    import napari

    from ...base.bank import KernelBank
    from ...imaging.maps import FeatureMaps
    from ...imaging.patches import TopPatches

__all__ = ["MAPS_WIDGET_NAME", "FeatureMapsWidget", "MapsOutcome", "MapsRequest", "compute_maps"]

logger = logging.getLogger(__name__)

#: Display name of the widget in the manifest (``Plugins > Feature maps``).
MAPS_WIDGET_NAME = "Feature maps"


@dataclass(frozen=True, eq=False)
class MapsRequest:
    """Everything one update needs, frozen when the controls changed.

    Attributes
    ----------
    generation : int
        Request number; only the newest one is applied.
    source : KernelBank or str
        A bank (from the main widget) or a model name / file path.
    image : (H, W[, C]) ndarray
        The image layer's data.
    layer : str or None
        Convolution to show (None: the first).
    labels : (N,) ndarray or None
        Cluster labels to colour the filter map (the main widget's), else computed.
    """

    generation: int
    source: Any
    image: np.ndarray
    layer: str | None = None
    weights: str = "auto"
    relu: bool = True
    normalize: str = "auto"
    k: int = 9
    method: str = "pca"
    labels: np.ndarray | None = None


@dataclass
class MapsOutcome:
    """What a worker returns: the results, or the one-line error of a `KernelSpecError`."""

    request: MapsRequest
    maps: FeatureMaps | None = None
    top: TopPatches | None = None
    xy: np.ndarray | None = None
    labels: np.ndarray | None = None
    crops: dict[int, np.ndarray] = field(default_factory=dict)
    error: str | None = None


#: Cluster labels and filter map of recent banks: (weights digest, method) -> (labels, xy).
_embeddings: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_cache_lock = threading.Lock()


def compute_maps(request: MapsRequest) -> MapsOutcome:
    """Feature maps, top patches and filter map for `request` (worker thread, no Qt)."""
    from ...imaging import feature_maps, filter_embedding
    from ...imaging.maps import resolve_bank
    from ...imaging.patches import patches_from_maps
    from ..commands import preload_torch

    preload_torch()
    try:
        bank = resolve_bank(request.source, request.weights, request.layer)
        signed = feature_maps(bank, request.image, relu=False, normalize=request.normalize)
        top = patches_from_maps([signed], k=request.k)  # the same maps: one convolution
        maps = signed
        if request.relu:
            np.maximum(signed.maps, 0, out=signed.maps)
            maps = dataclasses.replace(signed, meta={**signed.meta, "relu": True})
        key = (hashlib.sha1(bank.weights.tobytes()).hexdigest(), request.method)
        with _cache_lock:
            cached = _embeddings.get(key)
        if cached is None:  # the bank's own: computed once, not on every image edit
            from ...analysis.pipeline import analyze

            cached = (analyze(bank).labels, filter_embedding(bank, method=request.method))
            with _cache_lock:
                _embeddings[key] = cached
                while len(_embeddings) > 8:
                    _embeddings.popitem(last=False)
        labels, xy = cached
        if request.labels is not None and len(request.labels) == bank.n_filters:
            labels = request.labels
        crops = {0: top.crops([request.image], 0)}
    except KernelSpecError as exc:
        return MapsOutcome(request, error=str(exc))
    return MapsOutcome(request, maps=maps, top=top, xy=xy, labels=labels, crops=crops)


class FeatureMapsWidget(Lifetime, LinkedModel, Container):
    """Feature maps of an open image through one layer, its filters' top patches, the
    filter map.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._start_dock(napari_viewer, "kernelspec-maps")
        self._outcome: MapsOutcome | None = None
        self._main_bank: KernelBank | None = self.session.bank
        self._main_labels: np.ndarray | None = None
        self._focusing = False
        self._shown: int | None = None  # the filter whose patches are shown
        self._map_of: tuple[Any, Any] | None = None  # (xy, labels) of the filter map layer
        self._watched: Any = None

        self.image = ComboBox(
            label="image",
            choices=self._image_choices,
            nullable=True,
            tooltip="the image layer to filter (follows the selected image layer; the "
            "plugin's own layers are not offered)",
        )
        self._init_model_choices()
        # A callable, so that napari's reset_choices (on every layer change) keeps the
        # "main widget" choice once linked.
        self.model = ComboBox(
            label="model",
            choices=self._model_choice_list,
            value="alexnet",
            tooltip='the model whose layer filters the image; "main widget\'s model" '
            "follows the Kernel spectrum widget",
        )
        self.other = LineEdit(
            label="model / file", value="", tooltip="a torchvision name or a weights file (Enter)"
        )
        self.weights = ComboBox(
            label="weights",
            choices=list(WEIGHTS),
            value="auto",
            tooltip="auto: pretrained if available, else random (untrained) with a warning",
        )
        self.layer = LineEdit(
            label="layer", value="", tooltip="a convolution, e.g. layer2.0.conv1 (empty: first)"
        )
        self.relu = CheckBox(
            label="ReLU", value=True, tooltip="show the maps after ReLU (negatives at 0)"
        )
        self.normalize = ComboBox(
            label="normalize",
            choices=list(NORMALIZE),
            value="auto",
            tooltip="how the image is scaled before the convolution (auto: the model's own)",
        )
        self.k = SpinBox(
            label="top patches",
            min=1,
            max=64,
            value=9,
            tooltip="how many of the image's patches that drive the filter most to show",
        )
        self.method = ComboBox(
            label="filter map",
            choices=list(EMBEDDINGS),
            value="pca",
            tooltip="how the filters are laid out in 2-D (similar filters close together)",
        )
        self.focus = SpinBox(
            label="filter",
            min=0,
            max=0,
            value=0,
            tooltip="the filter whose map, patches and boxes are shown",
        )
        self.status = Label(
            label="", value="Open an image layer.", tooltip="what is shown, or what is missing"
        )
        scrolled(  # three docks fit a 1920x1080 screen
            self,
            [
                self.image,
                self.model,
                self.other,
                self.weights,
                self.layer,
                self.relu,
                self.normalize,
                self.k,
                self.method,
                self.focus,
                self.status,
            ],
        )
        self.status.native.setWordWrap(True)
        self.other.visible = False

        self.image.changed.connect(self._on_image)
        self.model.changed.connect(self._on_model)
        self.other.native.editingFinished.connect(self.request_update)
        self.layer.native.editingFinished.connect(self.request_update)
        for control in (self.weights, self.relu, self.normalize, self.k, self.method):
            control.changed.connect(self.request_update)
        self.focus.changed.connect(self.focus_filter)
        self._connect(self.viewer.layers.events.inserted, self._refresh_images)
        self._connect(self.viewer.layers.events.removed, self._refresh_images)
        self._connect(self.viewer.layers.selection.events.active, self._on_selected_layer)
        self._connect(self.viewer.dims.events.current_step, self._on_step)
        self._connect(self.session.bank_changed, self._on_main_bank)
        self._connect(self.session.result_changed, self._on_main_result)
        self._connect(self.session.filter_focused, self._on_main_focus)
        self._watcher = on_close(self.native, self.close_widget)
        self._refresh_images()
        if self.session.result is not None:
            self._main_labels = np.asarray(self.session.result.labels)
        if self._main_bank is not None:
            self.model.reset_choices()
            self.model.value = MAIN  # fires request_update
        elif self.image.value is not None:
            self.request_update()

    def _on_closed(self) -> None:
        if self._watched is not None:
            with contextlib.suppress(Exception):
                self._watched.events.data.disconnect(self._on_image_data)
            self._watched = None

    # --- choices and linking ---------------------------------------------------------------

    def _image_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        from ..layout import user_images

        return [(lay.name, lay) for lay in user_images(self.viewer)]

    def _refresh_images(self, event: Any = None) -> None:
        if self._closed:
            return
        before = self.image.value
        self.image.reset_choices()
        if self.image.value is None:
            choices = self._image_choices()
            if choices:
                self.image.value = choices[-1][1]
        if self.image.value is not before:
            self._on_image()

    def _on_selected_layer(self, event: Any = None) -> None:
        """Follow the image layer the user selects in the layer list."""
        active = self.viewer.layers.selection.active
        if self._closed or active is None or active is self.image.value:
            return
        if any(lay is active for _, lay in self._image_choices()):
            self.image.value = active  # -> _on_image

    def _on_main_bank(self, bank: KernelBank) -> None:
        if self._closed or bank is self._main_bank:
            return
        first = self._main_bank is None
        self._main_bank = bank
        self._main_labels = None
        if first:
            self.model.reset_choices()  # now with the "main widget" choice
        if self.model.value == MAIN:
            self.request_update()

    def _on_main_result(self, result: Any) -> None:
        if self._closed:
            return
        changed = result.bank is not self._main_bank
        self._main_bank = result.bank
        self._main_labels = np.asarray(result.labels)
        if self.model.value != MAIN:
            return
        if changed:
            self.request_update()
        elif self._outcome is not None and self._outcome.maps is not None:
            self._show_filter_map(self._outcome, self._main_labels)

    def _on_main_focus(self, index: int) -> None:
        if not self._closed and not self._focusing and self.model.value == MAIN:
            self.focus_filter(index)

    # --- requests ---------------------------------------------------------------------------

    def _on_model(self) -> None:
        self.other.visible = self.model.value == OTHER
        self.weights.enabled = self.model.value != MAIN
        self.request_update()

    def _on_image(self) -> None:
        if self._closed:
            return
        self.session.set_image(self.image.value)
        if self._watched is not None:
            self._watched.events.data.disconnect(self._on_image_data)
        self._watched = self.image.value
        if self._watched is not None:
            self._watched.events.data.connect(self._on_image_data)
        self.request_update()

    def _on_image_data(self, event: Any = None) -> None:
        self.request_update()

    def source(self) -> Any:
        """The bank or model name / file the controls select, or None when incomplete."""
        choice = self.model.value
        if choice == MAIN:
            return self._main_bank
        if choice == OTHER:
            return self.other.value.strip() or None
        return str(choice)

    def request_update(self, *args: Any) -> MapsRequest | None:
        """Start a worker for the current image and controls; None if something is missing."""
        if self._closed:
            return None
        layer = self.image.value
        source = self.source()
        if layer is None or source is None:
            self.status.value = "Open an image layer." if layer is None else "Choose a model."
            return None
        data = np.asarray(layer.data)
        if layer.rgb is False and data.ndim != 2:
            self.status.value = f"{layer.name} is {data.ndim}-D: pick a 2-D or RGB image layer."
            return None
        labels = self._main_labels if self.model.value == MAIN else None
        request = MapsRequest(
            generation=self._jobs.generation + 1,
            source=source,
            image=data,
            layer=self.layer.value.strip() or None,
            weights=self.weights.value,
            relu=bool(self.relu.value),
            normalize=self.normalize.value,
            k=int(self.k.value),
            method=self.method.value,
            labels=labels,
        )
        self._start(request)
        return request

    def _start(self, request: MapsRequest) -> None:
        self.status.value = "Computing feature maps…"
        self._jobs.submit(
            lambda is_stale: compute_maps(request),
            on_done=self._on_done,
            desc="Feature maps",
            payload=request,
        )

    @property
    def busy(self) -> bool:
        """True while the newest request has not been applied."""
        return not self._closed and self._applied < self._jobs.generation

    @property
    def _running(self) -> int:
        return int(self._jobs.running is not None)

    def wait_idle_condition(self) -> bool:
        """True once the newest request is applied and no worker runs (for tests)."""
        return not self.busy and self._jobs.running is None

    def _on_done(self, job: Any) -> None:
        if self._closed or self._jobs.is_stale(job.generation):
            return  # stale: a newer request is on its way
        self._applied = job.generation
        for message in job.warnings:
            from napari.utils.notifications import show_warning

            show_warning(message)
        if job.error is not None:
            logger.error("feature maps worker failed", exc_info=job.error)
            self.last_error = f"{type(job.error).__name__}: {job.error}"
            self.status.value = f"Error: {self.last_error}"
            return
        outcome: MapsOutcome = job.value
        if outcome.error is not None:
            from napari.utils.notifications import show_error

            self.last_error = outcome.error
            self.status.value = f"Error: {outcome.error}"
            show_error(outcome.error)
            return
        self.last_error = None
        self._apply(outcome)

    # --- layers (main thread) -------------------------------------------------------------

    def _image_frame(self) -> tuple[Any, Any, tuple[int, int]]:
        layer = self.image.value
        if layer is None:
            return (1.0, 1.0), (0.0, 0.0), (1, 1)
        shape = np.shape(layer.data)[:2]
        return tuple(layer.scale[-2:]), tuple(layer.translate[-2:]), shape

    def _put(self, role: str, data: Any) -> Any:
        """Create the layer of `role`, or update ours in place (same layer object)."""
        layer = self._layers.get(role)
        if layer is not None and layer in self.viewer.layers:
            kwargs = data.kwargs
            if data.layer_type == "image" and getattr(layer, "rgb", False) != kwargs.get(
                "rgb", False
            ):
                self.viewer.layers.remove(layer)
            else:
                _update(layer, data)
                return layer
        add = getattr(self.viewer, f"add_{data.layer_type}")
        layer = add(data.data, **data.kwargs)
        self._layers[role] = layer
        if role == "filter_map":
            on_selection(layer, self._on_point_selected)
        return layer

    def _apply(self, outcome: MapsOutcome) -> None:
        from ..maps_layers import maps_layer

        maps = outcome.maps
        assert maps is not None
        self._outcome = outcome
        self._shown = None
        scale, translate, _ = self._image_frame()
        show_colour_bar(self._put("feature_maps", maps_layer(maps, scale, translate)))
        shown = self._layers.get("filter_map")
        previous = self._map_of
        if (
            shown is None
            or shown not in self.viewer.layers
            or previous is None
            or previous[0] is not outcome.xy
            or not np.array_equal(previous[1], outcome.labels)
        ):  # an image edit leaves the filter map as it is
            self._show_filter_map(outcome, outcome.labels)
        n = maps.n_filters
        self.focus.max = max(0, n - 1)
        index = min(int(self.focus.value), n - 1)
        self.focus_filter(index)
        h, w = maps.maps.shape[1:]
        self.status.value = (
            f"{maps.bank.display_name} {maps.bank.layer}: {n} maps of {h}×{w}, scale "
            f"{maps.scale[0]:g}, receptive field {maps.receptive_field[0]} px; "
            f"{maps.meta['normalisation']}, {maps.meta['channels']}"
        )

    def _show_filter_map(self, outcome: MapsOutcome, labels: Any) -> None:
        from ..maps_layers import filter_map_layer

        if outcome.xy is None or outcome.maps is None:
            return
        labels = np.asarray(labels if labels is not None else outcome.labels)
        scale, translate, shape = self._image_frame()
        data = filter_map_layer(
            outcome.xy, labels, outcome.maps, shape, scale, translate, outcome.request.method
        )
        self._put("filter_map", data)
        self._map_of = (outcome.xy, labels)

    @property
    def layers(self) -> dict[str, Any]:
        """The widget's layers by role (see `maps_layers.MAP_ROLES`)."""
        return {role: lay for role, lay in self._layers.items() if lay in self.viewer.layers}

    @property
    def outcome(self) -> MapsOutcome | None:
        """The results shown now."""
        return self._outcome

    # --- focus ------------------------------------------------------------------------------

    def focus_filter(self, index: int) -> None:
        """Show filter `index`: move the slider to its map, show its patches and boxes, and
        tell the linked main widget."""
        outcome = self._outcome
        if outcome is None or outcome.top is None or self._focusing:
            return
        index = int(index)
        if not 0 <= index < outcome.top.bank.n_filters:
            return
        self._focusing = True
        try:
            if self.focus.value != index:
                self.focus.value = index
            maps = self._layers.get("feature_maps")
            if maps is not None and maps in self.viewer.layers:
                axis = self.viewer.dims.ndim - maps.ndim  # the maps' filter axis in the viewer
                if self.viewer.dims.current_step[axis] != index:
                    self.viewer.dims.set_current_step(axis, index)
            self._show_patches(outcome, index)
            self._shown = index
            if self.model.value == MAIN and index < self.session_filters():
                self.session.focus(index)  # the main widget zooms to it
        finally:
            self._focusing = False

    def _show_patches(self, outcome: MapsOutcome, index: int) -> None:
        from ..maps_layers import boxes_layer, patches_layer

        top = outcome.top
        assert top is not None
        if index not in outcome.crops:
            outcome.crops[index] = top.crops([outcome.request.image], index)
        scale, translate, shape = self._image_frame()
        self._put(
            "top_patches", patches_layer(top, outcome.crops[index], index, shape, scale, translate)
        )
        self._put("patch_boxes", boxes_layer(top, index, scale, translate))

    def session_filters(self) -> int:
        """Number of filters of the session's bank (0 when none)."""
        return 0 if self.session.bank is None else int(self.session.bank.n_filters)

    def _on_step(self, event: Any = None) -> None:
        maps = self._layers.get("feature_maps")
        if self._closed or maps is None or maps not in self.viewer.layers or self._focusing:
            return
        axis = self.viewer.dims.ndim - maps.ndim
        index = int(self.viewer.dims.current_step[axis])
        if index == self._shown:
            return
        # Deferred: this event also fires while napari inserts a layer (the world extent
        # changes), and adding our own layers inside that insertion corrupts the layer list.
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, lambda: None if self._closed else self.focus_filter(index))

    def _on_point_selected(self, *args: Any) -> None:
        points = self._layers.get("filter_map")
        if points is None or not len(points.selected_data):
            return
        chosen = int(points.features["filter"].iloc[min(points.selected_data)])
        if chosen != self._shown:
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, lambda: None if self._closed else self.focus_filter(chosen))


def _update(layer: Any, data: Any) -> None:
    """Apply new layer data in place (a removed layer costs a garbage collection)."""
    kwargs = data.kwargs
    layer.data = data.data
    for key in ("scale", "translate"):
        if key in kwargs:
            setattr(layer, key, kwargs[key])
    if data.layer_type == "image":
        layer.colormap = kwargs.get("colormap", layer.colormap)
        if "contrast_limits" in kwargs:
            layer.contrast_limits = kwargs["contrast_limits"]
    else:
        layer.features = kwargs["features"]  # reassign: in-place edits fire no event
        if data.layer_type == "points":
            layer.face_color = kwargs["face_color"]
        elif len(data.data):
            layer.edge_color = kwargs["edge_color"]
        layer.text = kwargs["text"]
    layer.name = kwargs["name"]
    layer.metadata = dict(kwargs["metadata"])
    layer.refresh()
