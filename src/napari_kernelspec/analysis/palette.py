"""Distinct colours for any number of clusters (the seed repeated its 10 after the tenth)."""

from __future__ import annotations

import colorsys

import numpy as np

__all__ = ["UNCLUSTERED_RGB", "cluster_colors", "to_hex"]

#: Colour of unclustered filters where one is drawn (mid grey).
UNCLUSTERED_RGB = (0.55, 0.55, 0.55)

_GOLDEN = 0.618033988749895


def cluster_colors(k: int) -> np.ndarray:
    """`k` distinct, saturated colours.

    Hues step by the golden ratio around the colour wheel, so neighbouring cluster numbers
    get far-apart hues, and no hue repeats; past 12 clusters, lightness and saturation also
    cycle through three levels. (8-bit rounding makes some colours coincide only for
    k in the hundreds; a test checks k <= 200.)

    Returns
    -------
    (k, 3) ndarray of float64
        RGB in [0, 1].
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    out = np.empty((k, 3))
    levels = ((0.50, 0.85), (0.38, 0.95), (0.65, 0.75))
    for i in range(k):
        hue = (0.05 + i * _GOLDEN) % 1.0
        light, sat = levels[(i // 12) % 3] if k > 12 else levels[0]
        out[i] = colorsys.hls_to_rgb(hue, light, sat)
    return out


def to_hex(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """``#rrggbb`` for an RGB triple in [0, 1]."""
    r, g, b = (round(float(c) * 255) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"
