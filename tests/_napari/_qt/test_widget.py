"""The widget inside a real napari viewer (run under ``xvfb-run``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.layers import MosaicGeometry
from napari_kernelspec._napari.legends import LABELS_ROLE
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
    """The plugin's mosaic layers (the one mosaic-labels layer aside, checked here)."""
    ours = [lay for lay in viewer.layers if "kernelspec" in lay.metadata]
    labels = [lay for lay in ours if lay.metadata["kernelspec"].get("role") == LABELS_ROLE]
    assert len(labels) <= 1  # one labels layer, never piled up
    return [lay for lay in ours if lay not in labels]


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
    # One point per filter (point i = filter i), framed in its cluster's colour.
    assert len(clusters.data) == n
    np.testing.assert_array_equal(clusters.features["index"], np.arange(n))
    np.testing.assert_array_equal(clusters.features["cluster"], result.labels)
    assert "peak_frequency" in clusters.features
    np.testing.assert_array_equal(clusters.border_color[:, 3] > 0, result.labels >= 0)
    # Every tile carries its index, clustered or not.
    assert list(clusters.text.values) == [str(i) for i in range(n)]
    assert not clusters.editable


def test_eight_models_produce_three_layers_each(docked, qtbot, wait_idle):
    viewer, widget = docked
    previous = None
    for model in FIRST_LAYERS:
        widget.model.value = model
        wait_idle(widget)
        assert widget.last_error is None, widget.last_error
        _check_layers(viewer, widget, model)
        # Switching model replaces what the viewer shows: three layers, all of this model.
        names = [layer.name for layer in _kernelspec_layers(viewer)]
        assert len(viewer.layers) == 4  # and the mosaic labels
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
    tight = (clusters.border_color[:, 3] > 0).sum(), clusters.features["cluster"].to_numpy()
    widget.threshold.value = 0.5
    wait_idle(widget)
    loose = (clusters.border_color[:, 3] > 0).sum(), clusters.features["cluster"].to_numpy()
    assert list(viewer.layers) == layers_before, "a threshold change adds no layer"
    assert widget.layers["clusters"] is clusters
    assert loose[0] > tight[0]
    np.testing.assert_array_equal(loose[1], widget.result.labels)
    assert clusters.metadata["kernelspec"]["threshold"] == pytest.approx(0.5)
    # A colour per cluster: as many distinct edge colours as clusters.
    n_clusters = widget.result.n_clusters
    framed = clusters.border_color[clusters.border_color[:, 3] > 0]
    assert len(np.unique(np.round(framed, 4), axis=0)) == n_clusters


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
    # Over the kernels: the raw weight of every input channel at the pixel under the cursor.
    kernels = widget.layers["kernels"]
    ky, kx = divmod(k, geometry.ncols)
    h, w = geometry.kernel_shape
    pixel = (ky * (h + 1) + 2, kx * (w + 1) + 3)
    world = kernels.data_to_world(pixel)
    raw = result.bank.weights[k, :, 2, 3]
    assert f"raw w(y 2, x 3) = ({', '.join(f'{v:+.4g}' for v in raw)})" in widget.hover_text(world)
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


def test_thirty_quick_slider_changes_end_on_the_last_value(docked, qtbot, wait_idle, monkeypatch):
    """A drag: 30 values 20 ms apart. Superseded values are never analysed; the last is shown."""
    import napari_kernelspec.analysis.pipeline as pipeline

    viewer, widget = docked
    analysed: list[float] = []
    real, real_fast = pipeline.analyze, pipeline.rethreshold

    def counting(bank, *args, **kwargs):
        analysed.append(kwargs.get("threshold"))
        return real(bank, *args, **kwargs)

    def counting_fast(result, threshold):
        analysed.append(threshold)
        return real_fast(result, threshold)

    monkeypatch.setattr(pipeline, "analyze", counting)
    monkeypatch.setattr(pipeline, "rethreshold", counting_fast)
    values = np.linspace(0.6, 0.97, 30).round(3)
    for value in values:
        widget.threshold.value = float(value)
        qtbot.wait(20)
    wait_idle(widget)
    last = float(values[-1])
    assert widget.result.threshold == pytest.approx(last)
    clusters = widget.layers["clusters"]
    assert clusters.metadata["kernelspec"]["threshold"] == pytest.approx(last)
    expected = pipeline.analyze(widget.bank, threshold=last).labels
    np.testing.assert_array_equal(clusters.features["cluster"], expected)
    assert analysed[-2] == pytest.approx(last)  # [-1] is the check just above
    assert len(analysed) - 1 <= 3, f"superseded values were analysed: {analysed}"
    assert len(_kernelspec_layers(viewer)) == 3


