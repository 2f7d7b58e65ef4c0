"""`kernelspec explain`: the npz and PNG it writes, and one line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture
def digit_pngs(tmp_path, monkeypatch, digits_cache):
    """Two held-out digits as PNG files (and their labels); the trained LeNet5 is cached."""
    from napari_kernelspec.sources.digits import load_digits_32

    monkeypatch.setenv("KERNELSPEC_CACHE", str(digits_cache))
    _, _, x, y = load_digits_32()
    paths = []
    for i in (0, 5):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray((x[i, 0] * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths, [int(y[0]), int(y[5])]


def _meta(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k != "meta"}, json.loads(str(data["meta"]))


def test_explain_class_gradcam_and_grabcut(cli, tmp_path, digit_pngs):
    (image, _), (label, _) = digit_pngs
    out, png = tmp_path / "g.npz", tmp_path / "g.png"
    code, stdout, err = cli("explain", "lenet5", "--method", "gradcam", "--image", str(image),
                            "--out", str(out), "--png", str(png))  # fmt: skip
    assert code == 0, err
    arrays, meta = _meta(out)
    assert arrays["attributions"].shape == (1, 1, 32, 32)
    assert meta["method"] == "gradcam" and meta["layer"] == "conv2"
    assert meta["target_class"] == meta["predicted_class"] == label
    assert 0.5 < meta["predicted_probability"] <= 1.0
    assert f"predicted: {label} with probability" in stdout and png.is_file()
    out = tmp_path / "m.npz"
    code, _, err = cli("explain", "lenet5", "--method", "grabcut", "--image", str(image),
                       "--out", str(out))  # fmt: skip
    assert code == 0, err
    arrays, meta = _meta(out)
    assert arrays["masks"].shape == (1, 32, 32) and arrays["masks"].dtype == bool
    assert 0 < arrays["masks"].mean() < 1


def test_explain_occlusion_of_another_class(cli, tmp_path, digit_pngs):
    (image, _), (label, _) = digit_pngs
    other = (label + 3) % 10
    out = tmp_path / "o.npz"
    code, stdout, err = cli("explain", "lenet5", "--method", "occlusion", "--class", str(other),
                            "--image", str(image), "--window", "6", "--window-stride", "2",
                            "--out", str(out))  # fmt: skip
    assert code == 0, err
    arrays, meta = _meta(out)
    assert meta["target_class"] == other and meta["predicted_class"] == label
    assert meta["parameters"]["window"] == 6 and arrays["attributions"].shape == (1, 1, 32, 32)
    assert f"of class {other} written" in stdout


def test_synthesize_class_and_style(cli, tmp_path, digit_pngs):
    (content, style), _ = digit_pngs
    out = tmp_path / "s.npz"
    code, stdout, err = cli("synthesize", "lenet5", "--objective", "class:3,8", "--steps", "128",
                            "--out", str(out), "--png", str(tmp_path / "s.png"))  # fmt: skip
    assert code == 0, err
    arrays, meta = _meta(out)
    assert arrays["images"].shape == (2, 32, 32, 1)
    assert meta["target_class"] == [3, 8] and meta["predicted_class"] == [3, 8]
    assert "class 3: probability" in stdout
    out = tmp_path / "st.npz"
    code, stdout, err = cli("synthesize", "lenet5", "--objective", "style", "--image",
                            str(content), "--style-image", str(style), "--steps", "100",
                            "--out", str(out))  # fmt: skip
    assert code == 0, err
    _, meta = _meta(out)
    assert meta["parameters"]["content_layer"] == "conv1"
    assert meta["end"]["style_loss"] < meta["start"]["style_loss"]
    assert "content_loss:" in stdout


def test_adversarial_pgd_and_failing_fgsm(cli, tmp_path, digit_pngs):
    (image, _), (label, _) = digit_pngs
    target = (label + 1) % 10
    out, png = tmp_path / "a.npz", tmp_path / "a.png"
    code, stdout, err = cli("adversarial", "lenet5", "--image", str(image), "--class",
                            str(target), "--epsilon", "0.3", "--out", str(out),
                            "--png", str(png))  # fmt: skip
    assert code == 0, err
    arrays, meta = _meta(out)
    assert meta["predicted_class"] == label and meta["predicted_class_after"] == target
    assert 0 < meta["epsilon_used"] <= 0.3 and meta["fooled"] is True
    assert arrays["images"].shape == (1, 32, 32, 1) and "fooled:" in stdout
    out = tmp_path / "f.npz"
    code, stdout, err = cli("adversarial", "lenet5", "--image", str(image), "--class",
                            str(target), "--epsilon", "0.02", "--method", "fgsm",
                            "--out", str(out))  # fmt: skip
    assert code == 0, err
    _, meta = _meta(out)
    assert meta["fooled"] is False and "not fooled: FGSM failed" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "lenet5", "--class", "3", "--method", "maximize"], "--class explains"),
        (["explain", "lenet5", "--method", "gradcam"], "give --image"),
        (["explain", "lenet5", "--class", "x", "--image", "IMG"], "--class must be a class"),
        (["explain", "lenet5", "--method", "gradient", "--class", "12", "--image", "IMG"],
         "class 12 is out of range"),
        (["synthesize", "lenet5", "--objective", "dream"], "needs dream:LAYER"),
        (["synthesize", "lenet5", "--objective", "style", "--image", "IMG"], "--style-image"),
        (["synthesize", "lenet5", "--objective", "invert:nope", "--image", "IMG"], "'nope'"),
        (["adversarial", "lenet5", "--image", "IMG", "--class", "1", "--epsilon", "2"],
         "--epsilon must be in (0, 1]"),
    ],
)  # fmt: skip
def test_new_commands_bad_input_is_one_line_exit_2(cli, tmp_path, digit_pngs, argv, message):
    (image, _), _ = digit_pngs
    out = tmp_path / "x.npz"
    argv = [str(image) if a == "IMG" else a for a in argv]
    code, _, err = cli(*argv, "--out", str(out))
    assert code == 2, err
    assert err.startswith("kernelspec: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["explain", "synthesize", "adversarial"])
def test_an_unwritable_png_is_found_before_the_work_and_writes_no_npz(
    cli, tmp_path, digit_pngs, command
):
    (image, _), _ = digit_pngs
    argv = {
        "explain": ["--method", "gradcam", "--image", str(image)],
        "synthesize": ["--objective", "class:1", "--steps", "2"],
        "adversarial": ["--image", str(image), "--class", "1", "--epsilon", "0.3"],
    }[command]
    out, folder, blocker = tmp_path / "r.npz", tmp_path / "folder", tmp_path / "file"
    folder.mkdir()
    blocker.write_text("")
    for png, message in [(folder, "is a folder"), (blocker / "m.png", "is a file, not a folder")]:
        code, stdout, err = cli(command, "lenet5", *argv, "--out", str(out), "--png", str(png))
        assert code == 2, err
        assert err.startswith("kernelspec: error: ") and message in err
        assert err.count("\n") == 1 and stdout == ""  # no progress bar: refused up front
        assert not out.exists()


def test_save_files_writes_both_or_neither(tmp_path, digit_pngs, monkeypatch):
    from napari_kernelspec.base.errors import KernelSpecError
    from napari_kernelspec.imaging.explain import result as result_module
    from napari_kernelspec.imaging.explain.methods import synthesize_images
    from napari_kernelspec.imaging.explain.model import explain_model

    model = explain_model("lenet5", weights="pretrained", device="cpu")
    res = synthesize_images(model, "class", target=[2], steps=2)
    out, png = tmp_path / "r.npz", tmp_path / "r.png"
    assert result_module.save_files(res, out, png) == (out, png)
    with np.load(out) as data:
        np.testing.assert_array_equal(data["images"], res.images)
    assert Image.open(png).format == "PNG"
    out.unlink()
    png.unlink()

    from napari_kernelspec.base import atomic

    real = atomic._temporary

    def no_space_for_the_png(path):  # the disk fills up while staging the PNG
        if Path(path).suffix == ".png":
            raise OSError(28, "No space left on device", str(path))
        return real(path)

    monkeypatch.setattr(atomic, "_temporary", no_space_for_the_png)
    with pytest.raises(KernelSpecError, match="No space left"):
        result_module.save_files(res, out, png)
    assert not out.exists() and not png.exists()
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left either


@pytest.mark.parametrize(
    ("objective", "key", "layers"),
    [("dream:conv2", "activation_norm", ["conv2"]), ("invert:conv1", "feature_error", ["conv1"]),
     ("texture:conv1,conv2", "gram_error_conv2", ["conv1", "conv2"])],
)  # fmt: skip
def test_synthesize_layer_objectives_from_an_image(cli, tmp_path, digit_pngs, objective, key,
                                                   layers):  # fmt: skip
    (image, _), _ = digit_pngs
    out = tmp_path / "s.npz"
    code, stdout, err = cli("synthesize", "lenet5", "--objective", objective, "--image",
                            str(image), "--steps", "40", "--out", str(out))  # fmt: skip
    assert code == 0, err
    arrays, meta = _meta(out)
    assert arrays["images"].shape == (1, 32, 32, 1)
    assert arrays["images"].min() >= 0 and arrays["images"].max() <= 1
    assert meta["parameters"]["layers"] == layers
    if key == "activation_norm":  # DeepDream raises the layer's activation
        assert meta["end"][key] > meta["start"][key]
    else:  # inversion and texture match the image's features
        assert meta["end"][key] < meta["start"][key]
    assert f"{key}: " in stdout
