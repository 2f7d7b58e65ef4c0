"""Hostile outputs and options: device nodes, FIFOs, links, huge numbers, broken pipes.

Each test names the issue item it covers (#20). Everything is made inside the test's own
temporary folder (device nodes only as root); nothing under ``/dev`` is touched.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

BANK = np.random.default_rng(0).standard_normal((6, 3, 5, 5)).astype(np.float32)


@pytest.fixture
def bank(tmp_path) -> Path:
    path = tmp_path / "bank.npy"
    np.save(path, BANK)
    return path


def _one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = [x for x in err.strip().splitlines() if not x.startswith("kernelspec report:")]
    assert len(lines) == 1 and lines[0].startswith("kernelspec: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- item 1: outputs that are links, FIFOs, devices, folders, sockets ---------------------


def test_json_through_a_symlink_replaces_the_target_and_keeps_the_link(cli, bank, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, _, err = cli("analyze", str(bank), "--json", str(link))
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["n_filters"] == 6


def test_json_into_a_fifo_is_written_through(cli, bank, tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, err = cli("analyze", str(bank), "--json", str(fifo))
    reader.join(10)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a FIFO, not a regular file
    assert json.loads(received[0])["n_filters"] == 6


def test_report_json_into_a_fifo_is_written_through(tmp_path):
    from napari_kernelspec.base.atomic import write_together

    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_together([(tmp_path / "r.html", "<p>"), (fifo, "{}")])
    reader.join(10)
    assert received == [b"{}"] and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert (tmp_path / "r.html").read_text() == "<p>"


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_json_onto_a_character_device_is_written_through(cli, bank, tmp_path):
    null = tmp_path / "null.json"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the same device as /dev/null
    code, _, err = cli("analyze", str(bank), "--json", str(null))
    assert code == 0, err
    assert stat.S_ISCHR(null.lstat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_png_onto_a_full_device_is_one_line(cli, bank, tmp_path):
    full = tmp_path / "full.png"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # the same device as /dev/full
    code, _, err = cli(
        "explain", str(bank), "--method", "maximize", "--filters", "0", "--steps", "1",
        "--size", "16", "--out", str(tmp_path / "o.npz"), "--png", str(full),
    )  # fmt: skip
    assert code != 0 and "Traceback" not in err
    assert stat.S_ISCHR(full.lstat().st_mode)


def test_output_onto_a_folder_or_socket_is_refused(cli, bank, tmp_path):
    folder = tmp_path / "folder.json"
    folder.mkdir()
    line = _one_error_line(*cli("analyze", str(bank), "--json", str(folder))[::2])
    assert "folder" in line
    sock_path = tmp_path / "s.json"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
        line = _one_error_line(*cli("analyze", str(bank), "--json", str(sock_path))[::2])
        assert "socket" in line
        assert stat.S_ISSOCK(sock_path.lstat().st_mode)
    finally:
        sock.close()
    assert folder.is_dir() and not list(folder.iterdir())


# --- item 11: a reader that goes away -------------------------------------------------------


def test_a_closed_pipe_ends_quietly(monkeypatch, capfd):
    from napari_kernelspec.cli import main

    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already exited
    with open(write_end, "w", buffering=1 << 16) as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        code = main(["models"])
        monkeypatch.undo()
        assert code == 141  # 128 + SIGPIPE, as a shell reports a reader gone
    assert "Traceback" not in capfd.readouterr().err


# --- item 5: outputs are bounded before they are allocated ---------------------------------


@pytest.fixture
def grey_png(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "grey.png"
    Image.fromarray(np.full((300, 200), 128, np.uint8)).save(path)
    return path


def test_maps_beyond_the_element_limit_are_one_line(cli, bank, grey_png, tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELSPEC_MAX_OUTPUT_ELEMENTS", "100000")  # 6 x 296 x 196 = 348,096
    out = tmp_path / "m.npz"
    line = _one_error_line(*cli("maps", str(bank), str(grey_png), "--out", str(out))[::2])
    assert "KERNELSPEC_MAX_OUTPUT_ELEMENTS" in line and "348,096" in line
    assert not out.exists()
    monkeypatch.setenv("KERNELSPEC_MAX_OUTPUT_ELEMENTS", "400000")
    code, _, err = cli("maps", str(bank), str(grey_png), "--out", str(out))
    assert code == 0, err
    assert np.load(out)["maps"].shape == (6, 296, 196)


def test_the_default_limit_refuses_terabytes_of_padding(cli, bank, grey_png, tmp_path):
    from napari_kernelspec.imaging import feature_maps

    with pytest.raises(Exception, match="KERNELSPEC_MAX_OUTPUT_ELEMENTS") as info:
        feature_maps(str(bank), np.zeros((100, 100), np.uint8), padding=100_000)
    assert type(info.value).__name__ == "KernelSpecError"


def test_an_image_beyond_the_limit_is_refused_before_decoding(cli, bank, tmp_path, monkeypatch):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(big)  # 9 million pixels, a few KB of PNG
    monkeypatch.setenv("KERNELSPEC_MAX_OUTPUT_ELEMENTS", "1000000")
    for argv in (
        ["maps", str(bank), str(big), "--out", str(tmp_path / "m.npz")],
        ["patches", str(bank), str(big)],
        ["report", "--models", str(bank), "--image", str(big), "--out", str(tmp_path / "r.html")],
    ):
        line = _one_error_line(*cli(*argv)[::2])
        assert "big.png" in line and "KERNELSPEC_MAX_OUTPUT_ELEMENTS" in line
    assert not (tmp_path / "r.html").exists()


def test_a_bad_limit_value_is_one_line(cli, bank, grey_png, tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELSPEC_MAX_OUTPUT_ELEMENTS", "lots")
    line = _one_error_line(
        *cli("maps", str(bank), str(grey_png), "--out", str(tmp_path / "m.npz"))[::2]
    )
    assert "KERNELSPEC_MAX_OUTPUT_ELEMENTS" in line


# --- item 7: whole numbers are bounded before anything is allocated ------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", "{bank}", "--filters", "0-2000000000", "--out", "{tmp}/o.npz"],
        ["explain", "{bank}", "--seed", "99999999999999999999", "--out", "{tmp}/o.npz"],
        ["explain", "{bank}", "--steps", "99999999999999999999", "--out", "{tmp}/o.npz"],
        ["patches", "{bank}", "{png}", "--k", "1000000000"],
        ["maps", "{bank}", "{png}", "--stride", "99999999999999999999", "--out", "{tmp}/o.npz"],
        ["maps", "{bank}", "{png}", "--padding", "100000", "--out", "{tmp}/o.npz"],
    ],
    ids=["filters", "seed", "steps", "k", "stride", "padding"],
)
def test_huge_whole_numbers_are_one_line(cli, bank, grey_png, tmp_path, argv):
    argv = [a.format(bank=bank, png=grey_png, tmp=tmp_path) for a in argv]
    _one_error_line(*cli(*argv)[::2])
    assert not (tmp_path / "o.npz").exists()


def test_a_filter_range_is_checked_against_the_filter_count_first(bank):
    import tracemalloc

    from napari_kernelspec.base.errors import KernelSpecError
    from napari_kernelspec.imaging.explain.model import parse_filters

    tracemalloc.start()
    try:
        with pytest.raises(KernelSpecError, match="filter index 6 is out of range"):
            parse_filters("0-2000000000", 6, "conv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    assert parse_filters("1-3,0", 6) == [1, 2, 3, 0]


def test_a_missing_layer_reads_well(cli, bank, tmp_path):
    line = _one_error_line(
        *cli("explain", str(bank), "--layer", "nope.conv", "--out", str(tmp_path / "o.npz"))[::2]
    )
    assert "'nope.conv' is not a layer of bank.npy" in line


# --- item 10: one bad model does not end the report -----------------------------------------


def test_a_bad_model_is_a_note_and_the_others_are_reported(cli, bank, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY junk")
    out = tmp_path / "r.html"
    code, _, err = cli("report", "--models", f"{bank},{bad}", "--out", str(out))
    assert code == 1, err
    assert "bad.npy was left out of the report" in err and "Traceback" not in err
    html = out.read_text()
    assert 'id="failures"' in html and "bad.npy" in html
    document = json.loads(out.with_suffix(".json").read_text())
    assert [r["display_name"] for r in document["results"]] == ["bank.npy"]
    assert document["failures"][0]["model"] == str(bad)


def test_an_unknown_model_is_refused_before_any_work(cli, bank, tmp_path):
    out = tmp_path / "r.html"
    line = _one_error_line(
        *cli("report", "--models", f"{bank},no_such_model_xyz", "--out", str(out))[::2]
    )
    assert "no_such_model_xyz" in line and not out.exists()


def test_only_bad_models_write_nothing(cli, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY junk")
    out = tmp_path / "r.html"
    line = _one_error_line(*cli("report", "--models", str(bad), "--out", str(out))[::2])
    assert "bad.npy" in line and not out.exists()


def test_report_history_alone_draws_no_empty_model_bar(cli, tmp_path):
    """Issue #20 item 12: no "0/0 ... 0model" bar when the models are the history's steps."""
    for t in range(3):
        np.save(tmp_path / f"epoch_{t}.npy", BANK * (1 + 0.25 * t))
    out = str(tmp_path / "r.html")
    code, _, err = cli("report", "--history", str(tmp_path), "--threshold", "0.9", "--out", out)
    assert code == 0, err
    assert "0model" not in err and "kernelspec report:" not in err


