"""HTTP transport rules for remote checkpoints: deadlines, size caps, checked ranges.

What `remote` asks of a server, and how little it trusts the answers:

- :func:`deadline`: all Range requests for one source share one overall deadline
  (``KERNELSPEC_HTTP_DEADLINE``, default 120 s), so a server that trickles its headers or
  its body one byte at a time cannot hold a read for longer; silence alone is bounded by
  ``KERNELSPEC_HTTP_TIMEOUT`` as before.
- :func:`open_ranged` / :func:`fetch_range`: a HEAD for the size, then Range GETs through
  fsspec's aiohttp session; every answer must be a 206 whose ``Content-Range`` names exactly
  the bytes asked for and the size the HEAD gave, and whose body is no longer than that.
- :func:`download`: the whole file, for servers without Range support: at most
  ``KERNELSPEC_MAX_DOWNLOAD`` bytes (default 2 GiB; refused up front when the server
  declares more), failing when it stalls (less than 64 KiB in ``KERNELSPEC_HTTP_TIMEOUT``
  seconds) but not when it is merely slow, so a slow honest download completes.
- :func:`kept_if_parsed`: a download stays in the cache only once it parsed; until then it
  is a temporary file next to its final name, removed on failure.
- :func:`cache_name`: the cache file name of a URL, short whatever the URL's length.

URLs in messages are redacted (`base.text.redact`). aiohttp and fsspec are imported inside
the functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from ..base.errors import KernelSpecError
from ..base.limits import http_deadline, http_timeout, max_download, size_text
from ..base.text import redact

__all__ = [
    "STALL_BYTES",
    "DeadlineExceeded",
    "RangeMismatch",
    "TooSlow",
    "cache_name",
    "check_content_range",
    "deadline",
    "download",
    "fetch_range",
    "kept_if_parsed",
    "open_ranged",
    "remaining",
]

#: A full download stalls when fewer bytes than this arrive in one ``KERNELSPEC_HTTP_TIMEOUT``.
STALL_BYTES = 64 * 1024
#: Longest file-name part (bytes, UTF-8) of a cache file named after a URL.
_MAX_NAME_BYTES = 96

#: (end on the monotonic clock, length in seconds) of the current source's deadline.
_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "kernelspec_http_deadline", default=None
)


class TooSlow(KernelSpecError):
    """The server is too slow (deadline passed, download stalled): it counts as unavailable."""


class DeadlineExceeded(TooSlow):
    """A source's Range requests took longer than its overall deadline."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(
            f"cannot read {redact(url)}: no complete answer within the {seconds:g} s deadline "
            "for one source (the server is too slow); try again later or raise "
            "KERNELSPEC_HTTP_DEADLINE"
        )


class RangeMismatch(KernelSpecError):
    """A Range answer that is not the bytes asked for: its data cannot be trusted."""


# --- the deadline --------------------------------------------------------------------------


@contextlib.contextmanager
def deadline() -> Iterator[None]:
    """Start one source's deadline (``KERNELSPEC_HTTP_DEADLINE``); nested calls share it."""
    if _DEADLINE.get() is not None:
        yield
        return
    seconds = http_deadline()
    token = _DEADLINE.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining(url: str) -> float | None:
    """Seconds left of the current deadline (None: no deadline running).

    Raises
    ------
    DeadlineExceeded
        The deadline has passed.
    """
    current = _DEADLINE.get()
    if current is None:
        return None
    left = current[0] - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(url, current[1])
    return left


def _expired(url: str, exc: BaseException) -> BaseException:
    """`exc`, or `DeadlineExceeded` if the deadline is what ended the request."""
    current = _DEADLINE.get()
    if current is not None and time.monotonic() >= current[0] - 0.05:
        return DeadlineExceeded(url, current[1])
    return exc


def _timeouts(left: float | None) -> Any:
    import aiohttp

    silence = http_timeout()
    return aiohttp.ClientTimeout(total=left, sock_connect=silence, sock_read=silence)


def _run(loop: Any, url: str, coro_fn: Any, *args: Any, left: float | None) -> Any:
    """Run ``coro_fn(*args)`` on fsspec's loop, cancelled when the deadline passes."""
    from fsspec.asyn import sync

    try:
        return sync(loop, coro_fn, *args, timeout=None if left is None else left + 0.5)
    except Exception as exc:
        if isinstance(exc, asyncio.TimeoutError) or "Timeout" in type(exc).__name__:
            expired = _expired(url, exc)
            if expired is not exc:
                raise expired from exc
        raise


# --- Range reads ---------------------------------------------------------------------------


def open_ranged(fs: Any, url: str, block_size: int) -> Any:
    """fsspec's ``HTTPFile`` for `url` after a HEAD under the deadline; None without Range.

    None when the server gives no size or says ``Accept-Ranges: none``.
    """
    info = _run(fs.loop, url, fs._info, url, left=remaining(url))
    size = info.get("size")
    if not size or info.get("partial") is False:
        return None
    return fs.open(url, "rb", block_size=block_size, cache_type="none", size=size)


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)


