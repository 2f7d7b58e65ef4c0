"""Checkpoint formats read from any seekable binary file, touching only the bytes needed.

The readers here work on a local file and on `remote.RangeFile` alike: they read the small
structural parts of a file (the zip central directory and ``data.pkl``, the leading pickles
of a legacy file, a safetensors JSON header) and then, for the one tensor chosen, only that
tensor's bytes. The format is recognised from the first bytes (`readers.detect`), never
from the file name:

========================  =========================================================
first bytes               format
========================  =========================================================
``PK\\x03\\x04``            zip checkpoint (``torch.save`` since torch 1.6)
``\\x80\\x02\\x8a\\x0a``       legacy pickle-stream checkpoint (before torch 1.6)
``ustar`` at byte 257     the old tar checkpoint format: refused
8-byte length, ``{``      safetensors
``{``                     a sharded checkpoint's index (``*.index.json``)
========================  =========================================================

Pickles are read with a restricted unpickler that knows the handful of globals a state dict
needs and maps each to an inert placeholder: no code from the file ever runs (a pickle that
names any other global is refused). Every size a file declares (header lengths, record
sizes, tensor spans) is checked against the limits below before anything is read.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from ..base.bank import validate_weights
from ..base.errors import KernelSpecError
from . import tensors
from .entries import (
    TensorEntry,
    _bias,
    _find_state_dict,
    _flatten,
    check_tensor_size,
    refuse_pickle_message,
    select_entry,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_TENSOR_BYTES",
    "Sharded",
    "select_kernels",
]

MAX_HEADER_BYTES = tensors.MAX_HEADER_BYTES
MAX_TENSOR_BYTES = tensors.MAX_TENSOR_BYTES

#: Magic number of legacy torch files (the first pickle of the stream).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

#: torch storage class name -> numpy dtype string ("bf16" is converted by hand).
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
}
#: torch dtype name (``_rebuild_tensor_v3``) -> numpy dtype string.
_TORCH_DTYPES = {
    "float32": "f4",
    "float64": "f8",
    "float16": "f2",
    "bfloat16": "bf16",
    "int64": "i8",
    "int32": "i4",
    "int16": "i2",
    "int8": "i1",
    "uint8": "u1",
    "bool": "b1",
}
_SAFETENSORS_DTYPES = tensors.SAFETENSORS_DTYPES


def _itemsize(code: str) -> int:
    return tensors.itemsize(code)


def _torch_dtype(code: str) -> Any:
    import torch

    names = {v: k for k, v in _TORCH_DTYPES.items()}
    return getattr(torch, names[code])


# --- the restricted unpickler --------------------------------------------------------------


@dataclass(frozen=True)
class _Storage:
    """A storage named in a pickle: its key (record name), dtype and element count."""

    key: str
    dtype: str
    numel: int
    view_offset: int = 0  # legacy views: elements into the root storage


@dataclass(frozen=True)
class _StorageType:
    dtype: str


@dataclass(frozen=True)
class TensorRef:
    """Where a tensor's elements are: storage, offset and strides in elements, shape."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _Refused(Exception):
    """The pickle names a global outside the weights-only set."""


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(isinstance(v, int) for v in value):
        raise ValueError(f"{what} is not a tuple of integers")
    if len(value) > 16:
        raise ValueError(f"{what} has {len(value)} dimensions")
    return tuple(int(v) for v in value)


