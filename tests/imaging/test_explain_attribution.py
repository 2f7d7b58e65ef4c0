"""Deconvnet, guided backprop, gradient and occlusion of one filter: known answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.imaging.explain.attribution import activation_audit, attribute
from napari_kernelspec.imaging.explain.model import explain_model, wrap_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 11
UNIT = (9, 13)  # (y, x) in the 30x30 map of a 40x40 image


@pytest.fixture
def gabor_file(tmp_path, gabor):
    """Four 3-channel Gabor filters (different colours per channel) saved as .npy."""
    rng = np.random.default_rng(1)
    bank = []
    for f, t in [(0.15, 0), (0.2, 45), (0.25, 90), (0.3, 135)]:
        g = gabor(SIZE, f, t, phase=np.pi / 2)
        bank.append(np.stack([g * a for a in rng.uniform(0.5, 1.5, 3)]))
    weights = np.asarray(bank, dtype=np.float32)
    path = tmp_path / "gabors.npy"
    np.save(path, weights)
    return path, weights


def _image_driving(weights: np.ndarray, k: int, rng) -> np.ndarray:
    """A 40x40 RGB image whose unit UNIT of filter k is active: the filter planted there."""
    img = rng.uniform(0.3, 0.7, (40, 40, 3)).astype(np.float32)
    y, x = UNIT
    patch = np.moveaxis(weights[k], 0, -1)
    img[y : y + SIZE, x : x + SIZE] = 0.5 + 0.4 * patch / np.abs(patch).max()
    return img


@pytest.mark.parametrize("method", ["guided", "deconvnet"])
def test_first_layer_unit_is_its_filter_inside_its_receptive_field(gabor_file, method):
    path, weights = gabor_file
    model = explain_model(path, device="cpu")
    rng = np.random.default_rng(0)
    k = 2
    image = _image_driving(weights, k, rng)
    res = attribute(model, "conv", [k], image, method, at=UNIT)
    attr = res["attributions"][0]  # (C, H, W)
    assert attr.shape == (3, 40, 40) and attr.dtype == np.float32
    y, x = UNIT
    inside = np.zeros((40, 40), bool)
    inside[y : y + SIZE, x : x + SIZE] = True
    assert np.all(attr[:, ~inside] == 0)
    patch = attr[:, y : y + SIZE, x : x + SIZE]
    # As laid out on the input (no flip), every channel included.
    assert np.corrcoef(patch.ravel(), weights[k].ravel())[0, 1] >= 0.99
    assert res["at"] == [y, x] and res["filters"] == [k]


def test_occlusion_is_exactly_zero_farther_than_the_window_from_the_receptive_field(gabor_file):
    path, weights = gabor_file
    model = explain_model(path, device="cpu")
    image = _image_driving(weights, 1, np.random.default_rng(2))
    w = 3
    res = attribute(model, "conv", [1], image, "occlusion", at=UNIT, window=w)
    attr = res["attributions"][0]
    y, x = UNIT
    rows, cols = np.mgrid[:40, :40]
    dy = np.maximum(np.maximum(y - rows, rows - (y + SIZE - 1)), 0)
    dx = np.maximum(np.maximum(x - cols, cols - (x + SIZE - 1)), 0)
    far = np.maximum(dy, dx) > w
    assert np.all(attr[:, far] == 0.0)
    inside = (dy == 0) & (dx == 0)
    assert np.abs(attr[:, inside]).max() > 1e-3  # the unit does respond to its own pixels
    assert res["parameters"]["window"] == w and res["parameters"]["window_stride"] == 1


def test_mean_objective_attribution_covers_the_whole_image(gabor_file):
    path, _ = gabor_file
    model = explain_model(path, device="cpu")
    image = np.random.default_rng(3).uniform(0, 1, (40, 40, 3)).astype(np.float32)
    res = attribute(model, "conv", [0, 3], image, "gradient")
    attr = res["attributions"]
    assert attr.shape == (2, 3, 40, 40)
    assert (np.abs(attr).sum(axis=(0, 1)) > 0).mean() > 0.9
    assert res["parameters"]["objective"] == "mean of the rectified map"


def _two_layer(kind: str):
    """conv -> activation -> conv, with the activation as `kind` (same weights every time)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv1 = nn.Conv2d(3, 8, 3)
            self.conv2 = nn.Conv2d(8, 4, 3)
            self.conv3 = nn.Conv2d(4, 4, 3)
            self.act = nn.ReLU(inplace=True) if kind != "relu6" else nn.ReLU6(inplace=True)
            self.act2 = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv1(x)
            x = F.relu(x, inplace=True) if kind == "functional" else self.act(x)
            x = self.conv2(x)
            if kind == "reused":
                return self.conv3(self.act(x))
            x = F.relu(x) if kind == "functional" else self.act2(x)
            return self.conv3(x)

    return wrap_model(Net(), name=kind, device="cpu")


