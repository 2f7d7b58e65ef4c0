"""A static HTTP server on 127.0.0.1 for the remote-read tests and benchmark.

It serves the files under a folder, with or without Range support, counts the requests and
the body bytes it sends, and answers the few Hugging Face Hub routes huggingface_hub uses
(``/{owner}/{repo}/resolve/{revision}/{path}`` with ``X-Repo-Commit`` and ``ETag``).
Python's own ``http.server`` has no Range support, hence this small subclass.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: RangeServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add about 40 ms to every small response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _file(self) -> tuple[Path | None, dict[str, str]]:
        path = unquote(urlparse(self.path).path)
        hub = _RESOLVE.match(path)
        extra: dict[str, str] = {}
        if hub:
            repo, _revision, rel = hub.groups()
            path = f"/{repo}/{rel}"
            extra["X-Repo-Commit"] = COMMIT
        target = (self.server.root / path.lstrip("/")).resolve()
        if self.server.root not in target.parents or not target.is_file():
            return None, extra
        extra["ETag"] = '"' + hashlib.md5(str(target).encode()).hexdigest() + '"'
        return target, extra

    def _serve(self, body: bool) -> None:
        srv = self.server
        with srv.lock:
            srv.requests += 1
            srv.log.append((self.command, self.path, self.headers.get("Range")))
        target, extra = self._file()
        name = target.name if target else ""
        if target is None or name in srv.forbidden:
            status = 403 if name in srv.forbidden else 404
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = target.stat().st_size
        start, end, status = 0, size, 200
        wanted = self.headers.get("Range")
        if srv.ranges and wanted and (m := _RANGE.match(wanted.strip())):
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            status = 206
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Content-Type", "application/octet-stream")
        if srv.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not body:
            return
        send = end - start
        if name in srv.cut_short:  # declare the full length, then close early
            send = send // 2
        with open(target, "rb") as fh:
            fh.seek(start)
            left = send
            try:
                while left > 0:
                    chunk = fh.read(min(left, 1 << 16))
                    # Counted before it is written: a client may have it all (and check the
                    # count) before this thread runs again.
                    with srv.lock:
                        srv.bytes_sent += len(chunk)
                    try:
                        self.wfile.write(chunk)
                    except ConnectionError:
                        with srv.lock:
                            srv.bytes_sent -= len(chunk)
                        raise
                    left -= len(chunk)
            except ConnectionError:
                pass
        if send < end - start:
            self.close_connection = True


class RangeServer(http.server.ThreadingHTTPServer):
    """Serves `root` on 127.0.0.1 (a free port); ``url`` is its base URL.

    Attributes
    ----------
    ranges : bool
        Honour Range requests (False: always the whole file, status 200).
    forbidden, cut_short : set of str
        File names answered 403, and answered with half their declared length.
    requests, bytes_sent : int
        Counters since the last `reset`.
    """

    daemon_threads = True

    def __init__(self, root: Path, ranges: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = Path(root).resolve()
        self.ranges = ranges
        self.forbidden: set[str] = set()
        self.cut_short: set[str] = set()
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, str | None]] = []
        self.requests = 0
        self.bytes_sent = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients may hang up early
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reset(self) -> None:
        with self.lock:
            self.requests, self.bytes_sent, self.log = 0, 0, []

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
