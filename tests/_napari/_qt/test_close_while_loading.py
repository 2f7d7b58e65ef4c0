"""Closing napari (or only the widget) while a model loads ends the process quietly.

Each case runs in its own Python process under the same X display, with empty kernel and
torch caches so that the load is slow (a failed download, then the random initialisation),
and closes within a quarter of a second of docking the widget. Before the fix this aborted
the process (exit 134: a worker reported into deleted Qt objects).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gui

SCRIPT = textwrap.dedent(
    """
    import sys

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_kernelspec._napari._qt.widget import WIDGET_NAME

    what = sys.argv[1]
    viewer = napari.Viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-kernelspec", WIDGET_NAME)
    assert widget.busy, "the load must still be running when we close"
    app = QApplication.instance()
    if what == "at once":  # close and leave while the load runs: no event loop at all
        viewer.close()
        print("closed", getattr(widget, "closed", None), flush=True)
        sys.exit(0)
    if what == "viewer":
        QTimer.singleShot(250, viewer.close)
    else:
        QTimer.singleShot(250, lambda: viewer.window.remove_dock_widget(widget.native))
        QTimer.singleShot(6000, viewer.close)  # the late load must not touch anything
    QTimer.singleShot(60000, app.quit)  # safety net
    napari.run()
    print("closed", getattr(widget, "closed", None), flush=True)
    """
)


@pytest.mark.parametrize("what", ["at once", "viewer", "widget"])
def test_closing_while_a_model_loads_exits_quietly(tmp_path, what):
    env = {
        **os.environ,
        "KERNELSPEC_CACHE": str(tmp_path / "cache"),
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, what],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Aborted" not in text and "Traceback" not in text, text[-3000:]
    assert "has been deleted" not in text, text[-3000:]
    assert "closed True" in out.stdout
