"""What every weights reader hands back: lazy tensor entries, the limits, the choice of layer.

`TensorEntry` (a named tensor read lazily), `check_tensor_size` and its limits, `select_entry`
(which tensor to analyse), the search of a torch checkpoint for its state dict
(`_find_state_dict`, `_flatten`) and the refusal message for code-running pickles. The format
readers (`formats`, `onnx_format`, `keras_format`), their dispatch (`readers`) and the local
(`checkpoints`) and remote (`remote`) front ends all import it; it imports none of them.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..base.errors import KernelSpecError
from ..base.text import printable
from . import tensors

__all__ = [
    "MAX_DEPTH",
    "MAX_KERNEL_SIDE",
    "MAX_NODES",
    "MAX_TENSOR_ELEMENTS",
    "TensorEntry",
    "check_tensor_size",
    "refuse_pickle_message",
    "select_entry",
]

#: Largest kernel height or width. Real first layers are 1 to 16 pixels (ViT-B/16: 16,
#: ConvNeXt: 4 and 7, lpips ``lin`` layers: 1); large-kernel networks reach 31 (RepLKNet) to
#: 51 (SLaK). A (64, 3, 1, 1000) "bank" is a matrix saved in the wrong shape.
MAX_KERNEL_SIDE = 64
#: Most elements in one tensor that is read: 2**26 (256 MiB as float32). The widest 3x3
#: convolutions of common networks have 2048 x 2048 x 9 = 37.7 million.
MAX_TENSOR_ELEMENTS = 2**26


#: Deepest nesting of containers searched for tensors (state dicts nest a few levels).
MAX_DEPTH = 64
#: Most containers and items visited when searching a checkpoint for tensors.
MAX_NODES = 10_000_000

#: Where training checkpoints keep the model's state dict, searched in this order.
_NESTED_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
    "ema",
    "model_ema",
    "ema_state_dict",
)


def refuse_pickle_message(path: str | os.PathLike[str]) -> str:
    """The one-line refusal for a pickle that would run code when loaded."""
    return (
        f"refusing to unpickle {printable(path)}: it needs code execution; "
        "save model.state_dict() instead (torch.save(model.state_dict(), path))"
    )


# --- choosing the tensor -------------------------------------------------------------------


class TensorEntry:
    """A named tensor of a file, read lazily; `shape` and `kind` are known up front.

    Parameters
    ----------
    key : str
        Its name in the file (state-dict key, safetensors / npz name).
    shape : tuple of int
    kind : str
        ``"f"`` floating, ``"i"`` integer (signed or unsigned), ``"o"`` anything else.
    read : callable
        ``read() -> ndarray of float32``; checks the limits and the tensor's kind first.
    tensor : object, optional
        The underlying tensor, for callers that read its bytes themselves.
    geometry : dict, optional
        ``stride``, ``padding``, ``dilation`` ((int, int) each) and ``groups`` (int) where the
        file records the layer's geometry (ONNX graphs, Keras configs); None otherwise.
    aliases : tuple of str
        Other names that select this entry (an ONNX Conv node's name, a Keras layer's name).
    bias : callable, optional
        ``bias() -> (N,) ndarray`` where the file ties a bias to this layer explicitly.
    """

    def __init__(
        self,
        key: str,
        shape: tuple[int, ...],
        kind: str,
        read: Callable[[], np.ndarray],
        tensor: Any = None,
        *,
        geometry: dict[str, Any] | None = None,
        aliases: tuple[str, ...] = (),
        bias: Callable[[], np.ndarray] | None = None,
    ) -> None:
        self.key = key
        self.shape = shape
        self.kind = kind
        self._read = read
        self.tensor = tensor
        self.geometry = geometry
        self.aliases = aliases
        self.bias = bias

    @property
    def floating(self) -> bool:
        """Whether the tensor holds floating-point numbers."""
        return self.kind == "f"

    def read(self) -> np.ndarray:
        """The tensor as float32 numbers (limits checked before any allocation)."""
        return self._read()

    def __repr__(self) -> str:
        return f"TensorEntry({self.key!r}, shape={self.shape}, kind={self.kind!r})"


def check_tensor_size(shape: tuple[int, ...], what: str) -> None:
    """Refuse a tensor over `MAX_TENSOR_ELEMENTS` or, if 4-D, with a side over `MAX_KERNEL_SIDE`.

    Called with the declared shape before anything is allocated.

    Raises
    ------
    KernelSpecError
        Naming the limit.
    """
    if any(int(s) < 0 for s in shape):
        raise KernelSpecError(
            f"{what} declares a negative size {list(shape)}; the file is damaged: save it again"
        )
    if len(shape) == 4 and max(shape[2], shape[3]) > MAX_KERNEL_SIDE:
        raise KernelSpecError(
            f"{what} has {shape[2]}x{shape[3]} kernels, over the limit of {MAX_KERNEL_SIDE} "
            f"pixels per kernel side (MAX_KERNEL_SIDE); give a convolution layer's "
            "(filters, channels, height, width) weights"
        )
    elements = math.prod(int(s) for s in shape)
    if elements > MAX_TENSOR_ELEMENTS:
        raise KernelSpecError(
            f"{what} has shape {list(shape)} ({elements:,} numbers), over the limit of "
            f"{MAX_TENSOR_ELEMENTS:,} per tensor (MAX_TENSOR_ELEMENTS); pick a smaller layer"
        )


def select_entry(
    entries: list[TensorEntry], layer: str | None, name: str = "the file"
) -> TensorEntry:
    """The entry to analyse: `layer` (with or without ``.weight``), else the first 4-D one.

    Parameters
    ----------
    entries : list of TensorEntry
        In file order.
    layer : str, optional
        A key; ``"conv1"`` finds ``"conv1.weight"`` and ``"module.conv1.weight"`` too.
    name : str
        The file's name, for messages.

    Raises
    ------
    KernelSpecError
        No 4-D numeric tensor, or `layer` missing or not 4-D; the message lists some keys.
    """
    shown_name = printable(name)
    if layer is None:
        for kind in ("f", "i"):
            for entry in entries:
                if len(entry.shape) == 4 and entry.kind == kind:
                    return entry
        shapes = ", ".join(f"{printable(e.key, 60)} {list(e.shape)}" for e in entries[:4])
        raise tensors.NoConvolution(
            f"{shown_name} holds no 4-D floating tensor (convolution weights)"
            + (f"; it has {shapes}{', ...' if len(entries) > 4 else ''}" if entries else "")
            + "; give a file with (filters, channels, height, width) weights"
        )
    wanted = layer.strip()
    by_key = {e.key: e for e in entries}
    for entry in entries:
        by_key.setdefault(entry.key, entry)
        for alias in entry.aliases:
            by_key.setdefault(alias, entry)
    for candidate in (wanted, f"{wanted}.weight", f"module.{wanted}", f"module.{wanted}.weight"):
        if candidate in by_key:
            entry = by_key[candidate]
            if len(entry.shape) != 4:
                raise KernelSpecError(
                    f"{shown_name} [{printable(entry.key)}] has shape {list(entry.shape)}, not "
                    "the 4-D weights of a convolution; give a convolution layer's key"
                )
            return entry
    import difflib

    four_d = [n for e in entries if len(e.shape) == 4 for n in (e.key, *e.aliases)]
    names = four_d or [e.key for e in entries]
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    shown = list(dict.fromkeys(close + names[:5]))
    more = f" (and {len(names) - len(shown)} more)" if len(names) > len(shown) else ""
    listed = ", ".join(printable(s, 80) for s in shown) or "(none)"
    raise tensors.NoSuchLayer(
        f"{shown_name} has no layer {printable(layer, 80)!r}; give one of: {listed}{more}"
    )


def _bias(entries: list[TensorEntry], entry: TensorEntry, n: int) -> np.ndarray | None:
    """The ``<layer>.bias`` entry next to ``<layer>.weight``, if it is an (N,) real vector."""
    if entry.bias is not None:
        return entry.bias()
    if not entry.key.endswith("weight"):
        return None
    key = entry.key[: -len("weight")] + "bias"
    for other in entries:
        if other.key == key and other.shape == (n,) and other.kind in ("f", "i"):
            return other.read()
    return None


# --- searching a torch checkpoint for its state dict -----------------------------------


def _find_state_dict(obj: dict[Any, Any], name: str) -> Any:
    """The dict that holds the model's weights: a nested state dict if there is one."""
    seen = {id(obj)}
    while True:
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and id(inner) not in seen and _flatten(inner, name):
                seen.add(id(inner))
                obj = inner
                break
        else:
            return obj


