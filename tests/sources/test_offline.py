"""Offline: a failed download is remembered for a while, and the fallback says so in one line."""

from __future__ import annotations

import json
import socket
import time
import warnings

import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources import cache, pretrained, remote
from napari_kernelspec.sources.loading import UntrainedWeightsWarning, load_kernels


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Every model's weights URL points at a closed port on 127.0.0.1; fetches are counted."""
    import torch

    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    port = _closed_port()
    real_info = pretrained.weights_info

    def info(model):
        real = real_info(model)
        return pretrained.WeightsInfo(real.enum_name, f"http://127.0.0.1:{port}/{real.filename}")

    monkeypatch.setattr(pretrained, "weights_info", info)
    calls = []
    real_download = torch.hub.download_url_to_file

    def download(url, *args, **kwargs):
        calls.append(url)
        return real_download(url, *args, **kwargs)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    # weights missing from the hub cache are first read with Range requests: count those too
    real_range_read = remote.read_torchvision

    def range_read(url, *args, **kwargs):
        calls.append(url)
        return real_range_read(url, *args, **kwargs)

    monkeypatch.setattr(remote, "read_torchvision", range_read)
    return calls


def _auto(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bank = load_kernels(model, weights="auto")
    untrained = [w for w in caught if issubclass(w.category, UntrainedWeightsWarning)]
    assert len(untrained) == 1
    return bank, untrained[0].message


def test_failed_download_is_not_retried_within_the_hour(offline):
    bank, first = _auto("mobilenet_v2")
    assert bank.source == "random" and len(offline) == 1
    text = str(first)
    assert "\n" not in text and len(text) < 200, text
    assert text.startswith("MobileNetV2: no pretrained weights") and 'weights="random"' in text
    failures = json.loads((cache.cache_dir() / pretrained.FAILURES_FILE).read_text())
    server = offline[0].rsplit("/", 1)[0]
    assert set(failures) == {server, "model:mobilenet_v2"}

    # another model on the same server, and the same model again: no download attempted
    for model in ("resnet50", "mobilenet_v2"):
        bank, again = _auto(model)
        assert bank.source == "random" and not bank.is_trained
        assert "offline" in again.reason and "retried in" in again.reason
        assert "failed" in bank.provenance["fallback_reason"]
    assert len(offline) == 1

    # asking for pretrained explicitly always tries
    with pytest.raises(KernelSpecError, match="could not be downloaded"):
        load_kernels("resnet50", weights="pretrained")
    assert len(offline) == 2


def test_failure_is_retried_after_the_retry_time(offline, monkeypatch):
    _auto("mobilenet_v2")
    path = cache.cache_dir() / pretrained.FAILURES_FILE
    data = json.loads(path.read_text())
    for entry in data.values():
        entry["time"] = time.time() - pretrained.RETRY_DOWNLOAD_AFTER_S - 1
    path.write_text(json.dumps(data))
    _auto("resnet50")
    assert len(offline) == 2


def test_damaged_failure_file_is_ignored(offline):
    cache.cache_dir().mkdir(parents=True)
    (cache.cache_dir() / pretrained.FAILURES_FILE).write_text("{not json")
    bank, _ = _auto("mobilenet_v2")
    assert bank.source == "random" and len(offline) == 1


def test_successful_download_forgets_the_failure(tmp_path, monkeypatch):
    """A real download (from a file URL written here) clears the remembered failure."""
    import torch

    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    real = pretrained.weights_info("mobilenet_v2")
    served = tmp_path / "server" / real.filename
    served.parent.mkdir()
    torch.save({"features.0.0.weight": torch.randn(32, 3, 3, 3)}, served)
    info = pretrained.WeightsInfo(real.enum_name, served.as_uri())
    monkeypatch.setattr(pretrained, "weights_info", lambda m: info)
    cache.cache_dir().mkdir(parents=True)
    failures = {"file://": {"time": time.time() - 10, "reason": "earlier"}}
    (cache.cache_dir() / pretrained.FAILURES_FILE).write_text(json.dumps(failures))
    assert pretrained.recent_failure(info.url) is not None
    bank = load_kernels("mobilenet_v2", weights="pretrained")  # explicit: tried anyway
    assert bank.source == "pretrained"
    assert pretrained.recent_failure(info.url) is None


def test_unreadable_torch_home(tmp_path, monkeypatch):
    """TORCH_HOME under a regular file (cannot be created), and one that denies reading."""
    from pathlib import Path

    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "file" / "torch"))
    with pytest.raises(KernelSpecError) as err:
        load_kernels("mobilenet_v2", weights="pretrained")
    message = str(err.value)
    assert "TORCH_HOME" in message and "\n" not in message
    bank, warning = _auto("mobilenet_v2")
    assert "torch hub folder" in warning.reason and bank.source == "random"

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "locked"))
    real_is_file = Path.is_file

    def denied(self):
        if "locked" in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.raises(KernelSpecError) as err:
        load_kernels("mobilenet_v2", weights="pretrained", use_cache=False)
    assert "cannot look into the torch hub folder" in str(err.value)
    assert "Permission denied" in str(err.value)


def test_remembered_failure_needs_no_torch_import(offline, tmp_path):
    """The next run of an offline `auto` load is as light as a cached random one."""
    import os
    import subprocess
    import sys

    _auto("mobilenet_v2")
    code = (
        "import sys, warnings; warnings.simplefilter('ignore');"
        "from napari_kernelspec.sources.loading import load_kernels;"
        "b = load_kernels('mobilenet_v2');"
        "print(b.source, 'torch' in sys.modules, 'torchvision' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["random", "False", "False"]


def test_weights_put_in_place_by_hand_are_used_at_once(offline):
    import torch

    _auto("mobilenet_v2")
    path = pretrained.hub_checkpoint_path(pretrained.weights_info("mobilenet_v2").url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.0.weight": torch.randn(32, 3, 3, 3)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        assert load_kernels("mobilenet_v2").source == "pretrained"
    assert len(offline) == 1
