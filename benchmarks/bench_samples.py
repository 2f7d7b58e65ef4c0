"""Main-thread time of the plugin's sample data in a real napari viewer (run under Xvfb).

Usage::

    xvfb-run -a .venv/bin/python benchmarks/bench_samples.py --repeat 3

For every sample (LeNet5 on digits, its training history, AlexNet) and every run, three
numbers, each the wall time of ``viewer.open_sample(...)`` plus the event processing that
follows it (the first draw), all on napari's main thread:

- ``empty``: a fresh interpreter with a viewer already shown, an empty kernel cache and an
  empty ``TORCH_HOME`` (no pretrained AlexNet: its sample falls back on random weights);
- ``warm``: a fresh interpreter again, the kernel cache left by ``empty``;
- ``again``: the same sample opened a second time in the ``warm`` interpreter.

Next to each, the plugin's own share: the time of its sample command (npe2's
``SampleDataGenerator.open``, imports of the plugin's modules included); the rest is napari
making the three layers (in a fresh interpreter its first image and points layers import
pint and pandas: 1-3 s here, whichever plugin made them).

The samples' chance estimates: the history's (and the trained LeNet5's) ship with the package,
so ``empty`` draws no null for them; AlexNet's is drawn in ``empty`` and read back from the
kernel cache (``chance-v1/``) in ``warm``.

Every measurement runs in its own child process, so imports (torch above all) count as a user
would feel them. Prints one JSON line per run and a Markdown table of medians (and ranges).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SAMPLES = {
    "lenet5_digits": "LeNet5 trained on digits",
    "lenet5_history": "LeNet5 training history",
    "alexnet": "AlexNet (random weights: offline)",
}


def _child(key: str, times: int) -> None:
    """In the child: show a viewer, then time opening sample `key` `times` times."""
    import napari
    from npe2.manifest.contributions._sample_data import SampleDataGenerator
    from qtpy.QtWidgets import QApplication

    command: list[float] = []
    plain_open = SampleDataGenerator.open

    def timed_open(self, *args, **kwargs):  # the plugin's own share: its sample command
        t0 = time.perf_counter()
        try:
            return plain_open(self, *args, **kwargs)
        finally:
            command.append(time.perf_counter() - t0)

    SampleDataGenerator.open = timed_open
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    for _ in range(20):  # let the window settle before timing
        app.processEvents()
    out = []
    for _ in range(times):
        viewer.layers.clear()
        app.processEvents()
        t0 = time.perf_counter()
        viewer.open_sample("napari-kernelspec", key)
        app.processEvents()
        out.append(time.perf_counter() - t0)
    result = {
        "times": out,
        "command": command,
        "torch_imported": "torch" in sys.modules,
        "layers": len(viewer.layers),
    }
    print("RESULT " + json.dumps(result), flush=True)
    viewer.close()


def _run(key: str, times: int, cache: str, torch_home: str) -> dict:
    env = {**os.environ, "KERNELSPEC_CACHE": cache, "TORCH_HOME": torch_home}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", key, "--times", str(times)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{key}: child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per sample (default 3)")
    parser.add_argument("--only", choices=sorted(SAMPLES), action="append")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--times", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.times)
        return 0
    rows = []
    for key in args.only or list(SAMPLES):
        runs: dict[str, list[float]] = {
            name: [] for name in ("empty", "warm", "again", "cmd_empty", "cmd_warm", "cmd_again")
        }
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="kernelspec-bench-") as tmp:
                cache, torch_home = os.path.join(tmp, "cache"), os.path.join(tmp, "torch")
                empty = _run(key, 1, cache, torch_home)
                warm = _run(key, 2, cache, torch_home)
            runs["empty"].append(empty["times"][0])
            runs["warm"].append(warm["times"][0])
            runs["again"].append(warm["times"][1])
            runs["cmd_empty"].append(empty["command"][0])
            runs["cmd_warm"].append(warm["command"][0])
            runs["cmd_again"].append(warm["command"][1])
            line = {
                "sample": key,
                "empty_s": round(empty["times"][0], 3),
                "warm_s": round(warm["times"][0], 3),
                "again_s": round(warm["times"][1], 3),
                "command_s": [round(t, 3) for t in empty["command"] + warm["command"]],
                "torch_imported": [empty["torch_imported"], warm["torch_imported"]],
            }
            print(json.dumps(line), flush=True)
        rows.append((key, runs))
    print()
    print("Main thread: open_sample + first draw / the plugin's sample command alone.")
    print("| sample | empty cache | warm cache, new interpreter | second open |")
    print("| --- | --- | --- | --- |")

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"

    for key, runs in rows:
        cells = [
            f"{cell(runs[name])} / {cell(runs['cmd_' + name])}"
            for name in ("empty", "warm", "again")
        ]
        print(f"| {SAMPLES[key]} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
