"""Reading convolution weights from files a user gives.

Supported:

- ``.pth`` / ``.pt`` / ``.ckpt``: a state dict or a full training checkpoint, read with
  ``torch.load(..., weights_only=True)`` only (never plain unpickling: a pickle that needs
  code execution is refused). Nested dicts (``{"state_dict": {...}}``, ``{"model": {...}}``,
  ...) are searched in order.
- ``.safetensors``: the JSON header is read and checked here; one tensor is then read with the
  safetensors package. "First" is the order of the tensors' data offsets in the file.
- ``.npy`` (one (N, C, H, W) array) and ``.npz`` (named arrays): only the array headers are
  read up front; only the array that is used is decompressed, with ``allow_pickle=False``.

Without a layer name, the first 4-D floating tensor is taken (else the first 4-D integer one).

Integer weights, one rule for every format: integer tensors (``int8`` ... ``uint64``) are
accepted and analysed as the numbers they store (converted to float32); nothing is
dequantized. Torch's quantized tensors (``qint8`` ...), booleans and complex numbers are refused
with a message that says how to save plain real numbers.

Limits (a crafted file must not take unbounded memory or time; each refusal names its limit):
see `MAX_KERNEL_SIDE`, `MAX_TENSOR_ELEMENTS`, `MAX_PICKLE_BYTES`, `MAX_DEPTH`, `MAX_NODES`.

The pieces are reusable on any file object (a remote file read by ranges, for example):
`torch_load` takes a path or a seekable binary file, `state_dict_entries` lists the tensors of
an unpickled checkpoint, `select_entry` picks the convolution, `tensor_array` converts one.
"""

from __future__ import annotations

import errno
import json
import math
import os
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..base.bank import validate_weights
from ..base.errors import KernelSpecError
from ..base.text import printable
from . import tensors
from .entries import (
    MAX_DEPTH,
    MAX_KERNEL_SIDE,
    MAX_NODES,
    MAX_TENSOR_ELEMENTS,
    TensorEntry,
    _bias,
    _find_state_dict,
    _flatten,
    check_tensor_size,
    refuse_pickle_message,
    select_entry,
)

__all__ = [
    "ARRAY_SUFFIXES",
    "MAX_DEPTH",
    "MAX_KERNEL_SIDE",
    "MAX_NODES",
    "MAX_PICKLE_BYTES",
    "MAX_TENSOR_ELEMENTS",
    "MODEL_SUFFIXES",
    "SUFFIXES",
    "TORCH_SUFFIXES",
    "FileKernels",
    "TensorEntry",
    "check_tensor_size",
    "check_torch_zip",
    "is_weights_file",
    "read_kernels",
    "refuse_pickle_message",
    "select_entry",
    "state_dict_entries",
    "tensor_array",
    "torch_load",
    "unpickling_error",
]

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
ARRAY_SUFFIXES = (".npy", ".npz")
SUFFIXES = (*TORCH_SUFFIXES, ".safetensors", *ARRAY_SUFFIXES)
#: Other frameworks' model files (read from their first bytes, like any other name).
MODEL_SUFFIXES = (".onnx", ".keras", ".h5", ".hdf5", ".bin")

