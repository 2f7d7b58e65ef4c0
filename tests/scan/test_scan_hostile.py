"""`scan` arguments that would hang or read without end (issue #20, item 6)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.scan.expand import UNREADABLE, expand_sources


def _tree(tmp_path: Path) -> Path:
    top = tmp_path / "runs"
    for rel in ("a/w1.npy", "a/b/w2.npy", "c/w10.npy", "c/notes.txt", ".hidden/w.npy"):
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.ones((2, 1, 3, 3), np.float32)) if rel.endswith(".npy") else (
            path.write_text("x")
        )
    return top


def _expand_in_time(args: list[str], seconds: float = 20) -> list[str]:
    """expand_sources in a thread: a hang fails the test instead of stopping the suite."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(expand_sources(args)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, "expand_sources did not finish (a symbolic-link loop followed?)"
    return result[0]


def test_a_recursive_glob_does_not_follow_link_loops(tmp_path):
    top = _tree(tmp_path)
    (top / "a" / "b" / "up").symlink_to(top, target_is_directory=True)
    (top / "c" / "self").symlink_to(top / "c", target_is_directory=True)
    (top / "a" / "side").symlink_to(top / "a", target_is_directory=True)
    found = _expand_in_time([f"{top}/**/*.npy"])
    assert found == [str(top / "a/b/w2.npy"), str(top / "a/w1.npy"), str(top / "c/w10.npy")]
    assert _expand_in_time([str(top)]) == found  # a folder: the same files


def test_a_relative_recursive_glob(tmp_path, monkeypatch):
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert expand_sources(["runs/**/w1*.npy", "**/w10.npy"]) == ["runs/a/w1.npy", "runs/c/w10.npy"]


def test_a_list_file_that_is_a_device_or_too_large_is_refused(tmp_path, monkeypatch):
    fifo = tmp_path / "list.fifo"
    os.mkfifo(fifo)
    with pytest.raises(KernelSpecError, match="not a regular file"):
        expand_sources([f"@{fifo}"])  # opening a FIFO with no writer would block: never read
    big = tmp_path / "big.txt"
    big.write_text("alexnet\n" * 200)
    monkeypatch.setenv("KERNELSPEC_MAX_LIST_BYTES", "1K")
    with pytest.raises(KernelSpecError, match="KERNELSPEC_MAX_LIST_BYTES"):
        expand_sources([f"@{big}"])
    monkeypatch.setenv("KERNELSPEC_MAX_LIST_BYTES", "2K")
    assert expand_sources([f"@{big}"]) == ["alexnet"]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_scan_at_dev_zero_is_one_line(cli):
    code, _, err = cli("scan", "@/dev/zero", "--out", "unused")
    assert code == 2 and "not a regular file" in err and len(err.strip().splitlines()) == 1


def test_an_unreadable_folder_is_reported_not_skipped(cli, tmp_path, monkeypatch):
    top = _tree(tmp_path)
    locked = top / "c"
    real_scandir = os.scandir

    def scandir(path=".", *args):  # as for a folder without read permission (root reads all)
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path, *args)

    monkeypatch.setattr(os, "scandir", scandir)
    found = expand_sources([str(top)])
    assert found == [
        str(top / "a/b/w2.npy"),
        str(top / "a/w1.npy"),
        f"{UNREADABLE}{locked} (Permission denied)",
    ]
    from napari_kernelspec.scan.worker import ScanParameters, analyse_source

    row = analyse_source(found[-1], ScanParameters()).model  # the scan's row for it
    assert "cannot read" not in str(analyse_source(found[0], ScanParameters()).model["error"])
    assert "cannot read the folder" in row["error"] and str(locked) in row["error"]


def test_credentials_never_reach_the_scan_tables():
    """Issue #20 item 9: the Parquet rows of a URL source hold it redacted."""
    from napari_kernelspec.scan.worker import ScanParameters, analyse_source

    url = "http://bob:hunter2@127.0.0.1:9/w.pth?token=s3cr3t&v=1"  # port 9: refused at once
    result = analyse_source(url, ScanParameters())
    row = result.model
    assert row["error"] and row["source"] == "http://***@127.0.0.1:9/w.pth?token=***&v=1"
    assert "hunter2" not in repr(row) and "s3cr3t" not in repr(row)


def test_the_error_of_an_analysed_source_is_null_and_documented(capsys):
    """Issue #20 item 12: the Parquet `error` of an analysed source is null (not ""), and
    the command's help says so."""
    from napari_kernelspec.cli import main
    from napari_kernelspec.scan.worker import ScanParameters, analyse_source

    assert analyse_source("lenet5", ScanParameters(weights="random")).model["error"] is None
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    assert "(null for an analysed source" in " ".join(capsys.readouterr().out.split())
