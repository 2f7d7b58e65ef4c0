"""One engine for every "gradient steps on an image through the network" method.

An `Objective` scores a batch of images from the activations of named modules (and the
logits); objectives add and scale (``2 * a + b``); `iter_optimise` ascends one with Adam on an
image parameterisation (Olah et al.'s Fourier 1/f + decorrelated colour, or plain pixels), the
random jitter / scale / rotation of `maximize`, and regularisers (L2 towards grey, total
variation). `maximize` is `FilterObjective` on this engine; class visualisation, inversion,
DeepDream, texture and style (`synthesis`) are the other objectives.

>>> obj = ClassLogit(3) - 0.01 * L2()                               # doctest: +SKIP
>>> run = optimise(model, obj, 1, size=(32, 32), steps=64)           # doctest: +SKIP
>>> run.images.shape                                                 # doctest: +SKIP
(1, 32, 32, 1)

The activations are collected with forward hooks; a pass stops as soon as every module an
objective needs has run (no logits needed: the rest of the network is skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ...base.errors import KernelSpecError
from .model import drive

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .model import ExplainModel

__all__ = [
    "L2",
    "LOGITS",
    "ActivationNorm",
    "ClassLogit",
    "ClassProbability",
    "FeatureMatch",
    "FilterObjective",
    "GramMatch",
    "Objective",
    "Optimised",
    "TotalVariation",
    "activations",
    "gram",
    "iter_optimise",
    "optimise",
]

#: The key of the network's output in the activations an objective sees.
LOGITS = "logits"


class _Stop(Exception):
    """Raised by a forward hook once every wanted module has run."""


def _module(model: ExplainModel, name: str) -> nn.Module:
    """The submodule `name` of the model (a conv, pool, block...: any named module)."""
    try:
        return model.net.get_submodule(model.prefix + name)
    except AttributeError:
        names = [n[len(model.prefix) :] for n, _ in model.net.named_modules() if n]
        raise KernelSpecError(
            f"{name!r} is not a layer of {model.name}; give one of: "
            f"{', '.join(n for n in names[:8] if n)}..."
        ) from None


def activations(
    model: ExplainModel, x: torch.Tensor, layers: Sequence[str], logits: bool = False
) -> dict[str, torch.Tensor]:
    """Outputs of the modules `layers` (and the logits under `LOGITS`) for pixels `x`.

    Parameters
    ----------
    x : (B, C, H, W) tensor
        Pixels in [0, 1] on the model's device.

    Returns
    -------
    dict of str to tensor
        Differentiable with respect to `x`. Without `logits` the pass stops after the last
        of `layers` has run.
    """
    wanted = list(dict.fromkeys(layers))
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make(name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, out: torch.Tensor) -> None:
            store[name] = out
            if not logits and len(store) == len(wanted):
                raise _Stop

        return hook

    for name in wanted:
        handles.append(_module(model, name).register_forward_hook(make(name)))
    try:
        out = model.net(x)
        if logits:
            store[LOGITS] = out
    except _Stop:
        pass
    except RuntimeError as exc:
        if len(store) < len(wanted):
            raise KernelSpecError(
                f"{model.name} cannot run on a {tuple(x.shape[-2:])} input "
                f"({str(exc).splitlines()[0][:120]}); use a larger image size"
            ) from None
        raise
    finally:
        for handle in handles:
            handle.remove()
    return store


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, N, h, w) -> (B, N, N) Gram matrices, divided by the number of positions."""
    b, n = features.shape[:2]
    flat = features.reshape(b, n, -1)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


# --- objectives ------------------------------------------------------------------------------


class Objective:
    """Scores images: ``obj(acts, pixels) -> (B,)``, higher is better.

    Subclasses set `layers` (module names whose outputs they read), `logits` (whether they
    need the network's output) and implement `score`. ``a + b``, ``a - b`` and ``k * a``
    build weighted sums.
    """

    layers: tuple[str, ...] = ()
    logits: bool = False
    name: str = "objective"

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        return self.score(acts, pixels)

    def __add__(self, other: Objective) -> Objective:
        return Sum([(1.0, self), (1.0, other)])

    def __sub__(self, other: Objective) -> Objective:
        return Sum([(1.0, self), (-1.0, other)])

    def __mul__(self, k: float) -> Objective:
        return Sum([(float(k), self)])

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Sum([(-1.0, self)])

    def describe(self) -> str:
        return self.name


