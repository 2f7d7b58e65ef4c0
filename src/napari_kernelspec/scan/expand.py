"""SOURCES arguments -> the list of sources a scan analyses.

An argument is one of:

- ``@list.txt``: a text file naming one source per line (blank lines and ``#`` comments
  skipped; relative paths are relative to the list file's folder);
- a folder: every weights file below it (recursively, hidden files and folders left out),
  in natural order of the paths;
- a glob (``runs/*/epoch_*.pth``, ``**`` for any depth): the paths it matches, folders
  expanded as above;
- anything else is kept as it is: a model name or a weights file. Unknown names and missing
  files are not refused here: the scan records them as failed sources.

Repeated sources are scanned once, in the order first seen.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from ..base.errors import KernelSpecError
from ..sources.checkpoints import is_weights_file
from ..sources.history import natural_key

__all__ = ["MAX_SOURCES", "expand_sources", "weights_files"]

#: Most sources one scan takes (a guard against a list file or glob gone wrong).
MAX_SOURCES = 10_000_000

_GLOB_CHARS = frozenset("*?[")


def weights_files(folder: Path, skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Weights files below `folder`, recursively, hidden entries left out, natural order.

    A file is taken by its name or, for other names, by its first bytes
    (`checkpoints.is_weights_file`); the others are appended to `skipped` as
    (path, reason) pairs.
    """
    found = []
    for root, dirs, files in os.walk(folder):
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
    try:
        text = path.read_text(encoding="utf-8")
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


def _expand_one(arg: str, skipped: list[tuple[str, str]] | None = None) -> Iterable[str]:
    path = Path(arg).expanduser()
    if path.is_dir():
        return [str(p) for p in weights_files(path, skipped)]
    if not path.exists() and _GLOB_CHARS & set(arg):
        matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True), key=natural_key)
        if matches:
            out: list[str] = []
            for m in matches:
                out += _expand_one(m, skipped) if Path(m).is_dir() else [m]
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
            for source in _expand_one(item, skipped):
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
