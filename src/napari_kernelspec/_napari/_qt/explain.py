"""The napari "Explain filters" widget: what input drives a filter, or a class score.

A magicgui Container, docked on its own (``Plugins > Explain filters``) and usable without
the main widget; it follows the viewer's `Session`: the main widget's model and focused
filter.

Building the model and explaining run on the shared latest-wins `JobRunner` (napari's
progress bar, a Cancel button that stops between steps); layers are added in the main thread.
Runs accumulate: each adds layers named after the run ("lenet5 conv1 maximize (2)"), recorded
in the session; "Clear" removes them all. Maximising images become one mosaic Image layer,
placed right of everything shown (`layout.beside_all`), with the filter indices as Points
text; attributions become an Image stack (one plane per filter, channels summed) over the
chosen image, in its world coordinates, with a blue-white-red colormap centred on zero and
its value range in the layer name's legend (`legends`).

The target switch (`targets.TARGETS`) turns it from the filters of a conv layer to a class
score of a classifier ("predicted" or a class from the weights' names): the class methods
(`classes.CLASS_METHODS`: gradient, SmoothGrad, integrated gradients, occlusion, guided,
Grad-CAM, guided Grad-CAM) add one attribution plane over the image the same way; GrabCut
adds its mask as a Labels layer on the image's grid. The "synthesis" target makes images
(class visualisation of the chosen class; DeepDream of the chosen layer from the chosen
image), shown as a mosaic beside everything like maximising images.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from ...base.errors import KernelSpecError
from ...imaging.explain.attribution import METHODS
from ...sources.loading import WEIGHTS
from ...sources.models import SEED_MODELS
from ..layout import beside_all
from ..legends import show_colour_bar
from ..session import session_for
from ..targets import PREDICTED, TARGETS, class_choices, methods_for, parse_class
from .jobs import qt_runner
from .lifetime import Lifetime, on_close, scrolled

if TYPE_CHECKING:
    import napari

    from ...imaging.explain.model import ExplainModel
    from ...imaging.explain.result import Explanation

__all__ = ["WIDGET_NAME", "ExplainWidget"]

logger = logging.getLogger(__name__)

#: Display name in the manifest (``Plugins > Explain filters``).
WIDGET_NAME = "Explain filters"
NO_IMAGE = "(no image layer)"
_GAP = 2
#: Metadata key marking the layers this widget made (never offered as input images).
_MARK = "kernelspec_explain"


def _build(source: str, weights: str, arch: str | None) -> tuple[ExplainModel, list[str]]:
    from ...imaging.explain.model import explain_model

    model = explain_model(source, weights, arch=arch or None)
    return model, class_choices(model)


class ExplainWidget(Lifetime, Container):
    """Pick a model, a conv layer, filters and a method; see what drives those filters.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    autostart : bool
        Build the default model at once (lists its layers).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, autostart: bool = True) -> None:
        from ..commands import preload_torch

        preload_torch()  # here, not in a worker: triton must load before it meets Mesa's LLVM
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.session = session_for(self.viewer)
        self.model_name = ComboBox(
            label="model",
            choices=list(SEED_MODELS),
            value="lenet5",
            tooltip="the model to explain (follows the Kernel spectrum widget's model)",
        )
        self.other = LineEdit(
            label="or name / file",
            value="",
            tooltip="a torchvision name or a weights file; overrides the model above",
        )
        self.weights = ComboBox(
            label="weights",
            choices=list(WEIGHTS),
            value="auto",
            tooltip="auto: pretrained if available, else random (untrained) with a warning",
        )
        self.arch = LineEdit(
            label="arch (state dict)",
            value="",
            tooltip="the torchvision architecture of a bare state dict, e.g. resnet18",
        )
        self.load_button = PushButton(
            text="Load model", tooltip="build the model and list its convolutions"
        )
        self.target = ComboBox(
            label="explain",
            choices=list(TARGETS),
            value="filters",
            tooltip="filters: what drives filters of a conv layer; class: which pixels make "
            "the network say a class (on an image); synthesis: images the network makes "
            "(class visualisation, DeepDream)",
        )
        self.class_choice = ComboBox(
            label="class",
            choices=self._class_choices,
            tooltip="the class score explained: 'predicted' (the network's answer on the "
            "image) or one of the model's classes",
        )
        self.layer = ComboBox(
            label="layer", choices=self._conv_choices, tooltip="the convolution to explain"
        )
        self.filters = LineEdit(
            label="filters", value="", tooltip="e.g. 0,3,5-9; empty: the first 8"
        )
        self.method = ComboBox(
            label="method",
            choices=list(METHODS),
            value="maximize",
            tooltip="maximize: synthesise the input a filter likes most; the others "
            "attribute a filter's response to an image's pixels",
        )
        self.image_layer = ComboBox(
            label="image layer",
            choices=self._image_choices,
            tooltip="the image to attribute (your image layers only, not the plugin's)",
        )
        self.at = LineEdit(
            label="unit y,x",
            value="",
            tooltip="the output position explained: Y,X or 'centre' (empty: the whole map)",
        )
        self.steps = SpinBox(
            label="steps", min=1, max=100_000, value=256, tooltip="optimisation steps"
        )
        self.size = SpinBox(
            label="size (px)", min=8, max=2048, value=128, tooltip="side of the synthesised image"
        )
        self.window = SpinBox(
            label="occlusion window",
            min=1,
            max=512,
            value=8,
            tooltip="side of the square occluded at each position (pixels)",
        )
        self.run_button = PushButton(
            text="Explain", tooltip="add one run: its layers join the earlier runs'"
        )
        self.cancel_button = PushButton(
            text="Cancel", enabled=False, tooltip="stop the running job at its next step"
        )
        self.clear_button = PushButton(text="Clear", tooltip="remove every run's layers")
        self.progress = ProgressBar(
            label="", min=0, max=1, value=0, visible=False, tooltip="steps done"
        )
        self.status = Label(value="", tooltip="the last run, or what is missing")
        super().__init__(labels=False)
        scrolled(  # three docks fit a 1920x1080 screen
            self,
            [
                self.model_name,
                self.other,
                self.weights,
                self.arch,
                self.load_button,
                self.target,
                self.class_choice,
                self.layer,
                self.filters,
                self.method,
                self.image_layer,
                self.at,
                self.steps,
                self.size,
                self.window,
                Container(
                    widgets=[self.run_button, self.cancel_button, self.clear_button],
                    layout="horizontal",
                    label="",
                ),
                self.progress,
                self.status,
            ],
        )
        self.model: ExplainModel | None = None
        self.result: Explanation | None = None
        self.last_error: str | None = None
        self.layers: dict[str, Any] = {}
        self._classes: list[str] = [PREDICTED]
        self._jobs = qt_runner(self.native, name="kernelspec-explain")
        self._closed = False
        self._connections: list[tuple[Any, Any]] = []
        self.load_button.changed.connect(self.load_model)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.clear_button.changed.connect(self.clear)
        self.method.changed.connect(self._sync_controls)
        self.target.changed.connect(self._on_target)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            self._connect(event, self._refresh_images)
        self._connect(self.session.bank_changed, self._on_main_bank)
        self._connect(self.session.filter_focused, self._on_main_filter)
        self._connect(self.session.image_changed, self._on_session_image)
        self._watcher = on_close(self.native, self.close_widget)
        self._sync_controls()
        if autostart and self.session.bank is not None:
            self._on_main_bank(self.session.bank)  # the model the main widget shows
        elif autostart:
            self.load_model()

    # --- controls ------------------------------------------------------------------------

    def _conv_choices(self, widget: Any = None) -> list[str]:
        # A callable, so that napari's reset_choices (on every layer change) keeps them.
        model = getattr(self, "model", None)
        return model.conv_names() if model is not None else []

    def _image_choices(self, widget: Any = None) -> list[str]:
        from ..layout import user_images

        return [lay.name for lay in user_images(self.viewer)] or [NO_IMAGE]

    def _class_choices(self, widget: Any = None) -> list[str]:
        return list(getattr(self, "_classes", [PREDICTED]))

    def _on_target(self, *args: Any) -> None:
        previous = self.method.value
        choices = methods_for(self.target.value)
        self.method.choices = choices
        if previous not in choices:
            self.method.value = "gradcam" if "gradcam" in choices else choices[0]
        self._sync_controls()

    def _refresh_images(self, event: Any = None) -> None:
        if not self._closed:
            self.image_layer.reset_choices()

    def _on_session_image(self, layer: Any) -> None:
        """The Feature maps widget (or the selection) chose an image: offer it first."""
        if layer is not None and layer.name in self.image_layer.choices:
            self.image_layer.value = layer.name

    def _sync_controls(self, *args: Any) -> None:
        method = self.method.value
        target = self.target.value
        making = target == "synthesis"
        self.class_choice.visible = target == "class" or (making and method == "class")
        self.filters.visible = self.at.visible = target == "filters"
        self.layer.visible = target == "filters" or (making and method == "dream")
        self.image_layer.visible = method != "maximize" and not (making and method == "class")
        self.steps.visible = method == "maximize" or making
        self.size.visible = method == "maximize" or (making and method == "class")
        self.window.visible = method == "occlusion"

    @property
    def source(self) -> str:
        """The model name or file the widget explains."""
        return self.other.value.strip() or str(self.model_name.value)

    @property
    def busy(self) -> bool:
        """True while a job runs or waits."""
        return not self._closed and self._jobs.busy

    def _set_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.last_error = message
        self.status.value = f"Error: {message}"
        show_error(message)

    def _start(self, func: Any, *args: Any, total: int, desc: str, on_done: Any) -> None:
        """Run `func(*args)` (a generator yielding (done, total), or a function) as a job."""
        import inspect

        jobs = self._jobs

        def work(is_stale: Any) -> Any:
            if not inspect.isgeneratorfunction(func):
                return func(*args)
            steps = func(*args)
            try:
                while True:
                    value = next(steps)
                    if is_stale():
                        steps.close()
                        return None
                    jobs.post(lambda v=value: self._on_yielded(v))
            except StopIteration as stop:
                return stop.value

        self.progress.max = max(total, 1)
        self.progress.value = 0
        self.progress.label = desc
        self.progress.visible = True
        self.cancel_button.enabled = True
        self.run_button.enabled = self.load_button.enabled = False
        self.last_error = None
        self.status.value = f"{desc}…"
        jobs.submit(work, on_done=lambda job: self._on_done(job, on_done), desc=desc)

    def _on_yielded(self, value: Any) -> None:
        done, total = value
        self.progress.max = total
        self.progress.value = done

    def _on_done(self, job: Any, on_done: Any) -> None:
        if self._closed:
            return
        cancelled = self._jobs.is_stale(job.generation)
        if not cancelled:
            for message in job.warnings:
                from napari.utils.notifications import show_warning

                show_warning(message)
            if isinstance(job.error, KernelSpecError):
                self._set_error(str(job.error))
            elif job.error is not None:
                logger.error("explain worker failed", exc_info=job.error)
                self.last_error = f"{type(job.error).__name__}: {job.error}"
                self.status.value = f"Error: {self.last_error}"
            elif job.value is not None:
                on_done(job.value)
        if self._jobs.pending is None:
            self.progress.visible = False
            self.cancel_button.enabled = False
            self.run_button.enabled = self.load_button.enabled = True
            if self.status.value.endswith("…"):
                self.status.value = "Cancelled." if cancelled else ""

    def cancel(self, *args: Any) -> None:
        """Stop the running job at its next step (nothing is added to the viewer)."""
        self._jobs.cancel()

    def clear(self, *args: Any) -> None:
        """Remove the layers of every run (this widget's or an earlier one's)."""
        for run in self.session.clear_explanations():
            for lay in run.layers:
                if lay in self.viewer.layers:
                    self.viewer.layers.remove(lay)
        self.layers = {}

    # --- model ---------------------------------------------------------------------------

    def load_model(self, *args: Any) -> None:
        """Build the model (in a worker) and list its conv layers."""
        self._start(
            _build,
            self.source,
            self.weights.value,
            self.arch.value.strip(),
            total=0,
            desc=f"Building {self.source}",
            on_done=self._on_model,
        )

    def _on_model(self, built: tuple[ExplainModel, list[str]]) -> None:
        model, self._classes = built
        self.model = model
        self.class_choice.reset_choices()
        self.class_choice.value = PREDICTED
        names = model.conv_names()
        self.layer.reset_choices()
        self.layer.value = names[0]
        note = "" if model.is_trained else " — UNTRAINED (random weights)"
        self.status.value = f"{model.name}: {len(names)} conv layers{note}"

    # --- explaining ----------------------------------------------------------------------

    def _image(self) -> tuple[np.ndarray, Any]:
        import napari

        name = self.image_layer.value
        if name in (None, NO_IMAGE) or name not in self.viewer.layers:
            what = "a class" if self.target.value == "class" else "a filter"
            raise KernelSpecError(f"{self.method.value} explains {what} on an image: add one")
        lay = self.viewer.layers[name]
        assert isinstance(lay, napari.layers.Image)
        data = np.asarray(lay.data)
        plane_dims = 3 if lay.rgb else 2
        if data.ndim > plane_dims:  # the plane the viewer shows now
            step = self.viewer.dims.current_step
            lead = data.ndim - plane_dims
            data = data[tuple(step[-data.ndim + i] for i in range(lead))]
        return data, lay

    def _at(self) -> Any:
        text = self.at.value.strip()
        if not text:
            return None
        if text.lower() in ("centre", "center"):
            return "centre"
        try:
            y, x = (int(v) for v in text.split(","))
        except ValueError:
            raise KernelSpecError(f"unit must be Y,X or 'centre', got {text!r}") from None
        return y, x

    def run(self, *args: Any) -> None:
        """Explain the chosen filters with the chosen method, in a worker."""
        from ...imaging.explain.model import parse_filters
        from ...imaging.explain.result import iter_explain

        if self.model is None or not self.layer.value:
            self._set_error("no model loaded yet: press 'Load model'")
            return
        if self.target.value == "class":
            self._run_class()
            return
        if self.target.value == "synthesis":
            self._run_synthesis()
            return
        method = self.method.value
        try:
            layer = self.model.resolve_layer(self.layer.value)
            n = self.model.n_filters(layer)
            filters = parse_filters(self.filters.value.strip() or f"0-{min(8, n) - 1}", n, layer)
            options: dict[str, Any] = {"at": self._at()}
            image, source_layer = (None, None)
            if method == "maximize":
                options.update(steps=self.steps.value, size=self.size.value)
                total = self.steps.value * -(-len(filters) // 32)
            else:
                image, source_layer = self._image()
                total = len(filters)
                if method == "occlusion":
                    options.update(window=self.window.value)
        except KernelSpecError as exc:
            self._set_error(str(exc))
            return
        model = self.model

        def work() -> Any:
            result = yield from iter_explain(model, layer, filters, method, image=image, **options)
            return result

        self._start(
            work,
            total=total,
            desc=f"{method} {layer}",
            on_done=lambda res: self._on_result(res, source_layer),
        )

    def _run_class(self) -> None:
        """Explain a class score on the chosen image, in a worker."""
        from ...imaging.explain.methods import iter_explain_class

        method = self.method.value
        try:
            target = parse_class(self.class_choice.value)
            image, source_layer = self._image()
        except KernelSpecError as exc:
            self._set_error(str(exc))
            return
        options: dict[str, Any] = {}
        if method == "occlusion":
            options.update(window=self.window.value, window_stride=max(1, self.window.value // 2))
        model = self.model
        what = PREDICTED if target is None else f"class {target}"

        def work() -> Any:
            result = yield from iter_explain_class(model, image, method, target, **options)
            return result

        self._start(
            work,
            total=1,
            desc=f"{method} {what}",
            on_done=lambda res: self._on_result(res, source_layer, "class"),
        )

    def _run_synthesis(self) -> None:
        """Make images with one objective (class visualisation or DeepDream), in a worker."""
        from ...imaging.explain.attribution import prepare_image
        from ...imaging.explain.methods import iter_synthesize_images

        assert self.model is not None
        kind = self.method.value
        options: dict[str, Any] = {"steps": self.steps.value}
        try:
            if kind == "class":
                target = parse_class(self.class_choice.value)
                if target is None:
                    raise KernelSpecError("class visualisation needs a class: choose one")
                options.update(target=[target], size=self.size.value)
                what = f"class {target}"
            else:
                image, _ = self._image()
                options.update(
                    layers=[self.model.resolve_layer(self.layer.value)],
                    image=prepare_image(image, self.model)[0],
                )
                what = str(self.layer.value)
        except KernelSpecError as exc:
            self._set_error(str(exc))
            return
        model = self.model

        def work() -> Any:
            result = yield from iter_synthesize_images(model, kind, **options)
            return result

        self._start(
            work,
            total=self.steps.value,
            desc=f"{kind} {what}",
            on_done=lambda res: self._on_result(res, None, "synthesis"),
        )

    def _on_result(self, result: Explanation, source_layer: Any, target: str = "filters") -> None:
        self.result = result
        self.layers = {}
        assert self.model is not None
        by_class = target != "filters" and result.meta.get("target_class") is not None
        what = f"class {result.labels[0]}" if by_class and result.labels else result.layer
        base = f"{self.model.name} {what} {result.method}"
        title = base
        taken = {run.name for run in self.session.explanations}
        k = 2
        while title in taken:  # one named group of layers per run
            title, k = f"{base} ({k})", k + 1
        if result.images is not None:
            self._show_images(result, title)
        elif result.masks is not None:
            self._show_masks(result, title, source_layer)
        else:
            self._show_attributions(result, title, source_layer)
        caveats = result.meta["caveats"]
        untrained = "" if self.model.is_trained else " — UNTRAINED weights"
        if target != "filters" and "predicted_class" in result.meta:
            meta = result.meta
            said, prob = meta["predicted_class"], meta["predicted_probability"]
            if isinstance(said, list):  # a synthesis of one image per class: the first's
                said, prob = said[0], prob[0]
            said = meta.get("predicted_name") or said
            summary = f"predicted {said} (p={prob:.2f})"
        else:
            summary = f"{len(result.filters)} filters"
        self.status.value = f"{title}: {summary}{untrained}" + (
            "\n" + "\n".join(caveats) if caveats else ""
        )
        self.session.add_explanation(title, list(self.layers.values()))
        bank = self.session.bank
        if (
            target == "filters"
            and bank is not None
            and result.layer == bank.layer
            and result.filters[0] < bank.n_filters
        ):
            self.session.focus(result.filters[0])  # the main widget zooms to it

    def _show_images(self, result: Explanation, title: str) -> None:
        from ...analysis.views import grid_shape, mosaic, tile_origins

        images = np.asarray(result.images)
        if images.shape[-1] == 1:
            images = images[..., 0]
        n, h, w = images.shape[:3]
        cols = grid_shape(n)[1]
        picture = mosaic(images, ncols=cols, gap=_GAP, fill=1.0)
        at = beside_all(self.viewer, picture.shape[:2])  # never over another layer
        self.layers["images"] = self.viewer.add_image(
            picture,
            name=title,
            translate=at,
            rgb=picture.ndim == 3,
            contrast_limits=(0.0, 1.0),
            metadata={_MARK: True, "filters": list(result.filters), "meta": result.meta},
        )
        origins = tile_origins(n, (h, w), cols, _GAP).astype(float) + 1.0
        self.layers["labels"] = self.viewer.add_points(
            origins + np.asarray(at),
            name=f"{title} filters",
            metadata={_MARK: True},
            features={"filter": np.asarray(result.filters)},
            text={"string": "{filter}", "color": "yellow", "anchor": "upper_left", "size": 10},
            size=0.1,
            face_color="transparent",
            border_width=0,
        )

    @staticmethod
    def _on_grid(result: Explanation, shape: tuple[int, int], source: Any) -> tuple[Any, Any]:
        """Scale and translate that put an (H, W) plane of `result` over its source image."""
        scale = np.ones(2)
        translate = np.zeros(2)
        if source is not None:
            original = np.asarray(result.meta["parameters"]["image"]["original_shape"], float)
            scale = np.asarray(source.scale[-2:], float) * original / np.asarray(shape, float)
            translate = np.asarray(source.translate[-2:], float) + (scale - source.scale[-2:]) / 2
        return scale, translate

    def _show_masks(self, result: Explanation, title: str, source: Any) -> None:
        masks = np.asarray(result.masks).astype(np.uint8)  # (K, H, W): 1 on the object
        scale, translate = self._on_grid(result, masks.shape[1:], source)
        self.layers["masks"] = self.viewer.add_labels(
            masks,
            name=title,
            scale=(1.0, *scale),
            translate=(0.0, *translate),
            opacity=0.5,
            metadata={_MARK: True, "meta": result.meta},
        )

    def _show_attributions(self, result: Explanation, title: str, source: Any) -> None:
        from napari.utils.colormaps import Colormap

        from ...imaging.explain.result import DIVERGING

        maps = np.asarray(result.attributions).sum(axis=1)  # (F, H, W)
        limit = float(np.abs(maps).max()) or 1.0
        scale, translate = self._on_grid(result, maps.shape[1:], source)
        cmap = Colormap(DIVERGING, name="kernelspec-diverging")
        self.layers["attributions"] = self.viewer.add_image(
            maps,
            name=title,
            colormap=cmap,
            contrast_limits=(-limit, limit),
            scale=(1.0, *scale),
            translate=(0.0, *translate),
            opacity=0.7,
            metadata={_MARK: True, "filters": list(result.filters), "meta": result.meta},
        )
        show_colour_bar(self.layers["attributions"])  # signed range, centred on zero

    # --- following the main widget -------------------------------------------------------

    def _on_main_bank(self, bank: Any) -> None:
        """Follow the main widget's model (through the session)."""
        if bank is None or self._closed:
            return
        if bank.source in ("checkpoint", "array"):
            self.other.value = str(bank.provenance.get("file", bank.model))
        elif bank.model in SEED_MODELS:
            self.other.value = ""
            self.model_name.value = bank.model
        else:
            self.other.value = bank.model
        self.weights.value = "random" if bank.source == "random" else "auto"
        self.load_model()

    def _on_main_filter(self, index: int) -> None:
        if not self._closed:
            self.filters.value = str(int(index))
