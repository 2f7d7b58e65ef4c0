"""A model's network up to one convolution, and where its output pixels look in the image.

The geometry of a layer is computed analytically on the FX graph that torchvision's
``create_feature_extractor`` traces up to the layer: every convolution and pooling on the
way composes kernel, stride, padding and dilation (Araujo et al., Distill 2019, "Computing
receptive fields of convolutional neural networks"); element-wise ops and concatenations
take the largest receptive field of their inputs. A test checks it against the gradient of
single output pixels.

torch and torchvision are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError
from ..sources import models

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "MODEL_SOURCES",
    "Geometry",
    "Network",
    "conv_geometry",
    "has_network",
    "input_normalisation",
    "is_first_layer",
    "layer_geometry",
    "network",
]

#: Bank sources that come from a model architecture (everything else is a bare file).
MODEL_SOURCES = ("pretrained", "random", "trained-digits")
#: torchvision's pretrained GoogLeNet / InceptionV3 turn on ``transform_input``: their first
#: convolution sees ``(x - 0.5) / 0.5`` of the [0, 1] image.
_TRANSFORM_INPUT = ("googlenet", "inception_v3")
_NETWORK_CACHE_SIZE = 2


@dataclass(frozen=True)
class Geometry:
    """Where the output pixels of a layer look in its input image.

    Attributes
    ----------
    scale : (2,) tuple of float
        Image pixels between neighbouring output pixels (the total stride), (row, column).
    translate : (2,) tuple of float
        Image position of output pixel (0, 0)'s receptive-field centre; output pixel
        (i, j) is centred at ``translate + (i, j) * scale``.
    receptive_field : (2,) tuple of int
        Receptive-field height and width in image pixels.
    local : bool
        False if a global operation (adaptive pooling, a linear layer) lies on the way, so
        that an output pixel depends on the whole image and tiles cannot reproduce it.
    """

    scale: tuple[float, float]
    translate: tuple[float, float]
    receptive_field: tuple[int, int]
    local: bool = True

    @property
    def reach(self) -> tuple[int, int]:
        """Image pixels the receptive field of output pixel 0 extends before pixel 0 (>= 0)."""
        return tuple(  # type: ignore[return-value]
            max(0, math.ceil((rf - 1) / 2 - t))
            for rf, t in zip(self.receptive_field, self.translate, strict=True)
        )


def conv_geometry(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> Geometry:
    """Geometry of a single convolution applied to the image.

    ``scale = stride``, ``translate = (k - 1) / 2 * dilation - padding`` and receptive field
    ``(k - 1) * dilation + 1``.
    """
    identity = Geometry((1.0, 1.0), (0.0, 0.0), (1, 1))
    return _compose(identity, kernel, stride, padding, dilation)


def has_network(bank: KernelBank) -> bool:
    """Whether `bank` comes with an architecture: a model, or a file read with its ``arch``."""
    return bank.source in MODEL_SOURCES or isinstance(bank.provenance.get("arch"), str)


def input_normalisation(
    bank: KernelBank,
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, str]:
    """The weights' own input normalisation: (mean, std, description).

    ImageNet mean / std for torchvision models (pretrained or random), ``(x - 0.5) / 0.5`` for
    the first layer of pretrained GoogLeNet / InceptionV3 (their ``transform_input``), none
    (plain [0, 1]) for LeNet5 and for files.
    """
    from .images import IMAGENET_MEAN, IMAGENET_STD

    with_arch = bank.source == "checkpoint" and has_network(bank)
    if (bank.source not in ("pretrained", "random") and not with_arch) or bank.model == "lenet5":
        return None, None, "[0, 1]"
    if bank.source == "pretrained" and bank.model in _TRANSFORM_INPUT and is_first_layer(bank):
        return (0.5,) * 3, (0.5,) * 3, "(x - 0.5) / 0.5 (the weights' transform_input)"
    return IMAGENET_MEAN, IMAGENET_STD, "ImageNet mean / std"


def is_first_layer(bank: KernelBank) -> bool:
    """True for a bank that runs on the image alone: a model's first convolution, or a file."""
    if not has_network(bank):
        return True
    return models.conv_layer(bank.model, None).name == bank.layer


