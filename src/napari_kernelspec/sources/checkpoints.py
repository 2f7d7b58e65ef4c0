"""Reading convolution weights from files a user gives.

Supported:

- ``.pth`` / ``.pt`` / ``.ckpt``: a state dict or a full training checkpoint, read with
  ``torch.load(..., weights_only=True)`` only (never plain unpickling: a pickle that needs
  code execution is refused). Nested dicts (``{"state_dict": {...}}``, ``{"model": {...}}``,
  ...) are searched in order.
- ``.safetensors``: read with the safetensors package; "first" is the order of the tensors'
  data offsets in the file.
- ``.npy`` (one (N, C, H, W) array) and ``.npz`` (named arrays), with ``allow_pickle=False``.

Without a layer name, the first 4-D floating tensor is taken.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base.bank import validate_weights
from ..base.errors import KernelSpecError

__all__ = [
    "ARRAY_SUFFIXES",
    "SUFFIXES",
    "TORCH_SUFFIXES",
    "FileKernels",
    "read_kernels",
    "refuse_pickle_message",
    "torch_load",
    "unpickling_error",
]

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
ARRAY_SUFFIXES = (".npy", ".npz")
SUFFIXES = (*TORCH_SUFFIXES, ".safetensors", *ARRAY_SUFFIXES)

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

_FLOAT_SAFETENSORS = {"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"}


@dataclass(frozen=True)
class FileKernels:
    """Weights read from a file.

    Attributes
    ----------
    weights : (N, C, H, W) ndarray of float32
    key : str
        The state-dict / safetensors / npz key the weights came from (the file name for .npy).
    source : {"checkpoint", "array"}
    provenance : dict
        JSON-safe facts (file path, key, format, ...).
    """

    weights: np.ndarray
    key: str
    source: str
    provenance: dict[str, Any] = field(default_factory=dict)


def refuse_pickle_message(path: str | os.PathLike[str]) -> str:
    """The one-line refusal for a pickle that would run code when loaded."""
    return (
        f"refusing to unpickle {path}: it needs code execution; "
        "save model.state_dict() instead (torch.save(model.state_dict(), path))"
    )


def unpickling_error(path: str | os.PathLike[str], exc: BaseException) -> KernelSpecError:
    """The error for a file that ``torch.load(..., weights_only=True)`` refused.

    A pickle that would import and call Python objects gets the refusal message; anything
    else is reported as damaged. The file is only parsed (``pickletools``), never executed.
    """
    text = str(exc)
    code = "Unsupported global" in text or "allowed global" in text
    if not code:
        import pickletools

        try:
            with open(path, "rb") as fh:
                code = any(
                    op.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ")
                    for op, _, _ in pickletools.genops(fh)
                )
        except Exception:  # not a parseable pickle at all
            code = False
    if code:
        return KernelSpecError(refuse_pickle_message(path))
    return _damaged(Path(path), exc)


def torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped where possible.

    Raises
    ------
    KernelSpecError
        For a pickle that needs code execution or a damaged file.
    """
    import pickle

    import torch

    def load(mmap: bool) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, mmap=mmap, weights_only=True, map_location="cpu")

    try:
        try:
            return load(mmap=True)
        except pickle.UnpicklingError:
            raise
        except (RuntimeError, ValueError, OSError):
            return load(mmap=False)  # legacy (non-zip) files cannot be memory-mapped
    except pickle.UnpicklingError as exc:
        raise unpickling_error(path, exc) from exc
    except Exception as exc:
        raise _damaged(Path(path), exc) from exc


def _supported() -> str:
    return ", ".join(SUFFIXES)


