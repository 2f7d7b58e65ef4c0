"""Legends: napari's own colour bar on the plugin's colour-mapped layers (no Qt).

A colour bar (napari's per-layer ``colorbar`` overlay, ticks at the contrast limits) shows
the value range of the spectra (magma, each filter's response normalised to its peak: 0-1),
the feature maps (activation, after ReLU or signed) and the attributions (signed, centred on
zero, blue-white-red).

Labels: a text above each mosaic names it (model · layer · kernels or spectra), and each
filter index is drawn black on a light tile corner and white on a dark one (napari text
has no outline).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

__all__ = [
    "LABELS_ROLE",
    "contrast_index_text",
    "label_points",
    "luminance",
    "mosaic_label",
    "show_colour_bar",
    "text_colours",
    "update_mosaic_labels",
]


def show_colour_bar(layer: Any) -> bool:
    """Turn on `layer`'s colour bar; False for a layer without one (RGB, points)."""
    if getattr(layer, "rgb", False):
        return False
    with contextlib.suppress(AttributeError):
        layer.colorbar.visible = True
        return True
    return False


#: Relative luminance above which black text contrasts more than white (WCAG contrast
#: ratios (L + 0.05) / 0.05 and 1.05 / (L + 0.05) are equal at sqrt(1.05 * 0.05) - 0.05).
LIGHT_TILE = float(np.sqrt(1.05 * 0.05) - 0.05)
#: Share of a tile's side, from its top-left corner, where the index text sits (sampled).
_TEXT_CORNER = 0.35
#: Name suffix and metadata role of the mosaic-label layer.
LABELS_ROLE = "mosaic labels"


def luminance(rgb: Any) -> np.ndarray:
    """WCAG relative luminance of (..., 3) sRGB in 0-1 (linearised, Rec. 709 weights)."""
    rgb = np.clip(np.asarray(rgb, dtype=float), 0.0, 1.0)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"rgb must end in an axis of 3, got shape {rgb.shape}")
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def text_colours(rgb: Any) -> np.ndarray:
    """(N, 4) RGBA text colour for tiles of mean colour `rgb` (N, 3): black or white,
    whichever contrasts more (`LIGHT_TILE`): black on mid-grey raw weights, white on dark
    spectra."""
    light = luminance(rgb) > LIGHT_TILE
    out = np.ones((light.size, 4))
    out[light, :3] = 0.0
    return out


def _corner_colour(layer: Any, box: np.ndarray, step: int | None) -> np.ndarray:
    """Mean displayed RGB of `layer` inside the world box ((y0, x0), (y1, x1))."""
    data = np.asarray(layer.data)
    rgb = bool(getattr(layer, "rgb", False))
    if data.ndim > 2 + rgb:
        data = data[int(np.clip(step or 0, 0, len(data) - 1))]
    scale = np.asarray(layer.scale, dtype=float)[-2:]
    translate = np.asarray(layer.translate, dtype=float)[-2:]
    (r0, c0), (r1, c1) = np.round((box - translate) / scale).astype(int)
    r0, c0 = max(r0, 0), max(c0, 0)
    patch = data[r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)]
    if patch.size == 0:
        return np.zeros(3)
    if rgb:
        return np.asarray(patch[..., :3], dtype=float).reshape(-1, 3).mean(axis=0)
    lo, hi = layer.contrast_limits
    values = np.clip((np.asarray(patch, dtype=float) - lo) / max(hi - lo, 1e-12), 0, 1)
    colours = np.asarray(layer.colormap.map(np.nan_to_num(values).ravel()))[:, :3]
    return colours.mean(axis=0)


