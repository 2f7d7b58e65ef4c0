"""Building the explained model: names, checkpoints with --arch, one-layer files, devices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.imaging.explain.maximize import layer_output
from napari_kernelspec.imaging.explain.model import (
    explain_model,
    parse_filters,
    resolve_device,
)
from napari_kernelspec.sources.loading import UntrainedWeightsWarning

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_model_name_lists_its_convolutions_and_flags_random_weights():
    with pytest.warns(UntrainedWeightsWarning):
        model = explain_model("resnet18", device="cpu")  # no hub file here: random, said so
    assert model.source == "random" and not model.is_trained
    assert "UNTRAINED" in model.caveats[0]
    names = model.conv_names()
    assert names[:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert names[-1] == "layer4.1.conv2" and len(names) == 20
    assert model.resolve_layer("middle") == names[9]
    assert model.resolve_layer("last") == "layer4.1.conv2"
    with pytest.raises(
        KernelSpecError,
        match=r"'layer1.0.bn1' is a BatchNorm2d, not a convolution of "
        r"ResNet18|resnet18; give one of: .*layer1.0.conv1",
    ):
        model.conv("layer1.0.bn1")
    with pytest.raises(KernelSpecError, match="'nope' is not a layer of "):
        model.conv("nope")


def test_random_weights_are_the_architectures_seeded_init():
    from napari_kernelspec.sources.loading import load_kernels

    model = explain_model("resnet18", weights="random", device="cpu")
    bank = load_kernels("resnet18", weights="random", use_cache=False)
    got = model.conv("conv1").weight.detach().numpy()
    np.testing.assert_array_equal(got, bank.weights)


def test_checkpoint_of_a_torchvision_architecture(tmp_path):
    import torch
    from torchvision.models import resnet18

    net = resnet18()
    with torch.no_grad():
        net.conv1.weight.fill_(0.0)
        net.conv1.weight[5, 1, 3, 3] = 2.5  # planted
    path = tmp_path / "mine.pth"
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path
    )
    model = explain_model(path, arch="resnet18", device="cpu")
    assert model.source == "checkpoint" and model.is_trained
    w = model.conv("conv1").weight.detach().numpy()
    assert w[5, 1, 3, 3] == 2.5 and np.count_nonzero(w) == 1
    with pytest.raises(KernelSpecError, match="does not fit resnet34"):
        explain_model(path, arch="resnet34", device="cpu")
    with pytest.raises(KernelSpecError, match="--arch: unknown model"):
        explain_model(path, arch="resnet_nope", device="cpu")


def test_checkpoint_that_needs_code_execution_is_refused(tmp_path):
    import torch

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(KernelSpecError, match="refusing to unpickle"):
        explain_model(path, arch="resnet18", device="cpu")


def test_one_layer_model_is_the_conv_with_its_bias_then_relu(tmp_path):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 2, 3, 3)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    path = tmp_path / "layer.pth"
    torch.save({"enc.weight": torch.from_numpy(weight), "enc.bias": torch.from_numpy(bias)}, path)
    model = explain_model(path, device="cpu")
    assert model.conv_names() == ["conv"] and model.channels == 2
    assert model.provenance["has_bias"] is True
    x = torch.from_numpy(rng.uniform(size=(1, 2, 9, 9)).astype(np.float32))
    want = F.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias))
    np.testing.assert_allclose(layer_output(model, "conv", x).numpy(), want.numpy(), rtol=1e-6)
    with torch.no_grad():
        full = model.net(x)
    np.testing.assert_allclose(full.numpy(), want.clamp(min=0).numpy(), rtol=1e-6)
    npy = tmp_path / "layer.npy"
    np.save(npy, weight)
    assert explain_model(npy, device="cpu").provenance["has_bias"] is False


def test_parse_filters():
    assert parse_filters("0,3,5-7", 10) == [0, 3, 5, 6, 7]
    assert parse_filters("2,2,1", 10) == [2, 1]
    assert parse_filters([4, 1], 5) == [4, 1]
    with pytest.raises(KernelSpecError, match=r"filter index 10 is out of range.*0\.\.9"):
        parse_filters("8-10", 10)
    with pytest.raises(KernelSpecError, match="bad filter list"):
        parse_filters("a-b", 10)
    with pytest.raises(KernelSpecError, match="smaller index first"):
        parse_filters("5-2", 10)


def test_device():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(KernelSpecError, match="device must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(KernelSpecError, match="no CUDA GPU"):
            resolve_device("cuda")
