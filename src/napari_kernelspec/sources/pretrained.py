"""torchvision's ImageNet weights: where they live, downloading them, reading one tensor.

The weights file is the very one torchvision itself uses:
``$TORCH_HOME/hub/checkpoints/<basename of the weights URL>`` (``torch.hub.get_dir()``).
Only the requested tensor is read from it (memory-mapped where the file format allows);
the model is never built and filled.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ..base.errors import KernelSpecError

__all__ = [
    "WeightsInfo",
    "WeightsUnavailable",
    "ensure_checkpoint",
    "hub_checkpoint_path",
    "read_tensor",
    "weights_info",
]

logger = logging.getLogger(__name__)


class WeightsUnavailable(KernelSpecError):
    """The pretrained weights are neither in the hub cache nor downloadable."""


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

    @property
    def filename(self) -> str:
        """The file name in the hub cache (the URL's basename)."""
        return os.path.basename(urlparse(self.url).path)


def weights_info(model: str) -> WeightsInfo:
    """torchvision's ``DEFAULT`` weights of `model`.

    Parameters
    ----------
    model : str
        Canonical torchvision model name.

    Raises
    ------
    WeightsUnavailable
        If torchvision has no pretrained weights for the model.
    """
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(model).DEFAULT
    except (ValueError, KeyError, AttributeError) as exc:
        raise WeightsUnavailable(
            f"torchvision has no pretrained weights for {model!r}; use weights='random'"
        ) from exc
    return WeightsInfo(enum_name=f"{type(weights).__name__}.{weights.name}", url=weights.url)


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub (and torchvision) keeps the file downloaded from `url`.

    Returns
    -------
    Path
        ``Path(torch.hub.get_dir()) / "checkpoints" / <basename of url>``.
    """
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def ensure_checkpoint(info: WeightsInfo, download: bool = True) -> Path:
    """The hub-cache file of `info`, downloading it (with a progress bar) if missing.

    The download goes to a temporary file that is renamed when complete, so an interrupted
    download leaves no partial checkpoint behind.

    Parameters
    ----------
    info : WeightsInfo
    download : bool
        If False, only look in the hub cache.

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

    dst = hub_checkpoint_path(info.url)
    if dst.is_file():
        return dst
    hint = f"put the file at {dst}, or use weights='random'"
    if not download:
        raise WeightsUnavailable(
            f"{info.enum_name} weights are not in the torch hub cache; {hint}"
        )
    logger.info("downloading %s weights from %s to %s", info.enum_name, info.url, dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(info.url, str(dst), hash_prefix=None, progress=True)
    except Exception as exc:  # URLError, HTTPError, OSError, timeouts...
        reason = str(getattr(exc, "reason", exc)).replace("\n", " ")
        raise WeightsUnavailable(
            f"the {info.enum_name} weights could not be downloaded from {info.url} ({reason}); "
            f"{hint}"
        ) from exc
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
    from .checkpoints import torch_load

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
    if key not in state:
        renamed = {_densenet_key(k): k for k in state}
        if key in renamed:
            key = renamed[key]
        else:
            raise KernelSpecError(f"{path} has no tensor {key!r}; {fix}")
    tensor = state[key]
    try:
        return tensor.detach().to("cpu").float().numpy().copy()
    except Exception as exc:
        raise KernelSpecError(f"{path} entry {key!r} is not a tensor; {fix}") from exc
