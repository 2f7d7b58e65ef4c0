"""Activation maximisation: known answers on planted Gabor filters, determinism, training."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.imaging.explain.maximize import maximize
from napari_kernelspec.imaging.explain.model import explain_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: (cycles/pixel, degrees) of the planted filters; 15 px, sigma 5: tuning narrow enough that
#: the preferred frequency is well defined.
GABORS = [(0.16, 20), (0.22, 75), (0.27, 130), (0.30, 165)]


def _peak(image: np.ndarray, n: int = 256) -> tuple[float, float]:
    """(frequency in cycles/px, orientation in degrees mod 180) of the amplitude peak."""
    image = image - image.mean()
    window = np.hanning(image.shape[0])[:, None] * np.hanning(image.shape[1])[None, :]
    spec = np.fft.fftshift(np.abs(np.fft.fft2(image * window, s=(n, n))))
    freqs = np.fft.fftshift(np.fft.fftfreq(n))
    iy, ix = np.unravel_index(spec.argmax(), spec.shape)
    fy, fx = freqs[iy], freqs[ix]
    return float(np.hypot(fy, fx)), float(np.degrees(np.arctan2(fy, fx)) % 180)


def _angle_diff(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


@pytest.fixture
def gabor_model(tmp_path, gabor):
    bank = [[gabor(15, f, t, phase=np.pi / 2, sigma=5)] for f, t in GABORS]
    weights = np.asarray(bank, dtype=np.float32)
    path = tmp_path / "gabors.npy"
    np.save(path, weights)
    return explain_model(path, device="cpu"), weights


def test_maximising_images_have_each_filters_frequency_and_orientation(gabor_model):
    model, weights = gabor_model
    res = maximize(model, "conv", range(len(GABORS)), size=64, steps=192, seed=0)
    images = res["images"]
    assert images.shape == (4, 64, 64, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    for k in range(len(GABORS)):
        want_f, want_t = _peak(weights[k, 0])  # the filter's own peak, not the recipe's
        got_f, got_t = _peak(images[k, ..., 0])
        assert abs(got_f - want_f) <= 0.03, (k, got_f, want_f)
        assert _angle_diff(got_t, want_t) <= 5.0, (k, got_t, want_t)


def test_same_seed_same_images_other_filters_other_images(gabor_model):
    model, _ = gabor_model
    kw = {"size": 32, "steps": 6}
    a = maximize(model, "conv", [0, 1], seed=3, **kw)["images"]
    b = maximize(model, "conv", [0, 1], seed=3, **kw)["images"]
    c = maximize(model, "conv", [2, 3], seed=3, **kw)["images"]
    d = maximize(model, "conv", [0, 1], seed=4, **kw)["images"]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3
    assert np.abs(a - d).mean() > 1e-3
    assert np.abs(a[0] - a[1]).mean() > 1e-3


def test_unit_objective_only_shapes_the_units_receptive_field(gabor_model):
    model, _ = gabor_model
    res = maximize(model, "conv", [1], size=48, steps=24, at=(5, 30), transforms=False)
    grad_free = res["images"][0, ..., 0]
    # Without transforms, only pixels the unit sees matter; the Fourier basis spreads every
    # step over the whole image, but the change concentrates inside the unit's 15x15 window.
    start = maximize(model, "conv", [1], size=48, steps=1, at=(5, 30), lr=0.0)["images"]
    moved = np.abs(grad_free - start[0, ..., 0])
    assert moved[5:20, 30:45].mean() > 4 * moved[25:, :20].mean()
    assert res["at"] == [5, 30]


def test_bad_filter_and_layer_are_one_line_errors(gabor_model):
    model, _ = gabor_model
    with pytest.raises(KernelSpecError, match="out of range: conv has 4 filters"):
        maximize(model, "conv", [7], size=32, steps=1)
    with pytest.raises(KernelSpecError, match="give one of: conv"):
        maximize(model, "features.0", [0], size=32, steps=1)


def _concentration(images: np.ndarray) -> np.ndarray:
    """Share of each image's (mean-removed) power in its strongest 1 % of frequencies."""
    x = images[..., 0] - images[..., 0].mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).reshape(len(x), -1)
    power = -np.sort(-power, axis=1)
    return power[:, : power.shape[1] // 100].sum(axis=1) / power.sum(axis=1)


def test_trained_lenet5_conv2_images_differ_from_untrained():
    trained = explain_model("lenet5", weights="pretrained", device="cpu")
    assert trained.source == "trained-digits"
    untrained = explain_model("lenet5", weights="random", device="cpu")
    kw = {"size": 32, "steps": 96, "seed": 0}
    a = maximize(trained, "conv2", range(16), **kw)
    b = maximize(untrained, "conv2", range(16), **kw)
    assert np.abs(a["images"] - b["images"]).mean() > 0.1
    assert _concentration(a["images"]).mean() > _concentration(b["images"]).mean()


def _reference_maximize(model, layer, filters, size, steps, seed, lr=0.05):
    """The loop `maximize` ran before the objective engine (kept here as the reference)."""
    import torch

    from napari_kernelspec.imaging.explain.maximize import layer_output
    from napari_kernelspec.imaging.explain.parameterisation import (
        _random_warp,
        _spectrum_scale,
        _to_pixels,
        objective,
    )

    hw = (size, size)
    scale = _spectrum_scale(*hw, "cpu")
    gen = torch.Generator().manual_seed(seed * 1_000_003)
    shape = (len(filters), model.channels, size, size // 2 + 1, 2)
    spectrum = (torch.randn(shape, generator=gen) * 0.01).requires_grad_(True)
    which = torch.as_tensor(filters)
    opt = torch.optim.Adam([spectrum], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        seen = _random_warp(_to_pixels(spectrum, scale, hw), gen)
        (-objective(layer_output(model, layer, seen), which).sum()).backward()
        opt.step()
    with torch.no_grad():
        return _to_pixels(spectrum, scale, hw).permute(0, 2, 3, 1).numpy()


def test_maximize_on_the_engine_equals_the_reference_loop(gabor_model):
    model, _ = gabor_model
    got = maximize(model, "conv", [0, 2, 3], size=32, steps=12, seed=5)["images"]
    want = _reference_maximize(model, "conv", [0, 2, 3], 32, 12, 5)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


#: Gabors with a DC component (cosine phase: a non-zero sum), both signs of the sum.
DC_GABORS = [(0.12, 20, 0.0, 5), (0.16, 75, 0.0, 5), (0.117, 40, 0.5, 4), (0.297, 150, 0.5, 4)]


def test_gabors_with_a_dc_component_get_their_own_frequency(tmp_path, gabor):
    weights = np.asarray(
        [[gabor(15, f, t, phase=p, sigma=s)] for f, t, p, s in DC_GABORS], dtype=np.float32
    )
    sums = weights.sum(axis=(1, 2, 3))
    assert sums.min() < -1 and sums.max() > 1  # a real DC component, both signs
    path = tmp_path / "dc.npy"
    np.save(path, weights)
    model = explain_model(path, device="cpu")
    images = maximize(model, "conv", range(len(DC_GABORS)), size=64, steps=128, seed=0)["images"]
    for k in range(len(DC_GABORS)):
        want_f, want_t = _peak(weights[k, 0])
        got_f, got_t = _peak(images[k, ..., 0])
        assert abs(got_f - want_f) <= 0.03, (k, got_f, want_f)
        assert _angle_diff(got_t, want_t) <= 10.0, (k, got_t, want_t)


def test_achromatic_filters_get_achromatic_images(tmp_path, gabor):
    grey = [gabor(11, f, t, phase=p) for f, t, p in [(0.2, 0, 0.0), (0.25, 60, np.pi / 2)]]
    weights = np.asarray([[g, g, g] for g in grey] + [[grey[1], -grey[1], 0 * grey[1]]])
    path = tmp_path / "grey.npy"
    np.save(path, weights.astype(np.float32))
    model = explain_model(path, device="cpu")
    images = maximize(model, "conv", [0, 1, 2], size=48, steps=64, seed=0)["images"]
    colour = [np.abs(i - i.mean(axis=-1, keepdims=True)).mean() / i.std() for i in images]
    # The grey filters' images keep only the faint colour noise of the start (the colour
    # axes get no gradient); the red-green filter's image is coloured.
    assert max(colour[:2]) < 0.15, colour
    assert colour[2] > 3 * max(colour[:2]), colour