def read_kernels(path: str | os.PathLike[str], layer: str | None = None) -> FileKernels:
    """Read one layer's convolution weights from a file.

    Parameters
    ----------
    path : path-like
        A ``.pth``/``.pt``/``.ckpt``, ``.safetensors``, ``.npy`` or ``.npz`` file.
    layer : str, optional
        Key of the tensor to take, with or without the ``".weight"`` suffix. Default: the
        first 4-D floating tensor in the file.

    Returns
    -------
    FileKernels

    Raises
    ------
    KernelSpecError
        Missing, empty, damaged or unsupported file; a pickle that needs code execution; no
        4-D tensor; `layer` not in the file; NaN/Inf or all-zero filters.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise KernelSpecError(
            f"no such file: {path}; give the path of a weights file ({_supported()}) "
            "or a model name (`kernelspec models`)"
        )
    if path.is_dir():
        raise KernelSpecError(f"{path} is a folder; give a weights file ({_supported()})")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise KernelSpecError(
            f"unsupported file type {suffix or '(no extension)'!r} for {path.name}; "
            f"save the weights as one of {_supported()}"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise KernelSpecError(
            f"cannot read {path} ({exc.strerror}); check its permissions"
        ) from exc
    if size == 0:
        raise KernelSpecError(f"{path} is empty (0 bytes); save the weights again")
    if not os.access(path, os.R_OK):
        raise KernelSpecError(f"cannot read {path}: permission denied; check its permissions")
    if suffix in TORCH_SUFFIXES:
        entries, fmt = _torch_entries(path), "torch"
    elif suffix == ".safetensors":
        entries, fmt = _safetensors_entries(path), "safetensors"
    elif suffix == ".npz":
        entries, fmt = _npz_entries(path), "npz"
    else:
        entries, fmt = _npy_entries(path, layer), "npy"
    key, array = _select(path, entries, layer)
    weights = validate_weights(array, f"{path.name} [{key}]")
    source = "array" if suffix in ARRAY_SUFFIXES else "checkpoint"
    provenance = {"file": str(path.resolve()), "key": key, "format": fmt, "stride_known": False}
    return FileKernels(weights=weights, key=key, source=source, provenance=provenance)


# --- choosing the tensor -------------------------------------------------------------------


class _Entry:
    """A named tensor of a file, read lazily; `shape` and `floating` are known up front."""

    def __init__(self, key: str, shape: tuple[int, ...], floating: bool, read: Any) -> None:
        self.key = key
        self.shape = shape
        self.floating = floating
        self._read = read

    def read(self) -> np.ndarray:
        return self._read()


def _select(path: Path, entries: list[_Entry], layer: str | None) -> tuple[str, np.ndarray]:
    if layer is None:
        for entry in entries:
            if len(entry.shape) == 4 and entry.floating:
                return entry.key, entry.read()
        shapes = ", ".join(f"{e.key} {list(e.shape)}" for e in entries[:4])
        raise KernelSpecError(
            f"{path.name} holds no 4-D floating tensor (convolution weights)"
            + (f"; it has {shapes}{', ...' if len(entries) > 4 else ''}" if entries else "")
            + "; give a file with (filters, channels, height, width) weights"
        )
    wanted = layer.strip()
    by_key = {e.key: e for e in entries}
    for candidate in (wanted, f"{wanted}.weight", f"module.{wanted}", f"module.{wanted}.weight"):
        if candidate in by_key:
            entry = by_key[candidate]
            if len(entry.shape) != 4:
                raise KernelSpecError(
                    f"{path.name} [{entry.key}] has shape {list(entry.shape)}, not the 4-D "
                    "weights of a convolution; give a convolution layer's key"
                )
            return entry.key, entry.read()
    import difflib

    four_d = [e.key for e in entries if len(e.shape) == 4]
    names = four_d or [e.key for e in entries]
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    shown = list(dict.fromkeys(close + names[:5]))
    more = f" (and {len(names) - len(shown)} more)" if len(names) > len(shown) else ""
    raise KernelSpecError(
        f"{path.name} has no layer {layer!r}; give one of: {', '.join(shown) or '(none)'}{more}"
    )


# --- torch files ---------------------------------------------------------------------------


def _torch_entries(path: Path) -> list[_Entry]:
    import torch

    obj = torch_load(path)
    if isinstance(obj, torch.Tensor):
        return [_tensor_entry(path.name, obj)]
    if not isinstance(obj, dict):
        raise KernelSpecError(
            f"{path.name} holds a {type(obj).__name__}, not a state dict; "
            "save model.state_dict() instead"
        )
    state = _find_state_dict(obj)
    return [_tensor_entry(k, v) for k, v in _flatten(state)]


def _tensor_entry(key: str, tensor: Any) -> _Entry:
    def read() -> np.ndarray:
        return tensor.detach().to("cpu").float().numpy().copy()

    return _Entry(key, tuple(int(s) for s in tensor.shape), bool(tensor.is_floating_point()), read)


def _has_tensors(obj: Any) -> bool:
    return any(True for _ in _flatten(obj))


def _find_state_dict(obj: dict[Any, Any]) -> Any:
    """The dict that holds the model's weights: a nested state dict if there is one."""
    for name in _NESTED_KEYS:
        inner = obj.get(name)
        if isinstance(inner, dict) and _has_tensors(inner):
            return _find_state_dict(inner)
    return obj


