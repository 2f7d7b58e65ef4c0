"""Benchmarks for the hardened loaders: offline ``weights="auto"`` and crafted weight files.

Usage::

    .venv/bin/python benchmarks/hostile_sources.py             # full run
    .venv/bin/python benchmarks/hostile_sources.py --src DIR   # another checkout's src (before)

Sections:

1. ``offline``: `load_kernels` of the eight seed models with ``weights="auto"`` and
   ``weights="random"`` on a machine without network, one fresh interpreter per round, three
   rounds (the first fills the kernel cache): load time, download attempts, warnings.
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


OFFLINE_CODE = """
import logging, sys, time, warnings
from napari_kernelspec.sources.loading import load_kernels
from napari_kernelspec.sources.models import SEED_MODELS
downloads = []
class Count(logging.Handler):
    def emit(self, record):
        downloads.extend(["x"] if "downloading" in record.getMessage() else [])
logging.getLogger("napari_kernelspec").addHandler(Count())
logging.getLogger("napari_kernelspec").setLevel(logging.INFO)
start = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for model in SEED_MODELS:
        load_kernels(model, weights=sys.argv[1])
took = time.perf_counter() - start
longest = max((len(str(w.message)) for w in caught), default=0)
print(f"{took:.2f} {len(downloads)} {len(caught)} {longest}")
"""


def bench_offline(src: Path) -> None:
    print("## 1. The eight seed models offline: `load_kernels` in a fresh interpreter per round\n")
    print("Round 1 starts with empty caches. Cells: load seconds (imports excluded) / download")
    print("attempts / warnings (longest, characters).\n")
    print("| weights | round 1 | round 2 | round 3 |")
    print("| --- | --- | --- | --- |")
    for weights in ("auto", "random"):
        with tempfile.TemporaryDirectory() as tmp:
            env = _env(src, Path(tmp))
            cells = []
            for _ in range(3):
                proc = subprocess.run(
                    [sys.executable, "-c", OFFLINE_CODE, weights],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=False,
                )
                if proc.returncode:
                    cells.append("failed: " + proc.stderr.strip().splitlines()[-1][:60])
                    continue
                took, downloads, warned, longest = proc.stdout.split()
                cells.append(f"{float(took):.2f} s / {downloads} / {warned} ({longest})")
            print(f"| {weights} | " + " | ".join(cells) + " |")
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
