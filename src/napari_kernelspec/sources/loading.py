"""`load_kernels`: one convolution layer's weights from a model name or a weights file.

>>> bank = load_kernels("alexnet", weights="random")     # doctest: +SKIP
>>> bank.weights.shape, bank.layer, bank.stride           # doctest: +SKIP
((64, 3, 11, 11), 'features.0', (4, 4))

Model kernels are cached (see `napari_kernelspec.sources.cache`): a second load of the same model,
layer and weights reads a small file and never touches the big checkpoint again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError
from ..base.text import printable, redact
from . import cache, checkpoints, entries, models, pretrained, remote, tensors

__all__ = [
    "WEIGHTS",
    "UntrainedWeightsWarning",
    "load_kernels",
    "loads_without_torch",
    "resolve_source",
]

logger = logging.getLogger(__name__)

#: Accepted values of `load_kernels`'s ``weights``.
WEIGHTS = ("auto", "pretrained", "random")

#: The seed of the ``"random"`` weights (``torch.manual_seed`` before building the model).
RANDOM_SEED = 0


class UntrainedWeightsWarning(UserWarning):
    """``weights="auto"`` found no pretrained weights and fell back on random (untrained) ones.

    One short line. ``model`` (display name) and ``reason`` (why, in a few words) are
    attributes, so a front end can phrase its own line (the CLI says ``--weights random``).
    """

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(self.line('weights="random"'))

    def line(self, ask_random: str) -> str:
        """The warning, with `ask_random` telling how to ask for random weights explicitly."""
        return (
            f"{self.model}: no pretrained weights ({self.reason}); using RANDOM, UNTRAINED "
            f"weights (pass {ask_random} to ask for them)"
        )


def load_kernels(
    source: str | os.PathLike[str],
    weights: str = "auto",
    layer: str | None = None,
    *,
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] | None = None,
    dilation: int | tuple[int, int] | None = None,
    use_cache: bool = True,
    arch: str | None = None,
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
    stride, padding, dilation : int or (int, int), optional
        The layer's geometry, for files (which do not record it: stride 1, padding 0 and
        dilation 1 are assumed otherwise, and ``provenance["stride_known"]`` is False until a
        stride is given). For models the architecture knows it; a value that disagrees with it
        is an error.
    use_cache : bool
        Read and write the extracted-kernel cache (models only).
    arch : str, optional
        For a state-dict file: the torchvision architecture it was trained as. The layer is
        then a module name of it (default: its first convolution), its geometry the
        architecture's, and maps and explanations run the layer inside that network.

    Returns
    -------
    KernelBank
        ``weights`` is (N, C, H, W) float32. ``source`` is ``"pretrained"``, ``"random"``,
        ``"trained-digits"``, ``"checkpoint"`` or ``"array"``. ``bias``, ``dilation`` and
        ``groups`` come from the architecture for models and from the file's ``<layer>.bias``
        for files.

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
        raise KernelSpecError(
            f"layer must be a non-empty name, got {printable(layer, 80)!r}; or leave it out"
        )
    geometry = {
        "stride": _geometry_arg(stride, "stride", 1),
        "padding": _geometry_arg(padding, "padding", 0),
        "dilation": _geometry_arg(dilation, "dilation", 1),
    }
    resolved = resolve_source(source)
    if arch is not None:
        if not isinstance(resolved, Path):
            raise KernelSpecError(
                f"an architecture is for weights files; {printable(source, 80)!r} is not a "
                "file: leave the architecture out"
            )
        return _check_geometry(_load_file_arch(resolved, layer, arch), geometry)
    if isinstance(resolved, Path):
        return _load_file(resolved, layer, geometry)
    if remote.is_remote(resolved) and not resolved.startswith("timm:"):
        return _load_remote(resolved, layer, use_cache, geometry)
    model = resolved
    variant = _variant_name(weights)
    if variant is not None:  # torchvision's weights of that name: pretrained, no fallback
        bank = _load_model(model, layer, "pretrained", use_cache, variant=variant)
        return _check_geometry(bank, geometry)
    kind = _weights_kind(weights, model)
    if kind != "auto":
        return _check_geometry(_load_model(model, layer, kind, use_cache), geometry)
    try:
        bank = _load_model(model, layer, "pretrained", use_cache, remember_failure=True)
    except pretrained.WeightsUnavailable as exc:
        reason, short = str(exc), exc.short
    else:
        return _check_geometry(bank, geometry)
    warnings.warn(UntrainedWeightsWarning(models.display_name(model), short), stacklevel=2)
    bank = _load_model(model, layer, "random", use_cache)
    bank.provenance["fallback_reason"] = reason
    return _check_geometry(bank, geometry)


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
    if Path(text).suffix.lower() in checkpoints.SUFFIXES or "/" in text or os.sep in text:
        return Path(text)  # no model name looks like this: spare the torchvision import
    model = models._try_resolve(text)
    if model is not None:
        return model
    if _looks_like_path(text):
        return Path(text)
    raise models.unknown_model_error(text)


def loads_without_torch(source: str | os.PathLike[str], weights: str = "auto") -> bool:
    """True if ``load_kernels(source, weights)`` certainly answers without importing torch.

    That is a ``.npy``/``.npz`` file; LeNet5's trained weights when the shipped file is
    sound; or a model's first layer whose kernels are in the kernel cache (for ``"auto"``:
    the pretrained ones, or the random ones once the pretrained ones are known to be
    unavailable). False when unsure. A front end that must prepare the torch import (napari,
    see ``_napari.reading.preload_torch``) asks this first, so a warm start stays cheap.
    Reads a few small files; never raises.
    """
    try:
        resolved = resolve_source(source)
        if isinstance(resolved, Path):
            return resolved.suffix.lower() in (".npy", ".npz")
        if remote.is_remote(resolved):
            return False
        kind = _weights_kind(weights, resolved)

        def cached(kind: str) -> bool:
            return _cached(_key(resolved, None, kind), True, resolved, None, kind) is not None

        if kind == "trained-digits":
            if cached(kind):
                return True
            from . import digits

            digits.read_shipped()  # raises unless sound: then it would train
            return True
        if kind != "auto":
            return cached(kind)
        if cached("pretrained"):
            return True
        return pretrained.remembered_unavailable(resolved) is not None and cached("random")
    except Exception:
        return False


# --- helpers -------------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    path = Path(text).expanduser()
    try:
        exists = path.exists()
    except OSError:  # a name too long for the file system, ...: reported when it is read
        exists = False
    return exists or bool(path.suffix) or "/" in text or os.sep in text


def _geometry_arg(value: Any, name: str, least: int) -> tuple[int, int] | None:
    """A user's stride / padding / dilation: None, an int or a pair of ints >= `least`."""
    if value is None:
        return None
    items = (value, value) if isinstance(value, int | np.integer) else value
    try:
        pair = tuple(int(v) for v in items)
        ok = len(pair) == 2 and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in items
        )
    except (TypeError, ValueError):
        ok = False
    if not ok or min(pair) < least:
        raise KernelSpecError(
            f"{name} must be a whole number >= {least} or a pair of them, "
            f"got {printable(value, 40)}"
        )
    return pair  # type: ignore[return-value]


