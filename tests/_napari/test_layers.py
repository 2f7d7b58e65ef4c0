"""Pure layer data (no Qt, no napari): geometry, alignment, shapes, status text."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.layers import (
    MosaicGeometry,
    clusters_layer,
    describe_position,
    geometry_for,
    layer_data,
)
from napari_kernelspec.analysis import analyze
from napari_kernelspec.base.bank import KernelBank


def _bank(n: int = 20, c: int = 3, k: int = 7, seed: int = 0) -> KernelBank:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(n, c, k, k)).astype(np.float32)
    weights[5] = weights[2]
    weights[9] = 2 * weights[2]
    return KernelBank(weights, model="toy", layer="conv1", source="array")


@pytest.mark.parametrize("k", [1, 3, 4, 5, 7, 11, 16])
@pytest.mark.parametrize("size", [32, 64])
def test_kernel_tiles_sit_on_spectrum_tiles(k, size):
    g = geometry_for(30, size, (k, k))
    sy, sx = g.kernel_scale
    ty, tx = g.kernel_translate
    for i in (0, 7, 29):
        r, c = divmod(i, g.ncols)
        # centre of kernel tile i in world coordinates
        ky = ty + (r * (k + 1) + (k - 1) / 2) * sy
        kx = tx + (c * (k + 1) + (k - 1) / 2) * sx
        np.testing.assert_allclose((ky, kx), g.centre(i), atol=1e-9)
    if k > 1:  # same gap fraction: tiles coincide to a fraction of a spectrum pixel
        assert abs(k * sy - size) < 0.25 * size / k + 1e-9


def test_tile_at_round_trips_and_rejects_gaps():
    g = geometry_for(10, 64, (5, 5))
    for i in range(10):
        assert g.tile_at(g.centre(i)) == i
        assert g.tile_at(g.box(i)[0] + 0.01) == i
    centre = g.centre(0)
    assert g.tile_at((centre[0], centre[1] + g.tile / 2 + g.gap / 2)) is None
    assert g.tile_at((-5.0, 3.0)) is None
    assert g.tile_at(g.centre(9) + np.array([0, g.pitch])) is None  # empty grid cell
    assert MosaicGeometry.from_dict(g.to_dict()) == g


def test_layer_data_shapes_and_metadata():
    result = analyze(_bank(), threshold=0.9)
    spectra, kernels, clusters = layer_data(result, "colour")
    g = MosaicGeometry.from_dict(kernels.kwargs["metadata"]["kernelspec"]["geometry"])
    assert kernels.data.shape == (g.nrows * 8 - 1, g.ncols * 8 - 1, 3)
    assert spectra.data.shape == (g.nrows * g.pitch - g.gap, g.ncols * g.pitch - g.gap)
    assert spectra.kwargs["metadata"]["method"] == "response"
    np.testing.assert_array_equal(spectra.kwargs["metadata"]["frequencies"], result.frequencies)
    members = np.flatnonzero(result.labels >= 0)
    assert {2, 5, 9} <= set(members.tolist())
    assert len(clusters.data) == members.size
    np.testing.assert_array_equal(clusters.kwargs["features"]["filter"], members)
    assert clusters.kwargs["text"]["string"] == "{filter}"
    edge = clusters.kwargs["edge_color"]
    assert edge.shape == (members.size, 4)
    assert len(np.unique(edge.round(6), axis=0)) == result.n_clusters
    assert [d.role for d in (spectra, kernels, clusters)] == ["spectra", "kernels", "clusters"]


def test_no_cluster_gives_an_empty_shapes_layer():
    import dataclasses

    result = analyze(_bank(), threshold=0.9)
    result = dataclasses.replace(result, labels=np.full(result.n_filters, -1))
    shapes = clusters_layer(result)
    assert shapes.data == []
    assert isinstance(shapes.kwargs["edge_color"], str)
    assert shapes.kwargs["features"]["filter"].size == 0


def test_describe_position():
    result = analyze(_bank(), threshold=0.9)
    meta = layer_data(result)[0].kwargs["metadata"]["kernelspec"]
    g = MosaicGeometry.from_dict(meta["geometry"])
    text = describe_position(meta, g.centre(5), with_frequency=True)
    assert text.startswith(f"filter 5 · cluster {result.labels[5]} · peak ")
    assert "f=(v +0.000, u +0.000)" in text  # the centre pixel of a spectrum tile is DC
    assert describe_position(meta, (-100.0, -100.0)) is None
