"""Keras and TensorFlow.js models: their convolutions as (N, C, H, W) kernels with geometry.

Read without Keras or TensorFlow (``import keras`` alone takes 7.5 to 31 s here):

- Keras 3 ``.keras``: a zip of ``config.json`` (the model's config) and ``model.weights.h5``;
- Keras 3 ``.weights.h5``: ``layers/<snake_case_class>/vars/<i>`` datasets, the layer's name
  in the ``vars`` group's ``name`` attribute (nested models nest ``layers/``); no config, so
  no geometry;
- legacy Keras ``.h5`` (``model.save("x.h5")``): the root attribute ``model_config`` (JSON) and
  ``model_weights/<layer>/...`` datasets listed by each layer's ``weight_names`` attribute;
- TensorFlow.js layers models: ``model.json`` (``modelTopology`` and ``weightsManifest``) and
  its binary shards, concatenated in manifest order.

HDF5 files are read with ``h5py`` (the ``h5py`` extra), imported only here. Keras kernels are
(kH, kW, C_in / groups, N): ``Conv2D`` becomes (N, C, kH, kW); ``DepthwiseConv2D``'s
(kH, kW, C, multiplier) becomes (C * multiplier, 1, kH, kW) with ``groups = C``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np

from ..base.errors import KernelSpecError
from ..base.text import printable
from . import formats, tensors
from .entries import TensorEntry, check_tensor_size

__all__ = ["HDF5_MAGIC", "h5_entries", "keras_zip_entries", "layer_entries", "tfjs_entries"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Keras layer classes read as 2-D convolutions.
_CONV = ("Conv2D", "Convolution2D", "DepthwiseConv2D")
_MODELS = ("Sequential", "Functional", "Model")

#: A store of a model's variables: ``store(layer_name) -> [(shape, read), ...]`` (kernel first).
Store = Callable[[str], list[tuple[tuple[int, ...], Callable[[], np.ndarray]]] | None]


def _h5py(name: str) -> Any:
    try:
        import h5py
    except ImportError:
        raise KernelSpecError(
            f"{printable(name)} is an HDF5 (Keras) file; reading it needs h5py: "
            "pip install 'napari-kernelspec[h5py]'"
        ) from None
    return h5py


def _layers(config: Any, prefix: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, class name, layer config) of every layer, nested models flattened, in order."""
    if not isinstance(config, dict):
        return
    if "model_config" in config and "class_name" not in config:
        config = config["model_config"]
    inner = config.get("config", config)
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        return
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        cls = str(layer.get("class_name", ""))
        cfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        name = str(cfg.get("name", layer.get("name", "")))
        if cls in _MODELS or isinstance(cfg.get("layers"), list):
            yield from _layers(layer, prefix)
        else:
            yield name, cls, cfg


def _pair(value: Any, default: int) -> tuple[int, int]:
    if value is None:
        return default, default
    if isinstance(value, int):
        return value, value
    values = [int(v) for v in value]
    return (values[0], values[-1]) if values else (default, default)


