"""Activation maximisation: the input image that most excites a filter, for many filters at once.

Ours, not a library's: no maintained package does this for current torch (``captum.optim`` is
in no Captum release, 0.9 included; Lucent 0.1.8 pins kornia <= 0.4.1 from 2020 and hard-codes
CUDA). It follows Olah et al., "Feature Visualization" (Distill, 2017):

- the image is parameterised by its Fourier coefficients, scaled by 1/f so that every spatial
  frequency starts with about the same energy as in natural images (plain pixel ascent fills
  in high frequencies first and needs far more steps);
- three-channel images are drawn in a decorrelated colour space (ImageNet's colour covariance,
  square-rooted) and squashed into [0, 1] with a sigmoid;
- each step sees a randomly jittered, scaled and rotated copy (one affine warp per image), so
  that only patterns robust to small shifts survive;
- Adam ascends the objective. The filters are a batch: image ``i`` maximises filter
  ``filters[i]`` and, since the loss is a sum of per-image terms and Adam is element-wise,
  the images never influence each other.

The objective of a filter is the mean of its rectified map (the channel objective), or the
pre-activation of one unit ``at=(y, x)`` of the map. The forward pass stops at the layer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...base.errors import KernelSpecError
from .engine import FilterObjective, activations, iter_optimise
from .model import drive
from .parameterisation import (
    COLOR_CORRELATION_SQRT,
    JITTER_PX,
    ROTATE_DEG,
    SCALE_RANGE,
    channel_objective,
    objective,
)

if TYPE_CHECKING:
    import torch

    from .model import ExplainModel

__all__ = [
    "COLOR_CORRELATION_SQRT",
    "DEFAULT_SIZE",
    "DEFAULT_STEPS",
    "channel_objective",
    "iter_maximize",
    "layer_output",
    "maximize",
    "objective",
]

DEFAULT_SIZE = 128
DEFAULT_STEPS = 256
DEFAULT_LR = 0.05
#: Images optimised together (more need more memory, not more steps).
DEFAULT_BATCH = 32


def layer_output(model: ExplainModel, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The output of convolution `layer` for pixels `x`, without running the rest of the net.

    Parameters
    ----------
    x : (B, C, H, W) tensor
        Pixels in [0, 1] on the model's device.

    Returns
    -------
    (B, N, h, w) tensor
        Differentiable with respect to `x`.
    """
    model.conv(layer)  # a convolution of the model, or a one-line error naming them
    return activations(model, x, [layer])[layer]


