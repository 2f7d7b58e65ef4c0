"""The model a filter is explained in: built from a model name, a checkpoint or one conv.

>>> model = explain_model("vgg16", weights="random")          # doctest: +SKIP
>>> model.conv_names()[:3], model.source                       # doctest: +SKIP
(['features.0', 'features.2', 'features.5'], 'random')

What can be explained:

- the eight seed models and every torchvision classification model, with torchvision's
  ImageNet weights (hub cache or download) or the architecture's seeded random initialisation
  (``weights="auto"`` falls back on random with an `UntrainedWeightsWarning`; the result says
  UNTRAINED wherever it is shown);
- LeNet5 trained on scikit-learn's digits (`sources.digits`);
- a checkpoint of a torchvision architecture (``arch="resnet18"`` + a state-dict file), read
  with ``torch.load(..., weights_only=True)``;
- a bare weights file (``.npy`` / ``.npz`` / ``.pth`` / ``.safetensors`` with one convolution),
  explained as a one-layer model: that convolution (with its bias when the file has one, stride
  1 and no padding, since a file does not record them) followed by a ReLU.

The pixel input of every model is an RGB (or grey, for one-channel models) image in [0, 1];
torchvision models get ImageNet's mean / std normalisation as the first module, so images and
attributions are in plain pixel units. torch is imported inside functions only.
"""

from __future__ import annotations

import difflib
import functools
import os
import warnings
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ...base.errors import KernelSpecError
from ...sources import checkpoints, entries, loading, models, pretrained

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "DEVICES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ExplainModel",
    "clamped_relu_class",
    "drive",
    "explain_model",
    "parse_filters",
    "resolve_device",
    "wrap_model",
]

T = TypeVar("T")

#: Accepted values of ``device``.
DEVICES = ("auto", "cpu", "cuda")

#: torchvision's ImageNet normalisation (the weights' own ``transforms()`` use these numbers).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Name of the convolution of a one-layer model built from a bare weights file.
ONE_LAYER_CONV = "conv"


