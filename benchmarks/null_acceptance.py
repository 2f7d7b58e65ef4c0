"""The matched null's acceptance table (issue 18): structure-free banks, planted groups, colour.

Usage::

    .venv/bin/python benchmarks/null_acceptance.py            # the whole table (~1-2 min)
    .venv/bin/python benchmarks/null_acceptance.py --quick    # a few banks per row
    .venv/bin/python benchmarks/null_acceptance.py --speed    # analyze, cold and memoised
    .venv/bin/python benchmarks/null_acceptance.py --k 3 --reps 12   # only 3x3 rows, 12 banks

Rows (the ``"response"`` method with its defaults: auto threshold, complete linkage):

``smooth``
    64 random Gaussian filters of 3 channels, k in 5, 7, 11, blurred with a Gaussian of
    sigma 0, 0.7, 1.0, 1.5 px, colour channels independent or mixed 80 % towards their mean:
    clustered share (mean, worst) and the share of banks with structure p < 0.01.
``planted``
    Four groups of six same-tuning Gabors with random phase in smooth noise at SNR 2 (3x3:
    no noise) among 24 smooth random fillers: adjusted Rand index over the planted filters,
    share of fillers clustered, structure p.
``colour``
    Three groups of eight Gabors of one shape in grey, red-green and blue-yellow: ARI.

The bank generators are imported by ``tests/analysis/test_null.py`` (the known-answer tests).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

TUNINGS = [(0.2, 0.0), (0.3, 45.0), (0.2, 90.0), (0.3, 135.0)]
COLOURS = {"grey": (1.0, 1.0, 1.0), "red-green": (1.0, -1.0, 0.0), "blue-yellow": (1.0, 1.0, -2.0)}


def gabor(size: int, frequency: float, theta_deg: float, phase: float) -> np.ndarray:
    """A (size, size) Gabor with envelope sigma max(size / 4, 1) px (a narrower envelope on
    3x3 leaves too few pixels for a tuning that random phases share)."""
    sigma = max(size / 4, 1.0)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    t = np.radians(theta_deg)
    envelope = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return envelope * np.cos(2 * np.pi * frequency * (x * np.cos(t) + y * np.sin(t)) + phase)


def smooth_noise(rng, n: int, k: int, sigma: float, mix: float = 0.0) -> np.ndarray:
    """(n, 3, k, k) Gaussian filters blurred with `sigma` px, each channel pulled `mix` of the
    way towards the mean of the channels; every filter scaled to unit norm."""
    from scipy.ndimage import gaussian_filter

    x = rng.normal(size=(n, 3, k, k))
    if sigma > 0:
        x = gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="constant")
    x = (1 - mix) * x + mix * x.mean(axis=1, keepdims=True)
    return x / np.linalg.norm(x.reshape(n, -1), axis=1)[:, None, None, None]


def structure_free_bank(seed: int, k: int, sigma: float, mix: float) -> np.ndarray:
    return smooth_noise(np.random.default_rng(seed), 64, k, sigma, mix)


def planted_bank(seed: int, k: int, snr: float | None = 2.0):
    """Four groups of six grey Gabors (one tuning per group, random phases) plus smooth noise
    of norm 1/snr each, among 24 smooth random fillers. Returns weights and truth (group
    0-3, -1 for fillers)."""
    rng = np.random.default_rng(seed)
    filters, truth = [], []
    for g, (freq, theta) in enumerate(TUNINGS):
        for _ in range(6):
            wave = gabor(k, freq, theta, rng.uniform(0, 2 * np.pi))
            x = np.broadcast_to(wave / np.linalg.norm(wave) / np.sqrt(3), (3, k, k))
            if snr is not None:
                x = x + smooth_noise(rng, 1, k, 1.0, 0.8)[0] / snr
            filters.append(x)
            truth.append(g)
    filters.extend(smooth_noise(rng, 24, k, 1.0, 0.8))
    truth.extend([-1] * 24)
    order = rng.permutation(len(filters))
    return np.stack(filters)[order], np.array(truth)[order]


def colour_bank(seed: int, k: int = 7, noise: float = 0.1):
    """Three groups of eight Gabors of one shape (random phases), grey, red-green and
    blue-yellow, with a little white noise. Returns weights and truth (0, 1, 2)."""
    rng = np.random.default_rng(seed)
    filters, truth = [], []
    for g, colour in enumerate(COLOURS.values()):
        c = np.asarray(colour) / np.linalg.norm(colour)
        for _ in range(8):
            wave = gabor(k, 0.2, 30.0, rng.uniform(0, 2 * np.pi))
            x = c[:, None, None] * wave / np.linalg.norm(wave)
            filters.append(x + noise * rng.normal(size=x.shape) / k)
            truth.append(g)
    order = rng.permutation(len(filters))
    return np.stack(filters)[order], np.array(truth)[order]


def analyse(weights: np.ndarray):
    from napari_kernelspec import KernelBank, analyze

    return analyze(KernelBank(weights, "bank", "conv", "array"))


def planted_scores(result, truth: np.ndarray) -> tuple[float, float]:
    """ARI over the planted filters and the share of fillers clustered."""
    from sklearn.metrics import adjusted_rand_score

    planted = truth >= 0
    labels = result.labels.copy()
    # each unclustered filter is its own singleton
    labels[labels < 0] = 1000 + np.flatnonzero(labels < 0)
    ari = adjusted_rand_score(truth[planted], labels[planted])
    return float(ari), float(np.mean(result.labels[~planted] >= 0))


def speed(repeat: int = 5) -> int:
    """Median / min / max seconds of `analyze` on 64 Gaussian filters: cold (a new layer, so
    a new null) and memoised (the same layer again)."""
    from napari_kernelspec import KernelBank, analyze

    print("| shape | cold s (median / min / max) | memoised s |")
    print("| --- | --- | --- |")
    for shape in ((64, 3, 3, 3), (64, 3, 7, 7), (64, 3, 11, 11)):
        cold, warm = [], []
        for seed in range(repeat):
            bank = KernelBank(np.random.default_rng(seed).normal(size=shape), "b", "c", "array")
            t = time.perf_counter()
            analyze(bank)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            analyze(bank)
            warm.append(time.perf_counter() - t)
        fmt = " / ".join(f"{v:.2f}" for v in (np.median(cold), min(cold), max(cold)))
        wfmt = " / ".join(f"{v:.3f}" for v in (np.median(warm), min(warm), max(warm)))
        print(f"| {'x'.join(map(str, shape))} | {fmt} | {wfmt} |")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two banks per row")
    parser.add_argument("--speed", action="store_true", help="only time analyze")
    parser.add_argument(
        "--k", type=int, nargs="+", default=None, help="only these kernel sizes (e.g. --k 3)"
    )
    parser.add_argument("--reps", type=int, default=None, help="banks per row")
    args = parser.parse_args(argv)
    sizes = set(args.k or (3, 5, 7, 11))
    if args.speed:
        return speed()
    reps = args.reps or (2 if args.quick else 6)
    start = time.perf_counter()
    print("| bank | clustered mean / worst | p < 0.01 |")
    print("| --- | --- | --- |")
    for k in sorted(sizes & {5, 7, 11}):
        for mix in (0.0, 0.8):
            shares, low = [], 0
            for sigma in (0.0, 0.7, 1.0, 1.5):
                for seed in range(reps):
                    r = analyse(structure_free_bank(seed, k, sigma, mix))
                    shares.append(r.clustered_fraction)
                    low += r.structure_p_value < 0.01
            print(
                f"| smooth {k}x{k}, mix {mix:.1f} | {100 * np.mean(shares):.1f} % / "
                f"{100 * np.max(shares):.0f} % | {low}/{len(shares)} |"
            )
    print("\n| planted | ARI (mean, min) | fillers clustered (mean, max) | structure p (max) |")
    print("| --- | --- | --- | --- |")
    for k, snr in ((3, None), (3, 2.0), (5, 2.0), (7, 2.0), (11, 2.0)):
        if k not in sizes:
            continue
        aris, fills, ps = [], [], []
        for seed in range(reps):
            w, truth = planted_bank(seed, k, snr)
            r = analyse(w)
            ari, fill = planted_scores(r, truth)
            aris.append(ari)
            fills.append(fill)
            ps.append(r.structure_p_value)
        print(
            f"| {k}x{k}, SNR {snr or 'inf'} | {np.mean(aris):.2f}, {np.min(aris):.2f} | "
            f"{100 * np.mean(fills):.0f} %, {100 * np.max(fills):.0f} % | {np.max(ps):.3f} |"
        )
    from sklearn.metrics import adjusted_rand_score

    if 7 not in sizes:
        print(f"\n({time.perf_counter() - start:.0f} s)")
        return 0
    aris = []
    for seed in range(reps):
        w, truth = colour_bank(seed)
        aris.append(adjusted_rand_score(truth, analyse(w).labels))
    print(f"\ncolour groups (grey / red-green / blue-yellow): ARI min {np.min(aris):.2f}")
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
