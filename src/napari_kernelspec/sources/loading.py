"""`load_kernels`: one convolution layer's weights from a model name or a weights file.

>>> bank = load_kernels("alexnet", weights="random")     # doctest: +SKIP
>>> bank.weights.shape, bank.layer, bank.stride           # doctest: +SKIP
((64, 3, 11, 11), 'features.0', (4, 4))

Model kernels are cached (see `napari_kernelspec.sources.cache`): a second load of the same model,
layer and weights reads a small file and never touches the big checkpoint again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError
from . import cache, checkpoints, models, pretrained, remote

__all__ = ["WEIGHTS", "UntrainedWeightsWarning", "load_kernels", "resolve_source"]

logger = logging.getLogger(__name__)

#: Accepted values of `load_kernels`'s ``weights``.
WEIGHTS = ("auto", "pretrained", "random")

#: The seed of the ``"random"`` weights (``torch.manual_seed`` before building the model).
RANDOM_SEED = 0


class UntrainedWeightsWarning(UserWarning):
    """``weights="auto"`` found no pretrained weights and fell back on random (untrained) ones."""


def load_kernels(
    source: str | os.PathLike[str],
    weights: str = "auto",
    layer: str | None = None,
    *,
    use_cache: bool = True,
) -> KernelBank:
    """Load the filters of one convolution layer.

    Parameters
    ----------
    source : str or path-like
        A model name (the eight seed models, case-insensitive, also by display name such as
        ``"MobileNetV2"``; or any torchvision classification model), or a weights file:
        ``.pth``/``.pt``/``.ckpt`` (state dict or training checkpoint), ``.safetensors``,
        ``.npy``/``.npz`` ((N, C, H, W) arrays).
    weights : {"auto", "pretrained", "random"}
        For models: ``"pretrained"`` = torchvision's ImageNet weights (from the torch hub cache,
        downloaded if missing; for LeNet5: trained on scikit-learn's digits); ``"random"`` =
        the architecture's own initialisation with a fixed seed; ``"auto"`` = pretrained if
        available, otherwise random with an `UntrainedWeightsWarning`. Ignored for files.
    layer : str, optional
        A convolution other than the first: module name for models (``"layer1.0.conv1"``),
        key for files (with or without ``".weight"``). Default: for models the first
        ``Conv2d`` a forward pass runs, for files the first 4-D floating tensor.
    use_cache : bool
        Read and write the extracted-kernel cache (models only).

    Returns
    -------
    KernelBank
        ``weights`` is (N, C, H, W) float32. ``source`` is ``"pretrained"``, ``"random"``,
        ``"trained-digits"``, ``"checkpoint"`` or ``"array"``.

    Raises
    ------
    KernelSpecError
        Unknown model, bad file, missing layer, unavailable pretrained weights (for
        ``weights="pretrained"``), NaN/Inf or all-zero filters.

    Warns
    -----
    UntrainedWeightsWarning
        When ``weights="auto"`` falls back on random weights.
    """
    if layer is not None and (not isinstance(layer, str) or not layer.strip()):
        raise KernelSpecError(f"layer must be a non-empty name, got {layer!r}; or leave it out")
    resolved = resolve_source(source)
    if isinstance(resolved, Path):
        return _load_file(resolved, layer)
    if remote.is_remote(resolved) and not resolved.startswith("timm:"):
        return _load_remote(resolved, layer, use_cache)
    model = resolved
    kind = _weights_kind(weights, model)
    if kind != "auto":
        return _load_model(model, layer, kind, use_cache)
    try:
        return _load_model(model, layer, "pretrained", use_cache)
    except pretrained.WeightsUnavailable as exc:
        reason = str(exc)
    warnings.warn(
        f"no pretrained weights for {models.display_name(model)}: {reason}. Using RANDOM, "
        "UNTRAINED weights (source='random'): they show the initialisation, not what a "
        "network learns. Pass weights='random' to ask for them explicitly.",
        UntrainedWeightsWarning,
        stacklevel=2,
    )
    bank = _load_model(model, layer, "random", use_cache)
    bank.provenance["fallback_reason"] = reason
    return bank


def resolve_source(source: str | os.PathLike[str]) -> str | Path:
    """What `source` names: a canonical model name, or the path of a weights file.

    Cheap (nothing is loaded), so a caller can check a whole list before loading any of it.

    Raises
    ------
    KernelSpecError
        For an empty or unknown name (with close matches) or a wrong type. A path is
        returned as is; a missing file is reported when it is loaded.
    """
    if isinstance(source, os.PathLike):
        return Path(source)
    if not isinstance(source, str):
        raise KernelSpecError(
            f"source must be a model name or a file path, got {type(source).__name__}"
        )
    text = source.strip()
    if not text:
        raise KernelSpecError("no model or file given; name a model (`kernelspec models`)")
    remote_source = remote.parse_source(text)
    if remote_source is not None:
        return remote_source.text
    model = models._try_resolve(text)
    if model is not None:
        return model
    if _looks_like_path(text):
        return Path(text)
    raise models.unknown_model_error(text)


# --- helpers -------------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    path = Path(text).expanduser()
    return path.exists() or bool(path.suffix) or "/" in text or os.sep in text


def _weights_kind(weights: Any, model: str) -> str:
    kind = weights.strip().lower() if isinstance(weights, str) else weights
    if model == "lenet5" and kind in ("auto", "pretrained", "trained-digits"):
        return "trained-digits"
    if kind not in WEIGHTS:
        raise KernelSpecError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    return kind


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("torch", "torchvision"):
        with contextlib.suppress(PackageNotFoundError):
            out.append((name, version(name)))
    return tuple(out)


def _versions() -> dict[str, str]:
    """Installed torch and torchvision versions, read from package metadata (no import)."""
    return dict(_installed_versions())


def _key(model: str, layer: str | None, kind: str) -> dict[str, Any]:
    """Cache key of a model's layer: what determines the numbers, known before any import.

    The requested `layer` (None for "the first convolution") stands for the resolved one;
    the torchvision version pins both the architecture and its default pretrained weights.
    """
    parts: dict[str, Any] = {"model": model, "layer": layer or "first-conv", "weights": kind}
    if kind == "random":
        parts["seed"] = RANDOM_SEED
    if kind == "trained-digits":
        from .digits import RECIPE

        parts["recipe"] = RECIPE
    if model.startswith("timm:"):
        from . import timm_models

        parts["timm"] = timm_models.timm_version()
    return cache.make_key(**parts, **_versions())


def _bank(
    model: str,
    conv: models.ConvLayer,
    weights: np.ndarray,
    source: str,
    provenance: dict[str, Any],
) -> KernelBank:
    if tuple(weights.shape) != conv.shape:
        raise KernelSpecError(
            f"the {source} weights of {model} {conv.name} have shape {list(weights.shape)}, "
            f"but the architecture expects {list(conv.shape)}; the weights file does not "
            "belong to this model: delete it and load again"
        )
    return KernelBank(
        weights=weights,
        model=model,
        layer=conv.name,
        source=source,
        stride=conv.stride,
        padding=conv.padding,
        display_name=models.display_name(model),
        provenance=provenance,
    )


def _cached(key: dict[str, Any], use_cache: bool, model: str) -> KernelBank | None:
    if not use_cache:
        return None
    hit = cache.read_entry(key)
    if hit is None:
        return None
    weights, meta = hit
    try:
        source, layer = meta["source"], meta["layer"]
        stride, padding = tuple(meta["stride"]), tuple(meta["padding"])
    except (KeyError, TypeError):
        return None  # an entry from an older format: rebuild it
    if source not in ("pretrained", "random", "trained-digits", "checkpoint"):
        return None
    provenance = dict(meta.get("provenance", {}))
    provenance["cached"] = True
    provenance["cache_file"] = str(cache.entry_path(key))
    logger.debug("kernel cache hit for %s %s", model, layer)
    return KernelBank(
        weights=weights,
        model=model,
        layer=layer,
        source=source,
        stride=stride,
        padding=padding,
        display_name=meta.get("display_name") or models.display_name(model),
        provenance=provenance,
    )


def _store(key: dict[str, Any], use_cache: bool, bank: KernelBank) -> None:
    if use_cache:
        meta = {
            "source": bank.source,
            "layer": bank.layer,
            "stride": list(bank.stride),
            "padding": list(bank.padding),
            "display_name": bank.display_name,
            "provenance": dict(bank.provenance),
        }
        cache.write_entry(key, bank.weights, meta)


# --- the three kinds of model weights ------------------------------------------------------


def _load_model(model: str, layer: str | None, kind: str, use_cache: bool) -> KernelBank:
    """One kind of a model's weights: from the kernel cache, else built and then cached.

    A cache hit needs no torch import: the entry knows the layer's name, stride and padding.
    """
    key = _key(model, layer, kind)
    hit = _cached(key, use_cache, model)
    if hit is not None:
        return hit
    if model.startswith("timm:"):
        from . import timm_models

        bank = timm_models.load(model, layer, kind)
    else:
        conv = models.conv_layer(model, layer)
        build = {"random": _random, "pretrained": _pretrained, "trained-digits": _digits}[kind]
        bank = build(model, conv, use_cache)
    _store(key, use_cache, bank)
    return bank


def _random(model: str, conv: models.ConvLayer, use_cache: bool) -> KernelBank:
    versions = _versions()
    import torch

    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(RANDOM_SEED)
        net = models.build_model(model, "cpu")
        weights = net.get_submodule(conv.name).weight.detach().numpy().copy()
    del net
    provenance = {
        "weights": "random",
        "init": "the architecture's default initialisation",
        "seed": RANDOM_SEED,
        **versions,
        "cached": False,
    }
    return _bank(model, conv, weights, "random", provenance)


def _pretrained(model: str, conv: models.ConvLayer, use_cache: bool) -> KernelBank:
    info = pretrained.weights_info(model)
    tensor_key = f"{conv.name}.weight"
    path = pretrained.hub_checkpoint_path(info.url)
    if not path.is_file() and remote.is_http(remote.torchvision_url(info.url)):
        # Not downloaded: read just this tensor with Range requests.
        found = remote.read_torchvision(info.url, tensor_key, path, pretrained._densenet_key)
        provenance = {"weights": info.enum_name, **found.provenance, **_versions()}
        return _bank(model, conv, found.weights, "pretrained", {**provenance, "cached": False})
    path = pretrained.ensure_checkpoint(info)
    weights = pretrained.read_tensor(path, tensor_key)
    provenance = {
        "weights": info.enum_name,
        "url": info.url,
        "file": str(path),
        "key": tensor_key,
        **_versions(),
        "cached": False,
    }
    return _bank(model, conv, weights, "pretrained", provenance)


def _digits(model: str, conv: models.ConvLayer, use_cache: bool) -> KernelBank:
    from . import digits

    versions = _versions()
    state, info = digits.trained_lenet5(use_cache=use_cache)
    tensor_key = f"{conv.name}.weight"
    provenance = {
        "weights": "trained on sklearn.datasets.load_digits (upscaled to 32x32)",
        "accuracy": info["accuracy"],
        "n_test": info["n_test"],
        "seed": digits.RECIPE["seed"],
        "recipe": info["recipe"],
        "key": tensor_key,
        **versions,
        "cached": False,
    }
    return _bank(model, conv, state[tensor_key], "trained-digits", provenance)


# --- files ---------------------------------------------------------------------------------


def _load_remote(text: str, layer: str | None, use_cache: bool) -> KernelBank:
    """A URL or ``hf://`` checkpoint: from the kernel cache, else read with Range requests."""
    source = remote.parse_source(text)
    assert source is not None
    key = cache.make_key(model=source.text, layer=layer or "first-4d", weights="checkpoint")
    hit = _cached(key, use_cache, source.text)
    if hit is not None:
        return hit
    found = remote.read_kernels(source, layer)
    bank = KernelBank(
        weights=found.weights,
        model=source.text,
        layer=found.key,
        source="checkpoint",
        display_name=source.display_name,
        provenance={**found.provenance, "stride_known": False, "cached": False},
    )
    _store(key, use_cache, bank)
    return bank


def _load_file(path: Path, layer: str | None) -> KernelBank:
    found = checkpoints.read_kernels(path, layer)
    return KernelBank(
        weights=found.weights,
        model=path.name,
        layer=found.key,
        source=found.source,
        stride=(1, 1),
        padding=(0, 0),
        display_name=path.name,
        provenance={**found.provenance, "stride_known": False},
    )
