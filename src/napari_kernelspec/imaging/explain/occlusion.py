"""Occlusion of a first-layer filter without one forward pass per window position.

Hiding a window changes only the outputs of a first convolution whose receptive field meets
the window, and changes them linearly: by the convolution of the window's change of pixels
(``baseline - x``, normalised like the input) with the filter, restricted to the overlap.
For every offset of a window relative to a receptive field, that change is a box sum of
``weight * unfolded(delta)``, read from 2-D prefix sums; the objective's change per window
position is then a scatter-add over the outputs. It equals Captum's ``Occlusion`` (same
windows, same averaging over the windows that cover a pixel; a test compares the two),
without its forward passes: for AlexNet's features.0 on a 451x300 photo, window 8 and stride 1
(130,000 positions), seconds per filter instead of minutes.

Used only where it is exact: the layer is the network's first operation after the input
normalisation (checked numerically on the image), with no dilation or groups, window positions
that tile the image exactly, and a map that keeps a positive unit whatever window is hidden
(otherwise the objective's ``amax`` term is involved and Captum is used for that filter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .model import ExplainModel

__all__ = ["first_layer_occlusion"]


def _normaliser(model: ExplainModel) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    first = model.net[0]
    mean = getattr(first, "mean", None)
    std = getattr(first, "std", None)
    c = model.channels
    if mean is None or std is None:
        return torch.zeros(1, c, 1, 1, device=model.device), torch.ones(
            1, c, 1, 1, device=model.device
        )
    return mean, std


def first_layer_occlusion(
    model: ExplainModel,
    layer: str,
    filters: list[int],
    unit: tuple[int, int] | None,
    x: torch.Tensor,
    window: int,
    stride: int,
    baseline: float,
) -> list[torch.Tensor | None] | None:
    """Occlusion attributions of `filters` of a first-layer conv, or None where not exact.

    Parameters
    ----------
    x : (1, C, H, W) tensor
        The image in [0, 1].

    Returns
    -------
    list of ((1, C, H, W) tensor or None), or None
        None when `layer` is not the first operation on the input (or its settings are not
        handled); a None entry for a filter whose map may lose every positive unit.
    """
    import torch
    import torch.nn.functional as F

    from .maximize import layer_output

    conv = model.conv(layer)
    _, c, h, w = x.shape
    if (
        conv.in_channels != c
        or conv.dilation != (1, 1)
        or conv.groups != 1
        or conv.padding_mode != "zeros"
        or isinstance(conv.padding, str)
        or (h - window) % stride
        or (w - window) % stride
    ):
        return None
    mean, std = _normaliser(model)
    with torch.no_grad():
        out = layer_output(model, layer, x)
        direct = F.conv2d((x - mean) / std, conv.weight, conv.bias, conv.stride, conv.padding)
        if out.shape != direct.shape or not torch.allclose(out, direct, rtol=1e-4, atol=1e-5):
            return None  # something runs between the input and this conv
        results: list[torch.Tensor | None] = []
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        ph, pw = conv.padding
        oh, ow = out.shape[-2:]
        delta = (baseline - x) / std  # the change of the normalised input under a window
        patches = F.unfold(delta, (kh, kw), padding=(ph, pw), stride=(sh, sw))
        patches = patches.reshape(c, kh, kw, oh * ow)
        ny, nx = (h - window) // stride + 1, (w - window) // stride + 1
        offs_y = torch.arange(-(window - 1), kh, device=x.device)
        offs_x = torch.arange(-(window - 1), kw, device=x.device)
        # window top-left for each (offset, output row / column)
        oy = torch.arange(oh, device=x.device) * sh - ph
        ox = torch.arange(ow, device=x.device) * sw - pw
        y0 = offs_y[:, None] + oy[None, :]  # (A, oh)
        x0 = offs_x[:, None] + ox[None, :]  # (B, ow)
        vy = (y0 >= 0) & (y0 <= h - window) & (y0 % stride == 0)
        vx = (x0 >= 0) & (x0 <= w - window) & (x0 % stride == 0)
        pos = (y0 // stride)[:, None, :, None] * nx + (x0 // stride)[None, :, None, :]
        valid = (vy[:, None, :, None] & vx[None, :, None, :]).reshape(-1)
        pos = pos.reshape(-1)[valid]
        # rows / columns of the kernel each offset covers: [lo, hi)
        lo_y = offs_y.clamp(min=0)
        hi_y = (offs_y + window).clamp(max=kh)
        lo_x = offs_x.clamp(min=0)
        hi_x = (offs_x + window).clamp(max=kw)
        ones = torch.ones(1, 1, window, window, device=x.device)
        counts = F.conv_transpose2d(torch.ones(1, 1, ny, nx, device=x.device), ones, stride=stride)
        for k in filters:
            prod = torch.einsum("cuv,cuvl->uvl", conv.weight[k], patches)  # (kh, kw, L)
            prefix = F.pad(prod.cumsum(0).cumsum(1), (0, 0, 1, 0, 1, 0))  # (kh+1, kw+1, L)
            box = (
                prefix[hi_y][:, hi_x]
                - prefix[lo_y][:, hi_x]
                - prefix[hi_y][:, lo_x]
                + prefix[lo_y][:, lo_x]
            )  # (A, B, L): change of each output for each window offset
            box = box.reshape(len(offs_y), len(offs_x), oh, ow)
            base = out[0, k]  # (oh, ow)
            if unit is not None:
                mask = torch.zeros(oh, ow, dtype=torch.bool, device=x.device)
                mask[unit] = True
                change = torch.where(mask, box, torch.zeros((), device=x.device))
            else:
                after = base + box
                change = (after.clamp(min=0) - base.clamp(min=0)) / base.numel()
                positives = int((base > 0).sum())
                gained = (after > 0).to(torch.int64) - (base > 0).to(torch.int64)
                lost = torch.zeros(ny * nx, dtype=torch.int64, device=x.device)
                lost.index_add_(0, pos, gained.reshape(-1)[valid])
                if positives == 0 or int((positives + lost).min()) <= 0:
                    results.append(None)  # the amax term matters: Captum computes it
                    continue
            diff = torch.zeros(ny * nx, dtype=change.dtype, device=x.device)
            diff.index_add_(0, pos, change.reshape(-1)[valid])
            # Captum: initial minus occluded, summed over the windows covering a pixel and
            # divided by their number.
            sums = F.conv_transpose2d(-diff.reshape(1, 1, ny, nx), ones, stride=stride)
            attr = (sums / counts)[:, :, :h, :w]
            results.append(attr.expand(1, c, h, w).clone())
    return results
