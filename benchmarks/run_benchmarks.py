"""Benchmarks: our pipeline against the seed tool's approach, side by side in one run.

Usage::

    .venv/bin/python benchmarks/run_benchmarks.py            # full run (a few minutes)
    .venv/bin/python benchmarks/run_benchmarks.py --quick    # tiny sizes (what the tests run)
    .venv/bin/python benchmarks/run_benchmarks.py --only extraction,spectra

Sections:

1. ``extraction``: first-layer extraction from a full saved checkpoint. Seed approach: build
   the torchvision model, load its whole state dict, read the layer. Ours: `load_kernels` on
   the same file in a temporary hub cache, first load (empty kernel cache) and cached load.
2. ``spectra``: spectra and clusters of 64 kernels: the seed's per-kernel loop against our
   ``"seed"`` method (same numbers, checked here) and our ``"response"`` method; the whole
   ``analyze`` with its chance estimate, fresh and memoised (issue 9).
3. ``report``: the eight-model report from cached kernels, split into imports, loading,
   analysis and rendering (in a fresh interpreter, so imports are counted).
4. ``widget``: the napari widget under Xvfb: choosing a (cached) model to updated layers.
5. ``scale``: `analyze` on vit_b_16's first layer (768 filters of 16x16) and on 4096 synthetic
   7x7x3 filters: time and peak memory (tracemalloc, which numpy reports to); the largest
   layer `analyze` supports (``MAX_FILTERS``) and the one-line refusal beyond it.

Every timing is the median, min and max over ``--repeat`` runs; "x seed" is the seed
approach's median over ours (higher is better for us).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("extraction", "spectra", "report", "widget", "scale")


# --------------------------------------------------------------------------- helpers
def timed(fn: Callable[[], object], repeat: int, setup: Callable[[], None] | None = None):
    """Run `fn` `repeat` times (after `setup` each time); return (seconds list, last result)."""
    times, result = [], None
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


class Table:
    """Rows of (case, median, min, max, ratio) printed as a plain-text table."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, list[float], str]] = []

    def add(self, case: str, times: list[float], ratio: str = "") -> None:
        self.rows.append((case, times, ratio))

    def print(self) -> None:
        print(f"\n## {self.title}")
        print(f"{'case':<52}{'median':>11}{'min':>11}{'max':>11}{'x seed':>10}")
        for case, times, ratio in self.rows:
            print(
                f"{case:<52}{fmt_s(statistics.median(times)):>11}{fmt_s(min(times)):>11}"
                f"{fmt_s(max(times)):>11}{ratio:>10}"
            )


def ratio(seed_times: list[float], ours: list[float]) -> str:
    return f"{statistics.median(seed_times) / statistics.median(ours):.1f}x"


# --------------------------------------------------------------------------- 1. extraction
def bench_extraction(models: list[str], repeat: int, workdir: Path) -> None:
    import torch
    import torchvision

    from napari_kernelspec import load_kernels
    from napari_kernelspec.sources import models as ks_models
    from napari_kernelspec.sources.pretrained import hub_checkpoint_path, weights_info

    table = Table("1. First-layer extraction from a full checkpoint (random weights)")
    os.environ["TORCH_HOME"] = str(workdir / "torch")
    for name in models:
        info = weights_info(name)
        path = hub_checkpoint_path(info.url)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = torchvision.models.get_model(name)
        torch.save(model.state_dict(), path)
        layer = ks_models.first_conv(name)[0]
        size_mb = path.stat().st_size / 2**20
        del model

        def seed_approach(name=name, path=path, layer=layer):
            model = torchvision.models.get_model(name)
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.get_submodule(layer).weight.detach().numpy()

        seed_times, seed_w = timed(seed_approach, repeat)

        counter = iter(range(10**6))

        def fresh_cache(counter=counter):
            os.environ["KERNELSPEC_CACHE"] = str(workdir / f"cache-{next(counter)}")
            for fn in vars(ks_models).values():  # forget in-process memoised architecture facts
                if hasattr(fn, "cache_clear"):
                    fn.cache_clear()

        first_times, bank = timed(
            lambda name=name: load_kernels(name, weights="pretrained"), repeat, fresh_cache
        )
        assert np.array_equal(bank.weights, seed_w), "extraction disagrees with the seed approach"
        cached_times, _ = timed(lambda name=name: load_kernels(name, weights="pretrained"), repeat)
        label = f"{name} ({size_mb:.0f} MB checkpoint)"
        table.add(f"{label}: seed (build + load_state_dict)", seed_times)
        table.add(f"{label}: ours, first load", first_times, ratio(seed_times, first_times))
        table.add(f"{label}: ours, cached load", cached_times, ratio(seed_times, cached_times))
        path.unlink()
    table.print()


