"""Which pixels of an image drive one filter: deconvnet, guided backprop, gradient, occlusion.

Captum computes them (``NeuronDeconvolution``, ``NeuronGuidedBackprop``, ``NeuronGradient``,
``Occlusion``); this module picks the neuron (a filter's whole map, or one unit ``at=(y, x)``)
and deals with what Captum leaves to its users:

- Captum changes the backward pass of ``nn.ReLU`` *modules* only. ``nn.ReLU6`` modules
  (MobileNetV2) are turned into a ReLU subclass at build time (see `model.py`), so Captum hooks
  them; functional ReLUs (``F.relu`` in torchvision's GoogLeNet and InceptionV3) are routed,
  for the duration of one attribution, through our own ReLU whose backward applies the same
  rule (`_FunctionalReLURule`). Other activations (tanh, SiLU, GELU, Hardswish...) have no
  guided or deconvnet rule: their plain gradient is used, and the result says so.
- In-place ReLUs are made out-of-place when the model is built (Captum's tensor hooks cannot
  follow in-place ops).
- A ReLU module called several times (ResNet's blocks): Captum hooks every call's tensors;
  a test checks that the result equals the one of a net with one module per call.
- torchvision GoogLeNet / InceptionV3 re-normalise their input (``transform_input``): a
  per-channel affine map inside the model; attributions stay per pixel of the [0, 1] image.

The objective of filter ``k`` is the one `maximize` uses: the mean of its rectified map (see
`maximize.channel_objective`), or the pre-activation of the unit ``at=(y, x)`` of the map.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...base.errors import KernelSpecError
from .engine import _Stop
from .maximize import channel_objective, check_at, layer_output
from .model import drive

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .model import ExplainModel

__all__ = [
    "ATTRIBUTION_METHODS",
    "METHODS",
    "activation_audit",
    "attribute",
    "iter_attribute",
    "prepare_image",
]

#: Every method of `kernelspec explain`, in the order the CLI and the widget list them.
METHODS = ("maximize", "deconvnet", "guided", "gradient", "occlusion")
#: The methods that explain a filter on an image.
ATTRIBUTION_METHODS = METHODS[1:]

#: Largest image (pixels) an attribution accepts.
MAX_PIXELS = 4096 * 4096

_RELU_NAMES = {"relu", "relu_"}
_OTHER_ACTIVATIONS = {
    "tanh",
    "sigmoid",
    "silu",
    "gelu",
    "hardswish",
    "hardsigmoid",
    "mish",
    "elu",
    "selu",
    "celu",
    "leaky_relu",
    "softplus",
    "relu6",
    "hardtanh",
}


# --- images --------------------------------------------------------------------------------


def prepare_image(image: Any, model: ExplainModel) -> tuple[np.ndarray, dict[str, Any]]:
    """An image as the model's input: (C, H, W) float32 in [0, 1].

    Parameters
    ----------
    image : (H, W), (H, W, 3) or (H, W, 4) array_like
        uint8 / uint16 (scaled by their range) or float (kept if within [0, 1], else
        min-max scaled). Grey is repeated for 3-channel models, RGB averaged for 1-channel
        ones, alpha dropped. A model with a fixed input size (LeNet5: 32) gets it resized.

    Returns
    -------
    pixels : (C, H, W) ndarray of float32
    notes : dict
        JSON-safe: ``original_shape``, ``scaled`` (how values were brought to [0, 1]),
        ``resized_to`` when resized.
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "fiub":
        raise KernelSpecError(f"the image has dtype {arr.dtype}; give a numeric image")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]
    elif arr.ndim != 2:
        raise KernelSpecError(
            f"the image has shape {arr.shape}; give a 2-D grey or (H, W, 3) RGB image"
        )
    h, w = arr.shape[:2]
    if h * w > MAX_PIXELS or min(h, w) < 1:
        raise KernelSpecError(f"the image is {h}x{w} pixels; give one of at most 4096x4096")
    notes: dict[str, Any] = {"original_shape": [int(h), int(w)]}
    if arr.dtype.kind in "ub" and arr.dtype != np.bool_:
        x = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
        notes["scaled"] = f"divided by {np.iinfo(arr.dtype).max}"
    else:
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise KernelSpecError("the image holds NaN or Inf values; give a finite image")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
            notes["scaled"] = f"min-max from [{lo:.4g}, {hi:.4g}]"
    x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
    if model.channels == 1 and x.shape[0] == 3:
        x = x.mean(axis=0, keepdims=True)
    elif model.channels == 3 and x.shape[0] == 1:
        x = np.repeat(x, 3, axis=0)
    elif model.channels != x.shape[0]:
        raise KernelSpecError(
            f"{model.name} takes {model.channels}-channel input; give a grey or RGB image"
        )
    if model.input_size is not None and (h, w) != (model.input_size,) * 2:
        import torch
        import torch.nn.functional as F

        size = (model.input_size, model.input_size)
        x = F.interpolate(torch.from_numpy(x)[None], size=size, mode="bilinear", antialias=True)
        x = x[0].numpy()
        notes["resized_to"] = list(size)
    return np.ascontiguousarray(x, dtype=np.float32), notes


