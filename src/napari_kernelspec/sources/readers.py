"""Which reader a weights file needs, from its first bytes, and the reading itself.

The format is recognised from the first bytes, never from the file name (`detect`), and the
file handed to its reader (`read_entries`): torch zip, legacy and safetensors files and shard
indexes to `formats`, ONNX to `onnx_format`, Keras and TensorFlow.js to `keras_format`.
Local files (`checkpoints`) and remote ones (`remote`) both come through here.

========================  =========================================================
first bytes               format
========================  =========================================================
``PK\\x03\\x04``            zip: torch checkpoint (since torch 1.6), ``.keras``, ``.npz``
``\\x80\\x02\\x8a\\x0a``       legacy pickle-stream checkpoint (before torch 1.6)
``ustar`` at byte 257     the old tar checkpoint format: refused
8-byte length, ``{``      safetensors
``{``                     a sharded checkpoint's index or a TensorFlow.js ``model.json``
``\\x89HDF``               Keras HDF5
``\\x93NUMPY``             numpy ``.npy``
(protobuf fields)         ONNX
========================  =========================================================
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from typing import BinaryIO

from ..base.errors import KernelSpecError
from . import formats
from .entries import TensorEntry

__all__ = ["detect", "read_entries"]


# --- format detection ----------------------------------------------------------------------


def detect(head: bytes) -> str:
    """The format of a file from its first bytes.

    Parameters
    ----------
    head : bytes
        The first bytes of the file (512 or more for the tar test; fewer is fine otherwise).

    Returns
    -------
    {"zip", "legacy", "tar", "safetensors", "index", "hdf5", "npy", "onnx", "unknown"}
        ``"index"`` is any JSON object (a shard index or a TensorFlow.js ``model.json``);
        ``"zip"`` a torch checkpoint, a Keras ``.keras`` file or an ``.npz``.
    """
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x80\x02\x8a\x0a"):
        return "legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if n >= 2:
            return "safetensors"
    if head.lstrip()[:1] == b"{":
        return "index"
    from .onnx_format import is_onnx

    if is_onnx(head):
        return "onnx"
    return "unknown"


# --- dispatch ------------------------------------------------------------------------------


def read_entries(
    fh: BinaryIO,
    name: str,
    size: int,
    open_sibling: Callable[[str], BinaryIO] | None = None,
) -> tuple[str, list[TensorEntry] | formats.Sharded]:
    """The format and tensors (or shard index) of a weights file, local or remote alike.

    Parameters
    ----------
    fh : seekable binary file
    name : str
        How to name the file in messages (a file name or URL).
    size : int
        The file's size in bytes.
    open_sibling : callable, optional
        ``open_sibling(relative_path) -> binary file``: files next to this one (ONNX external
        data, TensorFlow.js weight shards).

    Returns
    -------
    (format, entries or Sharded)
        format is ``"torch-zip"``, ``"torch-legacy"``, ``"safetensors"``, ``"index"``,
        ``"onnx"``, ``"keras"``, ``"keras-h5"``, ``"tfjs"``, ``"npy"`` or ``"npz"``.

    Raises
    ------
    KernelSpecError
        For a tar-format or unknown file, a refused pickle or a damaged file.
    """
    fh.seek(0)
    head = fh.read(512)
    kind = detect(head)
    if kind == "zip":
        return _zip_kind(fh, name)
    if kind == "legacy":
        return "torch-legacy", formats.legacy_entries(fh, name, size)
    if kind == "safetensors":
        return "safetensors", formats.safetensors_entries(fh, name, size)
    if kind == "index":
        document = formats._json_header(fh, name, 0, size)
        from . import keras_format

        if keras_format.is_tfjs(document):
            return "tfjs", keras_format.tfjs_entries(document, name, open_sibling)
        return "index", formats._index(document, name)
    if kind == "onnx":
        from .onnx_format import onnx_entries

        return "onnx", onnx_entries(fh, name, size, open_sibling)
    if kind == "hdf5":
        from .keras_format import h5_entries

        return "keras-h5", h5_entries(fh, name)
    if kind == "npy":
        return "npy", [formats._npy_entry(fh, name, size)]
    if kind == "tar":
        raise KernelSpecError(
            f"{name} is in torch's old tar checkpoint format, which is not supported; load "
            "it with an old torch and save model.state_dict() again"
        )
    shown = head[:8].hex(" ") if head else "nothing"
    raise KernelSpecError(
        f"{name} is not a checkpoint or model file (it starts with {shown}); give a torch "
        ".pth/.pt/.bin, .safetensors, index.json, .onnx, Keras .keras/.h5 or TensorFlow.js "
        "model.json file"
    )


def _zip_kind(fh: BinaryIO, name: str) -> tuple[str, list[TensorEntry]]:
    """A zip file: a torch checkpoint, a Keras 3 ``.keras`` file or a numpy ``.npz``."""
    try:
        names = set(zipfile.ZipFile(fh).namelist())
    except KernelSpecError:
        raise
    except Exception as exc:
        raise formats._damaged(name, exc) from exc
    if "config.json" in names and "model.weights.h5" in names:
        from .keras_format import keras_zip_entries

        return "keras", keras_zip_entries(fh, name)
    if names and all(n.endswith(".npy") for n in names):
        raise KernelSpecError(
            f"{name} is a numpy .npz archive; give it the .npz extension to read its arrays"
        )
    return "torch-zip", formats.zip_entries(fh, name)
