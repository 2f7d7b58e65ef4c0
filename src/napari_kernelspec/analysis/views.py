"""Kernel views (what a filter looks like) and mosaic tiling.

Every view returns RGB tiles in [0, 1], so the widget and the report show them the same way.

=================== ==========================================================================
view                what it shows
=================== ==========================================================================
``raw``             input channel 0, grey, one min-max over *all* filters (the seed's view):
                    filters of small norm look flat, as they are.
``high_contrast``   input channel 0, grey, histogram-equalised per filter over 256 bins (the
                    seed's view): structure of weak filters becomes visible; magnitudes do not.
``colour``          per-filter min-max over all channels (the seed's view). C = 3 is shown as
                    RGB, C = 1 as grey, any other C as the channel mean in grey.
``symmetric_colour`` one scale for all filters, symmetric about zero: 0 is mid grey, the
                    largest |weight| of the layer is black or full colour. Same channel rule as
                    ``colour``. Signs and relative strengths are comparable across filters.
=================== ==========================================================================
"""

from __future__ import annotations

import math

import numpy as np

from ..base.bank import as_stack

__all__ = [
    "VIEWS",
    "VIEW_LABELS",
    "grid_shape",
    "kernel_view",
    "mosaic",
    "tile_origins",
]

VIEWS = ("raw", "high_contrast", "colour", "symmetric_colour")
VIEW_LABELS = {
    "raw": "raw weights",
    "high_contrast": "high contrast",
    "colour": "colour",
    "symmetric_colour": "symmetric colour",
}


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


def _colour_channels(weights: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) colour rendition of the channels: RGB for C = 3, else grey."""
    if weights.shape[1] == 3:
        return np.moveaxis(weights, 1, -1)
    return _grey_to_rgb(weights.mean(axis=1))


def _minmax(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    lo = x.min(axis=axes, keepdims=True)
    span = x.max(axis=axes, keepdims=True) - lo
    return np.divide(x - lo, span, out=np.full_like(x, 0.5), where=span > 0)


def _equalise(image: np.ndarray, bins: int = 256) -> np.ndarray:
    """Histogram equalisation of one image to [0, 1] (CDF of a `bins`-bin histogram)."""
    hist, edges = np.histogram(image.ravel(), bins=bins)
    cdf = np.cumsum(hist).astype(np.float64)
    cdf /= cdf[-1]
    return np.interp(image.ravel(), edges[:-1], cdf).reshape(image.shape)


def kernel_view(weights: np.ndarray, view: str = "raw") -> np.ndarray:
    """Render every filter in one of `VIEWS`.

    Parameters
    ----------
    weights : (N, C, H, W) array_like
        Filters.
    view : str
        One of ``"raw"``, ``"high_contrast"``, ``"colour"``, ``"symmetric_colour"``.

    Returns
    -------
    (N, H, W, 3) ndarray of float32
        RGB tiles in [0, 1].
    """
    weights = as_stack(weights)
    if view == "raw":
        out = _grey_to_rgb(_minmax(weights[:, 0], (0, 1, 2)))
    elif view == "high_contrast":
        out = _grey_to_rgb(np.stack([_equalise(w) for w in weights[:, 0]]))
    elif view == "colour":
        out = _minmax(_colour_channels(weights), (1, 2, 3))
    elif view == "symmetric_colour":
        colour = _colour_channels(weights)
        scale = np.abs(colour).max()
        out = 0.5 + 0.5 * colour / scale if scale > 0 else np.full_like(colour, 0.5)
    else:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def grid_shape(n: int, ncols: int | None = None) -> tuple[int, int]:
    """Rows and columns of the mosaic grid for `n` tiles (near-square by default)."""
    if n < 1:
        raise ValueError(f"need at least one tile, got {n}")
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, n)
    return math.ceil(n / ncols), ncols


def tile_origins(
    n: int, tile_shape: tuple[int, int], ncols: int | None = None, gap: int = 1
) -> np.ndarray:
    """Top-left pixel (row, column) of each tile in a `mosaic`.

    Returns
    -------
    (n, 2) ndarray of int
        Tile ``i`` sits in grid cell ``divmod(i, ncols)``.
    """
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    _, cols = grid_shape(n, ncols)
    r, c = np.divmod(np.arange(n), cols)
    return np.stack([r * (tile_shape[0] + gap), c * (tile_shape[1] + gap)], axis=1)


def mosaic(
    images: np.ndarray, ncols: int | None = None, gap: int = 1, fill: float = 1.0
) -> np.ndarray:
    """Tile a stack of images into one image, row-major, with `gap` pixels between tiles.

    Parameters
    ----------
    images : (N, h, w) or (N, h, w, 3) array_like
        The tiles; any N (there is no cap).
    ncols : int, optional
        Tiles per row; near-square when omitted.
    gap : int
        Pixels of `fill` between neighbouring tiles (none around the border).
    fill : float
        Value of the gap pixels.

    Returns
    -------
    (rows*(h+gap)-gap, cols*(w+gap)-gap[, 3]) ndarray
        Same dtype as `images`.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, h, w[, 3]) stack, got {images.shape}")
    n, h, w = images.shape[:3]
    rows, cols = grid_shape(n, ncols)
    origins = tile_origins(n, (h, w), cols, gap)
    out = np.full(
        (rows * (h + gap) - gap, cols * (w + gap) - gap, *images.shape[3:]),
        fill,
        dtype=images.dtype,
    )
    for image, (r, c) in zip(images, origins, strict=True):
        out[r : r + h, c : c + w] = image
    return out
