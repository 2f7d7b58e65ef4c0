"""torchvision's ImageNet weights: where they live, downloading them, reading one tensor.

The weights file is the very one torchvision itself uses:
``$TORCH_HOME/hub/checkpoints/<basename of the weights URL>`` (``torch.hub.get_dir()``).
Only the requested tensor is read from it (memory-mapped where the file format allows);
the model is never built and filled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ..base.errors import KernelSpecError

__all__ = [
    "FAILURES_FILE",
    "RETRY_DOWNLOAD_AFTER_S",
    "WeightsInfo",
    "WeightsUnavailable",
    "ensure_checkpoint",
    "hub_checkpoint_path",
    "read_tensor",
    "read_tensors",
    "recent_failure",
    "remembered_unavailable",
    "weights_info",
]

logger = logging.getLogger(__name__)


#: Seconds a failed download is remembered: within this time ``weights="auto"`` does not try
#: it again (it falls back on random weights at once); ``weights="pretrained"`` always tries.
RETRY_DOWNLOAD_AFTER_S = 3600

#: The file (in the kernel cache folder) that remembers failed downloads.
FAILURES_FILE = "download-failures.json"


class WeightsUnavailable(KernelSpecError):
    """The pretrained weights are neither in the hub cache nor downloadable.

    Attributes
    ----------
    short : str
        Why, in a few words, for a one-line warning (the message has the whole story).
    """

    def __init__(self, message: str, short: str | None = None) -> None:
        super().__init__(message)
        self.short = short or message


@dataclass(frozen=True)
class WeightsInfo:
    """torchvision's default pretrained weights of one model.

    Attributes
    ----------
    enum_name : str
        ``"AlexNet_Weights.IMAGENET1K_V1"``.
    url : str
        Where torchvision downloads them from.
    """

    enum_name: str
    url: str
    #: A file found under another name whose bytes match the URL's hash prefix.
    found_at: str | None = None

    @property
    def filename(self) -> str:
        """The file name in the hub cache (the URL's basename)."""
        return os.path.basename(urlparse(self.url).path)

    @property
    def variant(self) -> str:
        """The weights' name without the enum class (``"IMAGENET1K_V1"``)."""
        return self.enum_name.rsplit(".", 1)[-1]

    @property
    def hash_prefix(self) -> str | None:
        """The SHA-256 prefix torchvision publishes in the file name (``...-7ebf99e0.pth``)."""
        stem = os.path.splitext(self.filename)[0]
        match = re.search(r"-([0-9a-f]{6,64})$", stem)
        return match.group(1) if match else None

    def path(self) -> Path:
        """Where the file is: `found_at`, else the hub cache path of the URL."""
        return Path(self.found_at) if self.found_at else hub_checkpoint_path(self.url)


_DOWNLOADS = "https://download.pytorch.org/models/"

#: torchvision's ``DEFAULT`` weights of the seed models, known without importing
#: torchvision (1.5-2 s here: the AlexNet sample's first load spends it for nothing when
#: offline); tests/sources/test_pretrained.py checks the table against torchvision.
SEED_WEIGHTS: dict[str, WeightsInfo] = {
    model: WeightsInfo(f"{enum}.{name}", _DOWNLOADS + file)
    for model, enum, name, file in (
        ("alexnet", "AlexNet_Weights", "IMAGENET1K_V1", "alexnet-owt-7be5be79.pth"),
        ("vgg16", "VGG16_Weights", "IMAGENET1K_V1", "vgg16-397923af.pth"),
        ("resnet50", "ResNet50_Weights", "IMAGENET1K_V2", "resnet50-11ad3fa6.pth"),
        ("densenet121", "DenseNet121_Weights", "IMAGENET1K_V1", "densenet121-a639ec97.pth"),
        ("mobilenet_v2", "MobileNet_V2_Weights", "IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth"),
        ("googlenet", "GoogLeNet_Weights", "IMAGENET1K_V1", "googlenet-1378be20.pth"),
        (
            "inception_v3",
            "Inception_V3_Weights",
            "IMAGENET1K_V1",
            "inception_v3_google-0cc3c7bd.pth",
        ),
    )
}


def weights_info(model: str, variant: str | None = None) -> WeightsInfo:
    """torchvision's ``DEFAULT`` weights of `model`, or its weights named `variant`.

    The seed models' defaults come from `SEED_WEIGHTS`, without importing torchvision.

    Parameters
    ----------
    model : str
        Canonical torchvision model name.
    variant : str, optional
        A weights name of the model's enum (``"IMAGENET1K_V1"``), any case.

    Raises
    ------
    WeightsUnavailable
        If torchvision has no pretrained weights for the model.
    KernelSpecError
        If the model has no weights named `variant` (the message lists its names).
    """
    if model in SEED_WEIGHTS and variant is None:
        return SEED_WEIGHTS[model]
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(model)
        weights = enum.DEFAULT
    except (ValueError, KeyError, AttributeError) as exc:
        raise WeightsUnavailable(
            f"torchvision has no pretrained weights for {model!r}; use weights='random'"
        ) from exc
    if variant is not None:
        names = [w.name for w in enum]
        if variant.strip().upper() not in names:
            raise KernelSpecError(
                f"{model} has no weights named {variant!r}; its weights are "
                f"{', '.join(names)} (or auto, pretrained, random)"
            )
        weights = enum[variant.strip().upper()]
    return WeightsInfo(enum_name=f"{type(weights).__name__}.{weights.name}", url=weights.url)


def variants(model: str) -> list[WeightsInfo]:
    """Every published weights variant of `model`, ``DEFAULT`` first (empty if none)."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(model)
    except (ValueError, KeyError, AttributeError):
        return []
    default = enum.DEFAULT
    ordered = [default, *(w for w in enum if w is not default)]
    return [WeightsInfo(f"{type(w).__name__}.{w.name}", w.url) for w in ordered]


def _sha256_prefix_matches(path: Path, prefix: str) -> bool:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(prefix)


def cached_variant(model: str, info: WeightsInfo | None = None) -> WeightsInfo | None:
    """A weights file of `model` already on disk: `info`'s, else any known variant's.

    Looked for, in order: the file of `info` (default: each variant, ``DEFAULT`` first) at its
    hub cache path, as torchvision names it; then files of the hub cache folder named after
    the model (``mobilenet_v2*.pth``) but not after a variant (renamed or copied), which are
    taken for a variant only if their SHA-256 starts with the hash prefix its URL publishes.

    Returns
    -------
    WeightsInfo or None
        With `WeightsInfo.found_at` set for a renamed file.
    """
    if info is None and model in SEED_WEIGHTS and not _any_file_named_like(SEED_WEIGHTS[model]):
        return None  # nothing on disk to look at: no need to import torchvision for its list
    candidates = [info] if info is not None else variants(model)
    for candidate in candidates:
        if hub_checkpoint_path(candidate.url).is_file():
            return candidate
    if not candidates:
        return None
    folder = hub_checkpoint_path(candidates[0].url).parent
    named = {c.filename for c in variants(model)}
    stem = candidates[0].filename.split("-")[0]
    try:
        others = sorted(
            p
            for p in folder.glob(f"{glob_escape(stem)}*")
            if p.is_file() and p.name not in named and not p.name.endswith(".partial")
        )
    except OSError:
        return None
    for path in others:
        for candidate in candidates:
            prefix = candidate.hash_prefix
            if prefix and _sha256_prefix_matches(path, prefix):
                return WeightsInfo(candidate.enum_name, candidate.url, found_at=str(path))
    return None


def _any_file_named_like(info: WeightsInfo) -> bool:
    """Whether the hub cache folder holds a file named like `info`'s model (``alexnet*``)."""
    path = hub_checkpoint_path(info.url)
    stem = info.filename.split("-")[0]
    try:
        return any(p.is_file() for p in path.parent.glob(f"{glob_escape(stem)}*"))
    except OSError:
        return False


def glob_escape(text: str) -> str:
    """`text` with glob's special characters escaped."""
    import glob

    return glob.escape(text)


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub (and torchvision) keeps the file downloaded from `url`.

    Returns
    -------
    Path
        ``Path(torch.hub.get_dir()) / "checkpoints" / <basename of url>``.
    """
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _failure_keys(url: str) -> tuple[str, str]:
    """(server key, URL key): a network failure is remembered for the server, an HTTP one for
    the URL."""
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}", url


def _failures_path() -> Path:
    from .cache import cache_dir

    return cache_dir() / FAILURES_FILE


def _read_failures() -> dict[str, Any]:
    try:
        data = json.loads(_failures_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_failures(data: dict[str, Any]) -> None:
    from ..base.atomic import atomic_write

    try:
        with atomic_write(_failures_path(), "w") as fh:
            json.dump(data, fh, indent=1)
    except OSError as exc:  # only an optimisation
        logger.debug("could not remember the failed download (%s)", exc)


def recent_failure(url: str, now: float | None = None) -> dict[str, Any] | None:
    """The remembered failure of a download from `url`, if younger than the retry time.

    Returns
    -------
    dict or None
        ``{"time": epoch seconds, "reason": str}``.
    """
    now = time.time() if now is None else now
    failures = _read_failures()
    for key in _failure_keys(url):
        entry = failures.get(key)
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("time"), int | float)
            and 0 <= now - entry["time"] < RETRY_DOWNLOAD_AFTER_S
        ):
            return {"time": float(entry["time"]), "reason": str(entry.get("reason", ""))}
    return None


def _remember(key: str, entry: dict[str, Any]) -> None:
    now = time.time()
    failures = {
        k: v
        for k, v in _read_failures().items()
        if isinstance(v, dict)
        and isinstance(v.get("time"), int | float)
        and now - v["time"] < RETRY_DOWNLOAD_AFTER_S
    }
    failures[key] = entry
    _write_failures(failures)


def _remember_model(model: str | None, info: WeightsInfo, dst: Path, failure: dict) -> None:
    """Also remember the failure under the model's name: the next run needs no torch import."""
    if model is not None:
        entry = {**failure, "url": info.url, "file": str(dst), "weights": info.enum_name}
        _remember(f"model:{model}", entry)


def weights_files_present(model: str) -> bool:
    """Whether the hub folder of `model`'s remembered failure holds any file named after it.

    Cheap (no torch import): a file of another weights variant there may still be used,
    so a remembered failure must not short-cut the search for it.
    """
    entry = _read_failures().get(f"model:{model}")
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        return False
    dst = Path(entry["file"])
    stem = dst.name.split("-")[0]
    try:
        return any(
            p.is_file() and not p.name.endswith(".partial")
            for p in dst.parent.glob(f"{glob_escape(stem)}*")
        )
    except OSError:
        return False


def remembered_unavailable(model: str) -> WeightsUnavailable | None:
    """The error for `model`'s pretrained weights if their download failed a short while ago.

    Cheap (no torch or torchvision import): the failures file says where the hub file would
    be; if it has appeared since (put there by hand), None is returned and it is used.

    Parameters
    ----------
    model : str
        Canonical model name.

    Returns
    -------
    WeightsUnavailable or None
    """
    entry = _read_failures().get(f"model:{model}")
    if not isinstance(entry, dict) or not isinstance(entry.get("time"), int | float):
        return None
    if not 0 <= time.time() - entry["time"] < RETRY_DOWNLOAD_AFTER_S:
        return None
    try:
        if Path(str(entry.get("file", ""))).is_file():
            return None
    except OSError:
        pass
    return _offline_error(
        str(entry.get("weights", model)),
        str(entry.get("url", "")),
        str(entry.get("file", "")),
        {"time": float(entry["time"]), "reason": str(entry.get("reason", ""))},
    )


def _offline_error(weights: str, url: str, dst: str, failure: dict) -> WeightsUnavailable:
    minutes = max(1, round((time.time() - failure["time"]) / 60))
    retry = max(1, round(RETRY_DOWNLOAD_AFTER_S / 60 - minutes))
    return WeightsUnavailable(
        f"the {weights} weights are not in the torch hub cache and a download from "
        f"{urlparse(url).netloc or url} failed {minutes} min ago ({failure['reason']}); it "
        f"is retried in {retry} min (or now with weights='pretrained'); put the file at "
        f"{dst}, or use weights='random'",
        short=f"offline: a download failed {minutes} min ago; retried in {retry} min",
    )


def _forget(url: str) -> None:
    failures = _read_failures()
    keys = [
        k
        for k, v in failures.items()
        if k in _failure_keys(url) or (isinstance(v, dict) and v.get("url") == url)
    ]
    if keys:
        for key in keys:
            del failures[key]
        _write_failures(failures)


def hub_file_present(dst: Path, create_folder: bool = True) -> bool:
    """Whether the hub-cache file `dst` is there; its folder is made when `create_folder`.

    Raises
    ------
    WeightsUnavailable
        If the torch hub folder cannot be read or made (``TORCH_HOME`` under a file, a
        folder this user may not read).
    """
    try:
        if dst.is_file():
            return True
    except OSError as exc:  # e.g. TORCH_HOME in a folder this user may not read
        raise WeightsUnavailable(
            f"cannot look into the torch hub folder {dst.parent} ({exc.strerror}); set "
            "TORCH_HOME to a folder you can read and write, or use weights='random'",
            short=f"torch hub folder unreadable: {exc.strerror}",
        ) from None
    if create_folder:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WeightsUnavailable(
                f"cannot create the torch hub folder {dst.parent} ({exc.strerror}); set "
                "TORCH_HOME to a folder you can write, or use weights='random'",
                short=f"torch hub folder not writable: {exc.strerror}",
            ) from None
    return False


def raise_if_failed_recently(info: WeightsInfo, url: str, dst: Path, model: str | None) -> None:
    """Raise `WeightsUnavailable` if fetching `url` failed less than the retry time ago."""
    failure = recent_failure(url)
    if failure is not None:
        _remember_model(model, info, dst, failure)
        raise _offline_error(info.enum_name, url, str(dst), failure)


def remember_failure_of(
    info: WeightsInfo, url: str, dst: Path, model: str | None, reason: str, answered: bool
) -> None:
    """Remember a failed fetch of `url`: for the URL if the server `answered` (an HTTP error),
    else for the whole server; and under the model's name."""
    server, whole = _failure_keys(url)
    failure = {"time": time.time(), "reason": reason.replace("\n", " ")[:200]}
    _remember(whole if answered else server, failure)
    _remember_model(model, info, dst, failure)


def ensure_checkpoint(
    info: WeightsInfo,
    download: bool = True,
    remember_failure: bool = False,
    model: str | None = None,
) -> Path:
    """The hub-cache file of `info`, downloading it (with a progress bar) if missing.

    The download goes to a temporary file that is renamed when complete, so an interrupted
    download leaves no partial checkpoint behind. A failed download is remembered for
    `RETRY_DOWNLOAD_AFTER_S` seconds in ``FAILURES_FILE`` of the kernel cache folder (for the
    server if it could not be reached, for the URL if the server answered with an error).

    Parameters
    ----------
    info : WeightsInfo
    download : bool
        If False, only look in the hub cache.
    remember_failure : bool
        If True (``weights="auto"``), a download that failed less than
        `RETRY_DOWNLOAD_AFTER_S` ago is not tried again: offline runs stay fast.
    model : str, optional
        The model the weights belong to: a failure is also remembered under its name (see
        `remembered_unavailable`).

    Returns
    -------
    Path

    Raises
    ------
    WeightsUnavailable
        If the file is missing and could not be downloaded; the message names the exact path
        to put the file at.
    """
    import torch

    dst = info.path()
    hint = f"put the file at {dst}, or use weights='random'"
    if hub_file_present(dst, create_folder=download):
        return dst
    if not download:
        raise WeightsUnavailable(
            f"{info.enum_name} weights are not in the torch hub cache; {hint}",
            short="not in the torch hub cache",
        )
    if remember_failure:
        raise_if_failed_recently(info, info.url, dst, model)
    logger.info("downloading %s weights from %s to %s", info.enum_name, info.url, dst)
    try:
        torch.hub.download_url_to_file(info.url, str(dst), hash_prefix=None, progress=True)
    except Exception as exc:  # URLError, HTTPError, OSError, timeouts...
        import urllib.error

        reason = str(getattr(exc, "reason", exc)).replace("\n", " ")
        remember_failure_of(
            info, info.url, dst, model, reason, isinstance(exc, urllib.error.HTTPError)
        )
        raise WeightsUnavailable(
            f"the {info.enum_name} weights could not be downloaded from {info.url} ({reason}); "
            f"{hint}",
            short=f"download failed: {reason[:80]}",
        ) from exc
    _forget(info.url)
    return dst


def _densenet_key(key: str) -> str:
    # Old DenseNet files name "denselayer1.norm.1.weight" what the model calls "norm1.weight".
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", key)


def read_tensor(path: str | os.PathLike[str], key: str) -> np.ndarray:
    """Read one tensor of a torch checkpoint without loading the rest into memory.

    Parameters
    ----------
    path : path-like
        A flat state dict saved by ``torch.save`` (the torch hub's weights files).
    key : str
        State-dict key, e.g. ``"features.0.weight"``.

    Returns
    -------
    ndarray of float32

    Raises
    ------
    KernelSpecError
        If the file is damaged, would need code execution to unpickle, or lacks the key.
    """
    return read_tensors(path, [key])[0]


def read_tensors(path: str | os.PathLike[str], keys: list[str]) -> list[np.ndarray]:
    """Read some tensors of a torch checkpoint (one memory-mapped load for all of them).

    Parameters
    ----------
    path : path-like
        A flat state dict saved by ``torch.save``.
    keys : list of str
        State-dict keys, e.g. ``["features.0.weight", "features.0.bias"]``.

    Returns
    -------
    list of ndarray of float32
        In the order of `keys`.

    Raises
    ------
    KernelSpecError
        If the file is damaged, would need code execution to unpickle, or lacks a key.
    """
    from .checkpoints import tensor_array, torch_load

    path = Path(path)
    fix = f"delete {path} and load again (it will be downloaded anew)"
    try:
        state = torch_load(path)
    except KernelSpecError as exc:
        if str(exc).startswith("refusing"):
            raise
        raise KernelSpecError(f"the torch hub file {path} is truncated or damaged; {fix}") from exc
    if not isinstance(state, dict):
        raise KernelSpecError(f"{path} is not a state dict; {fix}")
    import torch

    renamed = {_densenet_key(str(k)): k for k in state}
    out = []
    for key in keys:
        tensor = state.get(key, state.get(renamed.get(key, key)))
        if tensor is None:
            raise KernelSpecError(f"{path} has no tensor {key!r}; {fix}")
        if not isinstance(tensor, torch.Tensor):
            raise KernelSpecError(f"{path} entry {key!r} is not a tensor; {fix}")
        out.append(tensor_array(tensor, f"{path} [{key}]"))
    return out
