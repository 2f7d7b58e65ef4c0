"""Images made by the trained LeNet5: class visualisation, inversion, DeepDream, texture, style."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.imaging.explain import engine
from napari_kernelspec.imaging.explain.classes import predict
from napari_kernelspec.imaging.explain.methods import synthesize_images
from napari_kernelspec.imaging.explain.synthesis import synthesize

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features(model, pixels, layer):
    """(K, C, H, W) -> the layer's (K, N, h, w) output, by a forward hook on the network
    itself (independent of the engine's own measurements)."""
    import torch

    out = []
    module = model.net.get_submodule(model.prefix + layer)
    hook = module.register_forward_hook(lambda _m, _i, o: out.append(o.detach().numpy()))
    try:
        with torch.no_grad():
            model.net(torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)))
    finally:
        hook.remove()
    return out[0].astype(np.float64)


def _chw(images):
    return np.moveaxis(np.asarray(images), -1, 1)


def _gram(f):
    flat = f.reshape(f.shape[0], f.shape[1], -1)
    return flat @ flat.transpose(0, 2, 1) / flat.shape[-1]


def _relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_class_visualisation_of_every_digit_is_that_digit(trained_lenet5):
    model, _, _ = trained_lenet5
    res = synthesize(model, "class", target=list(range(10)), steps=256, seed=0)
    images = res["images"]
    assert images.shape == (10, 32, 32, 1) and images.min() >= 0 and images.max() <= 1
    probs = predict(model, np.moveaxis(images, -1, 1))
    assert np.all(probs[np.arange(10), np.arange(10)] >= 0.9), probs.max(axis=1)


def test_inversion_at_conv1_reconstructs_the_digit(trained_lenet5):
    model, x, _ = trained_lenet5
    res = synthesize(model, "invert", layers=["conv1"], image=x[0], steps=300, seed=0)
    assert res["start"]["feature_error"] > 0.5  # from noise
    assert res["end"]["feature_error"] <= 0.10
    assert res["end"]["correlation"] >= 0.5
    # the same, measured here on the written image
    made = _chw(res["images"])
    assert _relative(_features(model, made, "conv1"), _features(model, x[:1], "conv1")) <= 0.10
    assert np.corrcoef(made.ravel(), x[0].ravel())[0, 1] >= 0.5


def test_deepdream_raises_the_layers_activation(trained_lenet5):
    model, x, _ = trained_lenet5
    for layer in ("conv1", "conv2"):
        res = synthesize(model, "dream", layers=[layer], image=x[1])
        ratio = res["end"]["activation_energy"] / res["start"]["activation_energy"]
        assert ratio >= 2.0, (layer, ratio)  # the objective: mean square activation
        assert res["end"]["activation_norm"] > 1.5 * res["start"]["activation_norm"]
        before = np.linalg.norm(_features(model, x[1:2], layer))
        after = np.linalg.norm(_features(model, _chw(res["images"]), layer))
        assert after >= 1.5 * before, (layer, after / before)  # pixels stay in [0, 1]


def test_texture_matches_the_gram_matrices(trained_lenet5):
    model, x, _ = trained_lenet5
    res = synthesize(model, "texture", layers=["conv1", "conv2"], image=x[2], seed=0)
    for layer in ("conv1", "conv2"):
        assert res["end"][f"gram_error_{layer}"] <= 0.10, res["end"]
        want = _gram(_features(model, x[2:3], layer))
        assert _relative(_gram(_features(model, _chw(res["images"]), layer)), want) <= 0.10
        assert res["start"][f"gram_error_{layer}"] > 2 * res["end"][f"gram_error_{layer}"]
    assert np.corrcoef(res["images"][..., 0].ravel(), x[2].ravel())[0, 1] < 0.9  # not a copy


def test_style_transfer_from_noise_halves_both_losses(trained_lenet5):
    model, x, _ = trained_lenet5
    res = synthesize(
        model, "style", layers=["conv2", "conv1", "conv2"], image=x[0], style_image=x[5], seed=0
    )
    for loss in ("content_loss", "style_loss"):
        assert res["end"][loss] <= 0.5 * res["start"][loss], (loss, res["start"], res["end"])


def test_objectives_compose_and_need_only_their_layers(trained_lenet5):
    import torch

    model, x, _ = trained_lenet5
    obj = engine.ClassLogit(3) - 0.5 * engine.L2() + 2 * engine.ActivationNorm("conv1")
    assert obj.layers == ("conv1",) and obj.logits
    pixels = torch.from_numpy(x[:2])
    acts = engine.activations(model, pixels, obj.layers, logits=True)
    want = (
        acts["logits"][:, 3]
        - 0.5 * (pixels - 0.5).pow(2).flatten(1).mean(1)
        + 2 * acts["conv1"].pow(2).flatten(1).mean(1)
    )
    torch.testing.assert_close(obj(acts, pixels), want)
    prob = engine.ClassProbability(3)(acts, pixels)
    torch.testing.assert_close(prob, acts["logits"].log_softmax(1)[:, 3])
    tv = engine.TotalVariation()(acts, torch.zeros(1, 1, 4, 4))
    assert float(tv) == 0.0
    same = engine.FeatureMatch("conv1", acts["conv1"])(acts, pixels)
    torch.testing.assert_close(same, torch.zeros(2))
    early = engine.activations(model, pixels, ["conv1"])  # stops after conv1
    assert set(early) == {"conv1"}


def test_meta_names_the_classes_and_bad_input(trained_lenet5):
    model, x, _ = trained_lenet5
    res = synthesize_images(model, "class", target=[7], steps=8)
    assert res.meta["target_class"] == 7 and res.meta["target_name"] == "7"
    assert isinstance(res.meta["predicted_probability"], list)
    with pytest.raises(KernelSpecError, match="'nope' is not a layer of LeNet5"):
        synthesize(model, "dream", layers=["nope"], image=x[0])
    with pytest.raises(KernelSpecError, match="class 12 is out of range"):
        synthesize(model, "class", target=[12], steps=1)
