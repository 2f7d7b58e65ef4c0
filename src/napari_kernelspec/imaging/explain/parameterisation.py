"""The image parameterisation and the filter objective shared by the engine and `maximize`.

Fourier coefficients scaled by 1/f, ImageNet's colour decorrelation, a sigmoid into [0, 1],
and one random affine warp per image and step (Olah et al., "Feature Visualization", 2017).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "COLOR_CORRELATION_SQRT",
    "JITTER_PX",
    "LOW_FREQUENCY_FLOOR",
    "channel_objective",
    "objective",
]

#: Square root of ImageNet's RGB colour covariance, columns = decorrelated axes (the numbers
#: Lucid measured and publishes as ``color_correlation_svd_sqrt``).
COLOR_CORRELATION_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)

#: Random transform of each step: jitter in pixels, scale range, rotation in degrees.
JITTER_PX = 8
SCALE_RANGE = (0.9, 1.1)
ROTATE_DEG = 10.0


def objective(
    out: torch.Tensor, filters: torch.Tensor, at: tuple[int, int] | None = None
) -> torch.Tensor:
    """Per-image objective: image ``b`` scores filter ``filters[b]``.

    Parameters
    ----------
    out : (B, N, h, w) tensor
        The layer's output.
    filters : (B,) long tensor
    at : (y, x), optional
        One unit of the map (its pre-activation); default the mean of the rectified map.

    Returns
    -------
    (B,) tensor
    """
    import torch

    maps = out[torch.arange(out.shape[0], device=out.device), filters]
    if at is not None:
        return maps[:, at[0], at[1]]
    return channel_objective(maps)


def channel_objective(maps: torch.Tensor) -> torch.Tensor:
    """Mean of each rectified map, (B, h, w) -> (B,), with a gradient even when all are < 0.

    The mean of a rectified map has no gradient while the whole map is negative (a filter
    with a negative sum on a grey image, a deep unit that is off): the second term, zero as
    soon as one unit is positive, lifts the largest unit until then.
    """
    flat = maps.flatten(1)
    return flat.clamp(min=0).mean(dim=1) + flat.amax(dim=1).clamp(max=0) / flat.shape[1]


#: The 1/f scale stops growing below this many cycles per image side (see `_spectrum_scale`).
LOW_FREQUENCY_FLOOR = 8


def _spectrum_scale(h: int, w: int, device: Any) -> torch.Tensor:
    """(h, w // 2 + 1) weights 1 / f, f in cycles/pixel floored at 8 cycles per image side.

    Adam moves every Fourier coefficient by about the learning rate per step, whatever the
    size of its gradient, so a coefficient's speed in pixel space is its scale. Floored at
    one cycle per side (Lucid's choice), the lowest frequencies moved up to 8x faster than
    those at 8 cycles: for a filter with a DC component (a non-zero sum), whose gradient
    has a consistent sign everywhere, they saturated large regions of the image first and
    the optimisation stayed there (measured: Gabors of 0.12-0.16 c/px with a DC component
    gave images peaking at 0-0.016 c/px at 64 px, 128 steps; floored at 8 cycles they peak
    within 0.03 c/px of the filter's own peak).
    """
    import torch

    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    f = torch.sqrt(fy**2 + fx**2)
    return 1.0 / torch.clamp(f, min=LOW_FREQUENCY_FLOOR / max(h, w)) * math.sqrt(h * w)


def _to_pixels(spectrum: torch.Tensor, scale: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w//2+1, 2) real coefficients -> (B, C, h, w) pixels in (0, 1)."""
    import torch

    coeffs = torch.view_as_complex(spectrum) * scale
    image = torch.fft.irfft2(coeffs, s=size) / 4.0
    if image.shape[1] == 3:
        corr = torch.as_tensor(COLOR_CORRELATION_SQRT, device=image.device)
        corr = corr / corr.norm(dim=0).max()
        image = torch.einsum("ij,bjhw->bihw", corr, image)
    return torch.sigmoid(image)


def _random_warp(x: torch.Tensor, gen: torch.Generator, jitter: float = JITTER_PX) -> torch.Tensor:
    """One random jitter (+-`jitter` px) + scale + rotation per image (bilinear, reflected)."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    r = torch.rand(b, 4, generator=gen).to(x.device)
    angle = torch.deg2rad((r[:, 0] * 2 - 1) * ROTATE_DEG)
    scale = SCALE_RANGE[0] + r[:, 1] * (SCALE_RANGE[1] - SCALE_RANGE[0])
    shift = (r[:, 2:] * 2 - 1) * jitter
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin, shift[:, 0] * 2 / w], dim=1),
            torch.stack([sin, cos, shift[:, 1] * 2 / h], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
