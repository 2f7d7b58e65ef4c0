"""A threshold-slider drag in the napari widget at 768 filters (run under Xvfb).

Usage::

    xvfb-run -a .venv/bin/python benchmarks/widget_slider.py [--model vit_b_16] [--changes 30]
        [--show "side by side"]

Loads `--model` (a torchvision name; random weights, no network needed) into the widget,
then sets the threshold slider `--changes` times, `--interval-ms` apart, as a quick drag does,
running the Qt event loop in between. Measured:

- ``settle_s``: from the last change to the moment the layers show the last value;
- ``longest_stall_ms``: the longest gap between ticks of a 5 ms main-thread timer over the
  drag and the settling, i.e. the longest time the viewer could not repaint or react;
- ``analyses``: how many analyses ran (superseded values should not).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import _gui  # benchmarks/_gui.py (the script's folder is on sys.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vit_b_16")
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--interval-ms", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--show", default="kernels", help='the "show" control: kernels, spectra, side by side'
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("KERNELSPEC_CACHE", tempfile.mkdtemp(prefix="kernelspec-bench-"))

    import numpy as np
    from qtpy.QtCore import QTimer

    import napari_kernelspec.analysis.pipeline as pipeline
    from napari_kernelspec._napari._qt.widget import TORCHVISION

    viewer, app, widget = _gui.docked_widget()
    widget.weights.value = "random"
    widget.torchvision_name.value = args.model
    widget.model.value = TORCHVISION
    widget.show_.value = args.show

    def pump(until, timeout: float = 300.0) -> None:
        _gui.pump(app, until, timeout)

    pump(widget.wait_idle_condition)
    assert widget.last_error is None, widget.last_error
    n_filters = widget.result.n_filters

    analyses = [0]
    real = pipeline.analyze

    def counting(*a, **k):
        analyses[0] += 1
        return real(*a, **k)

    pipeline.analyze = counting
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

    runs = []
    for repeat in range(args.repeats):
        analyses[0] = 0
        lo, hi = (0.6, 0.95) if repeat % 2 == 0 else (0.95, 0.6)
        values = np.linspace(lo, hi, args.changes).round(3)
        ticks.clear()
        timer.start()
        for value in values:
            widget.threshold.value = float(value)
            end = time.perf_counter() + args.interval_ms / 1000
            pump(lambda end=end: time.perf_counter() >= end)
        last = time.perf_counter()
        pump(widget.wait_idle_condition)
        settle = time.perf_counter() - last
        tail = time.perf_counter() + 0.1
        pump(lambda tail=tail: time.perf_counter() >= tail)
        timer.stop()
        shown = widget.layers["clusters"].metadata["kernelspec"]["threshold"]
        assert abs(shown - float(values[-1])) < 1e-9, (shown, values[-1])
        gaps = np.diff(ticks) if len(ticks) > 1 else np.array([0.0])
        runs.append(
            {
                "settle_s": round(settle, 3),
                "longest_stall_ms": round(1000 * float(gaps.max()), 1),
                "analyses": analyses[0],
            }
        )
    viewer.close()
    print(json.dumps({"model": args.model, "filters": n_filters, "show": args.show, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
