"""`feature_maps`: one convolution layer's response to an image, placed on the image.

The first layer of a model (or a layer read from a file) runs from its `KernelBank` alone:
``torch.nn.functional.conv2d`` with the bank's stride, padding, dilation, groups and bias.
A deeper layer runs inside its network (`network.network`), so that it sees what it sees
there. Either way the image goes through in bands of rows that overlap by what the receptive
field needs, so the result equals the one-piece result while memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError
from ..base.limits import check_elements
from ..sources import models
from . import network as _network
from .images import prepare

if TYPE_CHECKING:
    import torch

    from .network import Geometry

__all__ = ["TILE_BYTES", "FeatureMaps", "feature_maps", "resolve_bank"]

#: Work memory one band of rows may take (its input, im2col buffer and output), bytes.
TILE_BYTES = 96 * 2**20
#: For layers inside a network: input pixels per band (intermediate maps are not known).
_NETWORK_TILE_PIXELS = 1024 * 1024


@dataclass(frozen=True, eq=False)
class FeatureMaps:
    """A layer's response to one image, with its geometry in image pixels.

    Attributes
    ----------
    maps : (N, H', W') ndarray of float32
        One map per filter (after ReLU unless ``meta["relu"]`` is False).
    scale : (2,) ndarray of float64
        Image pixels between neighbouring map pixels (row, column).
    translate : (2,) ndarray of float64
        Image position of map pixel (0, 0); map pixel (i, j) has its receptive-field centre
        at image pixel ``translate + (i, j) * scale``. These are exactly napari's ``scale``
        and ``translate`` to lay the maps on the image.
    receptive_field : (2,) ndarray of int64
        Receptive-field height and width in image pixels.
    image_shape : (int, int)
        (H, W) of the input image.
    meta : dict
        JSON-safe: model, layer, weights, normalisation, channel conversion, ReLU, tiles.
    bank : KernelBank
        The layer's filters.
    """

    maps: np.ndarray
    scale: np.ndarray
    translate: np.ndarray
    receptive_field: np.ndarray
    image_shape: tuple[int, int]
    meta: dict[str, Any]
    bank: KernelBank = field(repr=False)

    @property
    def n_filters(self) -> int:
        """Number of maps N."""
        return int(self.maps.shape[0])

    def centre(self, index: Any) -> np.ndarray:
        """Image coordinates of map pixels.

        Parameters
        ----------
        index : (..., 2) array_like
            Map pixel (row, column) indices.

        Returns
        -------
        (..., 2) ndarray of float64
        """
        return self.translate + np.asarray(index, dtype=np.float64) * self.scale

    def boxes(self, index: Any) -> np.ndarray:
        """Receptive fields of map pixels, clipped to the image.

        Parameters
        ----------
        index : (..., 2) array_like
            Map pixel (row, column) indices.

        Returns
        -------
        (..., 4) ndarray of int64
            ``[y0, x0, y1, x1]`` with y1, x1 exclusive (image rows ``y0:y1``).
        """
        start = np.rint(self.centre(index) - (self.receptive_field - 1) / 2).astype(np.int64)
        stop = start + self.receptive_field
        h, w = self.image_shape
        lo = np.clip(start, 0, [h, w])
        hi = np.clip(stop, 0, [h, w])
        return np.concatenate([lo, hi], axis=-1)

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        """The arrays of ``kernelspec maps --out`` (``meta`` as a JSON string)."""
        import json

        return {
            "maps": self.maps,
            "scale": self.scale,
            "translate": self.translate,
            "receptive_field": self.receptive_field,
            "meta": np.array(json.dumps(self.meta)),
        }


def resolve_bank(
    source: KernelBank | str | os.PathLike[str],
    weights: str = "auto",
    layer: str | None = None,
    arch: str | None = None,
) -> KernelBank:
    """The bank of `source` (a bank, or what `load_kernels` takes) at `layer`.

    `arch`: the torchvision architecture of a state-dict file (its deeper layers then run
    inside that network).
    """
    from ..sources.loading import load_kernels

    if not isinstance(source, KernelBank):
        return load_kernels(source, weights=weights, layer=layer, arch=arch)
    if layer is None or layer.removesuffix(".weight") == source.layer.removesuffix(".weight"):
        return source
    if source.source == "checkpoint" and _network.has_network(source):
        return load_kernels(source.provenance["file"], layer=layer, arch=source.model)
    if source.source not in _network.MODEL_SOURCES:
        raise KernelSpecError(
            f"{source.display_name} holds only {source.layer!r}; load {layer!r} from the file"
        )
    kind = "auto" if source.source == "trained-digits" else source.source
    return load_kernels(source.model, weights=kind, layer=layer)


def _override(bank: KernelBank, stride: Any, padding: Any, dilation: Any) -> KernelBank:
    given = {
        k: v
        for k, v in (("stride", stride), ("padding", padding), ("dilation", dilation))
        if v is not None
    }
    if not given:
        return bank
    try:
        return dataclasses.replace(
            bank,
            provenance={**bank.provenance, "stride_known": True, "geometry_given": True},
            **given,
        )
    except ValueError as exc:
        raise KernelSpecError(
            f"{exc}; give whole numbers (stride, dilation >= 1, padding >= 0)"
        ) from None


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def feature_maps(
    source: KernelBank | str | os.PathLike[str],
    image: Any,
    layer: str | None = None,
    *,
    weights: str = "auto",
    relu: bool = True,
    normalize: str = "auto",
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] | None = None,
    dilation: int | tuple[int, int] | None = None,
    tile_bytes: int = TILE_BYTES,
    arch: str | None = None,
) -> FeatureMaps:
    """One convolution layer's response to an image, with its geometry.

    Parameters
    ----------
    source : KernelBank, str or path-like
        A bank, or anything `load_kernels` takes (a model name or a weights file).
    image : (H, W) or (H, W, 3) or (H, W, 4) array_like
        Grey, RGB or RGBA (alpha dropped); bool, uint8, uint16 or float.
    layer : str, optional
        A convolution of the model (``"layer2.0.conv1"``); default its first. A deeper layer
        runs inside the model's network.
    weights : {"auto", "pretrained", "random"}
        Which weights to load for a model name (ignored for a bank or a file).
    relu : bool
        Apply ReLU to the maps (the default); False keeps the signed response.
    normalize : {"auto", "none"}
        ``"auto"``: the weights' own preprocessing (ImageNet mean / std for torchvision
        models), [0, 1] scaling otherwise. ``"none"``: the image as given (uint8 / 255).
    stride, padding, dilation : int or (int, int), optional
        Override the bank's geometry (files do not record it). First layer / files only.
    tile_bytes : int
        Work memory of one band of rows (first layer); smaller means more, thinner bands.
    arch : str, optional
        The torchvision architecture of a state-dict file: its layers then run inside it.

    Returns
    -------
    FeatureMaps

    Raises
    ------
    KernelSpecError
        Bad image, an image smaller than the receptive field, a layer that is not a
        convolution (the message lists valid ones), channels the image cannot provide, a
        geometry override on a deeper layer.
    """

    bank = resolve_bank(source, weights, layer, arch)
    first = _network.is_first_layer(bank)
    if not first and not (stride is None and padding is None and dilation is None):
        raise KernelSpecError(
            "--stride / --padding / --dilation set the geometry of a first layer or a file; "
            f"{bank.layer!r} of {bank.display_name} runs inside its network with its own"
        )
    bank = _override(bank, stride, padding, dilation)
    mean, std, norm_name = _network.input_normalisation(bank)
    meta: dict[str, Any] = {
        "model": bank.model,
        "display_name": bank.display_name,
        "layer": bank.layer,
        "weights": bank.source,
        "trained": bank.is_trained,
    }
    if "weights" in bank.provenance:
        meta["weights_name"] = str(bank.provenance["weights"])
    if first:
        groups = bank.groups
        in_channels = bank.n_channels * groups
        geometry = _network.conv_geometry(
            bank.kernel_size, bank.stride, bank.padding, bank.dilation
        )
        run = _conv_runner(bank)
        description = "the layer's convolution alone (torch conv2d with its stride, padding, "
        description += "dilation, groups and bias)"
        per_pixel = 4 * (in_channels * bank.kernel_size[0] * bank.kernel_size[1] + bank.n_filters)
        meta.update(
            stride=list(bank.stride),
            padding=list(bank.padding),
            dilation=list(bank.dilation),
            groups=groups,
            bias=bank.bias is not None,
        )
    else:
        net = _network.network(bank)
        in_channels = net.in_channels
        geometry = net.geometry
        run = _network_runner(net)
        description = f"{net.description}, run up to {bank.layer}"
        per_pixel = 0
    if first and not _network.has_network(bank) and in_channels not in (1, 3):
        raise KernelSpecError(
            f"{bank.display_name} [{bank.layer}] takes {in_channels} input channels: a deeper "
            "layer, which sees the output of the layers before it, and the file holds only "
            "its weights; give the model it belongs to (a model name, or the file's "
            "architecture) to see it inside the network"
        )
    prep = prepare(image, in_channels, normalize, mean=mean, std=std)
    meta.update(prep.meta)
    if normalize == "auto" and prep.mean is not None:
        meta["normalisation"] = norm_name
    meta["normalize"] = normalize
    meta["relu"] = bool(relu)
    meta["computed_as"] = description
    h, w = prep.shape
    if first:
        shape = (
            bank.n_filters,
            _out_size(h, bank.kernel_size[0], bank.stride[0], bank.padding[0], bank.dilation[0]),
            _out_size(w, bank.kernel_size[1], bank.stride[1], bank.padding[1], bank.dilation[1]),
        )
    else:
        found = _network.layer_output_shape(bank.model, bank.layer, in_channels, h, w)
        shape = found if found is not None else (bank.n_filters, 0, 0)
    kernel = bank.kernel_size if first else models.conv_layer(bank.model, None).shape[2:]
    if min(shape[1:]) < 1 or h < kernel[0] or w < kernel[1]:
        rf = geometry.receptive_field
        raise KernelSpecError(
            f"the image ({h}x{w} px) is smaller than the kernel ({kernel[0]}x{kernel[1]}) of "
            f"{bank.display_name} (receptive field of {bank.layer}: {rf[0]}x{rf[1]} px); "
            "give a larger image"
        )
    check_elements(shape, f"the feature maps of {bank.layer}")
    maps = np.empty(shape, dtype=np.float32)
    if first:
        rows_per_tile = max(1, int(tile_bytes // max(1, per_pixel * shape[2])))
    else:
        rows_per_tile = max(1, int(_NETWORK_TILE_PIXELS // (w * geometry.scale[0])))
    if not geometry.local:
        rows_per_tile = shape[1]  # a global op on the way: only the whole image is right
    tiles = _run_tiles(prep, geometry, shape, rows_per_tile, run, maps, relu)
    meta["tiles"] = tiles
    meta["geometry"] = "the layer's own" if first else "composed through the network"
    return FeatureMaps(
        maps=maps,
        scale=np.asarray(geometry.scale, dtype=np.float64),
        translate=np.asarray(geometry.translate, dtype=np.float64),
        receptive_field=np.asarray(geometry.receptive_field, dtype=np.int64),
        image_shape=(h, w),
        meta=meta,
        bank=bank,
    )


def _conv_runner(bank: KernelBank) -> Callable[[np.ndarray], torch.Tensor]:
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(np.array(bank.weights))
    bias = torch.from_numpy(np.array(bank.bias)) if bank.bias is not None else None

    def run(x: np.ndarray) -> torch.Tensor:
        return F.conv2d(
            torch.from_numpy(x),
            weight,
            bias,
            bank.stride,
            bank.padding,
            bank.dilation,
            bank.groups,
        )

    return run


def _network_runner(net: _network.Network) -> Callable[[np.ndarray], torch.Tensor]:
    import torch

    def run(x: np.ndarray) -> torch.Tensor:
        return net.module(torch.from_numpy(x))["out"]

    return run


def _run_tiles(
    prep: Any,
    geometry: Geometry,
    shape: tuple[int, ...],
    rows_per_tile: int,
    run: Callable[[np.ndarray], torch.Tensor],
    out: np.ndarray,
    relu: bool,
) -> int:
    """Fill `out` band by band; returns the number of bands.

    Band ``o0:o1`` of output rows is computed from image rows ``r0:r1``: ``r0`` lies on the
    stride grid (so the band's rows are the whole image's rows ``r0 / stride`` on) and early
    enough that no output row kept uses the band's own top padding, ``r1`` far enough for the
    last kept row's receptive field. Rows at the image's edges keep the layer's real padding.
    """
    import torch

    n_rows = shape[1]
    jump = round(geometry.scale[0])
    if jump != geometry.scale[0] or rows_per_tile >= n_rows:
        rows_per_tile = n_rows
    h = prep.shape[0]
    margin = math.ceil(geometry.reach[0] / jump) if jump else 0
    target = torch.from_numpy(out)
    bands = 0
    with torch.inference_mode():
        for o0 in range(0, n_rows, rows_per_tile):
            o1 = min(n_rows, o0 + rows_per_tile)
            if o0 == 0 and o1 == n_rows:
                r0, r1 = 0, h
            else:
                r0 = max(0, (o0 - margin) * jump)
                last = (
                    geometry.translate[0] + (o1 - 1) * jump + (geometry.receptive_field[0] - 1) / 2
                )
                r1 = min(h, math.floor(last) + 1 + jump)
            y = run(prep.tile(r0, r1))[0]
            skip = o0 - r0 // jump
            band = y[:, skip : skip + (o1 - o0), : shape[2]]
            if band.shape[1] != o1 - o0 or band.shape[2] != shape[2]:
                raise RuntimeError(f"band {o0}:{o1} came out {tuple(band.shape)}")  # a bug
            if relu:
                band.clamp_(min=0)  # in place: y is this band's own
            target[:, o0:o1].copy_(band)
            bands += 1
    return bands
