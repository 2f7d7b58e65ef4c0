"""Chance estimates on disk: a store that outlives the process, and the shipped ones.

Drawing a layer's matched null (`chance.estimate_chance`: 199 null layers, their dendrograms
and the per-size calibration) and comparing its descriptors with the null's
(`chance.descriptor_contrasts`) is most of `pipeline.analyze`'s time on small layers: about
0.3 s per LeNet5 step on this project's busy 2-core machine, 13 steps in the sample history.
Both are a deterministic function of the weights and of `chance`'s constants, so they are
kept:

- `ChanceStore`: the in-process memo (an ``OrderedDict``, so `chance.estimate_chance`'s
  memory bound still applies) that also writes each estimate to a folder (one ``.npz`` per
  `chance.memo_key`) and reads it back in a new process;
- `read_models` / `write_models`: estimates in one ``.npz``, such as `SHIPPED_FILE`, the
  estimates of the sample history's steps that ship next to its weights (made by
  ``scripts/make_lenet5_chance.py``; ``tests/analysis/test_chance_store.py``
  recomputes them and compares).

An estimate carries what was computed from it: the calibrated per-size levels
(``ChanceModel.level_by_size``, per alpha) and the descriptor contrasts (per DFT size and
stride), so a loaded one answers `analyze` without drawing the null.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from .chance import ChanceModel

__all__ = [
    "MAX_STORED_BYTES",
    "SHIPPED_FILE",
    "SHIPPED_SHA256",
    "ChanceStore",
    "model_arrays",
    "model_from_arrays",
    "read_models",
    "read_shipped",
    "write_models",
]

logger = logging.getLogger(__name__)

#: Largest estimate `ChanceStore` writes to disk (bigger ones stay in memory only: a layer
#: of thousands of filters has few null layers, each quick next to reading it back).
MAX_STORED_BYTES = 16 << 20

#: The sample history's estimates (every step of `sources.history.lenet5_history`).
SHIPPED_FILE = Path(__file__).resolve().parent.parent / "sources" / "data" / "lenet5_chance.npz"
#: SHA-256 of `SHIPPED_FILE`; a file with another digest is not used.
SHIPPED_SHA256 = "93abf19b2c6bafd1d27c26d0d7272352d935750f5440bd3a74d9d2d2779caa79"

_SCALARS = ("method", "min_samples", "chance_similarity", "p", "null_model", "floor_similarity")


def model_arrays(model: ChanceModel) -> dict[str, np.ndarray]:
    """A `ChanceModel` (with its calibrated levels and descriptor contrasts) as named arrays.

    Returns
    -------
    dict of str to ndarray
        The dataclass fields (None ones left out), ``rule:<alpha>:levels`` /
        ``rule:<alpha>:share`` per calibrated alpha, and ``contrasts`` (JSON text).
    """
    out: dict[str, np.ndarray] = {}
    for f in fields(model):
        value = getattr(model, f.name)
        if value is not None:
            out[f.name] = np.asarray(value)
    for alpha, (levels, share) in model.__dict__.get("_rules", {}).items():
        out[f"rule:{alpha!r}:levels"] = np.asarray(levels)
        out[f"rule:{alpha!r}:share"] = np.asarray(share)
    contrasts = [
        [n_fft, list(stride), value]
        for (n_fft, stride), value in model.__dict__.get("_contrasts", {}).items()
    ]
    out["contrasts"] = np.asarray(json.dumps(contrasts))
    return out


def model_from_arrays(arrays: Mapping[str, np.ndarray]) -> ChanceModel:
    """The `ChanceModel` of `model_arrays` (arrays read-only, as `estimate_chance` makes them).

    Raises
    ------
    KeyError, ValueError
        For arrays not written by `model_arrays`.
    """
    kwargs: dict[str, Any] = {}
    for f in fields(ChanceModel):
        if f.name not in arrays:
            continue
        value = np.array(arrays[f.name])
        if f.name in _SCALARS:
            value = value.item()
        else:
            value.setflags(write=False)
        kwargs[f.name] = value
    model = ChanceModel(**kwargs)
    rules = {}
    for name in arrays:
        if name.startswith("rule:") and name.endswith(":levels"):
            alpha = name[len("rule:") : -len(":levels")]
            share = float(np.asarray(arrays[f"rule:{alpha}:share"]))
            rules[float(alpha)] = (np.array(arrays[name]), share)
    if rules:
        model.__dict__["_rules"] = rules
    contrasts = json.loads(str(np.asarray(arrays.get("contrasts", "[]"))))
    if contrasts:
        model.__dict__["_contrasts"] = {
            (int(n_fft), tuple(int(s) for s in stride)): value
            for n_fft, stride, value in contrasts
        }
    return model


def write_models(path: str | os.PathLike[str], models: Mapping[str, ChanceModel]) -> None:
    """Write estimates keyed by `chance.memo_key` to one ``.npz`` (atomically)."""
    arrays = {
        f"{key}/{name}": value
        for key, model in models.items()
        for name, value in model_arrays(model).items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".chance-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_models(source: str | os.PathLike[str] | bytes) -> dict[str, ChanceModel]:
    """The estimates of `write_models` (a path, or the file's bytes), keyed as written."""
    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    with np.load(handle, allow_pickle=False) as data:
        grouped: dict[str, dict[str, np.ndarray]] = {}
        for name in data.files:
            key, _, field = name.partition("/")
            grouped.setdefault(key, {})[field] = data[name]
    return {key: model_from_arrays(arrays) for key, arrays in grouped.items()}


def read_shipped() -> dict[str, ChanceModel]:
    """The shipped estimates of the sample history, or none if the file is not sound."""
    try:
        raw = SHIPPED_FILE.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != SHIPPED_SHA256:
            raise ValueError(f"SHA-256 {digest[:12]}... is not the expected one")
        return read_models(raw)
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("not using the shipped chance estimates (%s)", exc)
        return {}


class ChanceStore(OrderedDict):
    """`chance.set_store` store: the in-process memo, written through to `folder`.

    Parameters
    ----------
    folder : path
        One ``<key>.npz`` per estimate (`MAX_STORED_BYTES` at most each). Unreadable files
        count as missing; a folder that cannot be written leaves the store in memory only.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        super().__init__()
        self.folder = Path(folder)

    def preset(self, models: Mapping[str, ChanceModel]) -> None:
        """Hold `models` in memory without writing them (estimates that ship)."""
        for key, model in models.items():
            super().__setitem__(key, model)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key)
        if found is not None:
            return found
        try:
            model = read_models(self._path(key)).get(key)
        except (OSError, ValueError, KeyError):
            model = None
        if model is None:
            return default
        super().__setitem__(key, model)
        return model

    def __setitem__(self, key: str, model: ChanceModel) -> None:
        super().__setitem__(key, model)
        if model.nbytes > MAX_STORED_BYTES:
            return
        try:
            write_models(self._path(key), {key: model})
        except OSError as exc:
            logger.warning("chance estimate not written to %s (%s)", self.folder, exc)
