"""Atomic file writes: readers see the old file or the complete new one, never a partial one.

- :func:`atomic_write`: one file, through a temporary file renamed over it.
- :func:`write_together`: several files (a report's HTML, JSON and CSV) written to temporary
  files first and only then renamed, back to back, with Ctrl-C / SIGTERM held until the last
  rename; if an interrupt gets through anyway, :class:`Interrupted` says which were replaced.
- :func:`remove_stale_temporaries`: the temporary files of a path that a killed run (SIGKILL,
  power loss) left behind. A live writer holds an advisory lock on its temporary file, so
  only orphans are removed.

What an output path may be (:func:`destination`): a regular file (or a new name) is replaced
atomically; a symbolic link keeps its place and its target is replaced atomically; a FIFO
or a character device (``/dev/null``, a terminal) is written through, as a shell redirection
would; a directory, a socket or a block device is refused with a one-line `KernelSpecError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from .errors import KernelSpecError

try:  # POSIX: a live writer's temporary file carries an advisory lock
    import fcntl
except ImportError:  # pragma: no cover - Windows: fall back on the file's age
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Interrupted",
    "atomic_write",
    "destination",
    "remove_stale_temporaries",
    "write_together",
]

#: Without file locks (Windows), a temporary file this old (seconds) counts as stale.
STALE_AFTER_S = 3600.0
_LOCKED = fcntl is not None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C arrived while several files were being replaced; the message says which were.

    A `KeyboardInterrupt`, so code that handles Ctrl-C still does; ``str(exc)`` is one line.
    """


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import (setting it is process-wide, so not from worker threads later).
_UMASK = _read_umask()


_REFUSED = {
    stat.S_IFDIR: "a folder",
    stat.S_IFSOCK: "a socket",
    stat.S_IFBLK: "a block device",
}


def destination(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """How an output at `path` is written: ``("replace", file)`` or ``("through", path)``.

    ``"replace"``: a temporary file next to `file` is renamed over it (for a symbolic link,
    `file` is the link's final target, so the link stays a link). ``"through"``: `path` is a
    FIFO or a character device, opened and written directly.

    Raises
    ------
    KernelSpecError
        `path` is a folder, a socket, a block device or a loop of symbolic links.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows links
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KernelSpecError(
                f"cannot write {path}: it is a loop of symbolic links; give a file name"
            ) from None
        mode = None  # missing (or unreachable: writing it will say why)
    if mode is None or stat.S_ISREG(mode):
        return "replace", Path(os.path.realpath(path)) if path.is_symlink() else path
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return "through", path
    what = _REFUSED.get(stat.S_IFMT(mode), "not a regular file")
    raise KernelSpecError(f"cannot write {path}: it is {what}; give a file name")


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary file next to `path` (``.NAME.XXXXXXXX.tmp``), locked while open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if fcntl is not None:
        with contextlib.suppress(OSError):  # some file systems have no locks: age decides
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, tmp


def _unlink_quietly(tmp: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to `path`; on success rename it over `path`.

    If the block raises (or the process dies), `path` keeps its earlier content and the
    temporary file is removed (after a kill, by the next `remove_stale_temporaries`).

    Parameters
    ----------
    path : path-like
        The final file. Its folder is created if missing. A symbolic link's target is
        replaced; a FIFO or character device is written through (see `destination`).
    mode : {"wb", "w"}
        Binary or text (UTF-8) mode.

    Raises
    ------
    KernelSpecError
        `path` is a folder, a socket or a block device.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    encoding = {"encoding": "utf-8"} if mode == "w" else {}
    kind, path = destination(path)
    if kind == "through":
        with open(path, mode, **encoding) as fh:
            yield fh
        return
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, mode, **encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
            if _LOCKED:  # renamed while locked: never taken for an orphan
                os.replace(tmp, path)
        if not _LOCKED:  # Windows renames only closed files
            os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed writers of `path` left next to it.

    Only names `atomic_write` makes (``.NAME.XXXXXXXX.tmp``) are considered, and only those
    no live process holds (POSIX advisory lock; elsewhere: older than `STALE_AFTER_S`).

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.tmp")
    removed: list[Path] = []
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return removed
    for candidate in candidates:
        if _is_orphan(candidate):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _is_orphan(candidate: Path) -> bool:
    if fcntl is None:
        try:
            return time.time() - candidate.stat().st_mtime > STALE_AFTER_S
        except OSError:
            return False
    try:
        fd = os.open(candidate, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live writer holds it (or locks are unsupported: leave it)
    else:
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the duration (main thread only), then deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is None:  # installed outside Python: leave it alone
            continue
        previous[sig] = handler
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in received:
            signal.raise_signal(sig)


def write_together(contents: Sequence[tuple[str | os.PathLike[str], str | bytes]]) -> None:
    """Write several files so that they are replaced together.

    Every file is first written in full to a temporary file next to it (text as UTF-8) and
    flushed to disk; then the temporary files are renamed over their targets back to back,
    with SIGINT and SIGTERM held until the last rename. Stale temporary files of the same
    targets (left by a killed run) are removed first.

    Parameters
    ----------
    contents : sequence of (path-like, str or bytes)
        Each target and its complete new content, in the order they are renamed.

    Raises
    ------
    Interrupted
        A `KeyboardInterrupt` reached the renames after some of them (off the main thread,
        signals cannot be held); its message names the files replaced and those left as
        they were.
    OSError
        A temporary file could not be written: no target was touched.
    KernelSpecError
        A target is a folder, a socket or a block device (see `destination`): none was
        touched. FIFOs and character devices are written through, in their turn.
    """
    targets = [Path(p) for p, _ in contents]
    kinds = dict(zip(targets, (destination(t) for t in targets), strict=True))
    for kind, target in kinds.values():
        if kind == "replace":
            remove_stale_temporaries(target)
    staged: list[tuple[int, str, Path]] = []
    done: list[Path] = []
    try:
        for target, (_, data) in zip(targets, contents, strict=True):
            kind, real = kinds[target]
            raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            if kind == "through":
                staged.append((-1, "", target))
                continue
            fd, tmp = _temporary(real)
            staged.append((fd, tmp, target))
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.chmod(tmp, 0o666 & ~_UMASK)
            if not _LOCKED:  # Windows renames only closed files
                os.close(fd)
        try:
            # FIFOs and devices first, outside the held signals: opening a FIFO waits for a
            # reader, and Ctrl-C must still end that wait.
            for (_, tmp, target), (_, data) in zip(staged, contents, strict=True):
                if not tmp:
                    with open(target, "wb") as fh:
                        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
                    done.append(target)
            with _signals_held():
                for _, tmp, target in staged:
                    if tmp:
                        os.replace(tmp, kinds[target][1])
                        done.append(target)
        except KeyboardInterrupt as exc:
            if not done:
                raise
            rest = [str(t) for t in targets if t not in done]
            message = "replaced " + ", ".join(map(str, done))
            message += f"; left as they were: {', '.join(rest)}" if rest else " (all of them)"
            raise Interrupted(message) from exc
    finally:
        for fd, tmp, target in staged:
            if not tmp:
                continue
            if _LOCKED:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if target not in done:
                _unlink_quietly(tmp)
