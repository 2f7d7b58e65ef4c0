"""Kernels and spectra side by side, each filter framed on both by one set of frames."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari._qt.widget import SIDE_BY_SIDE
from napari_kernelspec._napari.layers import MosaicGeometry

pytestmark = pytest.mark.gui


def _kernel_tile_centre(kernels, index: int) -> np.ndarray:
    """World centre of kernel tile `index`, from the kernel layer's own pixels."""
    geometry = MosaicGeometry.from_dict(kernels.metadata["kernelspec"]["geometry"])
    h, w = geometry.kernel_shape
    row, col = divmod(index, geometry.ncols)
    centre = (row * (h + 1) + (h - 1) / 2, col * (w + 1) + (w - 1) / 2)
    return np.asarray(kernels.data_to_world(centre), dtype=float)


def test_side_by_side_frames_both_mosaics(docked, wait_idle, monkeypatch):
    import napari_kernelspec.sources.loading as loading

    _viewer, widget = docked
    bank = widget.bank
    n = widget.result.n_filters
    monkeypatch.setattr(
        loading, "load_kernels", lambda *a, **k: pytest.fail("the model must not be reloaded")
    )
    layers = widget.layers
    widget.show_.value = SIDE_BY_SIDE
    wait_idle(widget)
    assert widget.bank is bank and widget.layers == layers  # same layers, rearranged
    kernels, spectra, clusters = layers["kernels"], layers["spectra"], layers["clusters"]
    assert kernels.visible and spectra.visible
    # The kernels lie right of the spectra, not on them.
    (_, sx0), (_, sx1) = np.asarray(spectra.extent.world)[:, -2:]
    (_, kx0), (_, kx1) = np.asarray(kernels.extent.world)[:, -2:]
    assert kx0 > sx1
    # One frame on each mosaic per filter: marker i on spectrum tile i, N + i on kernel tile i.
    assert len(clusters.data) == 2 * n
    features = clusters.features
    assert features["mosaic"].tolist() == ["spectra"] * n + ["kernels"] * n
    np.testing.assert_array_equal(features["index"], np.tile(np.arange(n), 2))
    spectra_geometry = MosaicGeometry.from_dict(spectra.metadata["kernelspec"]["geometry"])
    np.testing.assert_allclose(clusters.data[:n], spectra_geometry.centres())
    for i in (0, 9, n - 1):
        np.testing.assert_allclose(clusters.data[n + i], _kernel_tile_centre(kernels, i), atol=0.6)
    # Both frames of a filter share its cluster's colour and are highlighted together.
    np.testing.assert_array_equal(clusters.border_color[:n], clusters.border_color[n:])
    widget.highlight([9])
    width = np.asarray(clusters.border_width)
    assert width[9] == width[n + 9] == width.max() and width[8] < width[9]
    # Hovering or clicking a kernel tile names that filter.
    at = tuple(clusters.data[n + 9])
    assert widget.hover_text(at).startswith("filter 9 ·")
    assert widget._tile_at(at) == 9
    # The fitted view holds both mosaics.
    centre_x = float(widget.camera.center[-1])
    assert sx0 < centre_x < kx1 and abs(centre_x - (sx0 + kx1) / 2) < 0.05 * (kx1 - sx0)
    # Back to one mosaic: one frame per filter again, the kernels back on the spectra.
    widget.toggle_show()
    wait_idle(widget)
    assert widget.show_.value == "kernels"
    assert kernels.visible and not spectra.visible
    assert len(clusters.data) == n and "mosaic" not in clusters.features
    np.testing.assert_allclose(_kernel_tile_centre(kernels, 9), clusters.data[9], atol=0.6)


def test_side_by_side_follows_the_steps_of_a_history(docked, wait_idle, tmp_path):
    import torch

    from napari_kernelspec._napari._qt.widget import HISTORY

    viewer, widget = docked
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, 5, 5, generator=g)
    for epoch in range(3):
        torch.save({"conv1.weight": w * (1 + epoch)}, tmp_path / f"epoch_{epoch}.pt")
    widget.show_.value = SIDE_BY_SIDE
    widget.model.value = HISTORY
    widget.history_folder.value = str(tmp_path)
    wait_idle(widget)
    clusters = widget.layers["clusters"]
    assert clusters.ndim == 3 and len(clusters.data) == 3 * 2 * 5
    assert clusters.features["step"].tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert widget.layers["kernels"].visible and widget.layers["spectra"].visible
    viewer.dims.set_current_step(0, 1)
    at = tuple(clusters.data[10 + 5 + 3])  # step 1, kernel side, filter 3
    assert at[0] == 1.0 and widget.hover_text(at).startswith("filter 3 ·")


def test_quick_show_changes_end_in_the_last_arrangement(docked, wait_idle):
    _viewer, widget = docked
    n = widget.result.n_filters
    layers = widget.layers
    widget.show_.value = SIDE_BY_SIDE
    widget.show_.value = "spectra"  # before the side-by-side layers arrived
    wait_idle(widget)
    assert len(layers["clusters"].data) == n
    assert layers["spectra"].visible and not layers["kernels"].visible
    widget.show_.value = SIDE_BY_SIDE
    wait_idle(widget)
    widget.show_.value = "kernels"
    widget.show_.value = SIDE_BY_SIDE  # back before the single mosaic arrived
    wait_idle(widget)
    assert len(layers["clusters"].data) == 2 * n
    assert layers["spectra"].visible and layers["kernels"].visible


def test_show_works_while_the_model_control_names_nothing(docked, wait_idle):
    from napari_kernelspec._napari._qt.widget import CHECKPOINT

    _viewer, widget = docked
    n = widget.result.n_filters
    widget.model.value = CHECKPOINT  # no file chosen yet
    assert widget.summary.value == "Give a file."
    widget.show_.value = SIDE_BY_SIDE
    wait_idle(widget)
    clusters = widget.layers["clusters"]
    assert len(clusters.data) == 2 * n  # AlexNet, still shown, now side by side
    assert widget.layers["spectra"].visible and widget.layers["kernels"].visible


def test_hiding_one_mosaic_side_by_side_shows_the_other_alone(docked, wait_idle):
    _viewer, widget = docked
    n = widget.result.n_filters
    widget.show_.value = SIDE_BY_SIDE
    wait_idle(widget)
    widget.layers["kernels"].visible = False  # the layer list's eye button
    wait_idle(widget)
    assert widget.show_.value == "spectra"
    assert len(widget.layers["clusters"].data) == n
    assert widget.layers["spectra"].visible and not widget.layers["kernels"].visible


def test_a_show_change_keeps_the_model_that_is_loading(docked, wait_idle):
    from napari_kernelspec._napari._qt.widget import TORCHVISION

    _viewer, widget = docked
    widget.model.value = TORCHVISION
    widget.torchvision_name.value = "no_such_net"
    widget.request_update()
    wait_idle(widget)
    assert widget.last_error is not None and widget.result.bank.model == "alexnet"
    widget.model.value = "lenet5"  # loading ...
    widget.show_.value = SIDE_BY_SIDE  # ... while the arrangement changes
    wait_idle(widget)
    assert widget.result.bank.model == "lenet5" and widget.last_error is None
    assert len(widget.layers["clusters"].data) == 2 * 6
    # after a failed name, going back to the model on screen clears the error
    widget.model.value = TORCHVISION
    widget.request_update()
    wait_idle(widget)
    assert widget.last_error is not None
    widget.model.value = "lenet5"
    wait_idle(widget)
    assert widget.last_error is None and not widget.summary.value.startswith("Error")
