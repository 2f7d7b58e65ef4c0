"""The report of a layer over a dataset: a self-contained HTML page (or its section).

Three figures, all inline (SVG, and PNG data URIs for the thumbnails; no matplotlib):

- a filters x classes heatmap of the mean activation after ReLU, each filter's row scaled
  to its own largest class mean, with the selectivity index and preferred class beside it;
- the embedding (t-SNE, or PCA where t-SNE was not computed) as a scatter coloured by
  class;
- neighbour rows: for a few query images (the first of each class), the nearest images in
  feature space and in pixel space, framed green when they share the query's class;
- top patches: a row of thumbnails per filter (the first `PATCH_FILTERS`), its k strongest
  receptive fields across the set, cut from the images read again (only those the patches
  come from).

`dataset_section` returns the section's HTML (reusable inside ``kernelspec report``);
`dataset_page` wraps it into a page; `write_dataset` writes the Parquet tables and
``report.html`` together.
"""

from __future__ import annotations

import os
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import palette
from . import images as _images
from . import svg

if TYPE_CHECKING:
    from ..imaging.dataset.run import DatasetResult

__all__ = [
    "PATCH_FILTERS",
    "REPORT_NAME",
    "dataset_page",
    "dataset_section",
    "heatmap_svg",
    "patch_rows",
    "write_dataset",
]

#: The report's file name in the output folder.
REPORT_NAME = "report.html"
_QUERIES = 10  # neighbour rows shown
_THUMB_PX = 64
_UNLABELLED = "#777777"
#: Filters whose top patches the report shows (each row reads up to k images).
PATCH_FILTERS = 64
_PATCH_PX = 40  # about this many pixels per patch side


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def class_colours(n: int) -> list[str]:
    """One distinct ``#rrggbb`` per class."""
    return [palette.to_hex(c) for c in palette.cluster_colors(max(n, 1))][:n]


def heatmap_svg(
    means: np.ndarray,
    classes: list[str],
    selectivity: np.ndarray,
    preferred: list[str | None],
    title: str,
    cell: int = 16,
) -> str:
    """Filters (rows) x classes (columns): each row's class means over its largest.

    Parameters
    ----------
    means : (N, C) array_like
        Mean activation of each filter over each class's images.
    classes : list of str
        C class names.
    selectivity : (N,) array_like
        Written at the end of each row with its preferred class.
    """
    means = np.asarray(means, np.float64)
    n, c = means.shape
    top = np.nanmax(np.where(np.isfinite(means), means, -np.inf), axis=1, initial=0.0)
    scaled = np.divide(means, top[:, None], out=np.zeros_like(means), where=top[:, None] > 0)
    rgb = _images.colormap(np.nan_to_num(scaled))
    left, head, note_w = 44, 70, 150
    width, height = left + c * cell + 8 + note_w, head + n * cell + 6
    body = []
    for j, name in enumerate(classes):
        x = left + j * cell + cell / 2
        body.append(
            f'<text transform="translate({x + 4:.1f} {head - 6}) rotate(-60)">'
            f"{_e(name[:14])}</text>"
        )
    for i in range(n):
        y = head + i * cell
        body.append(f'<text x="{left - 6}" y="{y + cell * 0.75:.1f}" text-anchor="end">{i}</text>')
        for j in range(c):
            colour = palette.to_hex(rgb[i, j])
            tip = f"filter {i}, class {classes[j]}: mean {_fmt(float(means[i, j]), 4)}"
            body.append(
                f'<rect x="{left + j * cell}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{colour}"><title>{_e(tip)}</title></rect>'
            )
        note = f"SI {_fmt(float(selectivity[i]), 2)}"
        if preferred[i] is not None:
            note += f" → {preferred[i]}"
        body.append(
            f'<text x="{left + c * cell + 8}" y="{y + cell * 0.75:.1f}">{_e(note[:24])}</text>'
        )
    label = f"{title}: mean activation per class, each filter scaled to its largest class"
    return (
        f'<svg class="chart heatmap" role="img" aria-label="{_e(label)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-size="11" '
        f'font-family="system-ui, sans-serif"><title>{_e(label)}</title>'
        + "".join(body)
        + "</svg>"
    )