def _geometry(cls: str, cfg: dict[str, Any], kernel: tuple[int, ...]) -> dict[str, Any]:
    """stride, padding, dilation, groups from a Conv2D / DepthwiseConv2D config."""
    stride, dilation = _pair(cfg.get("strides"), 1), _pair(cfg.get("dilation_rate"), 1)
    kh, kw = kernel[0], kernel[1]
    geometry: dict[str, Any] = {"stride": stride, "dilation": dilation}
    if str(cfg.get("padding", "valid")).lower() == "same":
        geometry["padding"] = ((kh - 1) * dilation[0] // 2, (kw - 1) * dilation[1] // 2)
        geometry["padding_mode"] = "same"
    else:
        geometry["padding"] = (0, 0)
    geometry["groups"] = kernel[2] if cls == "DepthwiseConv2D" else int(cfg.get("groups", 1) or 1)
    return geometry


def _to_nchw(cls: str, kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel (kH, kW, C, N) -> (N, C, kH, kW); depthwise -> (C * mult, 1, kH, kW)."""
    kernel = np.asarray(kernel, dtype=np.float32)
    if cls == "DepthwiseConv2D":
        kh, kw, c, mult = kernel.shape
        return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(c * mult, 1, kh, kw))
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def _nchw_shape(cls: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    kh, kw, c, n = shape
    return (c * n, 1, kh, kw) if cls == "DepthwiseConv2D" else (n, c, kh, kw)


def layer_entries(name: str, config: Any, store: Store) -> list[TensorEntry]:
    """Entries for the convolutions of a Keras config whose variables `store` holds.

    Parameters
    ----------
    name : str
        The file's name, for messages.
    config : dict or None
        The model's Keras config (``config.json``, ``model_config``, ``modelTopology``). None:
        every 4-D variable of `store` (its layers in `store`'s order) without geometry.
    store : callable
        ``store(layer_name)`` -> the layer's variables, kernel first, or None; with
        ``store(None)`` listing the (layer name, class name or "") pairs it holds.
    """
    entries = []
    layers = list(_layers(config)) if config is not None else []
    if config is None:
        layers = [(n, cls, {}) for n, cls in store(None) or []]  # type: ignore[arg-type]
    for layer, cls, cfg in layers:
        if config is not None and cls not in _CONV:
            continue
        found = store(layer)
        if not found or len(found[0][0]) != 4:
            continue
        (kshape, kread), rest = found[0], found[1:]
        cls = cls or "Conv2D"
        shape = _nchw_shape(cls, kshape)
        geometry = _geometry(cls, cfg, kshape) if config is not None else None
        bias = None
        if rest and len(rest[0][0]) == 1:
            bias = rest[0][1]
        entries.append(
            TensorEntry(
                layer,
                shape,
                "f",
                lambda c=cls, r=kread: _to_nchw(c, r()),
                geometry=geometry,
                bias=(lambda b=bias: np.asarray(b(), np.float32).reshape(-1)) if bias else None,
            )
        )
    if not entries:
        raise tensors.NoConvolution(
            f"{printable(name)} has no Conv2D layer with stored weights; give a CNN's Keras file"
        )
    return entries


def _dataset_reader(ds: Any, what: str) -> tuple[tuple[int, ...], Callable[[], np.ndarray]]:
    shape = tuple(int(s) for s in ds.shape)

    def read() -> np.ndarray:
        check_tensor_size(shape, what)
        if ds.dtype.kind not in "fiu":
            raise KernelSpecError(f"{what} has dtype {ds.dtype}; give real-valued weights")
        return np.asarray(ds[()], dtype=np.float32)

    return shape, read


def h5_entries(fh: BinaryIO, name: str, config: Any = None) -> list[TensorEntry]:
    """A Keras HDF5 file (Keras 3 ``.weights.h5`` or legacy ``.h5``) from a binary file."""
    h5py = _h5py(name)
    try:
        f = h5py.File(fh, "r")
    except Exception as exc:
        raise formats._damaged(name, exc) from exc
    try:
        if config is None and "model_config" in f.attrs:
            raw = f.attrs["model_config"]
            raw = raw.decode() if isinstance(raw, bytes) else str(raw)
            config = json.loads(raw)
        if "model_weights" in f or "layer_names" in f.attrs:
            store = _legacy_store(f, name)
        else:
            store = _keras3_store(f, name)
        entries = layer_entries(name, config, store)
        for entry in entries:  # read now: the HDF5 file is closed on return
            weights = entry.read()
            bias = entry.bias() if entry.bias is not None else None
            entry._read = lambda w=weights: w
            entry.bias = (lambda b=bias: b) if bias is not None else None
        return entries
    except (KernelSpecError, MemoryError):
        raise
    except Exception as exc:
        raise formats._damaged(name, exc) from exc
    finally:
        f.close()


def _legacy_store(f: Any, name: str) -> Store:
    root = f.get("model_weights", f)
    order = [
        n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs.get("layer_names", [])
    ]

    def store(layer: str | None) -> Any:
        if layer is None:
            return [(n, "") for n in order]
        if layer not in root:
            return None
        group = root[layer]
        names = [
            n.decode() if isinstance(n, bytes) else str(n)
            for n in group.attrs.get("weight_names", [])
        ]
        return [_dataset_reader(group[n], f"{name} [{n}]") for n in names if n in group]

    return store


def _keras3_store(f: Any, name: str) -> Store:
    groups: dict[str, Any] = {}
    classes: dict[str, str] = {}

    def visit(path: str, obj: Any) -> None:
        if path.endswith("vars") and hasattr(obj, "keys"):
            layer = obj.attrs.get("name", path)
            layer = layer.decode() if isinstance(layer, bytes) else str(layer)
            groups.setdefault(layer, obj)
            # The group is named after the layer's class in snake case (depthwise_conv2d_1).
            owner = path.rsplit("/", 2)[-2] if path.count("/") >= 1 else ""
            classes.setdefault(layer, "DepthwiseConv2D" if "depthwise" in owner else "")

    f.visititems(visit)

    def store(layer: str | None) -> Any:
        if layer is None:
            return [(n, classes.get(n, "")) for n in groups]
        group = groups.get(layer)
        if group is None:
            return None
        keys = sorted((k for k in group if k.isdigit()), key=int)
        return [_dataset_reader(group[k], f"{name} [{layer}/{k}]") for k in keys]

    return store


class _Window(io.RawIOBase):
    """A read-only view of `length` bytes of `fh` from `offset` (a stored zip record)."""

    def __init__(self, fh: BinaryIO, offset: int, length: int) -> None:
        super().__init__()
        self.fh, self.offset, self.length, self.pos = fh, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = max(0, {0: 0, 1: self.pos, 2: self.length}[whence] + int(offset))
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.length - self.pos))
        self.fh.seek(self.offset + self.pos)
        data = self.fh.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def keras_zip_entries(fh: BinaryIO, name: str) -> list[TensorEntry]:
    """A Keras 3 ``.keras`` file: ``config.json`` and the stored ``model.weights.h5``."""
    try:
        zf = zipfile.ZipFile(fh)
        info = zf.getinfo("config.json")
        if info.file_size > tensors.MAX_HEADER_BYTES:
            raise formats._damaged(name, "config.json is too large")
        config = json.loads(zf.read(info))
        weights = zf.getinfo("model.weights.h5")
    except KernelSpecError:
        raise
    except Exception as exc:
        raise formats._damaged(name, exc) from exc
    if weights.compress_type == zipfile.ZIP_STORED:
        start = formats._record_data_start(fh, weights, name)
        view: BinaryIO = io.BufferedReader(_Window(fh, start, weights.file_size))  # type: ignore[assignment]
    else:
        if weights.file_size > tensors.MAX_TENSOR_BYTES:
            raise KernelSpecError(
                f"{printable(name)}: its compressed weights declare "
                f"{weights.file_size // 2**20} MiB; save the model again with model.save"
            )
        view = io.BytesIO(zf.read(weights))
    return h5_entries(view, name, config)


def is_tfjs(document: Any) -> bool:
    """Whether a parsed JSON document is a TensorFlow.js layers model (``model.json``)."""
    return isinstance(document, dict) and "weightsManifest" in document


_TFJS_DTYPES = {"float32": "f4", "int32": "i4", "float16": "f2"}
_TFJS_QUANT = {"uint8": "u1", "uint16": "u2", "float16": "f2"}


def tfjs_entries(
    document: dict[str, Any], name: str, open_sibling: Callable[[str], BinaryIO] | None
) -> list[TensorEntry]:
    """A TensorFlow.js layers model from its parsed ``model.json`` and its shard files."""
    manifest = document.get("weightsManifest")
    if not isinstance(manifest, list):
        raise formats._damaged(name, "weightsManifest is not a list")
    topology = document.get("modelTopology")
    located: dict[str, tuple[tuple[int, ...], Callable[[], np.ndarray]]] = {}
    for group in manifest:
        paths = [str(p) for p in group.get("paths", [])]
        offset = 0
        for spec in group.get("weights", []):
            shape = tuple(int(s) for s in spec.get("shape", []))
            quant = spec.get("quantization")
            code = (
                _TFJS_QUANT.get(str(quant.get("dtype")))
                if isinstance(quant, dict)
                else _TFJS_DTYPES.get(str(spec.get("dtype", "float32")))
            )
            if code is None:
                raise KernelSpecError(
                    f"{printable(name)} [{printable(spec.get('name'), 80)}] has a dtype this "
                    "reader does not take; give float32 weights"
                )
            nbytes = int(np.prod(shape, dtype=np.int64)) * tensors.itemsize(code)
            located[str(spec.get("name"))] = (
                shape,
                _tfjs_reader(paths, offset, nbytes, code, shape, quant, name, open_sibling),
            )
            offset += nbytes

    def store(layer: str | None) -> Any:
        if layer is None:
            return [(n, "") for n in dict.fromkeys(k.rsplit("/", 1)[0] for k in located)]
        out = []
        for var in ("kernel", "depthwise_kernel", "bias"):
            for key in (f"{layer}/{var}", f"{layer}/{var}:0"):
                if key in located:
                    out.append(located[key])
                    break
        return out or None

    return layer_entries(name, topology, store)


def _tfjs_reader(paths, offset, nbytes, code, shape, quant, name, open_sibling):
    def read() -> np.ndarray:
        check_tensor_size(shape, f"{printable(name)}")
        if open_sibling is None:
            raise KernelSpecError(
                f"{printable(name)}: its weight shards cannot be opened here; keep them next "
                "to model.json"
            )
        raw = bytearray()
        skip = offset
        for path in paths:  # the shards are one byte stream
            with open_sibling(path) as fh:
                fh.seek(0, 2)
                size = fh.tell()
                if skip >= size:
                    skip -= size
                    continue
                fh.seek(skip)
                raw += fh.read(min(size - skip, nbytes - len(raw)))
                skip = 0
            if len(raw) >= nbytes:
                break
        if len(raw) != nbytes:
            raise formats._damaged(name, "the weight shards are shorter than the manifest says")
        values = np.frombuffer(bytes(raw), dtype=np.dtype(code).newbyteorder("<")).reshape(shape)
        values = values.astype(np.float32)
        if isinstance(quant, dict) and "scale" in quant:
            values = values * float(quant["scale"]) + float(quant.get("min", 0.0))
        return values

    return read
