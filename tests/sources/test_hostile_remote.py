"""Hostile HTTP servers on 127.0.0.1: each read ends quickly, in one line, with nothing kept.

Servers that trickle, never stop, ignore or misreport byte ranges, loop redirects, or
answer 500; URLs with credentials or 300-character file names (issue #20, items 2-4, 8, 9,
12). Limits are set low through their environment variables so that each test is short.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec import load_kernels
from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources import cache

KERNELS = np.random.default_rng(3).standard_normal((8, 3, 5, 5)).astype(np.float32)
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def _safetensors_bytes() -> bytes:
    from safetensors.numpy import save

    filler = np.zeros((64, 1024), np.float32)  # 256 KiB before the kernels
    return save({"aa.filler": filler, "conv.weight": KERNELS})


class _Server(http.server.ThreadingHTTPServer):
    """Answers every request with ``respond(handler)``; ``url`` is its base URL."""

    daemon_threads = True

    def __init__(self, respond: Callable[[http.server.BaseHTTPRequestHandler], None]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.body = False
                respond(self)

            def do_GET(self) -> None:
                self.body = True
                respond(self)

        super().__init__(("127.0.0.1", 0), Handler)
        self.stop = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hang up on purpose here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> _Server:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


def _headers(h, status: int, headers: dict[str, str]) -> None:
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    h.end_headers()


def _ranged(data: bytes, lie: Callable[[int, int], tuple[int, int, int]] | None = None):
    """A Range server for `data`; `lie(start, end)` -> (from, to, size) it really sends."""

    def respond(h) -> None:
        m = _RANGE.match(h.headers.get("Range") or "")
        if not m:
            _headers(h, 200, {"Content-Length": str(len(data)), "Accept-Ranges": "bytes"})
            if h.body:
                h.wfile.write(data)
            return
        start, end = int(m.group(1)), int(m.group(2)) + 1
        first, last, size = lie(start, end) if lie else (start, end, len(data))
        chunk = data[first:last]
        _headers(
            h,
            206,
            {
                "Content-Length": str(len(chunk)),
                "Content-Range": f"bytes {first}-{last - 1}/{size}",
            },
        )
        if h.body:
            h.wfile.write(chunk)

    return respond


def _downloads() -> list[Path]:
    folder = cache.cache_dir() / "downloads"
    return sorted(folder.iterdir()) if folder.exists() else []


def _error(source: str, **kw) -> str:
    with pytest.raises(KernelSpecError) as info:
        load_kernels(source, use_cache=False, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- item 4: Content-Range is checked ------------------------------------------------------


def test_a_range_answer_with_other_bytes_is_refused():
    data = _safetensors_bytes()
    # 206 for every request, but always the file's first bytes (honestly labelled).
    with _Server(_ranged(data, lie=lambda s, e: (0, e - s, len(data)))) as srv:
        message = _error(f"{srv.url}/big.safetensors")
    assert "asked for bytes" in message and "serves byte ranges wrongly" in message


def test_a_range_answer_with_another_size_is_refused():
    data = _safetensors_bytes()
    with _Server(_ranged(data, lie=lambda s, e: (s, e, len(data) + 1))) as srv:
        assert "serves byte ranges wrongly" in _error(f"{srv.url}/big.safetensors")


def test_honest_ranges_still_read_the_right_weights():
    data = _safetensors_bytes()
    with _Server(_ranged(data)) as srv:
        bank = load_kernels(f"{srv.url}/big.safetensors", use_cache=False)
    np.testing.assert_array_equal(bank.weights, KERNELS)
    assert bank.provenance["read"] == "range"


# --- item 2: full downloads are capped and kept only once they parsed -----------------------


def _endless(h) -> None:
    """Ignores Range, sends no Content-Length, and never stops (until the client leaves)."""
    h.protocol_version = "HTTP/1.0"
    _headers(h, 200, {"Content-Type": "application/octet-stream"})
    if not h.body:
        return
    block = b"\0" * 65536
    try:
        while not h.server.stop.is_set():
            h.wfile.write(block)
    except OSError:
        pass


def test_a_download_without_end_stops_at_the_cap_and_keeps_nothing(monkeypatch):
    monkeypatch.setenv("KERNELSPEC_MAX_DOWNLOAD", "1M")
    with _Server(_endless) as srv:
        message = _error(f"{srv.url}/w.pth")
    assert "KERNELSPEC_MAX_DOWNLOAD" in message and "1 MiB" in message
    assert _downloads() == []


def test_a_declared_oversize_download_is_refused_before_reading(monkeypatch):
    monkeypatch.setenv("KERNELSPEC_MAX_DOWNLOAD", "64K")
    data = b"\0" * 2**20
    sent: list[int] = []

    def respond(h) -> None:
        _headers(h, 200, {"Content-Length": str(len(data)), "Accept-Ranges": "none"})
        if h.body:
            sent.append(1)
            h.wfile.write(data)

    with _Server(respond) as srv:
        message = _error(f"{srv.url}/w.pth")
    assert "declares 1 MiB" in message and "64 KiB" in message
    assert _downloads() == []


def test_a_download_that_does_not_parse_is_not_kept():
    junk = b"<html>sign in</html>" + b" " * 5000

    def respond(h) -> None:
        _headers(h, 200, {"Content-Length": str(len(junk)), "Accept-Ranges": "none"})
        if h.body:
            h.wfile.write(junk)

    with _Server(respond) as srv:
        assert "not a checkpoint" in _error(f"{srv.url}/w.pth")
        assert _downloads() == []  # the next run asks again instead of reading the junk
        assert "not a checkpoint" in _error(f"{srv.url}/w.pth")


def test_a_download_that_parses_is_kept():
    data = _safetensors_bytes()

    def respond(h) -> None:
        _headers(h, 200, {"Content-Length": str(len(data)), "Accept-Ranges": "none"})
        if h.body:
            h.wfile.write(data)

    with _Server(respond) as srv:
        bank = load_kernels(f"{srv.url}/w.safetensors", use_cache=False)
    np.testing.assert_array_equal(bank.weights, KERNELS)
    kept = _downloads()
    assert len(kept) == 1 and kept[0].read_bytes() == data


# --- item 3: an overall deadline, and a stall timeout for downloads -------------------------


def _trickle_body(h) -> None:
    """Honest sizes and ranges, but the body comes one byte every 0.2 s."""
    m = _RANGE.match(h.headers.get("Range") or "")
    size = 10_000
    if not m:
        _headers(h, 200, {"Content-Length": str(size), "Accept-Ranges": "bytes"})
        return
    start, end = int(m.group(1)), int(m.group(2)) + 1
    span = {"Content-Length": str(end - start), "Content-Range": f"bytes {start}-{end - 1}/{size}"}
    _headers(h, 206, span)
    try:
        for _ in range(end - start):
            if h.server.stop.wait(0.2):
                return
            h.wfile.write(b"\0")
            h.wfile.flush()
    except OSError:
        pass


def _trickle_headers(h) -> None:
    """Headers one line every 0.2 s, without end."""
    try:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        while not h.server.stop.wait(0.2):
            h.wfile.write(b"X-Slow: 1\r\n")
            h.wfile.flush()
    except OSError:
        pass


@pytest.mark.parametrize("respond", [_trickle_body, _trickle_headers], ids=["body", "headers"])
def test_range_reads_end_at_the_deadline(monkeypatch, respond):
    monkeypatch.setenv("KERNELSPEC_HTTP_DEADLINE", "1.5")
    monkeypatch.setenv("KERNELSPEC_HTTP_TIMEOUT", "5")  # silence never lasts that long
    with _Server(respond) as srv:
        message = _error(f"{srv.url}/w.safetensors")
    assert "1.5 s deadline" in message and "KERNELSPEC_HTTP_DEADLINE" in message


def test_a_stalled_download_ends(monkeypatch):
    monkeypatch.setenv("KERNELSPEC_HTTP_TIMEOUT", "0.5")

    def respond(h) -> None:  # no Range support, 1 byte every 0.1 s (never silent 0.5 s)
        _headers(h, 200, {"Content-Length": "60", "Accept-Ranges": "none"})
        if not h.body:
            return
        try:
            for _ in range(60):
                if h.server.stop.wait(0.1):
                    return
                h.wfile.write(b"\0")
                h.wfile.flush()
        except OSError:
            pass

    with _Server(respond) as srv:
        message = _error(f"{srv.url}/w.pth")
    assert "stalled" in message and "KERNELSPEC_HTTP_TIMEOUT" in message
    assert _downloads() == []


# --- items 8, 9, 12: long names, credentials, redirect loops, retries -----------------------


def test_a_300_character_file_name(tmp_path):
    data = _safetensors_bytes()
    name = "w" * 300 + ".safetensors"
    with _Server(_ranged(data)) as srv:
        bank = load_kernels(f"{srv.url}/{name}", use_cache=False)
    np.testing.assert_array_equal(bank.weights, KERNELS)

    def whole(h) -> None:  # the same without Range support: a download, cached
        _headers(h, 200, {"Content-Length": str(len(data)), "Accept-Ranges": "none"})
        if h.body:
            h.wfile.write(data)

    with _Server(whole) as srv:
        load_kernels(f"{srv.url}/{name}", use_cache=False)
    (kept,) = _downloads()
    assert len(kept.name.encode()) < 128 and kept.name.endswith(".safetensors")


def test_credentials_in_urls_are_never_shown_or_stored(cli, tmp_path):
    data = _safetensors_bytes()

    def respond(h) -> None:
        if "missing" in h.path:
            _headers(h, 404, {"Content-Length": "0"})
        else:
            _ranged(data)(h)

    with _Server(respond) as srv:
        host = srv.url.removeprefix("http://")
        bad = f"http://alice:hunter2@{host}/missing.pth?token=s3cr3t&X-Amz-Signature=abc&v=1"
        code, out, err = cli("analyze", bad)
        assert code == 2 and len(err.strip().splitlines()) == 1
        good = f"http://alice:hunter2@{host}/w.safetensors?access_token=s3cr3t&sig=abc&v=1"
        code, out, err2 = cli("analyze", good, "--json", str(tmp_path / "o.json"))
        assert code == 0, err2
    stored = (tmp_path / "o.json").read_text()
    for secret in ("hunter2", "s3cr3t", "abc&", "alice"):
        assert secret not in err + out + err2 + stored
    assert "***@" in err and "token=***" in err and "v=1" in err
    document = json.loads(stored)
    assert "***" in json.dumps(document)


def test_a_redirect_loop_says_so(cli):
    def respond(h) -> None:
        _headers(h, 302, {"Location": h.path, "Content-Length": "0"})

    with _Server(respond) as srv:
        code, _, err = cli("analyze", f"{srv.url}/w.pth")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "redirect" in err


def _kernelspec(*argv: str, **env: str) -> subprocess.CompletedProcess:
    """The real command in a subprocess: its logging set-up is what users see."""
    return subprocess.run(
        [sys.executable, "-m", "napari_kernelspec.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env},
    )


def test_server_errors_are_one_line_after_retries(tmp_path):
    calls: list[float] = []

    def respond(h) -> None:
        calls.append(time.monotonic())
        _headers(h, 500, {"Content-Length": "0"})

    with _Server(respond) as srv:
        done = _kernelspec("analyze", f"{srv.url}/w.pth")
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "HTTP 500" in done.stderr
        assert len(calls) >= 2  # it did retry, quietly
        calls.clear()
        hub = _kernelspec(
            "analyze", "hf://owner/repo/w.safetensors",
            HF_ENDPOINT=srv.url, HF_HUB_CACHE=str(tmp_path / "hf"), HF_HUB_ETAG_TIMEOUT="2",
        )  # fmt: skip
    assert hub.returncode == 2 and len(hub.stderr.strip().splitlines()) == 1, hub.stderr
    assert "HTTP 500" in hub.stderr
