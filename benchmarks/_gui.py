"""Shared by the widget benchmarks: run the Qt event loop until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def pump(app: Any, until: Callable[[], bool], timeout: float = 300.0, nap: float = 0.001) -> None:
    """Process Qt events (sleeping `nap` seconds between rounds) until `until()` is true.

    Raises
    ------
    TimeoutError
        After `timeout` seconds.
    """
    deadline = time.perf_counter() + timeout
    while not until():
        app.processEvents()
        if time.perf_counter() > deadline:
            raise TimeoutError("the widget did not finish in time")
        time.sleep(nap)


def docked_widget() -> tuple[Any, Any, Any]:
    """A shown napari viewer with a `KernelSpectrumWidget` docked (no autostart).

    Returns
    -------
    viewer, app, widget
    """
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_kernelspec._napari._qt.widget import KernelSpectrumWidget

    viewer = napari.Viewer(show=True)
    widget = KernelSpectrumWidget(viewer, autostart=False)
    viewer.window.add_dock_widget(widget)
    return viewer, QApplication.instance(), widget
