"""npe2 writers: File > Save Layers for the plugin's own layers (Qt-free).

- `write_bank`: the kernel bank behind a kernels, spectra or clusters layer, as ``.npy``
  (the (N, C, H, W) float32 weights; a training history: (T, N, C, H, W)) or
  ``.safetensors`` (``<layer>.weight`` and ``<layer>.bias``, as in a state dict, so the
  reader opens the file as the same layer; a history: ``<step>.<layer>.weight``, ...).
- `write_filter_table`: the filter table of a kernels or spectra layer as CSV, from the
  layer's metadata (the columns of `layers.filter_table` that the metadata holds: index,
  cluster, colour, descriptors; a history: one row per step and filter, with a ``step``
  column).

Only the plugin's own layers are written; any other layer is refused with a `NotOurLayer`
error (a `TypeError`) naming it. Not a `ValueError`: napari's ``layers.save`` turns that
into "not a valid writer" and drops the message; this one reaches the user. The bank travels in the
layer's ``metadata[BANK_KEY]``, put there by `attach_bank` when the layers are made; a
model's layer made without it (the widget's) is loaded again by name from the kernel cache
(pretrained, seeded random and the shipped LeNet5 weights are the same numbers every time). Files
are written atomically (`base.atomic.atomic_write`): a failed save leaves no partial file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.atomic import atomic_write

if TYPE_CHECKING:
    from ..base.bank import KernelBank

__all__ = [
    "BANK_KEY",
    "NotOurLayer",
    "attach_bank",
    "bank_of",
    "filter_table_rows",
    "write_bank",
    "write_filter_table",
]

#: Key of layer ``metadata`` that holds the kernel bank (see `attach_bank`).
BANK_KEY = "kernelspec_bank"

_BANK_SUFFIXES = (".npy", ".safetensors")


class NotOurLayer(TypeError):
    """The writer was given a layer the plugin did not make, or one without its bank."""


def attach_bank(
    kwargs: dict[str, Any], banks: KernelBank | Sequence[KernelBank], steps: Sequence[str] = ()
) -> dict[str, Any]:
    """Layer keyword arguments whose ``metadata[BANK_KEY]`` holds `banks`, for the writer.

    Parameters
    ----------
    kwargs : dict
        A layer's keyword arguments (not changed).
    banks : KernelBank or sequence of KernelBank
        One bank, or one per step of a training history (one shape).
    steps : sequence of str
        The step names of a history.

    Returns
    -------
    dict
        A copy of `kwargs` with a new ``metadata`` dict. ``metadata[BANK_KEY]`` holds
        ``weights`` ((N, C, H, W) float32, or (T, N, C, H, W) for a history), ``bias``
        ((N,) / (T, N) or None), ``model``, ``layer``, ``source`` and, for a history,
        ``steps``. The arrays are shared with the banks, not copied.
    """
    many = not hasattr(banks, "weights")
    seq = list(banks) if many else [banks]
    if not seq:
        raise ValueError("attach_bank needs at least one bank")
    first = seq[0]
    if many:
        weights = np.stack([np.asarray(b.weights) for b in seq])
        biases = [b.bias for b in seq]
        bias = None if any(b is None for b in biases) else np.stack(biases)
    else:
        weights, bias = np.asarray(first.weights), first.bias
    entry: dict[str, Any] = {
        "weights": weights,
        "bias": None if bias is None else np.asarray(bias, dtype=np.float32),
        "model": first.model,
        "layer": first.layer,
        "source": first.source,
    }
    if many:
        names = [str(s) for s in steps] or [f"step_{t}" for t in range(len(seq))]
        if len(names) != len(seq):
            raise ValueError(f"{len(names)} step names for {len(seq)} banks")
        entry["steps"] = names
    metadata = {**dict(kwargs.get("metadata") or {}), BANK_KEY: entry}
    return {**kwargs, "metadata": metadata}


def _own(meta: dict[str, Any]) -> dict[str, Any]:
    """The layer's ``metadata``, if the layer is one of the plugin's; else `NotOurLayer`."""
    metadata = meta.get("metadata") or {}
    own = metadata.get("kernelspec")
    if not isinstance(own, dict) or "role" not in own:
        raise NotOurLayer(
            f"napari-kernelspec saves only its own layers (kernels, spectra, clusters); "
            f"{meta.get('name', 'this layer')!r} is not one: save it with napari's writer "
            "(.tif, .png, .npz, ...)"
        )
    return metadata


def bank_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The kernel bank a layer of the plugin carries (see `attach_bank`).

    Parameters
    ----------
    meta : dict
        The layer's attributes as napari passes them to a writer (``metadata``, ``name``).

    Raises
    ------
    NotOurLayer
        Not one of the plugin's layers, or one made without its bank.
    """
    metadata = _own(meta)
    entry = metadata.get(BANK_KEY)
    if isinstance(entry, dict) and "weights" in entry:
        return entry
    reloaded = _reload(metadata["kernelspec"])
    if reloaded is None:
        raise NotOurLayer(
            f"{meta.get('name', 'this layer')!r} carries no kernel bank (layers opened from a "
            "file or a sample do, and a model's layer is loaded again); save its filter table "
            "as .csv instead"
        )
    return reloaded


#: Weights kinds a layer's metadata names that `load_kernels` gives again, number for number
#: (from the kernel cache): layer metadata value -> ``weights=``.
_RELOADABLE = {"pretrained": "pretrained", "random": "random", "trained-digits": "pretrained"}


