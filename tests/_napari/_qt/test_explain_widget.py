"""The "Explain filters" widget in a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari._qt.explain import WIDGET_NAME, ExplainWidget

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

TIMEOUT_MS = 180_000


@pytest.fixture
def gabor_npy(tmp_path, gabor):
    weights = np.asarray(
        [[gabor(5, f, t, phase=np.pi / 2)] * 3 for f, t in [(0.2, 0), (0.25, 45), (0.3, 90)]],
        dtype=np.float32,
    )
    path = tmp_path / "gabors.npy"
    np.save(path, weights)
    return path, weights


@pytest.fixture
def widget(make_napari_viewer, qtbot, gabor_npy):
    viewer = make_napari_viewer(show=True)
    w = ExplainWidget(viewer, autostart=False)
    viewer.window.add_dock_widget(w, name=WIDGET_NAME)
    w.other.value = str(gabor_npy[0])
    w.load_model()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.layer.choices == ("conv",)
    return viewer, w


def test_docked_from_the_manifest_lists_the_layers_of_lenet5(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    _, w = viewer.window.add_plugin_dock_widget("napari-kernelspec", WIDGET_NAME)
    assert isinstance(w, ExplainWidget)
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)  # autostart: LeNet5 on digits
    assert w.model is not None and w.model.source == "trained-digits"
    assert w.layer.choices == ("conv1", "conv2")
    assert "UNTRAINED" not in w.status.value


def test_maximising_images_are_a_mosaic_labelled_with_filter_indices(widget, qtbot):
    viewer, w = widget
    w.filters.value = "0,2"
    w.steps.value, w.size.value = 3, 16
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.last_error is None
    mosaic = w.layers["images"]
    assert mosaic in viewer.layers and mosaic.rgb
    assert mosaic.data.shape == (16, 16 * 2 + 2, 3)  # two tiles side by side, 2 px gap
    np.testing.assert_array_equal(mosaic.data[:, :16], w.result.images[0])
    labels = w.layers["labels"]
    assert labels.features["filter"].tolist() == [0, 2]
    assert list(labels.text.values) == ["0", "2"]
    assert labels.data[1, 1] >= 18  # the second label sits on the second tile
    assert "one-layer model" in w.status.value
    # A second run adds its own named layers beside the first (runs accumulate); Clear
    # removes them all.
    first = dict(w.layers)
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    second = w.layers["images"]
    assert all(lay in viewer.layers for lay in first.values())
    assert second.name.endswith("(2)")
    assert second.extent.world[0][-1] > mosaic.extent.world[1][-1]  # beside, not on top
    w.clear()
    assert not ({*first.values(), *w.layers.values(), second} & set(viewer.layers))


def test_attribution_lies_over_the_image_in_its_world_coordinates(widget, qtbot):
    viewer, w = widget
    rng = np.random.default_rng(0)
    image = viewer.add_image(
        rng.uniform(0, 1, (30, 40, 3)).astype(np.float32),
        name="photo", rgb=True, scale=(2.0, 3.0), translate=(10.0, -4.0),
    )  # fmt: skip
    w.method.value = "guided"
    w.image_layer.reset_choices()
    w.image_layer.value = "photo"
    w.filters.value = "1"
    w.at.value = "6,9"
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.last_error is None
    layer = w.layers["attributions"]
    assert layer.data.shape == (1, 30, 40)
    np.testing.assert_allclose(layer.scale[1:], image.scale)
    np.testing.assert_allclose(layer.translate[1:], image.translate)
    low, high = layer.contrast_limits
    assert low == pytest.approx(-high) and high > 0
    assert layer.colorbar.visible  # the legend: a signed value range around zero
    # The unit's 5x5 receptive field, in world coordinates, is where the attribution is.
    rows, cols = np.nonzero(layer.data[0])
    world = layer.data_to_world((0, rows.min(), cols.min()))
    assert tuple(world[1:]) == pytest.approx(image.data_to_world((6, 9)))
    assert rows.max() - rows.min() == 4 and cols.max() - cols.min() == 4
    assert w.image_layer.choices == ("photo",)  # our own layers are not offered as images


def test_a_long_run_keeps_the_viewer_responsive_and_can_be_cancelled(widget, qtbot):
    from qtpy.QtCore import QTimer

    viewer, w = widget
    w.filters.value = "0-2"
    w.steps.value, w.size.value = 100_000, 64
    before = len(viewer.layers)
    w.run()
    assert w.busy
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    qtbot.waitUntil(lambda: len(ticks) >= 10 and w.progress.value > 0, timeout=TIMEOUT_MS)
    timer.stop()
    w.cancel()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert len(viewer.layers) == before  # nothing half-done was added
    assert w.status.value == "Cancelled."
    assert w.run_button.enabled


def test_mistakes_are_reported_not_raised(widget, qtbot):
    _, w = widget
    w.method.value = "occlusion"
    w.filters.value = "0"
    w.run()
    assert "explains a filter on an image" in w.last_error
    w.method.value = "maximize"
    w.filters.value = "0-9"
    w.run()
    assert w.last_error.startswith("filter index 3 is out of range")
    assert not w.busy


def test_follows_the_sessions_model_and_filter(widget, qtbot, gabor_npy):
    from napari_kernelspec._napari.session import session_for
    from napari_kernelspec.analysis import analyze
    from napari_kernelspec.sources.loading import load_kernels

    viewer, w = widget
    session = session_for(viewer)
    bank = load_kernels("lenet5", weights="random")
    session.show(analyze(bank))  # what the main widget publishes
    session.focus(2)
    assert w.filters.value == "2"
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.model.model == "lenet5" and w.model.source == "random"
    assert "UNTRAINED" in w.status.value
    w.layer.value = "conv1"
    w.steps.value, w.size.value = 2, 16
    w.filters.value = "3"
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert session.current_filter == 3  # the main widget shows the filter just explained