def _check_geometry(bank: KernelBank, geometry: dict[str, tuple[int, int] | None]) -> KernelBank:
    """A model's layer knows its geometry: a user's value must agree with it."""
    for name, value in geometry.items():
        if value is not None and value != getattr(bank, name):
            raise KernelSpecError(
                f"{bank.display_name} {bank.layer} has {name} {list(getattr(bank, name))} in "
                f"its architecture, not {list(value)}; leave {name} out for models"
            )
    return bank


def _variant_name(weights: Any) -> str | None:
    """A torchvision weights name (``"IMAGENET1K_V1"``, ``"DEFAULT"``) given as `weights`."""
    if not isinstance(weights, str):
        return None
    text = weights.strip()
    if text.upper() == "DEFAULT" or re.fullmatch(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+", text):
        return text.upper()
    return None


def _weights_kind(weights: Any, model: str) -> str:
    kind = weights.strip().lower() if isinstance(weights, str) else weights
    if model == "lenet5" and kind in ("auto", "pretrained", "trained-digits"):
        return "trained-digits"
    if kind not in WEIGHTS:
        raise KernelSpecError(
            f"weights must be one of {', '.join(WEIGHTS)} or a torchvision weights name "
            f"such as IMAGENET1K_V1, got {weights!r}"
        )
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


def _key(model: str, layer: str | None, kind: str, variant: str | None = None) -> dict[str, Any]:
    """Cache key of a model's layer: what determines the numbers, known before any import.

    The requested `layer` (None for "the first convolution") stands for the resolved one;
    the torchvision version pins both the architecture and its default pretrained weights.
    """
    parts: dict[str, Any] = {"model": model, "layer": layer or "first-conv", "weights": kind}
    if variant is not None:
        parts["variant"] = variant
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
    bias: np.ndarray | None = None,
) -> KernelBank:
    if tuple(weights.shape) != conv.shape:
        raise KernelSpecError(
            f"the {source} weights of {model} {conv.name} have shape {list(weights.shape)}, "
            f"but the architecture expects {list(conv.shape)}; the weights file does not "
            "belong to this model: delete it and load again"
        )
    if bias is not None and tuple(np.shape(bias)) != (conv.shape[0],):
        raise KernelSpecError(
            f"the {source} bias of {model} {conv.name} has shape {list(np.shape(bias))}, but "
            f"the architecture expects [{conv.shape[0]}]; delete the weights file and load again"
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
        bias=bias,
        dilation=conv.dilation,
        groups=conv.groups,
    )


