"""`kernelspec explain`: the npz and PNG it writes, and one line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def layer_file(tmp_path, gabor):
    weights = np.asarray(
        [[gabor(7, f, t, phase=np.pi / 2)] * 3 for f, t in [(0.2, 0), (0.25, 60), (0.3, 120)]],
        dtype=np.float32,
    )
    path = tmp_path / "conv.npy"
    np.save(path, weights)
    return path


def test_maximize_writes_images_filters_meta_and_png(cli, tmp_path, layer_file):
    out, png = tmp_path / "r.npz", tmp_path / "r.png"
    code, stdout, err = cli(
        "explain", str(layer_file), "--filters", "0,2", "--steps", "4", "--size", "24",
        "--seed", "1", "--out", str(out), "--png", str(png),
    )  # fmt: skip
    assert code == 0, err
    with np.load(out, allow_pickle=False) as data:
        assert data["images"].shape == (2, 24, 24, 3) and data["images"].dtype == np.float32
        assert data["filters"].tolist() == [0, 2]
        meta = json.loads(str(data["meta"]))
        assert "attributions" not in data.files
    assert meta["method"] == "maximize" and meta["layer"] == "conv"
    assert meta["parameters"]["steps"] == 4 and meta["parameters"]["seed"] == 1
    assert meta["weights"] == "array"
    assert any("one-layer model" in c for c in meta["caveats"])
    with Image.open(png) as img:
        assert img.mode == "RGB" and img.size[0] >= 2 * 64
    assert str(out) in stdout


def test_guided_on_an_image_writes_attributions(cli, tmp_path, layer_file):
    rgb = (np.random.default_rng(0).uniform(0, 255, (20, 30, 3))).astype(np.uint8)
    image = tmp_path / "in.png"
    Image.fromarray(rgb).save(image)
    out = tmp_path / "g.npz"
    code, _, err = cli(
        "explain", str(layer_file), "--method", "guided", "--filters", "1",
        "--image", str(image), "--at", "3,4", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    with np.load(out, allow_pickle=False) as data:
        attr = data["attributions"]
        meta = json.loads(str(data["meta"]))
    assert attr.shape == (1, 3, 20, 30) and attr.dtype == np.float32
    nz = np.argwhere(np.abs(attr[0]).sum(0) > 0)
    assert nz.min(0).tolist() == [3, 4] and nz.max(0).tolist() == [9, 10]  # the 7x7 field
    assert meta["at"] == [3, 4] and meta["parameters"]["image_file"] == str(image)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--layer", "relu"],
            "'relu' is a ReLU, not a convolution of conv.npy; give one of: conv",
        ),
        (["--layer", "nope"], "'nope' is not a layer of "),
        (["--filters", "0-5"], "filter index 3 is out of range: conv has 3 filters (0..2)"),
        (
            ["--method", "occlusion"],
            "--method occlusion explains a filter on an image: give --image",
        ),
        (["--method", "guided", "--image", "missing.png"], "no such image"),
        (["--at", "1"], "--at must be Y,X"),
        (["--device", "cuda"], None),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, tmp_path, layer_file, args, message):
    import torch

    if args == ["--device", "cuda"]:
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        message = "no CUDA GPU"
    out = tmp_path / "x.npz"
    code, _, err = cli("explain", str(layer_file), "--steps", "1", "--size", "16",
                       "--out", str(out), *args)  # fmt: skip
    assert code == 2
    assert err.startswith("kernelspec: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_checkpoint_with_arch_in_a_subprocess(tmp_path):
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(0)
    path = tmp_path / "r18.pt"
    torch.save(resnet18().state_dict(), path)
    out = tmp_path / "r.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "napari_kernelspec.cli", "explain", str(path), "--arch",
         "resnet18", "--layer", "layer1.0.conv1", "--filters", "0-1", "--steps", "2",
         "--size", "32", "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        assert data["images"].shape == (2, 32, 32, 3)
    assert meta["weights"] == "checkpoint" and meta["provenance"]["arch"] == "resnet18"
    assert meta["layer"] == "layer1.0.conv1"


def test_untrained_weights_are_flagged_in_the_npz_and_the_png(cli, tmp_path):
    out, png = tmp_path / "l.npz", tmp_path / "l.png"
    code, stdout, err = cli(
        "explain", "lenet5", "--weights", "random", "--layer", "conv1",
        "--steps", "2", "--size", "16", "--out", str(out), "--png", str(png),
    )  # fmt: skip
    assert code == 0, err
    with np.load(out, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    assert meta["weights"] == "random" and meta["trained"] is False
    assert meta["filters"] == [0, 1, 2, 3, 4, 5]  # no --filters: all 6 of conv1 (<= 16)
    assert meta["caveats"][0].startswith("UNTRAINED")
    assert "random (UNTRAINED)" in stdout
    caption = np.asarray(Image.open(png).convert("RGB"))[12:24]
    red = (caption[..., 0] > 150) & (caption[..., 1] < 80) & (caption[..., 2] < 80)
    assert red.sum() > 20  # the red UNTRAINED line is drawn
