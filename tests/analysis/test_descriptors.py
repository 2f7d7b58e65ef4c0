"""Descriptors give the right numbers on filters whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.analysis.descriptors import DESCRIPTOR_NAMES, descriptors
from napari_kernelspec.analysis.spectra import response_power


def run(weights, stride=(1, 1), n_fft=128):
    weights = np.asarray(weights, dtype=np.float64)
    return descriptors(weights, response_power(weights, n_fft), stride)


@pytest.mark.parametrize("frequency", [0.1, 0.2, 0.3])
def test_peak_and_centroid_frequency_of_gabors(gabor, frequency):
    d = run(gabor(15, frequency, 0.0, sigma=4.0)[None, None])
    assert d["peak_frequency"][0] == pytest.approx(frequency, abs=0.012)
    assert d["centroid_frequency"][0] == pytest.approx(frequency, abs=0.02)
    assert 0 < d["bandwidth"][0] < 0.1


@pytest.mark.parametrize("theta", [0.0, 30.0, 45.0, 90.0, 135.0, 170.0])
def test_orientation_of_gabors(gabor, theta):
    d = run(gabor(15, 0.25, theta, sigma=4.0)[None, None])
    error = (d["orientation_deg"][0] - theta + 90) % 180 - 90
    assert abs(error) < 1.0
    assert d["orientation_selectivity"][0] > 0.9


@pytest.mark.parametrize("offset", [0.0, 0.5, -2.0])
def test_a_mean_offset_changes_only_the_dc_ratio(gabor, offset):
    g = gabor(11, 0.25, 60.0, sigma=3.0)[None, None]
    plain, shifted = run(g), run(g + offset)
    for name in (
        "peak_frequency",
        "centroid_frequency",
        "orientation_deg",
        "orientation_selectivity",
    ):
        assert shifted[name][0] == pytest.approx(plain[name][0], abs=1e-9), name
    assert (shifted["dc_ratio"][0] > plain["dc_ratio"][0]) == (offset != 0.0)


def test_isotropic_blob_has_no_orientation_preference():
    y, x = np.mgrid[:15, :15] - 7
    dog = np.exp(-(x**2 + y**2) / 4) - 0.5 * np.exp(-(x**2 + y**2) / 16)
    d = run(dog[None, None])
    assert d["orientation_selectivity"][0] < 0.05


def test_dc_ratio_is_one_for_a_flat_filter_and_zero_for_a_balanced_one():
    flat = np.ones((1, 3, 5, 5))
    balanced = np.zeros((1, 3, 5, 5))
    balanced[0, :, :, :2], balanced[0, :, :, 3:] = 1.0, -1.0
    d = run(np.concatenate([flat, balanced]))
    np.testing.assert_allclose(d["dc_ratio"], [1.0, 0.0], atol=1e-12)


def test_achromatic_fraction_tells_grey_from_colour_opponent(gabor):
    g = gabor(7, 0.2, 0.0)
    grey = np.stack([g, g, g])
    red_green = np.stack([g, -g, np.zeros_like(g)])
    d = run(np.stack([grey, red_green]))
    np.testing.assert_allclose(d["achromatic_fraction"], [1.0, 0.0], atol=1e-12)


def test_aliasing_fraction_counts_power_beyond_the_strided_nyquist(gabor):
    low, high = gabor(21, 0.05, 0.0, sigma=6.0), gabor(21, 0.4, 0.0, sigma=6.0)
    weights = np.stack([low, high])[:, None]
    at_stride_1 = run(weights, (1, 1))["aliasing_fraction"]
    at_stride_4 = run(weights, (4, 4))["aliasing_fraction"]
    np.testing.assert_array_equal(at_stride_1, [0.0, 0.0])  # nothing exceeds 0.5 c/px
    assert at_stride_4[0] < 0.05  # 0.05 c/px survives subsampling by 4 (limit 0.125)
    assert at_stride_4[1] > 0.9  # 0.4 c/px folds over


def test_every_descriptor_is_present_and_finite():
    weights = np.random.default_rng(0).normal(size=(9, 3, 7, 7))
    d = run(weights, (2, 2), 64)
    assert tuple(d) == DESCRIPTOR_NAMES
    for name, values in d.items():
        assert values.shape == (9,), name
        assert np.isfinite(values).all(), name
    for name in (
        "orientation_selectivity",
        "dc_ratio",
        "aliasing_fraction",
        "achromatic_fraction",
    ):
        assert ((d[name] >= 0) & (d[name] <= 1)).all(), name
    assert ((d["orientation_deg"] >= 0) & (d["orientation_deg"] < 180)).all()


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="equal N"):
        descriptors(np.ones((2, 1, 3, 3)), np.ones((3, 8, 8)))
    with pytest.raises(ValueError, match="stride"):
        descriptors(np.ones((1, 1, 3, 3)), np.ones((1, 8, 8)), (0, 1))


def test_descriptors_a_1x1_kernel_cannot_define_are_nan_with_a_note():
    from napari_kernelspec import KernelBank, analyze

    w = np.random.default_rng(0).normal(size=(6, 3, 1, 1))
    result = analyze(KernelBank(w, "lpips", "lin0", "array"))
    defined = {"aliasing_fraction", "achromatic_fraction"}
    for name in set(DESCRIPTOR_NAMES) - defined:
        assert np.isnan(result.descriptors[name]).all(), name
    assert np.isfinite(result.descriptors["aliasing_fraction"]).all()
    assert np.isfinite(result.descriptors["achromatic_fraction"]).all()  # 3 channels mix
    assert len(result.notes) == 1 and "1x1" in result.notes[0]
    assert result.n_clusters == 0  # no tuning to share
    row = result.to_dict()["filters"][0]
    assert row["peak_frequency"] is None and row["dc_ratio"] is None


def test_one_axis_kernels_have_no_orientation_and_grey_layers_no_colour():
    from napari_kernelspec import KernelBank, analyze

    x = np.arange(7)
    wave = np.cos(2 * np.pi * 0.25 * x)[None, None, None, :] * np.ones((4, 1, 1, 7))
    wave = wave + np.random.default_rng(1).normal(scale=0.01, size=wave.shape)
    result = analyze(KernelBank(wave, "inception", "1x7", "array"))
    assert np.isnan(result.descriptors["orientation_deg"]).all()
    assert np.isnan(result.descriptors["achromatic_fraction"]).all()  # one input channel
    np.testing.assert_allclose(result.descriptors["peak_frequency"], 0.25, atol=0.02)
    assert len(result.notes) == 2
    assert any("orientation" in n for n in result.notes)
    assert any("achromatic" in n for n in result.notes)
