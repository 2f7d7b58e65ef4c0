"""Class explanations on the trained LeNet5: faithfulness by deletion, GrabCut, targets."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.imaging.explain.classes import (
    class_attribution,
    class_names,
    predict,
)
from napari_kernelspec.imaging.explain.methods import explain_class

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _delete(x: np.ndarray, scores: np.ndarray, share: float = 0.2) -> np.ndarray:
    """Set to 0 the `share` of each image's pixels with the largest score."""
    out = x.copy()
    for i, s in enumerate(scores):
        top = np.argsort(-s.ravel(), kind="stable")[: int(share * s.size)]
        out[i, 0].flat[top] = 0.0
    return out


def _true_probability(model, x, y):
    return predict(model, x)[np.arange(len(y)), y]


@pytest.mark.parametrize(
    "method", ["gradcam", "gradient", "smoothgrad", "integrated-gradients", "occlusion"]
)
def test_deleting_the_most_attributed_pixels_lowers_the_true_class(trained_lenet5, method):
    # Petsiuk et al. 2018: the 20 % of pixels with the largest attribution (summed over
    # channels; Grad-CAM upsampled to the input) against 20 % random pixels.
    model, x, y = trained_lenet5
    before = _true_probability(model, x, y)
    rng = np.random.default_rng(0)
    random_drop = (
        before - _true_probability(model, _delete(x, rng.random((20, 32, 32))), y)
    ).mean()
    res = class_attribution(model, x, method, y)
    attr = res["attributions"]
    assert attr.shape == ((20, 1, 32, 32))
    assert res["targets"] == y.tolist()
    drop = (before - _true_probability(model, _delete(x, attr.sum(axis=1)), y)).mean()
    assert drop >= 0.2, (drop, random_drop)
    assert drop >= random_drop + 0.15, (drop, random_drop)


def test_grabcut_from_saliency_finds_the_digit(trained_lenet5):
    model, x, y = trained_lenet5
    res = class_attribution(model, x, "grabcut", y)
    masks = res["masks"]
    assert masks.shape == (20, 32, 32) and masks.dtype == bool
    truth = x[:, 0] > 0.25
    iou = [(m & t).sum() / (m | t).sum() for m, t in zip(masks, truth, strict=True)]
    assert np.median(iou) >= 0.4, iou


def test_predicted_class_is_the_default_target_and_names_are_digits(trained_lenet5):
    model, x, y = trained_lenet5
    res = explain_class(model, x[0, 0], "gradcam")
    meta = res.meta
    assert meta["target_class"] == meta["predicted_class"] == int(y[0])
    assert meta["target_name"] == str(y[0]) and meta["predicted_probability"] > 0.5
    assert meta["layer"] == "conv2"  # Grad-CAM's default: the last convolution
    assert res.attributions.shape == (1, 1, 32, 32) and res.attributions.min() >= 0
    assert class_names(model) == [str(i) for i in range(10)]
    other = explain_class(model, x[0, 0], "guided", target=(int(y[0]) + 1) % 10)
    assert other.meta["target_class"] == (int(y[0]) + 1) % 10
    assert any("no ReLU" in c for c in other.meta["caveats"])  # LeNet5 uses tanh


def test_bad_class_and_method_are_errors(trained_lenet5):
    model, x, _ = trained_lenet5
    with pytest.raises(KernelSpecError, match=r"class 10 is out of range: .* \(0\.\.9\)"):
        explain_class(model, x[0, 0], "gradient", target=10)
    with pytest.raises(KernelSpecError, match="method must be one of"):
        explain_class(model, x[0, 0], "deconvnet")


def test_imagenet_models_name_their_classes():
    import warnings

    from napari_kernelspec.imaging.explain.model import explain_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = explain_model("alexnet", weights="random", device="cpu")
    names = class_names(model, 1000)
    assert names is not None and len(names) == 1000 and names[281] == "tabby"
