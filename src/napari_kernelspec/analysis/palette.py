"""Distinct colours for any number of clusters or models (the seed repeated its 10).

Colours are picked greedily for the largest smallest perceptual difference (CIEDE2000 in
CIELAB, computed with scikit-image) from a grid of sRGB colours of medium lightness, away from
the page's white, the unclustered grey and black text. Colour ``i`` is the same whatever ``k``
is, so cluster 0 keeps its colour when more clusters appear. A hue wheel stepped by the golden
ratio (the former method) gave two near-identical greens among 8 models and near-identical
borders among 21 clusters; this palette keeps every pair of the first 30 colours at least
16 CIEDE2000 units apart (tests/analysis/test_palette.py).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["UNCLUSTERED_RGB", "cluster_colors", "to_hex"]

#: Colour of unclustered filters where one is drawn (mid grey).
UNCLUSTERED_RGB = (0.55, 0.55, 0.55)

_LEVELS = 12  # sRGB grid of 12^3 colours, 1287 of them in the lightness band
_LIGHTNESS = (32.0, 85.0)  # CIELAB L*: readable on white, not black
_AVOID = ((1.0, 1.0, 1.0), UNCLUSTERED_RGB, (0.0, 0.0, 0.0))  # page, unclustered, text
_BLOCK = 32  # colours computed at a time

#: The first 64 colours of the sequence as sRGB grid levels (0-11), so that up to 64 colours
#: cost no computation and no scikit-image import (computing them takes about 0.5 s, most of
#: it importing skimage.color); a test recomputes them.
# fmt: off
_FIRST = (
    (1, 1, 11), (7, 1, 0), (0, 10, 0), (0, 4, 0), (11, 1, 11), (10, 8, 0), (11, 5, 2), (0, 9, 9),
    (7, 0, 4), (0, 6, 11), (11, 7, 8), (0, 5, 5), (5, 4, 2), (8, 8, 11), (11, 1, 4), (5, 6, 0),
    (4, 4, 6), (8, 9, 7), (2, 7, 5), (6, 4, 4), (10, 8, 7), (6, 5, 11), (7, 5, 7), (8, 5, 0),
    (4, 4, 4), (7, 2, 8), (5, 9, 11), (8, 9, 1), (0, 4, 6), (0, 10, 7), (11, 7, 11), (7, 8, 8),
    (2, 7, 8), (8, 7, 5), (10, 2, 1), (4, 5, 4), (8, 5, 4), (8, 7, 8), (11, 7, 2), (0, 7, 0),
    (11, 2, 7), (0, 4, 11), (6, 3, 0), (8, 2, 3), (5, 3, 5), (6, 6, 8), (9, 5, 6), (7, 6, 0),
    (1, 4, 3), (6, 7, 5), (10, 9, 6), (9, 9, 10), (11, 5, 5), (8, 3, 6), (6, 7, 8), (4, 5, 6),
    (2, 3, 7), (6, 9, 8), (6, 5, 4), (8, 6, 10), (4, 6, 6), (4, 5, 2), (5, 8, 0), (8, 4, 1),
)
# fmt: on


@functools.lru_cache(maxsize=8)
def _greedy(n: int) -> np.ndarray:
    """The first `n` colours of the greedy max-min sequence, ``(n, 3)`` RGB in [0, 1]."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    levels = np.linspace(0.0, 1.0, _LEVELS)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = rgb2lab(rgb[None])[0]
    keep = (lab[:, 0] >= _LIGHTNESS[0]) & (lab[:, 0] <= _LIGHTNESS[1])
    rgb, lab = rgb[keep], lab[keep]

    def distance_to(colour_lab: np.ndarray) -> np.ndarray:
        return deltaE_ciede2000(lab, np.broadcast_to(colour_lab, lab.shape))

    avoid = rgb2lab(np.asarray([_AVOID], dtype=float))[0]
    nearest = np.min([distance_to(a) for a in avoid], axis=0)
    order = []
    for _ in range(min(n, len(rgb))):
        best = int(np.argmax(nearest))
        order.append(best)
        nearest = np.minimum(nearest, distance_to(lab[best]))
        nearest[best] = -np.inf
    return rgb[order]


def cluster_colors(k: int) -> np.ndarray:
    """`k` distinct colours, perceptually spaced (see the module docstring).

    Beyond the 1287 colours of the grid (far more than anyone can tell apart) the sequence
    repeats.

    Parameters
    ----------
    k : int
        Number of colours, >= 0.

    Returns
    -------
    (k, 3) ndarray of float64
        RGB in [0, 1]; row ``i`` does not depend on `k`.
    """
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise ValueError(f"k must be a whole number >= 0, got {k!r}")
    k = int(k)
    if k <= len(_FIRST):
        return np.linspace(0.0, 1.0, _LEVELS)[np.asarray(_FIRST[:k], dtype=int).reshape(k, 3)]
    palette = _greedy(-(-k // _BLOCK) * _BLOCK)
    return palette[np.arange(k) % len(palette)].copy()


def to_hex(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """``#rrggbb`` for an RGB triple in [0, 1]."""
    r, g, b = (round(float(c) * 255) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"
