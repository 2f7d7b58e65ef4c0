"""Benchmark: `kernelspec dataset` over N RGB 224x224 images through AlexNet's features.0.

Usage::

    .venv/bin/python benchmarks/bench_dataset.py            # 1,000 images
    .venv/bin/python benchmarks/bench_dataset.py --n 10000  # the issue's size

AlexNet is built with its **random (untrained) weights** (seeded; no download: the numbers
are about speed and memory, not about what the filters mean). N noise images (PNG, two
class folders) are written to a temporary folder, then each configuration runs in a fresh
interpreter: this process alone (``in-process``), and a Dask LocalCluster of one and of two
worker processes. Embedding: the layer's global average (64 numbers per image), no t-SNE
(its cost grows with N and is not streaming). Reported: wall time including imports and
the cluster start, images per second, the client's peak resident memory (``VmHWM``) and
the largest worker's.
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

WARM = """
from napari_kernelspec.imaging.maps import resolve_bank
resolve_bank("alexnet", "random")
"""

RUN = """
import json, sys, time
t0 = time.perf_counter()
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from napari_kernelspec.imaging.dataset import folder_source
from napari_kernelspec.imaging.maps import resolve_bank
from napari_kernelspec.scan.dataset import compute_dataset
folder, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
bank = resolve_bank("alexnet", "random")
source = folder_source(folder)
client = cluster = None
if workers:
    from napari_kernelspec.scan.run import _client
    client, cluster = _client(None, workers, 30.0)
result = compute_dataset(bank, source, out, client=client, progress=False, embedding="layer",
                         tsne=False)
t1 = time.perf_counter()
worker_mb = max(client.run(peak_mb).values()) if client else 0.0
print(json.dumps({"wall": t1 - t0, "rss_mb": peak_mb(), "worker_mb": worker_mb,
                  "n": result.meta["n_images"]}))
"""


def write_images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"{i:06d}.png", compress_level=1)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }


def run(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=_env(), check=False
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="images (default 1000)")
    parser.add_argument(
        "--workers", default="0,1,2", help="configurations: 0 = in-process (default 0,1,2)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_images(tmp / "images", args.n)
        os.environ["KERNELSPEC_CACHE"] = str(tmp / "cache")
        subprocess.run(  # build AlexNet's random first layer once, into the kernel cache
            [sys.executable, "-c", WARM], env=_env(), check=True, capture_output=True
        )
        print(
            f"## Dataset statistics: {args.n} RGB 224x224 images, AlexNet features.0 (random "
            f"weights), {os.cpu_count()} CPUs\n"
        )
        print("| run | wall s | images/s | client peak RSS MB | worker peak RSS MB |")
        print("| --- | --- | --- | --- | --- |")
        for workers in (int(w) for w in args.workers.split(",")):
            res = run(str(tmp / "images"), str(tmp / f"out{workers}"), str(workers))
            name = (
                f"Dask, {workers} worker{'s' if workers > 1 else ''}" if workers else "in-process"
            )
            print(
                f"| {name} | {res['wall']:.1f} | {res['n'] / res['wall']:.1f} "
                f"| {res['rss_mb']:.0f} | {res['worker_mb']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
