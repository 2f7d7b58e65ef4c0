"""timm models as sources: ``timm:<model>[.<tag>]``.

Pretrained weights: the first convolution is named by the model's pretrained config
(``timm.models.get_pretrained_cfg(name).first_conv``, no model built) and its tensor is read
from the config's Hub repository (``hf_hub_id``) or URL with Range requests
(`remote.read_kernels`). ``weights="random"`` builds the architecture offline
(``timm.create_model(name, pretrained=False)``) with a fixed seed.

timm and torch are imported inside the functions that need them (importing timm takes
seconds).
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError
from . import remote
from .pretrained import WeightsUnavailable

__all__ = ["list_pretrained", "load", "pretrained_cfg", "timm_version"]

#: The seed of random timm weights (as for torchvision models).
RANDOM_SEED = 0


def timm_version() -> str:
    """The installed timm version, from package metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("timm")
    except PackageNotFoundError:
        return "missing"


def _timm() -> Any:
    try:
        import timm
        import timm.models
    except ImportError as exc:
        raise KernelSpecError(
            "timm: sources need the timm package; install it (pip install timm)"
        ) from exc
    return timm


@functools.cache
def list_pretrained() -> tuple[str, ...]:
    """timm model names with pretrained weights (``"resnet50.a1_in1k"``), sorted."""
    return tuple(sorted(_timm().list_models(pretrained=True)))


def _unknown(name: str) -> KernelSpecError:
    close = difflib.get_close_matches(name, list_pretrained(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join('timm:' + c for c in close)}? " if close else ""
    return KernelSpecError(
        f"unknown timm model {name!r}: {hint}run `kernelspec models --all` to list them"
    )


def pretrained_cfg(name: str) -> Any:
    """timm's pretrained config of `name` (``model[.tag]``), or None if it has none.

    Raises
    ------
    KernelSpecError
        If timm knows no such architecture.
    """
    timm = _timm()
    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        raise _unknown(name)
    return timm.models.get_pretrained_cfg(name)


def _first_conv_name(cfg: Any) -> str | None:
    first = getattr(cfg, "first_conv", None) if cfg is not None else None
    if isinstance(first, list | tuple):
        first = first[0] if first else None
    return first if isinstance(first, str) and first else None


def _geometry(name: str, module_name: str) -> dict[str, Any]:
    """Stride and padding of `module_name`, from the model built on the meta device.

    Returns ``{"stride_known": False}`` when the model cannot be built there (a few timm
    builders compute with tensors at construction).
    """
    import torch

    timm = _timm()
    try:
        with torch.device("meta"):
            net = timm.create_model(name, pretrained=False)
        conv = net.get_submodule(module_name)
        return _conv_geometry(conv)
    except Exception:
        return {"stride_known": False}


def _conv_geometry(conv: Any) -> dict[str, Any]:
    def pair(v: Any) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))

    padding = conv.padding
    if isinstance(padding, str):  # "same" / "valid"
        k = pair(conv.kernel_size)
        padding = (0, 0) if padding == "valid" else ((k[0] - 1) // 2, (k[1] - 1) // 2)
    return {
        "stride": pair(conv.stride),
        "padding": pair(padding),
        "dilation": pair(conv.dilation),
        "groups": int(conv.groups),
    }


def load(model: str, layer: str | None, kind: str) -> KernelBank:
    """The weights of one convolution of a timm model.

    Parameters
    ----------
    model : str
        ``"timm:<model>[.<tag>]"``.
    layer : str, optional
        Module name (``"stem.conv"``), with or without ``".weight"``. Default: the pretrained
        config's ``first_conv`` (else the first ``Conv2d``).
    kind : {"pretrained", "random"}

    Returns
    -------
    KernelBank

    Raises
    ------
    WeightsUnavailable
        No pretrained weights, or they cannot be fetched.
    KernelSpecError
        Unknown model or layer.
    """
    name = model[len("timm:") :]
    cfg = pretrained_cfg(name)
    module = layer.strip().removesuffix(".weight") if layer else _first_conv_name(cfg)
    if kind == "random":
        return _random(model, name, module)
    if cfg is None or not (getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None)):
        raise WeightsUnavailable(f"timm has no pretrained weights for {name!r}")
    hub_id = getattr(cfg, "hf_hub_id", None)
    hub_file = getattr(cfg, "hf_hub_filename", None)  # e.g. open_clip_pytorch_model.bin
    text = f"hf://{hub_id}" + (f"/{hub_file}" if hub_file else "") if hub_id else cfg.url
    source = remote.parse_source(text)
    assert source is not None
    found = remote.read_kernels(
        source,
        f"{module}.weight" if module else None,
        unavailable=WeightsUnavailable,
        hint="use weights='random' for the untrained architecture",
    )
    layer_name = found.key.removesuffix(".weight")
    geometry = _geometry(name, layer_name)
    provenance = {
        "weights": f"timm {getattr(cfg, 'tag', None) or name}",
        "hub": hub_id or "",
        **found.provenance,
        "timm": timm_version(),
        "stride_known": geometry.pop("stride_known", True),
        "cached": False,
    }
    return KernelBank(
        weights=found.weights,
        model=model,
        layer=layer_name,
        source="pretrained",
        display_name=model,
        provenance=provenance,
        **geometry,
    )


def _random(model: str, name: str, module: str | None) -> KernelBank:
    import torch
    from torch import nn

    timm = _timm()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        net = timm.create_model(name, pretrained=False)
    if module is None:
        module = next((n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
        if module is None:
            raise KernelSpecError(f"timm:{name} has no Conv2d layer to show")
    try:
        conv = net.get_submodule(module)
    except AttributeError:
        names = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
        close = difflib.get_close_matches(module, names, n=3, cutoff=0.5)
        shown = ", ".join(list(dict.fromkeys(close + names[:5])))
        raise KernelSpecError(
            f"timm:{name} has no convolution layer {module!r}; give one of: {shown}"
        ) from None
    if not isinstance(conv, nn.Conv2d):
        raise KernelSpecError(f"timm:{name} {module} is not a Conv2d; give a convolution layer")
    weights = conv.weight.detach().float().numpy().copy()
    provenance = {
        "weights": "random",
        "init": "timm's default initialisation",
        "seed": RANDOM_SEED,
        "timm": timm_version(),
        "cached": False,
    }
    return KernelBank(
        weights=weights,
        model=model,
        layer=module,
        source="random",
        display_name=model,
        provenance=provenance,
        **_conv_geometry(conv),
    )
