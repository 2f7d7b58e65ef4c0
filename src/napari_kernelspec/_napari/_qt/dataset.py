"""The Dataset widget: one layer of a model over a labelled image set, in the viewer.

A thin front end over `imaging.dataset.dataset_statistics`, run on the shared latest-wins
`JobRunner` (napari's activity bar; a Cancel button; closing the dock stops the run at the
next partition and adds nothing). The finished result is shown as three layers placed with
`layout.beside_all` so they overlap nothing already shown (`dataset_layers`):

- the embedding of the images (t-SNE or PCA) as Points coloured by class; selecting a point
  (or moving the mouse over one) shows that image in
- an Image layer beside it;
- the filters x classes mean-activation heatmap with a colour bar and axes named
  ``("filter", "class")``.

The model follows the viewer's `Session` ("main widget's model") or is chosen here.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox

from ...base.errors import KernelSpecError
from ...sources.models import SEED_MODELS
from ..legends import show_colour_bar
from .lifetime import MAIN, OTHER, Lifetime, LinkedModel, on_close, on_selection, scrolled

if TYPE_CHECKING:
    import napari

    from ...imaging.dataset.run import DatasetResult

__all__ = ["DATASET_WIDGET_NAME", "DatasetRequest", "DatasetWidget", "compute_dataset"]

logger = logging.getLogger(__name__)

#: Display name of the widget in the manifest (``Plugins > Dataset``).
DATASET_WIDGET_NAME = "Dataset"
DIGITS = "digits"
FOLDER = "folder"


class _Cancelled(Exception):
    """Raised inside the worker once its job is stale (cancelled, superseded, closed)."""


@dataclass(frozen=True, eq=False)
class DatasetRequest:
    """One run, frozen when Run was pressed.

    Attributes
    ----------
    model : KernelBank or str
        A bank (the session's) or a model name / weights file.
    folder : str or None
        An image folder; None: the bundled digits.
    limit : int
        The first `limit` images only (0: all).
    layer : str or None
        A convolution (None: the first).
    coordinates : {"tsne", "pca"}
        t-SNE is computed only when asked for.
    """

    model: Any
    folder: str | None = None
    limit: int = 0
    layer: str | None = None
    coordinates: str = "tsne"
    partition_size: int = 64


def compute_dataset(request: DatasetRequest, is_stale: Any = lambda: False, report: Any = None):
    """`dataset_statistics` for `request` (worker thread, no Qt).

    `report(done, total)` is called after every partition; once `is_stale()` the run stops
    (raises `_Cancelled`, which the runner delivers to nobody).

    Returns
    -------
    DatasetResult or str
        The result, or the one-line message of a `KernelSpecError`.
    """
    from ...imaging.dataset.run import dataset_statistics
    from ...imaging.dataset.sources import digits_source, folder_source
    from ..commands import preload_torch

    preload_torch()
    try:
        if request.folder is None:
            source = digits_source(request.limit or None)
        else:
            source = folder_source(request.folder)
            if request.limit:
                source = dataclasses.replace(source, items=source.items[: request.limit])
        total, done = len(source), [0]

        def progress(n: int) -> None:
            if is_stale():
                raise _Cancelled
            done[0] += n
            if report is not None:
                report(done[0], total)

        if is_stale():
            raise _Cancelled
        return dataset_statistics(
            request.model,
            source,
            request.layer,
            tsne=request.coordinates == "tsne",
            partition_size=request.partition_size,
            progress=progress,
        )
    except KernelSpecError as exc:
        return str(exc)


class DatasetWidget(Lifetime, LinkedModel, Container):
    """A layer over a dataset: embedding, selected image, filters x classes heatmap.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._start_dock(napari_viewer, "kernelspec-dataset")
        self._result: DatasetResult | None = None

        self._init_model_choices()
        self.model = ComboBox(
            label="model",
            choices=self._model_choice_list,
            value="lenet5" if "lenet5" in SEED_MODELS else None,
            tooltip='the model whose layer is run over the images; "main widget\'s model" '
            "follows the Kernel spectrum widget",
        )
        self.other = LineEdit(
            label="model / file", value="", tooltip="a torchvision name or a weights file"
        )
        self.source = ComboBox(
            label="images",
            choices=[("digits sample (scikit-learn)", DIGITS), ("folder…", FOLDER)],
            value=DIGITS,
            tooltip="the bundled handwritten digits, or a folder (one sub-folder per class, "
            "as torchvision's ImageFolder; a flat folder is unlabelled)",
        )
        self.folder = FileEdit(
            label="folder", mode="d", tooltip="the image folder (one sub-folder per class)"
        )
        self.limit = SpinBox(
            label="images (0: all)",
            min=0,
            max=10_000_000,
            value=0,
            tooltip="only the first N images (in the tables' order); 0 runs them all",
        )
        self.layer = LineEdit(
            label="layer", value="", tooltip="a convolution, e.g. conv2 (empty: the first)"
        )
        self.coordinates = ComboBox(
            label="embedding",
            choices=[("t-SNE", "tsne"), ("PCA (faster)", "pca")],
            value="tsne",
            tooltip="2-D layout of the images' features: t-SNE (neighbours kept, seconds for "
            "thousands of images) or PCA",
        )
        self.run_button = PushButton(text="Run", tooltip="compute the statistics and show them")
        self.cancel_button = PushButton(text="Cancel", tooltip="stop the running computation")
        self.status = Label(
            label="", value="Choose a model and images, then Run.", tooltip="what is shown"
        )
        scrolled(
            self,
            [
                self.model,
                self.other,
                self.source,
                self.folder,
                self.limit,
                self.layer,
                self.coordinates,
                self.run_button,
                self.cancel_button,
                self.status,
            ],
        )
        self.status.native.setWordWrap(True)
        self.other.visible = False
        self.folder.visible = False
        self.cancel_button.enabled = False
        self.model.changed.connect(self._on_model)
        self.source.changed.connect(self._on_source)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._connect(self.session.bank_changed, self._on_main_bank)
        self._watcher = on_close(self.native, self.close_widget)
        if self.session.bank is not None:
            self.model.reset_choices()
            self.model.value = MAIN

    # --- controls ---------------------------------------------------------------------------

    def _on_main_bank(self, bank: Any) -> None:
        if self._closed:
            return
        current = self.model.value
        self.model.reset_choices()  # now with the "main widget" choice
        self.model.value = current if current is not None else MAIN

    def _on_model(self, *_: Any) -> None:
        self.other.visible = self.model.value == OTHER

    def _on_source(self, *_: Any) -> None:
        self.folder.visible = self.source.value == FOLDER

    def request(self) -> DatasetRequest | None:
        """The run the controls describe; None (and a status line) when incomplete."""
        choice = self.model.value
        model: Any
        if choice == MAIN:
            model = self.session.bank
        elif choice == OTHER:
            model = self.other.value.strip() or None
        else:
            model = choice
        if model is None:
            self.status.value = "Choose a model."
            return None
        folder = None
        if self.source.value == FOLDER:
            folder = str(self.folder.value) if self.folder.value else ""
            if not folder or folder == ".":
                self.status.value = "Choose an image folder."
                return None
        return DatasetRequest(
            model=model,
            folder=folder,
            limit=int(self.limit.value),
            layer=self.layer.value.strip() or None,
            coordinates=self.coordinates.value,
        )

    # --- work -------------------------------------------------------------------------------

    def run(self, *_: Any) -> DatasetRequest | None:
        """Start a run for the current controls (replacing one that runs)."""
        if self._closed:
            return None
        request = self.request()
        if request is None:
            return None
        self.status.value = "Computing dataset statistics…"
        self.cancel_button.enabled = True
        jobs = self._jobs

        def report(done: int, total: int) -> None:
            jobs.post(lambda: self._show_progress(done, total))

        jobs.submit(
            lambda is_stale: compute_dataset(request, is_stale, report),
            on_done=self._on_done,
            desc="Dataset statistics",
            payload=request,
        )
        return request

    def _show_progress(self, done: int, total: int) -> None:
        if not self._closed and self.busy:
            self.status.value = f"Computing dataset statistics… {done} / {total} images"

    def cancel(self, *_: Any) -> None:
        """Stop the running computation (nothing is shown from it)."""
        if self._closed:
            return
        self._jobs.cancel()
        self._applied = self._jobs.generation
        self.cancel_button.enabled = False
        self.status.value = "Cancelled."

    @property
    def busy(self) -> bool:
        """True while the newest run has not been applied."""
        return not self._closed and self._applied < self._jobs.generation

    def wait_idle_condition(self) -> bool:
        """True once the newest run is applied and no worker runs (for tests)."""
        return not self.busy and self._jobs.running is None

    def _on_done(self, job: Any) -> None:
        if self._closed or self._jobs.is_stale(job.generation):
            return
        self._applied = job.generation
        self.cancel_button.enabled = False
        if isinstance(job.error, _Cancelled):
            return
        if job.error is not None:
            logger.error("dataset worker failed", exc_info=job.error)
            self.last_error = f"{type(job.error).__name__}: {job.error}"
            self.status.value = f"Error: {self.last_error}"
            return
        if isinstance(job.value, str):
            from napari.utils.notifications import show_error

            self.last_error = job.value
            self.status.value = f"Error: {job.value}"
            show_error(job.value)
            return
        self.last_error = None
        self._apply(job.value, job.payload)

    # --- layers (main thread) ---------------------------------------------------------------

    @property
    def layers(self) -> dict[str, Any]:
        """The widget's layers by role (see `dataset_layers.DATASET_ROLES`)."""
        return {role: lay for role, lay in self._layers.items() if lay in self.viewer.layers}

    @property
    def result(self) -> DatasetResult | None:
        """The result shown now."""
        return self._result

    def _remove_ours(self) -> None:
        for layer in self.layers.values():
            self.viewer.layers.remove(layer)
        self._layers = {}

    def _apply(self, result: DatasetResult, request: DatasetRequest) -> None:
        from ..dataset_layers import SIDE, embedding_layer, heatmap_layer
        from ..layout import beside_all

        self._remove_ours()
        self._result = result
        data = embedding_layer(result, request.coordinates, beside_all(self.viewer, (SIDE, SIDE)))
        points = self.viewer.add_points(data.data, **data.kwargs)
        self._layers["embedding"] = points
        on_selection(points, self._on_point_selected)
        points.mouse_move_callbacks.append(self._on_hover)
        self.show_image(0)
        if result.stats.n_classes:
            data = heatmap_layer(result)
            h, w = data.data.shape
            cell = data.kwargs["scale"][0]
            data.kwargs["translate"] = beside_all(self.viewer, (h * cell, w * cell))
            heat = self.viewer.add_image(data.data, **data.kwargs)
            show_colour_bar(heat)
            self._layers["class_heatmap"] = heat
        meta = result.meta
        share = meta.get("feature_same_class")
        self.status.value = (
            f"{result.bank.display_name} {result.bank.layer} over {len(result.source)} images "
            f"of {result.source.name}"
            + (
                f"; feature neighbours of the same class: {share:.0%}"
                if isinstance(share, float) and share == share  # not None, not NaN
                else ""
            )
            + ". Select a point to see its image."
        )

    def show_image(self, row: int) -> Any:
        """Show image `row` of the shown result beside the embedding; returns its layer."""
        from ..dataset_layers import image_layer
        from ..layout import beside_all

        if self._closed or self._result is None:
            return None
        old = self._layers.get("dataset_image")
        points = self._layers.get("embedding")
        data = image_layer(self._result, row)
        if old is not None and old in self.viewer.layers and old.rgb == data.kwargs["rgb"]:
            old.data = data.data
            old.scale = data.kwargs["scale"]
            if "contrast_limits" in data.kwargs:
                old.contrast_limits = data.kwargs["contrast_limits"]
            old.name = data.kwargs["name"]
            old.metadata = dict(data.kwargs["metadata"])
            return old
        if old is not None and old in self.viewer.layers:
            self.viewer.layers.remove(old)
        # right of the embedding (and of everything else shown at that moment)
        skip = [lay for role, lay in self.layers.items() if role != "embedding"]
        size = (data.data.shape[0] * data.kwargs["scale"][0], data.data.shape[1])
        data.kwargs["translate"] = beside_all(self.viewer, size, skip=skip)
        if points is None:
            return None
        layer = self.viewer.add_image(data.data, **data.kwargs)
        self._layers["dataset_image"] = layer
        return layer

    def _on_hover(self, layer: Any, event: Any) -> None:
        """Mouse over a point of the embedding: show its image (the highlighted point)."""
        if self._closed or self._result is None:
            return
        index = layer.get_value(
            event.position,
            view_direction=event.view_direction,
            dims_displayed=event.dims_displayed,
            world=True,
        )
        if index is None:
            return
        row = int(layer.features["row"].iloc[int(index)])
        shown = self._layers.get("dataset_image")
        if shown is None or shown.metadata.get("kernelspec", {}).get("row") != row:
            self.show_image(row)

    def _on_point_selected(self, *_: Any) -> None:
        points = self._layers.get("embedding")
        if self._closed or points is None or not len(points.selected_data):
            return
        row = int(points.features["row"].iloc[min(points.selected_data)])
        from qtpy.QtCore import QTimer

        # deferred: never add or change layers inside napari's own selection handling
        QTimer.singleShot(0, lambda: None if self._closed else self.show_image(row))