def check_content_range(header: str | None, start: int, end: int, size: int, url: str) -> None:
    """Refuse a 206 answer whose ``Content-Range`` is not ``bytes start-(end-1)/size``.

    Raises
    ------
    RangeMismatch
        One line with what was asked and what came.
    """
    m = _CONTENT_RANGE.fullmatch(header or "")
    if (
        m is None
        or int(m.group(1)) != start
        or int(m.group(2)) != end - 1
        or (m.group(3) != "*" and int(m.group(3)) != size)
    ):
        got = f"Content-Range {header!r}" if header else "no Content-Range"
        raise RangeMismatch(
            f"cannot read {redact(url)}: asked for bytes {start}-{end - 1} of {size}, the "
            f"server answered with {got}; it serves byte ranges wrongly, so its data cannot "
            "be trusted"
        )


async def _get_range(file: Any, start: int, end: int, size: int, left: float | None) -> bytes:
    headers = {"Range": f"bytes={start}-{end - 1}"}
    async with file.session.get(
        file.fs.encode_url(file.url), headers=headers, timeout=_timeouts(left)
    ) as response:
        response.raise_for_status()
        if response.status != 206:  # `remote` turns this message into a full download
            raise ValueError("the server ignores range requests")
        check_content_range(response.headers.get("Content-Range"), start, end, size, file.url)
        want = end - start
        declared = response.content_length
        chunks, got = [], 0
        async for chunk in response.content.iter_any():
            got += len(chunk)
            if got > want or (declared is not None and declared > want):
                raise RangeMismatch(
                    f"cannot read {redact(file.url)}: asked for {want} bytes, the server sent "
                    "more; it serves byte ranges wrongly, so its data cannot be trusted"
                )
            chunks.append(chunk)
        return b"".join(chunks)


def fetch_range(file: Any, start: int, end: int, size: int) -> bytes:
    """Bytes ``[start, end)`` of the file behind fsspec's ``HTTPFile`` `file`, checked.

    Raises
    ------
    RangeMismatch
        The answer names other bytes or another size, or holds more bytes than asked for.
    DeadlineExceeded
        The source's deadline passed.
    ValueError
        ``"... range requests"``: the server answered with the whole file (status 200).
    """
    left = remaining(file.url)
    return _run(file.loop, file.url, _get_range, file, start, end, size, left, left=left)


# --- full downloads ------------------------------------------------------------------------


def _too_large(url: str, cap: int, declared: int | None = None) -> KernelSpecError:
    what = f"declares {size_text(declared)}" if declared else "sent"
    return KernelSpecError(
        f"cannot read {redact(url)}: the download {what} more than the limit of "
        f"{size_text(cap)} (KERNELSPEC_MAX_DOWNLOAD); it is not a weights checkpoint, or "
        "raise the limit"
    )


async def _stream(fs: Any, url: str, out: Any, bar: Any) -> None:
    cap, silence = max_download(), http_timeout()
    session = await fs.set_session()

    async def headers() -> Any:
        return await session.get(fs.encode_url(url), timeout=_timeouts(None))

    # The headers within one KERNELSPEC_HTTP_TIMEOUT, however slowly they trickle.
    response = await asyncio.wait_for(headers(), silence)
    async with response:
        response.raise_for_status()
        declared = response.content_length
        if declared is not None and declared > cap:
            raise _too_large(url, cap, declared)
        bar.total = declared
        loop = asyncio.get_running_loop()
        done, window_start, window_bytes = 0, loop.time(), 0
        async for chunk in response.content.iter_any():
            done += len(chunk)
            if done > cap:
                raise _too_large(url, cap)
            out.write(chunk)
            bar.update(len(chunk))
            window_bytes += len(chunk)
            if loop.time() - window_start >= silence:
                if window_bytes < STALL_BYTES:
                    raise TooSlow(
                        f"cannot read {redact(url)}: the download stalled (less than "
                        f"{STALL_BYTES // 1024} KiB in {silence:g} s); try again later or "
                        "raise KERNELSPEC_HTTP_TIMEOUT"
                    )
                window_start, window_bytes = loop.time(), 0
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        if declared is not None and not encoded and done != declared:
            raise ConnectionError(
                f"the response was cut off (truncated): {done} of {declared} bytes"
            )


def download(fs: Any, url: str, dst: Path) -> Path:
    """Stream all of `url` into a temporary file next to `dst`; returns the temporary file.

    The caller keeps it with `kept_if_parsed` (renamed to `dst` once it parsed).

    Raises
    ------
    KernelSpecError
        More than ``KERNELSPEC_MAX_DOWNLOAD`` bytes, or a stalled download.
    Exception
        Network failures as fsspec / aiohttp raise them (the temporary file is removed).
    """
    from tqdm.auto import tqdm

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tqdm(unit="B", unit_scale=True, desc=dst.name[-40:], leave=False) as bar,
        ):
            _run(fs.loop, url, _stream, fs, url, out, bar, left=None)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp)


@contextlib.contextmanager
def kept_if_parsed(part: Path, dst: Path) -> Iterator[Path]:
    """Yield the downloaded `part`; rename it to `dst` if the block succeeds, else remove it."""
    try:
        yield part
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
    with contextlib.suppress(FileNotFoundError):  # a sharded read may have moved it already
        os.chmod(part, 0o644)
        os.replace(part, dst)


def cache_name(url: str) -> str:
    """``<12 hex digits>-<file name>`` for `url`; long names are cut (suffix kept)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    name = PurePosixPath(urlparse(url).path).name or "download"
    if len(name.encode()) > _MAX_NAME_BYTES:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix.encode()) <= 24 else ""
        stem = name[: len(name) - len(suffix)]
        while len((stem + suffix).encode()) > _MAX_NAME_BYTES:
            stem = stem[:-1]
        name = stem + suffix
    return f"{digest}-{name}"
