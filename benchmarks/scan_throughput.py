"""Benchmark: `kernelspec scan` throughput on Dask against a plain loop over `analyze`.

Usage::

    .venv/bin/python benchmarks/scan_throughput.py              # 1,000 checkpoints
    .venv/bin/python benchmarks/scan_throughput.py --n 100      # quicker

Writes N small checkpoints (state dicts with a 16x3x5x5 first conv, a few KB each) to a
temporary folder, then runs, each in a fresh interpreter so that imports and peak memory are
its own:

- ``loop``: ``analyze(load_kernels(path))`` for every path in one process;
- ``scan-1``, ``scan-2``: `run_scan` on a LocalCluster of 1 and 2 worker processes, writing
  the Parquet datasets.

For each: wall time including start-up (imports; for scans the cluster start), sources per
second over the whole run (and for the loop over the steady part, after the first source),
the client process's peak resident memory (``VmHWM``; for scans the scheduler runs in the
client process, the workers do not), and for scans the size of the two datasets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOOP = """
import json, sys, time
t0 = time.perf_counter()
def peak_mb():  # VmHWM: unlike ru_maxrss, not inherited from the parent across fork + exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from napari_kernelspec.analysis import analyze
from napari_kernelspec.sources.loading import load_kernels
paths = json.load(open(sys.argv[1]))
t1 = None
for p in paths:
    analyze(load_kernels(p))
    t1 = t1 or time.perf_counter()
t2 = time.perf_counter()
print(json.dumps({"wall": t2 - t0, "steady": t2 - t1, "steady_n": len(paths) - 1,
                  "rss_mb": peak_mb()}))
"""

SCAN = """
import json, sys, time
t0 = time.perf_counter()
def peak_mb():  # VmHWM: unlike ru_maxrss, not inherited from the parent across fork + exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from napari_kernelspec.scan.run import run_scan
paths, out, workers = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
summary = run_scan(paths, out + "/filters.parquet", out + "/models.parquet", workers=workers,
                   batch_size=100, progress=False)
t2 = time.perf_counter()
assert summary.failed == 0 and summary.analysed == len(paths), summary
print(json.dumps({"wall": t2 - t0, "scan": summary.seconds,
                  "rss_mb": peak_mb()}))
"""


def write_checkpoints(folder: Path, n: int) -> list[str]:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        w = torch.from_numpy(rng.standard_normal((16, 3, 5, 5)).astype("float32"))
        path = folder / f"ckpt_{i:05d}.pt"
        torch.save({"conv1.weight": w, "conv1.bias": torch.zeros(16)}, path)
        paths.append(str(path))
    return paths


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def run(code: str, *args: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="checkpoints (default 1000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "ck").mkdir()
        paths = write_checkpoints(tmp / "ck", args.n)
        listing = tmp / "paths.json"
        listing.write_text(json.dumps(paths))
        os.environ["KERNELSPEC_CACHE"] = str(tmp / "cache")
        print(
            f"## Scan throughput: {args.n} checkpoints (16x3x5x5 first conv), "
            f"{os.cpu_count()} CPUs\n"
        )
        print("| run | wall s | sources/s (wall) | client peak RSS MB | filters / models MB |")
        print("| --- | --- | --- | --- | --- |")
        loop = run(LOOP, str(listing))
        print(
            f"| plain loop over analyze | {loop['wall']:.1f} | {args.n / loop['wall']:.1f} "
            f"| {loop['rss_mb']:.0f} | – |",
            flush=True,
        )
        for workers in (1, 2):
            out = tmp / f"out{workers}"
            out.mkdir()
            res = run(SCAN, str(listing), str(out), str(workers))
            sizes = (
                f"{size_mb(out / 'filters.parquet'):.2f} / {size_mb(out / 'models.parquet'):.2f}"
            )
            print(
                f"| scan, {workers} worker{'s' if workers > 1 else ''} | {res['wall']:.1f} "
                f"| {args.n / res['wall']:.1f} | {res['rss_mb']:.0f} | {sizes} |",
                flush=True,
            )
        print(
            f"\nplain loop, steady (after the first source): "
            f"{loop['steady_n'] / loop['steady']:.1f} sources/s"
        )


if __name__ == "__main__":
    main()
