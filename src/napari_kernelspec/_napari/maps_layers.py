"""Layer data for the feature-maps widget: maps on the image, top patches, the filter map.

No Qt here. Every layer lies in the world coordinates of the source image layer: the maps'
``scale`` / ``translate`` are the image layer's composed with the layer geometry
(`FeatureMaps.scale` / `.translate`), so map pixel (i, j) sits on its receptive-field centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import palette, views
from .layers import LayerData

if TYPE_CHECKING:
    from ..imaging.maps import FeatureMaps
    from ..imaging.patches import TopPatches

__all__ = [
    "MAP_ROLES",
    "boxes_layer",
    "filter_map_layer",
    "map_geometry",
    "maps_layer",
    "patches_layer",
]

#: Roles of the widget's layers (``metadata["kernelspec"]["role"]``).
MAP_ROLES = ("feature_maps", "top_patches", "patch_boxes", "filter_map")
RELU_COLORMAP = "magma"
SIGNED_COLORMAP = "bwr"  # diverging, white at the centre of symmetric contrast limits
_GAP = 4  # image pixels between patch tiles / between the image and what is placed beside it


def _pair(value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)[-2:]
    return arr if arr.size == 2 else np.ones(2)


def map_geometry(
    result: FeatureMaps, image_scale: Any = (1.0, 1.0), image_translate: Any = (0.0, 0.0)
) -> tuple[tuple[float, float], tuple[float, float]]:
    """World (scale, translate) of the (H', W') map axes over an image layer.

    Parameters
    ----------
    result : FeatureMaps
    image_scale, image_translate : (2,) array_like
        The image layer's own ``scale`` and ``translate`` (its last two axes).

    Returns
    -------
    scale, translate : (float, float)
        ``image_scale * result.scale`` and ``image_translate + image_scale *
        result.translate``; with a plain image layer exactly the result's.
    """
    s, t = _pair(image_scale), _pair(image_translate)
    scale = s * result.scale
    translate = t + s * result.translate
    return (float(scale[0]), float(scale[1])), (float(translate[0]), float(translate[1]))


def _meta(role: str, result: Any, **extra: Any) -> dict[str, Any]:
    bank = result.bank
    return {
        "kernelspec": {
            "role": role,
            "model": bank.model,
            "display_name": bank.display_name,
            "layer": bank.layer,
            "n_filters": bank.n_filters,
            **extra,
        }
    }


def maps_layer(
    result: FeatureMaps,
    image_scale: Any = (1.0, 1.0),
    image_translate: Any = (0.0, 0.0),
    name: str | None = None,
) -> LayerData:
    """One Image layer (N, H', W'): napari's slider on axis 0 picks the filter.

    ReLU maps use a sequential colour map from 0; signed maps (ReLU off) a diverging one
    with contrast limits symmetric about 0.
    """
    scale, translate = map_geometry(result, image_scale, image_translate)
    maps = result.maps
    top = float(np.max(np.abs(maps))) if maps.size else 1.0
    top = top if top > 0 else 1.0
    relu = bool(result.meta.get("relu", True))
    kwargs = {
        "name": name or f"feature maps · {result.bank.display_name} {result.bank.layer}",
        "scale": (1.0, *scale),
        "translate": (0.0, *translate),
        "colormap": RELU_COLORMAP if relu else SIGNED_COLORMAP,
        "contrast_limits": (0.0, top) if relu else (-top, top),
        "blending": "translucent",
        "opacity": 0.85,
        "metadata": _meta(
            "feature_maps",
            result,
            relu=relu,
            receptive_field=[int(v) for v in result.receptive_field],
            map_scale=[float(v) for v in result.scale],
            map_translate=[float(v) for v in result.translate],
        ),
    }
    return LayerData(maps, kwargs, "image")


def _below(image_shape: Sequence[int], image_scale: Any, image_translate: Any) -> np.ndarray:
    s, t = _pair(image_scale), _pair(image_translate)
    return t + s * np.array([image_shape[0] + _GAP, 0.0])


def patches_layer(
    top: TopPatches,
    crops: np.ndarray,
    index: int,
    image_shape: Sequence[int],
    image_scale: Any = (1.0, 1.0),
    image_translate: Any = (0.0, 0.0),
) -> LayerData:
    """Filter `index`'s top patches as one row of tiles, placed under the source image.

    Parameters
    ----------
    crops : (k, rh, rw[, 3]) ndarray
        From `TopPatches.crops` (values in [0, 1]).
    """
    crops = np.asarray(crops, dtype=np.float32)
    rh, rw = (int(v) for v in top.receptive_field)
    if len(crops) == 0:
        crops = np.zeros((1, rh, rw), np.float32)
    picture = views.mosaic(crops, ncols=len(crops), gap=_GAP, fill=1.0)
    kwargs = {
        "name": f"top patches · filter {index}",
        "scale": tuple(float(v) for v in _pair(image_scale)),
        "translate": tuple(float(v) for v in _below(image_shape, image_scale, image_translate)),
        "rgb": picture.ndim == 3,
        "contrast_limits": (0.0, 1.0),
        "metadata": _meta("top_patches", top, filter=int(index)),
    }
    return LayerData(picture, kwargs, "image")


def boxes_layer(
    top: TopPatches,
    index: int,
    image_scale: Any = (1.0, 1.0),
    image_translate: Any = (0.0, 0.0),
    color: str = "#ffcc00",
) -> LayerData:
    """Filter `index`'s patch boxes as rectangles on the source image, numbered by rank.

    A box ``[y0, x0, y1, x1]`` covers image pixels ``y0..y1-1``: its edges lie half a pixel
    outside those pixel centres.
    """
    patches = top.patches(index)
    rects = [
        np.array(
            [
                [y0 - 0.5, x0 - 0.5],
                [y0 - 0.5, x1 - 0.5],
                [y1 - 0.5, x1 - 0.5],
                [y1 - 0.5, x0 - 0.5],
            ]
        )
        for y0, x0, y1, x1 in (p.box for p in patches)
    ]
    kwargs = {
        "name": f"patch boxes · filter {index}",
        "shape_type": "rectangle",
        "scale": tuple(float(v) for v in _pair(image_scale)),
        "translate": tuple(float(v) for v in _pair(image_translate)),
        "edge_color": color,
        "face_color": "transparent",
        "edge_width": max(1.0, float(max(top.receptive_field)) / 12),
        "features": {
            "rank": np.arange(1, len(patches) + 1),
            "activation": np.array([p.activation for p in patches]),
        },
        "text": {"string": "{rank}", "color": color, "anchor": "upper_left", "size": 9},
        "metadata": _meta("patch_boxes", top, filter=int(index)),
    }
    return LayerData(rects, kwargs, "shapes")


def filter_map_layer(
    xy: np.ndarray,
    labels: np.ndarray,
    result: Any,
    image_shape: Sequence[int],
    image_scale: Any = (1.0, 1.0),
    image_translate: Any = (0.0, 0.0),
    method: str = "pca",
) -> LayerData:
    """The filter map as Points to the right of the source image, coloured by cluster.

    ``features`` has one row per filter: ``filter`` and ``cluster`` (the clusters layer's
    columns); point i is filter i.
    """
    xy = np.asarray(xy, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    s, t = _pair(image_scale), _pair(image_translate)
    size = float(image_shape[0]) * 0.8
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-12))
    # x -> column, y -> row (up is up); fitted into a square of `size` image pixels
    rows = (hi[1] - xy[:, 1]) / span * size + 0.1 * image_shape[0]
    cols = (xy[:, 0] - lo[0]) / span * size + image_shape[1] + 2 * _GAP + 0.1 * size
    data = np.stack([rows, cols], axis=1) * s + t
    n_clusters = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    table = palette.cluster_colors(n_clusters)
    rgb = np.array([table[lab] if lab >= 0 else palette.UNCLUSTERED_RGB for lab in labels])
    colors = np.concatenate([rgb.reshape(-1, 3), np.ones((len(rgb), 1))], axis=1)
    kwargs = {
        "name": f"filter map · {method}",
        "features": {"filter": np.arange(len(xy)), "cluster": labels},
        "face_color": colors,
        "border_color": "#222222",
        "size": max(3.0, size / 40) * float(s.mean()),
        "text": {"string": "{filter}", "size": 7, "color": "white", "anchor": "upper_left"},
        "metadata": _meta("filter_map", result, method=method),
    }
    return LayerData(data, kwargs, "points")