def test_close_disconnects_and_reopen_adopts_layers(docked, qtbot, wait_idle):
    from napari_kernelspec._napari._qt.widget import WIDGET_NAME

    viewer, widget = docked
    layers = dict(widget.layers)
    names = sorted(lay.name for lay in viewer.layers)
    viewer.window.remove_dock_widget(widget.native)
    assert widget.closed
    # Nothing reaches a closed widget: no request, no hover text, no status text.
    assert widget.request_update() is None
    widget.hover.value = ""
    centre = layers["clusters"].data[3]
    viewer.cursor.position = tuple(centre)
    assert widget.hover.value == ""
    viewer.mouse_over_canvas = True
    viewer.status = "plain"
    assert viewer.status == "plain"
    _, again = viewer.window.add_plugin_dock_widget("napari-kernelspec", WIDGET_NAME)
    assert again is not widget
    wait_idle(again)
    assert again.layers == layers, "the reopened widget adopts the layers left behind"
    assert sorted(lay.name for lay in viewer.layers) == names
    assert not any("[1]" in lay.name for lay in viewer.layers)
    again.weights.value = "random"
    again.model.value = "lenet5"
    wait_idle(again)
    assert len(viewer.layers) == 4 and again.layers["kernels"] is layers["kernels"]


def test_untrained_warning_is_a_notification(make_napari_viewer, qtbot, wait_idle):
    from napari.utils.notifications import notification_manager

    from napari_kernelspec._napari._qt.widget import WIDGET_NAME

    viewer = make_napari_viewer(show=True)
    before = len(notification_manager.records)
    _, widget = viewer.window.add_plugin_dock_widget("napari-kernelspec", WIDGET_NAME)
    wait_idle(widget)  # alexnet, auto: no download here, so untrained weights with a warning
    new = notification_manager.records[before:]
    assert any("UNTRAINED" in n.message and n.severity == "warning" for n in new), [
        n.message for n in new
    ]
    assert widget.layers["kernels"].name.endswith("(untrained) kernels")


def test_features_table_rows_and_frames_are_linked(docked, qtbot, wait_idle):
    _viewer, widget = docked
    from napari_kernelspec.analysis.pipeline import analyze

    # A threshold with at least three clusters for this bank.
    threshold = next(
        t
        for t in np.arange(0.99, 0.05, -0.01)
        if analyze(widget.bank, threshold=t).n_clusters >= 3
    )
    widget.threshold.value = float(threshold)
    wait_idle(widget)
    result = widget.result
    assert result.n_clusters >= 3
    focused: list[int] = []
    widget.filter_focused.connect(focused.append)
    # The table fits: no row numbers, no sideways scrolling; swatches survive selection.
    native = widget.table.native
    assert not native.verticalHeader().isVisible()
    assert native.horizontalScrollBar().maximum() == 0
    assert not native.item(1, 0).icon().isNull()
    # A row selects its cluster's members in the canvas.
    widget.table.native.selectRow(1)
    assert widget.highlighted == result.clusters[1]
    border = widget.layers["clusters"].border_width
    others = np.flatnonzero(result.labels != 1)
    assert border[result.clusters[1]].min() > border[others].max()
    # Choosing a filter in the canvas selects its cluster's row (or none for unclustered).
    member = result.clusters[2][0]
    widget.choose_filter(member)
    assert focused[-1] == member
    rows = {i.row() for i in widget.table.native.selectedIndexes()}
    assert rows == {2}
    assert widget.highlighted == result.clusters[2]
    loners = np.flatnonzero(result.labels < 0)
    if loners.size:
        widget.choose_filter(int(loners[0]))
        assert not widget.table.native.selectedIndexes()
        assert widget.highlighted == [int(loners[0])]


