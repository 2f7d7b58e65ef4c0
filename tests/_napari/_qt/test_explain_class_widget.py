"""The Explain widget's class target, in a real napari viewer (under Xvfb) on the trained LeNet5.

Known answers: Grad-CAM of a digit's true class lies on the digit's grid and equals the
core's; GrabCut's Labels mask overlaps the digit's pixels; closing the dock while a class
explanation runs leaves the viewer untouched and the process alive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_kernelspec._napari._qt.explain import WIDGET_NAME, ExplainWidget

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

TIMEOUT_MS = 120_000


@pytest.fixture
def digit_widget(make_napari_viewer, qtbot, monkeypatch, digits_cache, trained_lenet5):
    monkeypatch.setenv("KERNELSPEC_CACHE", str(digits_cache))  # the trained weights
    _, x, y = trained_lenet5
    viewer = make_napari_viewer(show=True)
    digit = viewer.add_image(x[0, 0], name="digit", scale=(2.0, 2.0), translate=(5.0, -3.0))
    w = ExplainWidget(viewer, autostart=False)
    viewer.window.add_dock_widget(w, name=WIDGET_NAME)
    w.load_model()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.model.source == "trained-digits"
    w.target.value = "class"
    w.image_layer.value = "digit"
    return viewer, w, digit, int(y[0])


def test_gradcam_of_the_true_class_lies_on_the_digits_grid(digit_widget, qtbot, trained_lenet5):
    from napari_kernelspec.imaging.explain.methods import explain_class

    viewer, w, digit, label = digit_widget
    assert w.class_choice.choices == ("predicted", *map(str, range(10)))
    assert w.method.value == "gradcam" and "grabcut" in w.method.choices
    assert not w.layer.visible and not w.filters.visible  # filter controls step aside
    w.class_choice.value = str(label)
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.last_error is None
    layer = w.layers["attributions"]
    assert layer in viewer.layers and layer.data.shape == (1, 32, 32)
    np.testing.assert_allclose(layer.scale[1:], digit.scale)
    np.testing.assert_allclose(layer.translate[1:], digit.translate)
    assert layer.colorbar.visible
    assert w.result.meta["target_class"] == label == w.result.meta["predicted_class"]
    expected = explain_class(trained_lenet5[0], digit.data, "gradcam", target=label)
    np.testing.assert_allclose(layer.data, expected.attributions.sum(axis=1), atol=1e-5)
    assert layer.data.max() > 0
    assert f"class {label} gradcam" in layer.name and f"predicted {label}" in w.status.value
    # Back to filters: the filter methods return.
    w.target.value = "filters"
    assert "maximize" in w.method.choices and "gradcam" not in w.method.choices
    assert w.layer.visible


def test_grabcut_mask_is_a_labels_layer_over_the_digit(digit_widget, qtbot):
    import napari

    viewer, w, digit, _ = digit_widget
    w.method.value = "grabcut"  # of the predicted class
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.last_error is None
    masks = w.layers["masks"]
    assert isinstance(masks, napari.layers.Labels) and masks.data.shape == (1, 32, 32)
    np.testing.assert_allclose(masks.scale[1:], digit.scale)
    np.testing.assert_allclose(masks.translate[1:], digit.translate)
    found = masks.data[0] > 0
    truth = np.asarray(digit.data) > 0.25
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou >= 0.3, iou
    w.clear()
    assert masks not in viewer.layers


def test_a_class_run_without_an_image_is_reported(digit_widget):
    viewer, w, _, _ = digit_widget
    viewer.layers.remove("digit")
    w.run()
    assert "explains a class on an image" in w.last_error
    assert not w.busy


SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_kernelspec._napari._qt.explain import ExplainWidget
    from napari_kernelspec.sources.digits import load_digits_32


    def spin(ms):
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec_()


    x = load_digits_32()[2][0, 0]
    for cycle in range(3):
        viewer = napari.Viewer(show=True)
        viewer.add_image(x, name="digit")
        w = ExplainWidget(viewer, autostart=False)
        viewer.window.add_dock_widget(w, name="explain")
        w.load_model()
        while w.busy:
            spin(50)
        w.target.value = "class"
        w.method.value = ("smoothgrad", "occlusion", "grabcut")[cycle]
        w.image_layer.value = "digit"
        w.run()
        print("busy", int(w.busy), flush=True)
        names = [lay.name for lay in viewer.layers]
        viewer.window.remove_dock_widget(w.native)
        assert w.closed
        spin(1500)  # a late result would arrive now
        assert [lay.name for lay in viewer.layers] == names
        viewer.close()
        print("cycle", cycle, "ok", flush=True)
    print("done", flush=True)
    """
)


def test_closing_the_dock_during_a_class_run_is_quiet(tmp_path, digits_cache):
    env = {**os.environ, "KERNELSPEC_CACHE": str(digits_cache), "TORCH_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "has been deleted" not in text, text[-3000:]
    assert out.stdout.count(" ok") == 3 and "done" in out.stdout
    assert out.stdout.count("busy 1") >= 1, "closed while it works at least once"


def test_class_visualisation_is_an_image_beside_everything_that_the_network_calls_so(
    digit_widget, qtbot
):
    from napari_kernelspec.imaging.explain.classes import predict

    _, w, digit, _ = digit_widget
    w.target.value = "synthesis"
    assert tuple(w.method.choices) == ("class", "dream")
    w.method.value = "class"
    assert w.class_choice.visible and not w.image_layer.visible
    w.class_choice.value = "predicted"
    w.run()
    assert "needs a class" in w.last_error
    w.class_choice.value = "7"
    w.steps.value = 64
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.last_error is None
    made = w.layers["images"]
    assert made.data.shape == (32, 32)
    assert made.extent.world[0][-1] >= digit.extent.world[1][-1]  # beside, not on top
    probs = predict(w.model, made.data[None, None])
    assert probs[0].argmax() == 7 and w.result.meta["target_class"] == 7
    assert "class 7 class" in made.name
    # DeepDream of conv2 from the digit: another image beside everything, not on the digit.
    w.method.value = "dream"
    assert w.image_layer.visible and w.layer.visible and not w.class_choice.visible
    w.image_layer.value = "digit"
    w.layer.value = "conv2"
    w.steps.value = 8
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.last_error is None
    dream = w.layers["images"]
    assert dream is not made and dream.data.shape == (32, 32)
    assert dream.extent.world[0][-1] >= made.extent.world[1][-1]
    assert "conv2 dream" in dream.name