@dataclass
class ExplainModel:
    """A model ready to be explained, with where its weights came from.

    Attributes
    ----------
    net : torch.nn.Module
        ``Sequential(normalise, model)`` in eval mode on `device`: takes (B, C, H, W) pixels in
        [0, 1]. Its ReLU modules are not in-place (Captum's hooks need that).
    name : str
        Display name (``"VGG16"``, a file name).
    model : str
        Canonical model name, or the file name for a one-layer model.
    source : str
        ``"pretrained"``, ``"random"`` (UNTRAINED), ``"trained-digits"``, ``"checkpoint"`` or
        ``"array"``.
    channels : int
        Input channels (3, or 1 for LeNet5 and one-channel weights files).
    input_size : int or None
        The only input size the whole network accepts (32 for LeNet5), or None for any.
    device : str
    provenance : dict
        JSON-safe facts about the weights.
    caveats : list of str
        What a user must know about this model's explanations (untrained weights, unknown
        stride, input re-normalised inside the model, ...).
    """

    net: nn.Module
    name: str
    model: str
    source: str
    channels: int
    input_size: int | None
    device: str
    provenance: dict[str, Any] = field(default_factory=dict)
    caveats: list[str] = field(default_factory=list)
    prefix: str = "1."
    one_layer: bool = False

    @property
    def is_trained(self) -> bool:
        """False for random (untrained) weights."""
        return self.source != "random"

    @property
    def weights_label(self) -> str:
        """``"pretrained"``, ``"trained-digits"``... or ``"random (UNTRAINED)"``."""
        return self.source if self.is_trained else "random (UNTRAINED)"

    def conv_names(self) -> list[str]:
        """Names of every ``Conv2d`` of the model, in registration order (``"features.0"``)."""
        from torch import nn

        return [
            name[len(self.prefix) :]
            for name, mod in self.net.named_modules()
            if isinstance(mod, nn.Conv2d) and name.startswith(self.prefix)
        ]

    def conv(self, layer: str) -> nn.Conv2d:
        """The ``Conv2d`` named `layer`.

        Raises
        ------
        KernelSpecError
            If `layer` is not a convolution of the model; the message lists valid names.
        """
        from torch import nn

        name = str(layer).strip()
        if name.endswith(".weight"):
            name = name[: -len(".weight")]
        names = self.conv_names()
        if name in names:
            mod = self.net.get_submodule(self.prefix + name)
            assert isinstance(mod, nn.Conv2d)
            return mod
        try:
            other = type(self.net.get_submodule(self.prefix + name)).__name__ if name else None
        except AttributeError:
            other = None
        what = f"is a {other}, not a convolution" if other else "is not a layer"
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        shown = list(dict.fromkeys(close + names[:6]))
        more = f" (and {len(names) - len(shown)} more)" if len(names) > len(shown) else ""
        raise KernelSpecError(
            f"{layer!r} {what} of {self.name}; give one of: {', '.join(shown)}{more}"
        )

    def resolve_layer(self, layer: str | None) -> str:
        """A conv name from `layer`: a name, ``"first"``, ``"middle"``, ``"last"`` or None."""
        names = self.conv_names()
        if not names:
            raise KernelSpecError(f"{self.name} has no Conv2d layer to explain")
        key = (layer or "first").strip()
        if key in ("middle", "last") and names == [ONE_LAYER_CONV] and self.one_layer:
            raise KernelSpecError(
                f"{self.name} is one convolution (a weights file without its network): it has "
                f"no {key} layer; give the file's architecture to explain deeper layers"
            )
        picks = {"first": 0, "middle": (len(names) - 1) // 2, "last": len(names) - 1}
        if key in picks:
            return names[picks[key]]
        self.conv(key)
        return key[: -len(".weight")] if key.endswith(".weight") else key

    def n_filters(self, layer: str) -> int:
        """Output channels of the convolution `layer`."""
        return int(self.conv(layer).out_channels)

    def check_filters(self, layer: str, filters: Any) -> list[int]:
        """`filters` (a ``"0,3,5-9"`` string or ints) checked against `layer`'s filters."""
        return parse_filters(filters, self.n_filters(layer), layer)

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary: model, name, weights source, device, provenance, caveats."""
        return {
            "model": self.model,
            "name": self.name,
            "weights": self.source,
            "trained": self.is_trained,
            "device": self.device,
            "provenance": self.provenance,
            "caveats": list(self.caveats),
        }


def drive(steps: Generator[tuple[int, int], None, T], progress: Any = None) -> T:
    """Run a generator of ``(done, total)`` to its end; return what it returns.

    `progress`, if given, is called with each ``(done, total)``.
    """
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)


def resolve_device(device: str = "auto") -> str:
    """``"cuda"`` for ``"auto"`` when a GPU is present, else ``"cpu"``.

    Raises
    ------
    KernelSpecError
        For an unknown device or ``"cuda"`` without a GPU.
    """
    import torch

    key = str(device).strip().lower()
    if key not in DEVICES:
        raise KernelSpecError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if key == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if key == "cuda" and not torch.cuda.is_available():
        raise KernelSpecError("--device cuda asked for, but torch sees no CUDA GPU; use cpu")
    return key


def parse_filters(text: str | Any, n_filters: int, layer: str = "the layer") -> list[int]:
    """Filter indices from ``"0,3,5-9"`` (or a sequence of ints), checked against `n_filters`.

    Returns
    -------
    list of int
        In the given order, without repeats.

    Raises
    ------
    KernelSpecError
        For a malformed list or an index outside ``0 .. n_filters - 1``.
    """
    if isinstance(text, str):
        out: list[int] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            lo, dash, hi = part.partition("-")
            try:
                a = int(lo)
                b = int(hi) if dash else a
            except ValueError:
                raise KernelSpecError(
                    f"bad filter list {text!r}: use indices and ranges like 0,3,5-9"
                ) from None
            if b < a:
                raise KernelSpecError(f"bad filter range {part!r}: write the smaller index first")
            if b >= n_filters or a < 0:  # before the range is expanded (0-2000000000)
                out.append(a if a < 0 or a >= n_filters else n_filters)
                break
            out += range(a, b + 1)
    else:
        out = [int(i) for i in np.asarray(text).reshape(-1)]
    if not out:
        raise KernelSpecError("no filters given; list indices like 0,3,5-9")
    bad = [i for i in out if not 0 <= i < n_filters]
    if bad:
        raise KernelSpecError(
            f"filter index {bad[0]} is out of range: {layer} has {n_filters} filters "
            f"(0..{n_filters - 1})"
        )
    if len(out) > 4096:
        raise KernelSpecError(f"{len(out)} filters asked for; give at most 4096 at once")
    return list(dict.fromkeys(out))


# --- building ------------------------------------------------------------------------------


def explain_model(
    source: str | os.PathLike[str],
    weights: str = "auto",
    *,
    arch: str | None = None,
    layer: str | None = None,
    device: str = "auto",
) -> ExplainModel:
    """Build the model whose filters are explained.

    Parameters
    ----------
    source : str or path-like
        A model name (any spelling `load_kernels` accepts) or a weights file.
    weights : {"auto", "pretrained", "random"}
        For model names (see `load_kernels`); ignored for files.
    arch : str, optional
        For a file: the torchvision architecture (``"resnet18"``) whose state dict it holds.
        Without it a file is explained as a one-layer model (its convolution + ReLU).
    layer : str, optional
        For a one-layer model: the key of the convolution in the file (default: the first).
    device : {"auto", "cpu", "cuda"}

    Returns
    -------
    ExplainModel

    Raises
    ------
    KernelSpecError
        Unknown model or architecture, unreadable file, a state dict that does not fit `arch`,
        unavailable pretrained weights (``weights="pretrained"``), a bad device.

    Warns
    -----
    UntrainedWeightsWarning
        When ``weights="auto"`` falls back on random weights.
    """
    dev = resolve_device(device)
    resolved = loading.resolve_source(source)
    if isinstance(resolved, Path):
        if arch is not None:
            built = _from_checkpoint(resolved, arch)
        elif resolved.suffix.lower() == ".onnx" and layer is None:
            built = _from_onnx(resolved)
        else:
            built = _one_layer(resolved, layer)
    else:
        if arch is not None:
            raise KernelSpecError(
                f"--arch is for weights files; {source!r} is a model name already: leave it out"
            )
        built = _from_model(resolved, weights)
    return _finish(built, dev)


def wrap_model(
    net: nn.Module,
    *,
    name: str = "model",
    channels: int = 3,
    source: str = "checkpoint",
    normalise: bool = False,
    input_size: int | None = None,
    device: str = "cpu",
) -> ExplainModel:
    """Explain your own ``nn.Module`` (taking (B, `channels`, H, W) pixels in [0, 1]).

    Parameters
    ----------
    net : torch.nn.Module
        Used as is (not copied): its ``nn.ReLU6`` modules are replaced by `ClampedReLU` and
        in-place ReLUs made out-of-place, as for every explained model.
    source : str
        Where its weights came from (``"random"`` marks it UNTRAINED).
    normalise : bool
        Put ImageNet's mean / std normalisation in front of it.
    """
    built = _Built(
        net=net,
        name=name,
        model=name,
        source=source,
        channels=int(channels),
        input_size=input_size,
        normalise=normalise,
        provenance={},
        caveats=[],
    )
    return _finish(built, resolve_device(device))


@dataclass
class _Built:
    net: nn.Module
    name: str
    model: str
    source: str
    channels: int
    input_size: int | None
    normalise: bool
    provenance: dict[str, Any]
    caveats: list[str]
    one_layer: bool = False


class _Normalise:  # a factory: the nn.Module subclass is made on first use (no torch import)
    _cls: type | None = None

    @classmethod
    def make(cls, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
        if cls._cls is None:
            import torch
            from torch import nn

            class Normalise(nn.Module):
                """(x - mean) / std per channel, for pixels in [0, 1]."""

                def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
                    super().__init__()
                    self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
                    self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    return (x - self.mean) / self.std

            cls._cls = Normalise
        return cls._cls(mean, std)


@functools.cache
def clamped_relu_class() -> type:
    """``ClampedReLU``: ReLU6 as an ``nn.ReLU`` subclass, so Captum's ReLU rules apply to it.

    Captum hooks ``isinstance(module, nn.ReLU)`` only; MobileNetV2's ``nn.ReLU6`` is not one
    and would silently get the plain gradient in guided backprop and the deconvnet.
    """
    import torch.nn.functional as F
    from torch import nn

    class ClampedReLU(nn.ReLU):
        """min(max(x, 0), 6), an ``nn.ReLU`` as far as ``isinstance`` goes."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.hardtanh(x, 0.0, 6.0)

    return ClampedReLU


def _swap_relu6(net: nn.Module) -> None:
    from torch import nn

    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.ReLU6:
                setattr(parent, name, clamped_relu_class()())


def _finish(built: _Built, device: str) -> ExplainModel:
    from torch import nn

    _swap_relu6(built.net)
    for mod in built.net.modules():  # Captum's backward hooks cannot follow in-place ReLUs
        if isinstance(mod, nn.ReLU | nn.Hardtanh) and getattr(mod, "inplace", False):
            mod.inplace = False
    if built.normalise:
        first: nn.Module = _Normalise.make(IMAGENET_MEAN, IMAGENET_STD)
    else:
        first = nn.Identity()
    net = nn.Sequential(first, built.net).eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    caveats = list(built.caveats)
    if built.source == "random":
        caveats.insert(
            0,
            "UNTRAINED: random initial weights; the images show the initialisation, "
            "not what a network learns",
        )
    return ExplainModel(
        net=net,
        name=built.name,
        model=built.model,
        source=built.source,
        channels=built.channels,
        input_size=built.input_size,
        device=device,
        provenance=built.provenance,
        caveats=caveats,
        one_layer=built.one_layer,
    )


def _from_model(model: str, weights: str) -> _Built:
    variant = loading._variant_name(weights)
    kind = "pretrained" if variant else loading._weights_kind(weights, model)
    if kind == "auto":
        try:
            return _from_model(model, "pretrained")
        except pretrained.WeightsUnavailable as exc:
            reason, short = str(exc), exc.short
        warnings.warn(
            loading.UntrainedWeightsWarning(models.display_name(model), short), stacklevel=3
        )
        built = _from_model(model, "random")
        built.provenance["fallback_reason"] = reason
        return built
    if kind == "random":
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(loading.RANDOM_SEED)
            net = models.build_model(model, "cpu")
        provenance: dict[str, Any] = {
            "weights": "random",
            "init": "the architecture's default initialisation",
            "seed": loading.RANDOM_SEED,
        }
        caveats: list[str] = []
    elif kind == "trained-digits":
        net, provenance = _digits_lenet5()
        caveats = []
    else:
        net, provenance, caveats = _pretrained(model, variant)
    lenet = model == "lenet5"
    return _Built(
        net=net,
        name=models.display_name(model),
        model=model,
        source=kind,
        channels=1 if lenet else 3,
        input_size=32 if lenet else None,
        normalise=not lenet,
        provenance={**provenance, **loading._versions()},
        caveats=caveats,
    )


def _digits_lenet5() -> tuple[nn.Module, dict[str, Any]]:
    import torch

    from ...sources import digits

    state, info = digits.trained_lenet5()
    net = models.lenet5_class()()
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    provenance = {
        "weights": "trained on sklearn.datasets.load_digits (upscaled to 32x32)",
        "accuracy": info["accuracy"],
        "n_test": info["n_test"],
        "seed": digits.RECIPE["seed"],
    }
    return net, provenance


def _pretrained(
    model: str, variant: str | None = None
) -> tuple[nn.Module, dict[str, Any], list[str]]:
    info = pretrained.weights_info(model, variant) if variant else pretrained.weights_info(model)
    if variant is not None or not pretrained.hub_file_present(info.path()):
        info = pretrained.cached_variant(model, info if variant else None) or info
    path = pretrained.ensure_checkpoint(info)
    state = checkpoints.torch_load(path)
    caveats = []
    net = models.build_model(model, "cpu")
    if hasattr(net, "transform_input"):
        # torchvision turns this on with the pretrained weights: the model re-normalises its
        # ImageNet-normalised input to the (x - 0.5) / 0.5 the ported weights expect. It is a
        # per-channel affine map, inside the model: attributions stay in pixel units.
        net.transform_input = True
        caveats.append(
            "transform_input: the model re-normalises its input per channel (as torchvision "
            "does with these weights); gradients are per pixel of the [0, 1] image"
        )
    if isinstance(state, dict):
        state = {pretrained._densenet_key(k): v for k, v in state.items()}
    _load_state(net, state, path, model)
    provenance = {
        "weights": info.enum_name,
        "variant": info.variant,
        "url": info.url,
        "file": str(path),
    }
    return net, provenance, caveats


def _load_state(net: nn.Module, state: Any, path: Path, arch: str) -> None:
    if not isinstance(state, dict):
        raise KernelSpecError(f"{path.name} is not a state dict; save model.state_dict()")
    state = entries._find_state_dict(state, path.name)
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module.") :]: v for k, v in state.items()}  # DataParallel
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first if "size mismatch" in ln), first[-1])[:200]
        raise KernelSpecError(
            f"{path.name} does not fit {arch} ({detail}); give the architecture it was "
            "trained as with --arch"
        ) from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        what = (
            f"{len(missing)} missing (e.g. {missing[0]})"
            if missing
            else f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})"
        )
        raise KernelSpecError(
            f"{path.name} does not fit {arch}: {what} weights; give the architecture it was "
            "trained as with --arch"
        )