# --- what Captum does not see --------------------------------------------------------------


def _functional_name(func: Any) -> str:
    return str(getattr(func, "__name__", "")).lower()


class _Tracker:
    """Counts activation calls made outside activation modules during forward passes."""

    def __init__(self, net: nn.Module) -> None:
        from torch import nn

        self.depth = 0
        self.module_calls: dict[str, int] = {}
        self.other_modules: dict[str, int] = {}
        self.functional_relu = 0
        self.other_functional: dict[str, int] = {}
        self._handles: list[Any] = []
        acts = (
            nn.ReLU,
            nn.ReLU6,
            nn.Hardtanh,
            nn.SiLU,
            nn.GELU,
            nn.Hardswish,
            nn.Hardsigmoid,
            nn.Mish,
            nn.ELU,
            nn.SELU,
            nn.CELU,
            nn.LeakyReLU,
            nn.Sigmoid,
            nn.Tanh,
            nn.Softplus,
        )
        for name, mod in net.named_modules():
            if isinstance(mod, acts):
                self._handles.append(mod.register_forward_pre_hook(self._enter(name, mod)))
                self._handles.append(mod.register_forward_hook(self._leave))

    def _enter(self, name: str, mod: Any) -> Callable[..., None]:
        from torch import nn

        is_relu = isinstance(mod, nn.ReLU)

        def hook(module: Any, args: Any) -> None:
            self.depth += 1
            if is_relu:
                self.module_calls[name] = self.module_calls.get(name, 0) + 1
            else:
                kind = type(module).__name__
                self.other_modules[kind] = self.other_modules.get(kind, 0) + 1

        return hook

    def _leave(self, module: Any, args: Any, out: Any) -> None:
        self.depth -= 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _rule_relu_class() -> type:
    import torch

    class RuleReLU(torch.autograd.Function):
        """ReLU whose backward applies guided backprop's or the deconvnet's rule."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, deconv: bool) -> torch.Tensor:
            out = x.clamp(min=0)
            ctx.deconv = deconv
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            if ctx.deconv:  # deconvnet: rectify the signal coming back, ignore the forward
                return grad.clamp(min=0), None
            (out,) = ctx.saved_tensors  # guided: the ReLU's mask, then rectify
            return (grad * (out > 0)).clamp(min=0), None

    return RuleReLU


@contextlib.contextmanager
def _functional_relu_rule(tracker: _Tracker, rule: str | None) -> Iterator[None]:
    """Count (and for `rule` "guided" / "deconv", re-route) functional activation calls."""
    from torch.overrides import TorchFunctionMode

    relu_cls = _rule_relu_class() if rule else None

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
            kwargs = kwargs or {}
            name = _functional_name(func)
            if tracker.depth == 0 and name in _RELU_NAMES:
                tracker.functional_relu += 1
                if relu_cls is not None:
                    return relu_cls.apply(args[0], rule == "deconv")
            elif tracker.depth == 0 and name.rstrip("_") in _OTHER_ACTIVATIONS:
                key = name.rstrip("_")
                tracker.other_functional[key] = tracker.other_functional.get(key, 0) + 1
            return func(*args, **kwargs)

    with Mode():
        yield


def activation_audit(model: ExplainModel, layer: str, size: tuple[int, int]) -> dict[str, Any]:
    """The activations a forward pass up to `layer` runs, as Captum's ReLU rules see them.

    Returns
    -------
    dict
        ``relu_module_calls`` (int), ``reused_relu_modules`` (names called more than once),
        ``functional_relu_calls`` (int), ``other_activations`` (name -> calls, modules and
        functions).
    """
    import torch

    tracker = _Tracker(model.net)
    try:
        x = torch.zeros(1, model.channels, *size, device=model.device)
        with torch.no_grad(), _functional_relu_rule(tracker, None):
            layer_output(model, layer, x)
    finally:
        tracker.remove()
    others = dict(tracker.other_modules)
    for key, n in tracker.other_functional.items():
        others[key] = others.get(key, 0) + n
    return {
        "relu_module_calls": sum(tracker.module_calls.values()),
        "reused_relu_modules": sorted(k for k, n in tracker.module_calls.items() if n > 1),
        "functional_relu_calls": tracker.functional_relu,
        "other_activations": others,
    }


def _caveats(method: str, audit: dict[str, Any], model: ExplainModel) -> list[str]:
    notes = []
    if method in ("guided", "deconvnet"):
        rule = "guided backprop" if method == "guided" else "the deconvnet"
        relus = audit["relu_module_calls"] + audit["functional_relu_calls"]
        if audit["functional_relu_calls"]:
            notes.append(
                f"functional ReLU: {audit['functional_relu_calls']} F.relu calls, which "
                f"Captum does not see, were given {rule}'s rule by kernelspec"
            )
        if any(isinstance(m, _clamped_relu_class()) for m in model.net.modules()):
            notes.append("ReLU6 modules get the ReLU rule (gradient masked to 0 < x < 6)")
        if audit["other_activations"]:
            shown = ", ".join(f"{k} x{n}" for k, n in sorted(audit["other_activations"].items()))
            if relus == 0:
                notes.append(
                    f"no ReLU before this layer ({shown}): {rule} equals the gradient here"
                )
            else:
                notes.append(f"non-ReLU activations ({shown}) pass their plain gradient")
        elif relus == 0:
            notes.append(f"no activation before this layer: {rule} equals the gradient here")
        if audit["reused_relu_modules"]:
            notes.append(
                f"{len(audit['reused_relu_modules'])} ReLU modules run several times "
                "(each call is hooked separately)"
            )
    return notes


def _clamped_relu_class() -> type:
    from .model import clamped_relu_class

    return clamped_relu_class()


# --- attribution ---------------------------------------------------------------------------


def fast_occlusion_off() -> bool:
    """True when ``KERNELSPEC_CAPTUM_OCCLUSION=1``: always Captum's path (for comparisons)."""
    import os

    return os.environ.get("KERNELSPEC_CAPTUM_OCCLUSION", "") == "1"


