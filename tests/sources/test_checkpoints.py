"""load_kernels on files: torch checkpoints, safetensors, npy/npz, and every bad input."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources.checkpoints import read_kernels
from napari_kernelspec.sources.loading import load_kernels

RNG = np.random.default_rng(0)
CONV1 = RNG.standard_normal((8, 3, 5, 5)).astype(np.float32)
CONV2 = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32)


class _Payload:
    """Unpickling this would run code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _state():
    import torch

    return {
        "bn.running_mean": torch.zeros(8),
        "embed.weight": torch.ones(10, 4),
        "conv1.weight": torch.from_numpy(CONV1),
        "conv1.bias": torch.zeros(8),
        "conv2.weight": torch.from_numpy(CONV2),
    }


def _assert_file_bank(bank, path: Path, key: str, source: str) -> None:
    assert bank.model == path.name and bank.display_name == path.name
    assert bank.layer == key
    assert bank.source == source
    assert bank.stride == (1, 1) and bank.padding == (0, 0)
    assert bank.provenance["stride_known"] is False
    assert bank.provenance["file"] == str(path.resolve())
    assert bank.provenance["key"] == key


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".ckpt"])
def test_torch_state_dict(tmp_path, suffix):
    import torch

    path = tmp_path / f"net{suffix}"
    torch.save(_state(), path)
    bank = load_kernels(path, weights="pretrained")  # weights is ignored for files
    np.testing.assert_array_equal(bank.weights, CONV1)
    _assert_file_bank(bank, path, "conv1.weight", "checkpoint")
    assert bank.is_trained
    # str paths work too, and layer= takes the key with or without ".weight"
    for layer in ("conv2", "conv2.weight"):
        other = load_kernels(str(path), layer=layer)
        np.testing.assert_array_equal(other.weights, CONV2)
        assert other.layer == "conv2.weight"


def test_training_checkpoint_nested(tmp_path):
    import torch

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3)
    )
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()  # optimiser state now holds 4-D moment tensors: they must not be picked
    ckpt = {
        "epoch": 3,
        "optimizer_states": [opt.state_dict()],
        "hyper_parameters": {"lr": 1e-3, "name": "x"},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
    }
    path = tmp_path / "run.ckpt"
    torch.save(ckpt, path)
    bank = load_kernels(path)
    np.testing.assert_array_equal(bank.weights, model[0].weight.detach().numpy())
    assert bank.layer == "model.0.weight"
    assert load_kernels(path, layer="model.2").weights.shape == (2, 4, 3, 3)

    path2 = tmp_path / "other.pth"
    torch.save({"model": {"module.conv.weight": torch.ones(2, 1, 3, 3)}, "optimizer": {}}, path2)
    bank2 = load_kernels(path2, layer="conv")  # DataParallel prefix tolerated
    assert bank2.layer == "module.conv.weight"


def test_legacy_torch_format_and_bare_tensor(tmp_path):
    import torch

    legacy = tmp_path / "legacy.pth"
    torch.save(_state(), legacy, _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(load_kernels(legacy).weights, CONV1)

    bare = tmp_path / "bare.pt"
    torch.save(torch.from_numpy(CONV2).half(), bare)
    bank = load_kernels(bare)
    assert bank.weights.dtype == np.float32
    np.testing.assert_allclose(bank.weights, CONV2, atol=2e-3)


def test_safetensors_first_in_data_order(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    big = RNG.standard_normal((4, 2, 3, 3)).astype(np.float64)
    # safetensors lays data out by dtype and name, not by dict order: the f64 tensor is first
    save_file({"a.weight": CONV1, "b.bias": np.zeros(3, np.float32), "z.weight": big}, path)
    with open(path, "rb") as fh:
        import json
        import struct

        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    first = min(
        (k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0]
    )
    assert first == "z.weight"
    bank = load_kernels(path)
    assert bank.layer == "z.weight"
    np.testing.assert_allclose(bank.weights, big.astype(np.float32))
    _assert_file_bank(bank, path, "z.weight", "checkpoint")
    np.testing.assert_array_equal(load_kernels(path, layer="a").weights, CONV1)


def test_npy_and_npz(tmp_path):
    npy = tmp_path / "filters.npy"
    np.save(npy, CONV1)
    bank = load_kernels(npy)
    np.testing.assert_array_equal(bank.weights, CONV1)
    _assert_file_bank(bank, npy, "filters.npy", "array")

    npz = tmp_path / "layers.npz"
    np.savez(npz, labels=np.arange(3), **{"conv1.weight": CONV1, "conv2.weight": CONV2})
    bank = load_kernels(npz)
    _assert_file_bank(bank, npz, "conv1.weight", "array")
    np.testing.assert_array_equal(load_kernels(npz, layer="conv2").weights, CONV2)

    default_names = tmp_path / "plain.npz"
    np.savez(default_names, CONV2)
    assert load_kernels(default_names).layer == "arr_0"


def test_malicious_pickle_refused(tmp_path):
    import torch

    marker = tmp_path / "PWNED"
    for name in ("evil.pth", "evil.ckpt"):
        path = tmp_path / name
        torch.save({"conv.weight": torch.ones(2, 1, 3, 3), "x": _Payload(marker)}, path)
        with pytest.raises(KernelSpecError) as err:
            load_kernels(path)
        assert f"refusing to unpickle {path}" in str(err.value)
        assert "needs code execution" in str(err.value)
        assert "state_dict()" in str(err.value)
        assert not marker.exists()
    # a plain pickle file under a torch extension
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"x": _Payload(marker)}))
    with pytest.raises(KernelSpecError, match="refusing to unpickle"):
        load_kernels(path)
    assert not marker.exists()


