"""LeNet5 trained on scikit-learn's digits: shipped with its recipe and SHA-256, re-trainable."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from napari_kernelspec.sources import digits
from napari_kernelspec.sources.loading import load_kernels


@pytest.fixture(scope="module")
def shipped():
    return digits.read_shipped()


@pytest.fixture(scope="module")
def retrained():
    """LeNet5 trained once with the recipe, here, with the first layer of every epoch."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    history = {}

    def keep(epoch, state):
        history[f"epoch_{epoch:03d}"] = {k: state[k] for k in ("conv1.weight", "conv1.bias")}

    state, accuracy = digits.train_lenet5(on_epoch=keep)
    # global torch settings are restored
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    return state, accuracy, history


def test_the_shipped_file_is_the_one_its_sha256_names(shipped):
    raw = digits.shipped_path().read_bytes()
    assert hashlib.sha256(raw).hexdigest() == digits.SHIPPED_SHA256
    state, info, history = shipped
    assert info["recipe"] == digits.RECIPE and info["n_test"] == 450
    assert info["accuracy"] >= 0.95
    assert state["conv1.weight"].shape == (6, 1, 5, 5) and state["fc3.weight"].shape[0] == 10
    assert list(history) == [f"epoch_{k:03d}" for k in range(digits.RECIPE["epochs"] + 1)]
    # the last step of the history is the trained first layer
    np.testing.assert_array_equal(history["epoch_012"]["conv1.weight"], state["conv1.weight"])
    # near chance before training, trained after
    assert info["epoch_accuracy"][0] < 0.3 and info["epoch_accuracy"][-1] == info["accuracy"]


def test_the_first_history_step_is_the_seeded_initialisation(shipped):
    pytest.importorskip("torch")
    from napari_kernelspec.sources.models import lenet5_class

    with digits._deterministic_torch(int(digits.RECIPE["seed"])):
        init = lenet5_class()().conv1.weight.detach().numpy()
    np.testing.assert_array_equal(shipped[2]["epoch_000"]["conv1.weight"], init)


def test_retraining_with_the_recipe_matches_the_shipped_weights(shipped, retrained):
    state, accuracy, history = retrained
    shipped_state, info, shipped_history = shipped
    assert abs(accuracy - info["accuracy"]) <= 0.01  # within one point on the held-out 25 %
    import torch

    if torch.__version__.split("+")[0] == info["made_with"]["torch"]:
        # the recipe is deterministic: the same torch makes the same weights, bit for bit
        for key, value in shipped_state.items():
            np.testing.assert_array_equal(state[key], value, err_msg=key)
        for step, layer in shipped_history.items():
            np.testing.assert_array_equal(history[step]["conv1.weight"], layer["conv1.weight"])


def test_lenet5_loads_the_shipped_weights_without_training(monkeypatch, tmp_path):
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))

    def no_training(*args, **kwargs):
        raise AssertionError("trained despite the shipped weights")

    monkeypatch.setattr(digits, "train_lenet5", no_training)
    bank = load_kernels("lenet5")
    assert bank.source == "trained-digits" and bank.is_trained
    assert bank.model == "lenet5" and bank.display_name == "LeNet5"
    assert bank.layer == "conv1" and bank.weights.shape == (6, 1, 5, 5)
    assert bank.stride == (1, 1) and bank.padding == (0, 0)
    assert bank.provenance["shipped"] is True
    assert bank.provenance["sha256"] == digits.SHIPPED_SHA256
    assert bank.provenance["accuracy"] >= 0.95 and bank.provenance["n_test"] == 450
    assert bank.provenance["seed"] == 0
    json.dumps(bank.to_dict())  # JSON-safe
    conv2 = load_kernels("lenet5", layer="conv2")  # another layer of the same state dict
    assert conv2.weights.shape == (16, 6, 5, 5) and conv2.source == "trained-digits"


def test_loading_lenet5_imports_no_torch(tmp_path):
    code = (
        "import sys\n"
        "from napari_kernelspec.sources.loading import load_kernels, loads_without_torch\n"
        "assert loads_without_torch('lenet5')\n"
        "bank = load_kernels('lenet5')\n"
        "assert bank.provenance['shipped'] and 'torch' not in sys.modules, sorted(sys.modules)\n"
    )
    env = {"KERNELSPEC_CACHE": str(tmp_path / "kc"), "PATH": "/usr/bin:/bin"}
    import os

    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.fixture
def fake_training(monkeypatch):
    """Training replaced by a stand-in that counts its calls: (calls, the state it returns)."""
    calls: list[int] = []
    fake = {"conv1.weight": np.ones((6, 1, 5, 5), np.float32)}

    def quick():
        calls.append(1)
        return fake, 0.95

    monkeypatch.setattr(digits, "train_lenet5", quick)
    monkeypatch.setattr(digits, "load_digits_32", lambda: (None, None, None, np.zeros(450)))
    return calls, fake


def test_a_damaged_shipped_file_is_not_used(monkeypatch, tmp_path, caplog, fake_training):
    broken = tmp_path / digits.SHIPPED_FILE
    raw = bytearray(digits.shipped_path().read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte
    broken.write_bytes(bytes(raw))
    monkeypatch.setattr(digits, "shipped_path", lambda: broken)
    with pytest.raises(ValueError, match="SHA-256"):
        digits.read_shipped()
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))
    calls, fake = fake_training
    bank = load_kernels("lenet5")
    assert calls == [1] and bank.provenance["shipped"] is False
    np.testing.assert_array_equal(bank.weights, fake["conv1.weight"])
    assert "not using the shipped LeNet5 weights" in caplog.text
    # trained once, then cached: no second training
    state, info = digits.trained_lenet5()
    assert calls == [1] and info["cached"] is True and info["shipped"] is False
    np.testing.assert_array_equal(state["conv1.weight"], fake["conv1.weight"])


def test_damaged_state_dict_cache_retrains(tmp_path, monkeypatch, fake_training):
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))
    monkeypatch.setattr(digits, "shipped_path", lambda: tmp_path / "missing.npz")
    path = digits.state_dict_path(tmp_path / "kc")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 broken")
    calls, fake = fake_training
    bank = load_kernels("lenet5")
    assert calls == [1]
    np.testing.assert_array_equal(bank.weights, fake["conv1.weight"])
    with np.load(path) as data:  # rewritten, valid
        assert "conv1.weight" in data.files


def test_random_lenet5_differs(shipped):
    rnd = load_kernels("lenet5", weights="random", use_cache=False)
    assert rnd.source == "random"
    assert not np.array_equal(rnd.weights, shipped[0]["conv1.weight"])
    np.testing.assert_array_equal(
        rnd.weights, load_kernels("lenet5", weights="random", use_cache=False).weights
    )


def test_dataset_split():
    x_train, _, x_test, y_test = digits.load_digits_32()
    assert x_train.shape[1:] == (1, 32, 32) and x_test.shape[1:] == (1, 32, 32)
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 450
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))
