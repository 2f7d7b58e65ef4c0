"""Maps and explanations of ONNX and Keras models equal the torch model's."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.imaging.explain.model import explain_model
from napari_kernelspec.imaging.explain.result import explain
from napari_kernelspec.imaging.maps import feature_maps
from napari_kernelspec.sources.loading import load_kernels


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    """A random ResNet18 and its ONNX export (opset 17: what onnx2torch converts)."""
    pytest.importorskip("onnx")
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that they matter
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("onnx") / "resnet18.onnx"
    torch.onnx.export(
        net,
        torch.zeros(1, 3, 64, 64),
        str(path),
        dynamo=False,
        do_constant_folding=False,
        opset_version=17,
    )
    return net, path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_first_layer_maps_of_onnx_equal_torch(resnet_onnx):
    net, path = resnet_onnx
    image = np.random.default_rng(0).random((48, 40, 3)).astype(np.float32)
    from_file = feature_maps(path, image, normalize="none")
    torch_bank = load_kernels("resnet18", weights="random")
    # The torch model's first layer with the same weights: only the source differs.
    import dataclasses

    torch_bank = dataclasses.replace(torch_bank, weights=net.conv1.weight.detach().numpy())
    from_torch = feature_maps(torch_bank, image, normalize="none")
    assert from_file.bank.stride == (2, 2) and from_file.bank.padding == (3, 3)
    np.testing.assert_allclose(from_file.maps, from_torch.maps, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(from_file.scale, from_torch.scale)
    np.testing.assert_array_equal(from_file.translate, from_torch.translate)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_model_converted_equals_torch_and_explains(resnet_onnx):
    pytest.importorskip("onnx2torch")
    import torch

    net, path = resnet_onnx
    model = explain_model(path, device="cpu")
    names = model.conv_names()
    assert len(names) == 20 and model.resolve_layer("last") == names[-1]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_allclose(model.net(x).numpy(), net(x).numpy(), rtol=1e-4, atol=1e-4)
    result = explain(model, "middle", [0, 1], "maximize", size=32, steps=4, seed=0)
    assert result.images.shape[:2] == (2, 32) and np.isfinite(result.images).all()


def test_one_conv_file_refuses_middle_and_last(tmp_path):
    import torch

    torch.save({"conv.weight": torch.randn(4, 3, 5, 5)}, tmp_path / "one.pt")
    model = explain_model(tmp_path / "one.pt", device="cpu")
    for key in ("middle", "last"):
        with pytest.raises(KernelSpecError) as err:
            model.resolve_layer(key)
        assert "\n" not in str(err.value) and f"no {key} layer" in str(err.value)
    assert model.resolve_layer(None) == "conv"


def test_maps_of_a_files_deeper_layer_say_why_not(tmp_path):
    import torch

    torch.save({"layer2.conv.weight": torch.randn(4, 24, 3, 3)}, tmp_path / "deep.pt")
    with pytest.raises(KernelSpecError) as err:
        feature_maps(tmp_path / "deep.pt", np.zeros((32, 32, 3), np.float32))
    text = str(err.value)
    assert "takes 24 input channels: a deeper layer" in text and "grey or RGB" not in text


def test_a_state_dict_file_with_its_architecture_runs_deeper_layers(tmp_path):
    """`arch`: a file's deeper layer runs inside the network, equal to the model's own maps."""
    import torch
    import torchvision

    from napari_kernelspec.sources.loading import RANDOM_SEED

    torch.manual_seed(RANDOM_SEED)  # the weights of load_kernels("resnet18", "random")
    net = torchvision.models.resnet18(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "mine.bin")
    image = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    bank = load_kernels(tmp_path / "mine.bin", layer="layer1.0.conv2", arch="resnet18")
    assert bank.stride == (1, 1) and bank.padding == (1, 1) and bank.stride_known
    from_file = feature_maps(tmp_path / "mine.bin", image, "layer2.0.conv1", arch="resnet18")
    from_model = feature_maps("resnet18", image, "layer2.0.conv1", weights="random")
    assert from_file.meta["normalisation"] == from_model.meta["normalisation"]
    np.testing.assert_allclose(from_file.maps, from_model.maps, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(from_file.scale, from_model.scale)
    with pytest.raises(KernelSpecError, match="give the architecture"):
        load_kernels(tmp_path / "mine.bin", arch="alexnet")


def test_cli_maps_with_arch(cli, tmp_path):
    import torch
    import torchvision
    from PIL import Image

    torch.manual_seed(3)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "mine.pt")
    Image.fromarray((np.random.default_rng(2).random((48, 48, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "img.png"
    )
    out = tmp_path / "maps.npz"
    code, _, err = cli(
        "maps", str(tmp_path / "mine.pt"), str(tmp_path / "img.png"), "--arch", "resnet18",
        "--layer", "layer1.0.conv1", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert np.load(out)["maps"].shape[0] == 64
