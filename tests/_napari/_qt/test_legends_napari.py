"""Legends in a real viewer: a label above each mosaic, index text that reads on its tile."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari._qt.widget import SIDE_BY_SIDE
from napari_kernelspec._napari.layers import framed_geometries
from napari_kernelspec._napari.legends import LABELS_ROLE

pytestmark = pytest.mark.gui


def _labels_layer(viewer):
    found = [
        lay
        for lay in viewer.layers
        if isinstance(lay.metadata, dict)
        and lay.metadata.get("kernelspec", {}).get("role") == LABELS_ROLE
    ]
    assert len(found) == 1
    return found[0]


def test_each_mosaic_is_labelled_above_it(docked, wait_idle):
    viewer, widget = docked
    widget.show_.value = "kernels"
    wait_idle(widget)
    labels = _labels_layer(viewer)
    meta = widget.layers["clusters"].metadata["kernelspec"]
    assert list(labels.features["label"]) == [f"kernels · {meta['layer']} · untrained"]
    widget.show_.value = "spectra"
    assert _labels_layer(viewer).features["label"].iloc[0].startswith("spectra · ")

    widget.show_.value = SIDE_BY_SIDE
    wait_idle(widget)
    labels = _labels_layer(viewer)
    meta = widget.layers["clusters"].metadata["kernelspec"]
    texts = list(labels.features["label"])
    assert [t.split(" · ", 1)[0] for t in texts] == ["spectra", "kernels"]
    for (y, x), geometry in zip(labels.data, framed_geometries(meta), strict=True):
        (top, left), (_, right) = geometry.bounds()
        assert y < top and left <= x < right  # above its own mosaic, at its left edge


def test_index_text_is_black_on_a_grey_tile_and_white_on_a_dark_one(docked, wait_idle):
    _, widget = docked
    widget.show_.value = "kernels"
    wait_idle(widget)
    kernels, clusters = widget.layers["kernels"], widget.layers["clusters"]
    data = np.full(kernels.data.shape, 0.5)  # grey, like raw weights around zero
    # Plant a dark tile 1: its world box on the shared grid, mapped into the kernel pixels.
    geometry = framed_geometries(clusters.metadata["kernelspec"])[0]
    r, c = geometry.origins()[1]
    (r0, c0), (r1, c1) = (
        np.round(
            (np.array([[r, c], [r + geometry.tile, c + geometry.tile]]) - kernels.translate)
            / kernels.scale
        )
        .astype(int)
        .tolist()
    )
    data[r0:r1, c0:c1] = 0.05
    kernels.data = data
    widget._refresh_legends()
    colours = np.asarray(clusters.text.color._values)
    np.testing.assert_allclose(colours[0], [0, 0, 0, 1])  # grey tile: black index
    np.testing.assert_allclose(colours[1], [1, 1, 1, 1])  # dark tile: white index
    assert (colours[2:, :3] == 0).all()
