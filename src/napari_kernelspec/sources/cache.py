"""The extracted-kernel cache: one small ``.npz`` file per (model, layer, weights) choice.

A second load of the same model, layer and weights kind reads a few kilobytes from here and
never touches the (possibly half-gigabyte) checkpoint it was cut from. Files are written
atomically; a damaged or foreign file is ignored (and later overwritten), never fatal.

Location: ``$KERNELSPEC_CACHE`` if set, else ``platformdirs.user_cache_dir("napari-kernelspec")``
(``$XDG_CACHE_HOME/napari-kernelspec`` or ``~/.cache/napari-kernelspec`` on Linux,
``~/Library/Caches/napari-kernelspec`` on macOS, ``%LOCALAPPDATA%\\napari-kernelspec\\Cache`` on
Windows).

An entry is checked when read (a 4-D array of finite numbers, a metadata dict, the key it was
written for); the caller checks what it knows besides (the model's layer shape, geometry) and
rebuilds an entry that fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..base.atomic import atomic_write

__all__ = ["FORMAT_VERSION", "cache_dir", "entry_path", "make_key", "read_entry", "write_entry"]

logger = logging.getLogger(__name__)

#: Bumped when the layout of a cache file changes; part of every key. 2: entries record the
#: layer's bias, dilation and groups (entries of format 1 are not found, so they are rebuilt).
FORMAT_VERSION = 2


def cache_dir() -> Path:
    """The folder of the kernel cache (not created here).

    Returns
    -------
    Path
        ``$KERNELSPEC_CACHE``, else ``platformdirs.user_cache_dir("napari-kernelspec")``
        (which honours ``$XDG_CACHE_HOME`` on Linux).
    """
    env = os.environ.get("KERNELSPEC_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-kernelspec", appauthor=False))


def make_key(**parts: Any) -> dict[str, Any]:
    """A cache key: the JSON-safe facts that determine the kernels, plus the format version.

    Parameters
    ----------
    **parts
        E.g. ``model="alexnet", layer="features.0", weights="pretrained",
        file="alexnet-owt-7be5be79.pth"``.

    Returns
    -------
    dict
    """
    key = {"format": FORMAT_VERSION, **parts}
    json.dumps(key)  # must be JSON-safe
    return key


def _digest(key: dict[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_path(key: dict[str, Any]) -> Path:
    """The file that holds (or would hold) the entry for `key`.

    The name starts with the model, layer and weights kind, so the folder is readable.
    """
    label = "-".join(str(key.get(k, "")) for k in ("model", "layer", "weights"))
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:80]
    return cache_dir() / f"{label}-{_digest(key)}.npz"


def read_entry(key: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Read a cached kernel bank.

    Parameters
    ----------
    key : dict
        From `make_key`.

    Returns
    -------
    (weights, meta) or None
        weights : (N, C, H, W) ndarray of float32; meta : the dict given to `write_entry`.
        None if there is no entry, or it is damaged or belongs to another key.
    """
    path = entry_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key = json.loads(str(data["key"][()]))
            meta = json.loads(str(data["meta"][()]))
            weights = np.array(data["weights"], dtype=np.float32)
        if stored_key != json.loads(json.dumps(key)):
            raise ValueError("the entry belongs to another key")
        if weights.ndim != 4 or 0 in weights.shape:
            raise ValueError(f"the entry's weights have shape {weights.shape}")
        if not np.isfinite(weights).all():
            raise ValueError("the entry's weights are not all finite")
        if not isinstance(meta, dict):
            raise ValueError("the entry's metadata is not a dict")
    except Exception as exc:  # any damage: ignore the file, it is rewritten after the load
        logger.warning("ignoring damaged kernel cache file %s (%s)", path, exc)
        return None
    return weights, meta


def write_entry(key: dict[str, Any], weights: np.ndarray, meta: dict[str, Any]) -> Path | None:
    """Store a kernel bank atomically.

    A failure to write (read-only folder, full disk) is logged and otherwise ignored: the
    cache is an optimisation. Readers never see a partial file.

    Parameters
    ----------
    key : dict
        From `make_key`.
    weights : (N, C, H, W) ndarray
        The kernels, stored as float32.
    meta : dict
        JSON-safe facts to return with the weights (layer, stride, provenance...).

    Returns
    -------
    Path or None
        The file written, or None if writing failed.
    """
    path = entry_path(key)
    try:
        with atomic_write(path, "wb") as fh:
            np.savez(
                fh,
                weights=np.ascontiguousarray(weights, dtype=np.float32),
                key=np.array(json.dumps(key, sort_keys=True)),
                meta=np.array(json.dumps(meta, sort_keys=True)),
            )
    except OSError as exc:
        logger.warning("could not write the kernel cache file %s (%s)", path, exc)
        return None
    return path