def test_explain_png_caption_is_not_cut_off(cli, tmp_path):
    """Issue #20 item 12: a long model name widens the mosaic instead of being cut."""
    from PIL import Image

    long_bank = tmp_path / ("filters_of_a_model_with_a_rather_long_name_" * 3 + ".npy")
    np.save(long_bank, BANK)
    png = tmp_path / "m.png"
    code, _, err = cli(
        "explain", str(long_bank), "--filters", "0", "--steps", "1", "--size", "16",
        "--out", str(tmp_path / "o.npz"), "--png", str(png),
    )  # fmt: skip
    assert code == 0, err
    pixels = np.asarray(Image.open(png).convert("L"))
    caption = pixels[:24]
    assert (caption < 128).any()  # the caption is there
    assert (caption[:, -4:] == 255).all()  # and ends before the right edge


def test_explain_outputs_are_bounded_too(cli, bank, grey_png, tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELSPEC_MAX_OUTPUT_ELEMENTS", "100000")
    out = tmp_path / "o.npz"
    line = _one_error_line(
        *cli(
            "explain", str(bank), "--method", "gradient", "--image", str(grey_png),
            "--filters", "0-5", "--out", str(out),
        )[::2]
    )  # fmt: skip
    assert "KERNELSPEC_MAX_OUTPUT_ELEMENTS" in line and not out.exists()