class Sum(Objective):
    """A weighted sum of objectives (nested sums are flattened)."""

    def __init__(self, terms: Sequence[tuple[float, Objective]]) -> None:
        flat: list[tuple[float, Objective]] = []
        for w, obj in terms:
            if isinstance(obj, Sum):
                flat += [(w * v, o) for v, o in obj.terms]
            else:
                flat.append((w, obj))
        self.terms = flat
        self.layers = tuple(dict.fromkeys(n for _, o in flat for n in o.layers))
        self.logits = any(o.logits for _, o in flat)

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        total = None
        for w, obj in self.terms:
            term = obj(acts, pixels) if w == 1.0 else w * obj(acts, pixels)
            total = term if total is None else total + term
        assert total is not None
        return total

    def describe(self) -> str:
        return " + ".join(
            o.describe() if w == 1.0 else f"{w:g} * {o.describe()}" for w, o in self.terms
        )


class FilterObjective(Objective):
    """Image ``b`` scores filter ``filters[b]`` of `layer`: `maximize`'s objective.

    The mean of the filter's rectified map (see `maximize.channel_objective`), or the
    pre-activation of one unit ``at=(y, x)``.
    """

    def __init__(self, layer: str, filters: Any, at: tuple[int, int] | None = None) -> None:
        self.layers = (layer,)
        self.filters = filters
        self.at = at
        self.name = f"filter of {layer}" + (f" at {at}" if at is not None else "")

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        from .parameterisation import objective

        return objective(acts[self.layers[0]], self.filters, self.at)


class ClassLogit(Objective):
    """The unnormalised score (logit) of class `target` (Simonyan et al. 2014)."""

    logits = True

    def __init__(self, target: Any) -> None:
        self.target = target
        self.name = f"logit of class {target}"

    def _index(self, out: torch.Tensor) -> Any:
        import torch

        t = torch.as_tensor(self.target, device=out.device).reshape(-1)
        return torch.arange(out.shape[0], device=out.device), t.expand(out.shape[0])

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        out = acts[LOGITS]
        return out[self._index(out)]


class ClassProbability(ClassLogit):
    """The log-probability (log-softmax) of class `target`."""

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        self.name = f"log-probability of class {target}"

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        out = acts[LOGITS].log_softmax(dim=1)
        return out[self._index(out)]


class ActivationNorm(Objective):
    """Mean square activation of `layer` (DeepDream, Mordvintsev et al. 2015)."""

    def __init__(self, layer: str) -> None:
        self.layers = (layer,)
        self.name = f"activation norm of {layer}"

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        return acts[self.layers[0]].pow(2).flatten(1).mean(dim=1)


def _as_tensor(value: Any, like: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


class FeatureMatch(Objective):
    """Minus the relative squared error between `layer`'s features and `target`'s.

    Feature inversion (Mahendran and Vedaldi 2015) and the content term of style transfer.
    `target` is (N, h, w) or (B, N, h, w).
    """

    def __init__(self, layer: str, target: Any) -> None:
        self.layers = (layer,)
        self.target = target
        self.name = f"feature match at {layer}"

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        out = acts[self.layers[0]]
        t = _as_tensor(self.target, out)
        t = t.expand_as(out)
        err = (out - t).pow(2).flatten(1).sum(dim=1)
        return -err / t.pow(2).flatten(1).sum(dim=1).clamp(min=1e-12)


class GramMatch(Objective):
    """Minus the mean relative squared error of Gram matrices at `layers` (Gatys et al.).

    `targets` holds one (N, N) Gram matrix per layer (see `gram`).
    """

    def __init__(self, layers: Sequence[str], targets: Sequence[Any]) -> None:
        if len(layers) != len(targets):
            raise ValueError("one target Gram matrix per layer")
        self.layers = tuple(layers)
        self.targets = list(targets)
        self.name = f"Gram match at {', '.join(layers)}"

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        total = None
        for name, target in zip(self.layers, self.targets, strict=True):
            g = gram(acts[name])
            t = _as_tensor(target, g).expand_as(g)
            err = (g - t).pow(2).flatten(1).sum(dim=1) / t.pow(2).flatten(1).sum(dim=1).clamp(
                min=1e-12
            )
            total = err if total is None else total + err
        assert total is not None
        return -total / len(self.layers)


class L2(Objective):
    """Mean square distance of the pixels from grey (0.5): subtract it to regularise."""

    name = "L2"

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - 0.5).pow(2).flatten(1).mean(dim=1)


