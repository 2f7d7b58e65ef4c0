"""`top_patches`: for every filter, the image patches that excite it most.

Images are read and filtered one at a time, so a long list costs the memory of one image and
its maps. Within an image, a greedy non-maximum suppression takes a filter's best map pixel
and removes every map pixel whose receptive field overlaps it by half or more along both
axes before taking the next, so that the k patches are k different places.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError
from ..base.limits import check_elements
from .images import as_image, read_image
from .maps import FeatureMaps, feature_maps, resolve_bank

__all__ = ["Patch", "TopPatches", "patches_from_maps", "top_patches"]

ImageLike = Any  # an (H, W[, C]) array or the path of an image file


@dataclass(frozen=True)
class Patch:
    """One top-activating patch.

    Attributes
    ----------
    image : int
        Index of the image in the list given to `top_patches`.
    box : (int, int, int, int)
        ``(y0, x0, y1, x1)`` in image pixels, the receptive field clipped to the image
        (``y1``, ``x1`` exclusive).
    activation : float
        The filter's response there (before ReLU).
    """

    image: int
    box: tuple[int, int, int, int]
    activation: float


@dataclass(frozen=True, eq=False)
class TopPatches:
    """Every filter's k strongest patches over a set of images.

    Attributes
    ----------
    image_index : (N, k) ndarray of int64
        Image of each patch, best first; -1 where a filter has fewer than k patches.
    boxes : (N, k, 4) ndarray of int64
        ``[y0, x0, y1, x1]`` of each patch.
    activations : (N, k) ndarray of float64
        Response at each patch (NaN where there is none).
    receptive_field : (2,) ndarray of int64
        Unclipped patch size (rows, columns).
    starts : (N, k, 2) ndarray of int64
        Unclipped top-left corner of each receptive field (may be negative), for crops.
    n_images : int
    meta : dict
        JSON-safe: the first image's `FeatureMaps.meta` plus ``k`` and the suppression rule.
    bank : KernelBank
    """

    image_index: np.ndarray
    boxes: np.ndarray
    activations: np.ndarray
    receptive_field: np.ndarray
    starts: np.ndarray
    n_images: int
    meta: dict[str, Any]
    bank: KernelBank = field(repr=False)

    @property
    def k(self) -> int:
        """Patches asked for per filter."""
        return int(self.image_index.shape[1])

    def patches(self, index: int) -> list[Patch]:
        """Filter `index`'s patches, best first."""
        return [
            Patch(int(i), tuple(int(v) for v in box), float(a))  # type: ignore[arg-type]
            for i, box, a in zip(
                self.image_index[index], self.boxes[index], self.activations[index], strict=True
            )
            if i >= 0
        ]

    def to_dict(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """``{"filters": [{"index": i, "patches": [{"image", "box", "activation"}]}]}``.

        Parameters
        ----------
        names : sequence of str, optional
            What to write as ``"image"`` (file paths); default the image index.
        """
        filters = []
        for index in range(len(self.image_index)):
            items = [
                {
                    "image": names[p.image] if names is not None else p.image,
                    "box": list(p.box),
                    "activation": p.activation,
                }
                for p in self.patches(index)
            ]
            filters.append({"index": index, "patches": items})
        return {"filters": filters, "meta": self.meta}

    def crops(self, images: Sequence[ImageLike], index: int) -> np.ndarray:
        """Filter `index`'s patches cut out of `images`, padded to the receptive field.

        Returns
        -------
        (k', rh, rw) or (k', rh, rw, 3) ndarray of float32
            In [0, 1] (integers / their maximum, floats min-max over each patch); parts of a
            receptive field outside the image are 0. Grey images are repeated on 3 channels
            when any image is RGB.
        """
        found = self.patches(index)
        rh, rw = (int(v) for v in self.receptive_field)
        cut = []
        for p in found:
            image = _load(images[p.image], p.image)
            y0, x0, y1, x1 = p.box
            cut.append((_unit(image[y0:y1, x0:x1]), p))
        colour = any(c.ndim == 3 for c, _ in cut)
        out = np.zeros((len(cut), rh, rw, 3) if colour else (len(cut), rh, rw), np.float32)
        for slot, (piece, p) in enumerate(cut):
            if colour and piece.ndim == 2:
                piece = np.repeat(piece[:, :, None], 3, axis=2)
            dy, dx = np.asarray(p.box[:2]) - self.starts[index, slot]
            out[slot, dy : dy + piece.shape[0], dx : dx + piece.shape[1]] = piece
        return out


def _unit(piece: np.ndarray) -> np.ndarray:
    piece = np.asarray(piece)
    if piece.ndim == 3:
        piece = piece[:, :, :3]
    if piece.dtype.kind == "u" and piece.dtype.itemsize <= 2:
        return piece.astype(np.float32) / np.iinfo(piece.dtype).max
    piece = piece.astype(np.float32)
    lo, hi = float(piece.min()), float(piece.max())
    if lo >= 0 and hi <= 1:
        return piece
    return (piece - lo) / (hi - lo) if hi > lo else np.zeros_like(piece)


def _load(image: ImageLike, index: int) -> np.ndarray:
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    return as_image(image, f"image {index}")


def suppression_radius(result: FeatureMaps) -> tuple[int, int]:
    """Map pixels around a pick that are suppressed: receptive fields overlapping by >= half."""
    return tuple(  # type: ignore[return-value]
        max(0, math.ceil(rf / (2 * s)) - 1)
        for rf, s in zip(result.receptive_field, result.scale, strict=True)
    )


def _best_in_image(maps: np.ndarray, k: int, radius: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Greedy NMS per filter: (values (N, k), rows (N, k), cols (N, k)); -inf when exhausted."""
    n, h, w = maps.shape
    work = maps.reshape(n, -1).copy()
    values = np.full((n, k), -np.inf)
    rows = np.zeros((n, k), np.int64)
    cols = np.zeros((n, k), np.int64)
    every = np.arange(n)
    grid = work.reshape(n, h, w)
    ry, rx = radius
    for t in range(k):
        flat = np.argmax(work, axis=1)
        best = work[every, flat]
        i, j = np.divmod(flat, w)
        values[:, t], rows[:, t], cols[:, t] = best, i, j
        for f in np.flatnonzero(np.isfinite(best)):
            grid[f, max(0, i[f] - ry) : i[f] + ry + 1, max(0, j[f] - rx) : j[f] + rx + 1] = -np.inf
    return values, rows, cols


def top_patches(
    source: KernelBank | str | os.PathLike[str],
    images: Sequence[ImageLike],
    layer: str | None = None,
    k: int = 9,
    *,
    weights: str = "auto",
    normalize: str = "auto",
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] | None = None,
    dilation: int | tuple[int, int] | None = None,
    arch: str | None = None,
) -> TopPatches:
    """Every filter's `k` highest-activation patches over `images`.

    Parameters
    ----------
    source : KernelBank, str or path-like
        A bank or anything `load_kernels` takes.
    images : sequence of (H, W[, C]) array_like or path-like
        Arrays or image files (read one at a time).
    layer, weights, normalize, stride, padding, dilation, arch
        As for `feature_maps`.
    k : int
        Patches per filter (>= 1).

    Returns
    -------
    TopPatches

    Raises
    ------
    KernelSpecError
        For no images, k < 1, or any error of `feature_maps` / `read_image` (naming the image).
    """
    if isinstance(images, str | os.PathLike | np.ndarray):
        images = [images]
    images = list(images)
    if not images:
        raise KernelSpecError("no images given; give at least one image")
    if not isinstance(k, int | np.integer) or k < 1:
        raise KernelSpecError(f"k must be a whole number >= 1, got {k!r}")
    k = int(k)
    bank = resolve_bank(source, weights, layer, arch)
    check_elements((bank.n_filters, k, 4), f"{k} patches for each of {bank.n_filters} filters")

    def maps_of_images() -> Iterator[FeatureMaps]:
        for index, image in enumerate(images):
            try:
                yield feature_maps(
                    bank,
                    _load(image, index),
                    relu=False,
                    normalize=normalize,
                    stride=stride,
                    padding=padding,
                    dilation=dilation,
                )
            except KernelSpecError as exc:
                name = (
                    os.fspath(image) if isinstance(image, str | os.PathLike) else f"image {index}"
                )
                raise KernelSpecError(f"{name}: {exc}") from None

    return patches_from_maps(maps_of_images(), k)


def patches_from_maps(results: Iterable[FeatureMaps], k: int = 9) -> TopPatches:
    """`top_patches` from feature maps already computed (signed: ``relu=False``).

    Parameters
    ----------
    results : iterable of FeatureMaps
        One per image, in image order, all of the same layer; consumed one at a time.
    k : int
        Patches per filter.
    """
    best_val = best_img = best_box = best_start = every = None
    meta: dict[str, Any] = {}
    rf = np.zeros(2, np.int64)
    count = 0
    result = None
    for index, result in enumerate(results):
        count += 1
        if best_val is None:
            n = result.n_filters
            best_val = np.full((n, k), -np.inf)
            best_img = np.full((n, k), -1, np.int64)
            best_box = np.zeros((n, k, 4), np.int64)
            best_start = np.zeros((n, k, 2), np.int64)
            every = np.arange(n)[:, None]
            meta = dict(result.meta)
            rf = result.receptive_field
        values, rows, cols = _best_in_image(result.maps, k, suppression_radius(result))
        where = np.stack([rows, cols], axis=-1)
        boxes = result.boxes(where)
        starts = np.rint(result.centre(where) - (rf - 1) / 2).astype(np.int64)
        all_val = np.concatenate([best_val, values], axis=1)
        keep = np.argsort(-all_val, axis=1, kind="stable")[:, :k]
        best_val = all_val[every, keep]
        best_img = np.concatenate([best_img, np.full((n, k), index)], axis=1)[every, keep]
        best_box = np.concatenate([best_box, boxes], axis=1)[every, keep]
        best_start = np.concatenate([best_start, starts], axis=1)[every, keep]
    if result is None or best_val is None:
        raise KernelSpecError("no images given; give at least one image")
    missing = ~np.isfinite(best_val)
    best_img[missing] = -1
    meta.update(
        k=k,
        n_images=count,
        activation="the layer's response before ReLU",
        suppression="greedy per image: a pick removes map pixels whose receptive fields "
        "overlap it by half or more along both axes",
    )
    for key in ("image_shape", "image_dtype", "tiles", "relu"):
        meta.pop(key, None)
    return TopPatches(
        image_index=best_img,
        boxes=best_box,
        activations=np.where(missing, np.nan, best_val),
        receptive_field=np.asarray(rf, np.int64),
        starts=best_start,
        n_images=count,
        meta=meta,
        bank=result.bank,
    )