def _pair_of(value: Any, least: int) -> tuple[int, int]:
    """A pair of ints >= `least` from cache metadata, else ValueError."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(type(v) is int and least <= v <= 4096 for v in value)
    ):
        raise ValueError(f"not a pair of whole numbers >= {least}: {value!r}")
    return (value[0], value[1])


def _cached(
    key: dict[str, Any], use_cache: bool, model: str, layer: str | None, kind: str
) -> KernelBank | None:
    """The cached bank, if the entry is sound; None (rebuild it) otherwise.

    Beyond `cache.read_entry`'s checks, the entry must hold what this model's layer holds:
    the shape, layer name, geometry and bias of the seed table where it knows the layer (no
    torch import), metadata of the right types, and weights a `KernelBank` accepts (finite,
    no all-zero filter).
    """
    if not use_cache:
        return None
    hit = cache.read_entry(key)
    if hit is None:
        return None
    weights, meta = hit
    path = cache.entry_path(key)
    try:
        source, name = meta["source"], meta["layer"]
        if source != kind or not isinstance(name, str) or not name:
            raise ValueError(f"source {source!r} / layer {name!r} do not fit {kind} weights")
        bias = meta["bias"]
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float32)
        geometry = {
            "stride": _pair_of(meta["stride"], 1),
            "padding": _pair_of(meta["padding"], 0),
            "dilation": _pair_of(meta["dilation"], 1),
        }
        groups = meta["groups"]
        if type(groups) is not int:
            raise ValueError(f"groups is {groups!r}")
        provenance = meta["provenance"]
        if not isinstance(provenance, dict):
            raise ValueError("provenance is not a dict")
        known = models.known_conv(model, layer)
        if known is not None:
            expected = (known.name, known.shape, known.bias, known.groups)
            found = (name, tuple(weights.shape), bias is not None, groups)
            geometry_known = {
                "stride": known.stride,
                "padding": known.padding,
                "dilation": known.dilation,
            }
            if expected != found or geometry != geometry_known:
                raise ValueError(f"holds {found} {geometry}, the model has {expected}")
        provenance = {**provenance, "cached": True, "cache_file": str(path)}
        bank = KernelBank(
            weights=weights,
            model=model,
            layer=name,
            source=source,
            display_name=_display_name(meta, model),
            provenance=provenance,
            bias=bias,
            groups=groups,
            **geometry,
        )
    except (KeyError, TypeError, ValueError) as exc:  # KernelSpecError is a ValueError
        logger.warning("rebuilding the kernel cache file %s (%s)", path, printable(exc, 200))
        return None
    logger.debug("kernel cache hit for %s %s", model, name)
    return bank


def _display_name(meta: dict[str, Any], model: str) -> str:
    name = meta.get("display_name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"display_name is {name!r}")
    return name or models.display_name(model)


def _store(key: dict[str, Any], use_cache: bool, bank: KernelBank) -> None:
    if use_cache:
        meta = {
            "source": bank.source,
            "layer": bank.layer,
            "stride": list(bank.stride),
            "padding": list(bank.padding),
            "display_name": bank.display_name,
            "dilation": list(bank.dilation),
            "groups": bank.groups,
            "bias": None if bank.bias is None else [float(b) for b in bank.bias],
            "provenance": dict(bank.provenance),
        }
        cache.write_entry(key, bank.weights, meta)


# --- the three kinds of model weights ------------------------------------------------------


def _load_model(
    model: str,
    layer: str | None,
    kind: str,
    use_cache: bool,
    remember_failure: bool = False,
    variant: str | None = None,
) -> KernelBank:
    """One kind of a model's weights: from the kernel cache, else built and then cached.

    A cache hit needs no torch import: the entry knows the layer's name and geometry.
    `remember_failure` (``weights="auto"``): a download that failed a short while ago is not
    tried again (see `pretrained.ensure_checkpoint`).
    """
    key = _key(model, layer, kind, variant)
    hit = _cached(key, use_cache, model, layer, kind)
    if hit is not None:
        return hit
    if kind == "pretrained" and remember_failure:
        offline = pretrained.remembered_unavailable(model)
        # Known before importing torch or torchvision; a file of another variant still counts.
        if offline is not None and (
            model.startswith("timm:") or not pretrained.weights_files_present(model)
        ):
            raise offline
    if model.startswith("timm:"):
        from . import timm_models

        bank = timm_models.load(model, layer, kind)
    else:
        conv = models.conv_layer(model, layer)
        if kind == "pretrained":
            bank = _pretrained(model, conv, remember_failure, variant)
        else:
            bank = {"random": _random, "trained-digits": _digits}[kind](model, conv, use_cache)
    _store(key, use_cache, bank)
    return bank


#: Models whose first convolution is the first module built and is not initialised again
#: afterwards: its random weights come from building that convolution alone, with the same
#: seed, bit for bit (checked by tests/sources/test_loading.py). For AlexNet that spares
#: the torchvision import and the 61 million parameters of the whole network: 0.4-0.9 s and
#: 1.5 s here, of the AlexNet sample's main-thread time.
FIRST_CONV_BUILT_FIRST = frozenset({"alexnet"})


def _random(model: str, conv: models.ConvLayer, use_cache: bool) -> KernelBank:
    versions = _versions()
    import torch

    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(RANDOM_SEED)
        if model in FIRST_CONV_BUILT_FIRST and conv == models.known_conv(model):
            module = _conv_module(conv)
        else:
            module = models.build_model(model, "cpu").get_submodule(conv.name)
        weights = module.weight.detach().numpy().copy()
        bias = None if module.bias is None else module.bias.detach().numpy().copy()
    del module
    provenance = {
        "weights": "random",
        "init": "the architecture's default initialisation",
        "seed": RANDOM_SEED,
        **versions,
        "cached": False,
    }
    return _bank(model, conv, weights, "random", provenance, bias)


def _conv_module(conv: models.ConvLayer) -> Any:
    """A ``torch.nn.Conv2d`` of `conv`'s geometry, initialised as PyTorch does."""
    from torch import nn

    n, c, h, w = conv.shape
    return nn.Conv2d(
        c * conv.groups,
        n,
        (h, w),
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias,
    )