@pytest.mark.parametrize("method", ["guided", "deconvnet"])
@pytest.mark.parametrize("kind", ["functional", "reused", "relu6"])
def test_relus_captum_does_not_see_get_the_same_rule(method, kind):
    image = np.random.default_rng(4).uniform(0, 1, (20, 20, 3)).astype(np.float32)
    ref = attribute(_two_layer("module"), "conv3", [1], image, method)
    res = attribute(_two_layer(kind), "conv3", [1], image, method)
    grad = attribute(_two_layer("module"), "conv3", [1], image, "gradient")
    # Small weights keep every activation below 6, where ReLU6 and ReLU agree.
    np.testing.assert_allclose(res["attributions"], ref["attributions"], rtol=1e-5, atol=1e-7)
    assert not np.allclose(ref["attributions"], grad["attributions"], atol=1e-6)
    caveats = " ".join(res["caveats"])
    if kind == "functional":
        assert "functional ReLU" in caveats
        assert res["activations"]["functional_relu_calls"] == 2
    if kind == "reused":
        assert res["activations"]["reused_relu_modules"] == ["1.act"]
    if kind == "relu6":
        assert "ReLU6" in caveats


def test_tanh_network_says_guided_backprop_is_the_gradient():
    model = explain_model("lenet5", weights="random", device="cpu")
    image = np.random.default_rng(5).uniform(0, 1, (32, 32)).astype(np.float32)
    guided = attribute(model, "conv2", [3], image, "guided")
    grad = attribute(model, "conv2", [3], image, "gradient")
    np.testing.assert_allclose(guided["attributions"], grad["attributions"], rtol=1e-5)
    assert any("equals the gradient" in c for c in guided["caveats"])
    assert guided["activations"]["other_activations"] == {"tanh": 1}


def test_googlenet_functional_relus_are_found(tmp_path):
    model = explain_model("googlenet", weights="random", device="cpu")
    audit = activation_audit(model, "conv2.conv", (64, 64))
    assert audit["relu_module_calls"] == 0
    assert audit["functional_relu_calls"] == 1  # conv1's BasicConv2d: F.relu
    image = np.random.default_rng(6).uniform(0, 1, (64, 64, 3)).astype(np.float32)
    res = attribute(model, "conv2.conv", [0], image, "guided")
    assert any(c.startswith("functional ReLU") for c in res["caveats"])
    assert any("UNTRAINED" in c for c in model.caveats)


def test_lenet_image_is_resized_to_its_input(tmp_path):
    model = explain_model("lenet5", weights="random", device="cpu")
    image = (np.random.default_rng(7).uniform(0, 255, (64, 48, 3))).astype(np.uint8)
    res = attribute(model, "conv1", [0], image, "gradient")
    assert res["attributions"].shape == (1, 1, 32, 32)
    assert res["parameters"]["image"]["resized_to"] == [32, 32]


def test_bad_inputs_are_one_line_errors(gabor_file):
    path, _ = gabor_file
    model = explain_model(path, device="cpu")
    image = np.zeros((40, 40, 3), np.float32)
    with pytest.raises(KernelSpecError, match="out of range: conv has 4 filters"):
        attribute(model, "conv", [4], image, "guided")
    with pytest.raises(KernelSpecError, match=r"outside the 30x30 map"):
        attribute(model, "conv", [0], image, "guided", at=(30, 0))
    with pytest.raises(KernelSpecError, match=r"is a ReLU, not a convolution.*give one of: conv"):
        attribute(model, "relu", [0], image, "guided")
    with pytest.raises(KernelSpecError, match="--window is 99"):
        attribute(model, "conv", [0], image, "occlusion", window=99)
    with pytest.raises(KernelSpecError, match="NaN"):
        attribute(model, "conv", [0], np.full((40, 40), np.nan), "guided")


@pytest.mark.parametrize(("window", "stride", "at"), [(4, 1, None), (5, 2, None), (4, 1, (3, 4))])
def test_first_layer_occlusion_equals_captums(monkeypatch, window, stride, at):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3)
    )
    model = wrap_model(net, normalise=True)  # the ImageNet normalisation comes first
    image = np.random.default_rng(0).uniform(size=(23, 27, 3)).astype(np.float32)
    kw = {"at": at, "window": window, "window_stride": stride, "baseline": 0.3}
    fast = attribute(model, "0", [0, 3], image, "occlusion", **kw)
    assert fast["parameters"]["occlusion_path"].startswith("first-layer incremental (2 of 2")
    monkeypatch.setenv("KERNELSPEC_CAPTUM_OCCLUSION", "1")
    slow = attribute(model, "0", [0, 3], image, "occlusion", **kw)
    assert "occlusion_path" not in slow["parameters"]
    assert np.abs(slow["attributions"]).max() > 1e-3
    np.testing.assert_allclose(fast["attributions"], slow["attributions"], atol=1e-6, rtol=1e-4)
    deeper = attribute(model, "2", [1], image, "occlusion", **kw)  # not the first layer
    assert "occlusion_path" not in deeper["parameters"]