#: Largest ``data.pkl`` of a zip checkpoint and largest safetensors header (a state dict's
#: pickle is a few megabytes even for large models): the limit remote reads have too.
MAX_PICKLE_BYTES = tensors.MAX_HEADER_BYTES


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
    bias : (N,) ndarray of float32 or None
        The layer's bias: the file's ``<layer>.bias`` next to ``<layer>.weight``, if any.
    geometry : dict or None
        ``stride``, ``padding``, ``dilation``, ``groups`` (and ``padding_mode`` ``"same"``)
        where the file records them (ONNX, Keras, TensorFlow.js); None for bare weights.
    """

    weights: np.ndarray
    key: str
    source: str
    provenance: dict[str, Any] = field(default_factory=dict)
    bias: np.ndarray | None = None
    geometry: dict[str, Any] | None = None


def _name_of(source: str | os.PathLike[str] | IO[bytes], name: str | None = None) -> str:
    if name is not None:
        return name
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    return str(getattr(source, "name", "the checkpoint"))


def unpickling_error(
    source: str | os.PathLike[str] | IO[bytes], exc: BaseException, name: str | None = None
) -> KernelSpecError:
    """The error for a file that ``torch.load(..., weights_only=True)`` refused.

    A pickle that would import and call Python objects gets the refusal message; anything
    else is reported as damaged. The file is only parsed (``pickletools``), never executed.
    """
    text = str(exc)
    code = "Unsupported global" in text or "allowed global" in text
    if not code:
        import pickletools

        try:
            if isinstance(source, str | os.PathLike):
                with open(source, "rb") as fh:
                    code = _needs_code(pickletools, fh)
            else:
                source.seek(0)
                code = _needs_code(pickletools, source)
        except Exception:  # not a parseable pickle at all
            code = False
    if code:
        full = str(source) if isinstance(source, str | os.PathLike) else _name_of(source, name)
        return KernelSpecError(refuse_pickle_message(full))
    return _damaged(_name_of(source, name), exc)


def _needs_code(pickletools: Any, fh: IO[bytes]) -> bool:
    return any(
        op.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ") for op, _, _ in pickletools.genops(fh)
    )


def _size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def check_torch_zip(source: str | os.PathLike[str] | IO[bytes], name: str | None = None) -> bool:
    """Check the records of a zip checkpoint before torch reads any of them.

    Every record's *declared* uncompressed size is read from the zip directory (nothing is
    decompressed): the pickle may hold at most `MAX_PICKLE_BYTES`, the compressed records
    together at most `MAX_TENSOR_ELEMENTS` float64 numbers (torch itself stores records
    uncompressed; compressed ones are all inflated in memory when the file is loaded).

    Parameters
    ----------
    source : path-like or seekable binary file
        A file that starts with a zip header (callers check `zipfile.is_zipfile`).
    name : str, optional
        How to name the file in messages.

    Returns
    -------
    bool
        True if some record is compressed (the file cannot be memory-mapped).

    Raises
    ------
    KernelSpecError
        A record over a limit, or a zip directory that cannot be read.
    """
    what = printable(_name_of(source, name))
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _damaged(what, exc) from exc
    compressed = False
    inflated = 0  # declared bytes of all compressed records: torch inflates them all
    for info in infos:
        record = printable(info.filename, 80)
        if info.filename.endswith(".pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise KernelSpecError(
                f"{what}: its record {record} declares {_size_text(info.file_size)}, over the "
                f"limit of {_size_text(MAX_PICKLE_BYTES)} for a checkpoint's pickle "
                "(MAX_PICKLE_BYTES); save only model.state_dict()"
            )
        if info.compress_type != zipfile.ZIP_STORED:
            compressed = True
            inflated += info.file_size
            if inflated > MAX_TENSOR_ELEMENTS * 8:
                raise KernelSpecError(
                    f"{what}: its compressed record {record} declares "
                    f"{_size_text(info.file_size)}, over the limit of "
                    f"{_size_text(MAX_TENSOR_ELEMENTS * 8)} for one tensor "
                    "(MAX_TENSOR_ELEMENTS); save it again with torch.save"
                )
    return compressed


def torch_load(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    name: str | None = None,
    map_location: str = "cpu",
) -> Any:
    """``torch.load(source, weights_only=True)``, checked first and memory-mapped where possible.

    Parameters
    ----------
    source : path-like or seekable binary file
        A ``torch.save`` file (zip or legacy format). A file object is read from offset 0.
    name : str, optional
        How to name the file in messages (default: the path's name or the file's ``name``).
    map_location : str
        ``"cpu"``; ``"meta"`` reads only the pickle (tensors get shapes but no data).

    Returns
    -------
    object
        What was saved: tensors, dicts, lists, numbers, strings.

    Raises
    ------
    KernelSpecError
        For a pickle that needs code execution, a record over a limit (`check_torch_zip`),
        too little memory, too deep nesting, or a damaged file.
    """
    import pickle

    import torch

    what = _name_of(source, name)
    is_path = isinstance(source, str | os.PathLike)
    try:
        zipped = zipfile.is_zipfile(source)
        if not is_path:
            source.seek(0)  # type: ignore[union-attr]
    except OSError as exc:
        raise _os_error(what, exc) from exc
    compressed = zipped and check_torch_zip(source, what)
    if not is_path:
        source.seek(0)  # type: ignore[union-attr]

    def load(mmap: bool) -> Any:
        if not is_path:
            source.seek(0)  # type: ignore[union-attr]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*sparse", category=UserWarning)
            return torch.load(source, mmap=mmap, weights_only=True, map_location=map_location)

    # mmap needs a path, the zip format and stored (uncompressed) records: a compressed
    # record is mapped as its compressed bytes (measured: garbage values, no error).
    mmap = is_path and zipped and not compressed and map_location != "meta"
    try:
        try:
            return load(mmap=mmap)
        except pickle.UnpicklingError:
            raise
        except (RuntimeError, ValueError, OSError):
            if not mmap:
                raise
            return load(mmap=False)
    except pickle.UnpicklingError as exc:
        raise unpickling_error(source, exc, what) from exc
    except KernelSpecError:
        raise
    except Exception as exc:
        raise _read_error(what, exc) from exc


def _read_error(what: str, exc: BaseException) -> KernelSpecError:
    """The one line for an exception while reading `what` (memory and depth are not damage)."""
    what = printable(what)
    if isinstance(exc, MemoryError):
        return KernelSpecError(
            f"not enough memory to read {what}; free memory, or save only the layer you need"
        )
    if isinstance(exc, RecursionError):
        return KernelSpecError(
            f"{what} nests its contents too deeply to read; save model.state_dict() instead"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENAMETOOLONG, errno.EACCES, errno.EPERM):
        return _os_error(what, exc)
    return _damaged(what, exc)


def _os_error(what: str, exc: OSError) -> KernelSpecError:
    if exc.errno == errno.ENAMETOOLONG:
        return KernelSpecError(
            f"the file name {printable(what, 60)} is too long for the file system; "
            "rename the file or move it to a shorter path"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return KernelSpecError(
            f"cannot read {printable(what)}: permission denied; check its permissions"
        )
    return KernelSpecError(
        f"cannot read {printable(what)} ({exc.strerror or type(exc).__name__}); "
        "check the path and its permissions"
    )


def is_weights_file(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not a weights or model file this package reads (None: it is one).

    Decided from the name (`SUFFIXES`) or, for any other name, the first bytes: torch,
    safetensors, numpy, ONNX (``.onnx`` only: ONNX has no magic number), Keras HDF5 and zip
    files, TensorFlow.js ``model.json``. Nothing is parsed beyond the first bytes.

    Returns
    -------
    str or None
        A few words (``"not a weights file (a .txt file)"``), or None.
    """
    from . import readers

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"
    kind = readers.detect(head)
    if kind in ("zip", "legacy", "safetensors", "npy", "hdf5"):
        return None
    if kind == "onnx" and suffix == ".onnx":
        return None
    if kind == "index" and path.name.endswith(".json"):
        try:
            if path.stat().st_size <= tensors.MAX_HEADER_BYTES:
                document = json.loads(path.read_bytes())
                if isinstance(document, dict) and "weightsManifest" in document:
                    return None
                if isinstance(document, dict) and "weight_map" in document:
                    return "a sharded checkpoint's index (its shards are files of their own)"
        except (OSError, ValueError):
            pass
        return "a JSON file that is not a TensorFlow.js model.json"
    what = f"a {suffix} file" if suffix else "no extension"
    return f"not a weights file ({what}, first bytes {head[:4].hex(' ') or 'none'})"


