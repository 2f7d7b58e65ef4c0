"""ONNX models: the convolutions of a graph, read from any seekable file without ``onnx``.

An ONNX file is one protobuf message (``ModelProto``). The walker here reads its fields in
file order and keeps only the positions of large payloads, so reading a first convolution
touches the graph's nodes (a few kB: protobuf writes ``GraphProto.node``, field 1, before
``initializer``, field 5) and the initializers up to the one that holds the weights. Over HTTP
a ResNet50 export (98 MB) is read with 0.19 % of its bytes this way; ``onnx.load`` needs the
whole file. (Why not ``onnx``: it parses only complete messages from memory, and it is an
optional extra; the reader here needs nothing but numpy.)

Weights are initializers or the ``value`` of ``Constant`` nodes (through ``Identity`` nodes);
``external_data`` is read from the file named next to the model when the caller can open
siblings. A ``Conv`` node's inputs are X, W (N, C/group, kH, kW) and B; its attributes give
the geometry (``strides``, ``pads``, ``dilations``, ``group``, ``auto_pad``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from ..base.errors import KernelSpecError
from ..base.text import printable
from . import formats, tensors
from .entries import TensorEntry, check_tensor_size

__all__ = ["is_onnx", "onnx_entries"]

#: Wire types of protobuf fields.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
#: ModelProto.graph; GraphProto.node / initializer; NodeProto fields; AttributeProto fields.
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
#: Most fields walked in one message (a crafted file must not loop for long).
_MAX_FIELDS = 2_000_000


def _damaged(name: str, reason: str) -> KernelSpecError:
    return formats._damaged(name, reason)


def _varint(buf: bytes, at: int, name: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(buf) or shift > 63:
            raise _damaged(name, "a protobuf number is cut off")
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(fh: BinaryIO, start: int, end: int, name: str):
    """(field, wire type, value) of a message in ``[start, end)``.

    Length-delimited values are (offset, length): nothing of them is read here.
    """
    at = start
    count = 0
    while at < end:
        count += 1
        if count > _MAX_FIELDS:
            raise _damaged(name, "a message has too many fields")
        fh.seek(at)
        head = fh.read(min(22, end - at))
        tag, n = _varint(head, 0, name)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _damaged(name, "a protobuf field number is 0")
        if wire == _VARINT:
            value, n = _varint(head, n, name)
            yield field, wire, value
        elif wire == _I64:
            if n + 8 > len(head):
                raise _damaged(name, "a protobuf field is cut off")
            yield field, wire, head[n : n + 8]
            n += 8
        elif wire == _I32:
            if n + 4 > len(head):
                raise _damaged(name, "a protobuf field is cut off")
            yield field, wire, head[n : n + 4]
            n += 4
        elif wire == _LEN:
            length, n = _varint(head, n, name)
            if at + n + length > end:
                raise _damaged(name, "a protobuf field runs past its message")
            yield field, wire, (at + n, length)
            n += length
        else:
            raise _damaged(name, f"unknown protobuf wire type {wire}")
        at += n


def _bytes(fh: BinaryIO, span: tuple[int, int], name: str, limit: int = 2**16) -> bytes:
    start, length = span
    if length > limit:
        raise _damaged(name, f"a name or attribute of {length} bytes")
    fh.seek(start)
    data = fh.read(length)
    if len(data) != length:
        raise _damaged(name, "the file is cut off")
    return data


def _text(fh: BinaryIO, span: tuple[int, int], name: str) -> str:
    return _bytes(fh, span, name).decode("utf-8", "replace")


def _ints(fh: BinaryIO, wire: int, value: Any, name: str) -> list[int]:
    """Repeated int64: one varint, or a packed run of them."""
    if wire == _VARINT:
        return [value - (1 << 64) if value >= 1 << 63 else value]
    raw = _bytes(fh, value, name)
    out, at = [], 0
    while at < len(raw):
        v, at = _varint(raw, at, name)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


class _Tensor:
    """A TensorProto's description; its numbers stay in the file until `read`."""

    def __init__(self) -> None:
        self.name = ""
        self.dims: list[int] = []
        self.dtype = 0
        self.raw: tuple[int, int] | None = None  # raw_data span
        self.floats: tuple[int, int] | None = None  # packed float_data span
        self.external: dict[str, str] = {}


