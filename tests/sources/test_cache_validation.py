"""Cache entries are checked against what they must hold, and rebuilt when they fail.

Also: the layer's bias, dilation and groups travel through the cache, and the cache folder
follows platformdirs unless ``KERNELSPEC_CACHE`` says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.sources import cache, loading, models
from napari_kernelspec.sources.loading import load_kernels


@pytest.fixture
def kc(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "kc"


def _entry(model: str, kind: str = "random", layer: str | None = None):
    key = loading._key(model, layer, kind)
    weights, meta = cache.read_entry(key)
    return key, weights, meta


def _tamper(model: str, change, layer: str | None = None) -> Path:
    """Rewrite the entry of `model` with `change(weights, meta) -> (weights, meta)`."""
    key, weights, meta = _entry(model, layer=layer)
    weights, meta = change(weights.copy(), json.loads(json.dumps(meta)))
    return cache.write_entry(key, weights, meta)


def test_entry_with_wrong_shape_is_rebuilt(kc):
    fresh = load_kernels("alexnet", weights="random")
    assert fresh.weights.shape == (64, 3, 11, 11)
    _tamper("alexnet", lambda w, m: (w[:2], {**m, "bias": m["bias"][:2]}))
    again = load_kernels("alexnet", weights="random")
    assert again.weights.shape == (64, 3, 11, 11)
    np.testing.assert_array_equal(again.weights, fresh.weights)
    assert _entry("alexnet")[1].shape == (64, 3, 11, 11)  # the entry was rewritten


@pytest.mark.parametrize(
    "meta_change",
    [
        {"stride": [0, 4]},
        {"stride": "4"},
        {"padding": [-1, 2]},
        {"dilation": [1]},
        {"groups": "1"},
        {"layer": 7},
        {"source": "pretrained"},
        {"provenance": []},
    ],
)
def test_entry_with_bad_metadata_is_rebuilt(kc, meta_change):
    fresh = load_kernels("alexnet", weights="random")
    _tamper("alexnet", lambda w, m: (w, {**m, **meta_change}))
    again = load_kernels("alexnet", weights="random")  # no ValueError traceback
    assert again.stride == (4, 4) and again.padding == (2, 2) and again.source == "random"
    np.testing.assert_array_equal(again.weights, fresh.weights)
    assert not again.provenance["cached"]


def test_bad_stride_of_a_model_outside_the_table(kc):
    """Without a table entry the generic checks still catch a bad stride."""
    fresh = load_kernels("resnet18", weights="random")
    assert models.known_conv("resnet18") is None
    _tamper("resnet18", lambda w, m: (w, {**m, "stride": [0, 0]}))
    again = load_kernels("resnet18", weights="random")
    assert again.stride == fresh.stride == (2, 2)


def test_entry_with_nan_weights_is_rebuilt_not_blamed_on_a_checkpoint(kc):
    fresh = load_kernels("vgg16", weights="random")

    def poison(w, m):
        w[3, 0, 0, 0] = np.nan
        return w, m

    _tamper("vgg16", poison)
    again = load_kernels("vgg16", weights="random")
    np.testing.assert_array_equal(again.weights, fresh.weights)


def test_entry_of_the_old_format_is_rebuilt_with_bias(kc):
    """A format-1 entry (no bias / dilation / groups) is never read as the current format."""
    fresh = load_kernels("alexnet", weights="random", use_cache=False)
    old_key = {**loading._key("alexnet", None, "random"), "format": 1}
    cache.write_entry(
        old_key,
        fresh.weights * 2,
        {
            "source": "random",
            "layer": "features.0",
            "stride": [4, 4],
            "padding": [2, 2],
            "provenance": {},
        },
    )
    bank = load_kernels("alexnet", weights="random")
    np.testing.assert_array_equal(bank.weights, fresh.weights)
    np.testing.assert_array_equal(bank.bias, fresh.bias)
    assert cache.FORMAT_VERSION >= 2


def test_bias_dilation_groups_travel_through_the_cache(kc):
    import torch

    built = load_kernels("alexnet", weights="random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(loading.RANDOM_SEED)
        net = models.build_model("alexnet", "cpu")
    np.testing.assert_array_equal(built.bias, net.features[0].bias.detach().numpy())
    cached = load_kernels("alexnet", weights="random")
    assert cached.provenance["cached"]
    np.testing.assert_array_equal(cached.bias, built.bias)
    assert (cached.dilation, cached.groups) == ((1, 1), 1)
    assert load_kernels("resnet50", weights="random").bias is None


def test_groups_of_a_depthwise_layer(kc):
    layer = "features.1.conv.0.0"  # MobileNetV2's first depthwise convolution
    for _ in range(2):  # built, then cached
        bank = load_kernels("mobilenet_v2", weights="random", layer=layer)
        assert bank.groups == 32 and bank.weights.shape == (32, 1, 3, 3)
        assert bank.bias is None and bank.dilation == (1, 1)


def test_pretrained_bias_read_from_the_hub_file(kc):
    """A hub file (written here) with the first layer's weight and bias: both are read."""
    import torch

    from napari_kernelspec.sources import pretrained

    rng = np.random.default_rng(7)
    weight = rng.standard_normal((64, 3, 11, 11)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    path = pretrained.hub_checkpoint_path(pretrained.weights_info("alexnet").url)
    path.parent.mkdir(parents=True)
    torch.save(
        {"features.0.weight": torch.from_numpy(weight), "features.0.bias": torch.from_numpy(bias)},
        path,
    )
    for _ in range(2):  # from the hub file, then from the kernel cache
        bank = load_kernels("alexnet", weights="pretrained")
        np.testing.assert_array_equal(bank.weights, weight)
        np.testing.assert_array_equal(bank.bias, bias)
    assert bank.provenance["cached"]


def test_cache_folder_follows_platformdirs(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.delenv("KERNELSPEC_CACHE", raising=False)
    seen = []

    def user_cache_dir(appname, *args, **kwargs):
        seen.append(appname)
        return str(tmp_path / "platform" / appname)

    monkeypatch.setattr(platformdirs, "user_cache_dir", user_cache_dir)
    assert cache.cache_dir() == tmp_path / "platform" / "napari-kernelspec"
    assert seen == ["napari-kernelspec"]
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"
