"""LeNet5 trained on scikit-learn's digits: accurate, deterministic, cached."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_kernelspec.sources import digits
from napari_kernelspec.sources.loading import load_kernels


@pytest.fixture(scope="module")
def trained_bank(tmp_path_factory):
    """LeNet5 trained once for this module, in its own cache folder."""
    root = tmp_path_factory.mktemp("digits")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERNELSPEC_CACHE", str(root / "kc"))
        mp.setenv("TORCH_HOME", str(root / "torch"))
        bank = load_kernels("lenet5")
    return bank, root / "kc"


def test_accuracy_and_provenance(trained_bank):
    bank, _ = trained_bank
    assert bank.source == "trained-digits" and bank.is_trained
    assert bank.model == "lenet5" and bank.display_name == "LeNet5"
    assert bank.layer == "conv1" and bank.weights.shape == (6, 1, 5, 5)
    assert bank.stride == (1, 1) and bank.padding == (0, 0)
    assert bank.provenance["accuracy"] >= 0.90
    assert bank.provenance["n_test"] == 450
    assert bank.provenance["seed"] == 0
    json.dumps(bank.to_dict())  # JSON-safe


def test_training_is_deterministic(trained_bank, tmp_path, monkeypatch):
    import torch

    bank, _ = trained_bank
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "other"))
    again = load_kernels("LeNet5", weights="pretrained")
    assert again.provenance["cached"] is False
    np.testing.assert_array_equal(bank.weights, again.weights)
    assert again.provenance["accuracy"] == bank.provenance["accuracy"]
    # global torch settings are restored
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_cached_state_dict_is_reused(trained_bank, monkeypatch):
    bank, kc = trained_bank
    monkeypatch.setenv("KERNELSPEC_CACHE", str(kc))
    assert digits.state_dict_path(kc).is_file()

    def no_training():
        raise AssertionError("trained again despite the cache")

    monkeypatch.setattr(digits, "train_lenet5", no_training)
    cached = load_kernels("lenet5", weights="auto")
    assert cached.provenance["cached"] is True
    np.testing.assert_array_equal(cached.weights, bank.weights)
    # another layer comes from the cached state dict, without training
    conv2 = load_kernels("lenet5", layer="conv2")
    assert conv2.weights.shape == (16, 6, 5, 5)
    assert conv2.source == "trained-digits"
    assert conv2.provenance["accuracy"] == bank.provenance["accuracy"]


def test_random_lenet5_differs(trained_bank):
    bank, _ = trained_bank
    rnd = load_kernels("lenet5", weights="random", use_cache=False)
    assert rnd.source == "random"
    assert not np.array_equal(rnd.weights, bank.weights)
    np.testing.assert_array_equal(
        rnd.weights, load_kernels("lenet5", weights="random", use_cache=False).weights
    )


def test_damaged_state_dict_cache_retrains(trained_bank, tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))
    path = digits.state_dict_path(tmp_path / "kc")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 broken")
    calls = []
    fake = {"conv1.weight": np.ones((6, 1, 5, 5), np.float32)}

    def quick():
        calls.append(1)
        return fake, 0.95

    monkeypatch.setattr(digits, "train_lenet5", quick)
    bank = load_kernels("lenet5")
    assert calls == [1]
    np.testing.assert_array_equal(bank.weights, fake["conv1.weight"])
    with np.load(path) as data:  # rewritten, valid
        assert "conv1.weight" in data.files


def test_dataset_split():
    x_train, _, x_test, y_test = digits.load_digits_32()
    assert x_train.shape[1:] == (1, 32, 32) and x_test.shape[1:] == (1, 32, 32)
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 450
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))