def _neuron(filter_index: int, at: tuple[int, int] | None) -> Any:
    if at is not None:
        return (filter_index, at[0], at[1])

    def selector(out: torch.Tensor) -> torch.Tensor:
        return channel_objective(out[:, filter_index])

    return selector


def _up_to_layer(model: ExplainModel, layer: str) -> nn.Module:
    """A module that runs the net up to `layer` and returns its output (Captum's model)."""
    from torch import nn

    conv = model.conv(layer)

    class UpTo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model.net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Registered at each call, so Captum's own layer hook (registered earlier) runs
            # first and records the output; this one then stops the pass.
            store: list[torch.Tensor] = []

            def hook(module: Any, args: Any, out: torch.Tensor) -> None:
                store.append(out)
                raise _Stop

            handle = conv.register_forward_hook(hook)
            try:
                self.net(x)
            except _Stop:
                pass
            finally:
                handle.remove()
            return store[0]

    return UpTo()


def iter_attribute(
    model: ExplainModel,
    layer: str,
    filters: Sequence[int],
    image: Any,
    method: str = "guided",
    *,
    at: Any = None,
    window: int = 8,
    window_stride: int = 1,
    baseline: float = 0.5,
    batch: int = 16,
) -> Generator[tuple[int, int], None, dict[str, Any]]:
    """`attribute` as a generator: yields ``(done, total)`` filters, returns its result."""
    import torch

    if method not in ATTRIBUTION_METHODS:
        raise KernelSpecError(
            f"method must be one of {', '.join(ATTRIBUTION_METHODS)}, got {method!r}"
        )
    layer = model.resolve_layer(layer)
    filters = model.check_filters(layer, filters)
    pixels, notes = prepare_image(image, model)
    c, h, w = pixels.shape
    unit = check_at(model, layer, (h, w), at)
    audit = activation_audit(model, layer, (h, w))
    parameters: dict[str, Any] = {
        "objective": (
            f"unit ({unit[0]}, {unit[1]}) pre-activation"
            if unit is not None
            else "mean of the rectified map"
        ),
        "image": notes,
    }
    if method == "occlusion":
        window, window_stride = int(window), int(window_stride)
        if not 1 <= window <= min(h, w):
            raise KernelSpecError(f"--window is {window}; give 1..{min(h, w)} pixels")
        if not 1 <= window_stride <= window:
            raise KernelSpecError(f"--window-stride is {window_stride}; give 1..{window}")
        parameters.update(window=window, window_stride=window_stride, baseline=baseline)
    x = torch.from_numpy(pixels)[None].to(model.device)
    out = np.empty((len(filters), c, h, w), dtype=np.float32)
    rule = {"guided": "guided", "deconvnet": "deconv"}.get(method)
    fast: list[Any] = [None] * len(filters)
    if method == "occlusion" and not fast_occlusion_off():
        from .occlusion import first_layer_occlusion

        found = first_layer_occlusion(
            model, layer, filters, unit, x, window, window_stride, float(baseline)
        )
        if found is not None:
            fast = found
            n_fast = sum(f is not None for f in fast)
            parameters["occlusion_path"] = (
                f"first-layer incremental ({n_fast} of {len(filters)} filters; Captum for "
                "the rest)"
            )
    for i, k in enumerate(filters):
        if fast[i] is not None:
            out[i] = fast[i].cpu().numpy()[0]
            yield i + 1, len(filters)
            continue
        tracker = _Tracker(model.net)
        try:
            with warnings.catch_warnings(), _functional_relu_rule(tracker, rule):
                warnings.filterwarnings("ignore", module=r"captum\..*")
                warnings.filterwarnings("ignore", message=".*backward hook.*")
                result = _one(model, layer, k, unit, x, method, parameters, batch)
        finally:
            tracker.remove()
        out[i] = result.detach().cpu().numpy()[0]
        yield i + 1, len(filters)
    return {
        "attributions": out,
        "image": pixels,
        "layer": layer,
        "filters": filters,
        "at": list(unit) if unit is not None else None,
        "parameters": parameters,
        "activations": audit,
        "caveats": _caveats(method, audit, model),
    }


