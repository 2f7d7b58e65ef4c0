"""Remote checkpoints over HTTP Range requests, against real servers on 127.0.0.1.

Each test writes real checkpoint files, serves them, loads one tensor, checks it equals the
file's, and counts what the server sent.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec import load_kernels
from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources import pretrained, remote
from napari_kernelspec.sources.loading import UntrainedWeightsWarning, resolve_source

_spec = importlib.util.spec_from_file_location(
    "range_server", Path(__file__).with_name("range_server.py")
)
range_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(range_server)

#: Bytes of filler after the convolutions, so that a whole-file read is easy to tell apart.
FILLER = 3 * 2**20


def _state(seed: int = 0, conv: tuple[int, ...] = (8, 3, 5, 5), name: str = "features.0"):
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "pre.bias": torch.randn(5, generator=g),  # not 4-D: skipped when looking for the first
        f"{name}.weight": torch.randn(*conv, generator=g),
        f"{name}.bias": torch.randn(conv[0], generator=g),
        "zz.filler": torch.randn(FILLER // 4 // 9, 1, 3, 3, generator=g),
        "later.weight": torch.randn(16, 8, 3, 3, generator=g),
        "fc.weight": torch.randn(10, 16, generator=g),
    }


def _save(state, path: Path, fmt: str) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    return folder


@pytest.fixture
def server(root):
    with range_server.RangeServer(root) as srv:
        yield srv


@pytest.fixture
def hub(server, tmp_path, monkeypatch):
    """The server as the Hugging Face Hub, with a private Hugging Face cache."""
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return server


def _check_transfer(bank, server, size: int, most_requests: int = 8) -> None:
    """The provenance matches what the server sent, and that is a small part of the file."""
    prov = bank.provenance
    assert prov["bytes_transferred"] == server.bytes_sent
    assert prov["requests"] == server.requests <= most_requests
    assert server.bytes_sent < size / 10, (server.bytes_sent, size)


# --- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_url_reads_only_the_first_layer(root, server, fmt):
    state = _state()
    # The name says nothing of the format: it is read from the first bytes.
    path = _save(state, root / "weights.bin", fmt)
    bank = load_kernels(f"{server.url}/weights.bin")
    np.testing.assert_array_equal(bank.weights, state["features.0.weight"].numpy())
    assert bank.layer == "features.0.weight" and bank.source == "checkpoint"
    assert bank.provenance["url"] == f"{server.url}/weights.bin"
    assert bank.provenance["format"] == {"zip": "torch-zip", "legacy": "torch-legacy"}.get(
        fmt, fmt
    )
    assert not bank.stride_known
    _check_transfer(bank, server, path.stat().st_size)

    server.reset()
    other = load_kernels(f"{server.url}/weights.bin", layer="later")
    np.testing.assert_array_equal(other.weights, state["later.weight"].numpy())
    assert server.bytes_sent < path.stat().st_size / 10


def test_second_load_comes_from_the_kernel_cache(root, server):
    state = _state(1)
    _save(state, root / "w.pth", "zip")
    first = load_kernels(f"{server.url}/w.pth")
    server.reset()
    second = load_kernels(f"{server.url}/w.pth")
    assert server.requests == 0
    assert second.provenance["cached"] is True
    assert second.provenance["bytes_transferred"] == first.provenance["bytes_transferred"]
    np.testing.assert_array_equal(second.weights, first.weights)
    assert second.display_name == "w.pth" and second.source == "checkpoint"


def test_url_source_resolves_without_loading(server):
    assert resolve_source(f" {server.url}/x.pth ") == f"{server.url}/x.pth"
    assert resolve_source("hf://owner/repo/model.safetensors@v1") == (
        "hf://owner/repo/model.safetensors@v1"
    )
    assert server.requests == 0


@pytest.mark.parametrize(
    ("text", "repo", "path", "revision"),
    [
        ("hf://o/r", "o/r", "", ""),
        ("hf://o/r/sub/model.safetensors", "o/r", "sub/model.safetensors", ""),
        ("hf://o/r/model.safetensors@refs/pr/1", "o/r", "model.safetensors", "refs/pr/1"),
        ("hf://o/r@v2/model.safetensors", "o/r", "model.safetensors", "v2"),
    ],
)
def test_parse_hf_sources(text, repo, path, revision):
    src = remote.parse_source(text)
    assert (src.kind, src.repo, src.path, src.revision) == ("hf", repo, path, revision)


@pytest.mark.parametrize("text", ["hf://only-owner", "hf://o/r/../x", "timm:", "timm:a/b"])
def test_bad_remote_sources(text):
    with pytest.raises(KernelSpecError):
        remote.parse_source(text)


# --- torchvision through a mirror ----------------------------------------------------------


@pytest.mark.parametrize(("model", "fmt"), [("alexnet", "zip"), ("densenet121", "legacy")])
def test_torchvision_weights_from_a_mirror(root, server, monkeypatch, model, fmt):
    from napari_kernelspec.sources.models import SEED_FIRST_CONVS

    conv = SEED_FIRST_CONVS[model]
    info = pretrained.weights_info(model)
    state = _state(2, conv.shape, conv.name)
    path = _save(state, root / "models" / info.filename, fmt)
    monkeypatch.setenv("KERNELSPEC_TORCHVISION_MIRROR", f"{server.url}/models/")

    bank = load_kernels(model, weights="pretrained")
    np.testing.assert_array_equal(bank.weights, state[f"{conv.name}.weight"].numpy())
    assert bank.source == "pretrained" and bank.provenance["weights"] == info.enum_name
    assert bank.provenance["url"] == f"{server.url}/models/{info.filename}"
    assert bank.stride == conv.stride
    _check_transfer(bank, server, path.stat().st_size)
    # No whole file was written to the torch hub cache.
    assert not pretrained.hub_checkpoint_path(info.url).exists()

    server.reset()
    again = load_kernels(model, weights="pretrained")
    assert again.provenance["cached"] is True and server.requests == 0


def test_old_densenet_names_over_http(root, server, monkeypatch):
    import torch

    info = pretrained.weights_info("densenet121")
    state = _state(3, (64, 3, 7, 7), "features.conv0")
    inner = torch.randn(128, 64, 1, 1)
    state["features.denseblock1.denselayer1.conv.1.weight"] = inner
    _save(state, root / info.filename, "legacy")
    monkeypatch.setenv("KERNELSPEC_TORCHVISION_MIRROR", server.url)
    bank = load_kernels(
        "densenet121", weights="pretrained", layer="features.denseblock1.denselayer1.conv1"
    )
    np.testing.assert_array_equal(bank.weights, inner.numpy())


def test_server_without_range_support_gets_a_full_download(root, monkeypatch):
    info = pretrained.weights_info("alexnet")
    state = _state(4, (64, 3, 11, 11))
    path = _save(state, root / info.filename, "zip")
    with range_server.RangeServer(root, ranges=False) as srv:
        monkeypatch.setenv("KERNELSPEC_TORCHVISION_MIRROR", srv.url)
        bank = load_kernels("alexnet", weights="pretrained")
        assert srv.bytes_sent >= path.stat().st_size
    np.testing.assert_array_equal(bank.weights, state["features.0.weight"].numpy())
    assert bank.provenance["read"] == "download"
    # The complete file is in torchvision's cache, under its own name.
    hub_file = pretrained.hub_checkpoint_path(info.url)
    assert hub_file.read_bytes() == path.read_bytes()
    assert [p.name for p in hub_file.parent.iterdir()] == [info.filename]


def test_url_without_range_support_downloads_once(root, tmp_path):
    from napari_kernelspec.sources import cache

    state = _state(5)
    path = _save(state, root / "w.safetensors", "safetensors")
    with range_server.RangeServer(root, ranges=False) as srv:
        # The filler lies beyond the first block: reading it reveals that Range is ignored.
        bank = load_kernels(f"{srv.url}/w.safetensors", layer="zz.filler")
        assert bank.provenance["read"] == "download"
        sent = srv.bytes_sent
        other = load_kernels(f"{srv.url}/w.safetensors", layer="later.weight")
        assert srv.bytes_sent == sent  # the second layer came from the downloaded file
    assert sent >= path.stat().st_size
    np.testing.assert_array_equal(bank.weights, state["zz.filler"].numpy())
    np.testing.assert_array_equal(other.weights, state["later.weight"].numpy())
    assert other.provenance["read"] == "local"
    downloads = list((cache.cache_dir() / "downloads").iterdir())
    assert len(downloads) == 1 and downloads[0].read_bytes() == path.read_bytes()


# --- the Hugging Face Hub ------------------------------------------------------------------


def test_hub_safetensors_file(root, hub):
    state = _state(6)
    path = _save(state, root / "someone" / "convnet" / "model.safetensors", "safetensors")
    bank = load_kernels("hf://someone/convnet")
    np.testing.assert_array_equal(bank.weights, state["features.0.weight"].numpy())
    assert bank.display_name == "someone/convnet"
    assert (
        f"/someone/convnet/resolve/{range_server.COMMIT}/model.safetensors"
        in (bank.provenance["url"])
    )
    assert hub.bytes_sent == bank.provenance["bytes_transferred"] < path.stat().st_size / 10
    assert hub.requests <= 8


def test_hub_sharded_checkpoint_reads_one_shard(root, hub):
    import json

    import torch

    repo = root / "someone" / "sharded"
    first = {"a.weight": torch.randn(4, 3, 3, 3), "filler": torch.randn(FILLER // 4)}
    second = {"b.weight": torch.randn(6, 4, 5, 5), "z": torch.randn(FILLER // 4)}
    _save(first, repo / "model-00001-of-00002.safetensors", "safetensors")
    _save(second, repo / "model-00002-of-00002.safetensors", "safetensors")
    index = {
        "metadata": {"total_size": 0},
        "weight_map": {
            **dict.fromkeys(first, "model-00001-of-00002.safetensors"),
            **dict.fromkeys(second, "model-00002-of-00002.safetensors"),
        },
    }
    (repo / "model.safetensors.index.json").write_text(json.dumps(index))

    bank = load_kernels("hf://someone/sharded@main", layer="b")
    np.testing.assert_array_equal(bank.weights, second["b.weight"].numpy())
    assert bank.provenance["format"] == "sharded safetensors"
    paths = [p for _, p, _ in hub.log]
    assert not any("00001" in p for p in paths)  # the other shard was never touched
    assert any("/resolve/main/model.safetensors" in p for p in paths)
    assert hub.bytes_sent == bank.provenance["bytes_transferred"] < FILLER / 10

    hub.reset()
    first_bank = load_kernels("hf://someone/sharded/model.safetensors.index.json")
    np.testing.assert_array_equal(first_bank.weights, first["a.weight"].numpy())
    assert hub.bytes_sent < FILLER / 10


def test_hub_file_already_in_the_hf_cache_is_read_locally(root, hub):
    from huggingface_hub import hf_hub_download

    state = _state(7)
    _save(state, root / "someone" / "cached" / "pytorch_model.bin", "zip")
    hf_hub_download(
        "someone/cached",
        "pytorch_model.bin",
        endpoint=hub.url,
        cache_dir=os.environ["HF_HUB_CACHE"],
    )
    hub.reset()
    bank = load_kernels("hf://someone/cached/pytorch_model.bin", use_cache=False)
    np.testing.assert_array_equal(bank.weights, state["features.0.weight"].numpy())
    assert bank.provenance["read"] == "local" and hub.bytes_sent == 0


def test_timm_pretrained_weights_from_the_hub(root, hub):
    import timm

    name = "resnet18.a1_in1k"
    cfg = timm.models.get_pretrained_cfg(name)
    state = _state(8, (64, 3, 7, 7), cfg.first_conv)
    _save(state, root / cfg.hf_hub_id / "model.safetensors", "safetensors")
    bank = load_kernels(f"timm:{name}", weights="pretrained")
    np.testing.assert_array_equal(bank.weights, state["conv1.weight"].numpy())
    assert bank.layer == "conv1" and bank.source == "pretrained"
    assert bank.stride == (2, 2) and bank.padding == (3, 3)  # from the meta-device model
    assert hub.bytes_sent == bank.provenance["bytes_transferred"] < FILLER / 10


def test_timm_random_weights_are_built_offline():
    bank = load_kernels("timm:resnet18", weights="random")
    assert bank.weights.shape == (64, 3, 7, 7) and bank.source == "random"
    assert bank.stride == (2, 2) and not bank.is_trained


# --- failures ------------------------------------------------------------------------------


def _error(source: str, **kwargs) -> str:
    with pytest.raises(KernelSpecError) as err:
        load_kernels(source, use_cache=False, **kwargs)
    text = str(err.value)
    assert "\n" not in text
    return text


def test_http_404_and_403(root, server):
    _save(_state(), root / "secret.pth", "zip")
    server.forbidden.add("secret.pth")
    assert "HTTP 404" in _error(f"{server.url}/missing.pth")
    assert "access denied (HTTP 403)" in _error(f"{server.url}/secret.pth")


def test_dns_failure_and_no_server(monkeypatch):
    import socket

    monkeypatch.setenv("KERNELSPEC_HTTP_TIMEOUT", "5")
    assert "DNS failure" in _error("https://no-such-host.invalid/w.pth")
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert "cannot connect to 127.0.0.1" in _error(f"http://127.0.0.1:{port}/w.pth")


def test_no_network_falls_back_on_random_for_auto(monkeypatch):
    monkeypatch.setenv("KERNELSPEC_TORCHVISION_MIRROR", "https://no-such-host.invalid/models")
    with pytest.raises(pretrained.WeightsUnavailable, match=r"DNS failure.*weights='random'"):
        load_kernels("mobilenet_v2", weights="pretrained", use_cache=False)
    with pytest.warns(UntrainedWeightsWarning):
        bank = load_kernels("mobilenet_v2", use_cache=False)
    assert bank.source == "random"


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_truncated_file(root, server, fmt):
    path = _save(_state(), root / "w.pth", fmt)
    data = path.read_bytes()
    cut = len(data) // 2 if fmt != "legacy" else len(data) - 100
    path.write_bytes(data[:cut])
    assert "truncated" in _error(f"{server.url}/w.pth")
    assert server.bytes_sent < len(data) / 10


def test_truncated_response(root, server, monkeypatch):
    _save(_state(), root / "w.pth", "zip")
    server.cut_short.add("w.pth")
    assert "cut off (truncated)" in _error(f"{server.url}/w.pth")


def test_truncated_full_download_leaves_nothing(root, monkeypatch):
    info = pretrained.weights_info("alexnet")
    _save(_state(9, (64, 3, 11, 11)), root / info.filename, "zip")
    with range_server.RangeServer(root, ranges=False) as srv:
        srv.cut_short.add(info.filename)
        monkeypatch.setenv("KERNELSPEC_TORCHVISION_MIRROR", srv.url)
        with pytest.raises(pretrained.WeightsUnavailable, match="truncated"):
            load_kernels("alexnet", weights="pretrained")
    folder = pretrained.hub_checkpoint_path(info.url).parent
    assert not folder.exists() or not list(folder.iterdir())


def test_not_a_checkpoint_and_tar(root, server):
    (root / "page.pth").write_text("<html><body>Sign in</body></html>")
    assert "is not a checkpoint" in _error(f"{server.url}/page.pth")
    tar = bytearray(1024)
    tar[257:262] = b"ustar"
    (root / "old.pth").write_bytes(bytes(tar))
    assert "old tar checkpoint format" in _error(f"{server.url}/old.pth")


def test_tensor_not_4d(root, server):
    _save(_state(), root / "w.safetensors", "safetensors")
    assert "not the 4-D" in _error(f"{server.url}/w.safetensors", layer="fc.weight")


def test_code_in_a_remote_pickle_never_runs(root, server, tmp_path):
    import torch

    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for fmt in ("zip", "legacy"):
        torch.save(
            {"conv.weight": torch.ones(2, 1, 3, 3), "x": Payload()},
            root / f"{fmt}.pth",
            _use_new_zipfile_serialization=fmt == "zip",
        )
        assert "refusing to unpickle" in _error(f"{server.url}/{fmt}.pth")
    assert not marker.exists()


def test_crafted_sizes_are_refused_before_fetching(root, server):
    import struct

    # A safetensors header that claims 1 TiB.
    (root / "huge.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{" + bytes(200_000))
    assert "truncated or damaged" in _error(f"{server.url}/huge.safetensors")
    # A tensor that claims to span more than a convolution can.
    header = b'{"w": {"dtype": "F32", "shape": [100000, 1000, 3, 3], "data_offsets": [0, 4]}}'
    (root / "span.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    assert "truncated or damaged" in _error(f"{server.url}/span.safetensors")
    assert server.bytes_sent < 200_000


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_kernelspec.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_error_is_one_line_exit_2(server):
    proc = _cli("analyze", f"{server.url}/nope.pth")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("kernelspec: error: cannot read") and "HTTP 404" in proc.stderr


def test_cli_analyzes_a_url(root, server):
    state = _state(10)
    _save(state, root / "w.pth", "zip")
    proc = _cli("analyze", f"{server.url}/w.pth")
    assert proc.returncode == 0, proc.stderr
    assert "filters: 8 x 3 channels x 5x5" in proc.stdout


def test_warnings_are_not_raised_for_plain_reads(root, server):
    _save(_state(), root / "w.pth", "legacy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_kernels(f"{server.url}/w.pth")


def test_bfloat16_and_half_tensors(root, server):
    import torch
    from safetensors.torch import save_file

    w16 = torch.randn(4, 3, 3, 3).to(torch.bfloat16)
    h16 = torch.randn(5, 3, 3, 3).half()
    save_file({"a.weight": w16, "b.weight": h16}, str(root / "low.safetensors"))
    torch.save({"a.weight": w16, "b.weight": h16}, root / "low.pth")
    for name in ("low.safetensors", "low.pth"):
        a = load_kernels(f"{server.url}/{name}", layer="a", use_cache=False)
        b = load_kernels(f"{server.url}/{name}", layer="b", use_cache=False)
        np.testing.assert_array_equal(a.weights, w16.float().numpy())
        np.testing.assert_array_equal(b.weights, h16.float().numpy())


def test_hub_repo_without_weights(hub):
    text = _error("hf://someone/empty")
    assert "has none of model.safetensors" in text and "hf://someone/empty/path" in text
    assert "HTTP 404" in _error("hf://someone/empty/model.safetensors")


def test_a_server_that_never_answers_times_out(monkeypatch):
    import socket

    monkeypatch.setenv("KERNELSPEC_HTTP_TIMEOUT", "0.5")
    with socket.socket() as listening:  # connections complete, but nothing ever answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        port = listening.getsockname()[1]
        text = _error(f"http://127.0.0.1:{port}/w.pth")
    assert "no answer from 127.0.0.1 within 0.5 s" in text


def test_training_checkpoint_over_http(root, server):
    import torch

    state = _state(11)
    checkpoint = {
        "epoch": 7,
        "optimizer": {"state": {0: {"momentum_buffer": torch.randn(2, 2, 2, 2)}}},
        "state_dict": {f"module.{k}": v for k, v in state.items()},
    }
    torch.save(checkpoint, root / "ckpt.pt", _use_new_zipfile_serialization=False)
    bank = load_kernels(f"{server.url}/ckpt.pt")
    assert bank.layer == "module.features.0.weight"
    np.testing.assert_array_equal(bank.weights, state["features.0.weight"].numpy())
    assert server.bytes_sent < FILLER / 10