def _supported() -> str:
    return ", ".join(SUFFIXES)


def _stat(path: Path) -> os.stat_result | None:
    """``path.stat()``, None if it does not exist; other OS errors become one line."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise _os_error(str(path), exc) from exc


def read_kernels(path: str | os.PathLike[str], layer: str | None = None) -> FileKernels:
    """Read one layer's convolution weights (and its bias, if saved) from a file.

    Parameters
    ----------
    path : path-like
        A ``.pth``/``.pt``/``.ckpt``, ``.safetensors``, ``.npy`` or ``.npz`` file.
    layer : str, optional
        Key of the tensor to take, with or without the ``".weight"`` suffix. Default: the
        first 4-D floating tensor in the file (else the first 4-D integer one).

    Returns
    -------
    FileKernels

    Raises
    ------
    KernelSpecError
        Missing, empty, damaged or unsupported file; a pickle that needs code execution; no
        4-D tensor; `layer` not in the file; a tensor over the limits; NaN/Inf or all-zero
        filters; not enough memory.
    """
    path = Path(path).expanduser()
    shown = printable(path)
    stat = _stat(path)
    if stat is None:
        raise KernelSpecError(
            f"no such file: {shown}; give the path of a weights file ({_supported()}) "
            "or a model name (`kernelspec models`)"
        )
    if path.is_dir():
        raise KernelSpecError(f"{shown} is a folder; give a weights file ({_supported()})")
    suffix = path.suffix.lower()
    if stat.st_size == 0:
        raise KernelSpecError(f"{shown} is empty (0 bytes); save the weights again")
    if not os.access(path, os.R_OK):
        raise KernelSpecError(f"cannot read {shown}: permission denied; check its permissions")
    try:
        return _read_kernels(path, suffix, layer)
    except (MemoryError, RecursionError) as exc:
        raise _read_error(path.name, exc) from None


def _read_kernels(path: Path, suffix: str, layer: str | None) -> FileKernels:
    if suffix not in SUFFIXES:
        with open(path, "rb") as fh:
            entries, fmt = _detected_entries(path, fh)
            if fmt == "npy":
                suffix = ".npy"
                entries[0].key = path.name if layer is None else layer.strip()
            return _chosen(path, entries, fmt, suffix, layer)
    if suffix in TORCH_SUFFIXES:
        entries, fmt = _torch_entries(path), "torch"
    elif suffix == ".safetensors":
        entries, fmt = _safetensors_entries(path), "safetensors"
    elif suffix == ".npz":
        entries, fmt = _npz_entries(path), "npz"
    else:
        entries, fmt = _npy_entries(path, layer), "npy"
    return _chosen(path, entries, fmt, suffix, layer)


def _chosen(
    path: Path, entries: list[TensorEntry], fmt: str, suffix: str, layer: str | None
) -> FileKernels:
    entry = select_entry(entries, layer, path.name)
    what = f"{printable(path.name)} [{printable(entry.key)}]"
    check_tensor_size(entry.shape, what)
    weights = validate_weights(entry.read(), what)
    bias = _bias(entries, entry, len(weights))
    source = "array" if suffix in ARRAY_SUFFIXES else "checkpoint"
    provenance = {
        "file": str(path.resolve()),
        "key": entry.key,
        "format": fmt,
        "stride_known": entry.geometry is not None,
    }
    if entry.geometry is not None:
        provenance["geometry"] = "read from the file"
    if entry.kind == "i":
        provenance["integer_weights"] = True
    return FileKernels(
        weights=weights,
        key=entry.key,
        source=source,
        provenance=provenance,
        bias=bias,
        geometry=entry.geometry,
    )


def _detected_entries(path: Path, fh: IO[bytes]) -> tuple[list[TensorEntry], str]:
    """A file whose extension names no format: recognised from its first bytes (`readers`).

    Torch files are then read with `formats`' restricted unpickler (the one remote files use),
    ONNX, Keras and TensorFlow.js files with their readers; files next to it (external data,
    weight shards) are opened from its folder, never above it.
    """
    from . import formats, readers

    folder = path.parent.resolve()

    def open_sibling(relative: str) -> IO[bytes]:
        target = (folder / relative).resolve()
        if folder not in target.parents:
            raise KernelSpecError(
                f"{printable(path.name)} names a file outside its folder "
                f"({printable(relative, 80)!r}); refusing to read it"
            )
        try:
            return open(target, "rb")
        except OSError as exc:
            raise _os_error(str(target), exc) from exc

    fmt, found = readers.read_entries(fh, path.name, path.stat().st_size, open_sibling)
    if isinstance(found, formats.Sharded):
        raise KernelSpecError(
            f"{printable(path.name)} is a sharded checkpoint's index; give one of its shards "
            f"({', '.join(printable(s, 60) for s in found.shards()[:3])})"
        )
    return found, fmt


# --- torch files ---------------------------------------------------------------------------


def _torch_entries(path: Path) -> list[TensorEntry]:
    return state_dict_entries(torch_load(path), path.name)


def state_dict_entries(obj: Any, name: str = "the checkpoint") -> list[TensorEntry]:
    """The tensors of an unpickled checkpoint, in order, with dotted keys.

    A nested state dict (``{"state_dict": {...}}``, see ``_NESTED_KEYS``) is preferred;
    optimiser and scheduler states are skipped. Each container is visited once (shared
    references are not walked again, so a crafted pickle of 61 lists that each hold the
    previous one twice costs 122 steps, not 2**61), with bounded depth and node count.

    Parameters
    ----------
    obj : object
        What `torch_load` returned (tensors may be on the meta device).
    name : str
        The file's name, for messages.

    Returns
    -------
    list of TensorEntry

    Raises
    ------
    KernelSpecError
        Not a state dict or a tensor; nesting deeper than `MAX_DEPTH`; more than `MAX_NODES`.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        return [_tensor_entry(name, obj, name)]
    if not isinstance(obj, dict):
        raise KernelSpecError(
            f"{printable(name)} holds a {type(obj).__name__}, not a state dict; "
            "save model.state_dict() instead"
        )
    state = _find_state_dict(obj, name)
    return [_tensor_entry(k, v, name) for k, v in _flatten(state, name)]