def embedding_svg(
    xy: np.ndarray, labels: np.ndarray, classes: list[str], title: str, width: int = 520
) -> str:
    """The images as dots coloured by class (grey: no class), with a legend."""
    xy = np.asarray(xy, np.float64)
    colours = class_colours(len(classes))
    legend_w = 110 if classes else 0
    height = width - legend_w
    pad = 10
    finite = np.isfinite(xy).all(axis=1)
    lo = xy[finite].min(axis=0) if finite.any() else np.zeros(2)
    hi = xy[finite].max(axis=0) if finite.any() else np.ones(2)
    span = np.where(hi > lo, hi - lo, 1.0)
    side = height - 2 * pad
    body = [
        f'<rect x="{pad}" y="{pad}" width="{side}" height="{side}" fill="#fafafa" stroke="#ccc"/>'
    ]
    by_colour: dict[str, list[str]] = {}
    for (x, y), label in zip(xy[finite], np.asarray(labels)[finite], strict=True):
        px = pad + (x - lo[0]) / span[0] * side
        py = pad + side - (y - lo[1]) / span[1] * side
        colour = colours[label] if label >= 0 else _UNLABELLED
        by_colour.setdefault(colour, []).append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.2"/>')
    for colour, dots in by_colour.items():
        body.append(f'<g fill="{colour}" fill-opacity="0.75">{"".join(dots)}</g>')
    for j, name in enumerate(classes[:30]):
        y = pad + 12 + 16 * j
        body.append(
            f'<circle cx="{height + 8}" cy="{y - 4}" r="5" fill="{colours[j]}"/>'
            f'<text x="{height + 18}" y="{y}">{_e(name[:14])}</text>'
        )
    return (
        f'<svg class="chart scatter" role="img" aria-label="{_e(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-size="11" '
        f'font-family="system-ui, sans-serif"><title>{_e(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _thumb(result: DatasetResult, row: int, query_label: int | None) -> str:
    pixels = result.thumbnails[row]
    factor = _images.upscale_factor(pixels.shape[0], _THUMB_PX)
    uri = _images.png_data_uri(_images.upscale(pixels, factor))
    label = int(result.labels[row])
    name = result.classes[label] if label >= 0 else "no class"
    if query_label is None:
        css = "query"
    else:
        css = "same" if label == query_label and label >= 0 else "other"
    tip = f"row {row}: {result.source.items[row][0]} ({name})"
    return f'<img class="thumb {css}" src="{uri}" alt="{_e(tip)}" title="{_e(tip)}">'


def _queries(result: DatasetResult) -> list[int]:
    labels = result.labels
    rows: list[int] = []
    for c in range(len(result.classes)):
        found = np.flatnonzero(labels == c)
        if len(found):
            rows.append(int(found[0]))
    if not rows:
        rows = list(range(min(_QUERIES, len(labels))))
    return rows[:_QUERIES]


class _Images:
    """The dataset's images by row, read when asked; the last `keep` are kept (bounded
    memory: patches of neighbouring filters often come from the same images)."""

    def __init__(self, result: DatasetResult, keep: int = 16) -> None:
        from collections import OrderedDict

        self._items = result.source.items
        self._keep = keep
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, row: int) -> np.ndarray:
        from ..imaging.dataset.sources import load_item

        if row in self._cache:
            self._cache.move_to_end(row)
        else:
            self._cache[row] = load_item(self._items[row][0])
            if len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        return self._cache[row]


def patch_strip(crops: np.ndarray, factor: int, gap: int = 2) -> np.ndarray:
    """(k, h, w[, 3]) crops in [0, 1] -> one (h * factor, k * (w * factor + gap) - gap, 3)
    float32 row, white between the patches."""
    crops = np.asarray(crops, np.float32)
    if crops.ndim == 3:
        crops = np.repeat(crops[..., None], 3, axis=-1)
    big = _images.upscale(crops, factor, axes=(1, 2))
    k, h, w, _ = big.shape
    row = np.ones((h, k * (w + gap) - gap, 3), np.float32)
    for i, tile in enumerate(big):
        row[:, i * (w + gap) : i * (w + gap) + w] = tile
    return row


def patch_rows(result: DatasetResult, limit: int = PATCH_FILTERS) -> list[tuple[int, np.ndarray]]:
    """``(filter, strip)`` for the first `limit` filters that have patches: `patch_strip` of
    the filter's top patches (`TopPatches.crops`), best first."""
    top = result.top
    n, _ = top.image_index.shape
    rf = int(max(top.receptive_field))
    factor = _images.upscale_factor(rf, _PATCH_PX, most=16)
    images = _Images(result)
    rows = []
    for f in range(min(n, limit)):
        if (top.image_index[f] >= 0).any():
            rows.append((f, patch_strip(top.crops(images, f), factor)))  # type: ignore[arg-type]
    return rows


