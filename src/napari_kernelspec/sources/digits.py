"""LeNet5 trained on scikit-learn's handwritten digits, deterministically and in seconds.

LeNet5 is not in torchvision and has no downloadable weights, so its "pretrained" weights are
made here: the 8x8 digits of ``sklearn.datasets.load_digits`` are upscaled to 32x32, split into
fixed training and held-out sets, and the network is trained with fixed seeds on one thread.
The trained state dict is cached (a few hundred kilobytes) in the kernel cache folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..base.atomic import atomic_write

__all__ = ["RECIPE", "load_digits_32", "state_dict_path", "train_lenet5", "trained_lenet5"]

logger = logging.getLogger(__name__)

#: Everything that determines the trained weights (part of the cache file name and key).
RECIPE: dict[str, Any] = {
    "name": "lenet5-digits",
    "version": 1,
    "seed": 0,
    "test_size": 0.25,
    "split_seed": 0,
    "epochs": 12,
    "batch_size": 32,
    "lr": 2e-3,
    "optimizer": "adam",
    "upscale": "bilinear 8x8 -> 32x32",
}


def load_digits_32() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's digits upscaled to 32x32, in [0, 1], split into training and held-out sets.

    Returns
    -------
    x_train : (M, 1, 32, 32) ndarray of float32
    y_train : (M,) ndarray of int64
    x_test : (K, 1, 32, 32) ndarray of float32
    y_test : (K,) ndarray of int64
        K is 25 % of the 1797 digits, stratified, with a fixed seed.
    """
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(
        images, size=(32, 32), mode="bilinear", align_corners=False
    )
    x = images.numpy()
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=RECIPE["test_size"], random_state=RECIPE["split_seed"], stratify=y
    )
    return x_train, y_train, x_test, y_test


@contextlib.contextmanager
def _deterministic_torch(seed: int) -> Iterator[None]:
    """One thread, deterministic algorithms and a fixed seed; everything restored after."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic)
            torch.set_num_threads(threads)


def train_lenet5(
    on_epoch: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """Train LeNet5 on the upscaled digits following `RECIPE`.

    Parameters
    ----------
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, state)`` with the state dict (float32 arrays) before
        training (epoch 0) and after every epoch (1 .. ``RECIPE["epochs"]``): a training
        history. It does not change the training.

    Returns
    -------
    state : dict of str to ndarray
        The trained state dict as float32 arrays (``"conv1.weight"`` is (6, 1, 5, 5)).
    accuracy : float
        Accuracy on the held-out 25 %.
    """
    import torch

    from .models import lenet5_class

    start = time.perf_counter()
    logger.info("training LeNet5 on scikit-learn's digits (a few seconds, done once)")
    x_train, y_train, x_test, y_test = load_digits_32()
    seed = int(RECIPE["seed"])
    with _deterministic_torch(seed):
        net = lenet5_class()()
        opt = torch.optim.Adam(net.parameters(), lr=RECIPE["lr"])
        xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
        gen = torch.Generator().manual_seed(seed)
        batch = int(RECIPE["batch_size"])
        net.train()
        if on_epoch is not None:
            on_epoch(0, _state(net))
        for epoch in range(int(RECIPE["epochs"])):
            order = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(order), batch):
                idx = order[i : i + batch]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
            if on_epoch is not None:
                on_epoch(epoch + 1, _state(net))
        net.eval()
        with torch.no_grad():
            pred = net(torch.from_numpy(x_test)).argmax(1).numpy()
    accuracy = float((pred == y_test).mean())
    state = _state(net)
    logger.info(
        "LeNet5 trained in %.1f s: held-out accuracy %.3f", time.perf_counter() - start, accuracy
    )
    return state, accuracy


def _state(net: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}


def state_dict_path(cache_folder: Path) -> Path:
    """The cached trained state dict inside `cache_folder`."""
    import torch

    tag = f"v{RECIPE['version']}-torch{torch.__version__.split('+')[0]}"
    return cache_folder / f"lenet5-digits-{tag}.npz"


def trained_lenet5(use_cache: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The digits-trained LeNet5 state dict, from the cache or trained now (then cached).

    Parameters
    ----------
    use_cache : bool
        Read and write the trained state dict in the kernel cache folder.

    Returns
    -------
    state : dict of str to ndarray
    info : dict
        JSON-safe: ``accuracy`` (held-out), ``n_test``, ``recipe``, ``cached``.
    """
    from .cache import cache_dir

    path = state_dict_path(cache_dir())
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                info = json.loads(str(data["__info__"][()]))
                state = {k: np.array(data[k]) for k in data.files if k != "__info__"}
            if info.get("recipe") != RECIPE or "conv1.weight" not in state:
                raise ValueError("made with another recipe")
            info["cached"] = True
            return state, info
        except Exception as exc:  # damaged: train again and overwrite
            logger.warning("ignoring damaged LeNet5 cache file %s (%s)", path, exc)
    state, accuracy = train_lenet5()
    _, _, _, y_test = load_digits_32()
    info = {"accuracy": accuracy, "n_test": len(y_test), "recipe": dict(RECIPE)}
    if use_cache:
        try:
            with atomic_write(path, "wb") as fh:
                np.savez(fh, __info__=np.array(json.dumps(info)), **state)
        except OSError as exc:
            logger.warning("could not cache the trained LeNet5 at %s (%s)", path, exc)
    return state, {**info, "cached": False}
