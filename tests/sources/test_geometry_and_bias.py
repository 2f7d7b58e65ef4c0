"""A file's bias is read next to its weights; a file's geometry can be given by the user."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources.loading import load_kernels

RNG = np.random.default_rng(11)
W = RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)
B = RNG.standard_normal(6).astype(np.float32)


def _files(tmp_path):
    import torch
    from safetensors.numpy import save_file

    out = {}
    out["pth"] = tmp_path / "net.pth"
    torch.save(
        {
            "stem.conv.weight": torch.from_numpy(W),
            "stem.conv.bias": torch.from_numpy(B),
            "head.bias": torch.zeros(3),
        },
        out["pth"],
    )
    out["npz"] = tmp_path / "net.npz"
    np.savez(out["npz"], **{"stem.conv.weight": W, "stem.conv.bias": B})
    out["safetensors"] = tmp_path / "net.safetensors"
    save_file({"stem.conv.weight": W, "stem.conv.bias": B}, out["safetensors"])
    return out


@pytest.mark.parametrize("fmt", ["pth", "npz", "safetensors"])
def test_bias_from_the_state_dict(tmp_path, fmt):
    bank = load_kernels(_files(tmp_path)[fmt])
    assert bank.layer == "stem.conv.weight"
    np.testing.assert_array_equal(bank.weights, W)
    np.testing.assert_array_equal(bank.bias, B)


def test_no_bias_when_the_file_has_none(tmp_path):
    np.save(tmp_path / "w.npy", W)
    assert load_kernels(tmp_path / "w.npy").bias is None
    np.savez(tmp_path / "w.npz", **{"a.weight": W, "a.bias": np.ones(5, np.float32)})
    assert load_kernels(tmp_path / "w.npz").bias is None  # (5,) does not fit 6 filters


def test_geometry_for_files(tmp_path):
    np.save(tmp_path / "w.npy", W)
    plain = load_kernels(tmp_path / "w.npy")
    assert (plain.stride, plain.padding, plain.dilation) == ((1, 1), (0, 0), (1, 1))
    assert not plain.stride_known
    bank = load_kernels(tmp_path / "w.npy", stride=2, padding=(1, 2), dilation=3)
    assert (bank.stride, bank.padding, bank.dilation) == ((2, 2), (1, 2), (3, 3))
    assert bank.stride_known and bank.provenance["stride_known"] is True


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"stride": 0}, "stride must be a whole number >= 1"),
        ({"stride": (1, 2, 3)}, "stride must be"),
        ({"stride": "2"}, "stride must be"),
        ({"stride": True}, "stride must be"),
        ({"stride": 1.5}, "stride must be"),
        ({"padding": -1}, "padding must be a whole number >= 0"),
        ({"dilation": (0, 1)}, "dilation must be a whole number >= 1"),
    ],
)
def test_bad_geometry_is_one_line(tmp_path, kwargs, expected):
    np.save(tmp_path / "w.npy", W)
    with pytest.raises(KernelSpecError) as err:
        load_kernels(tmp_path / "w.npy", **kwargs)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_models_know_their_geometry(tmp_path):
    bank = load_kernels("alexnet", weights="random", stride=4, padding=2)
    assert bank.stride == (4, 4)
    with pytest.raises(KernelSpecError, match=r"has stride \[4, 4\] in its architecture"):
        load_kernels("alexnet", weights="random", stride=2)


def test_array_files_load_without_torch(tmp_path):
    """A file path is never looked up among torchvision's models (that import takes seconds)."""
    import subprocess
    import sys

    np.save(tmp_path / "w.npy", W)
    code = (
        "import sys; from napari_kernelspec.sources.loading import load_kernels;"
        f"b = load_kernels({str(tmp_path / 'w.npy')!r}, stride=2);"
        "print(b.weights.shape[0], b.stride[0], 'torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["6", "2", "False"]