def test_shortcuts_are_napari_actions_on_keys_napari_leaves_free(docked, qtbot, wait_idle):
    from napari._app_model import get_app_model
    from napari.utils.action_manager import action_manager
    from napari.utils.shortcuts import default_shortcuts
    from qtpy.QtCore import Qt

    from napari_kernelspec._napari.actions import ACTIONS, PREFIX

    viewer, widget = docked
    # Listed in Preferences > Shortcuts, on keys no napari default or menu item uses.
    napari_keys = {str(k) for keys in default_shortcuts.values() for k in keys}
    napari_keys |= {str(kb.keybinding) for kb in get_app_model().keybindings}
    ours = {str(k) for name in ACTIONS for k in action_manager._shortcuts[f"{PREFIX}:{name}"]}
    assert len(ours) == len(ACTIONS) and not ours & napari_keys, ours & napari_keys
    # Pressed on the canvas (not the widget), as a user would.
    canvas = viewer.window._qt_viewer
    window = viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    canvas.setFocus()
    widget.focus_filter(4)
    alt = Qt.KeyboardModifier.AltModifier
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight, alt)
    assert widget.current_filter == 5
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft, alt)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft, alt)
    assert widget.current_filter == 3 and widget.focus.value == 3
    qtbot.keyClick(canvas, Qt.Key.Key_Backslash, alt)
    assert widget.show_.value == "spectra"
    assert widget.layers["spectra"].visible and not widget.layers["kernels"].visible


def test_visibility_renames_and_refit(docked, qtbot, wait_idle):
    viewer, widget = docked
    layers = widget.layers
    # The eye button and the "show" control stay in step.
    layers["spectra"].visible = True
    assert widget.show_.value == "spectra" and not layers["kernels"].visible
    layers["kernels"].visible = True
    assert widget.show_.value == "kernels" and not layers["spectra"].visible
    # A name the user gave survives updates; the others follow the model.
    layers["kernels"].name = "my kernels"
    widget.view.value = "high_contrast"
    widget.threshold.value = 0.8
    wait_idle(widget)
    assert layers["kernels"].name == "my kernels"
    # The seed method halves the mosaic: the camera refits to it.
    zoom = widget.camera.zoom
    widget.method.value = "seed"
    wait_idle(widget)
    # the refit may land a turn of the event loop after the layers (napari's own redraw)
    qtbot.waitUntil(lambda: widget.camera.zoom > 1.5 * zoom, timeout=5000)
    height, width = layers["spectra"].data.shape
    centre = np.asarray(widget.camera.center[-2:])
    np.testing.assert_allclose(centre, (np.array([height, width]) - 1) / 2, atol=1.0)
    # Hover text in the status bar about AlexNet's filter 60 ...
    viewer.mouse_over_canvas = True
    position = tuple(layers["clusters"].data[60])
    viewer.cursor.position = position
    viewer.status = layers["kernels"].get_status(position, world=True)
    assert "filter 60 ·" in str(viewer.status["coordinates"])
    widget.model.value = "lenet5"
    wait_idle(widget)
    # ... is gone once LeNet5 (6 filters) is shown.
    assert "filter 60" not in str(viewer.status), viewer.status
    assert layers["kernels"].name == "my kernels"
    assert layers["spectra"].name == "LeNet5 (untrained) spectra"


def test_index_text_follows_zoom(docked, qtbot, wait_idle):
    _viewer, widget = docked
    clusters = widget.layers["clusters"]
    tile = float(clusters.metadata["kernelspec"]["geometry"]["tile"])
    widget.camera.zoom = 8.0 / tile  # tiles 8 px wide: unreadable
    assert not clusters.text.visible
    widget.camera.zoom = 200.0 / tile
    assert clusters.text.visible
    big = clusters.text.size
    widget.camera.zoom = 80.0 / tile
    assert clusters.text.visible and clusters.text.size < big


