"""Model names, the LeNet5 architecture and convolution-layer discovery.

The eight seed models come first, under their canonical (torchvision-style) names and their
display names; every other torchvision classification model is accepted by its torchvision
name. Layers are discovered on PyTorch's ``meta`` device, so no weights are ever materialised
to find out which convolution runs first.

torch and torchvision are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..base.errors import KernelSpecError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "SEED_MODELS",
    "ConvLayer",
    "available_models",
    "build_model",
    "conv_layer",
    "conv_layers",
    "display_name",
    "first_conv",
    "known_conv",
    "lenet5_class",
    "resolve_model",
    "torchvision_models",
]

#: The eight seed models, in order: canonical name -> display name.
SEED_MODELS: dict[str, str] = {
    "alexnet": "AlexNet",
    "vgg16": "VGG16",
    "resnet50": "ResNet50",
    "lenet5": "LeNet5",
    "densenet121": "DenseNet121",
    "mobilenet_v2": "MobileNetV2",
    "googlenet": "GoogLeNet",
    "inception_v3": "InceptionV3",
}

#: Extra spellings (lower case, ``-`` already turned into ``_``) -> canonical name.
_ALIASES: dict[str, str] = {
    "mobilenetv2": "mobilenet_v2",
    "inceptionv3": "inception_v3",
    "lenet": "lenet5",
    "lenet_5": "lenet5",
    "vgg_16": "vgg16",
    "resnet_50": "resnet50",
    "densenet_121": "densenet121",
}

#: Meta-device input shapes tried, in order, to find the first convolution a forward pass runs.
_PROBE_SIZES = (224, 299, 32, 518)


@dataclass(frozen=True)
class ConvLayer:
    """A ``Conv2d`` module of a model, as found on the meta device.

    Attributes
    ----------
    name : str
        Module name (``"features.0"``); its weight's state-dict key is ``name + ".weight"``.
    stride, padding : (int, int)
        The convolution's stride and padding (row, column).
    shape : (int, int, int, int)
        Weight shape (N, C / groups, H, W).
    bias : bool
        Whether the convolution adds a bias (``<name>.bias`` in the state dict).
    dilation : (int, int)
        The convolution's dilation (row, column).
    groups : int
        The convolution's groups.
    """

    name: str
    stride: tuple[int, int]
    padding: tuple[int, int]
    shape: tuple[int, int, int, int]
    bias: bool = False
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


#: First convolutions of the eight seed models, as `_first_conv_layer` finds them (a test
#: checks that it still does). Known up front, a first load needs no architecture at all.
SEED_FIRST_CONVS: dict[str, ConvLayer] = {
    "alexnet": ConvLayer("features.0", (4, 4), (2, 2), (64, 3, 11, 11), bias=True),
    "vgg16": ConvLayer("features.0", (1, 1), (1, 1), (64, 3, 3, 3), bias=True),
    "resnet50": ConvLayer("conv1", (2, 2), (3, 3), (64, 3, 7, 7), bias=False),
    "lenet5": ConvLayer("conv1", (1, 1), (0, 0), (6, 1, 5, 5), bias=True),
    "densenet121": ConvLayer("features.conv0", (2, 2), (3, 3), (64, 3, 7, 7), bias=False),
    "mobilenet_v2": ConvLayer("features.0.0", (2, 2), (1, 1), (32, 3, 3, 3), bias=False),
    "googlenet": ConvLayer("conv1.conv", (2, 2), (3, 3), (64, 3, 7, 7), bias=False),
    "inception_v3": ConvLayer("Conv2d_1a_3x3.conv", (2, 2), (0, 0), (32, 3, 3, 3), bias=False),
}


def _lenet5_class() -> type:
    import torch
    from torch import nn

    class LeNet5(nn.Module):
        """Classic LeNet-5 for 1 x 32 x 32 inputs (LeCun et al., 1998).

        conv1 (1 -> 6, 5x5) -> tanh -> 2x2 average pool -> conv2 (6 -> 16, 5x5) -> tanh ->
        2x2 average pool -> fc1 (400 -> 120) -> tanh -> fc2 (120 -> 84) -> tanh -> fc3 (84 -> 10).

        Parameters
        ----------
        num_classes : int
            Number of outputs of the last layer.
        """

        def __init__(self, num_classes: int = 10) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, kernel_size=5, stride=1, padding=0)
            self.pool1 = nn.AvgPool2d(2)
            self.conv2 = nn.Conv2d(6, 16, kernel_size=5, stride=1, padding=0)
            self.pool2 = nn.AvgPool2d(2)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """(B, 1, 32, 32) images -> (B, num_classes) logits."""
            x = self.pool1(torch.tanh(self.conv1(x)))
            x = self.pool2(torch.tanh(self.conv2(x)))
            x = torch.flatten(x, 1)
            x = torch.tanh(self.fc1(x))
            x = torch.tanh(self.fc2(x))
            return self.fc3(x)

    return LeNet5


@functools.cache
def lenet5_class() -> type:
    """The `LeNet5` module class (built on first use, so importing this module needs no torch).

    Also available as ``models.LeNet5``.
    """
    return _lenet5_class()


def __getattr__(name: str) -> Any:
    # ``models.LeNet5`` is created on first access so that importing this module needs no torch.
    if name == "LeNet5":
        return lenet5_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def torchvision_models() -> tuple[str, ...]:
    """Names of torchvision's classification models, sorted.

    Returns
    -------
    tuple of str
        ``torchvision.models.list_models(module=torchvision.models)``.
    """
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def available_models(include_all: bool = False) -> list[str]:
    """Canonical names of the models `load_kernels` accepts.

    Parameters
    ----------
    include_all : bool
        If False, only the eight seed models. If True, the seed models followed by every other
        torchvision classification model, sorted.

    Returns
    -------
    list of str
    """
    names = list(SEED_MODELS)
    if include_all:
        names += [n for n in torchvision_models() if n not in SEED_MODELS]
    return names


def display_name(model: str) -> str:
    """Human-readable name: the seed display name (``"MobileNetV2"``) or the torchvision name."""
    return SEED_MODELS.get(model, model)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _try_resolve(name: str) -> str | None:
    key = _normalise(name)
    if key in SEED_MODELS:
        return key
    for canonical, shown in SEED_MODELS.items():
        if key == shown.lower():
            return canonical
    if key in _ALIASES:
        return _ALIASES[key]
    if key in torchvision_models():
        return key
    return None


def resolve_model(name: str) -> str:
    """Canonical model name for a user's spelling.

    Parameters
    ----------
    name : str
        A seed model (``"MobileNetV2"``, ``"mobilenet_v2"``, ``"mobilenetv2"``), case-insensitive,
        or any torchvision classification model name.

    Returns
    -------
    str
        The canonical name (``"mobilenet_v2"``).

    Raises
    ------
    KernelSpecError
        If the name is not a known model; the message suggests close matches.
    """
    if not isinstance(name, str):
        raise KernelSpecError(f"a model name must be a string, got {type(name).__name__}")
    found = _try_resolve(name)
    if found is None:
        raise unknown_model_error(name)
    return found


def unknown_model_error(name: str) -> KernelSpecError:
    """The error for a model name that is not known, with close matches."""
    key = _normalise(name)
    candidates = list(SEED_MODELS) + [s.lower() for s in SEED_MODELS.values()]
    candidates += [n for n in torchvision_models() if n not in SEED_MODELS]
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    close = list(dict.fromkeys(_try_resolve(c) or c for c in close))
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return KernelSpecError(
        f"unknown model {name!r}: {hint}run `kernelspec models --all` to list every model, "
        "or give the path of a weights file"
    )


def build_model(model: str, device: str = "meta") -> nn.Module:
    """Build a model's architecture (no pretrained weights) on `device`.

    Parameters
    ----------
    model : str
        Canonical model name (see `resolve_model`).
    device : str
        ``"meta"`` for shapes only (nothing is allocated), ``"cpu"`` for real initial weights.

    Returns
    -------
    torch.nn.Module
        The model in eval mode.
    """
    import torch

    if device != "meta":
        with torch.device(device):
            return _construct(model).eval()
    try:
        with torch.device("meta"):
            return _construct(model).eval()
    except NotImplementedError:
        # A few builders (regnet) compute layer widths with tensors, which fails on the meta
        # device: build normally but move each parameter and buffer to meta as it is registered.
        with _meta_parameters():
            return _construct(model).eval()


def _construct(model: str) -> nn.Module:
    if model == "lenet5":
        return lenet5_class()()
    from torchvision.models import get_model

    kwargs: dict[str, Any] = {}
    if model in ("googlenet", "inception_v3"):
        # Explicit: torchvision warns when left to its (changing) default.
        kwargs["init_weights"] = True
    return get_model(model, weights=None, **kwargs)


@contextlib.contextmanager
def _meta_parameters() -> Iterator[None]:
    from torch import nn

    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def parameter(self: nn.Module, name: str, param: Any) -> None:
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self: nn.Module, name: str, tensor: Any, persistent: bool = True) -> None:
        if tensor is not None:
            tensor = tensor.to("meta")
        register_buffer(self, name, tensor, persistent=persistent)

    nn.Module.register_parameter = parameter  # type: ignore[method-assign]
    nn.Module.register_buffer = buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def _pair(value: Any, kernel: tuple[int, ...] = (1, 1), dilation: Any = (1, 1)) -> tuple[int, int]:
    if isinstance(value, str):  # Conv2d(padding="same" / "valid")
        if value == "valid":
            return (0, 0)
        dil = dilation if isinstance(dilation, tuple) else (dilation, dilation)
        return (dil[0] * (kernel[0] - 1) // 2, dil[1] * (kernel[1] - 1) // 2)
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def _describe(name: str, conv: Any) -> ConvLayer:
    shape = tuple(int(s) for s in conv.weight.shape)
    return ConvLayer(
        name=name,
        stride=_pair(conv.stride),
        padding=_pair(conv.padding, conv.kernel_size, conv.dilation),
        shape=shape,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        dilation=_pair(conv.dilation),
        groups=int(conv.groups),
    )


@functools.cache
def conv_layers(model: str) -> tuple[ConvLayer, ...]:
    """Every ``Conv2d`` of a model, in module-registration order (found on the meta device).

    Parameters
    ----------
    model : str
        Canonical model name.

    Returns
    -------
    tuple of ConvLayer
    """
    from torch import nn

    net = build_model(model, "meta")
    return tuple(
        _describe(name, mod) for name, mod in net.named_modules() if isinstance(mod, nn.Conv2d)
    )


class _FirstConvReached(Exception):
    """Raised from a forward pre-hook to stop the meta forward pass at the first convolution."""


@functools.cache
def _first_conv_layer(model: str) -> ConvLayer:
    import torch
    from torch import nn

    net = build_model(model, "meta")
    convs = {id(mod): name for name, mod in net.named_modules() if isinstance(mod, nn.Conv2d)}
    if not convs:
        raise KernelSpecError(f"{display_name(model)} has no Conv2d layer to show")
    hit: list[str] = []

    def hook(module: nn.Module, args: Any) -> None:
        hit.append(convs[id(module)])
        raise _FirstConvReached

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if id(m) in convs]
    try:
        channels = 1 if model == "lenet5" else 3
        sizes = (32,) if model == "lenet5" else _PROBE_SIZES
        for size in sizes:
            x = torch.empty(1, channels, size, size, device="meta")
            try:
                with torch.no_grad():
                    net(x)
            except _FirstConvReached:
                break
            except Exception:  # this input size does not suit the model: try the next one
                continue
    finally:
        for handle in handles:
            handle.remove()
    # If no probe reached a convolution, fall back on the first one registered.
    name = hit[0] if hit else next(iter(convs.values()))
    return _describe(name, net.get_submodule(name))


def first_conv(
    model: str,
) -> tuple[str, tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    """The first ``Conv2d`` that a forward pass of `model` executes.

    The model is built on the meta device and a meta input is run through it; a forward
    pre-hook stops the pass at the first convolution. Results are cached.

    Parameters
    ----------
    model : str
        A model name (any spelling `resolve_model` accepts).

    Returns
    -------
    layer_name : str
    stride : (int, int)
    padding : (int, int)
    weight_shape : (int, int, int, int)
        (N, C, H, W).
    """
    layer = conv_layer(resolve_model(model))
    return layer.name, layer.stride, layer.padding, layer.shape


def known_conv(model: str, layer: str | None = None) -> ConvLayer | None:
    """The seed table's entry for `model`'s `layer` if the table knows it (no torch import).

    Parameters
    ----------
    model : str
        Canonical model name.
    layer : str, optional
        None (the first convolution) or its module name.

    Returns
    -------
    ConvLayer or None
    """
    conv = SEED_FIRST_CONVS.get(model)
    if conv is None or layer is None:
        return conv
    name = layer.strip().removesuffix(".weight")
    return conv if name == conv.name else None


def conv_layer(model: str, layer: str | None = None) -> ConvLayer:
    """The convolution named `layer` of `model`, or its first convolution if `layer` is None.

    Parameters
    ----------
    model : str
        Canonical model name.
    layer : str, optional
        Module name (``"layer1.0.conv1"``); a trailing ``".weight"`` is accepted.

    Returns
    -------
    ConvLayer

    Raises
    ------
    KernelSpecError
        If `layer` is not a ``Conv2d`` of the model; the message lists some that are.
    """
    if layer is None:
        return SEED_FIRST_CONVS.get(model) or _first_conv_layer(model)
    name = layer.strip()
    if name.endswith(".weight"):
        name = name[: -len(".weight")]
    layers = conv_layers(model)
    for conv in layers:
        if conv.name == name:
            return conv
    names = [c.name for c in layers]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    shown = list(dict.fromkeys(close + names[:5]))
    more = f" (and {len(names) - len(shown)} more)" if len(names) > len(shown) else ""
    raise KernelSpecError(
        f"{display_name(model)} has no convolution layer {layer!r}; "
        f"give one of: {', '.join(shown)}{more}"
    )
