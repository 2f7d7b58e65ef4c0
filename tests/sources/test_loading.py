"""load_kernels on model names: first layers, random / pretrained / auto weights, caching."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.base.bank import KernelBank
from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources import cache, loading, models, pretrained
from napari_kernelspec.sources.loading import UntrainedWeightsWarning, load_kernels

# GUIDE §1: first-layer facts of the eight seed models.
SEED_FIRST_LAYERS = [
    ("alexnet", "AlexNet", "features.0", (64, 3, 11, 11), 4, 2),
    ("vgg16", "VGG16", "features.0", (64, 3, 3, 3), 1, 1),
    ("resnet50", "ResNet50", "conv1", (64, 3, 7, 7), 2, 3),
    ("lenet5", "LeNet5", "conv1", (6, 1, 5, 5), 1, 0),
    ("densenet121", "DenseNet121", "features.conv0", (64, 3, 7, 7), 2, 3),
    ("mobilenet_v2", "MobileNetV2", "features.0.0", (32, 3, 3, 3), 2, 1),
    ("googlenet", "GoogLeNet", "conv1.conv", (64, 3, 7, 7), 2, 3),
    ("inception_v3", "InceptionV3", "Conv2d_1a_3x3.conv", (32, 3, 3, 3), 2, 0),
]


@pytest.fixture
def ld_env(tmp_path, monkeypatch):
    """Private TORCH_HOME and kernel cache; returns (hub checkpoints folder, cache folder)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kcache"))
    return tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "kcache"


def _save_mobilenet_state(dst: Path) -> np.ndarray:
    """Save a real, full mobilenet_v2 state dict with non-default weights; return its conv."""
    import torch
    from torchvision.models import mobilenet_v2

    torch.manual_seed(1234)
    net = mobilenet_v2(weights=None)
    with torch.no_grad():
        net.features[0][0].weight.mul_(3.0).add_(0.01)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), dst)
    return net.features[0][0].weight.detach().numpy().copy()


def _mobilenet_info() -> pretrained.WeightsInfo:
    return pretrained.weights_info("mobilenet_v2")


@pytest.mark.parametrize(
    ("name", "display", "layer", "shape", "stride", "padding"), SEED_FIRST_LAYERS
)
def test_seed_models_random_first_layer(ld_env, name, display, layer, shape, stride, padding):
    bank = load_kernels(display.upper(), weights="random")
    assert isinstance(bank, KernelBank)
    assert bank.model == name
    assert bank.display_name == display
    assert bank.layer == layer
    assert bank.weights.shape == shape
    assert bank.weights.dtype == np.float32
    assert bank.stride == (stride, stride)
    assert bank.padding == (padding, padding)
    assert bank.source == "random"
    assert not bank.is_trained
    assert bank.provenance["seed"] == 0
    assert models.first_conv(name) == (layer, (stride, stride), (padding, padding), shape)
    # The table that spares a first load the architecture is what the meta-device probe finds.
    assert models._first_conv_layer(name) == models.SEED_FIRST_CONVS[name]


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("MobileNetV2", "mobilenet_v2"),
        ("mobilenetv2", "mobilenet_v2"),
        ("MOBILENET_V2", "mobilenet_v2"),
        ("InceptionV3", "inception_v3"),
        ("inceptionv3", "inception_v3"),
        ("GoogLeNet", "googlenet"),
        ("LeNet5", "lenet5"),
        ("resnet18", "resnet18"),
        ("ConvNeXt_Tiny", "convnext_tiny"),
    ],
)
def test_resolve_model_spellings(spelling, canonical):
    assert models.resolve_model(spelling) == canonical


def test_available_models():
    seed = models.available_models()
    assert seed == list(models.SEED_MODELS)
    assert seed[:3] == ["alexnet", "vgg16", "resnet50"]
    everything = models.available_models(include_all=True)
    assert everything[:8] == seed
    rest = everything[8:]
    assert rest == sorted(rest)
    assert "vit_b_16" in rest and "resnet18" in rest
    assert len(set(everything)) == len(everything)


def test_other_torchvision_models(ld_env):
    assert models.first_conv("vit_b_16") == ("conv_proj", (16, 16), (0, 0), (768, 3, 16, 16))
    assert models.first_conv("convnext_tiny")[3] == (96, 3, 4, 4)
    # regnet's builder does tensor maths that fails on the meta device: handled
    assert models.first_conv("regnet_y_400mf")[0] == "stem.0"
    bank = load_kernels("resnet18", weights="random")
    assert bank.display_name == "resnet18"
    assert bank.weights.shape == (64, 3, 7, 7)


def test_random_is_deterministic(ld_env, tmp_path, monkeypatch):
    import torch

    state = torch.random.get_rng_state()
    a = load_kernels("mobilenet_v2", weights="random", use_cache=False)
    assert torch.equal(state, torch.random.get_rng_state()), "caller's RNG state changed"
    b = load_kernels("mobilenet_v2", weights="random", use_cache=False)
    c = load_kernels("mobilenet_v2", weights="random")  # written to the cache
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "other-cache"))
    d = load_kernels("mobilenet_v2", weights="random")
    e = load_kernels("mobilenet_v2", weights="random")
    assert not d.provenance["cached"] and e.provenance["cached"]
    for other in (b, c, d, e):
        np.testing.assert_array_equal(a.weights, other.weights)


