"""Crafted weight files: each ends quickly with one line that says what to do.

Hangs, decompression bombs, oversize declarations, exotic tensors: the files are written by
the tests themselves (real ``torch.save`` zips with a rewritten pickle or zip directory).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources import checkpoints
from napari_kernelspec.sources.checkpoints import (
    MAX_KERNEL_SIDE,
    MAX_TENSOR_ELEMENTS,
    read_kernels,
    select_entry,
    state_dict_entries,
    torch_load,
)
from napari_kernelspec.sources.loading import load_kernels

CONV = np.random.default_rng(5).standard_normal((4, 3, 5, 5)).astype(np.float32)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "\x1b" not in message
    return message


def _torch_zip(path: Path, pickle_bytes: bytes | None = None, **tensors: np.ndarray) -> Path:
    """A real torch.save zip of `tensors`; its data.pkl optionally replaced."""
    import torch

    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    torch.save(state, path)
    if pickle_bytes is not None:
        _rewrite(path, lambda name, data: pickle_bytes if name.endswith("data.pkl") else data)
    return path


def _rewrite(path: Path, change, compress=lambda name: False) -> None:
    with zipfile.ZipFile(path) as zin:
        records = [(info, zin.read(info)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w") as zout:
        for info, data in records:
            info.compress_type = (
                zipfile.ZIP_DEFLATED if compress(info.filename) else zipfile.ZIP_STORED
            )
            zout.writestr(info, change(info.filename, data))


def _conv_pickle(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        return zf.read(name)


def _with_junk(tmp_path: Path, name: str, junk: bytes) -> Path:
    """A torch zip holding CONV under "conv.weight" and a crafted object under "junk"."""
    path = _torch_zip(tmp_path / name, **{"conv.weight": CONV})
    original = _conv_pickle(path)
    # original: PROTO 2, EMPTY_DICT, BINPUT 0, MARK?, ... ; insert the junk key/value pair right
    # after the dict's memo put: "}q\x00" -> "}q\x00" + key + value + SETITEM
    head = b"\x80\x02}q\x00"
    assert original.startswith(head)
    crafted = head + b"X\x04\x00\x00\x00junk" + junk + b"s" + original[len(head) :]
    _rewrite(path, lambda n, d: crafted if n.endswith("data.pkl") else d)
    return path


def _dag(levels: int) -> bytes:
    """61 lists that each hold the previous one twice: 2**61 paths, 61 objects."""
    # an outer list of all levels (torch's weights-only unpickler has no POP)
    out = b"](]q\x01"  # outer list, MARK, level 0 at memo 1
    for i in range(2, levels + 2):
        out += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
    return out + b"e"


def _deep(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)


SELF = b"]q\x70h\x70a"  # a list that contains itself


def test_dag_of_shared_lists_loads_the_conv_quickly(tmp_path):
    path = _with_junk(tmp_path, "dag.pth", _dag(61))
    assert path.stat().st_size < 8000
    # In a child process: the old loader walked 2**61 paths and never returned.
    code = (
        "import sys, numpy as np; from napari_kernelspec.sources.loading import load_kernels;"
        f"b = load_kernels({str(path)!r}); print(b.layer, float(np.abs(b.weights).sum()))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=90, check=False
    )
    assert proc.returncode == 0, proc.stderr
    layer, total = proc.stdout.split()
    assert layer == "conv.weight"
    assert float(total) == pytest.approx(float(np.abs(CONV).sum()), rel=1e-5)


def test_self_referential_checkpoint(tmp_path):
    bank = load_kernels(_with_junk(tmp_path, "self.pth", SELF))
    np.testing.assert_array_equal(bank.weights, CONV)


def test_deeply_nested_checkpoint_is_one_line(tmp_path):
    path = _with_junk(tmp_path, "deep.pth", _deep(100_000))
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path)
    assert "MAX_DEPTH" in _one_line(err) and "deep.pth" in str(err.value)


def test_self_referential_pickle_without_tensors(tmp_path):
    path = _torch_zip(tmp_path / "loop.pt", b"\x80\x02}q\x00X\x01\x00\x00\x00s" + SELF + b"s.")
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path)
    assert "no 4-D floating tensor" in _one_line(err)


def test_reusable_on_a_file_object(tmp_path):
    """A remote reader hands a seekable file object and reads only shapes (meta device)."""
    path = _torch_zip(tmp_path / "net.pth", **{"a.weight": CONV, "a.bias": CONV[:, 0, 0, 0]})
    with open(path, "rb") as fh:
        obj = torch_load(fh, name="net.pth", map_location="meta")
    entries = state_dict_entries(obj, "net.pth")
    entry = select_entry(entries, "a", "net.pth")
    assert entry.key == "a.weight" and entry.shape == CONV.shape and entry.tensor.is_meta
    with pytest.raises(KernelSpecError, match="meta tensor"):
        entry.read()


# --- decompression bombs and oversize declarations -----------------------------------------


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def test_npz_side_array_is_never_inflated(tmp_path):
    """A small conv next to a 256 MiB deflated side array: only the conv is read."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("side.npy", "w", force_zip64=True) as fh:
            fh.write(_npy_header((2**26,)))
            chunk = bytes(2**24)
            for _ in range(16):
                fh.write(chunk)
        with zf.open("conv.npy", "w") as fh:
            fh.write(_npy_header(CONV.shape) + CONV.tobytes())
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        bank = load_kernels(path, layer="conv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(bank.weights, CONV)
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_npz_side_array_declaring_8_gib(tmp_path):
    """The side member declares 8 GiB but holds a few bytes: its data is never touched."""
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("conv.npy", _npy_header(CONV.shape) + CONV.tobytes())
        zf.writestr("side.npy", _npy_header((2**30,), "<f8") + b"\x00" * 64)
    bank = load_kernels(path)
    np.testing.assert_array_equal(bank.weights, CONV)
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path, layer="side")
    assert "4-D" in _one_line(err)


