"""Remote checkpoints read with HTTP Range requests: only the bytes one layer needs.

Sources (see `parse_source`):

- ``http://`` / ``https://`` URLs of checkpoint files, read with fsspec's HTTP file system
  (aiohttp);
- ``hf://owner/repo[/path/in/repo][@revision]`` Hugging Face Hub files, read through
  huggingface_hub (``HF_ENDPOINT``, tokens, its cache: a file already in the Hugging Face
  cache is read from there);
- torchvision's pretrained weights when they are not in the torch hub cache
  (`read_torchvision`); ``KERNELSPEC_TORCHVISION_MIRROR`` replaces
  ``https://download.pytorch.org/models`` in their URLs;
- ``timm:<model>[.<tag>]`` names (see `timm_models`) resolve to Hub repositories.

`RangeFile` is a seekable read-only file over one remote file: 64 KiB blocks, adjacent
missing blocks fetched in one request, read-ahead that doubles on sequential misses, and
hard bounds on the number of requests and bytes. A server that ignores Range requests gets a
full download instead (streamed to a temporary file with a progress bar, renamed when
complete). Network failures become one-line `KernelSpecError`s.

fsspec, aiohttp and huggingface_hub are imported inside the functions that need them.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlparse

import numpy as np

from ..base.errors import KernelSpecError
from ..base.limits import http_timeout
from ..base.text import redact
from . import cache, formats, readers, tensors, transport

__all__ = [
    "BLOCK_SIZE",
    "MAX_REQUESTS",
    "TORCHVISION_BASE",
    "RangeFile",
    "RangeUnsupported",
    "RemoteKernels",
    "RemoteSource",
    "is_remote",
    "parse_source",
    "read_kernels",
    "read_torchvision",
    "torchvision_url",
]

logger = logging.getLogger(__name__)

#: Bytes per Range request block (files under 16 MiB use smaller blocks, down to 4 KiB:
#: about 1/256 of the file, so that a small file is not read whole).
BLOCK_SIZE = 64 * 1024
_MIN_BLOCK = 4 * 1024
#: Most requests for one file (a first layer takes 3-5; more means a damaged or crafted file).
MAX_REQUESTS = 48
#: Most blocks fetched in one read-ahead request.
_MAX_RUN = 32
#: Most bytes of blocks kept in memory per file.
_CACHE_BYTES = 4 * 2**20
#: Most shards of a sharded checkpoint searched for a first convolution.
_MAX_SHARDS = 64
#: Attempts per request on transient failures (connection reset, 429/5xx, time-outs).
_ATTEMPTS = 3
#: Where torchvision's weights live; ``KERNELSPEC_TORCHVISION_MIRROR`` replaces it.
TORCHVISION_BASE = "https://download.pytorch.org/models"
#: Files tried, in order, for ``hf://owner/repo`` without a path (timm's order first).
HUB_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


_timeout = http_timeout


class RangeUnsupported(KernelSpecError):
    """The server answered a Range request with the whole file (a full download follows)."""


# --- sources -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteSource:
    """A parsed remote SOURCE.

    Attributes
    ----------
    kind : {"url", "hf", "timm"}
    text : str
        The source as given (stripped), used as the model name and cache key.
    url : str
        For ``"url"``.
    repo, path, revision : str
        For ``"hf"``: ``owner/repo``, the file in it (``""``: find the weights file) and the
        revision (``""``: the default branch).
    model : str
        For ``"timm"``: the timm model name with its optional ``.tag``.
    """

    kind: str
    text: str
    url: str = ""
    repo: str = ""
    path: str = ""
    revision: str = ""
    model: str = ""

    @property
    def display_name(self) -> str:
        """A short name: the file name of a URL, ``owner/repo[/path]``, ``timm:model``."""
        if self.kind == "url":
            return PurePosixPath(urlparse(self.url).path).name or self.url
        if self.kind == "hf":
            return f"{self.repo}/{self.path}" if self.path else self.repo
        return self.text


def is_remote(text: str) -> bool:
    """True if `text` names a remote source (``http(s)://``, ``hf://`` or ``timm:``)."""
    low = text.strip().lower()
    return low.startswith(("http://", "https://", "hf://", "timm:"))


def is_http(url: str) -> bool:
    """True for ``http://`` and ``https://`` URLs."""
    return url.strip().lower().startswith(("http://", "https://"))


def parse_source(text: str) -> RemoteSource | None:
    """Parse a remote SOURCE; None if `text` is not one.

    Raises
    ------
    KernelSpecError
        For a malformed ``hf://`` or ``timm:`` source.
    """
    text = text.strip()
    low = text.lower()
    if low.startswith(("http://", "https://")):
        if not urlparse(text).netloc:
            raise KernelSpecError(f"{text!r} has no host; give a full URL (https://host/file)")
        return RemoteSource("url", text, url=text)
    if low.startswith("hf://"):
        return _parse_hf(text)
    if low.startswith("timm:"):
        name = text[5:].strip()
        if not name or any(c in name for c in "/\\ :@"):
            raise KernelSpecError(
                f"{text!r} is not a timm model name; give e.g. timm:resnet50.a1_in1k "
                "(`kernelspec models --all` lists them)"
            )
        return RemoteSource("timm", f"timm:{name}", model=name)
    return None


def _parse_hf(text: str) -> RemoteSource:
    rest = text[5:].strip("/")
    parts = rest.split("/")
    bad = KernelSpecError(
        f"{text!r} is not a Hub source; give hf://owner/repo[/path/in/repo][@revision]"
    )
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise bad
    owner, repo, tail = parts[0], parts[1], "/".join(parts[2:])
    revision = ""
    if "@" in repo:
        repo, _, revision = repo.partition("@")
    elif "@" in tail:
        tail, _, revision = tail.rpartition("@")
    elif not tail and "@" in text:  # hf://owner/repo@rev with nothing after
        raise bad
    if not repo or ".." in tail.split("/") or (("@" in text) and not revision):
        raise bad
    return RemoteSource("hf", text, repo=f"{owner}/{repo}", path=tail, revision=revision)


def torchvision_url(url: str) -> str:
    """`url` with ``https://download.pytorch.org/models`` replaced by the mirror, if one is set."""
    mirror = os.environ.get("KERNELSPEC_TORCHVISION_MIRROR", "").strip()
    if mirror and url.startswith(TORCHVISION_BASE + "/"):
        return mirror.rstrip("/") + url[len(TORCHVISION_BASE) :]
    return url


# --- failures ------------------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and len(seen) < 12 and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        status = getattr(e, "status", None)
        if status is None:
            status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int) and status >= 400:
            return status
    return None