# --- geometry through a network ----------------------------------------------------------


_SizeOps = ("Conv2d", "MaxPool2d", "AvgPool2d")
_GLOBAL_MODULES = ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Linear", "Flatten", "Upsample")
_GLOBAL_FUNCTIONS = (
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "flatten",
    "linear",
    "interpolate",
    "mean",
)


def _as_pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _compose(g: Geometry, kernel: Any, stride: Any, padding: Any, dilation: Any) -> Geometry:
    """`g` followed by one convolution or pooling (Araujo et al.'s recurrence, per axis)."""
    k = np.array(_as_pair(kernel))
    s = np.array(_as_pair(stride or kernel))
    d = np.array(_as_pair(dilation))
    if isinstance(padding, str):  # Conv2d(padding="same" / "valid")
        padding = (0, 0) if padding == "valid" else tuple(d * (k - 1) // 2)
    p = np.array(_as_pair(padding))
    jump = np.array(g.scale)
    return Geometry(
        scale=_floats(jump * s),
        translate=_floats(np.array(g.translate) + ((k - 1) * d / 2 - p) * jump),
        receptive_field=tuple(int(v) for v in np.array(g.receptive_field) + (k - 1) * d * jump),  # type: ignore[arg-type]
        local=g.local,
    )


def _floats(values: np.ndarray) -> tuple[float, float]:
    return float(values[0]), float(values[1])


def _merge(inputs: list[Geometry]) -> Geometry:
    """Geometry of an op on several same-grid maps (add, cat, mul): the widest field."""
    first = inputs[0]
    local = all(g.local for g in inputs)
    for g in inputs[1:]:
        if g.scale != first.scale or not np.allclose(g.translate, first.translate):
            local = False  # maps on different grids: no single geometry
    widest = max(inputs, key=lambda g: g.receptive_field[0] * g.receptive_field[1])
    return Geometry(first.scale, first.translate, widest.receptive_field, local)


def graph_geometry(graph_module: Any, node_name: str) -> Geometry:
    """Walk an FX graph from its input to `node_name`, composing every conv / pool.

    Parameters
    ----------
    graph_module : torch.fx.GraphModule
        From ``create_feature_extractor`` (submodules keep their qualified names).
    node_name : str
        The node whose output geometry is wanted.
    """
    import torch.nn.functional as F

    geo: dict[str, Geometry] = {}
    identity = Geometry((1.0, 1.0), (0.0, 0.0), (1, 1))
    functions = {
        F.conv2d: "conv",
        F.max_pool2d: "pool",
        F.avg_pool2d: "pool",
    }
    for node in graph_module.graph.nodes:
        inputs = [geo[a.name] for a in node.all_input_nodes if a.name in geo]
        if node.op == "placeholder":
            geo[node.name] = identity
            continue
        if node.op in ("get_attr", "output") or not inputs:
            continue
        g = _merge(inputs)
        if node.op == "call_module":
            mod = graph_module.get_submodule(node.target)
            kind = type(mod).__name__
            if kind in _SizeOps or isinstance(mod, _size_op_types()):
                g = _compose(
                    g,
                    mod.kernel_size,
                    mod.stride,
                    mod.padding,
                    getattr(mod, "dilation", 1),
                )
            elif kind in _GLOBAL_MODULES:
                g = Geometry(g.scale, g.translate, g.receptive_field, False)
        elif node.op == "call_function" and node.target in functions:
            kwargs = dict(node.kwargs)
            args = list(node.args)
            if functions[node.target] == "conv":  # conv2d(input, weight, bias, stride, pad, dil)
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                shape = _attr_shape(graph_module, weight)
                names = ("bias", "stride", "padding", "dilation")
                opts = dict(zip(names, args[2:], strict=False)) | kwargs
                g = _compose(
                    g,
                    shape[-2:],
                    opts.get("stride", 1),
                    opts.get("padding", 0),
                    opts.get("dilation", 1),
                )
            else:  # max_pool2d(input, k, stride, padding, dilation, ...), avg_pool2d(.., ceil)
                names = ("kernel_size", "stride", "padding")
                if node.target is F.max_pool2d:
                    names += ("dilation",)
                opts = dict(zip(names, args[1:], strict=False)) | kwargs
                g = _compose(
                    g,
                    opts["kernel_size"],
                    opts.get("stride") or opts["kernel_size"],
                    opts.get("padding", 0),
                    opts.get("dilation", 1),
                )
        elif node.op in ("call_function", "call_method"):
            name = getattr(node.target, "__name__", str(node.target))
            if name in _GLOBAL_FUNCTIONS:
                g = Geometry(g.scale, g.translate, g.receptive_field, False)
        geo[node.name] = g
        if node.name == node_name:
            return g
    raise KernelSpecError(f"the traced network has no node {node_name!r}")


def _attr_shape(graph_module: Any, node: Any) -> tuple[int, ...]:
    return tuple(graph_module.get_parameter(node.target).shape)


@functools.cache
def _size_op_types() -> tuple[type, ...]:
    from torch import nn

    return (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _extractor(net: nn.Module, layer: str) -> Any:
    """A GraphModule computing ``{"out": <output of module layer>}`` and nothing after it.

    torchvision's ``create_feature_extractor`` first; it keeps torchvision's own blocks
    (``Conv2dNormActivation``, ...) as leaves, so a convolution inside one (MobileNet,
    EfficientNet) is not a node there: then a plain FX trace that goes into them.
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    try:
        with warnings.catch_warnings():  # "nodes in eval mode are a subsequence of train mode"
            warnings.simplefilter("ignore", UserWarning)
            return create_feature_extractor(net, return_nodes={layer: "out"})
    except Exception as exc:  # tracing failure or not a node: try the plain trace
        first = exc
    try:
        return _trace_to(net, layer)
    except Exception:
        raise KernelSpecError(
            f"cannot trace the network up to {layer!r} ({type(first).__name__}: "
            f"{str(first).splitlines()[0]}); pick another layer"
        ) from None


def _trace_to(net: nn.Module, layer: str) -> Any:
    import torchvision
    from torch import fx

    graph = fx.Tracer(autowrap_modules=(math, torchvision.ops)).trace(net.eval())
    cut = fx.Graph()
    env: dict[Any, Any] = {}
    for node in graph.nodes:
        if node.op == "output":
            break
        env[node] = cut.node_copy(node, lambda n: env[n])
        if node.op == "call_module" and node.target == layer:
            cut.output({"out": env[node]})
            break
    else:
        raise ValueError(f"no call of {layer!r} in the traced graph")
    if not any(n.op == "output" for n in cut.nodes):
        raise ValueError(f"no call of {layer!r} in the traced graph")
    module = fx.GraphModule(net, cut)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module


@functools.lru_cache(maxsize=64)
def layer_geometry(model: str, layer: str) -> Geometry:
    """Geometry of convolution `layer` of `model` (its output, before any activation).

    The model is built and traced on the meta device (no weights), so this is cheap.
    """
    net = models.build_model(model, "meta")
    gm = _extractor(net, layer)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    node = output.args[0]["out"]
    return graph_geometry(gm, node.name)


@functools.lru_cache(maxsize=64)
def _meta_extractor(model: str, layer: str) -> Any:
    return _extractor(models.build_model(model, "meta"), layer)


def layer_output_shape(
    model: str, layer: str, channels: int, height: int, width: int
) -> tuple[int, ...] | None:
    """(N, H', W') of `layer` for an image of (height, width), or None if the image is too small.

    Runs the traced network on a meta tensor: shapes only, no arithmetic.
    """
    import torch

    gm = _meta_extractor(model, layer)
    try:
        with torch.no_grad():
            out = gm(torch.empty(1, channels, height, width, device="meta"))["out"]
    except (RuntimeError, ValueError):
        return None
    shape = tuple(int(s) for s in out.shape[1:])
    return shape if min(shape) > 0 else None


# --- the network with the bank's weights --------------------------------------------------


@dataclass(frozen=True, eq=False)
class Network:
    """A model up to one convolution, with the weights the bank came from.

    Attributes
    ----------
    module : torch.fx.GraphModule
        ``module(x)["out"]`` is the layer's output for a (B, C, H, W) float32 input.
    in_channels : int
        Channels of the image input.
    geometry : Geometry
    description : str
        What was built (for the result's ``meta``).
    """

    module: Any
    in_channels: int
    geometry: Geometry
    description: str


_networks: OrderedDict[tuple[Any, ...], Network] = OrderedDict()
_networks_lock = threading.Lock()


def network(bank: KernelBank) -> Network:
    """The model of `bank` up to `bank.layer`, holding the very weights `bank` was read from.

    Parameters
    ----------
    bank : KernelBank
        A model's layer (source pretrained, random or trained-digits).

    Returns
    -------
    Network
        The last two are kept, so a second image through the same layer builds nothing.

    Raises
    ------
    KernelSpecError
        For a file (no architecture to run), or if the network's weights at the layer are not
        the bank's (a stale cache).
    """
    if not has_network(bank):
        raise KernelSpecError(
            f"{bank.display_name} is a weights file: it has no network to run before "
            f"{bank.layer!r}; give a model name to see a deeper layer inside its network"
        )
    key = (bank.model, bank.source, bank.layer, bank.provenance.get("file"))
    with _networks_lock:
        if key in _networks:
            _networks.move_to_end(key)
            return _networks[key]
    net, description = _build(bank)
    layer_weight = net.get_submodule(bank.layer).weight.detach().numpy()
    if layer_weight.shape != bank.weights.shape or not np.allclose(
        layer_weight, bank.weights, rtol=1e-5, atol=1e-6
    ):
        raise KernelSpecError(
            f"the rebuilt {bank.display_name} does not hold the bank's weights at {bank.layer}; "
            "the kernel cache is stale: delete it (KERNELSPEC_CACHE) and load again"
        )
    gm = _extractor(net, bank.layer)
    in_channels = int(models.conv_layer(bank.model, None).shape[1])  # first convs: groups 1
    result = Network(gm, in_channels, layer_geometry(bank.model, bank.layer), description)
    with _networks_lock:
        _networks[key] = result
        while len(_networks) > _NETWORK_CACHE_SIZE:
            _networks.popitem(last=False)
    return result


def _build(bank: KernelBank) -> tuple[nn.Module, str]:
    import torch

    model = bank.model
    if bank.source == "checkpoint":  # a file read with its architecture
        from ..sources import loading

        net = loading.file_network(bank)
        return net.eval(), f"{bank.display_name} as {models.display_name(model)}"
    if bank.source == "random":
        from ..sources.loading import RANDOM_SEED

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            net = models.build_model(model, "cpu")
        return net, f"{models.display_name(model)} with random weights (seed {RANDOM_SEED})"
    if bank.source == "trained-digits":
        from ..sources import digits

        state, _ = digits.trained_lenet5()
        net = models.build_model(model, "cpu")
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        return net.eval(), "LeNet5 trained on scikit-learn's digits"
    from ..sources import pretrained
    from ..sources.checkpoints import torch_load

    variant = bank.provenance.get("variant")
    if isinstance(variant, str):
        info = pretrained.weights_info(model, variant)
        info = pretrained.cached_variant(model, info) or info
    else:
        info = pretrained.weights_info(model)
    path = pretrained.ensure_checkpoint(info)
    state = torch_load(path)
    if not isinstance(state, dict):
        raise KernelSpecError(f"{path} is not a state dict; delete it and load again")
    state = {pretrained._densenet_key(k): v for k, v in state.items()}
    net = models.build_model(model, "meta")
    try:
        net.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise KernelSpecError(
            f"{path} does not fit {models.display_name(model)} ({str(exc).splitlines()[0]}); "
            "delete it and load again"
        ) from None
    if any(t.is_meta for t in (*net.parameters(), *net.buffers())):
        net = models.build_model(model, "cpu")
        net.load_state_dict(state)
    if model in _TRANSFORM_INPUT:
        net.transform_input = True  # as torchvision's builder does for these weights
    return net.eval(), f"{models.display_name(model)} with {info.enum_name}"