def _flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, tensor) pairs in insertion order; optimiser states are skipped."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix.rstrip("."), obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if "optim" in str(key).lower() or "scheduler" in str(key).lower():
                continue
            yield from _flatten(value, f"{prefix}{key}.")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _flatten(value, f"{prefix}{i}.")


def _damaged(path: Path, exc: BaseException) -> KernelSpecError:
    text = str(exc).strip().splitlines()
    reason = (text[0] if text else type(exc).__name__)[:160]
    return KernelSpecError(
        f"{path.name} is truncated or damaged and cannot be read ({reason}); save it again"
    )


# --- safetensors ---------------------------------------------------------------------------


def _safetensors_entries(path: Path) -> list[_Entry]:
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header size")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError("header runs past the end of the file")
            header = json.loads(fh.read(n))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
        if 8 + n + end > size:
            raise ValueError(f"data runs past the end of the file ({size} bytes)")
    except Exception as exc:
        raise _damaged(path, exc) from exc

    def reader(key: str) -> Any:
        def read() -> np.ndarray:
            from safetensors import safe_open

            try:
                with safe_open(str(path), framework="pt") as f:
                    return f.get_tensor(key).float().numpy().copy()
            except Exception as exc:
                raise _damaged(path, exc) from exc

        return read

    order = sorted(tensors.items(), key=lambda kv: int(kv[1]["data_offsets"][0]))
    return [
        _Entry(k, tuple(int(s) for s in v["shape"]), v["dtype"] in _FLOAT_SAFETENSORS, reader(k))
        for k, v in order
    ]


# --- numpy files ---------------------------------------------------------------------------


def _npy_entries(path: Path, layer: str | None) -> list[_Entry]:
    if layer is not None and layer.strip() not in (path.name, path.stem):
        raise KernelSpecError(
            f"{path.name} holds a single array, so there is no layer {layer!r} to choose; "
            "leave the layer out"
        )
    array = _np_load(path)
    if not isinstance(array, np.ndarray):
        raise _damaged(path, ValueError("not a .npy array"))
    return [
        _Entry(
            path.name if layer is None else layer.strip(),
            array.shape,
            array.dtype.kind in "fiu",
            lambda: array,
        )
    ]


def _npz_entries(path: Path) -> list[_Entry]:
    archive = _np_load(path)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _damaged(path, ValueError("not a .npz archive"))
    entries = []
    with archive:
        for name in archive.files:
            try:
                array = archive[name]
            except Exception as exc:
                raise _np_error(path, exc) from exc
            entries.append(_Entry(name, array.shape, array.dtype.kind == "f", lambda a=array: a))
    return entries


def _np_error(path: Path, exc: Exception) -> KernelSpecError:
    """The user-facing error for a failed `np.load` (object arrays are refused, not run)."""
    if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
        return _refuse_objects(path)
    return _damaged(path, exc)


def _np_load(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise _np_error(path, exc) from exc


def _refuse_objects(path: Path) -> KernelSpecError:
    return KernelSpecError(
        f"refusing to unpickle {path}: it holds Python objects, which needs code execution; "
        "save a numeric (N, C, H, W) array instead"
    )
