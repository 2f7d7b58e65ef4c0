"""Training history in napari: the kernels, spectra and clusters layers with a leading T axis.

Every step of a history is laid out on the grid of the first step (one `MosaicGeometry`),
so filter ``i`` stays in the same tile while napari's dims slider scrubs through training.
Pure numpy, no Qt: the reader and the widget both use `history_layer_data`.

Each layer's ``metadata["kernelspec"]`` is that of the first step plus ``"history"``: the
step names and the labels and descriptors of every step; `step_metadata` gives the
per-step metadata that `layers.describe_position` reads, and `step_name` the name of the
step under a dims position.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.descriptors import DESCRIPTOR_NAMES
from .layers import (
    LayerData,
    beside,
    clusters_layer,
    kernels_layer,
    result_geometry,
    spectra_layer,
)

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult
    from ..base.bank import KernelBank

__all__ = [
    "MAX_HISTORY_BYTES",
    "analyse_history",
    "check_history_memory",
    "history_label",
    "history_layer_data",
    "load_steps",
    "read_history",
    "sample_lenet5_history",
    "step_metadata",
    "step_name",
]

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: Most memory a training history may take in napari: every step's analysis and mosaics
#: stay in memory so that the dims slider can scrub them.
MAX_HISTORY_BYTES = 2 << 30

#: Axis labels of the history layers: napari's dims slider is labelled "step".
STEP_AXIS_LABELS = ("step", "y", "x")


def _stack_images(layers: Sequence[LayerData]) -> tuple[np.ndarray | None, dict[str, Any]]:
    data = None if layers[0].data is None else np.stack([layer.data for layer in layers])
    kwargs = dict(layers[0].kwargs)
    for key, lead in (("scale", 1.0), ("translate", 0.0)):
        if key in kwargs:
            kwargs[key] = (lead, *kwargs[key])
    return data, kwargs


def _stack_points(layers: Sequence[LayerData]) -> tuple[np.ndarray, dict[str, Any]]:
    """One frame marker per filter and step: points ``(t, row, column)``, a ``step`` column."""
    points = [
        np.column_stack([np.full(len(layer.data), float(t)), layer.data])
        for t, layer in enumerate(layers)
    ]
    features: dict[str, list[Any]] = {}
    for t, layer in enumerate(layers):
        features.setdefault("step", []).extend([t] * len(layer.data))
        for key, values in dict(layer.kwargs["features"]).items():
            features.setdefault(key, []).extend(list(values))
    kwargs = dict(layers[0].kwargs)
    kwargs["border_color"] = np.concatenate([np.asarray(x.kwargs["border_color"]) for x in layers])
    kwargs["features"] = {k: np.asarray(v) for k, v in features.items()}
    text = dict(kwargs["text"])
    text["translation"] = [0.0, *text["translation"]]
    kwargs["text"] = text
    return np.concatenate(points), kwargs


def history_layer_data(
    results: Sequence[AnalysisResult],
    steps: Sequence[str],
    view: str = "colour",
    label: str | None = None,
    *,
    side_by_side: bool = False,
    with_images: bool = True,
    origin: tuple[float, float] = (0.0, 0.0),
) -> list[LayerData]:
    """The three layers of a training history, each with a leading T (step) axis.

    Parameters
    ----------
    results : sequence of AnalysisResult
        One per step, all of one layer shape (T steps).
    steps : sequence of str
        Step names, shown by `step_name`.
    view : str
        Kernel view (`views.VIEWS`).
    label : str, optional
        Start of the layer names (default: the first step's model label).
    side_by_side : bool
        Kernels to the right of the spectra, framed on both (see `layers.clusters_layer`).
    with_images : bool
        False leaves the spectra's and kernels' ``data`` None (a threshold change: only the
        frames and the metadata change; the widget keeps the pixels).
    origin : (float, float)
        World (row, column) of the mosaics' first pixel (`layout.beside_all`).

    Returns
    -------
    list of LayerData
        Spectra ``(T, Y, X)``, kernels ``(T, y, x, 3)`` RGB with ``scale``/``translate``
        of 3 axes, clusters: a frame marker per filter and step ``(t, row, column)``,
        ``features`` with a ``step`` column.
    """
    from ..analysis.history import history_drift

    results = list(results)
    drift = history_drift(results, steps)  # checks one shape and one result per step
    geometry = result_geometry(results[0], origin=origin)
    kernels_at = beside(geometry) if side_by_side else None
    per_step = [
        (
            spectra_layer(r, geometry, with_data=with_images),
            kernels_layer(r, view, kernels_at or geometry, with_data=with_images),
            clusters_layer(r, geometry, kernels_at=kernels_at),
        )
        for r in results
    ]
    history = {
        "steps": list(drift.steps),
        "labels": [r.labels.astype(int).tolist() for r in results],
        "descriptors": [{k: r.descriptors[k].tolist() for k in DESCRIPTOR_NAMES} for r in results],
        "n_clusters": [r.n_clusters for r in results],
        "drift": drift.to_dict(),
    }
    out = []
    for role, index in (("spectra", 0), ("kernels", 1), ("clusters", 2)):
        layers = [step[index] for step in per_step]
        if role == "clusters":
            data, kwargs = _stack_points(layers)
        else:
            data, kwargs = _stack_images(layers)
        kwargs["axis_labels"] = STEP_AXIS_LABELS  # the dims slider reads "step"
        kwargs["metadata"] = dict(kwargs["metadata"])
        meta = dict(kwargs["metadata"]["kernelspec"])
        meta["history"] = history
        kwargs["metadata"]["kernelspec"] = meta
        if label is not None:
            kwargs["name"] = f"{label} {role}"
        out.append(LayerData(data=data, kwargs=kwargs, layer_type=layers[0].layer_type))
    return out


def step_metadata(meta: dict[str, Any], step: int) -> dict[str, Any]:
    """A history layer's metadata as for a single step (for `layers.describe_position`)."""
    history = meta.get("history")
    if not history:
        return meta
    t = int(np.clip(step, 0, len(history["steps"]) - 1))
    return {
        **meta,
        "labels": history["labels"][t],
        "descriptors": history["descriptors"][t],
        "n_clusters": history["n_clusters"][t],
        "step": t,
        "step_name": history["steps"][t],
    }


def step_name(meta: dict[str, Any], position: Sequence[float]) -> str | None:
    """Name of the step a dims position shows (its first coordinate), or None."""
    history = meta.get("history")
    if not history or not len(position):
        return None
    t = int(np.clip(round(float(position[0])), 0, len(history["steps"]) - 1))
    return str(history["steps"][t])


def load_steps(
    source: str | os.PathLike[str],
    analyse: Callable[[KernelBank], AnalysisResult],
    is_stale: Callable[[], bool] = lambda: False,
) -> tuple[list[KernelBank], list[str], AnalysisResult] | None:
    """Load the checkpoints of a history for napari, refusing early what napari cannot hold.

    The first checkpoint is loaded and analysed with `analyse`, and `check_history_memory`
    decides from it whether every step fits before the others are read; steps of different
    shapes are refused before any of them is analysed.

    Returns
    -------
    (banks, step names, the first step's analysis), or None once `is_stale()` is true
    (checked between checkpoints).

    Raises
    ------
    KernelSpecError
        A bad folder or list file, a step that does not load, too much memory, mixed shapes.
    """
    from ..base.errors import KernelSpecError
    from ..sources.history import history_steps, step_name
    from ..sources.loading import load_kernels

    paths = history_steps(source)
    banks = [load_kernels(paths[0])]
    first = analyse(banks[0])
    check_history_memory(first, len(paths))  # before the other steps are read
    for path in paths[1:]:
        if is_stale():
            return None
        banks.append(load_kernels(path))
    shapes = {bank.weights.shape for bank in banks}
    if len(shapes) > 1:
        raise KernelSpecError(
            f"the checkpoints in {source} hold first layers of {len(shapes)} different shapes "
            f"({', '.join(map(str, sorted(shapes)))}); a training history is the checkpoints "
            "of one model"
        )
    return banks, [step_name(p) for p in paths], first


def analyse_history(
    source: str | os.PathLike[str], **params: Any
) -> tuple[list[AnalysisResult], list[str]]:
    """Load and analyse every step of a history folder or list file (see `load_steps`)."""
    from ..analysis.pipeline import analyze

    loaded = load_steps(source, lambda bank: analyze(bank, **params))
    assert loaded is not None  # never stale
    banks, steps, first = loaded
    return [first, *(analyze(bank, **params) for bank in banks[1:])], steps


def history_step_bytes(first: AnalysisResult) -> int:
    """Memory one step of a history like `first` takes in napari: its analysis and its
    slice of the three layers."""
    layers = history_layer_data([first], ["step"])
    return first.nbytes + sum(
        int(np.asarray(layer.data).nbytes) for layer in layers if layer.data is not None
    )


def check_history_memory(first: AnalysisResult, n_steps: int) -> None:
    """Refuse a history of `n_steps` steps like `first` that would not fit `MAX_HISTORY_BYTES`.

    Raises
    ------
    KernelSpecError
        Saying how much it would take and how many steps would fit.
    """
    from ..base.errors import KernelSpecError

    per_step = history_step_bytes(first)
    if per_step * n_steps <= MAX_HISTORY_BYTES:
        return
    fits = max(1, MAX_HISTORY_BYTES // per_step)
    every = -(-n_steps // fits)
    raise KernelSpecError(
        f"{n_steps} steps of this layer need about {per_step * n_steps / 2**30:.1f} GiB in "
        f"napari ({per_step / 2**20:.1f} MiB per step; at most "
        f"{MAX_HISTORY_BYTES / 2**30:.0f} GiB): choose a folder with one checkpoint in "
        f"{every} (at most {fits} steps), or use kernelspec report --history"
    )


def history_label(source: str | os.PathLike[str]) -> str:
    """Start of a history's layer names: ``"<folder> history"``."""
    return f"{Path(source).name} history"


def _history_layers(source: str | os.PathLike[str], view: str, label: str) -> list[LayerDataTuple]:
    """Load and analyse every step of `source`; its three layers, each carrying the banks."""
    from ..sources.history import history_steps
    from .reading import (
        preload_torch_unless_torch_free,
        use_chance_store,
        warnings_as_notifications,
    )
    from .saving import attach_bank
    from .zoom import follow_zoom_of_current_viewer

    preload_torch_unless_torch_free(history_steps(source))
    use_chance_store()
    follow_zoom_of_current_viewer()
    with warnings_as_notifications():
        results, steps = analyse_history(source)
    banks = [result.bank for result in results]
    out = []
    origin = _beside_current_viewer()  # never over the user's images
    for layer in history_layer_data(results, steps, view, label, origin=origin):
        data, kwargs, layer_type = layer.as_tuple()
        out.append((data, attach_bank(kwargs, banks, steps), layer_type))
    return out


def _beside_current_viewer() -> tuple[float, float]:
    """`layout.beside_all` in the current viewer; (0, 0) without one."""
    from .layout import beside_all

    try:
        from napari import current_viewer

        viewer = current_viewer()
    except Exception:  # no Qt / no viewer: nothing to avoid
        return 0.0, 0.0
    return (0.0, 0.0) if viewer is None else beside_all(viewer, (0.0, 0.0))


def read_history(path: str | os.PathLike[str] | list[Any]) -> list[LayerDataTuple]:
    """npe2 reader of a folder of checkpoints: the three layers with a T axis.

    torch is imported only for steps that need it (not for ``.npy``/``.npz`` steps).
    """
    from .reading import DEFAULT_VIEW, single_path

    single = single_path(path)
    if single is None:
        raise ValueError(f"read_history opens one folder at a time, got {path!r}")
    return _history_layers(single, DEFAULT_VIEW, history_label(single))


def sample_lenet5_history() -> list[LayerDataTuple]:
    """LeNet5's first layer trained on scikit-learn's digits, one step per epoch.

    From the weights that ship with the package: no training, no torch import (see
    `sources.history.lenet5_history`).
    """
    from ..sources.history import lenet5_history

    return _history_layers(lenet5_history(), "colour", "LeNet5 training")