def _tensor_entry(key: str, tensor: Any, name: str) -> TensorEntry:
    shape = tuple(int(s) for s in tensor.shape)
    if tensor.is_quantized or tensor.is_complex() or tensor.dtype == _torch_bool():
        kind = "o"
    else:
        kind = "f" if tensor.is_floating_point() else "i"
    what = f"{printable(name)} [{printable(key)}]"
    return TensorEntry(key, shape, kind, lambda: tensor_array(tensor, what), tensor)


def _torch_bool() -> Any:
    import torch

    return torch.bool


def tensor_array(tensor: Any, what: str) -> np.ndarray:
    """A torch tensor's numbers as a float32 ndarray, or a one-line refusal.

    Sparse, meta (no data), quantized, complex and boolean tensors are refused; integers are
    converted as stored (the integer rule); the limits are checked before copying.

    Parameters
    ----------
    tensor : torch.Tensor
    what : str
        How to name it in messages (already printable).
    """
    import torch

    if tensor.layout != torch.strided:
        raise KernelSpecError(
            f"{what} is a sparse tensor ({str(tensor.layout).removeprefix('torch.')}); "
            "save it dense (tensor.to_dense()) to analyse it"
        )
    if tensor.is_meta:
        raise KernelSpecError(
            f"{what} is a meta tensor: it has a shape but no numbers (saved from a model built "
            "on the meta device); save the state dict of a model with real weights"
        )
    if tensor.is_quantized:
        raise KernelSpecError(
            f"{what} is quantized ({str(tensor.dtype).removeprefix('torch.')}); save "
            "tensor.dequantize() to analyse its real-valued weights"
        )
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise KernelSpecError(
            f"{what} has dtype {str(tensor.dtype).removeprefix('torch.')}; convolution "
            "weights must be real numbers (floating point or integer)"
        )
    check_tensor_size(tuple(tensor.shape), what)
    try:
        return tensor.detach().to("cpu", torch.float32).numpy().copy()
    except (MemoryError, RecursionError) as exc:
        raise _read_error(what, exc) from None
    except (RuntimeError, TypeError, NotImplementedError, ValueError) as exc:
        raise _damaged(what, exc) from exc


