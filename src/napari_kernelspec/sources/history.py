"""Training history: the checkpoints of one model as a time axis.

A history is a folder of weights files (``epoch_000.pth``, ``epoch_001.pth``, ...; in natural
order of their names, so ``step_10`` comes after ``step_9``) or a list file (one path per
line, in the order given). `history_steps` names the steps; the front ends load and analyse
each of them.

`lenet5_history` makes the sample history: the first layer of LeNet5 trained on
scikit-learn's digits with the recipe of `digits.RECIPE`, before training and after every
epoch, written once from the weights that ship with the package and then read from the cache
folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..base.errors import KernelSpecError
from .checkpoints import SUFFIXES

__all__ = [
    "HISTORY_RECIPE",
    "MAX_STEPS",
    "history_steps",
    "is_history_folder",
    "lenet5_history",
    "natural_key",
    "step_name",
]

logger = logging.getLogger(__name__)

#: Most steps one history may have (each step is loaded and analysed).
MAX_STEPS = 2000

#: What determines the sample history besides `digits.RECIPE` (part of its cache folder name).
HISTORY_RECIPE = {"name": "lenet5-digits-history", "version": 2, "every": "epoch"}

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders runs of digits by value: ``step_9`` < ``step_10``.

    Examples
    --------
    >>> sorted(["e10.pt", "e9.pt", "e1.pt"], key=natural_key)
    ['e1.pt', 'e9.pt', 'e10.pt']
    """
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in _DIGITS.split(str(text))
        if part
    )


def _weights_files(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]


def is_history_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder that directly holds at least two weights files."""
    folder = Path(path)
    try:
        return folder.is_dir() and len(_weights_files(folder)) >= 2
    except OSError:
        return False


def history_steps(source: str | os.PathLike[str]) -> list[Path]:
    """The checkpoints of a training history, in step order.

    Parameters
    ----------
    source : path-like
        A folder of weights files (its direct children with a suffix of
        `checkpoints.SUFFIXES`, hidden files left out, in natural order of their names), or
        a text file listing one checkpoint per line (blank lines and ``#`` comments skipped;
        relative paths are relative to the list file's folder), in the order given.

    Returns
    -------
    list of Path
        At least one step, at most `MAX_STEPS`.

    Raises
    ------
    KernelSpecError
        A missing path, a folder without weights files, an empty list or too many steps.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        steps = sorted(_weights_files(path), key=lambda p: natural_key(p.name))
        if not steps:
            raise KernelSpecError(
                f"{path} holds no weights files ({', '.join(SUFFIXES)}); give a folder of "
                "checkpoints of one model"
            )
    elif path.is_file():
        if path.suffix.lower() in SUFFIXES:
            raise KernelSpecError(
                f"{path} is one checkpoint; a history is a folder of checkpoints or a text "
                "file listing them, one per line"
            )
        try:
            with path.open(encoding="utf-8") as fh:
                lines = [line.strip() for _, line in zip(range(MAX_STEPS + 2), fh, strict=False)]
        except (OSError, UnicodeDecodeError) as exc:
            raise KernelSpecError(
                f"cannot read the list file {path} ({exc}); give a UTF-8 text file with one "
                "checkpoint per line"
            ) from None
        names = [line for line in lines if line and not line.startswith("#")]
        steps = [p if p.is_absolute() else path.parent / p for p in map(Path, names)]
        if not steps:
            raise KernelSpecError(f"the list file {path} names no checkpoints; one per line")
    else:
        raise KernelSpecError(
            f"no such folder or list file: {path}; give a folder of checkpoints of one model"
        )
    if len(steps) > MAX_STEPS:
        raise KernelSpecError(
            f"{path} has more than {MAX_STEPS} steps; give every n-th checkpoint in a list file"
        )
    return steps


def step_name(path: str | os.PathLike[str]) -> str:
    """The name a step is shown by: the file name without its suffix."""
    return Path(path).stem


def lenet5_history(use_cache: bool = True) -> Path:
    """The folder of the sample history: LeNet5's first layer on scikit-learn's digits, one
    file per epoch (``epoch_000.npz`` = the seeded initialisation, before any training).

    The steps come from the weights that ship with the package (`digits.read_shipped`, made
    with `digits.RECIPE`), so nothing is trained and torch is not imported; the last step
    holds the first layer of `digits.trained_lenet5`. Without usable shipped weights the
    network is trained here (fixed seeds, one thread; about 10 s). Each file holds the
    first layer only (``conv1.weight`` (6, 1, 5, 5) and ``conv1.bias``): what the history
    shows. The folder is written to a temporary folder and renamed into the cache, so an
    interrupted run leaves no half history.

    Parameters
    ----------
    use_cache : bool
        Reuse the folder if it is complete; else (or if False) write it again.

    Returns
    -------
    Path
        The folder, holding ``epochs + 1`` files ``epoch_NNN.npz``.
    """
    import numpy as np

    from . import digits
    from .cache import cache_dir

    epochs = int(digits.RECIPE["epochs"])
    tag = f"v{HISTORY_RECIPE['version']}-r{digits.RECIPE['version']}"
    try:
        _, _, steps = digits.read_shipped()
        tag += f"-{digits.SHIPPED_SHA256[:12]}"
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("not using the shipped LeNet5 history (%s); training it", exc)
        steps = {}
        import torch

        tag += f"-torch{torch.__version__.split('+')[0]}"
    folder = cache_dir() / f"lenet5-digits-history-{tag}"
    names = [f"epoch_{k:03d}.npz" for k in range(epochs + 1)]
    if use_cache and all((folder / n).is_file() for n in names):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".history-", dir=folder.parent))
    try:

        def save(epoch: int, state: dict) -> None:
            first = {k: state[k] for k in ("conv1.weight", "conv1.bias")}
            np.savez(tmp / names[epoch], **first)

        if steps:
            for epoch, name in enumerate(sorted(steps)):
                save(epoch, steps[name])
        else:
            digits.train_lenet5(on_epoch=save)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("LeNet5 training history written to %s", folder)
    return folder
