"""The main widget's controls, with a tooltip on each."""

from __future__ import annotations

from typing import Any

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

from ...analysis.pipeline import DEFAULT_MIN_SAMPLES, DEFAULT_THRESHOLD
from ...analysis.views import VIEW_LABELS, VIEWS
from ...sources.loading import WEIGHTS
from ...sources.models import SEED_MODELS
from .arrange import SHOW, SIDE_BY_SIDE
from .table import table_value

__all__ = ["CHECKPOINT", "HISTORY", "SLIDER_MIN", "TORCHVISION", "build_controls"]

TORCHVISION = "__torchvision__"
CHECKPOINT = "__checkpoint__"
HISTORY = "__history__"
#: Lowest value of the threshold slider: automatic thresholds of large kernels reach 0.4.
SLIDER_MIN = 0.05
DEFAULT_VIEW = "colour"
#: The view "raw" shows input channel 0 only: say so where it is chosen.
VIEW_CHOICE_LABELS = {"raw": "raw weights (channel 0)"}


def build_controls(widget: Any) -> list[Any]:
    """Make the controls as attributes of `widget`; returns them in layout order."""
    model_choices = [(name, key) for key, name in SEED_MODELS.items()]
    model_choices += [
        ("torchvision model…", TORCHVISION),
        ("checkpoint file…", CHECKPOINT),
        ("training history (folder)…", HISTORY),
    ]
    widget.model = ComboBox(
        label="model",
        choices=model_choices,
        value="alexnet",
        tooltip="the network whose first convolution is shown, or a file or folder of checkpoints",
    )
    widget.torchvision_name = LineEdit(
        label="torchvision name", value="", tooltip="e.g. convnext_tiny, vit_b_16 (Enter)"
    )
    widget.checkpoint = FileEdit(
        label="checkpoint",
        mode="r",
        filter="Weights (*.pth *.pt *.ckpt *.safetensors *.npy *.npz)",
        tooltip="a weights file: .pth, .pt, .ckpt, .safetensors, .npy or .npz (Enter)",
    )
    widget.history_folder = FileEdit(
        label="checkpoint folder",
        mode="d",
        tooltip="a folder of checkpoints of one model (epoch_000.pt, epoch_001.pt, …, in "
        "natural order of their names); napari's dims slider then scrubs through training",
    )
    widget.weights = ComboBox(
        label="weights",
        choices=list(WEIGHTS),
        value="auto",
        tooltip="auto: pretrained if available, else random (untrained) with a warning",
    )
    widget.view = ComboBox(
        label="view",
        choices=[(VIEW_CHOICE_LABELS.get(v, VIEW_LABELS[v]), v) for v in VIEWS],
        value=DEFAULT_VIEW,
        tooltip="raw weights: input channel 0 only, one grey scale for all filters; "
        "hover a kernel to read every channel's raw weight",
    )
    widget.method = ComboBox(
        label="spectrum",
        choices=[("response (cycles/pixel)", "response"), ("seed (resized FFT)", "seed")],
        value="response",
        tooltip="response: each filter's frequency response (cycles/pixel); seed: the "
        "original tool's FFT of the kernel resized to 32x32",
    )
    widget.threshold = FloatSlider(
        label="similarity ≥",
        min=SLIDER_MIN,
        max=0.999,
        step=0.001,
        value=DEFAULT_THRESHOLD,
        tooltip="tuning-similarity threshold of clusters (response: correlation of the "
        "spectra' shapes, whose chance level is near 0; seed: cosine of the seed spectra); "
        "a fixed number also sets duplicates and sign pairs",
    )
    widget.auto_threshold = CheckBox(
        text="auto (from the chance level)",
        value=widget._auto_supported,
        enabled=widget._auto_supported,
        label="",
        tooltip="let the analysis pick the threshold that random filters of this shape "
        "rarely reach; moving the slider turns this off",
    )
    widget.min_samples = SpinBox(
        label="min samples",
        min=1,
        max=4096,
        value=DEFAULT_MIN_SAMPLES,
        tooltip="smallest number of filters that forms a cluster",
    )
    widget.show_ = ComboBox(
        label="show",
        choices=[*SHOW, SIDE_BY_SIDE],
        value="kernels",
        tooltip="side by side: the kernels right of the spectra, each filter framed on "
        "both; \\ toggles kernels and spectra; ] and [ step through the filters",
    )
    widget.focus = SpinBox(
        label="focus filter",
        min=0,
        max=0,
        value=0,
        tooltip="the filter to inspect; linked widgets follow it",
    )
    widget.focus_button = PushButton(
        text="zoom to filter", tooltip="centre the camera on the focus filter's tile"
    )
    widget.fit_button = PushButton(text="show all", tooltip="fit the whole mosaic in the canvas")
    widget.export_table_button = PushButton(
        text="table CSV…", tooltip="write one row per filter (descriptors, cluster) as CSV"
    )
    widget.export_kernels_button = PushButton(
        text="kernels .npy…", tooltip="write the raw float32 weights (N, C, H, W) as .npy"
    )
    widget.export_view_button = PushButton(
        text="view PNG…", tooltip="write what the canvas shows as a PNG"
    )
    widget.summary = Label(
        label="", value="", tooltip="the model, its first convolution and the clusters found"
    )
    widget.hover = Label(
        label="", value="", tooltip="the filter under the cursor and its descriptors"
    )
    widget.table = Table(
        value=table_value([]),
        label="",
        tooltip="one row per cluster: select rows to highlight their frames, double-click "
        "to zoom to the first member",
    )
    widget.table.read_only = True
    return list(
        [
            widget.model,
            widget.torchvision_name,
            widget.checkpoint,
            widget.history_folder,
            widget.weights,
            widget.view,
            widget.method,
            widget.threshold,
            widget.auto_threshold,
            widget.min_samples,
            widget.show_,
            widget.focus,
            Container(
                widgets=[widget.focus_button, widget.fit_button], layout="horizontal", label=""
            ),
            Container(
                widgets=[
                    widget.export_table_button,
                    widget.export_kernels_button,
                    widget.export_view_button,
                ],
                layout="horizontal",
                label="export",
            ),
            widget.summary,
            widget.hover,
            widget.table,
        ]
    )
