"""npe2 entry points: the reader and the sample data (thin; heavy imports inside functions).

The widget itself is ``napari_kernelspec._napari._qt.widget:KernelSpectrumWidget``; the
writer is in `saving`; what the readers share is in `reading`.

The samples open without training and, with the kernel cache filled, without importing
torch: LeNet5's trained weights ship with the package (`sources.digits.read_shipped`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..sources.checkpoints import MODEL_SUFFIXES, SUFFIXES, is_weights_file
from . import reading

__all__ = [
    "READER_SUFFIXES",
    "get_reader",
    "preload_torch",
    "read_weights",
    "sample_alexnet",
    "sample_lenet5",
]

#: File types the reader opens (those `load_kernels` reads).
READER_SUFFIXES = SUFFIXES

#: Largest kernel side the reader takes a .npy/.npz array for (vit_b_16's is 16).
MAX_KERNEL = 64

#: Kernel view of layers opened by the reader and the sample data.
DEFAULT_VIEW = reading.DEFAULT_VIEW

LayerDataTuple = reading.LayerDataTuple

#: Import torch safely under napari's OpenGL context (kept here for the widgets' imports).
preload_torch = reading.preload_torch
_single_path = reading.single_path


def _numpy_holds_kernels(path: Path) -> bool:
    """True if a .npy, or an array in a .npz, looks like convolution weights.

    That is a 4-D floating array whose kernels are at most `MAX_KERNEL` pixels on a side,
    read from the headers only. Images and image stacks saved as .npy, (T, Z, Y, X) ones
    included, are left to napari's own reader.
    """
    import numpy as np

    def four_d(handle: Any) -> bool:
        version = np.lib.format.read_magic(handle)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = reader(handle)
        return len(shape) == 4 and dtype.kind == "f" and max(shape[2:]) <= MAX_KERNEL

    try:
        if path.suffix.lower() == ".npy":
            with path.open("rb") as handle:
                return four_d(handle)
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".npy"):
                    with archive.open(name) as handle:
                        if four_d(handle):
                            return True
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return False


def get_reader(
    path: str | os.PathLike[str] | list[Any],
) -> Callable[[Any], list[LayerDataTuple]] | None:
    """npe2 reader contribution: a function that opens one weights file, or None.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open; one file with a suffix of `READER_SUFFIXES`, or a
        folder of at least two such files (a training history, see `history.read_history`).

    Returns
    -------
    callable or None
    """
    single = _single_path(path)
    if single is None:
        return None
    file = Path(single)
    if file.is_dir():  # a folder of checkpoints of one model: a training history
        from ..sources.history import is_history_folder
        from .history import read_history

        return read_history if is_history_folder(file) else None
    suffix = file.suffix.lower()
    if not file.is_file():
        return None
    if suffix not in READER_SUFFIXES:
        # Other frameworks' files (ONNX, Keras, TensorFlow.js model.json): taken only when
        # their first bytes say so; anything else is left to napari's other readers.
        if suffix not in MODEL_SUFFIXES and file.name != "model.json":
            return None
        return read_weights if is_weights_file(file) is None else None
    if suffix in (".npy", ".npz") and not _numpy_holds_kernels(file):
        return None
    return read_weights


def read_weights(path: str | os.PathLike[str] | list[Any]) -> list[LayerDataTuple]:
    """Open a weights file as the widget's three layers: spectra, kernels, clusters.

    Warnings raised while loading are also shown as napari notifications. Every layer
    carries the bank (`saving.attach_bank`), so File > Save Layers can write it back.

    Raises
    ------
    KernelSpecError
        For a file without usable convolution weights (napari shows the message).
    """
    single = _single_path(path)
    if single is None:
        raise ValueError(f"read_weights opens one file at a time, got {path!r}")
    return _layers_of(Path(single))


def _layers_of(source: str | Path) -> list[LayerDataTuple]:
    """Load, analyse with the defaults, and lay out the three layers of `source`.

    The kernels are shown and the spectra hidden (the two mosaics share one grid, so one
    would cover the other). The new mosaic is placed to the right of any kernelspec layers
    already in the current viewer, so files opened one after another do not pile up.
    """
    from ..analysis.pipeline import analyze
    from ..sources.loading import load_kernels
    from .layers import layer_data, place_beside, spectrum_colormap
    from .saving import attach_bank
    from .zoom import follow_zoom_of_current_viewer

    reading.preload_torch_unless_torch_free([source])
    with reading.warnings_as_notifications():
        bank = load_kernels(source, weights="auto")
        result = analyze(bank)
    follow_zoom_of_current_viewer()  # indices sized to the tiles, also without the widget
    origin = place_beside(_right_edges())
    out = []
    for layer in layer_data(result, DEFAULT_VIEW, origin=origin, colormap=spectrum_colormap()):
        data, kwargs, layer_type = layer.as_tuple()
        if layer.role == "spectra":
            kwargs = {**kwargs, "visible": False}
        out.append((data, attach_bank(kwargs, bank), layer_type))
    return out


def _right_edges() -> list[float]:
    """Right world edge of every layer in the current viewer (none without a viewer)."""
    try:
        from napari import current_viewer

        viewer = current_viewer()
    except Exception:  # no Qt / no viewer: nothing to avoid
        return []
    if viewer is None:
        return []
    edges = []
    for layer in viewer.layers:
        try:
            extent = layer.extent.world
        except Exception:
            continue
        if extent is not None and len(extent[1]) and float("-inf") < float(extent[1][-1]):
            edges.append(float(extent[1][-1]))
    return edges


def sample_lenet5() -> list[LayerDataTuple]:
    """LeNet5's first layer, trained on scikit-learn's digits (the weights that ship with the
    package: no training, no download, no torch import)."""
    return _layers_of("lenet5")


def sample_alexnet() -> list[LayerDataTuple]:
    """AlexNet's first layer: ImageNet weights if in the torch cache (or downloadable),
    otherwise the untrained random initialisation, named so in the layer names."""
    return _layers_of("alexnet")
