"""Views and mosaics: the seed's renderings, any channel count, no filter cap."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.analysis.views import VIEWS, grid_shape, kernel_view, mosaic, tile_origins


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_view_gives_rgb_tiles_in_unit_range(view, channels):
    weights = np.random.default_rng(channels).normal(size=(5, channels, 7, 7))
    out = kernel_view(weights, view)
    assert out.shape == (5, 7, 7, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_raw_view_shares_one_scale_across_filters():
    weights = np.zeros((2, 3, 3, 3))
    weights[0, 0] = np.arange(9).reshape(3, 3)
    weights[1, 0] = np.arange(9).reshape(3, 3) / 10
    out = kernel_view(weights, "raw")
    assert out[0].max() == 1.0 and out[1].max() < 0.2  # the weak filter looks weak
    assert np.all(out[..., 0] == out[..., 2])  # grey


def test_high_contrast_equalises_each_filter_whatever_its_scale():
    ramp = np.arange(16, dtype=float).reshape(4, 4)
    weights = np.stack([ramp**3, ramp * 1e-3, ramp])[:, None]
    out = kernel_view(weights, "high_contrast")[..., 0]
    raw = kernel_view(weights[:1], "raw")[0, ..., 0]
    assert raw.mean() < 0.3  # a skewed filter looks dark in the raw view ...
    assert abs(out[0].mean() - 0.5) < 0.1  # ... and evenly spread once equalised
    np.testing.assert_allclose(out[1], out[2], atol=1e-6)  # scale does not matter
    for tile, source in zip(out, weights[:, 0], strict=True):  # order is kept
        order = np.argsort(source.ravel())
        assert np.all(np.diff(tile.ravel()[order]) >= 0)
        assert tile.max() == 1.0


def test_colour_view_maps_channels_to_rgb_per_filter():
    weights = np.zeros((1, 3, 2, 2))
    weights[0, 0, 0, 0] = 5.0  # strong red at the top-left pixel
    out = kernel_view(weights, "colour")
    np.testing.assert_allclose(out[0, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(out[0, 1, 1], [0, 0, 0])


def test_symmetric_colour_puts_zero_at_mid_grey_and_keeps_signs():
    weights = np.zeros((2, 3, 2, 2))
    weights[0, :, 0, 0] = 2.0
    weights[1, :, 0, 0] = -1.0
    out = kernel_view(weights, "symmetric_colour")
    np.testing.assert_allclose(out[0, 1, 1], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(out[1, 0, 0], [0.25, 0.25, 0.25])


def test_unknown_view_is_rejected():
    with pytest.raises(ValueError, match="view must be one of"):
        kernel_view(np.ones((1, 1, 3, 3)), "fancy")


def test_mosaic_has_no_filter_cap_and_puts_tiles_where_tile_origins_says():
    n, h, w = 100, 5, 4
    tiles = np.arange(n, dtype=float)[:, None, None] * np.ones((n, h, w))
    image = mosaic(tiles, gap=2, fill=-1.0)
    rows, cols = grid_shape(n)
    assert (rows, cols) == (10, 10)
    assert image.shape == (rows * (h + 2) - 2, cols * (w + 2) - 2)
    for i, (r, c) in enumerate(tile_origins(n, (h, w), gap=2)):
        assert np.all(image[r : r + h, c : c + w] == i)
    assert np.sum(image == -1.0) == image.size - n * h * w


def test_mosaic_keeps_rgb_and_respects_ncols():
    tiles = np.ones((7, 3, 3, 3), dtype=np.float32)
    image = mosaic(tiles, ncols=7, gap=1)
    assert image.shape == (3, 7 * 4 - 1, 3) and image.dtype == np.float32
    assert grid_shape(7, ncols=3) == (3, 3)