def _tensor(fh: BinaryIO, start: int, length: int, name: str) -> _Tensor:
    t = _Tensor()
    for field, wire, value in _fields(fh, start, start + length, name):
        if field == 1:
            t.dims += _ints(fh, wire, value, name)
        elif field == 2 and wire == _VARINT:
            t.dtype = value
        elif field == 8 and wire == _LEN:
            t.name = _text(fh, value, name)
        elif field == 9 and wire == _LEN:
            t.raw = value
        elif field == 4 and wire == _LEN:
            t.floats = value
        elif field == 13 and wire == _LEN:
            key = val = ""
            for f, w, v in _fields(fh, value[0], value[0] + value[1], name):
                if w == _LEN and f in (1, 2):
                    if f == 1:
                        key = _text(fh, v, name)
                    else:
                        val = _text(fh, v, name)
            t.external[key] = val
    return t


class _Node:
    def __init__(self) -> None:
        self.name = ""
        self.op = ""
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.ints: dict[str, list[int]] = {}
        self.strings: dict[str, str] = {}
        self.tensors: dict[str, _Tensor] = {}


def _node(fh: BinaryIO, start: int, length: int, name: str) -> _Node:
    node = _Node()
    for field, wire, value in _fields(fh, start, start + length, name):
        if wire != _LEN:
            continue
        if field == 1:
            node.inputs.append(_text(fh, value, name))
        elif field == 2:
            node.outputs.append(_text(fh, value, name))
        elif field == 3:
            node.name = _text(fh, value, name)
        elif field == 4:
            node.op = _text(fh, value, name)
        elif field == 5:
            _attribute(fh, value, node, name)
    return node


def _attribute(fh: BinaryIO, span: tuple[int, int], node: _Node, name: str) -> None:
    attr, ints, text, tensor = "", [], None, None
    for field, wire, value in _fields(fh, span[0], span[0] + span[1], name):
        if field == 1 and wire == _LEN:
            attr = _text(fh, value, name)
        elif field == 3 and wire == _VARINT:
            ints = _ints(fh, wire, value, name)
        elif field == 8:
            ints += _ints(fh, wire, value, name)
        elif field == 4 and wire == _LEN:
            text = _text(fh, value, name)
        elif field == 5 and wire == _LEN:
            tensor = _tensor(fh, value[0], value[1], name)
    if tensor is not None:
        node.tensors[attr] = tensor
    elif text is not None:
        node.strings[attr] = text
    else:
        node.ints[attr] = ints


def is_onnx(head: bytes) -> bool:
    """Whether `head` (a file's first bytes) looks like an ONNX ModelProto.

    ONNX has no magic number; exporters write ``ir_version`` (field 1, a small varint) first.
    """
    return len(head) >= 2 and head[0] == 0x08 and 0 < head[1] < 0x40


