"""The Dataset dock in a real napari viewer, on the bundled digits and the trained LeNet5."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_kernelspec._napari.layout import overlaps, world_extent

from .conftest import WORKER_TIMEOUT_MS

pytestmark = pytest.mark.gui

N_IMAGES = 40


@pytest.fixture
def shown(make_napari_viewer, qtbot):
    """A viewer with a user image, the dock, and one finished run (40 digits, PCA)."""
    from napari_kernelspec._napari._qt.dataset import DatasetWidget

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((50, 60), np.float32), name="photo")
    widget = DatasetWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Dataset")
    assert widget.model.value == "lenet5"
    widget.limit.value = N_IMAGES
    widget.coordinates.value = "pca"
    assert widget.run() is not None
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)
    assert widget.last_error is None, widget.last_error
    yield viewer, widget
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)


def test_points_selection_shows_that_image(shown, qtbot):
    from sklearn.datasets import load_digits

    from napari_kernelspec.imaging.dataset.sources import load_item

    viewer, widget = shown
    layers = widget.layers
    # placed beside each other and the user's image: no two layers overlap
    boxes = [(lay.name, world_extent([lay])) for lay in viewer.layers]
    assert len(boxes) == 4
    for i, (name_a, a) in enumerate(boxes):
        for name_b, b in boxes[i + 1 :]:
            assert not overlaps(a, b), (name_a, name_b)
    assert set(layers) == {"embedding", "dataset_image", "class_heatmap"}
    points = layers["embedding"]
    assert len(points.data) == N_IMAGES
    assert list(points.features["class"]) == [str(d) for d in load_digits().target[:N_IMAGES]]
    # same class, same colour; the two digit-0 rows and a digit-1 row
    target = load_digits().target[:N_IMAGES]
    zeros, one = np.flatnonzero(target == 0), int(np.flatnonzero(target == 1)[0])
    np.testing.assert_allclose(points.face_color[zeros[0]], points.face_color[zeros[1]])
    assert not np.allclose(points.face_color[zeros[0]], points.face_color[one])

    points.selected_data = {17}
    image = layers["dataset_image"]
    qtbot.waitUntil(lambda: image.metadata["kernelspec"]["row"] == 17, timeout=5000)
    np.testing.assert_array_equal(image.data, load_item("digits:17"))
    assert widget.layers["dataset_image"] is image  # updated in place

    # the mouse over point 5 (napari's highlight) shows image 5
    event = SimpleNamespace(
        position=tuple(np.asarray(points.data[5]) + np.asarray(points.translate)),
        view_direction=None,
        dims_displayed=[0, 1],
    )
    widget._on_hover(points, event)
    assert image.metadata["kernelspec"]["row"] == 5
    np.testing.assert_array_equal(image.data, load_item("digits:5"))
    assert points.mouse_move_callbacks  # what napari calls on mouse moves


def test_follows_the_session_model(make_napari_viewer):
    from napari_kernelspec import KernelBank
    from napari_kernelspec._napari._qt.dataset import MAIN, DatasetWidget
    from napari_kernelspec._napari.session import session_for
    from napari_kernelspec.analysis import analyze

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    bank = KernelBank(
        weights=rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        model="w.npy",
        layer="w",
        source="array",
    )
    session_for(viewer).show(analyze(bank))  # what the main widget publishes
    widget = DatasetWidget(viewer)
    assert widget.model.value == MAIN
    assert widget.request().model is bank


def test_heatmap_has_named_axes_and_a_colour_bar(shown):
    _, widget = shown
    heat = widget.layers["class_heatmap"]
    assert heat.data.shape == (6, 10)  # (filters, classes): LeNet5 conv1 x 10 digits
    assert tuple(heat.axis_labels) == ("filter", "class")
    assert heat.colorbar.visible
    np.testing.assert_allclose(heat.data, widget.result.stats.means()[:10].T, rtol=1e-6)


def test_closing_the_dock_while_it_works_adds_nothing(make_napari_viewer, qtbot):
    from napari_kernelspec._napari._qt.dataset import DatasetWidget
    from napari_kernelspec._napari.jobs import join_running

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((8, 8), np.float32), name="photo")
    widget = DatasetWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Dataset")
    widget.limit.value = 200
    widget.coordinates.value = "pca"
    widget.run()
    assert widget.busy
    viewer.window.remove_dock_widget(widget.native)
    assert widget.closed
    join_running(timeout=60)  # the worker stops at its next partition
    qtbot.wait(200)  # deliver anything it might still post
    assert [lay.name for lay in viewer.layers] == ["photo"]
    assert widget.layers == {}


def test_cancel_shows_nothing(make_napari_viewer, qtbot):
    from napari_kernelspec._napari._qt.dataset import DatasetWidget
    from napari_kernelspec._napari.jobs import join_running

    viewer = make_napari_viewer(show=True)
    widget = DatasetWidget(viewer)
    widget.limit.value = 200
    widget.coordinates.value = "pca"
    widget.run()
    widget.cancel()
    assert not widget.busy and widget.status.value == "Cancelled."
    join_running(timeout=60)
    qtbot.waitUntil(lambda: widget._jobs.running is None, timeout=WORKER_TIMEOUT_MS)
    assert len(viewer.layers) == 0


def test_every_control_has_a_tooltip(make_napari_viewer):
    from napari_kernelspec._napari._qt.dataset import DatasetWidget

    widget = DatasetWidget(make_napari_viewer())
    for control in widget.body:
        if control is not widget.status:
            assert control.tooltip, control.label


CLOSE_SCRIPT = """
import sys

