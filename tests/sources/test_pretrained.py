"""The torch hub cache path, downloading, and reading one tensor from a weights file."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources import pretrained


@pytest.fixture
def pt_env(tmp_path, monkeypatch):
    """A private TORCH_HOME; returns its hub checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_weights_info_matches_torchvision():
    from torchvision.models import get_model_weights

    info = pretrained.weights_info("alexnet")
    assert info.enum_name == "AlexNet_Weights.IMAGENET1K_V1"
    assert info.url == get_model_weights("alexnet").DEFAULT.url
    assert info.filename == "alexnet-owt-7be5be79.pth"


@pytest.mark.parametrize("model", sorted(pretrained.SEED_WEIGHTS))
def test_the_seed_weights_table_is_torchvisions_default(model):
    from torchvision.models import get_model_weights

    weights = get_model_weights(model).DEFAULT
    info = pretrained.SEED_WEIGHTS[model]
    assert info.enum_name == f"{type(weights).__name__}.{weights.name}"
    assert info.url == weights.url


def test_hub_path_is_torchvisions(pt_env):
    import torch

    info = pretrained.weights_info("resnet50")
    path = pretrained.hub_checkpoint_path(info.url)
    assert path == pt_env / info.filename
    assert path.parent == __import__("pathlib").Path(torch.hub.get_dir()) / "checkpoints"


def test_ensure_checkpoint_without_download(pt_env):
    info = pretrained.weights_info("resnet50")
    with pytest.raises(pretrained.WeightsUnavailable) as err:
        pretrained.ensure_checkpoint(info, download=False)
    assert str(pt_env / info.filename) in str(err.value)
    assert isinstance(err.value, KernelSpecError)


def test_download_failure_leaves_nothing(pt_env, tmp_path):
    info = pretrained.WeightsInfo("X.V1", (tmp_path / "absent" / "x-123.pth").as_uri())
    with pytest.raises(pretrained.WeightsUnavailable, match="could not be downloaded"):
        pretrained.ensure_checkpoint(info)
    assert not list(pt_env.glob("*"))


@pytest.mark.parametrize("legacy", [False, True])
def test_read_tensor(tmp_path, legacy):
    import torch

    weight = torch.randn(4, 3, 5, 5)
    path = tmp_path / "w.pth"
    state = {"a.weight": torch.randn(2), "conv.weight": weight}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    out = pretrained.read_tensor(path, "conv.weight")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, weight.numpy())
    with pytest.raises(KernelSpecError, match=r"no tensor 'nope\.weight'"):
        pretrained.read_tensor(path, "nope.weight")


def test_read_tensor_old_densenet_names(tmp_path):
    import torch

    weight = torch.randn(128, 64, 1, 1)
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save({"features.denseblock1.denselayer1.conv.1.weight": weight}, path)
    out = pretrained.read_tensor(path, "features.denseblock1.denselayer1.conv1.weight")
    np.testing.assert_array_equal(out, weight.numpy())


def test_read_tensor_refuses_code(tmp_path):
    import torch

    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.ones(1, 1, 3, 3), "x": Payload()}, path)
    with pytest.raises(KernelSpecError, match="refusing to unpickle"):
        pretrained.read_tensor(path, "conv.weight")
    assert not marker.exists()