def _patch_table(result: DatasetResult, si: np.ndarray, names: list[str | None]) -> list[str]:
    rows = patch_rows(result)
    if not rows:
        return []
    n = result.stats.n_filters
    k = result.top.image_index.shape[1]
    shown = f"the first {len(rows)} of {n} filters" if n > PATCH_FILTERS else "every filter"
    parts = [
        "<h3>Top patches across the set</h3>",
        f"<p>The {k} receptive fields with the highest response before ReLU ({shown}; best "
        "first, at most one per place in an image).</p>",
        '<table class="patches"><tr><th>filter</th><th>preferred class</th>'
        "<th>selectivity</th><th>top patches</th></tr>",
    ]
    for f, strip in rows:
        pixels = np.round(np.clip(strip, 0, 1) * 255).astype(np.uint8)
        alt = f"filter {f}: top {k} patches"
        parts.append(
            f"<tr><td>{f}</td><td>{_e(names[f] or '–')}</td><td>{_fmt(float(si[f]))}</td>"
            f'<td><img class="patch" src="{_images.png_data_uri(pixels)}" alt="{_e(alt)}" '
            f'width="{pixels.shape[1]}" height="{pixels.shape[0]}"></td></tr>'
        )
    parts.append("</table>")
    return parts


def dataset_section(result: DatasetResult) -> str:
    """The dataset section's HTML (text escaped; images inline)."""
    meta = result.meta
    si, preferred = result.selectivity()
    names = [result.classes[p] if p >= 0 else None for p in preferred]
    title = f"{meta['display_name']} {meta['layer']}"
    trained = "" if meta.get("trained") else " (UNTRAINED: random weights)"
    facts = [
        ("model", f"{meta['display_name']} ({meta['weights']}){trained}"),
        ("layer", meta["layer"]),
        ("dataset", meta["dataset"]),
        ("preprocessing", f"{meta.get('normalisation', '')}; {meta.get('channels', '')}"),
        ("statistics", meta["activation"]),
        ("selectivity", meta["selectivity"]),
        ("embedding", f"{meta['embedding']} ({meta['embedding_dims']} dimensions)"),
        (
            "same-class neighbours",
            f"feature space {_fmt(meta['feature_same_class'])}, pixel space "
            f"{_fmt(meta['pixel_same_class'])} (k = {meta['neighbours']})",
        ),
        ("t-SNE k-NN accuracy", f"{_fmt(meta['tsne_knn_accuracy'])} ({meta['tsne_knn']})"),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    parts = [
        '<section class="dataset">',
        f"<h2>A layer over a dataset: {_e(title)}</h2>",
        f'<table class="facts">{rows}</table>',
    ]
    c = result.stats.n_classes
    if c:
        means = result.stats.means()[:c].T
        parts += [
            "<h3>Mean activation per class</h3>",
            heatmap_svg(means, list(result.classes), si, names, title),
            svg.colour_scale(
                [palette.to_hex(c) for c in _images.colormap(np.linspace(0, 1, 11))],
                0.0,
                1.0,
                "class mean / the filter's largest class mean",
                "dataset-scale",
            ),
        ]
    use_tsne = np.isfinite(result.tsne).all()
    xy = result.tsne if use_tsne else result.pca
    kind = "t-SNE" if use_tsne else "PCA"
    parts += [
        f"<h3>The images' embedding ({kind})</h3>",
        embedding_svg(xy, result.labels, list(result.classes), f"{kind} of {meta['embedding']}"),
        "<h3>Nearest neighbours: feature space, then pixel space</h3>",
        '<table class="neighbours"><tr><th>query</th><th>feature space</th>'
        "<th>pixel space</th></tr>",
    ]
    for row in _queries(result):
        label = int(result.labels[row])
        feature = "".join(_thumb(result, int(j), label) for j in result.nn_feature[row])
        pixel = "".join(_thumb(result, int(j), label) for j in result.nn_pixel[row])
        parts.append(
            f"<tr><td>{_thumb(result, row, None)}</td><td>{feature}</td><td>{pixel}</td></tr>"
        )
    parts.append("</table>")
    parts += _patch_table(result, si, names)
    parts.append("</section>")
    return "\n".join(parts)


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em;
       color: #222; }
table.facts th { text-align: left; padding-right: 1em; vertical-align: top; }
table.neighbours td { padding: 2px 10px 2px 0; }
img.thumb { image-rendering: pixelated; width: 64px; height: 64px; margin: 1px;
            border: 3px solid #ccc; }
img.thumb.query { border-color: #222; }
img.thumb.same { border-color: #2a9d44; }
img.thumb.other { border-color: #d1343a; }
table.patches td { padding: 2px 10px 2px 0; }
img.patch { image-rendering: pixelated; }
"""


def dataset_page(result: DatasetResult) -> str:
    """A complete, self-contained HTML page of `dataset_section`."""
    title = f"kernelspec dataset: {result.meta['display_name']} {result.meta['layer']}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
        f"</title><style>{_CSS}</style></head><body>\n{dataset_section(result)}\n</body></html>\n"
    )


def write_dataset(result: DatasetResult, out: str | os.PathLike[str]) -> list[str]:
    """Write the four Parquet tables and ``report.html`` into folder `out`, together."""
    return result.write(out, extra=[(REPORT_NAME, dataset_page(result).encode("utf-8"))])
