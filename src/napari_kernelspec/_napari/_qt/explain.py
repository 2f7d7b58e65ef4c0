"""The napari "Explain filters" widget: what input drives a filter of any conv layer.

A magicgui Container, docked on its own (``Plugins > Explain filters``) and usable without
the main widget; `ExplainWidget.link` follows the main widget's model and focused filter when
it offers the ``bank_changed`` / ``filter_focused`` signals.

Building the model and explaining run in napari worker threads (napari's progress bar, a
Cancel button that stops between steps); layers are added in the main thread when a worker
returns. Maximising images become one mosaic Image layer with the filter indices as Points
text; attributions become an Image stack (one plane per filter, channels summed) over the
chosen image, in its world coordinates, with a blue-white-red colormap centred on zero.
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


def _build(source: str, weights: str, arch: str | None) -> ExplainModel:
    from ...imaging.explain.model import explain_model

    return explain_model(source, weights, arch=arch or None)


class ExplainWidget(Container):
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
        self.viewer = napari_viewer
        self.model_name = ComboBox(label="model", choices=list(SEED_MODELS), value="lenet5")
        self.other = LineEdit(label="or name / file", value="")
        self.weights = ComboBox(label="weights", choices=list(WEIGHTS), value="auto")
        self.arch = LineEdit(label="arch (state dict)", value="")
        self.load_button = PushButton(text="Load model")
        self.layer = ComboBox(label="layer", choices=self._conv_choices)
        self.filters = LineEdit(
            label="filters", value="", tooltip="e.g. 0,3,5-9; empty: the first 8"
        )
        self.method = ComboBox(label="method", choices=list(METHODS), value="maximize")
        self.image_layer = ComboBox(label="image layer", choices=self._image_choices)
        self.at = LineEdit(label="unit y,x", value="")
        self.steps = SpinBox(label="steps", min=1, max=100_000, value=256)
        self.size = SpinBox(label="size (px)", min=8, max=2048, value=128)
        self.window = SpinBox(label="occlusion window", min=1, max=512, value=8)
        self.run_button = PushButton(text="Explain")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="", min=0, max=1, value=0, visible=False)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.model_name,
                self.other,
                self.weights,
                self.arch,
                self.load_button,
                self.layer,
                self.filters,
                self.method,
                self.image_layer,
                self.at,
                self.steps,
                self.size,
                self.window,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
            ],
        )
        self.model: ExplainModel | None = None
        self.result: Explanation | None = None
        self.last_error: str | None = None
        self.layers: dict[str, Any] = {}
        self._worker: Any = None
        self._pending = 0  # workers started and not finished
        self._main: Any = None
        self.load_button.changed.connect(self.load_model)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.method.changed.connect(self._sync_controls)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda e=None: self.image_layer.reset_choices())
        self._sync_controls()
        if autostart:
            self.load_model()

    # --- controls ------------------------------------------------------------------------

    def _conv_choices(self, widget: Any = None) -> list[str]:
        # A callable, so that napari's reset_choices (on every layer change) keeps them.
        model = getattr(self, "model", None)
        return model.conv_names() if model is not None else []

    def _image_choices(self, widget: Any = None) -> list[str]:
        import napari

        names = [
            lay.name
            for lay in self.viewer.layers
            if isinstance(lay, napari.layers.Image) and not lay.metadata.get(_MARK)
        ]
        return names or [NO_IMAGE]

    def _sync_controls(self, *args: Any) -> None:
        method = self.method.value
        self.image_layer.visible = method != "maximize"
        self.steps.visible = self.size.visible = method == "maximize"
        self.window.visible = method == "occlusion"

    @property
    def source(self) -> str:
        """The model name or file the widget explains."""
        return self.other.value.strip() or str(self.model_name.value)

    @property
    def busy(self) -> bool:
        """True while a worker runs."""
        return self._pending > 0

    def _set_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.last_error = message
        self.status.value = f"Error: {message}"
        show_error(message)

    def _start(self, func: Any, *args: Any, total: int, desc: str, on_done: Any) -> None:
        from napari.qt.threading import create_worker

        worker = create_worker(func, *args, _progress={"total": total, "desc": desc})
        worker.returned.connect(on_done)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        if total > 1:
            worker.yielded.connect(self._on_yielded)
        self._worker = worker
        self._pending += 1
        self.progress.max = max(total, 1)
        self.progress.value = 0
        self.progress.label = desc
        self.progress.visible = True
        self.cancel_button.enabled = True
        self.run_button.enabled = self.load_button.enabled = False
        self.last_error = None
        self.status.value = f"{desc}…"
        worker.start()

    def _on_yielded(self, value: Any) -> None:
        done, total = value
        self.progress.max = total
        self.progress.value = done

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, KernelSpecError):
            self._set_error(str(exc))
        else:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.status.value = f"Error: {self.last_error}"

    def _on_finished(self, *args: Any) -> None:
        self._pending = max(0, self._pending - 1)
        if self._pending == 0:
            self.progress.visible = False
            self.cancel_button.enabled = False
            self.run_button.enabled = self.load_button.enabled = True
            if self.status.value.endswith("…"):
                self.status.value = "Cancelled." if self._worker_aborted() else ""

    def _worker_aborted(self) -> bool:
        return bool(self._worker is not None and getattr(self._worker, "abort_requested", False))

    def cancel(self, *args: Any) -> None:
        """Stop the running explanation at its next step (nothing is added to the viewer)."""
        if self._worker is not None:
            self._worker.quit()

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

    def _on_model(self, model: ExplainModel) -> None:
        self.model = model
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
            raise KernelSpecError(f"{self.method.value} explains a filter on an image: add one")
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

    def _on_result(self, result: Explanation, source_layer: Any) -> None:
        self.result = result
        for lay in list(self.layers.values()):
            if lay in self.viewer.layers:
                self.viewer.layers.remove(lay)
        self.layers = {}
        assert self.model is not None
        title = f"{self.model.name} {result.layer} {result.method}"
        if result.images is not None:
            self._show_images(result, title)
        else:
            self._show_attributions(result, title, source_layer)
        caveats = result.meta["caveats"]
        untrained = "" if self.model.is_trained else " — UNTRAINED weights"
        self.status.value = f"{title}: {len(result.filters)} filters{untrained}" + (
            "\n" + "\n".join(caveats) if caveats else ""
        )
        focus = getattr(self._main, "focus_filter", None)
        if callable(focus) and result.layer == self._main_layer():
            focus(result.filters[0])

    def _show_images(self, result: Explanation, title: str) -> None:
        from ...analysis.views import grid_shape, mosaic, tile_origins

        images = np.asarray(result.images)
        if images.shape[-1] == 1:
            images = images[..., 0]
        n, h, w = images.shape[:3]
        cols = grid_shape(n)[1]
        picture = mosaic(images, ncols=cols, gap=_GAP, fill=1.0)
        self.layers["images"] = self.viewer.add_image(
            picture,
            name=title,
            rgb=picture.ndim == 3,
            contrast_limits=(0.0, 1.0),
            metadata={_MARK: True, "filters": list(result.filters), "meta": result.meta},
        )
        origins = tile_origins(n, (h, w), cols, _GAP).astype(float) + 1.0
        self.layers["labels"] = self.viewer.add_points(
            origins,
            name=f"{title} filters",
            features={"filter": np.asarray(result.filters)},
            text={"string": "{filter}", "color": "yellow", "anchor": "upper_left", "size": 10},
            size=0.1,
            face_color="transparent",
            border_width=0,
        )

    def _show_attributions(self, result: Explanation, title: str, source: Any) -> None:
        from napari.utils.colormaps import Colormap

        from ...imaging.explain.result import DIVERGING

        maps = np.asarray(result.attributions).sum(axis=1)  # (F, H, W)
        limit = float(np.abs(maps).max()) or 1.0
        h, w = maps.shape[1:]
        scale = np.ones(2)
        translate = np.zeros(2)
        if source is not None:
            original = np.asarray(result.meta["parameters"]["image"]["original_shape"], float)
            scale = np.asarray(source.scale[-2:], float) * original / np.array([h, w])
            translate = np.asarray(source.translate[-2:], float) + (scale - source.scale[-2:]) / 2
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

    # --- following the main widget -------------------------------------------------------

    def _main_layer(self) -> str | None:
        bank = getattr(self._main, "bank", None)
        return getattr(bank, "layer", None)

    def link(self, main_widget: Any) -> None:
        """Follow the main widget: its model (``bank_changed``) and focused filter.

        Uses only what `main_widget` offers (``bank_changed(bank)``, ``filter_focused(i)``,
        ``focus_filter(i)``); anything missing is skipped.
        """
        self._main = main_widget
        bank_changed = getattr(main_widget, "bank_changed", None)
        if bank_changed is not None:
            bank_changed.connect(self._on_main_bank)
        focused = getattr(main_widget, "filter_focused", None)
        if focused is not None:
            focused.connect(self._on_main_filter)

    def _on_main_bank(self, bank: Any) -> None:
        if bank is None:
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
        self.filters.value = str(int(index))