def _one(
    model: ExplainModel,
    layer: str,
    k: int,
    unit: tuple[int, int] | None,
    x: torch.Tensor,
    method: str,
    parameters: dict[str, Any],
    batch: int,
) -> torch.Tensor:
    from captum.attr import (
        NeuronDeconvolution,
        NeuronGradient,
        NeuronGuidedBackprop,
        Occlusion,
    )

    conv = model.conv(layer)
    x = x.clone().requires_grad_(method != "occlusion")
    if method == "occlusion":

        def forward(inputs: torch.Tensor) -> torch.Tensor:
            out = layer_output(model, layer, inputs)
            return _neuron(k, unit)(out) if unit is None else out[:, k, unit[0], unit[1]]

        c = x.shape[1]
        size, stride = parameters["window"], parameters["window_stride"]
        return Occlusion(forward).attribute(
            x,
            sliding_window_shapes=(c, size, size),
            strides=(c, stride, stride),
            baselines=float(parameters["baseline"]),
            perturbations_per_eval=batch,
        )
    cls = {
        "guided": NeuronGuidedBackprop,
        "deconvnet": NeuronDeconvolution,
        "gradient": NeuronGradient,
    }[method]
    return cls(_up_to_layer(model, layer), conv).attribute(x, _neuron(k, unit))


def attribute(
    model: ExplainModel,
    layer: str,
    filters: Sequence[int],
    image: Any,
    method: str = "guided",
    *,
    at: Any = None,
    window: int = 8,
    window_stride: int = 1,
    baseline: float = 0.5,
    batch: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """What drives each filter on one image.

    Parameters
    ----------
    model : ExplainModel
    layer : str
        A convolution of the model (or ``"first"`` / ``"middle"`` / ``"last"``).
    filters : sequence of int
    image : (H, W) or (H, W, 3) array_like
        See `prepare_image`.
    method : {"deconvnet", "guided", "gradient", "occlusion"}
    at : (int, int) or "centre", optional
        One unit of the layer's map (map coordinates); default the whole map's rectified mean.
    window, window_stride : int
        Occlusion: a square of `window` pixels set to `baseline`, slid by `window_stride`.
    batch : int
        Occluded images evaluated per forward pass.
    progress : callable, optional
        Called with ``(done, total)`` filters.

    Returns
    -------
    dict
        ``attributions`` (F, C, H, W) float32 (pixel units of the [0, 1] image); ``image``
        (C, H, W) the model input; ``layer``; ``filters``; ``at``; ``parameters``;
        ``activations`` (see `activation_audit`); ``caveats`` (list of str).
    """
    return drive(
        iter_attribute(
            model,
            layer,
            filters,
            image,
            method,
            at=at,
            window=window,
            window_stride=window_stride,
            baseline=baseline,
            batch=batch,
        ),
        progress,
    )