def _pretrained(
    model: str, conv: models.ConvLayer, remember_failure: bool, variant: str | None = None
) -> KernelBank:
    """torchvision's weights: `variant`'s, else ``DEFAULT``'s, else any variant on disk."""
    info = pretrained.weights_info(model, variant) if variant else pretrained.weights_info(model)
    if variant is not None or not pretrained.hub_file_present(info.path()):
        info = pretrained.cached_variant(model, info if variant else None) or info
    tensor_key = f"{conv.name}.weight"
    path = info.path()
    url = remote.torchvision_url(info.url)
    if not pretrained.hub_file_present(path) and remote.is_http(url):
        # Not downloaded: read just this tensor with Range requests.
        if remember_failure:
            pretrained.raise_if_failed_recently(info, url, path, model)
        try:
            found = remote.read_torchvision(info.url, tensor_key, path, pretrained._densenet_key)
        except pretrained.WeightsUnavailable as exc:
            cause = exc.__cause__
            answered = getattr(cause, "status", None) is not None
            reason = getattr(cause, "reason", None) or str(exc)
            pretrained.remember_failure_of(info, url, path, model, reason, answered)
            raise pretrained.WeightsUnavailable(
                f"the {info.enum_name} weights could not be downloaded from {url} ({reason}); "
                f"put the file at {path}, or use weights='random'",
                short=f"download failed: {reason.split(' (')[0][:60]}",
            ) from cause
        provenance = {
            "weights": info.enum_name,
            "variant": info.variant,
            **found.provenance,
            **_versions(),
        }
        bias = found.bias if conv.bias else None
        return _bank(
            model, conv, found.weights, "pretrained", {**provenance, "cached": False}, bias
        )
    path = pretrained.ensure_checkpoint(info, remember_failure=remember_failure, model=model)
    keys = [tensor_key, f"{conv.name}.bias"] if conv.bias else [tensor_key]
    weights, *rest = pretrained.read_tensors(path, keys)
    bias = rest[0] if rest else None
    provenance = {
        "weights": info.enum_name,
        "variant": info.variant,
        "url": info.url,
        "file": str(path),
        "key": tensor_key,
        **_versions(),
        "cached": False,
    }
    return _bank(model, conv, weights, "pretrained", provenance, bias)


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
        "shipped": bool(info.get("shipped")),
        "key": tensor_key,
        **versions,
        **({"sha256": info["sha256"], "made_with": info["made_with"]} if "sha256" in info else {}),
        "cached": False,
    }
    bias = state.get(f"{conv.name}.bias") if conv.bias else None
    return _bank(model, conv, state[tensor_key], "trained-digits", provenance, bias)


