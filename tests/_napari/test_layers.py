"""Pure layer data (no Qt, no napari): geometry, alignment, shapes, status text."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.layers import (
    MosaicGeometry,
    clusters_layer,
    describe_position,
    filter_table_csv,
    geometry_for,
    layer_data,
    place_beside,
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
    # One point per filter, at its tile's centre, point i = filter i.
    assert clusters.layer_type == "points"
    np.testing.assert_allclose(clusters.data, [g.centre(i) for i in range(g.n)])
    features = clusters.kwargs["features"]
    np.testing.assert_array_equal(features["index"], np.arange(g.n))
    np.testing.assert_array_equal(features["cluster"], result.labels)
    np.testing.assert_array_equal(features["peak_frequency"], result.descriptors["peak_frequency"])
    assert clusters.kwargs["text"]["string"] == "{index}"
    # Frames: the cluster's colour on members, none (transparent) on unclustered filters.
    border = clusters.kwargs["border_color"]
    assert border.shape == (g.n, 4)
    np.testing.assert_array_equal(border[:, 3] > 0, result.labels >= 0)
    assert len(np.unique(border[members].round(6), axis=0)) == result.n_clusters
    np.testing.assert_array_equal(border[2], border[5])  # planted duplicates share a colour
    assert clusters.kwargs["border_width_is_relative"]
    assert [d.role for d in (spectra, kernels, clusters)] == ["spectra", "kernels", "clusters"]


def test_gaps_are_mid_grey_and_spectrum_gaps_nan():
    result = analyze(_bank(), threshold=0.9)
    spectra, kernels, _ = layer_data(result, "colour")
    g = MosaicGeometry.from_dict(kernels.kwargs["metadata"]["kernelspec"]["geometry"])
    k = g.kernel_shape[0]
    np.testing.assert_array_equal(kernels.data[k, :, :], 0.5)  # gap row between tile rows
    assert np.isnan(spectra.data[g.tile : g.tile + g.gap]).all()
    assert not np.isnan(spectra.data[: g.tile, : g.tile]).any()


def test_no_cluster_gives_no_frames_but_every_index():
    import dataclasses

    result = analyze(_bank(), threshold=0.9)
    result = dataclasses.replace(result, labels=np.full(result.n_filters, -1))
    points = clusters_layer(result)
    assert len(points.data) == result.n_filters
    assert (points.kwargs["border_color"][:, 3] == 0).all()
    np.testing.assert_array_equal(points.kwargs["features"]["cluster"], -1)


def test_filter_table_csv_neutralises_formulas():
    import csv
    import io

    bank = KernelBank(_bank().weights, model="=cmd|' /C calc'!A0", layer="@SUM(1)", source="array")
    result = analyze(bank, threshold=0.9)
    rows = list(csv.reader(io.StringIO(filter_table_csv(result))))
    header, body = rows[0], rows[1:]
    assert header[:5] == ["model", "layer", "weights", "index", "cluster"]
    assert len(body) == result.n_filters
    assert body[0][0] == "'=cmd|' /C calc'!A0" and body[0][1] == "'@SUM(1)"
    assert [int(r[3]) for r in body] == list(range(result.n_filters))
    assert [int(r[4]) for r in body] == result.labels.tolist()
    peak = header.index("peak_frequency")
    np.testing.assert_allclose(
        [float(r[peak]) for r in body], result.descriptors["peak_frequency"], rtol=1e-12
    )


def test_origin_moves_every_layer_and_hover_follows():
    result = analyze(_bank(), threshold=0.9)
    at_zero = layer_data(result)
    moved = layer_data(result, origin=(0.0, 500.0))
    g0 = MosaicGeometry.from_dict(at_zero[0].kwargs["metadata"]["kernelspec"]["geometry"])
    g1 = MosaicGeometry.from_dict(moved[0].kwargs["metadata"]["kernelspec"]["geometry"])
    assert g1.origin == (0.0, 500.0)
    np.testing.assert_allclose(np.array(g1.centre(3)) - g0.centre(3), (0.0, 500.0))
    np.testing.assert_allclose(moved[2].data - at_zero[2].data, [[0.0, 500.0]] * g0.n)
    assert moved[0].kwargs["translate"] == (0.0, 500.0)
    assert moved[1].kwargs["translate"][1] - at_zero[1].kwargs["translate"][1] == 500.0
    meta = moved[0].kwargs["metadata"]["kernelspec"]
    assert describe_position(meta, g1.centre(3)).startswith("filter 3 ·")
    assert describe_position(meta, g0.centre(3)) is None
    assert place_beside([]) == (0.0, 0.0)
    assert place_beside([100.0, 40.0])[1] > 100.0


def test_describe_position():
    result = analyze(_bank(), threshold=0.9)
    meta = layer_data(result)[0].kwargs["metadata"]["kernelspec"]
    g = MosaicGeometry.from_dict(meta["geometry"])
    text = describe_position(meta, g.centre(5), with_frequency=True)
    assert text.startswith(f"filter 5 · cluster {result.labels[5]} · peak ")
    assert "f=(v +0.000, u +0.000)" in text  # the centre pixel of a spectrum tile is DC
    assert describe_position(meta, (-100.0, -100.0)) is None
