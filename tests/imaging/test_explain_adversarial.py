"""Adversarial examples on the trained LeNet5: PGD fools it within 0.3, FGSM says when not."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.imaging.explain.adversarial import iter_adversarial
from napari_kernelspec.imaging.explain.classes import predict
from napari_kernelspec.imaging.explain.methods import adversarial_example
from napari_kernelspec.imaging.explain.model import drive

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pgd_turns_every_digit_into_the_next_within_the_budget(trained_lenet5):
    model, x, y = trained_lenet5
    target = (y + 1) % 10
    res = drive(iter_adversarial(model, x, target, 0.3, "pgd"))
    assert res["fooled"].all()
    assert np.array_equal(res["predicted_after"], target)
    assert np.array_equal(predict(model, res["images"]).argmax(axis=1), target)  # re-measured
    used = res["epsilon_used"]
    assert used.max() <= 0.3 + 1e-6
    assert np.abs(res["images"] - x).reshape(20, -1).max(axis=1) == pytest.approx(used)
    assert res["images"].min() >= 0 and res["images"].max() <= 1
    assert np.median(used) < 0.3  # it stops once the target wins


def test_fgsm_says_when_it_fails(trained_lenet5):
    model, x, y = trained_lenet5
    res = drive(iter_adversarial(model, x, (y + 1) % 10, 0.3, "fgsm"))
    assert not res["fooled"].all()  # one step is too crude for most digits
    after = predict(model, res["images"]).argmax(axis=1)
    assert np.array_equal(after == (y + 1) % 10, res["fooled"])  # re-measured
    failed = int(np.flatnonzero(~res["fooled"])[0])
    target = int((y[failed] + 1) % 10)
    ex = adversarial_example(model, x[failed, 0], target, 0.3, "fgsm")
    meta = ex.meta
    assert meta["fooled"] is False and meta["predicted_class_after"] != target
    assert any(c.startswith("FGSM did not make the network say class") for c in meta["caveats"])
    assert meta["epsilon_used"] == pytest.approx(0.3, abs=1e-6)


def test_example_meta_and_arrays(trained_lenet5):
    model, x, y = trained_lenet5
    ex = adversarial_example(model, x[0, 0], int((y[0] + 1) % 10), 0.3, "pgd")
    meta = ex.meta
    assert meta["fooled"] is True and meta["predicted_class"] == int(y[0])
    assert meta["predicted_class_after"] == int((y[0] + 1) % 10)
    assert 0 < meta["epsilon_used"] <= 0.3 and meta["probability_after"] > 0.1
    assert ex.images.shape == (1, 32, 32, 1)
    np.testing.assert_allclose(
        ex.arrays["original"] + ex.arrays["perturbation"], ex.images, atol=1e-6
    )
    with pytest.raises(KernelSpecError, match="epsilon is 0"):
        adversarial_example(model, x[0, 0], 1, 0.0)
