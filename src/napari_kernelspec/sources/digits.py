"""LeNet5 trained on scikit-learn's handwritten digits, deterministically and in seconds.

LeNet5 is not in torchvision and has no downloadable weights, so its "pretrained" weights are
made here: the 8x8 digits of ``sklearn.datasets.load_digits`` are upscaled to 32x32, split into
fixed training and held-out sets, and the network is trained with fixed seeds on one thread.
The trained weights ship with the package (`SHIPPED_FILE`, checked against `SHIPPED_SHA256`
on every read), so the sample data and the widgets never train on the main thread: training
with the recipe took 10 s of napari's main thread with an empty cache. If the shipped file is
missing, damaged or made with another recipe, the network is trained here and the state dict
cached (a few hundred kilobytes) in the kernel cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..base.atomic import atomic_write

__all__ = [
    "RECIPE",
    "SHIPPED_FILE",
    "SHIPPED_SHA256",
    "load_digits_32",
    "read_shipped",
    "shipped_path",
    "state_dict_path",
    "train_lenet5",
    "trained_lenet5",
]

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

#: The trained weights that ship with the package (``sources/data``), made with `RECIPE` by
#: ``scripts/make_lenet5_weights.py``: the whole trained state dict, the first layer before
#: training and after every epoch, and the held-out accuracies. About 0.3 MB.
SHIPPED_FILE = "lenet5_digits.npz"

#: SHA-256 of `SHIPPED_FILE`; a file with another digest is not used (see `read_shipped`).
SHIPPED_SHA256 = "dfbed879629b9bfc6b60c5185332a3cce62b5c9e12583d85fa2096ec56270fbd"


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


def shipped_path() -> Path:
    """Where `SHIPPED_FILE` lies in the installed package."""
    return Path(__file__).with_name("data") / SHIPPED_FILE


def read_shipped(
    path: str | Path | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The shipped trained LeNet5: state dict, information and first-layer history.

    Parameters
    ----------
    path : path-like, optional
        Default: `shipped_path`.

    Returns
    -------
    state : dict of str to ndarray
        The trained state dict, float32 (``"conv1.weight"`` is (6, 1, 5, 5)).
    info : dict
        JSON-safe: ``recipe``, ``accuracy`` (held-out), ``n_test``, ``epoch_accuracy`` (one
        per history step), ``made_with`` (versions), ``sha256``.
    history : dict of str to dict
        ``{"epoch_000": {"conv1.weight": (6, 1, 5, 5), "conv1.bias": (6,)}, ...}``: the
        first layer before training and after each of the ``RECIPE["epochs"]`` epochs.

    Raises
    ------
    ValueError
        The file's SHA-256 is not `SHIPPED_SHA256`, or it was made with another recipe.
    OSError
        The file cannot be read.
    """
    path = Path(path) if path is not None else shipped_path()
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHIPPED_SHA256:
        raise ValueError(f"SHA-256 {digest[:12]}... is not the expected {SHIPPED_SHA256[:12]}...")
    import io

    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        info = json.loads(str(data["__info__"][()]))
        arrays = {k: np.array(data[k], dtype=np.float32) for k in data.files if k != "__info__"}
    if info.get("recipe") != RECIPE:
        raise ValueError("made with another recipe")
    state: dict[str, np.ndarray] = {}
    history: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        group, _, name = key.partition(":")
        if group == "state":
            state[name] = value
        else:
            history.setdefault(group, {})[name] = value
    if "conv1.weight" not in state or len(history) != int(RECIPE["epochs"]) + 1:
        raise ValueError("incomplete")
    return state, {**info, "sha256": digest}, dict(sorted(history.items()))


def trained_lenet5(
    use_cache: bool = True, shipped: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The digits-trained LeNet5 state dict: the shipped one, else cached, else trained now.

    Parameters
    ----------
    use_cache : bool
        Read and write a state dict trained here in the kernel cache folder.
    shipped : bool
        Use the weights that ship with the package (`read_shipped`) when they are sound.
        False (or a damaged shipped file, logged) trains with `RECIPE`.

    Returns
    -------
    state : dict of str to ndarray
    info : dict
        JSON-safe: ``accuracy`` (held-out), ``n_test``, ``recipe``, ``cached``, and
        ``shipped`` (True with ``sha256`` and ``made_with`` for the shipped weights).
    """
    from .cache import cache_dir

    if shipped:
        try:
            state, info, _ = read_shipped()
        except (OSError, ValueError, KeyError) as exc:
            logger.warning(
                "not using the shipped LeNet5 weights %s (%s); training them", shipped_path(), exc
            )
        else:
            keep = ("accuracy", "n_test", "recipe", "sha256", "made_with")
            return state, {**{k: info[k] for k in keep}, "shipped": True, "cached": True}
    path = state_dict_path(cache_dir())
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                info = json.loads(str(data["__info__"][()]))
                state = {k: np.array(data[k]) for k in data.files if k != "__info__"}
            if info.get("recipe") != RECIPE or "conv1.weight" not in state:
                raise ValueError("made with another recipe")
            info["cached"] = True
            info["shipped"] = False
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
    return state, {**info, "cached": False, "shipped": False}