def _damaged(name: str, exc: BaseException) -> KernelSpecError:
    if isinstance(exc, MemoryError | RecursionError):
        return _read_error(name, exc)
    text = str(exc).strip().splitlines()
    reason = printable((text[0] if text else type(exc).__name__), 160)
    return KernelSpecError(
        f"{printable(name)} is truncated or damaged and cannot be read ({reason}); save it again"
    )


# --- safetensors ---------------------------------------------------------------------------


def _safetensors_entries(path: Path) -> list[TensorEntry]:
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header size")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError("header runs past the end of the file")
            if n > MAX_PICKLE_BYTES:
                raise KernelSpecError(
                    f"{printable(path.name)} declares a {_size_text(n)} header, over the limit "
                    f"of {_size_text(MAX_PICKLE_BYTES)} (MAX_PICKLE_BYTES); save it again"
                )
            header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        spans = {k: _safetensors_span(k, v) for k, v in tensors.items()}
        end = max((stop for _, stop, _, _ in spans.values()), default=0)
        if 8 + n + end > size:
            raise ValueError(f"data runs past the end of the file ({size} bytes)")
    except KernelSpecError:
        raise
    except Exception as exc:
        raise _damaged(path.name, exc) from exc

    def reader(key: str, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            import torch
            from safetensors import safe_open

            what = f"{printable(path.name)} [{printable(key)}]"
            check_tensor_size(shape, what)
            try:
                with safe_open(str(path), framework="pt") as f:
                    return f.get_tensor(key).to(torch.float32).numpy().copy()
            except (MemoryError, RecursionError) as exc:
                raise _read_error(what, exc) from None
            except Exception as exc:
                raise _damaged(path.name, exc) from exc

        return read

    order = sorted(spans.items(), key=lambda kv: kv[1][0])
    return [TensorEntry(k, shape, kind, reader(k, shape)) for k, (_, _, shape, kind) in order]


def _safetensors_span(key: str, info: Any) -> tuple[int, int, tuple[int, ...], str]:
    """(start, stop, shape, kind) of one header entry; its declared sizes must agree."""
    if not isinstance(info, dict):
        raise ValueError(f"entry {printable(key, 60)} is not an object")
    code = tensors.SAFETENSORS_DTYPES.get(str(info.get("dtype")))
    if code is None:
        raise ValueError(
            f"entry {printable(key, 60)} has unknown dtype {printable(info.get('dtype'), 20)}"
        )
    shape = tuple(int(s) for s in info["shape"])
    start, stop = (int(x) for x in info["data_offsets"])
    if min(shape, default=0) < 0 or start < 0 or stop < start:
        raise ValueError(f"entry {printable(key, 60)} has negative sizes")
    if math.prod(shape) * tensors.itemsize(code) != stop - start:
        raise ValueError(
            f"entry {printable(key, 60)} declares shape {list(shape)} but {stop - start} bytes"
        )
    return start, stop, shape, tensors.kind_of(code)


# --- numpy files ---------------------------------------------------------------------------


def _npy_header(fh: IO[bytes], path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from a .npy header; nothing else is read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:  # pragma: no cover - read_magic accepts only these
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise _damaged(path.name, exc) from exc
    if dtype.hasobject:
        raise _refuse_objects(path)
    return tuple(int(s) for s in shape), dtype, fh.tell()


def _kind(dtype: np.dtype) -> str:
    return {"f": "f", "i": "i", "u": "i"}.get(dtype.kind, "o")


def _npy_entries(path: Path, layer: str | None) -> list[TensorEntry]:
    if layer is not None and layer.strip() not in (path.name, path.stem):
        raise KernelSpecError(
            f"{printable(path.name)} holds a single array, so there is no layer "
            f"{printable(layer, 80)!r} to choose; leave the layer out"
        )
    with open(path, "rb") as fh:
        shape, dtype, offset = _npy_header(fh, path)
    key = path.name if layer is None else layer.strip()
    what = printable(path.name)

    def read() -> np.ndarray:
        check_tensor_size(shape, what)
        if offset + math.prod(shape) * dtype.itemsize > path.stat().st_size:
            raise _damaged(path.name, ValueError("the data runs past the end of the file"))
        try:
            with open(path, "rb") as fh:
                return np.lib.format.read_array(fh, allow_pickle=False)
        except (MemoryError, RecursionError) as exc:
            raise _read_error(path.name, exc) from None
        except Exception as exc:
            raise _damaged(path.name, exc) from exc

    return [TensorEntry(key, shape, _kind(dtype), read)]


def _npz_entries(path: Path) -> list[TensorEntry]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
            headers = []
            for info in infos:
                with zf.open(info) as fh:
                    headers.append(_npy_header(fh, path))
    except KernelSpecError:
        raise
    except Exception as exc:  # BadZipFile, truncated members, ...
        raise _damaged(path.name, exc) from exc

    def reader(
        info: zipfile.ZipInfo, shape: tuple[int, ...], dtype: np.dtype, offset: int
    ) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            what = f"{printable(path.name)} [{printable(info.filename[:-4])}]"
            check_tensor_size(shape, what)
            # The member's declared size must hold the declared array: checked before the
            # array is allocated and inflated.
            if info.file_size < offset + math.prod(shape) * dtype.itemsize:
                raise _damaged(path.name, ValueError(f"member {info.filename} is too short"))
            try:
                with zipfile.ZipFile(path) as zf, zf.open(info) as fh:
                    return np.lib.format.read_array(fh, allow_pickle=False)
            except (MemoryError, RecursionError) as exc:
                raise _read_error(what, exc) from None
            except Exception as exc:
                raise _damaged(path.name, exc) from exc

        return read

    return [
        TensorEntry(info.filename[:-4], shape, _kind(dtype), reader(info, shape, dtype, offset))
        for info, (shape, dtype, offset) in zip(infos, headers, strict=True)
    ]


def _refuse_objects(name: str | os.PathLike[str]) -> KernelSpecError:
    return KernelSpecError(
        f"refusing to unpickle {printable(name)}: it holds Python objects, which needs code "
        "execution; save a numeric (N, C, H, W) array instead"
    )
