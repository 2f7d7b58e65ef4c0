"""The main widget takes a folder of checkpoints: a training history on napari's dims slider."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari._qt.widget import HISTORY
from napari_kernelspec._napari.layers import MosaicGeometry

pytestmark = pytest.mark.gui

#: Step names in the order of training; written to disk out of order.
STEPS = ["epoch_1", "epoch_2", "epoch_10"]


@pytest.fixture
def history_folder(tmp_path, gabor):
    """Six Gabors of different orientations; at step t filters 1..t+1 become scaled copies
    of filter 0, so the cluster of filter 0 grows: 2, 3, 4 members."""
    import torch

    rng = np.random.default_rng(0)
    base = np.stack([gabor(11, 0.25, 30.0 * k, sigma=2.5)[None] for k in range(6)])
    folder = tmp_path / "run"
    folder.mkdir()
    weights = []
    for t in (2, 0, 1):  # written out of order: epoch_10 must still come last
        w = base.copy()
        for k in range(1, t + 2):
            w[k] = base[0] * (1 + 0.1 * k) + 0.01 * rng.standard_normal(base[0].shape)
        torch.save(
            {"conv1.weight": torch.from_numpy(w.astype(np.float32))}, folder / f"{STEPS[t]}.pt"
        )
        weights.append((t, w.astype(np.float32)))
    (folder / "notes.txt").write_text("not a checkpoint")
    return folder, dict(weights)


def _open(widget, wait_idle, folder) -> None:
    widget.model.value = HISTORY
    widget.history_folder.value = str(folder)
    wait_idle(widget)


def _members(widget) -> list[list[int]]:
    return [list(map(int, m)) for m in widget.result.clusters]


def test_a_folder_of_checkpoints_scrubs_through_training(docked, wait_idle, history_folder, qtbot):
    viewer, widget = docked
    folder, weights = history_folder
    _open(widget, wait_idle, folder)
    assert not widget.weights.enabled  # the checkpoints say what they hold
    assert widget.last_error is None
    layers = widget.layers
    assert set(layers) == {"kernels", "spectra", "clusters"}
    assert len(viewer.layers) == 4  # AlexNet's layers (and label) replaced, not piled up
    assert all(lay.ndim == 3 for lay in layers.values())
    assert layers["kernels"].name == "run history kernels"
    assert viewer.dims.nsteps[0] == 3  # one slider position per checkpoint
    assert viewer.dims.axis_labels[0] == "step"
    n = 6
    assert len(layers["clusters"].data) == 3 * n  # a frame per filter and step
    for t, name in enumerate(STEPS):
        with qtbot.waitSignal(widget.result_changed, timeout=5000):
            viewer.dims.set_current_step(0, t)
        np.testing.assert_array_equal(widget.bank.weights, weights[t])
        assert _members(widget) == [list(range(t + 2))]  # the cluster grows step by step
        assert f"step <b>{name}</b> ({t + 1} of 3)" in widget.summary.value
        assert widget.table.native.item(0, 2).text() == ", ".join(map(str, range(t + 2)))
        # the displayed mosaic is that step's
        np.testing.assert_array_equal(
            np.asarray(layers["kernels"]._slice.image.view), layers["kernels"].data[t]
        )
    # hovering filter 3 reads the step under the slider: unclustered before epoch_10
    geometry = MosaicGeometry.from_dict(layers["clusters"].metadata["kernelspec"]["geometry"])
    r, c = geometry.centre(3)
    assert widget.hover_text((2.0, r, c)).startswith("filter 3 · cluster 0")
    viewer.dims.set_current_step(0, 0)
    assert widget.hover_text((0.0, r, c)).startswith("filter 3 · unclustered")


def test_a_cluster_row_highlights_its_members_at_every_step(docked, wait_idle, history_folder):
    viewer, widget = docked
    folder, _ = history_folder
    _open(widget, wait_idle, folder)
    viewer.dims.set_current_step(0, 2)
    widget.table.native.selectRow(0)
    assert widget.highlighted == [0, 1, 2, 3]
    width = np.asarray(widget.layers["clusters"].border_width).reshape(3, 6)
    thick = width.max()
    # the same filters are outlined at every step, so scrubbing keeps them marked
    assert (width[:, :4] == thick).all() and (width[:, 4:] < thick).all()
    widget.choose_filter(5)
    assert widget.current_filter == 5 and widget.focus.value == 5


def test_a_threshold_change_recuts_every_step(docked, wait_idle, history_folder):
    from napari_kernelspec.analysis import analyze
    from napari_kernelspec.sources.loading import load_kernels

    viewer, widget = docked
    folder, _ = history_folder
    _open(widget, wait_idle, folder)
    viewer.dims.set_current_step(0, 2)
    pixels = widget.layers["kernels"].data
    widget.threshold.value = 0.9  # turns "auto" off
    wait_idle(widget)
    assert widget.layers["kernels"].data is pixels  # only the frames were rebuilt
    assert not widget.auto_threshold.value
    assert widget.result.threshold == pytest.approx(0.9)
    assert (
        all(lay.ndim == 3 for lay in widget.layers.values()) and len(viewer.layers) == 4
    )  # + labels
    labels = widget.layers["clusters"].features["cluster"].to_numpy().reshape(3, 6)
    for t, name in enumerate(STEPS):  # each step as `analyze` cuts it at 0.9
        expected = analyze(load_kernels(folder / f"{name}.pt"), threshold=0.9).labels
        np.testing.assert_array_equal(labels[t], expected)
    np.testing.assert_array_equal(widget.result.labels, labels[2])


def test_back_to_one_model_drops_the_step_axis(docked, wait_idle, history_folder, monkeypatch):
    import napari_kernelspec.sources.loading as loading

    viewer, widget = docked
    folder, _ = history_folder
    _open(widget, wait_idle, folder)
    widget.model.value = "lenet5"
    wait_idle(widget)
    assert widget.last_error is None
    assert len(viewer.layers) == 4  # three mosaic layers and their labels
    assert all(lay.ndim == 2 for lay in widget.layers.values())
    assert viewer.dims.ndim == 2
    assert "step" not in widget.summary.value
    # and again: the loaded steps come from the widget's cache
    monkeypatch.setattr(
        loading, "load_kernels", lambda *a, **k: pytest.fail("the steps must not be reloaded")
    )
    widget.model.value = HISTORY
    wait_idle(widget)
    assert viewer.dims.nsteps[0] == 3 and widget.result.bank.weights.shape == (6, 1, 11, 11)


def test_a_folder_without_checkpoints_says_so(docked, wait_idle, tmp_path):
    _viewer, widget = docked
    (tmp_path / "readme.txt").write_text("nothing here")
    shown = dict(widget.layers)
    _open(widget, wait_idle, tmp_path)
    assert widget.last_error is not None and "holds no weights files" in widget.last_error
    assert widget.summary.value.startswith("Error: ")
    assert widget.layers == shown  # what was shown stays


def test_linked_widgets_hear_of_a_switch_once(docked, wait_idle, history_folder, qtbot):
    viewer, widget = docked
    folder, _ = history_folder
    _open(widget, wait_idle, folder)
    viewer.dims.set_current_step(0, 2)
    qtbot.wait(400)  # the step's signals, after the pause
    banks: list[object] = []
    widget.bank_changed.connect(banks.append)
    widget.model.value = "lenet5"
    wait_idle(widget)
    qtbot.wait(400)  # longer than the step signals' pause
    assert len(banks) == 1 and banks[0].model == "lenet5"


def test_an_empty_folder_control_never_loads_the_working_directory(
    docked, wait_idle, history_folder, monkeypatch
):
    _viewer, widget = docked
    folder, _ = history_folder
    monkeypatch.chdir(folder)  # a folder full of checkpoints
    shown = widget.result
    widget.model.value = HISTORY  # nothing chosen yet
    wait_idle(widget)
    assert widget.summary.value == "Give a folder of checkpoints."
    assert widget.result is shown and widget.last_error is None


def test_a_typed_path_loads_on_enter_not_per_keystroke(docked, wait_idle, history_folder, qtbot):
    from qtpy.QtCore import Qt

    viewer, widget = docked
    folder, _ = history_folder
    widget.model.value = HISTORY
    window = viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    edit = widget.history_folder.line_edit.native
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus, timeout=5000)
    generation = widget._jobs.generation
    qtbot.keyClicks(edit, str(folder))  # every prefix "/", "/tmp", ... is a folder
    assert widget._jobs.generation == generation  # nothing requested while typing
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    wait_idle(widget)
    assert widget._jobs.generation == generation + 1
    assert viewer.dims.nsteps[0] == 3 and widget.last_error is None


def test_checkpoints_of_different_shapes_are_refused_before_their_analysis(
    docked, wait_idle, tmp_path, monkeypatch
):
    import torch

    import napari_kernelspec.analysis.pipeline as pipeline

    _viewer, widget = docked
    torch.save({"conv1.weight": torch.zeros(6, 1, 5, 5) + 1}, tmp_path / "epoch_0.pt")
    torch.save({"conv1.weight": torch.zeros(8, 3, 5, 5) + 1}, tmp_path / "epoch_1.pt")
    calls = []
    real = pipeline.analyze
    monkeypatch.setattr(pipeline, "analyze", lambda *a, **k: calls.append(1) or real(*a, **k))
    _open(widget, wait_idle, tmp_path)
    assert len(calls) == 1  # the first step only (its size decides whether the rest fit)
    assert "2 different shapes" in widget.last_error
    assert "(6, 1, 5, 5)" in widget.last_error and "(8, 3, 5, 5)" in widget.last_error


def test_the_hidden_mosaic_thumbnail_follows_the_step(docked, wait_idle, history_folder):
    viewer, widget = docked
    folder, _ = history_folder
    _open(widget, wait_idle, folder)
    spectra = widget.layers["spectra"]
    assert not spectra.visible
    ours = []
    for t in (0, 2):
        viewer.dims.set_current_step(0, t)
        ours.append(spectra.thumbnail.copy())
    assert not np.array_equal(ours[0], ours[1])  # the hidden layer's thumbnail moved on
    widget.show_.value = "spectra"  # napari slices step 2 and makes its own thumbnail
    np.testing.assert_array_equal(ours[1], spectra.thumbnail)
    kernels = widget.layers["kernels"]  # hidden now
    viewer.dims.set_current_step(0, 1)
    ours_kernels = kernels.thumbnail.copy()
    widget.show_.value = "kernels"
    np.testing.assert_array_equal(ours_kernels, kernels.thumbnail)


def test_a_history_too_big_for_memory_is_refused_after_one_step(
    docked, wait_idle, history_folder, monkeypatch
):
    import napari_kernelspec._napari.history as history
    import napari_kernelspec.sources.loading as loading

    _viewer, widget = docked
    folder, _ = history_folder
    loaded = []
    real = loading.load_kernels
    monkeypatch.setattr(loading, "load_kernels", lambda *a, **k: loaded.append(a) or real(*a, **k))
    shown = dict(widget.layers)
    per_step = history.history_step_bytes(widget_analysis(real(folder / f"{STEPS[0]}.pt")))
    monkeypatch.setattr(history, "MAX_HISTORY_BYTES", 2 * per_step + 1)  # room for 2 of 3
    loaded.clear()
    _open(widget, wait_idle, folder)
    assert widget.last_error is not None
    assert widget.last_error.startswith("3 steps of this layer need about")
    assert "one checkpoint in 2 (at most 2 steps)" in widget.last_error
    assert len(loaded) == 1  # refused before the other checkpoints were read
    assert widget.layers == shown


def widget_analysis(bank):
    """The analysis the widget makes by default (automatic threshold)."""
    from napari_kernelspec.analysis import analyze

    return analyze(bank, threshold="auto")


def test_a_scrub_just_before_an_update_still_reaches_linked_widgets(
    docked, wait_idle, history_folder, qtbot
):
    viewer, widget = docked
    folder, _ = history_folder
    _open(widget, wait_idle, folder)
    viewer.dims.set_current_step(0, 2)
    qtbot.wait(400)
    banks: list[object] = []
    widget.bank_changed.connect(banks.append)
    widget.threshold.value = 0.9
    widget.request_update()  # the re-cut starts now ...
    viewer.dims.set_current_step(0, 0)  # ... and the slider moves before it lands
    wait_idle(widget)
    qtbot.wait(400)
    assert banks and banks[-1] is widget.bank  # step 0's bank was announced
    np.testing.assert_array_equal(widget.bank.weights, widget._history.banks[0].weights)


def test_leaving_the_path_field_does_not_restart_a_load(
    docked, wait_idle, history_folder, qtbot, monkeypatch
):
    import napari_kernelspec.sources.loading as loading

    viewer, widget = docked
    folder, _ = history_folder
    loaded = []
    real = loading.load_kernels
    monkeypatch.setattr(loading, "load_kernels", lambda *a, **k: loaded.append(a) or real(*a, **k))
    window = viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    widget.model.value = HISTORY
    widget.history_folder.value = str(folder)  # as the folder dialog sets it: loading starts
    edit = widget.history_folder.line_edit.native
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus, timeout=5000)
    widget.fit_button.native.setFocus()  # and out again
    qtbot.waitUntil(lambda: not edit.hasFocus(), timeout=5000)
    wait_idle(widget)
    assert len(loaded) == 3 and viewer.dims.nsteps[0] == 3


def test_histories_fall_back_to_analyze_where_rethreshold_cannot(
    docked, wait_idle, history_folder, monkeypatch
):
    import napari_kernelspec.analysis.pipeline as pipeline
    from napari_kernelspec.sources.loading import load_kernels

    _viewer, widget = docked
    folder, _ = history_folder
    _open(widget, wait_idle, folder)
    monkeypatch.setattr(pipeline, "rethreshold", lambda *a, **k: None)  # a newer result type
    widget.threshold.value = 0.9
    wait_idle(widget)
    labels = widget.layers["clusters"].features["cluster"].to_numpy().reshape(3, 6)
    for t, name in enumerate(STEPS):
        expected = pipeline.analyze(load_kernels(folder / f"{name}.pt"), threshold=0.9).labels
        np.testing.assert_array_equal(labels[t], expected)


def test_a_history_is_placed_beside_the_users_image(docked, wait_idle, history_folder):
    """Widget and reader alike: the history's mosaics never land on the user's image."""
    from napari_kernelspec._napari.layout import overlaps, world_extent

    viewer, widget = docked
    # hidden: drawing a 2-D image beside 3-D layers crashes software GL under Xvfb
    photo = viewer.add_image(np.zeros((300, 300), np.float32), name="photo", visible=False)
    _open(widget, wait_idle, history_folder[0])
    ours = list(widget.layers.values())
    assert all(lay.ndim == 3 for lay in ours)
    assert not overlaps(world_extent(ours), world_extent([photo]))

    read = viewer.open(history_folder[0], plugin="napari-kernelspec")
    assert len(read) == 3
    for other in ([photo], ours):
        assert not overlaps(world_extent(read), world_extent(other))
