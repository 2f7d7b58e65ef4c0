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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..base.bank import validate_weights
from ..base.errors import KernelSpecError
from ..base.text import printable
from . import tensors

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

#: Largest kernel height or width. Real first layers are 1 to 16 pixels (ViT-B/16: 16,
#: ConvNeXt: 4 and 7, lpips ``lin`` layers: 1); large-kernel networks reach 31 (RepLKNet) to
#: 51 (SLaK). A (64, 3, 1, 1000) "bank" is a matrix saved in the wrong shape.
MAX_KERNEL_SIDE = 64
#: Most elements in one tensor that is read: 2**26 (256 MiB as float32). The widest 3x3
#: convolutions of common networks have 2048 x 2048 x 9 = 37.7 million.
MAX_TENSOR_ELEMENTS = 2**26
#: Largest ``data.pkl`` of a zip checkpoint and largest safetensors header (a state dict's
#: pickle is a few megabytes even for large models): the limit remote reads have too.
MAX_PICKLE_BYTES = tensors.MAX_HEADER_BYTES
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


def refuse_pickle_message(path: str | os.PathLike[str]) -> str:
    """The one-line refusal for a pickle that would run code when loaded."""
    return (
        f"refusing to unpickle {printable(path)}: it needs code execution; "
        "save model.state_dict() instead (torch.save(model.state_dict(), path))"
    )


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
    from . import formats

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"
    kind = formats.detect(head)
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
    """A file whose extension names no format: recognised from its first bytes (`formats`).

    Torch files are then read with `formats`' restricted unpickler (the one remote files use),
    ONNX, Keras and TensorFlow.js files with their readers; files next to it (external data,
    weight shards) are opened from its folder, never above it.
    """
    from . import formats

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

    fmt, found = formats.read_entries(fh, path.name, path.stat().st_size, open_sibling)
    if isinstance(found, formats.Sharded):
        raise KernelSpecError(
            f"{printable(path.name)} is a sharded checkpoint's index; give one of its shards "
            f"({', '.join(printable(s, 60) for s in found.shards()[:3])})"
        )
    return found, fmt


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
