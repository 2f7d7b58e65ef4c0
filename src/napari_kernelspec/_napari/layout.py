"""Where the plugin's layers go: never on top of each other or of the user's images.

A mosaic (kernels, spectra, maximising images) is placed to the right of everything the
viewer shows (`beside_all`), with a gap; overlays that belong on an image (feature maps,
patch boxes, attributions) stay on that image. The plugin's layers carry ``kernelspec`` (or
``kernelspec_explain``) metadata; `user_images` lists the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "GAP_FRACTION",
    "beside_all",
    "is_ours",
    "overlaps",
    "user_images",
    "world_extent",
]

#: Gap between a placed mosaic and what is already shown, as a share of its width.
GAP_FRACTION = 0.05
_MARKS = ("kernelspec", "kernelspec_explain")


def is_ours(layer: Any) -> bool:
    """True for a layer the plugin made (its metadata carries the plugin's mark)."""
    meta = layer.metadata if isinstance(layer.metadata, dict) else {}
    return any(mark in meta for mark in _MARKS)


def user_images(viewer: Any) -> list[Any]:
    """The viewer's image layers that the plugin did not make (2-D or RGB ones first)."""
    from napari.layers import Image

    return [lay for lay in viewer.layers if isinstance(lay, Image) and not is_ours(lay)]


def world_extent(layers: Iterable[Any]) -> np.ndarray | None:
    """((y0, x0), (y1, x1)) world bounds of the last two axes of `layers`, None if empty."""
    boxes = []
    for lay in layers:
        extent = np.asarray(lay.extent.world, dtype=float)[:, -2:]
        if np.all(np.isfinite(extent)):
            boxes.append(extent)
    if not boxes:
        return None
    stack = np.stack(boxes)
    return np.array([stack[:, 0].min(axis=0), stack[:, 1].max(axis=0)])


def beside_all(
    viewer: Any, size: tuple[float, float], skip: Iterable[Any] = ()
) -> tuple[float, float]:
    """Translate (y, x) for a new mosaic of world `size` (h, w) right of every shown layer.

    Parameters
    ----------
    viewer : napari.Viewer
    size : (float, float)
        The mosaic's world height and width.
    skip : iterable of layers
        Layers the mosaic replaces or belongs with (not avoided).

    Returns
    -------
    (float, float)
        (0, 0) in an empty viewer; else the top of what is shown and, in x, its right
        edge plus a gap.
    """
    skipped = {id(lay) for lay in skip}
    extent = world_extent(lay for lay in viewer.layers if id(lay) not in skipped)
    if extent is None:
        return 0.0, 0.0
    width = float(extent[1][1] - extent[0][1])
    gap = GAP_FRACTION * max(float(size[1]), width, 1.0)
    return float(extent[0][0]), float(extent[1][1]) + gap


def overlaps(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """True if the world boxes `a` and `b` (as `world_extent` gives them) intersect."""
    if a is None or b is None:
        return False
    return bool(np.all(a[0] < b[1]) and np.all(b[0] < a[1]))
