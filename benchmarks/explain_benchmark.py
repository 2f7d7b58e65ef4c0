"""Benchmark of `kernelspec explain`: activation maximisation and guided backprop.

Usage::

    .venv/bin/python benchmarks/explain_benchmark.py                 # CPU, a few minutes
    .venv/bin/python benchmarks/explain_benchmark.py --device cuda   # where a GPU is present
    .venv/bin/python benchmarks/explain_benchmark.py --measure-steps 2 --quick

Cases (each in a fresh interpreter, so that its peak memory is its own):

1. ``maximize``: VGG16 ``features.2`` and ``features.28``, 16 and 64 filters, 128 px, 256
   Adam steps. A full run of the deep cases takes an hour or more on a 2-core CPU, so the
   script times ``--measure-steps`` steps after one warm-up step and extrapolates to 256
   (every step costs the same: same shapes, same work); the table says so.
2. ``guided``: guided backprop (Captum ``NeuronGuidedBackprop``) of one ResNet50 ``layer3``
   filter (``layer3.0.conv1``, whole-map objective) on a 224 px image: median of 5 runs.

Weights are random (timing does not depend on them, and no download is possible here).
Peak memory is the process's peak resident set (``ru_maxrss``) minus what it held once the
model was built.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL_STEPS = 256


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_maximize(layer: str, n: int, size: int, steps: int, device: str) -> dict:
    import torch

    from napari_kernelspec.imaging.explain.maximize import maximize
    from napari_kernelspec.imaging.explain.model import explain_model

    model = explain_model("vgg16", "random", device=device)
    base = _rss_mib()
    maximize(model, layer, range(n), size=size, steps=1)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    maximize(model, layer, range(n), size=size, steps=steps)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {"per_step_s": seconds / steps, "measured_steps": steps}
    out["extrapolated_256_s"] = out["per_step_s"] * FULL_STEPS
    out["peak_extra_mib"] = _rss_mib() - base
    if device == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def case_guided(size: int, device: str, repeat: int) -> dict:
    import numpy as np

    from napari_kernelspec.imaging.explain.attribution import attribute
    from napari_kernelspec.imaging.explain.model import explain_model

    model = explain_model("resnet50", "random", device=device)
    image = np.random.default_rng(0).uniform(0, 1, (size, size, 3)).astype(np.float32)
    base = _rss_mib()
    attribute(model, "layer3.0.conv1", [0], image, "guided")  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        attribute(model, "layer3.0.conv1", [0], image, "guided")
        times.append(time.perf_counter() - t0)
    return {
        "median_ms": statistics.median(times) * 1e3,
        "min_ms": min(times) * 1e3,
        "max_ms": max(times) * 1e3,
        "peak_extra_mib": _rss_mib() - base,
    }


def _child(args: argparse.Namespace) -> None:
    spec = json.loads(args.case)
    if spec["kind"] == "maximize":
        res = case_maximize(spec["layer"], spec["n"], spec["size"], spec["steps"], args.device)
    else:
        res = case_guided(spec["size"], args.device, spec["repeat"])
    print(json.dumps(res))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--measure-steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 filters, 32 px only")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (default torch's own); 1 avoids OpenMP oversubscription on a "
        "loaded machine",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.case:
        _child(args)
        return 0
    size = 32 if args.quick else 128
    cases = [
        {"kind": "maximize", "layer": layer, "n": n, "size": size, "steps": args.measure_steps}
        for layer in ("features.2", "features.28")
        for n in ((16,) if args.quick else (16, 64))
    ]
    cases.append({"kind": "guided", "size": 64 if args.quick else 224, "repeat": 5})
    import platform

    import torch

    print(f"# explain benchmark: {platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}")  # fmt: skip
    print("| case | time | peak memory (RSS above the built model) |")
    print("| --- | --- | --- |")
    for spec in cases:
        proc = subprocess.run(
            [sys.executable, __file__, "--device", args.device, "--threads", str(args.threads),
             "--case", json.dumps(spec)],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        if proc.returncode != 0:
            print(f"| {spec} | failed: {proc.stderr.strip().splitlines()[-1]} | |")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        if spec["kind"] == "maximize":
            what = f"maximize VGG16 {spec['layer']}, {spec['n']} filters, {spec['size']} px"
            cell = (
                f"{res['extrapolated_256_s']:.1f} s for 256 steps (measured "
                f"{res['measured_steps']} steps: {res['per_step_s']:.2f} s/step)"
            )
        else:
            what = f"guided backprop, ResNet50 layer3.0.conv1 filter 0, {spec['size']} px"
            cell = f"{res['median_ms']:.0f} ms (min {res['min_ms']:.0f}, max {res['max_ms']:.0f})"
        mem = f"{res['peak_extra_mib']:.0f} MiB"
        if "cuda_peak_mib" in res:
            mem += f" (CUDA {res['cuda_peak_mib']:.0f} MiB)"
        print(f"| {what} | {cell} | {mem} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
