"""Fourier spectra of convolution kernels.

Two methods:

``"seed"``
    The seed tool's pipeline, reproduced exactly: input channel 0 only, cubic-spline resize
    to 16x16 (``scipy.ndimage.zoom``, order 3), ``fft2``, ``fftshift``, ``abs``, ``log1p``,
    cubic resize to 32x32. Its bins depend on the kernel size, so it has no physical axis.
``"response"``
    The true frequency response: every channel zero-padded to n x n and transformed, so bin
    ``k`` of the (uncentred) spectrum is ``np.fft.fftfreq(n)[k]`` cycles/pixel for *every*
    kernel size. Power ``P = sum_c |H_c|^2`` combines the colour channels.

Both resizes of the seed pipeline are linear, so they are applied as one precomputed matrix
to the whole stack: the same numbers as a per-kernel ``zoom`` loop, many times faster.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..base.bank import as_stack

__all__ = [
    "METHODS",
    "SEED_FFT_SIZE",
    "SEED_SPECTRUM_SIZE",
    "ac_power",
    "centred_frequencies",
    "radial_profile",
    "resolved_amplitude",
    "response_power",
    "response_powers",
    "response_spectra",
    "seed_spectra",
    "spectra",
    "tuning_features",
]

METHODS = ("response", "seed")
SEED_FFT_SIZE = 16
SEED_SPECTRUM_SIZE = 32
_CHUNK = 256  # filters per FFT batch in `response_power`


@lru_cache(maxsize=64)
def _zoom_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Matrix of the 1-D cubic-spline zoom ``scipy.ndimage.zoom(x, n_out / n_in, order=3)``.

    Returns
    -------
    (n_out, n_in) ndarray
        Column j is the zoom of the j-th unit vector, so ``A @ x`` equals the zoom of any x
        (zoom is linear in its input).
    """
    from scipy.ndimage import zoom

    basis = np.eye(n_in)
    matrix = np.stack([zoom(e, n_out / n_in, order=3) for e in basis], axis=1)
    matrix.setflags(write=False)
    return matrix