import napari
import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_kernelspec._napari._qt.dataset import DatasetWidget

viewer = napari.Viewer(show=True)
viewer.add_image(np.zeros((8, 8), np.float32), name="photo")
widget = DatasetWidget(viewer)
viewer.window.add_dock_widget(widget, name="Dataset")
widget.limit.value = 300
widget.coordinates.value = "pca"
widget.run()
assert widget.busy, "the run must still be going when we close"
added = []
viewer.layers.events.inserted.connect(lambda event: added.append(event.value.name))
QTimer.singleShot(300, viewer.close)
QTimer.singleShot(60000, QApplication.instance().quit)  # safety net
napari.run()
print("closed", widget.closed, "added", added, flush=True)
"""


@pytest.mark.slow  # a fresh Python with napari: ~20 s
def test_closing_the_viewer_while_it_works_exits_quietly(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERNELSPEC_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", CLOSE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "has been deleted" not in text, text[-3000:]
    assert "closed True added []" in out.stdout


def test_a_class_folder_with_a_weights_file(make_napari_viewer, qtbot, tmp_path):
    """A folder in ImageFolder layout and a weights file: the shown image is that file."""
    from PIL import Image

    from napari_kernelspec._napari._qt.dataset import FOLDER, OTHER, DatasetWidget

    rng = np.random.default_rng(1)
    np.save(tmp_path / "w.npy", rng.normal(size=(3, 1, 3, 3)).astype(np.float32))
    files = {}
    for name in ("cats", "dogs"):
        (tmp_path / "set" / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (12, 14), dtype=np.uint8)
            path = tmp_path / "set" / name / f"{i}.png"
            Image.fromarray(pixels).save(path)
            files[str(path)] = pixels
    viewer = make_napari_viewer(show=True)
    widget = DatasetWidget(viewer)
    widget.model.value = OTHER
    widget.other.value = str(tmp_path / "w.npy")
    widget.source.value = FOLDER
    widget.folder.value = tmp_path / "set"
    widget.coordinates.value = "pca"
    assert widget.run() is not None
    qtbot.waitUntil(widget.wait_idle_condition, timeout=WORKER_TIMEOUT_MS)
    assert widget.last_error is None, widget.last_error
    points = widget.layers["embedding"]
    assert list(points.features["class"]) == ["cats"] * 3 + ["dogs"] * 3
    assert widget.layers["class_heatmap"].data.shape == (3, 2)  # 3 filters x 2 classes
    points.selected_data = {4}
    image = widget.layers["dataset_image"]
    qtbot.waitUntil(lambda: image.metadata["kernelspec"]["row"] == 4, timeout=5000)
    path = points.features["path"].iloc[4]
    assert path.endswith("dogs/1.png")
    np.testing.assert_array_equal(image.data, files[path])
