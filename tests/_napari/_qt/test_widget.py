"""The widget inside a real napari viewer (run under ``xvfb-run``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.layers import MosaicGeometry
from napari_kernelspec.sources.models import SEED_MODELS

pytestmark = pytest.mark.gui

#: (filters, channels, kernel) of the first conv of each seed model (GUIDE §1).
FIRST_LAYERS = {
    "alexnet": (64, 3, 11),
    "vgg16": (64, 3, 3),
    "resnet50": (64, 3, 7),
    "lenet5": (6, 1, 5),
    "densenet121": (64, 3, 7),
    "mobilenet_v2": (32, 3, 3),
    "googlenet": (64, 3, 7),
    "inception_v3": (32, 3, 3),
}


def _kernelspec_layers(viewer):
    return [lay for lay in viewer.layers if "kernelspec" in lay.metadata]


def _check_layers(viewer, widget, model: str) -> None:
    n, _, k = FIRST_LAYERS[model]
    layers = widget.layers
    assert set(layers) == {"kernels", "spectra", "clusters"}
    assert len(_kernelspec_layers(viewer)) == 3, [lay.name for lay in viewer.layers]
    label = SEED_MODELS[model] + " (untrained)"
    assert {lay.name for lay in layers.values()} == {
        f"{label} kernels",
        f"{label} spectra",
        f"{label} clusters",
    }
    result = widget.result
    assert result is not None and result.n_filters == n
    geometry = MosaicGeometry.from_dict(layers["kernels"].metadata["kernelspec"]["geometry"])
    assert geometry.n == n and geometry.kernel_shape == (k, k)
    rows, cols = geometry.nrows, geometry.ncols
    assert rows * cols >= n > (rows - 1) * cols
    kernels, spectra, clusters = layers["kernels"], layers["spectra"], layers["clusters"]
    assert kernels.rgb
    assert kernels.data.shape == (rows * (k + 1) - 1, cols * (k + 1) - 1, 3)
    s, g = geometry.tile, geometry.gap
    assert spectra.data.shape == (rows * (s + g) - g, cols * (s + g) - g)
    assert spectra.metadata["method"] == "response"
    assert len(spectra.metadata["frequencies"]) == s
    # Tiles of both mosaics coincide in world coordinates (within a spectrum pixel).
    last = n - 1
    r0, c0 = divmod(last, cols)
    kernel_corner = kernels.data_to_world((r0 * (k + 1) - 0.5, c0 * (k + 1) - 0.5))
    spectrum_corner = np.array(geometry.origins()[last], dtype=float) - 0.5
    np.testing.assert_allclose(kernel_corner, spectrum_corner, atol=1.0)
    # One rectangle per clustered filter, coloured by cluster.
    clustered = np.flatnonzero(result.labels >= 0)
    assert len(clusters.data) == clustered.size
    np.testing.assert_array_equal(clusters.features["filter"], clustered)
    np.testing.assert_array_equal(clusters.features["cluster"], result.labels[clustered])
    assert "peak_frequency" in clusters.features
    assert list(clusters.text.values) == [str(i) for i in clustered]


def test_eight_models_produce_three_layers_each(docked, qtbot, wait_idle):
    viewer, widget = docked
    previous = None
    for model in FIRST_LAYERS:
        widget.model.value = model
        wait_idle(widget)
        assert widget.last_error is None, widget.last_error
        _check_layers(viewer, widget, model)
        # Switching model replaces what the viewer shows: three layers, all of this model.
        names = [layer.name for layer in viewer.layers]
        assert len(names) == 3 and set(names) == {lay.name for lay in widget.layers.values()}
        if previous is not None:
            assert not set(names) & previous, "the previous model's layers must be gone"
        previous = set(names)
        assert widget.table.shape[0] == widget.result.n_clusters


def test_threshold_changes_clusters_in_place(docked, qtbot, wait_idle):
    viewer, widget = docked
    # 3x3 kernels: their tuning similarities spread over the slider's whole range (11x11
    # ones of random weights stay below 0.5, the slider's lowest value)
    widget.model.value = "vgg16"
    wait_idle(widget)
    layers_before = list(viewer.layers)
    clusters = widget.layers["clusters"]
    widget.threshold.value = 0.999
    wait_idle(widget)
    tight = (len(clusters.data), clusters.edge_color.copy(), list(clusters.text.values))
    widget.threshold.value = 0.5
    wait_idle(widget)
    loose = (len(clusters.data), clusters.edge_color.copy(), list(clusters.text.values))
    assert list(viewer.layers) == layers_before, "a threshold change adds no layer"
    assert widget.layers["clusters"] is clusters
    assert loose[0] > tight[0]
    assert loose[2] != tight[2]
    assert loose[1].shape != tight[1].shape or not np.allclose(loose[1], tight[1])
    assert clusters.metadata["kernelspec"]["threshold"] == pytest.approx(0.5)
    # A colour per cluster: as many distinct edge colours as clusters.
    n_clusters = widget.result.n_clusters
    assert len(np.unique(np.round(clusters.edge_color, 4), axis=0)) == n_clusters


def test_view_and_method_changes_do_not_reload(docked, qtbot, wait_idle, monkeypatch):
    _viewer, widget = docked
    import napari_kernelspec.sources.loading as loading

    def fail(*args, **kwargs):
        raise AssertionError("the model must not be reloaded")

    monkeypatch.setattr(loading, "load_kernels", fail)
    kernels = widget.layers["kernels"]
    before = kernels.data.copy()
    widget.view.value = "high_contrast"
    wait_idle(widget)
    assert widget.layers["kernels"] is kernels
    assert not np.array_equal(kernels.data, before)
    assert kernels.metadata["view"] == "high_contrast"
    widget.method.value = "seed"
    wait_idle(widget)
    spectra = widget.layers["spectra"]
    assert spectra.metadata["method"] == "seed" and spectra.metadata["frequencies"] is None
    assert spectra.data.shape[0] % 32 < spectra.data.shape[0]
    widget.min_samples.value = 3
    wait_idle(widget)
    assert widget.result.min_samples == 3
    assert all(len(m) >= 3 for m in widget.result.clusters)
    assert widget.last_error is None


def test_stale_results_never_overwrite_newer_ones(docked, qtbot, wait_idle):
    viewer, widget = docked
    widget.model.value = "vgg16"  # slow-ish: a load
    widget.model.value = "lenet5"  # newer request, started before vgg16 finished
    wait_idle(widget)
    qtbot.waitUntil(lambda: widget._running == 0, timeout=60_000)
    assert widget.result.bank.model == "lenet5"
    assert len(_kernelspec_layers(viewer)) == 3
    assert all(lay.name.startswith("LeNet5") for lay in _kernelspec_layers(viewer))


def test_user_error_is_a_notification_and_viewer_stays_usable(docked, qtbot, wait_idle):
    viewer, widget = docked
    from napari_kernelspec._napari._qt.widget import TORCHVISION

    names = [lay.name for lay in viewer.layers]
    widget.model.value = TORCHVISION
    widget.torchvision_name.value = "alexnett"
    widget.request_update()
    wait_idle(widget)
    assert widget.last_error is not None and "alexnet" in widget.last_error
    assert "\n" not in widget.last_error
    assert [lay.name for lay in viewer.layers] == names
    widget.torchvision_name.value = "convnext_tiny"
    widget.request_update()
    wait_idle(widget)
    assert widget.last_error is None
    assert widget.result.bank.weights.shape == (96, 3, 4, 4)


def test_hover_and_focus(docked, qtbot, wait_idle):
    viewer, widget = docked
    result = widget.result
    geometry = MosaicGeometry.from_dict(
        widget.layers["kernels"].metadata["kernelspec"]["geometry"]
    )
    k = 5
    centre = geometry.centre(k)
    text = widget.hover_text(centre)
    assert text is not None and text.startswith(f"filter {k} ·")
    lab = int(result.labels[k])
    assert (f"cluster {lab}" if lab >= 0 else "unclustered") in text
    assert "peak" in text
    gap_point = (centre[0], centre[1] + geometry.tile / 2 + geometry.gap / 2)
    assert widget.hover_text(gap_point) is None
    # The status bar: whatever napari's status thread computes gets the filter appended.
    viewer.mouse_over_canvas = True
    viewer.cursor.position = centre
    viewer.status = viewer.layers[0].get_status(centre, world=True)
    assert f"filter {k} ·" in viewer.status["coordinates"]
    assert f"filter {k} ·" in widget.hover.value
    # Over the spectra it also reports the frequency under the cursor.
    widget.show_.value = "spectra"
    assert "c/px" in widget.hover_text(centre).split("f=")[-1]
    # Focus: the camera centres on tile k and zooms in.
    camera = widget.camera
    zoom = camera.zoom
    widget.focus.value = k
    np.testing.assert_allclose(camera.center[-2:], centre)
    assert camera.zoom > zoom


def test_screenshot_is_not_blank(docked, qtbot, wait_idle):
    viewer, _widget = docked
    image = viewer.screenshot(canvas_only=True, flash=False)
    assert image.ndim == 3 and image.shape[-1] == 4
    rgb = image[..., :3].astype(float)
    background = np.median(rgb.reshape(-1, 3), axis=0)
    differs = np.abs(rgb - background).sum(axis=-1) > 30
    assert rgb.std() > 10
    assert differs.mean() > 0.05
