"""Atomic writes: one file, several files replaced together, and orphaned temporaries."""

from __future__ import annotations

import fcntl
import os
import signal

import pytest

from napari_kernelspec.base.atomic import (
    Interrupted,
    atomic_write,
    remove_stale_temporaries,
    write_together,
)


def test_write_together_writes_everything_and_leaves_no_temporary(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"old")
    write_together([(tmp_path / "a.txt", "é\n"), (tmp_path / "b.bin", b"\x00\x01")])
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "é\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_staging_touches_no_target(monkeypatch, tmp_path):
    for name in "abc":
        (tmp_path / name).write_text("old")
    real, calls = os.write, []

    def full_disk(fd, data):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_together([(tmp_path / n, "new") for n in "abc"])
    monkeypatch.undo()
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == dict.fromkeys("abc", "old")


def test_ctrl_c_during_the_renames_waits_for_the_last_one(monkeypatch, tmp_path):
    real, seen = os.replace, []

    def replace(src, dst):
        if not seen:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C right after the first rename starts
        seen.append(dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Interrupted, match=r"\(all of them\)$"):
        write_together([(tmp_path / n, "new") for n in "abc"])
    monkeypatch.undo()
    assert len(seen) == 3
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == dict.fromkeys("abc", "new")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_only_orphaned_temporaries_of_that_path_are_removed(tmp_path):
    target = tmp_path / "r.html"
    orphan = tmp_path / ".r.html.a1b2c3d4.tmp"
    live = tmp_path / ".r.html.e5f6g7h8.tmp"
    kept = [tmp_path / ".r.htm.a1b2c3d4.tmp", tmp_path / ".r.html.a1b2c3d4.tmp.bak"]
    for path in [orphan, live, *kept]:
        path.write_text("x")
    with open(live) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert remove_stale_temporaries(target) == [orphan]
    assert live.exists() and all(p.exists() for p in kept)
    assert remove_stale_temporaries(tmp_path / "missing" / "r.html") == []


def test_atomic_write_holds_its_temporary_against_cleaners(tmp_path):
    target = tmp_path / "r.json"
    with atomic_write(target, "w") as fh:
        fh.write("{}")
        (temporary,) = [p for p in tmp_path.iterdir() if p.name.startswith(".r.json.")]
        assert remove_stale_temporaries(target) == []  # a live writer's file stays
        assert temporary.exists()
    assert target.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["r.json"]