def failure_reason(exc: BaseException, url: str) -> str:
    """One line saying why a request for `url` failed, and what to do."""
    host = urlparse(url).hostname or url
    status = _status(exc)
    if status in (401, 403):
        return (
            f"access denied (HTTP {status}): the file is private or gated; log in or check the URL"
        )
    if status == 404:
        return "not found (HTTP 404): check the URL"
    if status is not None:
        return f"the server answered HTTP {status}; try again later"
    for e in _chain(exc):
        name, text = type(e).__name__, str(e)
        if "TooManyRedirects" in name or "redirect" in text.lower():
            return "too many redirects (a redirect loop?): check the URL"
        if (
            isinstance(e, socket.gaierror)
            or "DNS" in name
            or "Name or service not known" in text
            or "name resolution" in text
            or "nodename nor servname" in text
        ):
            return f"cannot resolve host {host} (DNS failure): check the URL and your network"
        if "OfflineMode" in name:
            return "HF_HUB_OFFLINE is set and the file is not in the Hugging Face cache"
    chain = _chain(exc)
    names = [type(e).__name__ for e in chain]
    if any(
        isinstance(e, TimeoutError) or "Timeout" in n for e, n in zip(chain, names, strict=True)
    ):
        return (
            f"no answer from {host} within {_timeout():g} s: try again later or raise "
            "KERNELSPEC_HTTP_TIMEOUT"
        )
    if any("Payload" in n or "IncompleteRead" in n or "RemoteProtocol" in n for n in names):
        return f"the response from {host} was cut off (truncated): try again"
    if any("cut off" in str(e) for e in chain):
        return str(next(e for e in chain if "cut off" in str(e)))
    # fsspec reports every failed HEAD/GET as FileNotFoundError: look beneath it.
    if any(
        (isinstance(e, ConnectionError | OSError) and not isinstance(e, FileNotFoundError))
        or "Connect" in n
        for e, n in zip(chain, names, strict=True)
    ):
        return f"cannot connect to {host} (no network, or the server is down)"
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _transient(exc: BaseException) -> bool:
    status = _status(exc)
    if status is not None:
        return status in (429, 500, 502, 503, 504)
    reason = failure_reason(exc, "")
    return "cut off" in reason or "no answer" in reason or "cannot connect" in reason


