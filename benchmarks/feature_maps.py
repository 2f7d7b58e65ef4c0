"""Benchmarks of issue 10: feature maps, top patches, peak memory, the napari widget.

Usage::

    .venv/bin/python benchmarks/feature_maps.py             # full sizes (a few minutes)
    .venv/bin/python benchmarks/feature_maps.py --quick     # tiny sizes (what the test runs)
    xvfb-run -a .venv/bin/python benchmarks/feature_maps.py --only widget

Sections:

1. ``maps``: first-layer feature maps of a 1024 x 1024 RGB uint8 image for AlexNet,
   ResNet50 and VGG16 (target: under 0.3 s each). Random weights: the same shapes, stride and
   padding as the pretrained ones, so the same work.
2. ``patches``: `top_patches` (k = 9) of AlexNet's first layer over 100 images of 512 x 512:
   images per second.
3. ``memory``: peak resident memory of a 4096 x 4096 RGB image through AlexNet's first layer,
   in a fresh interpreter (ru_maxrss: torch's allocations are invisible to tracemalloc),
   above the interpreter's resident memory just before the call (target: under 1.5 GB).
4. ``widget``: the napari Feature maps widget: image layer data changed -> map layer updated,
   for a 1024 x 1024 RGB image through AlexNet's first layer (target: under 0.5 s). Needs a
   display (run under xvfb-run).

Every timing is the median, min and max over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("maps", "patches", "memory", "widget")


def _stats(times: list[float]) -> str:
    return (
        f"median {statistics.median(times):.3f} s  min {min(times):.3f} s  max {max(times):.3f} s"
    )


def _image(size: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)


def bench_maps(size: int, repeat: int) -> None:
    from napari_kernelspec import load_kernels
    from napari_kernelspec.imaging import feature_maps

    print(f"\n## 1. First-layer feature maps of a {size} x {size} RGB image (target < 0.3 s)")
    image = _image(size)
    for model in ("alexnet", "resnet50", "vgg16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bank = load_kernels(model, weights="random")
        feature_maps(bank, image)  # warm-up (torch's first call)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = feature_maps(bank, image)
            times.append(time.perf_counter() - t0)
        n, h, w = result.maps.shape
        mb = result.maps.nbytes / 2**20
        print(
            f"{model:<10} {n}x{h}x{w} ({mb:.0f} MB, {result.meta['tiles']} bands)  {_stats(times)}"
        )


def bench_patches(size: int, count: int, repeat: int) -> None:
    from napari_kernelspec import load_kernels
    from napari_kernelspec.imaging import top_patches

    print(f"\n## 2. Top patches (k = 9), AlexNet first layer, {count} images of {size} x {size}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bank = load_kernels("alexnet", weights="random")
    images = [_image(size, seed) for seed in range(count)]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        top_patches(bank, images, k=9)
        times.append(time.perf_counter() - t0)
    best = statistics.median(times)
    print(f"{count} images  {_stats(times)}  -> {count / best:.1f} images/s")


_MEMORY_CHILD = """
import resource, sys, warnings, numpy as np
from napari_kernelspec import load_kernels
from napari_kernelspec.imaging import feature_maps
size = int(sys.argv[1])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bank = load_kernels("alexnet", weights="random")
image = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
feature_maps(bank, image[:64, :64])  # torch initialised
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import psutil
rss = psutil.Process().memory_info().rss / 1024
result = feature_maps(bank, image)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(rss, max(before, rss), peak, result.maps.nbytes / 1024, image.nbytes / 1024,
      result.meta["tiles"])
"""


def bench_memory(size: int) -> None:
    print(f"\n## 3. Peak memory, {size} x {size} RGB through AlexNet's first layer (< 1.5 GB)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(size)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    rss, _, peak, maps_kb, image_kb, tiles = (float(v) for v in out)
    print(
        f"resident before {rss / 1024:.0f} MB, peak {peak / 1024:.0f} MB: "
        f"+{(peak - rss) / 1024:.0f} MB for the call (maps {maps_kb / 1024:.0f} MB, "
        f"image {image_kb / 1024:.0f} MB, {int(tiles)} bands)"
    )


def bench_widget(size: int, repeat: int) -> None:
    print(f"\n## 4. Widget: {size} x {size} RGB image edited -> map layer updated (< 0.5 s)")
    if not os.environ.get("DISPLAY"):
        print("skipped: no display (run under xvfb-run)")
        return
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_kernelspec._napari._qt.maps import FeatureMapsWidget

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    layer = viewer.add_image(_image(size), name="photo")
    widget = FeatureMapsWidget(viewer)
    widget.weights.value = "random"

    def wait() -> None:
        deadline = time.perf_counter() + 300
        while not widget.wait_idle_condition() and time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.001)

    wait()
    times = []
    for i in range(repeat):
        data = _image(size, seed=i + 1)
        t0 = time.perf_counter()
        layer.data = data
        wait()
        app.processEvents()
        times.append(time.perf_counter() - t0)
    assert widget.last_error is None, widget.last_error
    print(f"alexnet    {_stats(times)}")
    viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default=",".join(SECTIONS))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    quick = args.quick
    repeat = 2 if quick else args.repeat
    import platform

    print(
        f"# feature maps benchmarks ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, quick={quick})"
    )
    if "maps" in only:
        bench_maps(128 if quick else 1024, repeat)
    if "patches" in only:
        bench_patches(64 if quick else 512, 5 if quick else 100, 1 if quick else 3)
    if "memory" in only:
        bench_memory(256 if quick else 4096)
    if "widget" in only:
        bench_widget(128 if quick else 1024, repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
