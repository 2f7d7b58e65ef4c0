"""What every weights reader shares: the dtype tables, the limits and the typed errors.

Local files (`checkpoints`) and remote byte ranges (`formats`, `remote`) use the same
tables and limits, so a file is refused (or read) the same way wherever it comes from.
"""

from __future__ import annotations

from ..base.errors import KernelSpecError

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_TENSOR_BYTES",
    "ONNX_DTYPES",
    "SAFETENSORS_DTYPES",
    "NoConvolution",
    "NoSuchLayer",
    "itemsize",
    "kind_of",
]

#: The most bytes of structure read before a tensor: a zip directory and ``data.pkl``, the
#: leading pickles of a legacy file, a safetensors header, a shard index, an ONNX graph's
#: nodes. The largest real ones are a few MB (the ``data.pkl`` of a 7B-parameter language
#: model shard is about 1 MB; ResNet50's ONNX nodes are 40 kB).
MAX_HEADER_BYTES = 64 * 2**20

#: The most bytes one tensor may span: 2**26 float64 numbers (`entries.MAX_TENSOR_ELEMENTS`
#: of the widest dtype). A first convolution is a few MB at most (ViT-H/14: 3 MB).
MAX_TENSOR_BYTES = 512 * 2**20

#: safetensors dtype -> dtype code. Codes are numpy dtype strings, plus ``"bf16"``,
#: ``"f8e4m3"`` and ``"f8e5m2"`` (converted with torch), and ``"b1"`` (booleans: refused).
SAFETENSORS_DTYPES = {
    "F64": "f8",
    "F32": "f4",
    "F16": "f2",
    "BF16": "bf16",
    "F8_E4M3": "f8e4m3",
    "F8_E5M2": "f8e5m2",
    "I64": "i8",
    "I32": "i4",
    "I16": "i2",
    "I8": "i1",
    "U64": "u8",
    "U32": "u4",
    "U16": "u2",
    "U8": "u1",
    "BOOL": "b1",
}

#: ONNX ``TensorProto.DataType`` -> dtype code (the same codes as `SAFETENSORS_DTYPES`).
ONNX_DTYPES = {
    1: "f4",
    2: "u1",
    3: "i1",
    4: "u2",
    5: "i2",
    6: "i4",
    7: "i8",
    9: "b1",
    10: "f2",
    11: "f8",
    12: "u4",
    13: "u8",
    16: "bf16",
    17: "f8e4m3",
    19: "f8e5m2",
}

_SIZES = {"bf16": 2, "f8e4m3": 1, "f8e5m2": 1, "b1": 1}


def itemsize(code: str) -> int:
    """Bytes per element of a dtype code."""
    if code in _SIZES:
        return _SIZES[code]
    import numpy as np

    return np.dtype(code).itemsize


def kind_of(code: str | None) -> str:
    """``"f"`` floating, ``"i"`` integer, ``"o"`` anything else (booleans, unknown)."""
    if code is None or code == "b1":
        return "o"
    if code[0] in "iu":
        return "i"
    return "f" if code[0] == "f" or code == "bf16" else "o"


class NoConvolution(KernelSpecError):
    """A file (or shard) holds no 4-D numeric tensor: no convolution weights to analyse."""


class NoSuchLayer(KernelSpecError):
    """A layer name that the file does not hold (the message lists some it does)."""