def test_exports(docked, qtbot, wait_idle, tmp_path):
    import csv

    from PIL import Image

    _viewer, widget = docked
    table = widget.export_table(tmp_path / "filters.csv")
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    result = widget.result
    assert [int(r["index"]) for r in rows] == list(range(result.n_filters))
    assert [int(r["cluster"]) for r in rows] == result.labels.tolist()
    kernels = np.load(widget.export_kernels(tmp_path / "kernels.npy"))
    assert kernels.dtype == np.float32
    np.testing.assert_array_equal(kernels, result.bank.weights)
    png = Image.open(widget.export_view(tmp_path / "view.png"))
    assert png.format == "PNG" and np.asarray(png).std() > 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filters.csv", "kernels.npy", "view.png"]


def test_auto_threshold_starts_the_slider_at_the_chosen_value(
    make_napari_viewer, qtbot, wait_idle, monkeypatch
):
    """The widget asks `analyze` for threshold="auto" and shows the value chance chose."""
    import napari_kernelspec.analysis.pipeline as pipeline
    from napari_kernelspec._napari._qt.widget import KernelSpectrumWidget

    real_analyze, real_fast = pipeline.analyze, pipeline.rethreshold
    asked: list[object] = []

    def analyze(bank, method="response", threshold=None, min_samples=2, **kwargs):
        asked.append(threshold)
        return real_analyze(bank, method, threshold, min_samples, **kwargs)

    def rethreshold(result, threshold):
        asked.append(threshold)
        return real_fast(result, threshold)

    monkeypatch.setattr(pipeline, "analyze", analyze)
    monkeypatch.setattr(pipeline, "rethreshold", rethreshold)
    viewer = make_napari_viewer(show=True)
    widget = KernelSpectrumWidget(viewer, autostart=False)
    viewer.window.add_dock_widget(widget)
    assert widget.auto_threshold.value and widget.auto_threshold.enabled
    widget.weights.value = "random"
    wait_idle(widget)
    assert asked == ["auto"]
    chosen = widget.result.threshold
    assert widget.result.threshold_rule == "auto"
    assert widget.threshold.value == pytest.approx(chosen, abs=1e-3)  # the slider's step
    # Another model keeps asking for "auto"; moving the slider switches it off.
    widget.model.value = "lenet5"
    wait_idle(widget)
    assert asked[-1] == "auto"
    lenet_auto = widget.result.threshold
    widget.threshold.value = 0.8
    wait_idle(widget)
    assert not widget.auto_threshold.value
    assert asked[-1] == pytest.approx(0.8) and widget.result.threshold_rule == "fixed"
    widget.auto_threshold.value = True
    wait_idle(widget)
    assert asked[-1] == "auto"
    assert widget.threshold.value == pytest.approx(lenet_auto, abs=1e-3)


def test_hidden_mosaics_get_fresh_thumbnails(docked, qtbot, wait_idle):
    _viewer, widget = docked
    spectra, kernels = widget.layers["spectra"], widget.layers["kernels"]
    assert not spectra.visible
    before = spectra.thumbnail.copy()  # AlexNet's
    widget.model.value = "lenet5"
    wait_idle(widget)
    ours_spectra = spectra.thumbnail.copy()  # made by the widget: the layer is hidden
    assert not np.array_equal(ours_spectra, before)
    widget.show_.value = "spectra"  # napari slices the layer and makes its own thumbnail
    np.testing.assert_array_equal(ours_spectra, spectra.thumbnail)
    widget.model.value = "mobilenet_v2"  # now the kernels are hidden when they change
    wait_idle(widget)
    ours_kernels = kernels.thumbnail.copy()
    widget.show_.value = "kernels"
    np.testing.assert_array_equal(ours_kernels, kernels.thumbnail)