def onnx_entries(
    fh: BinaryIO,
    name: str,
    size: int,
    open_sibling: Callable[[str], BinaryIO] | None = None,
) -> list[TensorEntry]:
    """The 2-D convolutions of an ONNX model in graph order, as lazy entries.

    Parameters
    ----------
    fh : seekable binary file
    name : str
        How to name the file in messages.
    size : int
        The file's size in bytes.
    open_sibling : callable, optional
        ``open_sibling(relative_path) -> binary file`` for ``external_data`` files.

    Returns
    -------
    list of TensorEntry
        Keyed by the weight's name, aliased by the Conv node's name; each with its bias and
        ``geometry``. The initializers are walked only as far as the first convolution needs
        until another one is read (entries read lazily).

    Raises
    ------
    KernelSpecError
        Not an ONNX model, a damaged file, no Conv node.
    """
    graph = None
    for field, wire, value in _fields(fh, 0, size, name):
        if field == _MODEL_GRAPH and wire == _LEN:
            graph = value
    if graph is None:
        raise KernelSpecError(
            f"{printable(name)} is not an ONNX model (it has no graph); give an .onnx file "
            "written by an ONNX exporter"
        )
    nodes: list[_Node] = []
    walker = _fields(fh, graph[0], graph[0] + graph[1], name)
    initializers: dict[str, _Tensor] = {}
    pending: list[tuple[int, tuple[int, int]]] = []  # initializers met while walking nodes
    structure = 0
    for field, wire, value in walker:
        if field == _GRAPH_NODE and wire == _LEN:
            structure += value[1]
            if structure > tensors.MAX_HEADER_BYTES:
                raise KernelSpecError(
                    f"{printable(name)}: its graph's nodes take more than "
                    f"{tensors.MAX_HEADER_BYTES // 2**20} MiB; not a model this reader takes"
                )
            nodes.append(_node(fh, value[0], value[1], name))
        elif field == _GRAPH_INITIALIZER and wire == _LEN:
            pending.append(value)  # type: ignore[arg-type]
            break
    constants = {
        out: n.tensors["value"]
        for n in nodes
        if n.op == "Constant"
        for out in n.outputs
        if "value" in n.tensors
    }
    identity = {
        n.outputs[0]: n.inputs[0] for n in nodes if n.op == "Identity" and n.inputs and n.outputs
    }
    state = {"walker": walker, "pending": pending}

    def initializer(wanted: str) -> _Tensor | None:
        """The initializer `wanted`, walking the graph's initializers only as far as needed."""
        if wanted in initializers:
            return initializers[wanted]
        while True:
            if state["pending"]:
                span = state["pending"].pop()
            else:
                span = None
                for field, wire, value in state["walker"]:
                    if field == _GRAPH_INITIALIZER and wire == _LEN:
                        span = value
                        break
                if span is None:
                    return None
            t = _tensor(fh, span[0], span[1], name)
            initializers[t.name] = t
            if t.name == wanted:
                return t

    def weight(input_name: str) -> _Tensor | None:
        seen = 0
        while input_name in identity and seen < 64:
            input_name, seen = identity[input_name], seen + 1
        if input_name in constants:
            return constants[input_name]
        return initializer(input_name)

    entries = []
    for index, node in enumerate(nodes):
        if node.op != "Conv" or len(node.inputs) < 2:
            continue
        w_name = node.inputs[1]
        b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        entries.append(_entry(fh, name, node, index, w_name, b_name, weight, open_sibling))
    if not entries:
        raise tensors.NoConvolution(
            f"{printable(name)} has no Conv node (no 2-D convolution); give a CNN's ONNX file"
        )
    return entries


def _entry(fh, name, node, index, w_name, b_name, weight, open_sibling):
    lazy: dict[str, _Tensor | None] = {}

    def tensor_of(what: str) -> _Tensor:
        if what not in lazy:
            lazy[what] = weight(what)
        t = lazy[what]
        if t is None:
            raise KernelSpecError(
                f"{printable(name)}: the weights {printable(what, 80)!r} of Conv node "
                f"{printable(node.name, 80)!r} are computed in the graph, not stored; "
                "export the model with its weights as initializers"
            )
        return t

    def read() -> np.ndarray:
        return _array(fh, name, tensor_of(w_name), open_sibling)

    def bias() -> np.ndarray | None:
        if b_name is None:
            return None
        b = _array(fh, name, tensor_of(b_name), open_sibling).reshape(-1)
        return b

    shape = _conv_shape(node, name)
    geometry = _geometry(node, shape, name)
    aliases = (node.name,) if node.name and node.name != w_name else ()
    return TensorEntry(w_name, shape, "f", read, geometry=geometry, aliases=aliases, bias=bias)


