"""Per-filter descriptors read off the zero-padded frequency response.

Notation: ``u, v = fftfreq(n)`` are the horizontal (column) and vertical (row) frequencies in
cycles/pixel, ``rho = sqrt(u^2 + v^2)``, ``phi = atan2(v, u)``, ``P`` the power summed over
channels and ``P'`` the power of the filter with each channel's mean removed
(`spectra.ac_power`): what varies inside the filter, without the DC part that zero padding
would otherwise smear over the lowest frequencies.

======================== ==================================================================
descriptor               definition
======================== ==================================================================
peak_frequency           rho at argmax P' (cycles/pixel)
centroid_frequency       f_c = sum(rho P') / sum(P')
bandwidth                sqrt(sum((rho - f_c)^2 P') / sum(P'))
orientation_deg          theta = arg(z) / 2 in [0, 180), z = sum(P' e^{2i phi}) / sum(P'):
                         the direction of the dominant wave vector, measured from the +x
                         (column) axis towards +y (rows, i.e. *down* on screen)
orientation_selectivity  |z| in [0, 1]: 0 isotropic, 1 a single orientation
dc_ratio                 sqrt(sum_c (sum h_c)^2) / (sqrt(H W) sqrt(sum_c ||h_c||^2)) in
                         [0, 1]: 1 for a flat (mean-only) filter
aliasing_fraction        share of P with |u| > 1/(2 s_x) or |v| > 1/(2 s_y) for stride s:
                         power the layer's subsampling folds onto other frequencies
achromatic_fraction      ||sum_c h_c||^2 / (C sum_c ||h_c||^2) in [0, 1]: 1 for a grey
                         filter (same kernel in every channel), 0 for a pure colour-opponent
======================== ==================================================================
"""

from __future__ import annotations

import numpy as np

__all__ = ["DESCRIPTOR_LABELS", "DESCRIPTOR_NAMES", "descriptors", "undefined_descriptors"]

DESCRIPTOR_NAMES = (
    "peak_frequency",
    "centroid_frequency",
    "bandwidth",
    "orientation_deg",
    "orientation_selectivity",
    "dc_ratio",
    "aliasing_fraction",
    "achromatic_fraction",
)

DESCRIPTOR_LABELS = {
    "peak_frequency": "peak freq. (c/px)",
    "centroid_frequency": "centroid freq. (c/px)",
    "bandwidth": "bandwidth (c/px)",
    "orientation_deg": "orientation (°)",
    "orientation_selectivity": "orient. selectivity",
    "dc_ratio": "DC ratio",
    "aliasing_fraction": "aliasing fraction",
    "achromatic_fraction": "achromatic fraction",
}