def _reload(own: dict[str, Any]) -> dict[str, Any] | None:
    """The bank of a model's layer made without `attach_bank` (the widget's), loaded again.

    Only single-step layers of a model (pretrained, seeded random or the shipped LeNet5
    weights: the same numbers every time) whose shape matches the layer's; None otherwise
    (files, histories), or when the load fails.
    """
    kind = _RELOADABLE.get(str(own.get("weights")))
    if kind is None or own.get("history") or not own.get("model"):
        return None
    from ..sources.loading import load_kernels, loads_without_torch
    from ..sources.models import known_conv
    from .reading import preload_torch

    model, layer = str(own["model"]), own.get("layer")
    known = known_conv(model)
    if known is not None and known.name == layer:
        layer = None  # the first layer: the kernel cache's entry, no model to build
    try:
        if layer is not None or not loads_without_torch(model, kind):
            preload_torch()  # under napari's OpenGL context, before torchvision
        bank = load_kernels(model, weights=kind, layer=layer)
    except Exception:
        return None
    n = (own.get("geometry") or {}).get("n")
    if bank.source != own.get("weights") or (n is not None and bank.n_filters != int(n)):
        return None
    return attach_bank({}, bank)["metadata"][BANK_KEY]


def _suffix(path: str, allowed: tuple[str, ...], what: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise ValueError(
            f"cannot save {what} as {suffix or 'a file without suffix'}; use {', '.join(allowed)}"
        )
    return suffix


def write_bank(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: the layer's kernel bank as ``.npy`` or ``.safetensors``.

    Parameters
    ----------
    path : str
        Ends in ``.npy`` or ``.safetensors``.
    data : array
        The layer's data (unused: the bank is in the metadata).
    meta : dict
        The layer's attributes.

    Returns
    -------
    list of str
        ``[path]``.

    Raises
    ------
    NotOurLayer
        Not one of the plugin's layers, or one without its bank.
    ValueError
        Another suffix.
    """
    entry = bank_of(meta)
    suffix = _suffix(path, _BANK_SUFFIXES, "a kernel bank")
    weights = np.ascontiguousarray(entry["weights"], dtype=np.float32)
    bias = entry.get("bias")
    if suffix == ".npy":
        with atomic_write(path, "wb") as fh:
            np.save(fh, weights, allow_pickle=False)
        return [path]
    from safetensors.numpy import save

    layer = str(entry.get("layer") or "conv").removesuffix(".weight")  # a file's key
    steps = entry.get("steps")
    tensors: dict[str, np.ndarray] = {}
    for t, prefix in enumerate(steps or [None]):
        stem = f"{prefix}.{layer}" if prefix is not None else layer
        tensors[f"{stem}.weight"] = weights[t] if steps else weights
        if bias is not None:
            b = np.asarray(bias, dtype=np.float32)
            tensors[f"{stem}.bias"] = np.ascontiguousarray(b[t] if steps else b)
    header = {
        "model": str(entry.get("model", "")),
        "layer": layer,
        "weights": str(entry.get("source", "")),
        "written_by": "napari-kernelspec",
    }
    if steps:
        header["steps"] = json.dumps(list(steps))
    blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=header)
    with atomic_write(path, "wb") as fh:
        fh.write(blob)
    return [path]


def filter_table_rows(meta: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The filter table of a layer of the plugin, from its ``metadata["kernelspec"]``.

    Returns
    -------
    columns : list of str
        ``model``, ``layer``, ``weights``, (``step`` for a history), ``index``, ``cluster``
        (-1 = unclustered), ``colour`` (the frame's hex colour, empty when unclustered) and
        every descriptor.
    rows : list of list
        One per filter (and step); an undefined descriptor (NaN) is None.
    """
    from ..analysis.descriptors import DESCRIPTOR_NAMES
    from ..analysis.palette import to_hex
    from .layers import cluster_edge_colors

    own = _own(meta)["kernelspec"]
    history = own.get("history")
    steps = list(history["steps"]) if history else [None]
    lead = {"model": own.get("model"), "layer": own.get("layer"), "weights": own.get("weights")}
    columns = [*lead, *(["step"] if history else []), "index", "cluster", "colour"]
    names = [n for n in DESCRIPTOR_NAMES if n in own.get("descriptors", {})]
    columns += names
    rows = []
    for t, step in enumerate(steps):
        at = {k: history[k][t] for k in ("labels", "descriptors")} if history else own
        labels = np.asarray(at["labels"], dtype=int)
        rgba = cluster_edge_colors(labels)
        for i, label in enumerate(labels.tolist()):
            row: list[Any] = [*lead.values(), *([step] if history else []), i, label]
            row.append(to_hex(rgba[i][:3]) if rgba[i][3] > 0 else "")
            for name in names:
                value = float(at["descriptors"][name][i])
                row.append(value if math.isfinite(value) else None)
            rows.append(row)
    return columns, rows


def write_filter_table(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: the filter table of a kernels or spectra layer as CSV.

    Cells go through `base.text.csv_cell` (a name a spreadsheet would read as a formula is
    neutralised); an undefined descriptor is an empty cell.

    Returns
    -------
    list of str
        ``[path]``.

    Raises
    ------
    NotOurLayer
        Not one of the plugin's layers.
    ValueError
        A suffix other than ``.csv``.
    """
    from ..base.text import csv_cell

    columns, rows = filter_table_rows(meta)
    _suffix(path, (".csv",), "a filter table")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in columns])
    for row in rows:
        writer.writerow([csv_cell("" if v is None else v) for v in row])
    with atomic_write(os.fspath(path), "w") as fh:
        fh.write(buffer.getvalue())
    return [path]