def _from_checkpoint(path: Path, arch: str) -> _Built:
    try:
        model = models.resolve_model(arch)
    except KernelSpecError as exc:
        raise KernelSpecError(f"--arch: {exc}") from None
    if not path.is_file():
        raise KernelSpecError(f"no such file: {path}; give the path of a state-dict file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except Exception as exc:
            raise checkpoints._damaged(path, exc) from exc
    elif suffix in (".npy", ".npz", ".onnx", ".keras", ".h5", ".json"):
        raise KernelSpecError(
            f"--arch needs a state dict (.pth, .pt, .ckpt, .bin, .safetensors), not {path.name}"
        )
    else:  # torch files of any name are recognised by torch.load from their first bytes
        state = checkpoints.torch_load(path)
    net = models.build_model(model, "cpu")
    _load_state(net, state, path, model)
    lenet = model == "lenet5"
    return _Built(
        net=net,
        name=f"{path.name} ({models.display_name(model)})",
        model=model,
        source="checkpoint",
        channels=1 if lenet else 3,
        input_size=32 if lenet else None,
        normalise=not lenet,
        provenance={"file": str(path.resolve()), "arch": model, **loading._versions()},
        caveats=["the input is normalised with ImageNet's mean and std"] if not lenet else [],
    )


def _one_layer(path: Path, layer: str | None) -> _Built:
    import torch
    from torch import nn

    found = checkpoints.read_kernels(path, layer)
    weights = found.weights
    n, c, h, w = weights.shape
    bias = found.bias
    geometry = found.geometry or {}
    groups = int(geometry.get("groups", 1))
    conv = nn.Conv2d(
        c * groups,
        n,
        (h, w),
        stride=tuple(geometry.get("stride", (1, 1))),
        padding=tuple(geometry.get("padding", (0, 0))),
        dilation=tuple(geometry.get("dilation", (1, 1))),
        groups=groups,
        bias=bias is not None,
    )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weights))
        if bias is not None:
            assert conv.bias is not None
            conv.bias.copy_(torch.from_numpy(bias))
    net = nn.Sequential()
    net.add_module(ONE_LAYER_CONV, conv)
    net.add_module("relu", nn.ReLU())
    return _Built(
        net=net,
        name=path.name,
        model=path.name,
        source=found.source,
        channels=c * groups,
        input_size=None,
        normalise=False,
        provenance={**found.provenance, "has_bias": bias is not None},
        caveats=[
            f"one-layer model: {found.key} (stride {conv.stride[0]}, padding {conv.padding[0]}"
            + (": read from the file" if geometry else ": the file does not record them")
            + ") followed by a ReLU"
        ],
        one_layer=True,
    )


def _from_onnx(path: Path) -> _Built:
    """An ONNX model as torch modules (onnx2torch), to explain any of its convolutions."""
    try:
        import onnx2torch
    except ImportError:
        raise KernelSpecError(
            f"explaining the layers of {path.name} needs onnx2torch: "
            "pip install 'napari-kernelspec[onnx2torch]'"
        ) from None
    try:
        net = onnx2torch.convert(str(path))
    except Exception as exc:  # an operator onnx2torch does not convert
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise KernelSpecError(
            f"{path.name} cannot be converted to torch ({reason}); its first layer can still "
            "be analysed and explained on its own"
        ) from None
    return _Built(
        net=net,
        name=path.name,
        model=path.name,
        source="checkpoint",
        channels=3,
        input_size=None,
        normalise=False,
        provenance={"file": str(path.resolve()), "format": "onnx", **loading._versions()},
        caveats=["the ONNX model converted with onnx2torch; the input is the image in [0, 1]"],
    )