@pytest.mark.parametrize("model", sorted(loading.FIRST_CONV_BUILT_FIRST))
def test_random_first_conv_built_alone_is_the_whole_models(ld_env, model):
    """The shortcut for the random weights is the whole network's first layer, bit for bit."""
    import torch

    bank = load_kernels(model, weights="random", use_cache=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(loading.RANDOM_SEED)
        module = models.build_model(model, "cpu").get_submodule(bank.layer)
    np.testing.assert_array_equal(bank.weights, module.weight.detach().numpy())
    np.testing.assert_array_equal(bank.bias, module.bias.detach().numpy())


def test_loads_without_torch_only_when_certain(ld_env, tmp_path):
    np.save(tmp_path / "w.npy", np.ones((2, 1, 3, 3), np.float32))
    assert loading.loads_without_torch(tmp_path / "w.npy")
    assert loading.loads_without_torch("lenet5")  # the shipped weights
    assert not loading.loads_without_torch(tmp_path / "w.pth")
    assert not loading.loads_without_torch("alexnet", weights="random")  # not cached yet
    load_kernels("alexnet", weights="random")
    assert loading.loads_without_torch("alexnet", weights="random")  # cached now
    assert not loading.loads_without_torch("alexnet")  # auto: pretrained not known missing
    assert not loading.loads_without_torch("no-such-model")


def test_pretrained_from_hub_cache_then_kernel_cache(ld_env):
    hub, kcache = ld_env
    info = _mobilenet_info()
    hub_file = hub / info.filename
    assert hub_file == pretrained.hub_checkpoint_path(info.url)
    assert info.filename.startswith("mobilenet_v2-") and info.filename.endswith(".pth")
    expected = _save_mobilenet_state(hub_file)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bank = load_kernels("mobilenet_v2", weights="pretrained")
    np.testing.assert_array_equal(bank.weights, expected)
    assert bank.source == "pretrained" and bank.is_trained
    assert bank.provenance["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V2"
    assert bank.provenance["url"] == info.url
    assert bank.provenance["file"] == str(hub_file)
    assert bank.provenance["key"] == "features.0.0.weight"
    assert bank.provenance["cached"] is False
    assert list(kcache.glob("mobilenet_v2-*pretrained*.npz"))

    hub_file.unlink()  # the second load must not need the big checkpoint
    for weights in ("pretrained", "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = load_kernels("MobileNetV2", weights=weights)
        np.testing.assert_array_equal(again.weights, expected)
        assert again.source == "pretrained"
        assert again.provenance["cached"] is True
    assert not hub_file.exists()


def test_auto_uses_hub_file_without_warning(ld_env):
    hub, _ = ld_env
    expected = _save_mobilenet_state(hub / _mobilenet_info().filename)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bank = load_kernels("mobilenet_v2")
    assert bank.source == "pretrained"
    np.testing.assert_array_equal(bank.weights, expected)


def test_pretrained_download_from_file_url(ld_env, tmp_path, monkeypatch):
    hub, _ = ld_env
    real = _mobilenet_info()
    served = tmp_path / "server" / real.filename
    expected = _save_mobilenet_state(served)
    local = pretrained.WeightsInfo(real.enum_name, served.as_uri())
    monkeypatch.setattr(pretrained, "weights_info", lambda model: local)

    bank = load_kernels("mobilenet_v2", weights="pretrained")
    assert (hub / real.filename).is_file()
    assert (hub / real.filename).read_bytes() == served.read_bytes()
    assert not list(hub.glob("*.partial"))
    np.testing.assert_array_equal(bank.weights, expected)
    assert bank.source == "pretrained"
    assert bank.provenance["url"] == served.as_uri()


def _unreachable(monkeypatch, tmp_path, model):
    real = pretrained.weights_info(model)
    gone = tmp_path / "no-such-server" / real.filename
    info = pretrained.WeightsInfo(real.enum_name, gone.as_uri())
    monkeypatch.setattr(pretrained, "weights_info", lambda m: info)
    return real


def test_auto_falls_back_to_random_with_warning(ld_env, tmp_path, monkeypatch):
    hub, _ = ld_env
    real = _unreachable(monkeypatch, tmp_path, "mobilenet_v2")
    with pytest.warns(UntrainedWeightsWarning, match="RANDOM"):
        bank = load_kernels("mobilenet_v2", weights="auto")
    assert bank.source == "random" and not bank.is_trained
    assert str(hub / real.filename) in bank.provenance["fallback_reason"]
    random = load_kernels("mobilenet_v2", weights="random", use_cache=False)
    np.testing.assert_array_equal(bank.weights, random.weights)
    assert not list(hub.glob("*.partial"))
    # the fallback is cached too, but still loud
    with pytest.warns(UntrainedWeightsWarning):
        again = load_kernels("mobilenet_v2")
    assert again.source == "random" and again.provenance["cached"]


def test_pretrained_without_network_is_an_error(ld_env, tmp_path, monkeypatch):
    hub, _ = ld_env
    real = _unreachable(monkeypatch, tmp_path, "mobilenet_v2")
    with pytest.raises(KernelSpecError) as err:
        load_kernels("mobilenet_v2", weights="pretrained")
    message = str(err.value)
    assert "could not be downloaded" in message
    assert str(hub / real.filename) in message
    assert "weights='random'" in message
    assert "\n" not in message


def test_damaged_hub_file(ld_env):
    hub, _ = ld_env
    path = hub / _mobilenet_info().filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(KernelSpecError, match="damaged"):
        load_kernels("mobilenet_v2", weights="pretrained")


def test_hub_file_of_another_model(ld_env):
    import torch

    hub, _ = ld_env
    path = hub / _mobilenet_info().filename
    path.parent.mkdir(parents=True)
    torch.save({"features.0.0.weight": torch.ones(8, 3, 5, 5)}, path)
    with pytest.raises(KernelSpecError, match="does not belong"):
        load_kernels("mobilenet_v2", weights="pretrained")


def test_layer_selection_architecture(ld_env):
    bank = load_kernels("resnet50", weights="random", layer="layer1.0.conv1")
    assert bank.layer == "layer1.0.conv1"
    assert bank.weights.shape == (64, 64, 1, 1)
    assert bank.stride == (1, 1) and bank.padding == (0, 0)
    same = load_kernels("ResNet50", weights="random", layer="layer1.0.conv1.weight")
    np.testing.assert_array_equal(bank.weights, same.weights)
    down = load_kernels("resnet50", weights="random", layer="layer2.0.conv2")
    assert down.stride == (2, 2) and down.padding == (1, 1)


def test_layer_selection_pretrained(ld_env):
    import torch
    from torchvision.models import mobilenet_v2

    hub, _ = ld_env
    torch.manual_seed(5)
    net = mobilenet_v2(weights=None)
    hub.mkdir(parents=True)
    torch.save(net.state_dict(), hub / _mobilenet_info().filename)
    bank = load_kernels("mobilenet_v2", weights="pretrained", layer="features.1.conv.0.0")
    np.testing.assert_array_equal(bank.weights, net.features[1].conv[0][0].weight.detach().numpy())
    assert bank.weights.shape == (32, 1, 3, 3)


@pytest.mark.parametrize("layer", ["layer1.0.conv", "fc", "nonsense"])
def test_missing_layer(ld_env, layer):
    with pytest.raises(KernelSpecError) as err:
        load_kernels("resnet50", weights="random", layer=layer)
    message = str(err.value)
    assert repr(layer) in message and "conv1" in message
    assert "\n" not in message


def test_unknown_model_suggests():
    with pytest.raises(KernelSpecError) as err:
        load_kernels("alexnett")
    message = str(err.value)
    assert "'alexnet'" in message
    assert "kernelspec models --all" in message


@pytest.mark.parametrize("source", ["", "   ", 42, None])
def test_bad_source(source):
    with pytest.raises(KernelSpecError):
        load_kernels(source)


def test_bad_weights_kind(ld_env):
    with pytest.raises(KernelSpecError, match="weights must be one of"):
        load_kernels("alexnet", weights="imagenet")


def test_public_api_lazy():
    import napari_kernelspec

    assert napari_kernelspec.load_kernels is load_kernels


def test_no_heavy_imports_at_module_level():
    import subprocess
    import sys

    code = (
        "import sys; import napari_kernelspec.sources.loading, napari_kernelspec.sources.models, "
        "napari_kernelspec.sources.checkpoints, napari_kernelspec.sources.pretrained, "
        "napari_kernelspec.sources.digits, napari_kernelspec.sources.cache\n"
        "heavy = [m for m in ('torch', 'torchvision', 'sklearn', 'safetensors') "
        "if m in sys.modules]\n"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {"PYTHONPATH": src}
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cache_key_separates_weights_kinds(ld_env):
    hub, kcache = ld_env
    _save_mobilenet_state(hub / _mobilenet_info().filename)
    pre = load_kernels("mobilenet_v2", weights="pretrained")
    rnd = load_kernels("mobilenet_v2", weights="random")
    assert not np.array_equal(pre.weights, rnd.weights)
    assert len(list(kcache.glob("mobilenet_v2-*.npz"))) == 2
    assert cache.cache_dir() == kcache


def test_lenet5_architecture():
    import torch

    net = models.LeNet5()
    assert isinstance(net, models.lenet5_class())
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    names = [c.name for c in models.conv_layers("lenet5")]
    assert names == ["conv1", "conv2"]
    assert [m.out_features for m in (net.fc1, net.fc2, net.fc3)] == [120, 84, 10]
