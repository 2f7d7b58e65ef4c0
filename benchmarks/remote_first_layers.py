"""Benchmark: the eight seed models' first layers over HTTP Range requests vs full downloads.

Usage::

    .venv/bin/python benchmarks/remote_first_layers.py            # full-size files (~1.1 GB)
    .venv/bin/python benchmarks/remote_first_layers.py --quick    # three small models
    .venv/bin/python benchmarks/remote_first_layers.py --dir /tmp/kernelspec-files  # reuse

The files are full-size checkpoints with the architectures' random initial weights (what
``torch.save(model.state_dict())`` writes), named like torchvision's weights files and served
by a local server on 127.0.0.1 (``tests/sources/range_server.py``) through
``KERNELSPEC_TORCHVISION_MIRROR``. VGG16, DenseNet121 and GoogLeNet are written in the legacy
(pre-1.6) format, the others in the zip format, so both readers are measured. LeNet5 is not a
torchvision model: its file is read as a URL source.

For each model: bytes and requests the server saw and the time of `load_kernels(...,
use_cache=False)`, against streaming the whole file from the same server and reading the
tensor from it (what a first load did before). Targets: at most 1 % of the bytes and at most
8 requests per model.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LEGACY = {"vgg16", "densenet121", "googlenet"}
QUICK = ("mobilenet_v2", "densenet121", "lenet5")


def _server_module():
    spec = importlib.util.spec_from_file_location(
        "range_server", ROOT / "tests" / "sources" / "range_server.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_files(folder: Path, names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Write each model's random state dict; returns model -> (file name, first-conv key)."""
    import torch

    from napari_kernelspec.sources import models, pretrained

    out = {}
    for name in names:
        conv = models.conv_layer(name)
        filename = "lenet5.pth" if name == "lenet5" else pretrained.weights_info(name).filename
        out[name] = (filename, f"{conv.name}.weight")
        path = folder / filename
        if path.is_file():
            continue
        torch.manual_seed(0)
        state = models.build_model(name, "cpu").state_dict()
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp, _use_new_zipfile_serialization=name not in LEGACY)
        tmp.rename(path)
        del state
        print(f"wrote {filename} ({path.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    return out


def full_download(url: str, dst: Path, key: str) -> tuple[float, np.ndarray]:
    """Stream the whole file to `dst` and read `key` from it (the previous first load)."""
    from napari_kernelspec.sources import pretrained, remote

    fs = remote._http_fs()
    t0 = time.perf_counter()
    with fs.open(url, "rb", block_size=0) as src, open(dst, "wb") as out:
        while chunk := src.read(2**22):
            out.write(chunk)
    weights = pretrained.read_tensor(dst, key)
    seconds = time.perf_counter() - t0
    dst.unlink()
    return seconds, weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--dir", type=Path, help="folder for the files (kept; default: temp)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per model (median)")
    args = parser.parse_args()

    from napari_kernelspec.sources.models import SEED_MODELS

    names = QUICK if args.quick else tuple(SEED_MODELS)
    keep = args.dir is not None
    folder = args.dir or Path(tempfile.mkdtemp(prefix="kernelspec-remote-"))
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="kernelspec-scratch-"))
    os.environ["TORCH_HOME"] = str(scratch / "torch")  # an empty hub cache: nothing local
    os.environ["KERNELSPEC_CACHE"] = str(scratch / "cache")

    files = write_files(folder, names)
    server_module = _server_module()
    from napari_kernelspec import load_kernels

    rows = []
    with server_module.RangeServer(folder) as server:
        os.environ["KERNELSPEC_TORCHVISION_MIRROR"] = server.url
        for name in names:
            filename, key = files[name]
            url = f"{server.url}/{filename}"
            size = (folder / filename).stat().st_size
            times = []
            for _ in range(args.repeat + 1):  # the first run pays the imports: not counted
                server.reset()
                t0 = time.perf_counter()
                if name == "lenet5":
                    bank = load_kernels(url, layer=key, use_cache=False)
                else:
                    bank = load_kernels(name, weights="pretrained", use_cache=False)
                times.append(time.perf_counter() - t0)
            seconds = statistics.median(times[1:])
            sent, requests = server.bytes_sent, server.requests
            server.reset()
            full_s, full_w = full_download(url, scratch / filename, key)
            assert server.bytes_sent == size
            np.testing.assert_array_equal(bank.weights, full_w)  # the same tensor
            rows.append((name, filename, size, sent, requests, seconds, full_s))

    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; server on 127.0.0.1; "
        f"range-read time: median of {args.repeat} runs after a warm-up\n"
    )
    print(
        "| model | file (format) | file size | bytes read | share | requests | time | "
        "full download + read | x faster |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    total = sent_total = 0
    for name, filename, size, sent, requests, seconds, full_s in rows:
        fmt = "legacy" if name in LEGACY else "zip"
        total += size
        sent_total += sent
        print(
            f"| {name} | {filename} ({fmt}) | {size / 1e6:.1f} MB | {sent / 1e3:.0f} kB | "
            f"{100 * sent / size:.2f} % | {requests} | {seconds * 1e3:.0f} ms | "
            f"{full_s:.2f} s | {full_s / seconds:.0f}x |"
        )
    print(
        f"\nall: {sent_total / 1e6:.2f} MB of {total / 1e6:.0f} MB "
        f"({100 * sent_total / total:.3f} %); at most "
        f"{max(r[4] for r in rows)} requests per model"
    )
    if not keep:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
