"""The three widgets together: crash-free close, docks that fit a screen, tooltips.

The close test runs in its own Python process (a crash there is an exit status, not a
broken test session): ten cycles of docking the three widgets, making each one work,
closing each dock while it works, changing the layers, then closing the viewer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.gui

CYCLES = 10

SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_kernelspec._napari._qt.explain import ExplainWidget
    from napari_kernelspec._napari._qt.maps import FeatureMapsWidget
    from napari_kernelspec._napari._qt.widget import KernelSpectrumWidget


    def spin(ms):
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec_()


    def snapshot(viewer):
        return {lay.name: (id(lay), np.shape(lay.data)) for lay in viewer.layers}


    rng = np.random.default_rng(0)
    for cycle in range(int(sys.argv[1])):
        viewer = napari.Viewer(show=True)
        viewer.add_image(rng.random((64, 64)).astype("f4"), name="photo")
        main = KernelSpectrumWidget(viewer, autostart=False)
        viewer.window.add_dock_widget(main, name="main")
        main.weights.value = "random"
        main.model.value = "lenet5"
        maps = FeatureMapsWidget(viewer)
        viewer.window.add_dock_widget(maps, name="maps")
        maps.weights.value = "random"
        maps.model.value = "lenet5"
        explain = ExplainWidget(viewer, autostart=False)
        viewer.window.add_dock_widget(explain, name="explain")
        explain.weights.value = "random"
        explain.load_model()
        widgets = (main, maps, explain)
        spin(100 * (cycle % 4))  # at different moments of the work
        main.view.value = ("raw", "high_contrast")[cycle % 2]  # more work for each
        maps.k.value = 3 + cycle % 5
        explain.load_model()
        # (a short job may be done already: napari's progress bar runs the event loop)
        print("busy", *(int(w.busy) for w in widgets), flush=True)
        for w in widgets:
            viewer.window.remove_dock_widget(w.native)
            assert w.closed
        viewer.layers.remove("photo")
        viewer.add_image(rng.random((50, 70)).astype("f4"), name="other")
        spin(1500)  # late results arrive now, if they are going to
        before = snapshot(viewer)
        jobs = [w._jobs.generation for w in widgets]
        viewer.add_image(rng.random((40, 40)).astype("f4"), name="third")
        viewer.layers.selection.active = viewer.layers["third"]
        spin(300)
        after = snapshot(viewer)
        del after["third"]
        assert after == before, (before, after)
        assert [w._jobs.generation for w in widgets] == jobs, "a closed widget started work"
        viewer.close()
        print("cycle", cycle, "ok", flush=True)
    print("done", flush=True)
    """
)


def test_closing_every_dock_while_it_works_ten_times(tmp_path):
    env = {
        **os.environ,
        "KERNELSPEC_CACHE": str(tmp_path / "cache"),
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(CYCLES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "has been deleted" not in text, text[-3000:]
    assert out.stdout.count(" ok") == CYCLES and "done" in out.stdout
    busy = np.array(
        [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("busy")]
    )
    assert busy.astype(int).sum(axis=0).min() >= 1, (
        "each widget closed while it works at least once"
    )


@pytest.fixture
def three_docks(docked, qtbot, wait_idle):
    from napari_kernelspec._napari._qt.explain import WIDGET_NAME as EXPLAIN
    from napari_kernelspec._napari._qt.maps import MAPS_WIDGET_NAME

    viewer, main = docked
    viewer.add_image(np.random.default_rng(3).random((64, 80)).astype("f4"), name="photo")
    _, maps = viewer.window.add_plugin_dock_widget("napari-kernelspec", MAPS_WIDGET_NAME)
    _, explain = viewer.window.add_plugin_dock_widget("napari-kernelspec", EXPLAIN)
    qtbot.waitUntil(lambda: not maps.busy and not explain.busy, timeout=120_000)
    return viewer, main, maps, explain


def test_three_docks_fit_a_full_hd_screen_and_every_control_has_a_tooltip(three_docks, qtbot):
    from magicgui.widgets import Container

    from napari_kernelspec._napari._qt.table import TABLE_ROWS

    viewer, main, maps, explain = three_docks
    window = viewer.window._qt_window
    hint = window.minimumSizeHint()
    assert hint.width() <= 1920 and hint.height() <= 1080, (hint.width(), hint.height())
    window.resize(1920, 1080)
    qtbot.wait(50)
    assert window.height() <= 1080 and window.width() <= 1920
    table = main.table.native
    rows = table.viewport().height() / table.verticalHeader().defaultSectionSize()
    assert rows >= TABLE_ROWS, rows

    def controls(container):
        for child in container:
            if isinstance(child, Container):
                yield from controls(child)
            else:
                yield child

    for widget in (main, maps, explain):
        missing = [c.name or c.label for c in controls(widget.body) if not c.tooltip]
        assert not missing, f"{type(widget).__name__}: no tooltip on {missing}"


def test_the_other_widgets_follow_the_main_widget_and_the_selected_image(three_docks, qtbot):
    viewer, main, maps, explain = three_docks
    assert maps.model.value == "__main_widget__"  # the main widget's model, via the session
    assert maps.image.value is viewer.layers["photo"]
    # Only the user's images are offered, never the plugin's own mosaics.
    assert explain.image_layer.choices == ("photo",)
    assert [name for name, _ in maps._image_choices()] == ["photo"]
    second = viewer.add_image(np.ones((32, 32), "f4"), name="second")
    viewer.layers.selection.active = second
    assert maps.image.value is second  # Feature maps follows the selected image
    qtbot.waitUntil(lambda: not maps.busy, timeout=120_000)
    main.focus_filter(3)
    assert explain.filters.value == "3" and maps.focus.value == 3


def test_mosaics_never_lie_on_the_users_images(docked, qtbot, wait_idle):
    from napari_kernelspec._napari.layout import overlaps, world_extent

    viewer, main = docked
    ours = list(main.layers.values())
    before = world_extent(ours)
    assert main.layers["spectra"].colorbar.visible  # the spectra's legend
    # The user opens an image right where the mosaics are: they move aside, whole.
    photo = viewer.add_image(np.zeros((200, 300), "f4"), name="photo")
    wait_idle(main)
    after = world_extent(list(main.layers.values()))
    assert not overlaps(after, world_extent([photo]))
    np.testing.assert_allclose(after[1] - after[0], before[1] - before[0])
    # Hovering a tile still names it: the frames moved with the pixels.
    frames = main.layers["clusters"]
    assert main.hover_text(frames.data[5]).startswith("filter 5")
    # Side by side stays clear of the image too, and a threshold change does not move it.
    main.show_.value = "side by side"
    wait_idle(main)
    placed = world_extent(list(main.layers.values()))
    assert not overlaps(placed, world_extent([photo]))
    main.threshold.value = 0.7
    wait_idle(main)
    np.testing.assert_allclose(world_extent(list(main.layers.values())), placed)