# --------------------------------------------------------------------------- 2. spectra
def seed_tool_loop(weights: np.ndarray, threshold: float = 0.93) -> tuple[np.ndarray, np.ndarray]:
    """The seed tool's per-kernel pipeline, written plainly (the baseline)."""
    from scipy.ndimage import zoom
    from sklearn.cluster import DBSCAN
    from sklearn.metrics.pairwise import cosine_similarity

    spectra = []
    for kernel in weights:
        k0 = kernel[0]
        small = zoom(k0, (16 / k0.shape[0], 16 / k0.shape[1]), order=3)
        magnitude = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(small))))
        spectra.append(zoom(magnitude, (2.0, 2.0), order=3))
    distance = np.clip(1 - cosine_similarity([s.flatten() for s in spectra]), 0, 2)
    labels = DBSCAN(eps=1 - threshold, min_samples=2, metric="precomputed").fit_predict(distance)
    return np.stack(spectra), labels


def bench_spectra(repeat: int) -> None:
    from napari_kernelspec import KernelBank, analyze
    from napari_kernelspec.analysis import chance
    from napari_kernelspec.analysis.clustering import (
        cosine_similarity,
        linkage_clusters,
        pearson_similarity,
        seed_clusters,
    )
    from napari_kernelspec.analysis.spectra import resolved_amplitude, seed_spectra

    table = Table("2. Spectra + clusters of 64 kernels")
    rng = np.random.default_rng(0)
    for k in (3, 7, 11):
        weights = rng.normal(size=(64, 3, k, k))

        def ours_seed(weights=weights):
            s = seed_spectra(weights)
            return s, seed_clusters(cosine_similarity(s.reshape(64, -1)), 0.93, 2)

        def ours_response(weights=weights):
            sim = pearson_similarity(resolved_amplitude(weights))
            return linkage_clusters(sim, 0.5, 2)

        ours_seed()  # warm the one-off resize matrices, as a long-running process has them
        seed_times, (ref_s, ref_labels) = timed(lambda w=weights: seed_tool_loop(w), repeat)
        our_times, (s, labels) = timed(ours_seed, repeat)
        resp_times, _ = timed(ours_response, repeat)
        bank = KernelBank(weights, "bench", "conv", "array")
        full_times, _ = timed(lambda bank=bank: analyze(bank, method="seed"), repeat)
        analyze(bank)  # the chance estimate is memoised per layer from here on
        auto_times, _ = timed(lambda bank=bank: analyze(bank), repeat)

        def fresh_estimate() -> None:
            chance.set_store({})

        fresh_times, _ = timed(lambda bank=bank: analyze(bank), repeat, fresh_estimate)
        chance.set_store(None)
        np.testing.assert_allclose(s, ref_s, rtol=0, atol=1e-10)
        same = (labels[:, None] == labels[None, :]) == (ref_labels[:, None] == ref_labels[None])
        assert same.all(), "seed clusters differ from the seed tool's"
        table.add(f"k={k}: seed tool, per-kernel loop", seed_times)
        table.add(f"k={k}: ours, 'seed' (same numbers)", our_times, ratio(seed_times, our_times))
        table.add(f"k={k}: ours, 'response'", resp_times, ratio(seed_times, resp_times))
        table.add(
            f"k={k}: analyze(method='seed'), + descriptors, redundancy",
            full_times,
            ratio(seed_times, full_times),
        )
        table.add(f"k={k}: analyze() default (auto), chance memoised", auto_times)
        table.add(f"k={k}: analyze() default, fresh chance estimate", fresh_times)
    table.print()


# --------------------------------------------------------------------------- 3. report
_REPORT_PHASES = r"""
import json, sys, time, tempfile
t0 = time.perf_counter()
from napari_kernelspec import analyze, load_kernels
from napari_kernelspec.report import render_report
from napari_kernelspec.sources.models import SEED_MODELS
t1 = time.perf_counter()
banks = [load_kernels(m, weights=sys.argv[1]) for m in (sys.argv[2:] or SEED_MODELS)]
t2 = time.perf_counter()
results = [analyze(b) for b in banks]
t3 = time.perf_counter()
html = render_report(results)
t4 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "loading": t2 - t1, "analysis": t3 - t2,
                  "rendering": t4 - t3, "total": t4 - t0,
                  "napari_imported": "napari" in sys.modules,
                  "qt_imported": any(m.startswith(("PyQt", "qtpy")) for m in sys.modules)}))
"""


def bench_report(repeat: int, weights: str, models: list[str]) -> None:
    # Fill the kernel cache once (not timed), then time fresh interpreters.
    command = [sys.executable, "-c", _REPORT_PHASES, weights, *models]
    subprocess.run(command, check=True, capture_output=True)
    runs = []
    for _ in range(repeat):
        proc = subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    what = f"{len(models)}-model" if models else "Eight-model"
    table = Table(f"3. {what} report from cached kernels (weights={weights})")
    for phase in ("imports", "loading", "analysis", "rendering", "total"):
        table.add(phase, [r[phase] for r in runs])
    table.print()
    print(
        f"napari imported: {runs[-1]['napari_imported']}, Qt imported: {runs[-1]['qt_imported']}"
    )


