"""Weights variants: ``IMAGENET1K_V1`` by name, and any variant's cached file used by ``auto``.

The "V1 file" is a MobileNetV2 state dict written by the test at the hub cache path of
torchvision's V1 URL (its bytes are not the published ones: a file at the exact name is taken,
as torchvision takes it; a renamed copy must match the URL's hash prefix, which it does not).
Downloads go to a closed local port, so nothing is fetched.
"""

from __future__ import annotations

import json
import socket
import warnings

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources import pretrained
from napari_kernelspec.sources.loading import UntrainedWeightsWarning, load_kernels


@pytest.fixture
def v1_file(monkeypatch):
    import torch
    import torchvision

    with socket.socket() as sock:  # a port nobody listens on: every download fails at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("KERNELSPEC_TORCHVISION_MIRROR", f"http://127.0.0.1:{port}")
    info = pretrained.weights_info("mobilenet_v2", "IMAGENET1K_V1")
    assert info.enum_name == "MobileNet_V2_Weights.IMAGENET1K_V1"
    assert pretrained.weights_info("mobilenet_v2").variant == "IMAGENET1K_V2"  # the DEFAULT
    torch.manual_seed(7)
    state = torchvision.models.mobilenet_v2(weights=None).state_dict()
    path = pretrained.hub_checkpoint_path(info.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path, state["features.0.0.weight"].numpy()


def test_a_named_variant_and_auto_use_the_cached_v1_file(v1_file):
    path, expected = v1_file
    named = load_kernels("mobilenet_v2", weights="IMAGENET1K_V1", use_cache=False)
    np.testing.assert_array_equal(named.weights, expected)
    assert named.provenance["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1"
    assert named.provenance["file"] == str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        for weights in ("auto", "pretrained"):
            bank = load_kernels("mobilenet_v2", weights=weights, use_cache=False)
            np.testing.assert_array_equal(bank.weights, expected)
            assert bank.source == "pretrained" and bank.provenance["variant"] == "IMAGENET1K_V1"


def test_a_renamed_file_that_does_not_match_the_hash_is_not_taken(v1_file):
    path, _ = v1_file
    path.rename(path.with_name("mobilenet_v2-mine.pth"))
    assert pretrained.cached_variant("mobilenet_v2") is None
    with pytest.warns(UntrainedWeightsWarning):
        bank = load_kernels("mobilenet_v2", weights="auto", use_cache=False)
    assert bank.source == "random"
    with pytest.raises(pretrained.WeightsUnavailable):
        load_kernels("mobilenet_v2", weights="IMAGENET1K_V1", use_cache=False)


def test_a_renamed_file_with_the_published_hash_prefix_is_taken(v1_file, monkeypatch):
    """A copy under another name counts when its SHA-256 starts with the URL's prefix."""
    import hashlib

    path, _ = v1_file
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    v1 = pretrained.weights_info("mobilenet_v2", "IMAGENET1K_V1")
    url = v1.url.replace(v1.filename, f"mobilenet_v2-{digest}.pth")
    real = pretrained.variants

    def with_our_hash(model):
        return [
            pretrained.WeightsInfo(i.enum_name, url if i.enum_name == v1.enum_name else i.url)
            for i in real(model)
        ]

    monkeypatch.setattr(pretrained, "variants", with_our_hash)
    renamed = path.rename(path.with_name("mobilenet_v2-copy.pth"))
    found = pretrained.cached_variant("mobilenet_v2")
    assert found is not None and found.found_at == str(renamed)
    assert found.enum_name == v1.enum_name


def test_weights_names_on_the_command_line(cli, v1_file):
    code, out, err = cli("analyze", "mobilenet_v2", "--weights", "IMAGENET1K_V1", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["provenance"]["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1"
    code, _, err = cli("analyze", "mobilenet_v2", "--weights", "IMAGENET1K_V9")
    assert code == 2 and err.count("\n") == 1
    assert "no weights named 'IMAGENET1K_V9'" in err and "IMAGENET1K_V2" in err
    code, _, err = cli("analyze", "mobilenet_v2", "--weights", "bogus")
    assert code == 2 and "torchvision weights name" in err


def test_unknown_variant_in_python_lists_the_names():
    with pytest.raises(KernelSpecError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        pretrained.weights_info("mobilenet_v2", "imagenet1k_v7")


def test_cli_errors_say_weights_random_in_cli_syntax(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("KERNELSPEC_TORCHVISION_MIRROR", f"http://127.0.0.1:{port}")
    code, _, err = cli("analyze", "alexnet", "--weights", "pretrained")
    assert code == 2 and "--weights random" in err and "weights='random'" not in err
