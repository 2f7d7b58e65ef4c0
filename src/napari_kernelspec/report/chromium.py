"""Drive headless Chromium over the DevTools protocol with the standard library only.

Used by the report's browser tests and by ``scripts/report_screenshot.py``: open a page,
collect console messages, exceptions, failed or external requests and JavaScript dialogs,
evaluate expressions and take screenshots. Needs a ``chromium`` (or Chrome) executable;
`find_chromium` returns None when there is none. Not used when writing reports.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["BrowserError", "HeadlessChromium", "PageLog", "find_chromium"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-allow-origins=*",
)


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer."""


def find_chromium() -> str | None:
    """Path of a Chromium / Chrome executable: ``$KERNELSPEC_CHROMIUM`` or the first on PATH."""
    explicit = os.environ.get("KERNELSPEC_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _WebSocket:
    """Minimal RFC 6455 client: masked text frames out, (fragmented) frames in."""

    def __init__(self, host: str, port: int, path: str, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BrowserError("DevTools closed the connection during the handshake")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise BrowserError(f"DevTools refused the websocket: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise BrowserError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = secrets.token_bytes(4)
        body = (
            bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if n < 4096
            else _mask(payload, mask)
        )
        self.sock.sendall(header + mask + body)

    def recv(self) -> str:
        parts: list[bytes] = []
        while True:
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if second & 0x80 else None
            data = self._read(length)
            if mask:
                data = _mask(data, mask)
            if opcode == 0x8:
                raise BrowserError("DevTools closed the websocket")
            if opcode == 0x9:  # ping -> pong
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(data)) + b"\0" * 4 + data)
                continue
            if opcode in (0x1, 0x2, 0x0):
                parts.append(data)
                if first & 0x80:
                    return b"".join(parts).decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _mask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class PageLog:
    """What a page did while loading: console messages, exceptions, requests, dialogs."""

    def __init__(self) -> None:
        self.console: list[tuple[str, str]] = []  # (level, text)
        self.exceptions: list[str] = []
        self.requests: list[str] = []  # every URL the page asked for
        self.failed: list[str] = []  # URLs that failed to load
        self.dialogs: list[str] = []  # alert / confirm / prompt messages

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed requests, as text."""
        return (
            [text for level, text in self.console if level == "error"]
            + self.exceptions
            + [f"failed to load {url}" for url in self.failed]
        )


class HeadlessChromium:
    """A headless Chromium with one page, driven over the DevTools protocol.

    Use as a context manager; the browser process and its profile folder are removed on exit.

    Parameters
    ----------
    executable : str, optional
        Browser to start; default `find_chromium`.
    width, height : int
        Viewport size in CSS pixels.
    timeout : float
        Seconds to wait for start-up and for each command.
    """

    def __init__(
        self,
        executable: str | None = None,
        *,
        width: int = 1280,
        height: int = 1600,
        timeout: float = 30.0,
    ) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError("no chromium executable found; install chromium")
        self.width, self.height, self.timeout = width, height, timeout
        self._profile = tempfile.mkdtemp(prefix="kernelspec-chromium-")
        self._next_id = 0
        self.log = PageLog()
        self._events: list[dict[str, Any]] = []
        self._urls: dict[str, str] = {}
        self._proc = subprocess.Popen(
            [
                self.executable,
                *_FLAGS,
                "--remote-debugging-port=0",
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._ws = self._connect()
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
            self.set_viewport(width, height)
        except BaseException:
            self.close()
            raise

    # --- process and connection ----------------------------------------------------------

    def _connect(self) -> _WebSocket:
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self._proc.poll() is not None:
                raise BrowserError(f"chromium exited at start-up (status {self._proc.returncode})")
            if time.monotonic() > deadline:
                raise BrowserError("chromium did not open its DevTools port in time")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
            try:
                conn.request("GET", "/json/list")
                targets = json.loads(conn.getresponse().read())
            finally:
                conn.close()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise BrowserError("chromium opened no page")
            time.sleep(0.05)
        path = "/" + pages[0]["webSocketDebuggerUrl"].split("/", 3)[3]
        return _WebSocket("127.0.0.1", port, path, self.timeout)

    def close(self) -> None:
        """Stop the browser and remove its temporary profile."""
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- protocol ------------------------------------------------------------------------

    def _record(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            level = {"warning": "warning", "error": "error", "assert": "error"}.get(
                params["type"], "info"
            )
            self.log.console.append((level, text))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.log.exceptions.append(str(text))
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.log.console.append((entry.get("level", "info"), entry.get("text", "")))
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])
            self._urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed":
            url = self._urls.get(params.get("requestId", ""), "?")
            self.log.failed.append(f"{url} ({params.get('errorText', '')})")
        elif method == "Page.javascriptDialogOpening":
            self.log.dialogs.append(params.get("message", ""))
            self._send("Page.handleJavaScriptDialog", {"accept": False})
        self._events.append(event)

    def _send(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params or {}}))
        return self._next_id

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one DevTools command and return its result (events are recorded meanwhile)."""
        wanted = self._send(method, params)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv())
            if "method" in message:
                self._record(message)
            elif message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                return message.get("result", {})
        raise BrowserError(f"{method} got no answer in {self.timeout} s")

    def _wait_event(self, name: str) -> dict[str, Any]:
        for event in self._events:
            if event.get("method") == name:
                self._events.remove(event)
                return event
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv())
            if "method" in message:
                self._record(message)
                if message["method"] == name:
                    self._events.remove(message)
                    return message
        raise BrowserError(f"no {name} in {self.timeout} s")

    # --- page ----------------------------------------------------------------------------

    def set_viewport(self, width: int, height: int) -> None:
        """Resize the viewport (CSS pixels, device scale 1)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def open(self, target: str | os.PathLike[str], *, javascript: bool = True) -> PageLog:
        """Load a URL or local file and wait for its load event; returns a fresh `PageLog`."""
        url = str(target)
        if "://" not in url and not url.startswith(("about:", "data:")):
            url = Path(url).resolve().as_uri()
        self.call("Emulation.setScriptExecutionDisabled", {"value": not javascript})
        self.log = PageLog()
        self._events.clear()
        self.call("Page.navigate", {"url": url})
        self._wait_event("Page.loadEventFired")
        self.evaluate("0")  # flush events queued during the load
        return self.log

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (JSON-serialisable results)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluating {expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(
        self, *, full_page: bool = False, clip: tuple[int, int, int, int] | None = None
    ) -> bytes:
        """PNG bytes of the viewport, the whole page, or `clip` = (x, y, width, height)."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page and clip is None:
            metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
            clip = (0, 0, int(metrics["width"]), int(metrics["height"]))
        if clip is not None:
            x, y, w, h = clip
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
            params["captureBeyondViewport"] = True
        return base64.b64decode(self.call("Page.captureScreenshot", params)["data"])