def _skipped(key: Any) -> bool:
    text = str(key).lower()
    return "optim" in text or "scheduler" in text


def _flatten(obj: Any, name: str) -> list[tuple[str, Any]]:
    """(dotted key, tensor) pairs in insertion order; optimiser states are skipped.

    Iterative: each container is visited once (by identity), depth and node count are bounded.
    """
    import torch

    out: list[tuple[str, Any]] = []
    seen: set[int] = set()
    nodes = 0
    stack: list[Any] = [iter([("", obj)])]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        key, value = item
        nodes += 1
        if nodes > MAX_NODES:
            raise KernelSpecError(
                f"{printable(name)} holds more than {MAX_NODES:,} objects (MAX_NODES); "
                "save model.state_dict() instead"
            )
        if isinstance(value, torch.Tensor):
            out.append((key, value))
            continue
        if not isinstance(value, dict | list | tuple) or id(value) in seen:
            continue
        seen.add(id(value))
        if len(stack) > MAX_DEPTH:
            raise KernelSpecError(
                f"{printable(name)} nests containers more than {MAX_DEPTH} deep (MAX_DEPTH); "
                "save model.state_dict() instead"
            )
        stack.append(_children(value, f"{key}." if key else ""))
    return out


def _children(container: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of a dict (optimiser states skipped), list or tuple."""
    if isinstance(container, dict):
        return ((f"{prefix}{k}", v) for k, v in container.items() if not _skipped(k))
    return ((f"{prefix}{i}", v) for i, v in enumerate(container))