# --- files ---------------------------------------------------------------------------------


def _load_remote(
    text: str, layer: str | None, use_cache: bool, geometry: dict[str, tuple[int, int] | None]
) -> KernelBank:
    """A URL or ``hf://`` checkpoint: from the kernel cache, else read with Range requests."""
    source = remote.parse_source(text)
    assert source is not None
    name = redact(source.text)  # credentials are never shown or stored, cache included
    key = cache.make_key(model=name, layer=layer or "first-4d", weights="checkpoint")
    hit = _cached(key, use_cache, name, layer, "checkpoint")
    if hit is None:
        found = remote.read_kernels(source, layer)
        recorded = found.geometry or {}
        provenance = {**found.provenance, "stride_known": bool(recorded), "cached": False}
        if recorded.get("padding_mode"):
            provenance["padding_mode"] = recorded["padding_mode"]
        hit = KernelBank(
            weights=found.weights,
            model=name,
            layer=printable(found.key),
            source="checkpoint",
            bias=found.bias,
            display_name=printable(source.display_name),
            provenance=provenance,
            stride=tuple(recorded.get("stride", (1, 1))),
            padding=tuple(recorded.get("padding", (0, 0))),
            dilation=tuple(recorded.get("dilation", (1, 1))),
            groups=int(recorded.get("groups", 1)),
        )
        _store(key, use_cache, hit)
    if hit.provenance.get("stride_known"):
        return _check_file_geometry(hit, geometry)
    return _with_geometry(hit, geometry)