def _batch_zoom(images: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Cubic-spline zoom of every image in an (N, H, W) stack to `out_shape`.

    The 2-D spline zoom is separable (prefilter and interpolation act axis by axis), so it
    is ``A @ X @ B.T`` with the 1-D matrices of the two axes: the same numbers as calling
    ``zoom`` on each image, for the whole stack at once.
    """
    rows = _zoom_matrix(images.shape[1], out_shape[0])
    cols = _zoom_matrix(images.shape[2], out_shape[1])
    return rows @ images @ cols.T


def seed_spectra(weights: np.ndarray) -> np.ndarray:
    """The seed tool's spectrum of every filter.

    Parameters
    ----------
    weights : (N, C, H, W) array_like
        Filters; only input channel 0 is used, as in the seed tool.

    Returns
    -------
    (N, 32, 32) ndarray of float64
        ``zoom(log1p(|fftshift(fft2(zoom(w[:, 0], 16x16))))|), 32x32)``, both zooms cubic.
    """
    weights = as_stack(weights)
    small = _batch_zoom(weights[:, 0], (SEED_FFT_SIZE, SEED_FFT_SIZE))
    magnitude = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(small), axes=(-2, -1))))
    return _batch_zoom(magnitude, (SEED_SPECTRUM_SIZE, SEED_SPECTRUM_SIZE))


def response_power(weights: np.ndarray, n_fft: int = 64) -> np.ndarray:
    """Power of the zero-padded frequency response, summed over input channels.

    Parameters
    ----------
    weights : (N, C, H, W) array_like
        Filters.
    n_fft : int
        DFT size; must be at least the kernel size. Bin ``k`` along each axis is
        ``np.fft.fftfreq(n_fft)[k]`` cycles/pixel.

    Returns
    -------
    (N, n_fft, n_fft) ndarray of float64
        ``P = sum_c |H_c|^2``, uncentred (DC at ``[0, 0]``); axis -2 is the vertical (row)
        frequency v, axis -1 the horizontal (column) frequency u.
    """
    return _powers(weights, n_fft, full=True, ac=False)[0]


def response_powers(weights: np.ndarray, n_fft: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """`response_power` and `ac_power` of the same filters from one FFT.

    Returns
    -------
    power, ac_power : (N, n_fft, n_fft) ndarray of float64
    """
    full, ac = _powers(weights, n_fft, full=True, ac=True)
    return full, ac


def _channel_power(spectrum: np.ndarray) -> np.ndarray:
    """``sum_c |X_c|^2`` of a complex (N, C, n, m) stack, as (N, n, m) float64.

    One einsum over the interleaved real and imaginary parts: twice as fast as
    ``real**2 + imag**2``, whose strided views make temporaries.
    """
    parts = spectrum.view(np.float64)
    squares = np.einsum("ncij,ncij->nij", parts, parts)
    return squares[..., 0::2] + squares[..., 1::2]


def _powers(weights: np.ndarray, n_fft: int, *, full: bool, ac: bool) -> list[np.ndarray]:
    """The full and/or mean-removed power planes of the zero-padded filters."""
    weights = as_stack(weights)
    n, _, h, w = weights.shape
    if n_fft < max(h, w):
        raise ValueError(f"n_fft={n_fft} is smaller than the kernel size {(h, w)}")
    from scipy import fft

    # Real input: the half plane holds everything; the other half is its mirror image,
    # P(-v, -u) = P(v, u). Chunks keep the complex intermediate small for big layers.
    half = n_fft // 2 + 1
    wanted = [centre for centre, want in ((False, full), (True, ac)) if want]
    outputs = [np.empty((n, n_fft, n_fft)) for _ in wanted]
    for start in range(0, n, _CHUNK):
        chunk = weights[start : start + _CHUNK]
        for out, centre in zip(outputs, wanted, strict=True):
            x = chunk - chunk.mean(axis=(2, 3), keepdims=True) if centre else chunk
            # rfft2 with zero padding, one axis at a time: the first (along each row)
            # transform runs on the kernel's H rows only, not on n_fft mostly-zero rows.
            rows_done = fft.rfft(x, n=n_fft, axis=-1, workers=-1)
            power_half = _channel_power(fft.fft(rows_done, n=n_fft, axis=-2, workers=-1))
            block = out[start : start + _CHUNK]
            block[:, :, :half] = power_half
            negated_rows = np.concatenate([power_half[:, :1], power_half[:, :0:-1]], axis=1)
            block[:, :, half:] = negated_rows[:, :, n_fft - half : 0 : -1]
    return outputs


def centred_frequencies(n_fft: int) -> np.ndarray:
    """Cycles/pixel along each axis of a centred (``fftshift``-ed) spectrum, shape (n_fft,)."""
    return np.fft.fftshift(np.fft.fftfreq(n_fft))


def response_spectra(power: np.ndarray) -> np.ndarray:
    """Display spectrum of the response method: ``log1p`` of the centred amplitude.

    Parameters
    ----------
    power : (N, n, n) ndarray
        Output of `response_power`.

    Returns
    -------
    (N, n, n) ndarray of float64
        ``log1p(sqrt(P))`` with DC in the centre (``fftshift``); the axis is
        `centred_frequencies`.
    """
    return np.log1p(np.sqrt(np.fft.fftshift(power, axes=(-2, -1))))


def ac_power(weights: np.ndarray, n_fft: int = 64) -> np.ndarray:
    """Power of the filters' structure: `response_power` with each channel's mean removed.

    Zero padding turns a kernel's mean (its DC part) into a sinc main lobe about
    ``n_fft / k`` bins wide, so dropping only the DC bin of `response_power` leaves most of a
    flat component in place. Removing the mean over the kernel's support first leaves exactly
    what varies inside the filter: the spectrum that tuning similarity and the frequency and
    orientation descriptors compare. The DC itself is reported separately (``dc_ratio``).

    Parameters
    ----------
    weights : (N, C, H, W) array_like
    n_fft : int

    Returns
    -------
    (N, n_fft, n_fft) ndarray of float64
        Uncentred, exactly 0 at DC up to rounding; all zero for a constant filter.
    """
    return _powers(weights, n_fft, full=False, ac=True)[0]


def resolved_amplitude(weights: np.ndarray) -> np.ndarray:
    """Amplitude spectra at the frequencies the kernel size resolves, without DC.

    An H x W kernel is fully described by its H x W DFT (bins ``fftfreq(H) x fftfreq(W)``
    cycles/pixel); zero padding only interpolates between those bins, which makes
    neighbouring values of a padded spectrum correlated and inflates the similarity of
    unrelated filters. The Pearson correlation of these rows is the tuning similarity of the
    ``"response"`` method.

    Parameters
    ----------
    weights : (..., C, H, W) array_like
        Filters; leading axes (filters, surrogate banks) are kept.

    Returns
    -------
    (..., H * W - 1) ndarray of float64
        ``sqrt(sum_c |DFT(h_c - mean(h_c))|^2)`` over every bin but DC, flattened: invariant
        to weight scale, sign, mean and circular shift. Empty (last axis 0) for 1x1 kernels,
        which have no spatial structure.
    """
    x = np.asarray(weights, dtype=np.float64)
    if x.ndim < 3 or 0 in x.shape:
        raise ValueError(f"weights must be a non-empty (..., C, H, W) array, got {x.shape}")
    from scipy import fft

    x = x - x.mean(axis=(-2, -1), keepdims=True)
    spectrum = fft.fft2(x, axes=(-2, -1), workers=-1)
    power = (spectrum.real**2 + spectrum.imag**2).sum(axis=-3)
    flat = power.reshape(*power.shape[:-2], -1)[..., 1:]
    return np.sqrt(flat)


#: DFT size of `tuning_features` (at least the kernel size).
FEATURE_GRID = 32

#: Colour axes of `tuning_features` for three input channels: luminance, red-green and
#: blue-yellow, orthonormal (so white noise stays white on every axis).
OPPONENT = np.array(
    [
        [1.0, 1.0, 1.0],
        [1.0, -1.0, 0.0],
        [1.0, 1.0, -2.0],
    ]
) / np.array([[np.sqrt(3.0)], [np.sqrt(2.0)], [np.sqrt(6.0)]])


def colour_axes(weights: np.ndarray) -> np.ndarray:
    """Filters on colour axes: luminance / red-green / blue-yellow for three channels
    (`OPPONENT`), the channels themselves otherwise.

    Parameters
    ----------
    weights : (..., C, H, W) array_like

    Returns
    -------
    (..., C, H, W) ndarray of float64
    """
    x = np.asarray(weights, dtype=np.float64)
    if x.shape[-3] != 3:
        return x
    return np.einsum("ac,...chw->...ahw", OPPONENT, x)


def tuning_features(
    weights: np.ndarray, grid: int = FEATURE_GRID, dtype: type = np.float64, exponent: float = 1.0
) -> np.ndarray:
    """What the ``"response"`` tuning similarity compares: amplitude spectra per colour axis.

    Each filter is put on its colour axes (`colour_axes`), each axis's mean over the
    kernel is removed (DC), and each axis is zero-padded to ``grid x grid`` and transformed;
    the amplitudes of the non-redundant half plane (``rfft2``) without the DC bin, axis after
    axis, are the features. Their Pearson correlation is the tuning similarity: invariant to
    weight scale, sign, mean and position (phase); filters of one shape in different
    colours (grey, red-green, blue-yellow) share no axis, so they are not alike.

    Parameters
    ----------
    weights : (..., C, H, W) array_like
        Leading axes (filters, null banks) are kept.
    grid : int
        DFT size (raised to the kernel size where smaller).
    dtype : {np.float64, np.float32}
        Precision of the transform (float32 for the many null layers: half the time).
    exponent : float
        The amplitudes raised to this power (the ``"response"`` similarity uses
        `chance.TUNING_EXPONENT`), computed from the power in one step.

    Returns
    -------
    (..., C * (grid * (grid // 2 + 1) - 1)) ndarray of `dtype`
        Empty (last axis 0) for 1x1 kernels, which have no spatial structure.
    """
    x = np.asarray(weights, dtype=np.float64)
    if x.ndim < 3 or 0 in x.shape:
        raise ValueError(f"weights must be a non-empty (..., C, H, W) array, got {x.shape}")
    if x.shape[-1] == 1 and x.shape[-2] == 1:
        return np.zeros((*x.shape[:-3], 0), dtype=dtype)

    h, w = x.shape[-2:]
    grid = max(int(grid), h, w)
    x = colour_axes(x)
    x = (x - x.mean(axis=(-2, -1), keepdims=True)).astype(dtype, copy=False)
    # The zero-padded DFT as two products with precomputed cos / sin matrices: the kernels
    # are small, so this skips the padding copies and the FFT's per-transform overhead
    # (0.9 -> 0.2 s for 199 null layers of 64x3x7x7 on this 2-core machine).
    cos_r, sin_r, cos_c, sin_c = (m.astype(dtype) for m in _dft_matrices(h, w, grid))
    lead = x.shape[:-2]
    flat = x.reshape(-1, w)
    a = (flat @ cos_c.T).reshape(-1, h, cos_c.shape[0])  # (M, h, half)
    b = (flat @ sin_c.T).reshape(-1, h, cos_c.shape[0])
    a = np.ascontiguousarray(a.transpose(0, 2, 1)).reshape(-1, h)  # (M * half, h)
    b = np.ascontiguousarray(b.transpose(0, 2, 1)).reshape(-1, h)
    real = a @ cos_r.T - b @ sin_r.T  # (M * half, grid)
    imag = a @ sin_r.T + b @ cos_r.T
    power = real * real + imag * imag
    amplitude = np.sqrt(power) if exponent == 1.0 else np.power(power, 0.5 * exponent)
    # back to (..., grid, half) row-major, as rfft2's half plane, then drop DC
    amplitude = amplitude.reshape(-1, cos_c.shape[0], grid).transpose(0, 2, 1)
    amplitude = amplitude.reshape(*lead, -1)[..., 1:]
    return amplitude.reshape(*x.shape[:-3], -1)


@lru_cache(maxsize=32)
def _dft_matrices(h: int, w: int, grid: int) -> tuple[np.ndarray, ...]:
    """cos and sin of the zero-padded DFT: rows (grid, h) and half-plane columns (half, w)."""
    rows = 2 * np.pi * np.outer(np.arange(grid), np.arange(h)) / grid
    cols = 2 * np.pi * np.outer(np.arange(grid // 2 + 1), np.arange(w)) / grid
    out = (np.cos(rows), np.sin(rows), np.cos(cols), np.sin(cols))
    for m in out:
        m.setflags(write=False)
    return out


def spectra(weights: np.ndarray, method: str = "response", n_fft: int = 64) -> np.ndarray:
    """Display spectra of every filter by `method` (``"response"`` or ``"seed"``).

    Returns
    -------
    (N, S, S) ndarray
        S = `n_fft` for ``"response"`` and 32 for ``"seed"``; DC in the centre.
    """
    if method == "seed":
        return seed_spectra(weights)
    if method == "response":
        return response_spectra(response_power(weights, n_fft))
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def radial_profile(power: np.ndarray, n_bins: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Mean power against radial frequency, each filter normalised to unit total power.

    Parameters
    ----------
    power : (N, n, n) ndarray
        Output of `response_power` (uncentred).
    n_bins : int
        Number of equal-width bins over 0 to 0.5 cycles/pixel (the Nyquist radius; the
        corners beyond it are left out).

    Returns
    -------
    centres : (n_bins,) ndarray
        Bin centres in cycles/pixel.
    profile : (n_bins,) ndarray
        Share of power per bin, averaged over filters: a model-level fingerprint that is
        comparable across kernel sizes.
    """
    power = np.asarray(power, dtype=np.float64)
    if power.ndim != 3 or power.shape[1] != power.shape[2]:
        raise ValueError(f"power must be (N, n, n), got {power.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    f = np.fft.fftfreq(power.shape[1])
    rho = np.hypot(f[:, None], f[None, :]).ravel()
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    which = np.clip(np.digitize(rho, edges) - 1, 0, n_bins - 1)
    inside = rho <= 0.5
    flat = power.reshape(len(power), -1)
    share = flat / flat.sum(axis=1, keepdims=True)
    per_bin = np.zeros((len(power), n_bins))
    np.add.at(per_bin.T, which[inside], share[:, inside].T)
    return (edges[:-1] + edges[1:]) / 2, per_bin.mean(axis=0)
