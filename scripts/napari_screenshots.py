"""Screenshots of the plugin in a real napari window, for docs/napari.md.

Run under a display (a virtual one is fine)::

    xvfb-run -a .venv/bin/python scripts/napari_screenshots.py [--out docs/images]

Writes ``napari_kernels.png`` (the widget and the kernel mosaic with cluster boxes),
``napari_spectra.png`` (the same layer's spectra), ``napari_side_by_side.png`` (both mosaics,
one set of frames), ``napari_focus.png`` (one filter zoomed in, with the status bar) and
``napari_history.png`` (the LeNet5 training history sample folder opened in the widget, at
its last step). Models load with ``weights="auto"``: pretrained if in the torch cache,
otherwise untrained random weights, which the layer names and the widget's summary then say.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MAX_BYTES = 500_000


def _save(image, path: Path) -> None:
    """Save an RGBA screenshot as a PNG under `MAX_BYTES` (palette-quantised if needed)."""
    from PIL import Image

    picture = Image.fromarray(image[..., :3])
    picture.save(path, optimize=True)
    colours = 256
    while path.stat().st_size > MAX_BYTES and colours >= 16:
        picture.quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        colours //= 2
    print(f"{path}: {picture.size[0]}x{picture.size[1]}, {path.stat().st_size / 1e3:.0f} kB")


def main(argv: list[str] | None = None) -> int:
    """Make the screenshots; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--model", default="alexnet", help="model of the first two shots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_kernelspec._napari._qt.widget import WIDGET_NAME

    def wait(widget, timeout_s: float = 300.0) -> None:
        loop_timer = QTimer()
        waited = 0.0
        while not widget.wait_idle_condition():
            loop = QEventLoop()
            loop_timer.singleShot(50, loop.quit)
            loop.exec()
            waited += 0.05
            if waited > timeout_s:
                raise TimeoutError("the widget did not finish in time")
        for _ in range(5):
            QApplication.processEvents()

    viewer = napari.Viewer(title="napari-kernelspec")
    viewer.window.resize(1500, 950)
    _, widget = viewer.window.add_plugin_dock_widget("napari-kernelspec", WIDGET_NAME)
    widget.model.value = args.model
    wait(widget)
    if widget.last_error:
        print(f"error: {widget.last_error}", file=sys.stderr)
        return 1
    viewer.reset_view()
    QApplication.processEvents()
    _save(viewer.screenshot(canvas_only=False, flash=False), args.out / "napari_kernels.png")

    widget.show_.value = "spectra"
    QApplication.processEvents()
    _save(viewer.screenshot(canvas_only=False, flash=False), args.out / "napari_spectra.png")

    widget.show_.value = "side by side"
    wait(widget)
    _save(viewer.screenshot(canvas_only=False, flash=False), args.out / "napari_side_by_side.png")

    widget.show_.value = "kernels"
    widget.model.value = "lenet5"
    widget.threshold.value = 0.8
    wait(widget)
    result = widget.result
    clustered = [int(i) for i in (result.labels >= 0).nonzero()[0]]
    index = clustered[0] if clustered else 0
    widget.focus.value = index
    widget.focus_filter(index)
    centre = tuple(widget.camera.center[-2:])
    viewer.layers.selection.active = widget.layers["kernels"]
    viewer.mouse_over_canvas = True
    viewer.cursor.position = centre
    viewer.status = widget.layers["kernels"].get_status(centre, world=True)
    for _ in range(20):
        QApplication.processEvents()
    _save(viewer.screenshot(canvas_only=False, flash=False), args.out / "napari_focus.png")

    from napari_kernelspec._napari._qt.widget import HISTORY
    from napari_kernelspec.sources.history import lenet5_history

    widget.threshold.value = 0.5
    widget.model.value = HISTORY
    widget.history_folder.value = str(lenet5_history())
    wait(widget)
    viewer.dims.set_current_step(0, viewer.dims.nsteps[0] - 1)
    widget.fit_button.changed.emit(True)
    for _ in range(20):
        QApplication.processEvents()
    _save(viewer.screenshot(canvas_only=False, flash=False), args.out / "napari_history.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
