"""The extracted-kernel cache: location, round trip, atomic writes, damaged files."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.sources import cache
from napari_kernelspec.sources.loading import load_kernels


@pytest.fixture
def kc_dir(tmp_path, monkeypatch):
    """A private kernel cache folder (and TORCH_HOME)."""
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "kc"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "kc"


KEY = cache.make_key(model="m", layer="conv.1", weights="random", seed=0)
W = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3) + 1


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("KERNELSPEC_CACHE")
    assert cache.cache_dir() == tmp_path / "xdg" / "napari-kernelspec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "napari-kernelspec"


def test_round_trip(kc_dir):
    assert cache.read_entry(KEY) is None
    path = cache.write_entry(KEY, W, {"source": "random", "provenance": {"seed": 0}})
    assert path is not None and path.parent == kc_dir
    assert path.name.startswith("m-conv.1-random-")
    weights, meta = cache.read_entry(KEY)
    np.testing.assert_array_equal(weights, W)
    assert meta == {"source": "random", "provenance": {"seed": 0}}
    # another key never reads this entry
    other = cache.make_key(model="m", layer="conv.1", weights="random", seed=1)
    assert cache.entry_path(other) != path
    assert cache.read_entry(other) is None


@pytest.mark.parametrize(
    "damage",
    [b"", b"garbage", "truncate", "foreign"],
)
def test_damaged_entry_ignored(kc_dir, damage):
    path = cache.write_entry(KEY, W, {"source": "random"})
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "foreign":  # a valid file stored under this name for another key
        np.savez(path, weights=W, key=np.array('{"x": 1}'), meta=np.array("{}"))
    else:
        path.write_bytes(damage)
    assert cache.read_entry(KEY) is None


def _failing_savez(real):
    def savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half of a file")
        raise OSError(28, "No space left on device")

    return savez


def test_interrupted_write_leaves_no_file(kc_dir, monkeypatch):
    real = np.savez
    monkeypatch.setattr(np, "savez", _failing_savez(real))
    assert cache.write_entry(KEY, W, {"source": "random"}) is None
    assert not kc_dir.exists() or not list(kc_dir.iterdir())

    monkeypatch.setattr(np, "savez", real)
    path = cache.write_entry(KEY, W, {"source": "random"})
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez", _failing_savez(real))
    assert cache.write_entry(KEY, W * 2, {"source": "random"}) is None
    assert path.read_bytes() == before  # the old entry is intact
    assert [p.name for p in kc_dir.iterdir()] == [path.name]  # no temporary left over


def test_interrupted_write_through_load_kernels(kc_dir, monkeypatch):
    real = np.savez
    calls = []

    def savez(file, *args, **kwargs):
        calls.append(1)
        file.write(b"partial")
        raise KeyboardInterrupt  # the process is interrupted mid-write

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(KeyboardInterrupt):
        load_kernels("lenet5", weights="random")
    assert calls
    assert not kc_dir.exists() or not list(kc_dir.iterdir())
    monkeypatch.setattr(np, "savez", real)
    bank = load_kernels("lenet5", weights="random")
    assert not bank.provenance["cached"]
    assert len(list(kc_dir.glob("lenet5-first-conv-random-*.npz"))) == 1


def test_corrupt_cache_file_is_rewritten(kc_dir):
    first = load_kernels("mobilenet_v2", weights="random")
    (entry,) = kc_dir.glob("mobilenet_v2-*.npz")
    entry.write_bytes(entry.read_bytes()[:50])  # half-written
    again = load_kernels("mobilenet_v2", weights="random")
    assert again.provenance["cached"] is False
    np.testing.assert_array_equal(first.weights, again.weights)
    third = load_kernels("mobilenet_v2", weights="random")
    assert third.provenance["cached"] is True
    np.testing.assert_array_equal(first.weights, third.weights)


def test_unwritable_cache_does_not_fail(tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.setenv("KERNELSPEC_CACHE", str(blocker / "sub"))
    bank = load_kernels("lenet5", weights="random")
    assert bank.weights.shape == (6, 1, 5, 5)


def test_cached_bank_is_identical(kc_dir):
    a = load_kernels("googlenet", weights="random")
    b = load_kernels("googlenet", weights="random")
    assert (a.provenance["cached"], b.provenance["cached"]) == (False, True)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.layer == b.layer and a.stride == b.stride and a.padding == b.padding
    assert a.display_name == b.display_name == "GoogLeNet"
    assert not b.weights.flags.writeable
