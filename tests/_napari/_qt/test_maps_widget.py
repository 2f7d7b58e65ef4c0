"""The feature-maps widget in a real napari viewer: maps on the image, slider, patches, map."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec import KernelBank
from napari_kernelspec._napari.session import session_for
from napari_kernelspec.analysis import analyze
from napari_kernelspec.imaging import feature_maps, top_patches

from .conftest import WORKER_TIMEOUT_MS

K, STRIDE, PAD = 5, 2, 1


def _bank():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:K, :K] - (K - 1) / 2
    blob = np.exp(-(yy**2 + xx**2) / 4.0)
    weights = (blob * (1 + 0.5 * rng.random((4, 1, K, K)))).astype(np.float32)
    return KernelBank(
        weights=weights, model="blobs.npy", layer="w", source="array", stride=STRIDE, padding=PAD
    )


def _planted(bank, j, y, x, shape=(48, 56)):
    image = np.zeros(shape, np.float32)
    image[y - K // 2 : y + K // 2 + 1, x - K // 2 : x + K // 2 + 1] = bank.weights[j, 0]
    return image


@pytest.fixture
def setup(make_napari_viewer, qtbot):
    from napari_kernelspec._napari._qt.maps import FeatureMapsWidget

    bank = _bank()
    viewer = make_napari_viewer(show=True)
    viewer.add_image(_planted(bank, 2, 21, 31), name="photo")
    session = session_for(viewer)
    session.show(analyze(bank))  # what the main widget publishes
    widget = FeatureMapsWidget(viewer)
    widget.normalize.value = "none"
    assert widget.model.value == "__main_widget__"  # follows the session's bank
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)
    assert widget.last_error is None
    yield viewer, widget, session, bank
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)


def test_maps_layer_lies_on_the_image(setup):
    viewer, widget, _, bank = setup
    layer = widget.layers["feature_maps"]
    expected = feature_maps(bank, viewer.layers["photo"].data, normalize="none")
    np.testing.assert_allclose(layer.data, expected.maps, atol=1e-6)
    assert layer.data.shape == (4, 23, 27)  # (48 + 2 - 5) // 2 + 1, (56 + 2 - 5) // 2 + 1
    # exactly the geometry: scale = stride, translate = (k - 1) / 2 - padding
    np.testing.assert_array_equal(layer.scale, [1, STRIDE, STRIDE])
    np.testing.assert_array_equal(layer.translate, [0, (K - 1) / 2 - PAD, (K - 1) / 2 - PAD])
    # the planted copy of filter 2 at (21, 31): map 2's maximum lies there in world coordinates
    peak = np.unravel_index(np.argmax(layer.data[2]), layer.data.shape[1:])
    world = layer.data_to_world((2, *peak))
    np.testing.assert_allclose(world[-2:], [21, 31])
    assert layer.colormap.name == "magma" and layer.contrast_limits[0] == 0
    assert layer.colorbar.visible  # the legend: napari's colour bar of the value range


def test_slider_patches_and_boxes_follow_the_filter(setup, qtbot):
    viewer, widget, session, bank = setup
    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: widget.focus.value == 2, timeout=5000)
    boxes = widget.layers["patch_boxes"]
    assert boxes.name == "patch boxes · filter 2"
    expected = top_patches(bank, [viewer.layers["photo"].data], k=9, normalize="none")
    y0, x0, y1, x1 = expected.patches(2)[0].box
    assert (y0, x0, y1, x1) == (21 - K // 2, 31 - K // 2, 21 + K // 2 + 1, 31 + K // 2 + 1)
    np.testing.assert_allclose(boxes.data[0].min(axis=0), [y0 - 0.5, x0 - 0.5])
    np.testing.assert_allclose(boxes.data[0].max(axis=0), [y1 - 0.5, x1 - 0.5])
    patches = widget.layers["top_patches"]
    assert patches.data.shape[0] == K  # one row of receptive-field tiles
    assert patches.translate[0] > viewer.layers["photo"].data.shape[0]  # under the image
    assert session.current_filter == 2  # the main widget hears it through the session
    # the main widget's focus moves our slider
    session.focus(3)
    assert viewer.dims.current_step[0] == 3 and widget.focus.value == 3


def test_filter_map_points_select_the_filter(setup, qtbot):
    _, widget, session, _ = setup
    points = widget.layers["filter_map"]
    assert len(points.data) == 4
    np.testing.assert_array_equal(points.features["filter"], [0, 1, 2, 3])
    np.testing.assert_array_equal(points.features["cluster"], session.result.labels)
    points.selected_data = {1}
    qtbot.waitUntil(lambda: widget.focus.value == 1, timeout=5000)
    assert widget.layers["patch_boxes"].name == "patch boxes · filter 1"


def test_relu_off_uses_a_diverging_colormap(setup, qtbot):
    _, widget, _, _ = setup
    widget.relu.value = False
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)
    layer = widget.layers["feature_maps"]
    assert layer.colormap.name == "bwr"
    lo, hi = layer.contrast_limits
    assert lo == -hi and hi > 0


def test_image_edit_updates_the_maps(setup, qtbot):
    viewer, widget, _, bank = setup
    moved = _planted(bank, 1, 33, 13)
    viewer.layers["photo"].data = moved
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)
    layer = widget.layers["feature_maps"]
    np.testing.assert_allclose(
        layer.data, feature_maps(bank, moved, normalize="none").maps, atol=1e-6
    )


def test_docked_from_the_manifest_standalone(make_napari_viewer, qtbot):
    from napari_kernelspec._napari._qt.maps import MAPS_WIDGET_NAME, FeatureMapsWidget

    viewer = make_napari_viewer(show=True)
    rgb = (np.random.default_rng(1).random((40, 44, 3)) * 255).astype(np.uint8)
    viewer.add_image(rgb, name="rgb", scale=(2.0, 2.0), translate=(10.0, 5.0))
    _, widget = viewer.window.add_plugin_dock_widget("napari-kernelspec", MAPS_WIDGET_NAME)
    assert isinstance(widget, FeatureMapsWidget)
    widget.model.value = "lenet5"  # RGB image on a 1-channel layer: luminance
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)
    assert widget.last_error is None, widget.last_error
    layer = widget.layers["feature_maps"]
    assert layer.data.shape == (6, 36, 40)
    # on an image layer with its own scale / translate: composed with the layer geometry
    np.testing.assert_allclose(layer.scale, [1, 2, 2])
    np.testing.assert_allclose(layer.translate, [0, 10 + 2 * 2, 5 + 2 * 2])
    assert "luminance" in widget.status.value
    assert set(widget.layers) == {"feature_maps", "top_patches", "patch_boxes", "filter_map"}


def test_linked_to_the_real_main_widget(docked, qtbot, wait_idle):
    """The main widget and the feature maps follow each other: bank, and filter focus."""
    from napari_kernelspec._napari._qt.maps import FeatureMapsWidget

    viewer, main = docked  # alexnet, random weights
    photo = (np.random.default_rng(2).random((96, 120, 3)) * 255).astype(np.uint8)
    viewer.add_image(photo, name="photo")
    widget = FeatureMapsWidget(viewer)  # finds the main widget's model in the session
    viewer.window.add_dock_widget(widget)
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)
    assert widget.last_error is None, widget.last_error
    layer = widget.layers["feature_maps"]
    expected = feature_maps(main.bank, photo)
    assert layer.data.shape == expected.maps.shape  # the main widget's layer, on the photo
    np.testing.assert_allclose(layer.scale[1:], expected.scale)
    main.focus_filter(7)  # the main widget's focus moves the maps' slider
    qtbot.waitUntil(lambda: widget.focus.value == 7, timeout=5000)
    assert viewer.dims.current_step[0] == 7
    assert "__main_widget__" in widget.model.choices  # kept through napari's reset_choices
    widget.focus_filter(12)  # and the maps' slider focuses the main widget's filter
    qtbot.waitUntil(lambda: main.current_filter == 12, timeout=5000)
    wait_idle(main)