def _lie_about_size(path: Path, record_suffix: str, size: int) -> None:
    """Patch the zip directory so that a record declares `size` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        name = bytes(data[pos + 46 : pos + 46 + n]).decode()
        if name.endswith(record_suffix):
            struct.pack_into("<I", data, pos + 24, size)
        pos = data.find(b"PK\x01\x02", pos + 46 + n + m + k)
    path.write_bytes(bytes(data))


def test_pth_with_a_deflated_4_gib_storage_is_refused(tmp_path):
    path = _torch_zip(
        tmp_path / "bomb.pth", **{"conv.weight": CONV, "side": np.zeros(1000, np.float32)}
    )
    _rewrite(path, lambda n, d: d, compress=lambda n: n.endswith("/data/1"))
    _lie_about_size(path, "/data/1", 0xFFFFFFF0)
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path)
    message = _one_line(err)
    assert "MAX_TENSOR_ELEMENTS" in message and "bomb.pth" in message
    assert "damaged" not in message


def test_pth_with_compressed_records_reads_the_true_numbers(tmp_path):
    """A re-zipped (deflated) checkpoint cannot be memory-mapped: it is inflated instead."""
    path = _torch_zip(tmp_path / "rezipped.pth", **{"conv.weight": CONV})
    _rewrite(path, lambda n, d: d, compress=lambda n: True)
    np.testing.assert_array_equal(load_kernels(path).weights, CONV)


def _header_only_npy(path: Path, shape: tuple[int, ...]) -> Path:
    path.write_bytes(_npy_header(shape) + b"\x00" * 256)
    return path


@pytest.mark.parametrize("shape", [(64, 3, 1, 1000), (8, 3, 1, 20000), (8, 3, 65, 65)])
def test_kernel_side_limit(tmp_path, shape):
    # really written (except the largest), so the old loader would have read it all
    path = tmp_path / "bank.npy"
    if np.prod(shape) < 2**20:
        np.save(path, np.ones(shape, np.float32))
    else:
        _header_only_npy(path, shape)
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path)
    message = _one_line(err)
    assert "MAX_KERNEL_SIDE" in message and str(MAX_KERNEL_SIDE) in message


def test_kernel_side_limit_keeps_real_sizes(tmp_path):
    """ViT-B/16 (16x16), lpips lin (1x1) and a 51x51 large-kernel layer are accepted."""
    for shape in [(768, 3, 16, 16), (1, 64, 1, 1), (4, 3, 51, 51)]:
        path = tmp_path / f"{shape[2]}.npy"
        np.save(path, np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        assert load_kernels(path).weights.shape == shape


def test_element_limit_before_allocating(tmp_path):
    path = _header_only_npy(tmp_path / "wide.npy", (4096, 4096, 3, 3))
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path)
    message = _one_line(err)
    assert "MAX_TENSOR_ELEMENTS" in message and f"{MAX_TENSOR_ELEMENTS:,}" in message


def test_memory_error_is_not_called_damage(tmp_path, monkeypatch):
    np.save(tmp_path / "w.npy", CONV)
    np.savez(tmp_path / "w.npz", conv=CONV)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(np.lib.format, "read_array", no_memory)
    for name in ("w.npy", "w.npz"):
        with pytest.raises(KernelSpecError) as err:
            read_kernels(tmp_path / name)
        message = _one_line(err)
        assert "not enough memory" in message and "damaged" not in message


def test_memory_error_in_torch_is_not_called_damage(tmp_path, monkeypatch):
    import torch

    path = _torch_zip(tmp_path / "w.pth", **{"conv.weight": CONV})

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(torch, "load", no_memory)
    with pytest.raises(KernelSpecError) as err:
        read_kernels(path)
    assert "not enough memory" in _one_line(err) and "damaged" not in str(err.value)


def _safetensors(path: Path, header: dict, data: bytes) -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_safetensors_declared_sizes_must_agree(tmp_path):
    data = CONV.tobytes()
    path = _safetensors(
        tmp_path / "short.safetensors",
        {"w": {"dtype": "F32", "shape": [64, 3, 7, 7], "data_offsets": [0, len(data)]}},
        data,
    )
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path)
    assert "truncated or damaged" in _one_line(err) and "[64, 3, 7, 7]" in str(err.value)


def test_safetensors_oversize_kernel_refused(tmp_path):
    n = 8 * 3 * 1 * 100
    path = _safetensors(
        tmp_path / "wide.safetensors",
        {"w": {"dtype": "F32", "shape": [8, 3, 1, 100], "data_offsets": [0, 4 * n]}},
        np.ones(n, np.float32).tobytes(),
    )
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path)
    assert "MAX_KERNEL_SIDE" in _one_line(err)


# --- one rule for integer weights ----------------------------------------------------------

INT_CONV = np.array(
    [[[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]], [[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]]], np.int8
)  # Sobel x and y


def _int_files(tmp_path: Path) -> dict[str, Path]:
    import torch
    from safetensors.numpy import save_file

    out = {"npy": tmp_path / "sobel.npy", "npz": tmp_path / "sobel.npz"}
    np.save(out["npy"], INT_CONV)
    np.savez(out["npz"], sobel=INT_CONV)
    out["safetensors"] = tmp_path / "sobel.safetensors"
    save_file({"sobel": INT_CONV}, out["safetensors"])
    out["pth"] = tmp_path / "sobel.pth"
    torch.save({"sobel": torch.from_numpy(INT_CONV)}, out["pth"])
    return out


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors", "pth"])
def test_integer_weights_accepted_in_every_format(tmp_path, fmt):
    bank = load_kernels(_int_files(tmp_path)[fmt])
    assert bank.weights.dtype == np.float32
    np.testing.assert_array_equal(bank.weights, INT_CONV.astype(np.float32))
    assert bank.provenance["integer_weights"] is True


def test_floating_tensor_preferred_over_integer(tmp_path):
    np.savez(tmp_path / "mixed.npz", ints=INT_CONV, conv=CONV)
    assert load_kernels(tmp_path / "mixed.npz").layer == "conv"


# --- tensors torch can hold but not hand over ----------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch deprecates quantized tensors
def test_sparse_meta_quantized_tensors_are_one_line(tmp_path):
    import torch

    cases = {
        "sparse": (torch.from_numpy(CONV).to_sparse(), "sparse tensor"),
        "meta": (torch.empty(4, 3, 5, 5, device="meta"), "meta tensor"),
        "quantized": (
            torch.quantize_per_tensor(torch.from_numpy(CONV), 0.1, 0, torch.qint8),
            "dequantize",
        ),
    }
    for name, (tensor, expected) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save({"conv.weight": tensor}, path)
        with pytest.raises(KernelSpecError) as err:
            load_kernels(path, layer="conv")
        assert expected in _one_line(err), name


def test_file_name_too_long(tmp_path):
    name = "w" * 300 + ".pth"
    for source in (str(tmp_path / name), tmp_path / name):
        with pytest.raises(KernelSpecError) as err:
            load_kernels(source)
        assert "too long" in _one_line(err)


def test_names_from_files_are_printable(tmp_path):
    np.savez(tmp_path / "evil.npz", **{"conv\n\x1b[2Jkernelspec: error: fake": CONV[:, :, :, :1]})
    with pytest.raises(KernelSpecError) as err:
        load_kernels(tmp_path / "evil.npz", layer="nope")
    assert "\\x1b" in _one_line(err)


def test_limits_are_module_constants():
    # README documents these numbers; keep them in step.
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in ("MAX_KERNEL_SIDE", "MAX_TENSOR_ELEMENTS", "MAX_PICKLE_BYTES", "MAX_DEPTH"):
        assert name in readme
    assert f"{checkpoints.MAX_KERNEL_SIDE}" in readme
