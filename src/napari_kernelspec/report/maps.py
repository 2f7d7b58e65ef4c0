"""The report's image sections: feature maps of a photo, top patches, the filter map.

`add_image_sections` fills ``models[i]["imaging"]`` for the ``_maps.html.j2`` partial; all the
numbers come from `napari_kernelspec.imaging` (`feature_maps`, `top_patches`,
`filter_embedding`). A model whose layer cannot take the images (a file's 6-channel layer)
gets a note instead of pictures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import palette, views
from ..base.errors import KernelSpecError
from . import images as _images
from . import svg

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult

__all__ = [
    "DEFAULT_IMAGE_CREDIT",
    "ReportImage",
    "add_image_sections",
    "load_report_images",
    "scatter_svg",
]

#: Where the default photo comes from (shown in the report).
DEFAULT_IMAGE_CREDIT = (
    "Chelsea the cat: skimage.data.chelsea() from scikit-image, photograph by Stefan van der "
    "Walt, CC0 (no copyright restrictions)"
)
#: Patches per filter shown in the report.
REPORT_K = 5
_MAP_TILE_PX = 72  # longest side of one feature-map tile in the mosaic
_PATCH_TILE_PX = 30
_FILTERS_PER_ROW = 4


@dataclass(frozen=True, eq=False)
class ReportImage:
    """An image the report runs through the layers.

    Attributes
    ----------
    name : str
        Shown in the report (the file name).
    pixels : (H, W[, 3 | 4]) ndarray
    credit : str
        Where it comes from (empty for the user's own files).
    """

    name: str
    pixels: np.ndarray
    credit: str = ""


def load_report_images(paths: Sequence[str | os.PathLike[str]] | None) -> list[ReportImage]:
    """The user's images (read now, so a bad file fails before any model loads), or the cat.

    Raises
    ------
    KernelSpecError
        For an unreadable, non-image or empty file.
    """
    from ..imaging.images import read_image

    if not paths:
        from skimage import data

        return [ReportImage("chelsea.png", data.chelsea(), DEFAULT_IMAGE_CREDIT)]
    return [ReportImage(Path(p).name, read_image(p)) for p in paths]


def scatter_svg(
    xy: np.ndarray,
    colors: Sequence[str],
    labels: Sequence[str],
    title: str,
    *,
    width: int = 380,
    height: int = 320,
    axes: tuple[str, str] = ("component 1", "component 2"),
) -> str:
    """An inline SVG scatter plot: one labelled, coloured dot per point (text escaped).

    Parameters
    ----------
    xy : (N, 2) array_like
        Coordinates; the plot keeps their aspect ratio.
    colors : sequence of str
        ``#rrggbb`` per point.
    labels : sequence of str
        Tooltip of each point (``<title>``); its leading number is drawn beside the dot.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(colors) or len(xy) != len(labels):
        raise ValueError("xy must be (N, 2) with one colour and one label per point")
    pad, bottom, left = 14, 30, 30
    pw, ph = width - left - pad, height - pad - bottom
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-12))
    unit = min(pw, ph) / span
    cx, cy = (lo + hi) / 2
    body = [
        f'<rect x="{left}" y="{pad}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>',
        f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle">'
        f"{escape(axes[0])}</text>",
        f'<text x="12" y="{pad + ph / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {pad + ph / 2:.1f})">{escape(axes[1])}</text>',
    ]
    for (x, y), color, label in zip(xy, colors, labels, strict=True):
        px = left + pw / 2 + (x - cx) * unit * 0.92
        py = pad + ph / 2 - (y - cy) * unit * 0.92  # up is +y
        number = escape(str(label).split(":")[0].split()[-1])
        body.append(
            f'<g><title>{escape(str(label))}</title><circle cx="{px:.1f}" cy="{py:.1f}" r="5" '
            f'fill="{escape(color)}" stroke="#333" stroke-width="0.6"/>'
            f'<text x="{px + 6:.1f}" y="{py - 4:.1f}" font-size="8" fill="#555">{number}</text>'
            "</g>"
        )
    return (
        f'<svg class="chart scatter" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" font-size="11" '
        'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _map_mosaic(maps: np.ndarray, borders: list[str | None], alt: str) -> dict[str, Any]:
    """(N, h, w) ReLU maps -> one viridis mosaic, each map scaled to its own maximum."""
    step = max(1, math.ceil(max(maps.shape[1:]) / _MAP_TILE_PX))
    small = maps[:, ::step, ::step]
    top = small.reshape(len(small), -1).max(axis=1)
    scaled = small / np.where(top > 0, top, 1.0)[:, None, None]
    tiles = _images.colormap(scaled, 0.0, 1.0)
    gap = 4
    picture = views.mosaic(tiles, gap=gap, fill=1.0)
    origins = views.tile_origins(len(tiles), tiles.shape[1:3], gap=gap)
    labels = [str(i) for i in range(len(tiles))]
    overlay = svg.mosaic_overlay(
        origins, tiles.shape[1:3], picture.shape[:2], borders, labels=labels, border=gap * 0.75
    )
    return _images.picture_context(picture, alt, overlay)


def _patch_grid(found: Any, pictures: list[np.ndarray], borders: list[str | None], alt: str):
    """Each filter's top patches side by side, `_FILTERS_PER_ROW` filters per row."""
    n, k = found.image_index.shape
    rh, rw = (int(v) for v in found.receptive_field)
    factor = _images.upscale_factor(max(rh, rw), _PATCH_TILE_PX, most=16)
    tiles = np.ones((n * k, rh, rw, 3), np.float32)
    for f in range(n):
        crops = found.crops(pictures, f)
        if crops.ndim == 3:
            crops = np.repeat(crops[..., None], 3, axis=-1)
        tiles[f * k : f * k + len(crops)] = crops
    tiles = _images.upscale(tiles, factor, axes=(1, 2))
    gap = 3
    ncols = k * min(n, _FILTERS_PER_ROW)
    picture = views.mosaic(tiles, ncols=ncols, gap=gap, fill=1.0)
    origins = views.tile_origins(len(tiles), tiles.shape[1:3], ncols=ncols, gap=gap)
    colors = [borders[i // k] for i in range(n * k)]
    labels = [str(i // k) if i % k == 0 else "" for i in range(n * k)]
    overlay = svg.mosaic_overlay(
        origins, tiles.shape[1:3], picture.shape[:2], colors, labels=labels, border=gap * 0.75
    )
    return _images.picture_context(picture, alt, overlay)


def image_section(
    result: AnalysisResult, report_images: Sequence[ReportImage], k: int = REPORT_K
) -> dict[str, Any]:
    """The ``imaging`` context of one model: feature maps, top patches and the filter map."""
    from ..imaging import feature_maps, filter_embedding, top_patches

    bank = result.bank
    colors = [palette.to_hex(rgb) for rgb in palette.cluster_colors(result.n_clusters)]
    borders = [colors[lab] if lab >= 0 else None for lab in result.labels.tolist()]
    grey = palette.to_hex(palette.UNCLUSTERED_RGB)
    first = report_images[0]
    section: dict[str, Any] = {"image": first.name, "n_images": len(report_images), "k": k}
    try:
        maps = feature_maps(bank, first.pixels)
        pictures = [im.pixels for im in report_images]
        found = top_patches(bank, pictures, k=k)
    except KernelSpecError as exc:
        section["error"] = str(exc)
    else:
        n, h, w = maps.maps.shape
        section.update(
            maps=_map_mosaic(maps.maps, borders, f"{bank.display_name}: feature maps"),
            geometry=(
                f"{n} maps of {h}×{w}; map pixel (i, j) looks at image pixel "
                f"({maps.translate[0]:g} + {maps.scale[0]:g}·i, "
                f"{maps.translate[1]:g} + {maps.scale[1]:g}·j), receptive field "
                f"{maps.receptive_field[0]}×{maps.receptive_field[1]} px"
            ),
            normalisation=maps.meta["normalisation"],
            channels=maps.meta["channels"],
            patches=_patch_grid(found, pictures, borders, f"{bank.display_name}: top patches"),
        )
    xy = filter_embedding(result, method="pca")
    labels = [
        f"filter {i}: cluster {lab}" if lab >= 0 else f"filter {i}: unclustered"
        for i, lab in enumerate(result.labels.tolist())
    ]
    dots = [colors[lab] if lab >= 0 else grey for lab in result.labels.tolist()]
    section["filter_map"] = scatter_svg(
        xy,
        dots,
        labels,
        f"{bank.display_name}: filter map (PCA of the response spectra)",
        axes=("principal component 1", "principal component 2"),
    )
    return section


def add_image_sections(
    results: Sequence[AnalysisResult],
    models: list[dict[str, Any]],
    report_images: Sequence[ReportImage],
) -> dict[str, Any]:
    """Put an ``imaging`` entry into every model context; return the report-wide image facts.

    Returns
    -------
    dict
        ``{"names": [...], "credits": [...]}`` for the page header.
    """
    from markupsafe import Markup

    for result, model in zip(results, models, strict=True):
        section = image_section(result, report_images)
        for key in ("maps", "patches"):
            if key in section:
                section[key]["overlay"] = Markup(section[key]["overlay"])  # svg.py escaped
        section["filter_map"] = Markup(section["filter_map"])  # escaped in scatter_svg
        model["imaging"] = section
    return {
        "names": [im.name for im in report_images],
        "credits": [f"{im.name}: {im.credit}" for im in report_images if im.credit],
    }
