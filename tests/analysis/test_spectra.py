"""Spectra: the seed pipeline reproduced exactly, and a true, size-independent frequency axis."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import zoom

from napari_kernelspec.analysis import spectra
from napari_kernelspec.analysis.clustering import pearson_similarity


def seed_reference(kernel: np.ndarray) -> np.ndarray:
    """The seed tool's spectrum of one filter, written plainly, one kernel at a time."""
    channel0 = kernel[0]
    small = zoom(channel0, (16 / channel0.shape[0], 16 / channel0.shape[1]), order=3)
    magnitude = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(small))))
    return zoom(magnitude, (32 / 16, 32 / 16), order=3)


@pytest.mark.parametrize("shape", [(5, 3, 3, 3), (4, 3, 7, 7), (3, 1, 5, 5), (2, 3, 11, 11)])
def test_seed_spectra_match_per_kernel_zoom(shape):
    weights = np.random.default_rng(sum(shape)).normal(size=shape)
    expected = np.stack([seed_reference(k) for k in weights])
    np.testing.assert_allclose(spectra.seed_spectra(weights), expected, rtol=0, atol=1e-12)


def test_seed_spectra_use_channel_zero_only():
    weights = np.random.default_rng(1).normal(size=(2, 3, 7, 7))
    changed = weights.copy()
    changed[:, 1:] *= -5.0
    np.testing.assert_array_equal(spectra.seed_spectra(weights), spectra.seed_spectra(changed))


def test_response_power_is_the_zero_padded_dft_summed_over_channels():
    weights = np.random.default_rng(2).normal(size=(3, 3, 7, 7))
    expected = (np.abs(np.fft.fft2(weights, s=(32, 32))) ** 2).sum(axis=1)
    np.testing.assert_allclose(spectra.response_power(weights, 32), expected, rtol=1e-10)


@pytest.mark.parametrize("size", [3, 5, 7, 11])
def test_response_peak_lands_on_the_same_cycles_per_pixel_for_every_kernel_size(size):
    # A 0.25 cycles/pixel horizontal grating: the seed's bins move with k, ours must not.
    x = np.arange(size)
    kernel = np.cos(2 * np.pi * 0.25 * x)[None, :].repeat(size, axis=0)
    power = spectra.response_power(kernel[None, None], 64)[0]
    power[0, 0] = 0
    v, u = np.unravel_index(np.argmax(power), power.shape)
    f = np.fft.fftfreq(64)
    assert abs(abs(f[u]) - 0.25) < 1 / size  # within the kernel's own resolution
    assert f[v] == 0


def test_response_spectra_are_centred_on_dc():
    weights = np.ones((1, 1, 5, 5))
    shown = spectra.spectra(weights, "response", n_fft=16)
    freqs = spectra.centred_frequencies(16)
    centre = np.unravel_index(np.argmax(shown[0]), shown[0].shape)
    assert freqs[centre[0]] == 0 and freqs[centre[1]] == 0


def test_resolved_amplitude_ignores_scale_sign_mean_and_circular_shift():
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(1, 3, 7, 7))
    moved = np.roll(kernel, (2, -3), axis=(2, 3))
    both = np.concatenate([kernel, -3.0 * moved + 0.7])  # shifted, scaled, negated, offset
    t = spectra.resolved_amplitude(both)
    assert t.shape == (2, 7 * 7 - 1)  # every DFT bin of a 7x7 kernel but DC
    np.testing.assert_allclose(t[1], 3.0 * t[0], rtol=1e-10)
    # the kernel's own DFT: Parseval holds, so nothing was interpolated or lost
    centred = kernel - kernel.mean(axis=(2, 3), keepdims=True)
    assert (t[0] ** 2).sum() == pytest.approx(49 * (centred**2).sum())


def test_resolved_amplitude_of_a_1x1_kernel_is_empty():
    assert spectra.resolved_amplitude(np.ones((4, 3, 1, 1))).shape == (4, 0)


def test_a_mean_offset_does_not_make_different_filters_alike(gabor):
    # Zero padding smears a kernel's mean over the low frequencies: dropping the DC bin alone
    # would make two orthogonal Gabors look alike once both carry an offset.
    weights = np.stack([gabor(7, 0.3, 0.0), gabor(7, 0.3, 90.0)])[:, None]
    for offset in (0.0, 0.3):
        t = spectra.resolved_amplitude(weights + offset)
        assert pearson_similarity(t)[0, 1] < 0.1, offset


def test_ac_power_is_zero_for_a_constant_filter():
    assert np.allclose(spectra.ac_power(np.full((1, 3, 5, 5), 2.0), 16), 0.0)


def test_radial_profile_puts_a_grating_in_its_band():
    x = np.arange(11)
    kernel = np.cos(2 * np.pi * 0.3 * x)[None, :].repeat(11, axis=0) * np.hanning(11)[:, None]
    centres, profile = spectra.radial_profile(spectra.response_power(kernel[None, None], 64), 10)
    assert centres[np.argmax(profile)] == pytest.approx(0.325)
    assert profile.sum() <= 1.0 + 1e-12


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="method"):
        spectra.spectra(np.ones((1, 1, 3, 3)), "fft")
    with pytest.raises(ValueError, match="n_fft"):
        spectra.response_power(np.ones((1, 1, 11, 11)), 8)
    with pytest.raises(ValueError, match="N, C, H, W"):
        spectra.seed_spectra(np.ones((3, 3)))


@pytest.mark.parametrize("n_fft", [7, 8, 33, 64])
def test_response_power_rebuilds_the_full_plane_for_odd_and_even_sizes(n_fft):
    weights = np.random.default_rng(n_fft).normal(size=(300, 2, 5, 7))  # > one FFT chunk
    expected = (np.abs(np.fft.fft2(weights, s=(n_fft, n_fft))) ** 2).sum(axis=1)
    np.testing.assert_allclose(spectra.response_power(weights, n_fft), expected, rtol=1e-9)


def test_ac_power_is_the_power_of_the_mean_removed_filters():
    weights = np.random.default_rng(5).normal(1.0, 1.0, size=(300, 3, 5, 7))  # > one chunk
    centred = weights - weights.mean(axis=(2, 3), keepdims=True)
    expected = (np.abs(np.fft.fft2(centred, s=(16, 16))) ** 2).sum(axis=1)
    np.testing.assert_allclose(spectra.ac_power(weights, 16), expected, rtol=1e-9, atol=1e-9)
    full, ac = spectra.response_powers(weights, 16)
    np.testing.assert_array_equal(full, spectra.response_power(weights, 16))
    np.testing.assert_array_equal(ac, spectra.ac_power(weights, 16))