def _check_file_geometry(
    bank: KernelBank, geometry: dict[str, tuple[int, int] | None]
) -> KernelBank:
    """A file that records its layer's geometry: a user's value must agree with it."""
    for name, value in geometry.items():
        if value is not None and tuple(value) != tuple(getattr(bank, name)):
            raise KernelSpecError(
                f"{bank.display_name} [{bank.layer}] records {name} "
                f"{list(getattr(bank, name))}, not {list(value)}; leave {name} out for this file"
            )
    return bank


def _with_geometry(bank: KernelBank, geometry: dict[str, tuple[int, int] | None]) -> KernelBank:
    """A file's bank with the geometry the user gave (files do not record it)."""
    given = {k: v for k, v in geometry.items() if v is not None}
    if not given:
        return bank
    provenance = {**bank.provenance, "stride_known": "stride" in given}
    return dataclasses.replace(bank, provenance=provenance, **given)


def _load_file_arch(path: Path, layer: str | None, arch: str) -> KernelBank:
    """A state-dict file's layer, read as a layer of the architecture `arch`."""
    model = models.resolve_model(arch)
    conv = models.conv_layer(model, layer.removesuffix(".weight") if layer else None)
    try:
        found = checkpoints.read_kernels(path, f"{conv.name}.weight")
    except tensors.NoSuchLayer:
        raise KernelSpecError(
            f"{printable(path.name)} has no {conv.name}.weight, which "
            f"{models.display_name(model)} has: give the architecture the file was trained as"
        ) from None
    if tuple(found.weights.shape) != conv.shape:
        raise KernelSpecError(
            f"{printable(path.name)} [{printable(found.key)}] has shape "
            f"{list(found.weights.shape)}, but {models.display_name(model)} {conv.name} has "
            f"{list(conv.shape)}: give the architecture the file was trained as"
        )
    return KernelBank(
        weights=found.weights,
        model=model,
        layer=conv.name,
        source="checkpoint",
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=found.bias,
        display_name=printable(path.name),
        provenance={**found.provenance, "arch": model, "stride_known": True},
    )


def file_network(bank: KernelBank) -> Any:
    """The torch network of a file read with its architecture (`load_kernels(arch=...)`).

    Raises
    ------
    KernelSpecError
        If the file's state dict does not fit the architecture (one line, with an example key).
    """
    import torch

    path = Path(bank.provenance["file"])
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        state = checkpoints.torch_load(path)
    if not isinstance(state, dict):
        raise KernelSpecError(f"{printable(path.name)} is not a state dict")
    state = entries._find_state_dict(state, path.name)
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    net = models.build_model(bank.model, "cpu")
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        example = (missing or result.unexpected_keys)[0]
        raise KernelSpecError(
            f"{printable(path.name)} does not fit {models.display_name(bank.model)} "
            f"({len(missing)} missing, {len(result.unexpected_keys)} unexpected weights, e.g. "
            f"{printable(example, 60)}); give the architecture it was trained as"
        )
    return net


def _load_file(
    path: Path, layer: str | None, geometry: dict[str, tuple[int, int] | None]
) -> KernelBank:
    found = checkpoints.read_kernels(path, layer)
    recorded = found.geometry or {}
    for name in ("stride", "padding", "dilation"):
        given, known = geometry[name], recorded.get(name)
        if given is not None and known is not None and tuple(given) != tuple(known):
            raise KernelSpecError(
                f"{printable(path.name)} [{printable(found.key)}] records {name} {list(known)}, "
                f"not {list(given)}; leave {name} out for this file"
            )
    stride, padding, dilation = (
        geometry[k] or recorded.get(k) for k in ("stride", "padding", "dilation")
    )
    provenance = {**found.provenance, "stride_known": stride is not None}
    if recorded.get("padding_mode"):
        provenance["padding_mode"] = recorded["padding_mode"]
    return KernelBank(
        weights=found.weights,
        model=printable(path.name),
        layer=printable(found.key),
        source=found.source,
        stride=tuple(stride or (1, 1)),
        padding=tuple(padding or (0, 0)),
        dilation=tuple(dilation or (1, 1)),
        groups=int(recorded.get("groups", 1)),
        bias=found.bias,
        display_name=printable(path.name),
        provenance=provenance,
    )