def test_object_arrays_refused(tmp_path):
    marker = tmp_path / "PWNED"
    npy = tmp_path / "obj.npy"
    np.save(npy, np.array([_Payload(marker), 1], dtype=object), allow_pickle=True)
    with pytest.raises(KernelSpecError, match="refusing to unpickle"):
        load_kernels(npy)
    npz = tmp_path / "obj.npz"
    np.savez(npz, a=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(KernelSpecError, match="refusing to unpickle"):
        load_kernels(npz)
    assert not marker.exists()


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _bad_files(tmp_path: Path):
    import torch
    from safetensors.numpy import save_file

    out = {}
    p = tmp_path / "empty.pth"
    p.write_bytes(b"")
    out["empty"] = (p, "is empty")
    p = tmp_path / "trunc.pth"
    torch.save(_state(), p)
    out["truncated-torch"] = (_truncated(p), "truncated or damaged")
    p = tmp_path / "trunc.safetensors"
    save_file({"w": CONV1}, p)
    out["truncated-safetensors"] = (_truncated(p), "truncated or damaged")
    p = tmp_path / "trunc.npz"
    np.savez(p, w=CONV1)
    out["truncated-npz"] = (_truncated(p), "truncated or damaged")
    p = tmp_path / "trunc.npy"
    np.save(p, CONV1)
    out["truncated-npy"] = (_truncated(p), "truncated or damaged")
    p = tmp_path / "garbage.pt"
    p.write_bytes(b"\x00\x01garbage" * 10)
    out["garbage"] = (p, "truncated or damaged")
    p = tmp_path / "no4d.pth"
    torch.save({"fc.weight": torch.ones(3, 4), "fc.bias": torch.ones(3)}, p)
    out["no-4d"] = (p, "no 4-D floating tensor")
    p = tmp_path / "bools.npz"
    np.savez(p, w=np.ones((2, 1, 3, 3), dtype=bool))
    out["no-numbers"] = (p, "no 4-D floating tensor")
    p = tmp_path / "flat.npy"
    np.save(p, np.ones((3, 3), np.float32))
    out["npy-2d"] = (p, "no 4-D floating tensor")
    p = tmp_path / "weights.txt"
    p.write_bytes(b"x")
    out["unsupported"] = (p, "weights.txt is not a checkpoint or model file (it starts with 78)")
    out["missing"] = (tmp_path / "nope.pth", "no such file")
    out["missing-dir"] = (tmp_path / "sub" / "x", "no such file")
    out["folder"] = (tmp_path, "is a folder")
    nan = CONV1.copy()
    nan[2, 0, 0, 0] = np.nan
    p = tmp_path / "nan.npy"
    np.save(p, nan)
    out["nan"] = (p, "NaN or Inf")
    zero = CONV1.copy()
    zero[5] = 0
    p = tmp_path / "zero.pth"
    torch.save({"conv.weight": torch.from_numpy(zero)}, p)
    out["all-zero"] = (p, "all-zero filter")
    p = tmp_path / "inf.safetensors"
    inf = CONV1.copy()
    inf[0, 0, 0, 0] = np.inf
    save_file({"w": inf}, p)
    out["inf"] = (p, "NaN or Inf")
    p = tmp_path / "list.pth"
    torch.save([1, 2, 3], p)
    out["not-a-dict"] = (p, "not a state dict")
    return out


BAD = [
    "empty",
    "truncated-torch",
    "truncated-safetensors",
    "truncated-npz",
    "truncated-npy",
    "garbage",
    "no-4d",
    "no-numbers",
    "npy-2d",
    "unsupported",
    "missing",
    "missing-dir",
    "folder",
    "nan",
    "all-zero",
    "inf",
    "not-a-dict",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_files(tmp_path, case):
    path, expected = _bad_files(tmp_path)[case]
    for source in (path, str(path)):
        with pytest.raises(KernelSpecError) as err:
            load_kernels(source)
        message = str(err.value)
        assert expected in message, message
        assert "\n" not in message


@pytest.mark.parametrize(
    ("layer", "expected"),
    [("conv3", "no layer 'conv3'"), ("conv1.bias", "not the 4-D"), ("embed", "not the 4-D")],
)
def test_bad_layer_in_file(tmp_path, layer, expected):
    import torch

    path = tmp_path / "net.pth"
    torch.save(_state(), path)
    with pytest.raises(KernelSpecError) as err:
        load_kernels(path, layer=layer)
    assert expected in str(err.value)
    if layer == "conv3":
        assert "conv1.weight" in str(err.value) and "conv2.weight" in str(err.value)


def test_layer_for_npy_is_an_error(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, CONV1)
    with pytest.raises(KernelSpecError, match="single array"):
        load_kernels(path, layer="conv1")


def test_read_kernels_direct(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, w=CONV2)
    found = read_kernels(path)
    assert found.key == "w" and found.source == "array"
    assert found.provenance["format"] == "npz"
    np.testing.assert_array_equal(found.weights, CONV2)
