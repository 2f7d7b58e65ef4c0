"""A training history in the napari widget: open, re-threshold, scrub (run under Xvfb).

Usage::

    xvfb-run -a .venv/bin/python benchmarks/widget_history.py [--steps 100] [--filters 64]

Writes `--steps` checkpoints of a (filters, 3, 7, 7) first conv that drifts from random
towards a few shared orientations, opens the folder through the widget's model control and
measures:

- ``open_s``: from choosing the folder to the layers shown (load + analyse every step);
- ``threshold_s``: a threshold change applied to every step (``rethreshold``);
- ``scrub_ms``: main-thread time of one dims-slider step (table, summary, thumbnails), the
  median and the longest over every step.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import _gui  # benchmarks/_gui.py (the script's folder is on sys.path)


def _write_history(folder: Path, steps: int, filters: int) -> None:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    start = rng.standard_normal((filters, 3, 7, 7)).astype(np.float32)
    y, x = np.mgrid[:7, :7] - 3.0
    targets = np.stack(
        [np.cos(0.8 * (x * np.cos(t) + y * np.sin(t))) for t in np.linspace(0, np.pi, 4)]
    )
    goal = np.repeat(targets[np.arange(filters) % 4][:, None], 3, axis=1).astype(np.float32)
    for t in range(steps):
        a = t / max(steps - 1, 1)
        w = (1 - a) * start + a * goal
        torch.save({"conv1.weight": torch.from_numpy(w)}, folder / f"step_{t}.pt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--filters", type=int, default=64)
    args = parser.parse_args(argv)
    os.environ.setdefault("KERNELSPEC_CACHE", tempfile.mkdtemp(prefix="kernelspec-bench-"))

    import numpy as np

    from napari_kernelspec._napari._qt.widget import HISTORY

    folder = Path(tempfile.mkdtemp(prefix="kernelspec-history-"))
    _write_history(folder, args.steps, args.filters)
    viewer, app, widget = _gui.docked_widget()

    def pump(until, timeout: float = 600.0) -> None:
        _gui.pump(app, until, timeout)

    begin = time.perf_counter()
    widget.model.value = HISTORY
    widget.history_folder.value = str(folder)
    pump(widget.wait_idle_condition)
    open_s = time.perf_counter() - begin
    assert widget.last_error is None, widget.last_error
    assert viewer.dims.nsteps[0] == args.steps

    begin = time.perf_counter()
    widget.threshold.value = 0.8
    pump(widget.wait_idle_condition)
    threshold_s = time.perf_counter() - begin

    scrub = []
    for t in range(args.steps):
        begin = time.perf_counter()
        viewer.dims.set_current_step(0, t)
        app.processEvents()
        scrub.append(1000 * (time.perf_counter() - begin))
        assert widget.summary.value.count(f"({t + 1} of {args.steps})") == 1
    viewer.close()
    print(
        json.dumps(
            {
                "steps": args.steps,
                "filters": args.filters,
                "open_s": round(open_s, 2),
                "threshold_s": round(threshold_s, 2),
                "scrub_ms_median": round(float(np.median(scrub)), 1),
                "scrub_ms_max": round(float(np.max(scrub)), 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
