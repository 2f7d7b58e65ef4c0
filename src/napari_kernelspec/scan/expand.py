"""SOURCES arguments -> the list of sources a scan analyses.

An argument is one of:

- ``@list.txt``: a text file naming one source per line (blank lines and ``#`` comments
  skipped; relative paths are relative to the list file's folder); a regular file of at
  most ``KERNELSPEC_MAX_LIST_BYTES`` (default 64 MiB), so ``@/dev/zero`` is refused;
- a folder: every weights file below it (recursively, hidden files and folders left out,
  symbolic links to folders not followed), in natural order of the paths;
- a glob (``runs/*/epoch_*.pth``, ``**`` for any depth): the paths it matches, folders
  expanded as above; ``**`` does not follow symbolic links to folders, so a link loop
  cannot make it run forever;
- anything else is kept as it is: a model name or a weights file. Unknown names and missing
  files are not refused here: the scan records them as failed sources.

Repeated sources are scanned once, in the order first seen. A folder that cannot be read
(no permission) is kept as a source of its own: the scan records it as failed with the
reason, instead of skipping its files silently.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from ..base.errors import KernelSpecError
from ..base.limits import max_list_bytes, size_text
from ..sources.checkpoints import is_weights_file
from ..sources.history import natural_key

__all__ = ["MAX_SOURCES", "expand_sources", "weights_files"]

#: Most sources one scan takes (a guard against a list file or glob gone wrong).
MAX_SOURCES = 10_000_000

_GLOB_CHARS = frozenset("*?[")


#: Prefix of a source that stands for a folder that could not be read.
UNREADABLE = "unreadable folder: "


def weights_files(
    folder: Path,
    unreadable: list[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[Path]:
    """Weights files below `folder`, recursively, hidden entries left out, natural order.

    A file is taken by its name or, for other names, by its first bytes
    (`checkpoints.is_weights_file`); the others are appended to `skipped` as
    (path, reason) pairs. Symbolic links to folders are not followed. Folders that cannot
    be listed are appended to `unreadable` (as ``"PATH (reason)"``) when it is given.
    """

    def failed(exc: OSError) -> None:
        if unreadable is not None:
            unreadable.append(f"{exc.filename} ({exc.strerror or exc})")

    found = []
    for root, dirs, files in os.walk(folder, onerror=failed):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith("."):
                continue
            reason = is_weights_file(Path(root, f))
            if reason is None:
                found.append(Path(root, f))
            elif skipped is not None:
                skipped.append((str(Path(root, f)), reason))
    return sorted(found, key=lambda p: natural_key(str(p)))


def _list_file(arg: str) -> list[str]:
    path = Path(arg[1:]).expanduser()
    limit = max_list_bytes()
    try:
        # O_NONBLOCK: a FIFO opens at once (and is refused) instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise KernelSpecError(
                    f"the list file {path} is not a regular file; give @FILE with one source "
                    "per line"
                )
            raw = fh.read(limit + 1)
        if len(raw) > limit:
            raise KernelSpecError(
                f"the list file {path} is larger than {size_text(limit)} "
                "(KERNELSPEC_MAX_LIST_BYTES); split it or raise the limit"
            )
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelSpecError(
            f"cannot read the list file {path} ({getattr(exc, 'strerror', None) or exc}); "
            "give @FILE with one source per line"
        ) from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        candidate = Path(line).expanduser()
        if not candidate.is_absolute() and (path.parent / candidate).exists():
            line = str(path.parent / candidate)
        out.append(line)
    return out


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` (``*``, ``?``, ``[...]`` within a name; ``**`` any folders) as a regex."""
    parts = pattern.split("/")
    out = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:[^/]*/)*"
            continue
        piece = fnmatch.translate(part).removeprefix("(?s:").removesuffix(")\\Z")
        out += piece.replace(".*", "[^/]*") + ("" if last else "/")
    return re.compile(out + r"\Z", re.S)


def _walk_glob(pattern: str, unreadable: list[str]) -> list[str]:
    """The paths `pattern` with ``**`` matches, found without following folder links."""
    parts = pattern.split("/")
    fixed = next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))
    top = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else ".")
    regex = _glob_regex(pattern if fixed or pattern.startswith("/") else "./" + pattern)
    found = []

    def failed(exc: OSError) -> None:
        unreadable.append(f"{exc.filename} ({exc.strerror or exc})")

    for root, dirs, files in os.walk(top, onerror=failed):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in dirs + files:
            if not name.startswith("."):
                candidate = os.path.join(root, name)
                if regex.match(candidate):
                    found.append(candidate.removeprefix("./") if fixed == 0 else candidate)
    return found


def _expand_one(
    arg: str, unreadable: list[str], skipped: list[tuple[str, str]] | None = None
) -> Iterable[str]:
    path = Path(arg).expanduser()
    if path.is_dir():
        return [str(p) for p in weights_files(path, unreadable, skipped)]
    if not path.exists() and _GLOB_CHARS & set(arg):
        pattern = os.path.expanduser(arg)
        if "**" in pattern.split(os.sep):
            matches = _walk_glob(pattern, unreadable)
        else:  # one level per name: glob cannot loop
            matches = glob.glob(pattern)
        matches = sorted(matches, key=natural_key)
        if matches:
            out: list[str] = []
            for m in matches:
                out += _expand_one(m, unreadable, skipped) if Path(m).is_dir() else [m]
            return out
    return [arg]


def expand_sources(args: Iterable[str], skipped: list[tuple[str, str]] | None = None) -> list[str]:
    """The sources named by the SOURCES arguments, in order, each once.

    Parameters
    ----------
    args : iterable of str
        Model names, files, folders, globs and ``@list.txt`` files.
    skipped : list, optional
        Receives (path, reason) for each file in a folder that is not a weights file.

    Returns
    -------
    list of str

    Raises
    ------
    KernelSpecError
        An unreadable list file, nothing to scan (for example an empty folder), or more
        than `MAX_SOURCES` sources.
    """
    out: dict[str, None] = {}
    for arg in args:
        arg = str(arg).strip()
        if not arg:
            continue
        items = _list_file(arg) if arg.startswith("@") else [arg]
        for item in items:
            unreadable: list[str] = []
            found = list(_expand_one(item, unreadable, skipped))
            for source in found + [UNREADABLE + u for u in unreadable]:
                out[source] = None
                if len(out) > MAX_SOURCES:
                    raise KernelSpecError(
                        f"more than {MAX_SOURCES} sources; split the scan into several runs"
                    )
    if not out:
        raise KernelSpecError(
            "nothing to scan: the arguments name no model or weights file "
            "(an empty folder or list?); give model names, files, folders or globs"
        )
    return list(out)