def descriptors(
    weights: np.ndarray,
    power: np.ndarray,
    stride: tuple[int, int] = (1, 1),
    ac_power: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Compute every descriptor of `DESCRIPTOR_NAMES` for every filter.

    Parameters
    ----------
    weights : (N, C, H, W) array_like
        The filters (non-zero).
    power : (N, n, n) array_like
        Their power spectra from `spectra.response_power` (uncentred, DC at ``[0, 0]``).
    stride : (int, int)
        The layer's (row, column) stride, for the aliasing fraction.
    ac_power : (N, n, n) array_like, optional
        `spectra.ac_power` of the same filters and size, if already computed.

    Returns
    -------
    dict of str to (N,) ndarray of float64
    """
    weights = np.asarray(weights, dtype=np.float64)
    power = np.asarray(power, dtype=np.float64)
    if weights.ndim != 4 or power.ndim != 3 or len(weights) != len(power):
        raise ValueError(
            f"need weights (N, C, H, W) and power (N, n, n) with equal N, got "
            f"{weights.shape} and {power.shape}"
        )
    sy, sx = (int(s) for s in stride)
    if sy < 1 or sx < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n_filters, n_channels, h, w = weights.shape
    n = power.shape[-1]

    f = np.fft.fftfreq(n)
    v, u = np.meshgrid(f, f, indexing="ij")
    rho = np.hypot(u, v).ravel()
    rotor = np.exp(2j * np.arctan2(v, u)).ravel()

    if ac_power is None:
        from .spectra import ac_power as structure_power

        ac_power = structure_power(weights, n)
    ac_power = np.asarray(ac_power, dtype=np.float64)
    if ac_power.shape != power.shape:
        raise ValueError(f"ac_power has shape {ac_power.shape}, power {power.shape}")
    flat = power.reshape(n_filters, -1)
    ac = ac_power.reshape(n_filters, -1).copy()
    ac[:, 0] = 0.0
    ac_total = ac.sum(axis=1)
    # A constant filter has no structure: report zeros.
    safe = np.where(ac_total > 0, ac_total, 1.0)
    weights_ac = ac / safe[:, None]

    peak = rho[np.argmax(ac, axis=1)]
    peak = np.where(ac_total > 0, peak, 0.0)
    centroid = weights_ac @ rho
    bandwidth = np.sqrt(np.maximum(weights_ac @ rho**2 - centroid**2, 0.0))
    z = weights_ac @ rotor
    orientation = np.mod(np.degrees(np.angle(z)) / 2.0, 180.0)
    selectivity = np.abs(z)

    sums = weights.sum(axis=(2, 3))  # (N, C)
    energy = (weights**2).sum(axis=(1, 2, 3))  # (N,)
    dc_ratio = np.sqrt((sums**2).sum(axis=1)) / (np.sqrt(h * w) * np.sqrt(energy))

    alias_mask = ((np.abs(u) > 1 / (2 * sx)) | (np.abs(v) > 1 / (2 * sy))).ravel()
    aliasing = flat[:, alias_mask].sum(axis=1) / flat.sum(axis=1)

    grey = weights.sum(axis=1)  # (N, H, W)
    achromatic = (grey**2).sum(axis=(1, 2)) / (n_channels * energy)

    return {
        "peak_frequency": peak,
        "centroid_frequency": centroid,
        "bandwidth": bandwidth,
        "orientation_deg": orientation,
        "orientation_selectivity": selectivity,
        "dc_ratio": np.clip(dc_ratio, 0.0, 1.0),
        "aliasing_fraction": aliasing,
        "achromatic_fraction": np.clip(achromatic, 0.0, 1.0),
    }


#: What a 1x1 kernel cannot define: everything but aliasing and colour.
_SPATIAL = tuple(
    n for n in DESCRIPTOR_NAMES if n not in ("aliasing_fraction", "achromatic_fraction")
)


def undefined_descriptors(
    values: dict[str, np.ndarray], shape: tuple[int, ...]
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Mark descriptors the layer's shape cannot define as NaN, with one note line each.

    A 1x1 kernel has no spatial structure: its spectrum is flat, so frequencies, orientation
    and the DC ratio (always 1) say nothing. A 1xk or kx1 kernel varies along one axis only:
    its orientation is fixed by the shape. One input channel has no colour: its achromatic
    fraction is always 1.

    Parameters
    ----------
    values : dict of str to (N,) ndarray
        Output of `descriptors`.
    shape : (N, C, H, W) tuple

    Returns
    -------
    values : dict of str to (N,) ndarray of float64
        A new dict; undefined entries are NaN (null in JSON, "n/a" in tables).
    notes : tuple of str
    """
    _, channels, h, w = (int(v) for v in shape)
    out = dict(values)
    notes: list[str] = []
    undefined: tuple[str, ...] = ()
    if h == 1 and w == 1:
        undefined = _SPATIAL
        notes.append(
            "1x1 kernels have no spatial structure: frequencies, bandwidth, orientation and "
            "DC ratio are undefined (n/a), and no two filters share a tuning"
        )
    elif h == 1 or w == 1:
        undefined = ("orientation_deg", "orientation_selectivity")
        notes.append(f"{h}x{w} kernels vary along one axis only: orientation is undefined (n/a)")
    if channels == 1:
        undefined += ("achromatic_fraction",)
        notes.append("one input channel: the achromatic fraction is undefined (n/a)")
    for name in undefined:
        out[name] = np.full(len(values[name]), np.nan)
    return out, tuple(notes)
