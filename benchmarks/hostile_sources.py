"""Benchmarks for the hardened loaders: offline ``weights="auto"`` and crafted weight files.

Usage::

    .venv/bin/python benchmarks/hostile_sources.py             # full run
    .venv/bin/python benchmarks/hostile_sources.py --src DIR   # another checkout's src (before)

Sections:

1. ``offline``: ``kernelspec analyze`` on each of the eight seed models with ``--weights auto``
   and ``--weights random`` on a machine without network, in fresh interpreters, with a warm
   kernel cache: the wall time of the eight commands, three rounds (the first fills the cache).
2. ``crafted``: time and peak memory (tracemalloc, which numpy and torch's CPU allocator do not
   all report: RSS of a child process is given too) of loading crafted files: a 61-level DAG
   of shared lists, a 100,000-deep nesting, an .npz with a 512 MiB deflated side array, an
   .npy bank of (64, 3, 1, 1000).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from napari_kernelspec.sources.models import SEED_MODELS  # noqa: E402

SEEDS = tuple(SEED_MODELS)


def _env(src: Path, cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(src),
        "PYTHONDONTWRITEBYTECODE": "1",
        "KERNELSPEC_CACHE": str(cache / "kc"),
        "TORCH_HOME": str(cache / "torch"),
    }


def bench_offline(src: Path) -> None:
    print("## 1. Eight `kernelspec analyze` runs offline, warm kernel cache (wall seconds)\n")
    print("| weights | round 1 | round 2 | round 3 | warning lines (round 2) |")
    print("| --- | --- | --- | --- | --- |")
    for weights in ("auto", "random"):
        with tempfile.TemporaryDirectory() as tmp:
            env = _env(src, Path(tmp))
            rounds, lines = [], 0
            for _ in range(3):
                start = time.perf_counter()
                errs = []
                for model in SEEDS:
                    proc = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "napari_kernelspec.cli",
                            "analyze",
                            model,
                            "--weights",
                            weights,
                            "--json",
                            os.devnull,
                        ],
                        capture_output=True,
                        text=True,
                        env=env,
                        check=False,
                    )
                    errs.append(proc.stderr)
                rounds.append(time.perf_counter() - start)
                if len(rounds) == 2:
                    lines = sum(e.count("warning:") for e in errs)
            print(f"| {weights} | " + " | ".join(f"{t:.1f}" for t in rounds) + f" | {lines} |")
    print()


CRAFTED_CODE = """
import resource, sys, time
from napari_kernelspec.sources.loading import load_kernels
start = time.perf_counter()
try:
    bank = load_kernels(sys.argv[1])
    result = f"loaded {bank.weights.shape}"
except Exception as exc:
    result = f"{type(exc).__name__}: {str(exc)[:90]}"
took = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{took:.2f} s | {rss:.0f} MiB | {result}")
"""


def _crafted(folder: Path) -> dict[str, Path]:
    import torch

    conv = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    out = {}
    base = folder / "base.pth"
    torch.save({"conv.weight": torch.from_numpy(conv)}, base)
    with zipfile.ZipFile(base) as zf:
        pkl_name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        original = zf.read(pkl_name)
        records = [(i, zf.read(i)) for i in zf.infolist()]
    head = b"\x80\x02}q\x00"

    def with_junk(name: str, junk: bytes) -> Path:
        crafted = head + b"X\x04\x00\x00\x00junk" + junk + b"s" + original[len(head) :]
        path = folder / name
        with zipfile.ZipFile(path, "w") as zout:
            for info, data in records:
                zout.writestr(info, crafted if info.filename == pkl_name else data)
        return path

    dag = (
        b"](]q\x01"
        + b"".join(
            b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
            for i in range(2, 63)
        )
        + b"e"
    )
    out["DAG of 61 shared lists (.pth)"] = with_junk("dag.pth", dag)
    out["100,000-deep nesting (.pth)"] = with_junk("deep.pth", b"]" * 100_000 + b"a" * 99_999)
    path = folder / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("side.npy", "w", force_zip64=True) as fh:
            import io

            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                buf, {"descr": "<f4", "fortran_order": False, "shape": (2**27,)}
            )
            fh.write(buf.getvalue())
            for _ in range(32):
                fh.write(bytes(2**24))
        with zf.open("conv.npy", "w") as fh:
            np.lib.format.write_array(fh, conv)
    out[f"512 MiB deflated side array (.npz, {path.stat().st_size // 1024} KiB)"] = path
    path = folder / "wide.npy"
    np.save(path, np.ones((64, 3, 1, 1000), np.float32))
    out["(64, 3, 1, 1000) bank (.npy)"] = path
    return out


def bench_crafted(src: Path, timeout: float) -> None:
    print("## 2. Crafted files (child process: time, peak RSS, outcome)\n")
    print("| file | time | peak RSS | outcome |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(src, Path(tmp))
        for label, path in _crafted(Path(tmp)).items():
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", CRAFTED_CODE, str(path)],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=timeout,
                    check=False,
                )
                line = proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]
            except subprocess.TimeoutExpired:
                line = f"> {timeout:.0f} s | | killed: still running"
            print(f"| {label} | {line} |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the src folder to run")
    parser.add_argument("--only", default="offline,crafted")
    parser.add_argument("--timeout", type=float, default=60.0, help="per crafted file")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    print(f"src: {args.src}\n")
    if "offline" in only:
        bench_offline(args.src)
    if "crafted" in only:
        bench_crafted(args.src, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