def map_shape(model: ExplainModel, layer: str, size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of `layer`'s output map for an input of `size` (H, W) pixels."""
    import torch

    with torch.no_grad():
        x = torch.zeros(1, model.channels, *size, device=model.device)
        out = layer_output(model, layer, x)
    return int(out.shape[-2]), int(out.shape[-1])


def check_at(
    model: ExplainModel, layer: str, size: tuple[int, int], at: Any
) -> tuple[int, int] | None:
    """`at` as a unit (y, x) inside `layer`'s map; ``"centre"`` is the middle unit.

    Raises
    ------
    KernelSpecError
        If the unit lies outside the map.
    """
    if at is None:
        return None
    h, w = map_shape(model, layer, size)
    if isinstance(at, str):
        if at.strip().lower() not in ("centre", "center", "c"):
            raise KernelSpecError(f"--at must be Y,X or 'centre', got {at!r}")
        return (h - 1) // 2, (w - 1) // 2
    y, x = (int(v) for v in at)
    if not (0 <= y < h and 0 <= x < w):
        raise KernelSpecError(
            f"unit ({y}, {x}) is outside the {h}x{w} map of {layer} for a "
            f"{size[0]}x{size[1]} input; give 0 <= Y < {h} and 0 <= X < {w}"
        )
    return y, x


# --- the image parameterisation ------------------------------------------------------------


# --- the optimisation ----------------------------------------------------------------------


def iter_maximize(
    model: ExplainModel,
    layer: str,
    filters: Sequence[int],
    *,
    size: int = DEFAULT_SIZE,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    at: Any = None,
    lr: float = DEFAULT_LR,
    batch: int = DEFAULT_BATCH,
    transforms: bool = True,
) -> Generator[tuple[int, int], None, dict[str, Any]]:
    """`maximize` as a generator: yields ``(done, total)`` steps, returns its result.

    For front ends that show progress or cancel between steps (``yield from`` in a worker).
    """
    import torch

    if not 8 <= int(size) <= 2048:
        raise KernelSpecError(f"image size {size} is outside 8..2048 pixels")
    if not 1 <= int(steps) <= 100_000:
        raise KernelSpecError(f"steps is {steps}; give 1..100000")
    layer = model.resolve_layer(layer)
    filters = model.check_filters(layer, filters)
    hw = (int(size), int(size))
    unit = check_at(model, layer, hw, at)
    c = model.channels
    images = np.empty((len(filters), *hw, c), dtype=np.float32)
    values = np.empty(len(filters), dtype=np.float64)
    chunks = [filters[i : i + batch] for i in range(0, len(filters), batch)]
    total = steps * len(chunks)
    done = 0
    for k, chunk in enumerate(chunks):
        # One generator per chunk, seeded from (seed, chunk): same seed, same images.
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + k)
        which = torch.as_tensor(chunk, device=model.device)
        run = iter_optimise(
            model,
            FilterObjective(layer, which, unit),
            len(chunk),
            size=hw,
            steps=steps,
            lr=lr,
            generator=gen,
            parameterisation="fourier",
            transforms=transforms,
        )
        while True:
            try:
                next(run)
            except StopIteration as stop:
                result = stop.value
                break
            done += 1
            yield done, total
        start = k * batch
        images[start : start + len(chunk)] = result.images
        values[start : start + len(chunk)] = result.objective
    return {
        "images": images,
        "objective": values,
        "layer": layer,
        "filters": filters,
        "at": list(unit) if unit is not None else None,
        "parameters": {
            "size": hw[0],
            "steps": int(steps),
            "seed": int(seed),
            "lr": lr,
            "optimizer": "adam",
            "parameterisation": "fourier 1/f" + (" + decorrelated colour" if c == 3 else ""),
            "transforms": (
                f"jitter +-{JITTER_PX} px, scale {SCALE_RANGE[0]}-{SCALE_RANGE[1]}, "
                f"rotate +-{ROTATE_DEG:g} deg"
                if transforms
                else "none"
            ),
            "objective": (
                f"unit ({unit[0]}, {unit[1]}) pre-activation"
                if unit is not None
                else "mean of the rectified map"
            ),
        },
    }


def maximize(
    model: ExplainModel,
    layer: str,
    filters: Sequence[int],
    *,
    size: int = DEFAULT_SIZE,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    at: Any = None,
    lr: float = DEFAULT_LR,
    batch: int = DEFAULT_BATCH,
    transforms: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The images that maximise each filter's activation.

    Parameters
    ----------
    model : ExplainModel
    layer : str
        A convolution of the model (or ``"first"`` / ``"middle"`` / ``"last"``).
    filters : sequence of int
        Filter indices; optimised together in batches of `batch`.
    size : int
        Image side in pixels (default 128).
    steps : int
        Adam steps (default 256).
    seed : int
        Same seed, same images (on the CPU).
    at : (int, int) or "centre", optional
        Maximise one unit of the map instead of the mean of the rectified map.
    lr : float
        Adam's learning rate on the Fourier coefficients.
    transforms : bool
        Random jitter / scale / rotation each step (on by default).
    progress : callable, optional
        Called with ``(done, total)`` steps.

    Returns
    -------
    dict
        ``images`` (F, H, W, C) float32 in [0, 1]; ``objective`` (F,) the final objective of
        each image; ``layer``; ``filters``; ``at``; ``parameters`` (JSON-safe).
    """
    return drive(
        iter_maximize(
            model,
            layer,
            filters,
            size=size,
            steps=steps,
            seed=seed,
            at=at,
            lr=lr,
            batch=batch,
            transforms=transforms,
        ),
        progress,
    )
