"""GUI test fixtures: private caches, a docked widget and a way to wait for its workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from napari_kernelspec._napari._qt.widget import KernelSpectrumWidget

#: Longest wait for one load + analysis (random init of the biggest seed model: ~1-2 s).
WORKER_TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def _private_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Kernel cache and torch hub in temporary folders: no download, no shared state."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("KERNELSPEC_CACHE", str(root / "kernelspec-cache"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch-home"))


def _wait_idle(qtbot, widget: KernelSpectrumWidget, timeout: int = WORKER_TIMEOUT_MS) -> None:
    """Block (running the Qt event loop) until the widget applied its newest request."""
    qtbot.waitUntil(widget.wait_idle_condition, timeout=timeout)


@pytest.fixture
def wait_idle(qtbot):
    """``wait_idle(widget)``: run the event loop until the widget's newest request is applied."""
    return lambda widget, timeout=WORKER_TIMEOUT_MS: _wait_idle(qtbot, widget, timeout)


@pytest.fixture
def docked(make_napari_viewer, qtbot):
    """A viewer with the widget docked through the manifest, set to random weights."""
    from napari_kernelspec._napari._qt.widget import WIDGET_NAME, KernelSpectrumWidget

    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-kernelspec", WIDGET_NAME)
    assert isinstance(widget, KernelSpectrumWidget)
    _wait_idle(qtbot, widget)  # the autostart request (alexnet, auto -> random here)
    widget.weights.value = "random"
    _wait_idle(qtbot, widget)
    yield viewer, widget
    _wait_idle(qtbot, widget)
