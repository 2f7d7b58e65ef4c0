"""Time the napari widget from choosing a model to updated layers (run under Xvfb).

Usage::

    xvfb-run -a .venv/bin/python benchmarks/widget_switch.py --switches 20

Every seed model is loaded once first (filling the kernel cache, not timed); then the model
control is switched round the eight models `--switches` times. Each time counts from setting
the control to the moment the new kernels, spectra and clusters layers are in the viewer
(loading and analysis run in a worker thread; Qt events are processed while waiting).
Prints one JSON line: {"times": [...seconds...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import _gui  # benchmarks/_gui.py (the script's folder is on sys.path)


def wait(app, widget, timeout: float = 120.0) -> None:
    _gui.pump(app, widget.wait_idle_condition, timeout, nap=0.0005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--switches", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("KERNELSPEC_CACHE", tempfile.mkdtemp(prefix="kernelspec-bench-"))

    from napari_kernelspec.sources.models import SEED_MODELS

    viewer, app, widget = _gui.docked_widget()
    widget.weights.value = "random"  # no network here; the same code path as pretrained
    wait(app, widget)
    models = list(SEED_MODELS)
    for name in models:  # fill the kernel cache (not timed)
        widget.model.value = name
        wait(app, widget)
    assert widget.last_error is None, widget.last_error

    times = []
    for i in range(args.switches):
        name = models[(i + 1) % len(models)]
        t0 = time.perf_counter()
        widget.model.value = name
        wait(app, widget)
        times.append(time.perf_counter() - t0)
        layer_names = [layer.name for layer in viewer.layers]
        mosaics = [n for n in layer_names if not n.endswith("mosaic labels")]
        assert len(mosaics) == 3 and len(layer_names) == 4, layer_names  # + the labels layer
        assert all(SEED_MODELS[name] in n for n in layer_names), layer_names
    viewer.close()
    print(json.dumps({"times": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