def _meta_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> Any:
    """A meta tensor (nothing allocated) standing for a stored tensor; `TensorRef` attached.

    Meta tensors let `entries`' state-dict search (which looks for ``torch.Tensor``)
    run unchanged on what the restricted unpickler builds.
    """
    import torch

    if not isinstance(storage, _Storage) or not isinstance(offset, int) or offset < 0:
        raise ValueError("a tensor does not refer to a stored array")
    shape, strides = _ints(size, "a tensor size"), _ints(stride, "a tensor stride")
    if len(shape) != len(strides) or min(shape + strides, default=0) < 0:
        raise ValueError("a tensor has an invalid size or stride")
    dtype = _torch_dtype(storage.dtype)
    tensor = torch.empty_strided(shape, strides, dtype=dtype, device="meta")
    tensor._kernelspec_ref = TensorRef(storage, storage.view_offset + offset, shape, strides)
    return tensor


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> Any:
    return _meta_tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(
    storage: Any, offset: Any, size: Any, stride: Any, _grad: Any, _hooks: Any, dtype: Any, *_: Any
) -> Any:
    if not isinstance(dtype, _StorageType) or not isinstance(storage, _Storage):
        raise ValueError("a tensor has no known dtype")
    # An untyped (byte) storage viewed as `dtype`: convert its element count and offsets.
    size_ = _itemsize(dtype.dtype)
    typed = _Storage(
        storage.key, dtype.dtype, storage.numel // size_, storage.view_offset // size_
    )
    return _meta_tensor(typed, offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _rebuild_from_type(func: Any, _new_type: Any, args: Any, _state: Any) -> Any:
    if func not in _REBUILDERS or not isinstance(args, tuple):
        raise ValueError("a tensor subclass is rebuilt by an unknown function")
    return func(*args)


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise ValueError("unexpected _codecs.encode call")
    return text.encode(encoding)


_REBUILDERS = {_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter}

#: The only globals a weights pickle may name, each mapped to an inert stand-in.
_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): "Tensor",
    ("torch.nn.parameter", "Parameter"): "Parameter",
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _encode,
    ("torch", "UntypedStorage"): _StorageType("u1"),
    **{("torch", name): _StorageType(code) for name, code in _STORAGE_DTYPES.items()},
    **{("torch", name): _StorageType(code) for name, code in _TORCH_DTYPES.items()},
}


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickles state dicts only: known globals become placeholders, storages `_Storage`."""

    def __init__(self, file: BinaryIO, legacy: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self.legacy = legacy
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise ValueError(f"unknown persistent id {str(pid)[:60]}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise ValueError("a storage has no known type or size")
        key = str(key)
        view = pid[5] if self.legacy and len(pid) > 5 else None
        root = self.storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
        if view is None:
            return root
        # Legacy views: (view_key, offset, size) into the root storage.
        _view_key, offset, _size = view
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("a storage view has an invalid offset")
        return _Storage(key, root.dtype, root.numel, offset)


def _unpickle(fh: BinaryIO, name: str, legacy: bool) -> tuple[Any, dict[str, _Storage]]:
    unpickler = _WeightsUnpickler(fh, legacy)
    try:
        return unpickler.load(), unpickler.storages
    except _Refused:
        raise KernelSpecError(refuse_pickle_message(name)) from None
    except KernelSpecError:
        raise
    except Exception as exc:
        raise _damaged(name, exc) from exc


def _damaged(name: str, exc: BaseException | str) -> KernelSpecError:
    text = str(exc).strip().splitlines()
    reason = (text[0] if text else type(exc).__name__)[:160]
    return KernelSpecError(
        f"{name} is truncated or damaged and cannot be read ({reason}); check the file or URL"
    )


# --- reading one array ---------------------------------------------------------------------


def _allow(fh: BinaryIO, nbytes: int) -> None:
    allow = getattr(fh, "allow", None)
    if allow is not None:
        allow(nbytes)


def _span(name: str, code: str, shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Bytes from a tensor's first element to its last, checked against `MAX_TENSOR_BYTES`."""
    if 0 in shape:
        return 0
    span = (sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) + 1) * _itemsize(code)
    if span > MAX_TENSOR_BYTES:
        raise KernelSpecError(
            f"{name}: the tensor spans {span / 2**20:.0f} MiB, more than the "
            f"{MAX_TENSOR_BYTES // 2**20} MiB a convolution layer needs; pick another layer"
        )
    return span


def _prefetch(fh: BinaryIO, start: int, nbytes: int) -> None:
    """One read over a record's header and its tensor, so a range file fetches them together."""
    if hasattr(fh, "allow") and 0 < nbytes < 2**18:
        _allow(fh, nbytes)
        fh.seek(start)
        fh.read(nbytes)


def _read_array(
    fh: BinaryIO,
    name: str,
    start: int,
    end_of_data: int,
    code: str,
    shape: tuple[int, ...],
    stride: tuple[int, ...],
    byteorder: str = "<",
) -> np.ndarray:
    """Read a strided array whose element 0 is at byte `start`; nothing past `end_of_data`.

    Returns
    -------
    ndarray
        float32 for floating dtypes (bfloat16 converted), the stored integer type otherwise.
    """
    span = _span(name, code, shape, stride)
    if span == 0:
        return np.zeros(shape, np.float32)
    if start < 0 or start + span > end_of_data:
        raise _damaged(name, "a tensor runs past the end of its data")
    _allow(fh, span)
    fh.seek(start)
    raw = fh.read(span)
    if len(raw) != span:
        raise _damaged(name, f"read {len(raw)} of {span} bytes")
    if code == "bf16":
        halves = np.frombuffer(raw, dtype=f"{byteorder}u2").astype(np.uint32) << 16
        flat = halves.view(np.float32)
    elif code in ("f8e4m3", "f8e5m2"):
        import torch

        f8 = torch.float8_e4m3fn if code == "f8e4m3" else torch.float8_e5m2
        flat = torch.frombuffer(bytearray(raw), dtype=f8).to(torch.float32).numpy()
    else:
        flat = np.frombuffer(raw, dtype=np.dtype(code).newbyteorder(byteorder))
    out = np.lib.stride_tricks.as_strided(
        flat, shape, tuple(s * flat.itemsize for s in stride), writeable=False
    )
    if out.dtype.kind == "f":
        return np.array(out, dtype=np.float32)
    return np.array(out, dtype=out.dtype.newbyteorder("="))


