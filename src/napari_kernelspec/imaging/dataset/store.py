"""Per-partition results on disk, so that an interrupted run resumes where it stopped.

Each finished partition is one ``part-<start>-<stop>.npz`` (written atomically) in the
store folder, beside ``fingerprint.json``: the layer, the parameters and a hash of the
image list. A resume reads the parts whose range is still a partition of the run and
computes the others; a store made with another layer, parameters or image list is refused
rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...base.atomic import atomic_write, remove_stale_temporaries
from ...base.bank import KernelBank
from ...base.errors import KernelSpecError
from .partition import PartitionResult

__all__ = ["PartitionStore", "fingerprint"]

_PART = re.compile(r"^part-(\d+)-(\d+)\.npz$")


def fingerprint(
    bank: KernelBank, items: Any, params: dict[str, Any], partition_size: int
) -> dict[str, Any]:
    """What must be equal for stored partitions to be reused (JSON-safe)."""
    digest = hashlib.sha256()
    for key, label in items:
        digest.update(f"{key}\0{label}\n".encode("utf-8", "surrogateescape"))
    weights = hashlib.sha256(np.ascontiguousarray(bank.weights).tobytes()).hexdigest()[:16]
    return {
        "model": bank.model,
        "layer": bank.layer,
        "weights": bank.source,
        "weights_sha256": weights,
        "params": params,
        "partition_size": int(partition_size),
        "images": len(items),
        "images_sha256": digest.hexdigest()[:16],
        "format": 1,
    }


class PartitionStore:
    """A folder of finished partitions.

    Parameters
    ----------
    folder : path-like
        Created when missing.
    print_ : dict
        `fingerprint` of this run.
    resume : bool
        Reuse the parts already there. Without it, a folder that holds parts is refused.

    Raises
    ------
    KernelSpecError
        Parts of another run, or existing parts without `resume`.
    """

    def __init__(
        self, folder: str | os.PathLike[str], print_: dict[str, Any], resume: bool
    ) -> None:
        self.folder = Path(folder)
        self.print = print_
        path = self.folder / "fingerprint.json"
        parts = self._parts()
        if parts and not resume:
            raise KernelSpecError(
                f"{self.folder} already holds {len(parts)} finished partitions of a run; "
                "resume it, or write to a new folder"
            )
        if parts:
            try:
                before = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                before = None
            if before != print_:
                raise KernelSpecError(
                    f"{self.folder} holds partitions of another run (another layer, images or "
                    "parameters); write to a new folder"
                )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for p in self.folder.glob("*.npz"):
                remove_stale_temporaries(p)
            with atomic_write(path, "w") as fh:
                json.dump(print_, fh, indent=1)
        except OSError as exc:
            raise KernelSpecError(
                f"cannot write {self.folder}: {exc.strerror or exc}; pick a writable folder"
            ) from None

    def _parts(self) -> dict[tuple[int, int], Path]:
        if not self.folder.is_dir():
            return {}
        out = {}
        for p in self.folder.iterdir():
            m = _PART.match(p.name)
            if m:
                out[(int(m.group(1)), int(m.group(2)))] = p
        return out

    def done(self) -> set[tuple[int, int]]:
        """``(start, stop)`` of every stored partition."""
        return set(self._parts())

    def read(self, start: int, stop: int, bank: KernelBank) -> PartitionResult:
        path = self._parts()[(start, stop)]
        with np.load(path, allow_pickle=False) as data:
            return PartitionResult.from_arrays(data, bank)

    def write(self, result: PartitionResult) -> None:
        path = self.folder / f"part-{result.start:09d}-{result.stop:09d}.npz"
        try:
            with atomic_write(path, "wb") as fh:
                np.savez(fh, **result.to_arrays())
        except OSError as exc:
            raise KernelSpecError(
                f"cannot write {path}: {exc.strerror or exc}; free some space, then resume"
            ) from None
