"""Updating the main widget's napari layers in place (no Qt)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .layers import LayerData

__all__ = ["framed_bounds", "same_array", "thumbnail", "update_layer"]


def update_layer(layer: Any, data: LayerData) -> None:
    """Apply new layer data in place (same layer object: no piling up of copies).

    ``data.data`` None keeps the layer's pixels and only replaces its metadata.
    """
    kwargs = data.kwargs
    if data.layer_type == "points":
        # Each setter costs a refresh (768 points: 50-90 ms for the data, 76 ms for the
        # text): set only what changed. A threshold change changes colours and features.
        if data.data is not None and not same_array(layer.data, data.data):
            layer.data = data.data
        if not np.allclose(layer.size, kwargs["size"]):
            layer.size = kwargs["size"]
        layer.features = kwargs["features"]  # reassign: in-place edits fire no event
        layer.border_color = kwargs["border_color"]
        if not np.allclose(layer.border_width, kwargs["border_width"]):
            layer.border_width = kwargs["border_width"]
        text = kwargs["text"]
        if (
            layer.text.string.format != text["string"]
            or not np.allclose(layer.text.translation, text["translation"])
            or len(layer.text.values) != len(layer.data)
        ):
            layer.text = text
    elif data.data is not None:
        layer.data = data.data
        if "contrast_limits" in kwargs:
            layer.contrast_limits = kwargs["contrast_limits"]
    # The grid can change without new pixels (the seed method's smaller spectra).
    scale = tuple(kwargs.get("scale", (1.0, 1.0)))
    translate = tuple(kwargs.get("translate", (0.0, 0.0)))
    if tuple(layer.scale) != scale:
        layer.scale = scale
    if tuple(layer.translate) != translate:
        layer.translate = translate
    layer.metadata = dict(kwargs["metadata"])


def framed_bounds(meta: dict[str, Any]) -> tuple[tuple[float, float], tuple[float, float]]:
    """World bounds of every mosaic the clusters layer frames (both, side by side)."""
    from .layers import framed_geometries

    corners = np.array([g.bounds() for g in framed_geometries(meta)])  # (k, 2, 2)
    (y0, x0), (y1, x1) = corners[:, 0].min(axis=0), corners[:, 1].max(axis=0)
    return (float(y0), float(x0)), (float(y1), float(x1))


def thumbnail(layer: Any, step: int | None = None) -> np.ndarray | None:
    """The thumbnail napari would show for an image layer, made while the layer is hidden.

    napari skips slicing (and so the thumbnail) of a hidden layer: after a model switch the
    hidden mosaic's thumbnail showed the previous model. The shown step sampled as napari
    samples it (nearest, `scipy.ndimage.zoom`), through the layer's colormap and contrast
    limits: the same pixels napari shows once the layer is visible (a test compares them).

    Returns
    -------
    (h, w, 4) uint8 ndarray, or None for a layer that is not an image
    """
    data = getattr(layer, "data", None)
    if not isinstance(data, np.ndarray) or not hasattr(layer, "contrast_limits"):
        return None
    from scipy import ndimage

    image = data[int(np.clip(step or 0, 0, len(data) - 1))] if data.ndim > 2 + layer.rgb else data
    side = np.asarray(layer.thumbnail).shape[:2]
    shape = np.asarray(image.shape[:2], dtype=float)
    # napari's own sampling (nearest, no prefilter) so the picture matches the one napari
    # makes once the layer is shown again
    fitted = np.clip(np.min(np.divide(side, shape)) * shape, 1, side)
    zoom = tuple(fitted / shape) + ((1.0,) if layer.rgb else ())
    small = ndimage.zoom(np.asarray(image, dtype=float), zoom, order=0, prefilter=False)
    low, high = layer.contrast_limits
    small = np.clip((small - low) / max(high - low, 1e-12), 0.0, 1.0)
    if layer.rgb:
        rgba = np.concatenate([small[..., :3], np.ones((*small.shape[:2], 1))], axis=-1)
    else:
        small = small ** float(getattr(layer, "gamma", 1.0))
        rgba = np.asarray(layer.colormap.map(small.ravel())).reshape(*small.shape, 4)
        rgba[np.isnan(small)] = getattr(layer.colormap, "nan_color", (0.0, 0.0, 0.0, 1.0))
    rgba[..., 3] *= float(layer.opacity)
    return (np.nan_to_num(rgba) * 255).round().astype(np.uint8)


def same_array(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))