class TotalVariation(Objective):
    """Mean absolute difference of neighbouring pixels: subtract it to regularise."""

    name = "TV"

    def score(self, acts: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        dy = (pixels[..., 1:, :] - pixels[..., :-1, :]).abs().flatten(1).mean(dim=1)
        dx = (pixels[..., :, 1:] - pixels[..., :, :-1]).abs().flatten(1).mean(dim=1)
        return dy + dx


# --- the optimisation --------------------------------------------------------------------------


@dataclass
class Optimised:
    """What `iter_optimise` returns.

    Attributes
    ----------
    images : (B, H, W, C) ndarray of float32 in [0, 1]
    objective : (B,) ndarray of float64
        The objective of the final (untransformed) images.
    history : list of float
        The batch's mean objective at each step (on the transformed images).
    parameters : dict
        JSON-safe settings.
    """

    images: np.ndarray
    objective: np.ndarray
    history: list[float] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


PARAMETERISATIONS = ("fourier", "pixels")


def iter_optimise(
    model: ExplainModel,
    objective: Objective,
    n_images: int,
    *,
    size: tuple[int, int],
    steps: int,
    lr: float = 0.05,
    seed: int = 0,
    generator: torch.Generator | None = None,
    parameterisation: str = "fourier",
    init: Any = None,
    transforms: bool = True,
    jitter: float | None = None,
) -> Generator[tuple[int, int], None, Optimised]:
    """Ascend `objective` on `n_images` images with Adam; yields ``(done, steps)``.

    Parameters
    ----------
    objective : Objective
        Regularisers are objectives too: ``obj - 0.1 * TotalVariation()``.
    size : (H, W)
    parameterisation : {"fourier", "pixels"}
        ``"fourier"``: 1/f-scaled Fourier coefficients, decorrelated colour, sigmoid
        (`maximize`'s; starts from faint noise). ``"pixels"``: the pixels themselves, clipped
        to [0, 1] after every step (starts from `init`, or uniform noise).
    init : (B, C, H, W) array_like, optional
        Starting pixels for ``"pixels"``.
    jitter : float, optional
        Largest random shift of the transforms in pixels (default `maximize.JITTER_PX`).
    generator : torch.Generator, optional
        The random source of the start and the transforms (default: seeded with `seed`).
    """
    import torch

    from .parameterisation import JITTER_PX, _random_warp, _spectrum_scale, _to_pixels

    if parameterisation not in PARAMETERISATIONS:
        raise KernelSpecError(
            f"parameterisation must be one of {', '.join(PARAMETERISATIONS)}, "
            f"got {parameterisation!r}"
        )
    if not 1 <= int(steps) <= 100_000:
        raise KernelSpecError(f"steps is {steps}; give 1..100000")
    hw = (int(size[0]), int(size[1]))
    gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    c = model.channels
    if parameterisation == "fourier":
        scale = _spectrum_scale(*hw, model.device)
        shape = (n_images, c, hw[0], hw[1] // 2 + 1, 2)
        param = (torch.randn(shape, generator=gen) * 0.01).to(model.device)

        def render(p: torch.Tensor) -> torch.Tensor:
            return _to_pixels(p, scale, hw)
    else:
        if init is not None:
            start = torch.as_tensor(np.asarray(init, dtype=np.float32))
            if tuple(start.shape) != (n_images, c, *hw):
                raise ValueError(f"init has shape {tuple(start.shape)}, not {(n_images, c, *hw)}")
        else:
            start = torch.rand((n_images, c, *hw), generator=gen)
        param = start.clone().to(model.device)

        def render(p: torch.Tensor) -> torch.Tensor:
            return p

    shift = JITTER_PX if jitter is None else float(jitter)
    param.requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    history: list[float] = []
    for step in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        pixels = render(param)
        seen = _random_warp(pixels, gen, shift) if transforms else pixels
        acts = activations(model, seen, objective.layers, objective.logits)
        score = objective(acts, seen)
        (-score.sum()).backward()
        opt.step()
        if parameterisation == "pixels":
            with torch.no_grad():
                param.clamp_(0.0, 1.0)
        history.append(float(score.detach().mean()))
        yield step + 1, int(steps)
    with torch.no_grad():
        pixels = render(param)
        final = objective(activations(model, pixels, objective.layers, objective.logits), pixels)
    return Optimised(
        images=pixels.detach().permute(0, 2, 3, 1).cpu().numpy().astype(np.float32),
        objective=final.cpu().numpy().astype(np.float64),
        history=history,
        parameters={
            "steps": int(steps),
            "lr": lr,
            "optimizer": "adam",
            "parameterisation": parameterisation,
            "objective": objective.describe(),
            "transforms": f"jitter +-{shift:g} px, scale, rotation" if transforms else "none",
        },
    )


def optimise(
    model: ExplainModel,
    objective: Objective,
    n_images: int,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Optimised:
    """`iter_optimise` run to its end (see there); `progress` gets ``(done, steps)``."""
    return drive(iter_optimise(model, objective, n_images, **options), progress)