def _retrying(call: Callable[[], Any]) -> Any:
    for attempt in range(_ATTEMPTS):
        try:
            return call()
        except (RangeUnsupported, KernelSpecError):
            raise
        except Exception as exc:
            if attempt == _ATTEMPTS - 1 or not _transient(exc):
                raise
            logger.debug("retrying after %s", exc)  # the final error line says enough
            time.sleep(0.3 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


# --- transports ----------------------------------------------------------------------------

_HTTP_FS: dict[float, Any] = {}


def _http_fs() -> Any:
    """fsspec's HTTP file system with our time-outs (one per time-out value, reused)."""
    timeout = _timeout()
    fs = _HTTP_FS.get(timeout)
    if fs is None:
        import aiohttp
        from fsspec.implementations.http import HTTPFileSystem

        client = {
            "timeout": aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
            "trust_env": True,  # honour HTTP(S)_PROXY / NO_PROXY
        }
        fs = HTTPFileSystem(client_kwargs=client, skip_instance_cache=True, block_size=BLOCK_SIZE)
        _HTTP_FS[timeout] = fs
    return fs


class _HttpTransport:
    """Range requests through fsspec's ``HTTPFile`` (no cache: one read = one request)."""

    def __init__(self, url: str) -> None:
        from fsspec.implementations.http import HTTPFile

        self.url = url
        self.requests = 1  # the HEAD that gives the size
        fs = _http_fs()
        try:
            self.file = _retrying(lambda: transport.open_ranged(fs, url, BLOCK_SIZE))
        except KernelSpecError:
            raise
        except Exception as exc:
            raise _NetworkError(url, exc) from exc
        if not isinstance(self.file, HTTPFile) or not self.file.size:
            raise RangeUnsupported(url)  # no size, or Accept-Ranges: none
        self.size = int(self.file.size)

    def fetch(self, start: int, end: int) -> bytes:
        def once() -> bytes:
            self.requests += 1
            try:
                return transport.fetch_range(self.file, start, end, self.size)
            except ValueError as exc:
                if "range requests" in str(exc):
                    raise RangeUnsupported(self.url) from exc
                raise

        return _retrying(once)


class _HubTransport:
    """Range requests through huggingface_hub (its session, retries, token and endpoint)."""

    def __init__(self, repo: str, path: str, revision: str, meta: Any) -> None:
        from huggingface_hub import hf_hub_url

        self.repo, self.path = repo, path
        self.revision = meta.commit_hash or revision or None
        self.url = hf_hub_url(repo, path, revision=self.revision, endpoint=_hf_endpoint())
        self.size = int(meta.size or 0)
        self.requests = 1
        if not self.size:
            raise RangeUnsupported(self.url)

    def fetch(self, start: int, end: int) -> bytes:
        from huggingface_hub import constants
        from huggingface_hub.utils import (
            build_hf_headers,
            hf_raise_for_status,
            http_stream_backoff,
        )

        headers = {**build_hf_headers(), "Range": f"bytes={start}-{end - 1}"}
        self.requests += 1
        timeout = min(_timeout(), constants.HF_HUB_DOWNLOAD_TIMEOUT or _timeout())
        with http_stream_backoff(
            "GET",
            self.url,
            headers=headers,
            timeout=min(timeout, transport.remaining(self.url) or timeout),
            max_retries=_ATTEMPTS - 1,
            base_wait_time=0.3,
        ) as response:
            hf_raise_for_status(response)
            if response.status_code != 206:
                raise RangeUnsupported(self.url)  # closed unread: no whole-file download
            transport.check_content_range(
                response.headers.get("Content-Range"), start, end, self.size, self.url
            )
            return response.read()


class _NetworkError(KernelSpecError):
    """A request failed: ``cannot read URL: reason`` (a `KernelSpecError`, so that the format
    readers pass it through untouched)."""

    def __init__(self, url: str, exc: BaseException, requested: str | None = None) -> None:
        self.reason = redact(failure_reason(exc, requested or url))
        super().__init__(f"cannot read {redact(url)}: {self.reason}")
        self.url = url
        self.status = _status(exc)  # the HTTP status if the server answered, else None


# --- the range-reading file ----------------------------------------------------------------


class RangeFile(io.RawIOBase):
    """A seekable, read-only file over a remote file, read with Range requests.

    Reads are served from 64 KiB blocks; the missing blocks of one read are fetched in one
    request, with read-ahead that doubles (up to 32 blocks) while reads go on sequentially.
    A budget bounds what a file can make us fetch: `MAX_REQUESTS` requests, and
    `formats.MAX_HEADER_BYTES` bytes plus what `allow` grants for the tensor read.

    Why not fsspec's own block cache: it fetches one block per request (a 150 KB zip
    directory is three requests instead of one) and keeps no count of requests or bytes,
    which the request budget and the provenance need.

    Parameters
    ----------
    transport
        ``fetch(start, end) -> bytes`` (one request), ``size``, ``requests``, ``url``.
    """

    def __init__(self, transport: Any) -> None:
        super().__init__()
        self.transport = transport
        self.url: str = transport.url
        self.size: int = transport.size
        self.bytes_transferred = 0
        self._pos = 0
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._budget = formats.MAX_HEADER_BYTES
        self.block = BLOCK_SIZE
        while self.block > _MIN_BLOCK and self.block * 256 > self.size:
            self.block //= 2
        self._next = -1  # the block after the last fetched run (sequential detection)
        self._run = 1

    @property
    def requests(self) -> int:
        """Requests made so far, the HEAD included."""
        return int(self.transport.requests)

    def allow(self, nbytes: int) -> None:
        """Let the next reads fetch `nbytes` more (a tensor whose size was checked)."""
        self._budget += int(nbytes) + 2 * self.block

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        inner = getattr(self.transport, "file", None)
        if inner is not None:
            inner.close()
        self._blocks.clear()
        super().close()

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + int(offset))
        return self._pos

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = self.size - self._pos if size is None or size < 0 else size
        out = bytearray()
        while len(out) < limit and self._pos < self.size:
            chunk = self.read(min(4096, limit - len(out)))
            cut = chunk.find(b"\n")
            if cut >= 0:
                out += chunk[: cut + 1]
                self._pos -= len(chunk) - cut - 1
                break
            out += chunk
        return bytes(out)

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        start = self._pos
        if end <= start:
            return b""
        if end - start >= 4 * self.block:  # a tensor: fetch exactly its bytes
            data = self._fetch(start, end)
        else:
            data = self._from_blocks(start, end)
        self._pos = end
        return data

    def _from_blocks(self, start: int, end: int) -> bytes:
        B = self.block
        first, last = start // B, (end - 1) // B
        n_blocks = (self.size + B - 1) // B
        i = first
        while i <= last:
            if i in self._blocks:
                self._blocks.move_to_end(i)
                i += 1
                continue
            j = i
            while j + 1 <= last and j + 1 not in self._blocks:
                j += 1
            self._run = min(self._run * 2, _MAX_RUN) if i == self._next else 1
            stop = min(max(j, i + self._run - 1), n_blocks - 1)
            while stop > j and stop in self._blocks:
                stop -= 1
            if stop == n_blocks - 1 and i == first and i > 0 and i - 1 not in self._blocks:
                # The end of a file is usually partial and a zip's directory sits just
                # before it: take the block before too (one request instead of two).
                i -= 1
            data = self._fetch(i * B, min((stop + 1) * B, self.size))
            for k in range(i, stop + 1):
                self._blocks[k] = data[(k - i) * B : (k - i + 1) * B]
            self._next = stop + 1
            while len(self._blocks) > max(_CACHE_BYTES // B, last - first + 1):
                self._blocks.popitem(last=False)
            i = j + 1
        joined = b"".join(self._blocks[k] for k in range(first, last + 1))
        return joined[start - first * B : end - first * B]

    def _fetch(self, start: int, end: int) -> bytes:
        if self.requests >= MAX_REQUESTS:
            raise KernelSpecError(
                f"{redact(self.url)} needed more than {MAX_REQUESTS} requests; the file is "
                "damaged or not a weights checkpoint"
            )
        if self.bytes_transferred + (end - start) > self._budget:
            raise KernelSpecError(
                f"{redact(self.url)} asks for more than {self._budget // 2**20} MiB before its "
                "tensor; the file is damaged or not a weights checkpoint"
            )
        try:
            data = self.transport.fetch(start, end)
        except (RangeUnsupported, KernelSpecError):
            raise
        except Exception as exc:
            raise _NetworkError(self.url, exc) from exc
        self.bytes_transferred += len(data)
        if len(data) != end - start:
            raise _NetworkError(
                self.url,
                ConnectionError(
                    f"the response was cut off (truncated): {len(data)} of {end - start} bytes"
                ),
            )
        return data


# --- locations: a URL or a Hub file ---------------------------------------------------------


@dataclass
class _Reads:
    """What reading a source cost: per file URL, bytes and requests."""

    files: list[dict[str, Any]] = field(default_factory=list)

    def add(self, url: str, nbytes: int, requests: int, how: str, size: int) -> None:
        self.files.append(
            {"url": redact(url), "bytes": nbytes, "requests": requests, "read": how, "size": size}
        )

    @property
    def bytes(self) -> int:
        return sum(f["bytes"] for f in self.files)

    @property
    def requests(self) -> int:
        return sum(f["requests"] for f in self.files)


class _Url:
    def __init__(self, url: str, download_to: Path | None = None) -> None:
        self.url = url
        self.name = redact(url)  # in every message about the file
        self.download_to = download_to or _download_path(url)

    def sibling(self, rel: str) -> _Url:
        return _Url(urljoin(self.url, rel))

    def local(self) -> Path | None:
        """The file if an earlier full download left it (complete: it was renamed in)."""
        return self.download_to if self.download_to.is_file() else None

    def open(self) -> RangeFile:
        return RangeFile(_HttpTransport(self.url))

    @contextlib.contextmanager
    def download(self) -> Iterator[Path]:
        """The whole file, kept at `download_to` only once the block (the parse) succeeds."""
        logger.info("%s ignores Range requests: downloading all of it", redact(self.url))
        try:
            part = transport.download(_http_fs(), self.url, self.download_to)
        except KernelSpecError:
            raise
        except Exception as exc:
            raise _NetworkError(self.url, exc) from exc
        with transport.kept_if_parsed(part, self.download_to) as path:
            yield path


def _download_path(url: str) -> Path:
    return cache.cache_dir() / "downloads" / transport.cache_name(url)


def _hf_endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _hf_cache_dir() -> str | None:
    return os.environ.get("HF_HUB_CACHE") or None


class _Hub:
    def __init__(self, repo: str, path: str, revision: str) -> None:
        self.repo, self.path, self.revision = repo, path, revision
        self.requested = _hf_endpoint() or "https://huggingface.co"
        at = f"@{revision}" if revision else ""
        self.name = f"hf://{repo}/{path}{at}"

    def sibling(self, rel: str) -> _Hub:
        folder = PurePosixPath(self.path).parent
        path = rel if str(folder) == "." else str(folder / rel)
        return _Hub(self.repo, path, self.revision)

    def _metadata(self) -> Any:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(
            self.repo, self.path, revision=self.revision or None, endpoint=_hf_endpoint()
        )
        self.requested = url
        # Our own retries (`_retrying`): huggingface_hub's would retry a DNS failure for 23 s.
        return get_hf_file_metadata(
            url, timeout=_timeout(), endpoint=_hf_endpoint(), retry_on_errors=False
        )

    def exists(self) -> bool:
        try:
            self._metadata()
        except Exception as exc:
            if _status(exc) == 404:
                return False
            raise _NetworkError(self.name, exc, self.requested) from exc
        return True

    def local(self) -> Path | None:
        """The file in the Hugging Face cache, if it is there."""
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(
            self.repo, self.path, cache_dir=_hf_cache_dir(), revision=self.revision or None
        )
        return Path(cached) if isinstance(cached, str) and os.path.isfile(cached) else None

    def open(self) -> RangeFile:
        try:
            self._meta = _retrying(self._metadata)
        except Exception as exc:
            raise _NetworkError(self.name, exc, self.requested) from exc
        return RangeFile(_HubTransport(self.repo, self.path, self.revision, self._meta))

    @contextlib.contextmanager
    def download(self) -> Iterator[Path]:
        """The whole file through huggingface_hub, into its cache (complete files only)."""
        from huggingface_hub import hf_hub_download

        meta = getattr(self, "_meta", None)
        revision = (meta.commit_hash if meta is not None else None) or self.revision or None
        try:
            path = Path(
                hf_hub_download(
                    self.repo,
                    self.path,
                    revision=revision,
                    cache_dir=_hf_cache_dir(),
                    endpoint=_hf_endpoint(),
                )
            )
        except Exception as exc:
            raise _NetworkError(self.name, exc) from exc
        yield path


# --- reading kernels -----------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteKernels:
    """One tensor read from a remote checkpoint.

    Attributes
    ----------
    weights : (N, C, H, W) ndarray of float32
    key : str
        The tensor's key in the checkpoint.
    bias : (N,) ndarray of float32 or None
        ``<layer>.bias`` where the file holds it (not looked for across shards).
    geometry : dict or None
        The layer's geometry where the file records it (ONNX, Keras).
    provenance : dict
        JSON-safe: ``url``, ``format``, ``bytes_transferred``, ``requests``, ``file_size``,
        ``read`` (``"range"``, ``"download"`` or ``"local"``), ``files`` (per file).
    """

    weights: np.ndarray
    key: str
    provenance: dict[str, Any]
    bias: np.ndarray | None = None
    geometry: dict[str, Any] | None = None


def _candidates(layer: str) -> list[str]:
    wanted = layer.strip()
    return [wanted, f"{wanted}.weight", f"module.{wanted}", f"module.{wanted}.weight"]


def _read_location(
    loc: _Url | _Hub, layer: str | None, reads: _Reads, rename: Callable[[str], str] | None
) -> tuple[str, _Arrays, str]:
    """(key, (weights, bias), format) from one file, following a shard index once.

    A local copy (a finished full download, the Hugging Face cache) is read first; else Range
    requests; a server that turns out to ignore them gets a full download.
    """
    path = loc.local()
    if path is not None:
        return _read_file(loc, path, "local", layer, reads, rename)
    rf = None
    try:
        rf = loc.open()
        fmt, found = readers.read_entries(rf, loc.name, rf.size, _sibling_opener(loc))
        if isinstance(found, formats.Sharded):
            reads.add(rf.url, rf.bytes_transferred, rf.requests, "range", rf.size)
            return _read_sharded(loc, found, layer, reads, rename)
        key, weights = _choose(found, loc.name, layer, rename)
        reads.add(rf.url, rf.bytes_transferred, rf.requests, "range", rf.size)
        return key, weights, fmt
    except RangeUnsupported:
        if rf is not None:
            reads.add(rf.url, rf.bytes_transferred, rf.requests, "range (ignored)", rf.size)
    finally:
        if rf is not None:
            rf.close()
    with loc.download() as path:
        return _read_file(loc, path, "download", layer, reads, rename)


def _sibling_opener(loc: _Url | _Hub) -> Callable[[str], Any]:
    """Opens files next to `loc` (ONNX external data, TensorFlow.js shards) by Range reads."""

    def open_sibling(relative: str) -> Any:
        if relative.startswith("/") or ".." in PurePosixPath(relative).parts or ":" in relative:
            raise KernelSpecError(
                f"{loc.name} names a file outside its folder ({relative[:80]!r}); "
                "refusing to read it"
            )
        return loc.sibling(relative).open()

    return open_sibling


def _read_file(
    loc: _Url | _Hub,
    path: Path,
    how: str,
    layer: str | None,
    reads: _Reads,
    rename: Callable[[str], str] | None,
) -> tuple[str, _Arrays, str]:
    size = path.stat().st_size
    reads.add(getattr(loc, "url", loc.name), size if how == "download" else 0, 0, how, size)
    try:
        with open(path, "rb") as fh:
            fmt, found = readers.read_entries(fh, loc.name, size)
            if isinstance(found, formats.Sharded):
                return _read_sharded(loc, found, layer, reads, rename)
            key, weights = _choose(found, loc.name, layer, rename)
            return key, weights, fmt
    except OSError as exc:
        raise formats._damaged(loc.name, exc) from exc


#: (weights, bias or None, geometry or None) of the chosen layer.
_Arrays = tuple[np.ndarray, "np.ndarray | None", "dict[str, Any] | None"]


def _choose(
    found: list[Any], name: str, layer: str | None, rename: Callable[[str], str] | None
) -> tuple[str, _Arrays]:
    """(key, (weights, bias)): the bias is read too where the file holds one."""
    if rename is not None:
        for entry in found:
            entry.key = rename(entry.key)
    key, weights = formats.select_kernels(found, name, layer)
    geometry = next((e.geometry for e in found if e.key == key), None)
    return key, (weights, formats.select_bias(found, key, len(weights)), geometry)


def _read_sharded(
    loc: _Url | _Hub,
    index: formats.Sharded,
    layer: str | None,
    reads: _Reads,
    rename: Callable[[str], str] | None,
) -> tuple[str, _Arrays, str]:
    if layer is not None:
        for key in _candidates(layer):
            if key in index.weight_map:
                shard = loc.sibling(index.weight_map[key])
                k, w, fmt = _read_location(shard, key, reads, rename)
                return k, w, f"sharded {fmt}"
        raise KernelSpecError(f"{loc.name} has no layer {layer!r}; give a key of its weight_map")
    for rel in index.shards()[:_MAX_SHARDS]:
        try:
            k, w, fmt = _read_location(loc.sibling(rel), None, reads, rename)
        except tensors.NoConvolution:
            continue
        return k, w, f"sharded {fmt}"
    raise KernelSpecError(
        f"{loc.name}: none of its shards holds a 4-D floating tensor (convolution weights)"
    )


def _hub_location(source: RemoteSource) -> _Hub:
    if source.path:
        return _Hub(source.repo, source.path, source.revision)
    for name in HUB_FILES:
        hub = _Hub(source.repo, name, source.revision)
        if hub.local() is not None or hub.exists():
            return hub
    raise KernelSpecError(
        f"hf://{source.repo} has none of {', '.join(HUB_FILES)}; name the file: "
        f"hf://{source.repo}/path/to/weights"
    )


def read_kernels(
    source: RemoteSource | str,
    layer: str | None = None,
    *,
    rename: Callable[[str], str] | None = None,
    unavailable: type[KernelSpecError] = KernelSpecError,
    hint: str = "",
) -> RemoteKernels:
    """Read one layer's weights from a remote checkpoint, fetching only what it needs.

    Parameters
    ----------
    source : RemoteSource or str
        An ``http(s)://`` URL or an ``hf://`` source.
    layer : str, optional
        The tensor's key, with or without ``".weight"``. Default: the first 4-D floating
        tensor (for safetensors, in the order of the data; for torch files, the state dict's).
    rename : callable, optional
        Applied to each key before matching (old DenseNet names).
    unavailable : KernelSpecError subclass
        Raised, with `hint` appended, when the file cannot be fetched (network, HTTP errors).

    Returns
    -------
    RemoteKernels

    Raises
    ------
    KernelSpecError
        No network, DNS failure, HTTP 404/403, a truncated response, a file that is not a
        checkpoint, no such layer, a tensor that is not 4-D.
    """
    if isinstance(source, str):
        parsed = parse_source(source)
        if parsed is None or parsed.kind not in ("url", "hf"):
            raise KernelSpecError(f"{source!r} is not a URL or hf:// source")
        source = parsed
    with transport.deadline():  # one deadline for finding the file and reading it
        try:
            loc: _Url | _Hub = _Url(source.url) if source.kind == "url" else _hub_location(source)
        except _NetworkError as exc:
            if unavailable is KernelSpecError:
                raise
            raise unavailable(f"{exc}; {hint}") from exc
        return _read(loc, layer, rename, unavailable, hint)


def _read(
    loc: _Url | _Hub,
    layer: str | None,
    rename: Callable[[str], str] | None,
    unavailable: type[KernelSpecError] = KernelSpecError,
    hint: str = "",
) -> RemoteKernels:
    reads = _Reads()
    started = time.perf_counter()
    try:
        with transport.deadline():
            key, (weights, bias, geometry), fmt = _read_location(loc, layer, reads, rename)
    except (_NetworkError, transport.TooSlow) as exc:
        if unavailable is KernelSpecError:
            raise
        raise unavailable(f"{exc}; {hint}") from exc
    last = reads.files[-1]
    provenance = {
        "url": last["url"],
        "format": fmt,
        "key": key,
        "read": last["read"],
        "file_size": last["size"],
        "bytes_transferred": reads.bytes,
        "requests": reads.requests,
        "seconds": round(time.perf_counter() - started, 3),
        "files": reads.files,
    }
    return RemoteKernels(
        weights=weights, key=key, provenance=provenance, bias=bias, geometry=geometry
    )


def read_torchvision(
    url: str, key: str, hub_file: Path, rename: Callable[[str], str]
) -> RemoteKernels:
    """One tensor of torchvision's weights at `url` (mirror applied), by Range requests.

    A server that ignores Range requests gets a full download to `hub_file` (torchvision's
    own cache location), renamed into place when complete.

    Raises
    ------
    KernelSpecError
        With the reason (no network, DNS failure, 404...) on one line;
        `pretrained.WeightsUnavailable` when the file cannot be fetched.
    """
    from .pretrained import WeightsUnavailable

    hint = f"put the file at {hub_file}, or use weights='random'"
    loc = _Url(torchvision_url(url), download_to=hub_file)
    return _read(loc, key, rename, WeightsUnavailable, hint)