# --------------------------------------------------------------------------- 4. widget
def bench_widget(switches: int) -> None:
    script = ROOT / "benchmarks" / "widget_switch.py"
    cmd = [sys.executable, str(script), "--switches", str(switches)]
    if not os.environ.get("DISPLAY"):
        cmd = ["xvfb-run", "-a", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"\n## 4. Widget: failed\n{proc.stderr[-2000:]}")
        return
    times = json.loads(proc.stdout.strip().splitlines()[-1])["times"]
    table = Table(f"4. Widget under Xvfb: model switch (cached) to updated layers, {switches}x")
    table.add("model switch -> layers updated", times)
    table.print()
    print(f"95th percentile: {fmt_s(float(np.percentile(times, 95)))}")


# --------------------------------------------------------------------------- 5. scale
def _measure(bank) -> tuple[float, int, int]:
    from napari_kernelspec import analyze

    tracemalloc.start()
    t0 = time.perf_counter()
    result = analyze(bank)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, result.n_clusters


def bench_scale(quick: bool) -> None:
    from napari_kernelspec import KernelBank, KernelSpecError, load_kernels
    from napari_kernelspec import analyze as analyze_fn
    from napari_kernelspec.analysis.pipeline import MAX_FILTERS

    table = Table("5. Scale: analyze on large layers (response method)")
    rng = np.random.default_rng(0)
    notes = []
    if not quick:
        vit = load_kernels("vit_b_16", weights="random")
        elapsed, peak, k = _measure(vit)
        table.add("vit_b_16 conv_proj (768 x 3 x 16x16)", [elapsed])
        notes.append(f"vit_b_16: peak {peak / 2**20:.0f} MiB, {k} clusters")
    sizes = (128, 256, 512) if quick else (1024, 2048, 4096)
    peaks = []
    for n in sizes:
        bank = KernelBank(rng.normal(size=(n, 3, 7, 7)), "synthetic", "conv", "array")
        elapsed, peak, k = _measure(bank)
        peaks.append(peak)
        table.add(f"{n} synthetic 7x7x3", [elapsed])
        notes.append(f"{n} synthetic 7x7x3: peak {peak / 2**20:.0f} MiB, {k} clusters")
    if not quick:
        bank = KernelBank(rng.normal(size=(MAX_FILTERS, 3, 7, 7)), "synthetic", "conv", "array")
        elapsed, peak, k = _measure(bank)
        table.add(f"{MAX_FILTERS} synthetic 7x7x3 (the largest supported)", [elapsed])
        notes.append(f"{MAX_FILTERS} synthetic 7x7x3: peak {peak / 2**20:.0f} MiB, {k} clusters")
    table.print()
    for note in notes:
        print(note)
    too_big = KernelBank(
        np.ones((MAX_FILTERS + 1, 1, 1, 2), dtype=np.float32), "synthetic", "conv", "array"
    )
    try:
        analyze_fn(too_big)
    except KernelSpecError as exc:
        print(f"largest supported N: {MAX_FILTERS}; N = {MAX_FILTERS + 1} is refused: {exc}")
    # peak = a*N + b*N^2: b says how many N x N float64 matrices are alive at the peak.
    design = np.array([[n, n * n] for n in sizes], dtype=float)
    (a, b), *_ = np.linalg.lstsq(design, np.array(peaks, dtype=float), rcond=None)
    print(
        f"peak memory fit over N = {sizes}: {a / 2**10:.0f} KiB per filter (spectra, linear) "
        f"+ {b / 8:.2f} x an N x N float64 matrix (quadratic)"
    )


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",")}
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    repeat = 1 if args.quick else args.repeat

    import torch

    print("# napari-kernelspec benchmarks")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"torch {torch.__version__}, torch threads {torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory(prefix="kernelspec-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("KERNELSPEC_CACHE", str(workdir / "cache"))
        os.environ.setdefault("TORCH_HOME", str(workdir / "torch"))
        if "extraction" in only:
            models = ["mobilenet_v2"] if args.quick else ["alexnet", "vgg16"]
            bench_extraction(models, repeat, workdir)
            os.environ["KERNELSPEC_CACHE"] = str(workdir / "cache")
        if "spectra" in only:
            bench_spectra(3 if args.quick else max(repeat, 20))
        if "report" in only:
            bench_report(repeat, "random", ["lenet5", "mobilenet_v2"] if args.quick else [])
        if "widget" in only:
            bench_widget(3 if args.quick else 20)
        if "scale" in only:
            bench_scale(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