def _entries_from_state(
    obj: Any, name: str, reader: Callable[[TensorRef], np.ndarray]
) -> list[TensorEntry]:
    """`entries`' state-dict search over the placeholder tree, as lazy entries."""
    import torch

    if isinstance(obj, torch.Tensor):
        pairs = [(name, obj)]
    elif isinstance(obj, dict):
        pairs = _flatten(_find_state_dict(obj, name), name)
    else:
        raise KernelSpecError(
            f"{name} holds a {type(obj).__name__}, not a state dict; "
            "save model.state_dict() instead"
        )
    entries = []
    for key, tensor in pairs:
        ref = getattr(tensor, "_kernelspec_ref", None)
        if ref is None:  # pragma: no cover - only the unpickler makes tensors here
            continue
        if tensor.is_floating_point():
            kind = "f"
        elif tensor.dtype == torch.bool or tensor.is_complex():
            kind = "o"
        else:
            kind = "i"
        entries.append(TensorEntry(key, ref.shape, kind, lambda r=ref: reader(r)))
    return entries


# --- zip checkpoints -----------------------------------------------------------------------


def _stored(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    if info.compress_type != zipfile.ZIP_STORED:
        raise _damaged(name, f"record {info.filename} is compressed (torch stores records)")


def _record_data_start(fh: BinaryIO, info: zipfile.ZipInfo, name: str) -> int:
    """Byte offset of a stored record's data: after its local header."""
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise _damaged(name, f"bad local header of {info.filename}")
    n_name, n_extra = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + n_name + n_extra


def zip_entries(fh: BinaryIO, name: str) -> list[TensorEntry]:
    """Tensors of a zip checkpoint: the directory and ``data.pkl`` read, tensors lazily.

    Parameters
    ----------
    fh : seekable binary file
    name : str
        How to name the file in messages.
    """
    try:
        zf = zipfile.ZipFile(fh)
        pkl = [i for i in zf.infolist() if i.filename.endswith("data.pkl")]
        if not pkl:
            raise KernelSpecError(
                f"{name} is a zip file but not a torch checkpoint (it has no data.pkl); "
                "give a file written by torch.save"
            )
        info = min(pkl, key=lambda i: i.filename.count("/"))
        prefix = info.filename[: -len("data.pkl")]
        _stored(zf, info, name)
        if info.file_size > MAX_HEADER_BYTES:
            raise KernelSpecError(
                f"{name}: its data.pkl declares {info.file_size / 2**20:.0f} MiB, more than "
                f"the {MAX_HEADER_BYTES // 2**20} MiB a state dict needs; not a weights file"
            )
        data = zf.read(info)
        byteorder = "<"
        if f"{prefix}byteorder" in zf.NameToInfo:
            order = zf.read(f"{prefix}byteorder")[:16].strip()
            byteorder = ">" if order == b"big" else "<"
    except KernelSpecError:
        raise
    except Exception as exc:
        raise _damaged(name, exc) from exc
    obj, _storages = _unpickle(io.BytesIO(data), name, legacy=False)

    def read(ref: TensorRef) -> np.ndarray:
        record = zf.NameToInfo.get(f"{prefix}data/{ref.storage.key}")
        if record is None:
            raise _damaged(name, f"no record for storage {ref.storage.key}")
        _stored(zf, record, name)
        itemsize = _itemsize(ref.storage.dtype)
        span = _span(name, ref.storage.dtype, ref.shape, ref.stride)
        _prefetch(fh, record.header_offset, 30 + 512 + ref.offset * itemsize + span)
        start = _record_data_start(fh, record, name)
        return _read_array(
            fh,
            name,
            start + ref.offset * itemsize,
            start + record.file_size,
            ref.storage.dtype,
            ref.shape,
            ref.stride,
            byteorder,
        )

    return _entries_from_state(obj, name, read)


# --- legacy pickle-stream checkpoints -------------------------------------------------------


class _Bounded(io.RawIOBase):
    """A read-only view of `fh` that ends `limit` bytes after where it starts."""

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self.fh = fh
        self.end = fh.tell() + limit

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.fh.tell()

    def readinto(self, buffer: Any) -> int:
        room = max(0, self.end - self.fh.tell())
        data = self.fh.read(min(len(buffer), room))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        room = max(0, self.end - self.fh.tell())
        limit = room if size is None or size < 0 else min(size, room)
        return self.fh.readline(limit)


def legacy_entries(fh: BinaryIO, name: str, size: int) -> list[TensorEntry]:
    """Tensors of a legacy (pre-1.6) checkpoint: the leading pickles read, tensors lazily.

    The storages follow the pickles in the order of the stored key list, each an 8-byte
    element count and the raw bytes, so a tensor's offset is the sum of the sizes before it.
    """
    fh.seek(0)
    # Buffered: the unpickler then peeks ahead instead of making tens of thousands of tiny
    # reads (measured: 1.5 s -> 0.1 s for DenseNet121's pickle); `tell` stays exact.
    bounded = io.BufferedReader(_Bounded(fh, MAX_HEADER_BYTES), buffer_size=2**16)
    pickles = []
    for _ in range(3):
        value, _ = _unpickle(bounded, name, legacy=True)  # type: ignore[arg-type]
        pickles.append(value)
    magic, protocol, sys_info = pickles
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(sys_info, dict):
        raise _damaged(name, "not a torch legacy file (wrong magic number or protocol)")
    byteorder = "<" if sys_info.get("little_endian", True) else ">"
    obj, storages = _unpickle(bounded, name, legacy=True)  # type: ignore[arg-type]
    keys, _ = _unpickle(bounded, name, legacy=True)  # type: ignore[arg-type]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _damaged(name, "the storage key list is missing")
    offsets: dict[str, int] = {}
    at = bounded.tell()
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise _damaged(name, f"storage {key!r} is listed but never used")
        offsets[key] = at
        at += 8 + storage.numel * _itemsize(storage.dtype)
    if at > size:
        raise _damaged(name, f"its storages need {at} bytes but the file has {size} (truncated?)")

    def read(ref: TensorRef) -> np.ndarray:
        storage = storages[ref.storage.key]
        at = offsets.get(storage.key)
        if at is None:
            raise _damaged(name, f"storage {storage.key!r} is not in the key list")
        itemsize = _itemsize(storage.dtype)
        span = _span(name, storage.dtype, ref.shape, ref.stride)
        _prefetch(fh, at, min(8 + ref.offset * itemsize + span, size - at))
        fh.seek(at)
        head = fh.read(8)
        if len(head) != 8:
            raise _damaged(name, "a storage header is cut off")
        (count,) = struct.unpack(f"{byteorder}q", head)
        if count != storage.numel:
            raise _damaged(
                name, f"storage {storage.key!r} holds {count} elements, not {storage.numel}"
            )
        data = at + 8
        return _read_array(
            fh,
            name,
            data + ref.offset * itemsize,
            data + storage.numel * itemsize,
            storage.dtype,
            ref.shape,
            ref.stride,
            byteorder,
        )

    return _entries_from_state(obj, name, read)


# --- safetensors ---------------------------------------------------------------------------


def _json_header(fh: BinaryIO, name: str, start: int, length: int) -> Any:
    if length > MAX_HEADER_BYTES:
        raise KernelSpecError(
            f"{name}: its header declares {length / 2**20:.0f} MiB, more than the "
            f"{MAX_HEADER_BYTES // 2**20} MiB a weights file needs; not a weights file"
        )
    fh.seek(start)
    raw = fh.read(length)
    if len(raw) != length:
        raise _damaged(name, "the header is cut off")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _damaged(name, exc) from exc


def safetensors_entries(fh: BinaryIO, name: str, size: int) -> list[TensorEntry]:
    """Tensors of a safetensors file, in the order of their data; tensors read lazily."""
    fh.seek(0)
    head = fh.read(8)
    if len(head) != 8:
        raise _damaged(name, "shorter than its 8-byte header size")
    (n,) = struct.unpack("<Q", head)
    if n > size - 8:
        raise _damaged(name, "the header runs past the end of the file")
    header = _json_header(fh, name, 8, n)
    if not isinstance(header, dict):
        raise _damaged(name, "the header is not a JSON object")
    base = 8 + n
    entries = []
    try:
        items = []
        for key, spec in header.items():
            if key == "__metadata__":
                continue
            code = _SAFETENSORS_DTYPES.get(spec["dtype"])
            shape = _ints(list(spec["shape"]), f"the shape of {key}")
            begin, end = (int(v) for v in spec["data_offsets"])
            if min(shape, default=0) < 0 or not 0 <= begin <= end or base + end > size:
                raise ValueError(f"{key}: data offsets run past the end of the file")
            items.append((begin, key, code, shape, end))
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(name, exc) from exc
    for begin, key, code, shape, end in sorted(items):
        if code is None:
            entries.append(TensorEntry(key, shape, "o", lambda k=key: _no_dtype(name, k)))
            continue
        if int(np.prod(shape, dtype=np.int64)) * _itemsize(code) != end - begin:
            raise _damaged(name, f"{key}: its byte range does not fit its shape and dtype")
        stride = tuple(int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(len(shape)))

        def read(b: int = begin, e: int = end, c: str = code, s: Any = shape, st: Any = stride):
            return _read_array(fh, name, base + b, base + e, c, s, st)

        kind = tensors.kind_of(code)
        entries.append(TensorEntry(key, shape, kind, read))
    return entries


def _no_dtype(name: str, key: str) -> np.ndarray:
    raise KernelSpecError(
        f"{name} [{key}] has a dtype this reader does not know; pick another layer"
    )


# --- sharded checkpoints -------------------------------------------------------------------


@dataclass(frozen=True)
class Sharded:
    """A sharded checkpoint's index: tensor key -> shard file (relative to the index)."""

    weight_map: dict[str, str]

    def shards(self) -> list[str]:
        """Shard files in a stable order: as they first appear in the sorted key list."""
        return sorted(set(self.weight_map.values()))


def index_file(fh: BinaryIO, name: str, size: int) -> Sharded:
    """Read a ``model.safetensors.index.json`` / ``pytorch_model.bin.index.json``."""
    return _index(_json_header(fh, name, 0, size), name)


def _index(index: Any, name: str) -> Sharded:
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise KernelSpecError(
            f"{name} is JSON but not a sharded checkpoint index (no weight_map); "
            "give a checkpoint file or its index.json"
        )
    for shard in weight_map.values():
        if shard.startswith("/") or ".." in PurePosixPath(shard).parts or "://" in shard:
            raise _damaged(name, f"shard {shard[:60]!r} is outside the checkpoint's folder")
    return Sharded(weight_map)


def _npy_entry(fh: BinaryIO, name: str, size: int) -> TensorEntry:
    """A ``.npy`` array read from a file object (header first, ``allow_pickle=False``)."""
    fmt = np.lib.format
    fh.seek(0)
    try:
        version = fmt.read_magic(fh)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise _damaged(name, exc) from exc
    if dtype.hasobject:
        raise KernelSpecError(
            f"refusing to unpickle {name}: it holds Python objects, which needs code "
            "execution; save a numeric (N, C, H, W) array instead"
        )
    shape = tuple(int(s) for s in shape)
    start = fh.tell()
    code = dtype.str[1:]
    order = "<" if dtype.byteorder in "<=|" else ">"
    n = len(shape)
    stride = tuple(
        int(np.prod(shape[:i], dtype=np.int64))
        if fortran
        else int(np.prod(shape[i + 1 :], dtype=np.int64))
        for i in range(n)
    )
    total = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize

    def read() -> np.ndarray:
        check_tensor_size(shape, name)
        return _read_array(fh, name, start, min(size, start + total), code, shape, stride, order)

    return TensorEntry(name, shape, tensors.kind_of(code), read)


def select_kernels(
    entries: list[TensorEntry], name: str, layer: str | None
) -> tuple[str, np.ndarray]:
    """The chosen entry's key and validated (N, C, H, W) float32 weights.

    Same rules as local files (`checkpoints.read_kernels`): `layer` with or without
    ``".weight"``, else the first 4-D floating tensor.
    """
    entry = select_entry(entries, layer, name)
    check_tensor_size(entry.shape, f"{name} [{entry.key}]")
    return entry.key, validate_weights(entry.read(), f"{name} [{entry.key}]")


def select_bias(entries: list[TensorEntry], key: str, n: int) -> np.ndarray | None:
    """The ``<layer>.bias`` next to the chosen ``<layer>.weight`` `key`, if the file has it."""
    chosen = next(e for e in entries if e.key == key)
    if chosen.bias is not None:
        return chosen.bias()
    return _bias(entries, chosen, n)