def _conv_shape(node: _Node, name: str) -> tuple[int, ...]:
    """The weights' shape: from ``kernel_shape`` and, lazily, the tensor itself.

    The filter and channel counts are not attributes: -1 stands for them until the tensor's
    description is read (entries report a 4-D shape so that the first Conv is chosen).
    """
    kernel = node.ints.get("kernel_shape")
    if kernel is not None and len(kernel) != 2:
        return (-1, -1, *kernel)  # a 1-D or 3-D convolution: not 4-D weights
    return (0, 0, *(kernel or (0, 0)))


def _geometry(node: _Node, shape: tuple[int, ...], name: str) -> dict[str, Any]:
    def pair(key: str, default: int) -> tuple[int, int]:
        values = node.ints.get(key) or [default, default]
        if len(values) < 2 or min(values) < 0:
            raise _damaged(name, f"Conv node {node.name!r} has {key} {values}")
        return int(values[0]), int(values[1])

    stride, dilation = pair("strides", 1), pair("dilations", 1)
    pads = node.ints.get("pads") or [0, 0, 0, 0]
    auto = node.strings.get("auto_pad", "NOTSET")
    padding: tuple[int, int] = (int(pads[0]), int(pads[1])) if len(pads) >= 2 else (0, 0)
    geometry: dict[str, Any] = {
        "stride": stride,
        "dilation": dilation,
        "groups": int((node.ints.get("group") or [1])[0]),
    }
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        geometry["padding_mode"] = "same"
        kernel = shape[2:] if len(shape) == 4 and min(shape[2:]) > 0 else (1, 1)
        padding = ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)
    elif auto == "VALID":
        padding = (0, 0)
    elif len(pads) == 4 and (pads[0], pads[1]) != (pads[2], pads[3]):
        geometry["padding_end"] = (int(pads[2]), int(pads[3]))
    geometry["padding"] = padding
    return geometry


def _array(
    fh: BinaryIO, name: str, t: _Tensor, open_sibling: Callable[[str], BinaryIO] | None
) -> np.ndarray:
    code = tensors.ONNX_DTYPES.get(t.dtype)
    what = f"{printable(name)} [{printable(t.name, 80)}]"
    if code is None or code == "b1":
        raise KernelSpecError(f"{what} has ONNX data type {t.dtype}; give real-valued weights")
    shape = tuple(int(d) for d in t.dims)
    check_tensor_size(shape, what)
    stride = tuple(int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(len(shape)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * tensors.itemsize(code)
    if t.external:
        location = t.external.get("location", "")
        if open_sibling is None or not location:
            raise KernelSpecError(
                f"{what} is stored in an external data file ({printable(location, 80)!r}) "
                "that cannot be opened here; keep it next to the model file"
            )
        offset = int(t.external.get("offset", "0") or 0)
        length = int(t.external.get("length", str(nbytes)) or nbytes)
        if length != nbytes:
            raise _damaged(name, f"{t.name}: external data of {length} bytes for {nbytes}")
        with open_sibling(location) as ext:
            ext.seek(0, 2)
            end = ext.tell()
            stop = min(end, offset + length)
            return _as_float(formats._read_array(ext, name, offset, stop, code, shape, stride))
    span = t.raw or (t.floats if code == "f4" else None)
    if span is None:
        raise KernelSpecError(
            f"{what} stores its numbers in a typed field this reader does not take; "
            "export with raw tensor data (the default of torch.onnx.export)"
        )
    if span[1] != nbytes:
        raise _damaged(name, f"{t.name}: {span[1]} bytes of data for shape {list(shape)}")
    return _as_float(
        formats._read_array(fh, name, span[0], span[0] + span[1], code, shape, stride)
    )


def _as_float(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)
