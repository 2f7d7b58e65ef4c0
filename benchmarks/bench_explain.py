"""Per-method benchmark of the class explanations, syntheses and adversarial examples.

Usage::

    .venv/bin/python benchmarks/bench_explain.py                  # CPU, about a minute
    .venv/bin/python benchmarks/bench_explain.py --device cuda    # where a GPU is present

Model: LeNet5 trained on scikit-learn's digits (trained once, ~7 s, then cached), 32x32
inputs; the attributions explain the true class of one held-out digit (median of 3 runs),
the adversarial rows push 20 digits to (y + 1) mod 10. The last rows time occlusion of 4
first-layer filters of AlexNet (random weights: timing does not depend on them) on
scikit-image's 451x300 photo of Chelsea, window 8, stride 1: our incremental first-layer
path in full, and Captum's path (one forward per window position, 64 positions per pass) on
the 64x96 top-left crop, extrapolated per position to the whole photo.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time


def _time(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--skip-alexnet", action="store_true")
    args = parser.parse_args()

    import os
    import warnings

    import torch

    from napari_kernelspec.imaging.explain.adversarial import iter_adversarial
    from napari_kernelspec.imaging.explain.attribution import attribute
    from napari_kernelspec.imaging.explain.classes import CLASS_METHODS, class_attribution
    from napari_kernelspec.imaging.explain.model import drive, explain_model
    from napari_kernelspec.imaging.explain.synthesis import synthesize
    from napari_kernelspec.sources.digits import load_digits_32

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --device cpu")
        return 1
    model = explain_model("lenet5", "pretrained", device=args.device)
    _, _, x, y = load_digits_32()
    x, y = x[:20], y[:20]
    print(
        f"# explain methods: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, device {args.device}"
    )
    print("| method | case | time |")
    print("| --- | --- | --- |")
    for method in CLASS_METHODS:
        sec = _time(lambda m=method: class_attribution(model, x[:1], m, y[:1]))
        print(f"| {method} | LeNet5, one 32x32 digit | {sec * 1e3:.0f} ms |", flush=True)
    cases = [
        ("class", {"target": list(range(10))}, "10 classes, 256 steps"),
        ("invert", {"layers": ["conv1"], "image": x[0]}, "conv1, 300 steps"),
        ("dream", {"layers": ["conv2"], "image": x[0]}, "conv2, 128 steps"),
        ("texture", {"layers": ["conv1", "conv2"], "image": x[0]}, "conv1+conv2, 300 steps"),
        (
            "style",
            {"layers": ["conv1", "conv1", "conv2"], "image": x[0], "style_image": x[5]},
            "300 steps",
        ),
    ]
    for kind, kw, what in cases:
        sec = _time(lambda k=kind, o=kw: synthesize(model, k, **o), repeat=1)
        print(f"| synthesize {kind} | LeNet5, {what} | {sec:.2f} s |", flush=True)
    for method in ("fgsm", "pgd"):
        t0 = time.perf_counter()
        res = drive(iter_adversarial(model, x, (y + 1) % 10, 0.3, method))
        sec = time.perf_counter() - t0
        print(
            f"| adversarial {method} | LeNet5, 20 digits, eps 0.3 (fooled "
            f"{int(res['fooled'].sum())}/20) | {sec * 1e3:.0f} ms |",
            flush=True,
        )
    if args.skip_alexnet:
        return 0
    from skimage.data import chelsea

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alex = explain_model("alexnet", "random", device=args.device)
    photo = chelsea()
    kw = {"window": 8, "window_stride": 1}
    t0 = time.perf_counter()
    attribute(alex, "features.0", range(4), photo, "occlusion", **kw)
    fast = time.perf_counter() - t0
    print(
        f"| occlusion, first layer (incremental) | AlexNet features.0, 4 filters, 451x300, "
        f"window 8 stride 1 | {fast:.1f} s |",
        flush=True,
    )
    os.environ["KERNELSPEC_CAPTUM_OCCLUSION"] = "1"
    crop = photo[:64, :96]
    t0 = time.perf_counter()
    attribute(alex, "features.0", range(4), crop, "occlusion", batch=64, **kw)
    slow = time.perf_counter() - t0
    per = slow / ((64 - 7) * (96 - 7))
    print(
        f"| occlusion, Captum path | same, measured on a 64x96 crop: {per * 1e3:.2f} ms per "
        f"position | {per * (300 - 7) * (451 - 7):.0f} s (extrapolated) |",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