def contrast_index_text(
    clusters: Any, mosaics: dict[str, Any], shown: str, step: int | None = None
) -> np.ndarray:
    """Colour each filter index black or white against the tile corner under it.

    Parameters
    ----------
    clusters : napari Points layer
        The frames and indices (``metadata["kernelspec"]`` as `layers.clusters_layer`).
    mosaics : dict
        ``{"kernels": layer, "spectra": layer}``.
    shown : str
        ``"kernels"`` or ``"spectra"`` on the shared grid (side by side, each point's
        ``features["mosaic"]`` says which mosaic it frames).
    step : int, optional
        The history step shown.

    Returns
    -------
    (N, 4) ndarray
        The text colours set (one per point).
    """
    from .layers import framed_geometries

    geometries = framed_geometries(clusters.metadata["kernelspec"])
    per_point = []
    for k, geometry in enumerate(geometries):
        role = shown if len(geometries) == 1 else ("spectra", "kernels")[k]
        layer = mosaics.get(role)
        corner = _TEXT_CORNER * geometry.tile
        for r, c in geometry.origins():
            box = np.array([[r, c], [r + corner, c + corner]])
            per_point.append(np.zeros(3) if layer is None else _corner_colour(layer, box, step))
    colours = text_colours(np.array(per_point).reshape(-1, 3))
    if len(colours) == len(clusters.data) // max(1, _steps(clusters)):
        colours = np.tile(colours, (_steps(clusters), 1))
    if len(colours) == len(clusters.data):
        clusters.text.color = {"array": colours, "default": "white"}
    return colours


def _steps(points: Any) -> int:
    """Number of history steps a (t, y, x) points layer repeats its markers over (1 in 2-D)."""
    data = np.asarray(points.data)
    return (
        1 if data.ndim != 2 or data.shape[1] != 3 or not len(data) else len(np.unique(data[:, 0]))
    )


def mosaic_label(meta: dict[str, Any], role: str) -> str:
    """``kernels · layer`` (or ``spectra``), ``· untrained`` for random weights.

    Short on purpose: side by side, two labels share the width of their mosaics (the model's
    name is in the layer names and the widget's summary).
    """
    parts = [role, str(meta.get("layer") or "")]
    if not meta.get("trained", True):
        parts.append("untrained")
    return " · ".join(part for part in parts if part)


def label_points(clusters_meta: dict[str, Any], shown: str) -> tuple[np.ndarray, list[str]]:
    """World (y, x) just above the top-left of each mosaic and its label text.

    One label over the shared grid (``shown`` names it), two side by side (spectra then
    kernels).
    """
    from .layers import framed_geometries

    geometries = framed_geometries(clusters_meta)
    roles = [shown] if len(geometries) == 1 else ["spectra", "kernels"]
    places, texts = [], []
    for geometry, role in zip(geometries, roles, strict=True):
        (y0, x0), _ = geometry.bounds()
        places.append((y0 - 0.75 * geometry.tile, x0))  # clear of the first row's text
        texts.append(mosaic_label(clusters_meta, role))
    return np.array(places, dtype=float), texts


def update_mosaic_labels(viewer: Any, clusters: Any, shown: str, steps: int = 1) -> Any:
    """Create or update the Points layer whose text names each mosaic above it.

    ``shown`` is ``"kernels"`` or ``"spectra"`` (the mosaic on the shared grid; side by
    side both are labelled). The layer has invisible markers and the text only; it carries
    ``metadata["kernelspec"]["role"]`` = `LABELS_ROLE` (one per viewer, reused, renamed with
    the model), so the layout counts it as the plugin's own.
    """
    meta = clusters.metadata["kernelspec"]
    places, texts = label_points(meta, shown)
    if steps > 1:  # a history: the label on every step
        t = np.repeat(np.arange(steps), len(places))
        places = np.column_stack([t, np.tile(places, (steps, 1))])
        texts = texts * steps
    found = [
        lay
        for lay in viewer.layers
        if isinstance(lay.metadata, dict)
        and lay.metadata.get("kernelspec", {}).get("role") == LABELS_ROLE
    ]
    name = f"{clusters.name.rsplit(' ', 1)[0]} {LABELS_ROLE}"
    features = {"label": np.array(texts, dtype=object)}
    text = {"string": "{label}", "anchor": "lower_left", "size": 12, "color": "white"}
    if found and found[0].ndim == places.shape[1]:
        layer = found[0]
        layer.data = places
        layer.features = features
        layer.text = text
        layer.name = name
        return layer
    for old in found:
        viewer.layers.remove(old)
    layer = viewer.add_points(
        places,
        name=name,
        size=0.0,
        face_color="transparent",
        border_width=0,
        features=features,
        text=text,
        metadata={"kernelspec": {"role": LABELS_ROLE}},
    )
    layer.editable = False
    return layer
