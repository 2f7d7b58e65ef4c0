"""`render_report`: analysis results -> one self-contained HTML page (pure, no file access).

Everything drawn here comes from the shared core: `AnalysisResult.view`, `.spectrum_images`,
`.cluster_order`, `.radial_profile`, `.filter_rows`, `views.mosaic` / `views.tile_origins`,
`palette.cluster_colors` and `descriptors.DESCRIPTOR_LABELS`. This module only lays the results
out, encodes them as PNG data URIs and inline SVG, and fills the jinja2 templates (autoescaped).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import palette, views
from ..analysis.descriptors import DESCRIPTOR_LABELS, DESCRIPTOR_NAMES
from ..analysis.summary import format_p, null_contrast_text, summary_line
from ..base.text import number, percent
from . import images, svg

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult

__all__ = [
    "ACHROMATIC_THRESHOLD",
    "MAX_LISTED_PAIRS",
    "model_slugs",
    "package_versions",
    "render_report",
    "report_metadata",
    "summary_statistics",
]

#: A filter counts as achromatic when its achromatic fraction is at least this.
ACHROMATIC_THRESHOLD = 0.9
#: Duplicates / sign pairs listed per model in the HTML (all of them are in the JSON).
MAX_LISTED_PAIRS = 60

_KERNEL_TILE_PX = 44  # target on-page size of one kernel tile
_SPECTRUM_TILE_PX = 56
_MOSAIC_PX = 360  # a mosaic of few tiles is enlarged to about this width (LeNet5: 6 tiles)
_MOSAIC_MAX_TILE_PX = 128  # ... but no tile beyond this
_HEATMAP_PX = 420
_ORIENTATION_EDGES = np.linspace(0.0, 180.0, 13)  # 15 degree bins
_PACKAGES = ("napari-kernelspec", "numpy", "scipy", "scikit-learn", "jinja2")
_TORCH_PACKAGES = ("torch", "torchvision")  # versions from metadata: torch is not imported


def model_slugs(names: Sequence[str]) -> list[str]:
    """Unique, id-safe slugs: lower case, runs of characters outside ``[a-z0-9_-]`` -> ``-``.

    Repeated slugs get ``-2``, ``-3``, ... appended, so every section id is unique.
    """
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        base = re.sub(r"[^a-z0-9_-]+", "-", str(name).lower()).strip("-") or "model"
        slug, k = base, 2
        while slug in seen:
            slug, k = f"{base}-{k}", k + 1
        seen.add(slug)
        out.append(slug)
    return out


def package_versions(results: Sequence[AnalysisResult] = ()) -> dict[str, str]:
    """Installed versions of the report's packages and of torch / torchvision (which read
    checkpoints and build models; from package metadata, torch is never imported here).

    Where the loader recorded another torch / torchvision version in ``bank.provenance``
    (kernels cached by an earlier installation), that version is listed too.
    """
    from importlib import metadata

    from .. import __version__

    out: dict[str, str] = {}
    for name in _PACKAGES + _TORCH_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = __version__ if name == "napari-kernelspec" else "not installed"
    for key in _TORCH_PACKAGES:
        found = {str(r.bank.provenance[key]) for r in results if key in r.bank.provenance}
        earlier = sorted(found - {out[key]})
        if earlier:
            out[key] += f" (cached kernels read with {', '.join(earlier)})"
    return out


def _common(results: Sequence[AnalysisResult], attr: str) -> Any:
    values = {getattr(r, attr) for r in results}
    return values.pop() if len(values) == 1 else ", ".join(str(v) for v in sorted(values))


def report_metadata(
    results: Sequence[AnalysisResult], generated: datetime | None = None
) -> dict[str, Any]:
    """JSON-safe facts about a report: time, versions, parameters, models (also in the JSON)."""
    generated = generated or datetime.now(timezone.utc)
    return {
        "generated": generated.isoformat(timespec="seconds"),
        "versions": package_versions(results),
        "method": _common(results, "method"),
        "threshold": _threshold_text(results),
        "threshold_rule": _common(results, "threshold_rule"),
        "alpha": _common(results, "alpha"),
        "redundancy_threshold": _common(results, "redundancy_threshold"),
        "min_samples": _common(results, "min_samples"),
        "achromatic_definition": f"achromatic_fraction >= {ACHROMATIC_THRESHOLD}",
        "models": [r.bank.model for r in results],
    }


def _threshold_text(results: Sequence[AnalysisResult]) -> Any:
    """The shared fixed threshold, or "auto (per model)" when any model's was calibrated."""
    if any(r.threshold_rule == "auto" for r in results):
        return "auto (per model)"
    return _common(results, "threshold")


def similarity_range(results: Sequence[AnalysisResult]) -> float:
    """Lower end of the one similarity colour scale all models share (the upper end is 1).

    The smallest similarity of any model, rounded down to 0.1, at most 0.9: matrices then
    compare at a glance, and layers whose filters are all alike still show structure.
    """
    lowest = min(float(np.min(r.similarity)) for r in results)
    return min(max(-1.0, math.floor(lowest * 10) / 10), 0.9)


# --- formatting ----------------------------------------------------------------------------


def _pair_text(value: tuple[int, int]) -> str:
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def _provenance_text(key: str, value: Any) -> str:
    """One provenance value for people: accuracy as a percentage, floats to 4 digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if key == "accuracy" or key.endswith("_accuracy"):
            return percent(value, 1)
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    return json.dumps(value, default=str)


def _provenance_items(provenance: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(key), _provenance_text(str(key), value)) for key, value in provenance.items()]


def _breakable(text: Any) -> Any:
    """`text` escaped, with a line-break opportunity (``<wbr>``) after each run of ``.``,
    ``_`` or ``/``: a long layer name such as ``Conv2d_1a_3x3.conv`` wraps at its dots."""
    from markupsafe import Markup

    return Markup("<wbr>").join(re.findall(r"[^._/]+[._/]*|[._/]+", str(text)))


def _sort_value(value: Any) -> str:
    """A table cell's ``data-value`` for sorting: the number, or "" when undefined."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ""
    return repr(x) if math.isfinite(x) else ""


# --- one model -----------------------------------------------------------------------------


def _tile_factor(n: int, side: int, tile_px: int) -> int:
    """Upscaling of `n` tiles of `side` pixels: about `tile_px` per tile, and a mosaic of
    few tiles enlarged to about `_MOSAIC_PX` wide (no tile beyond `_MOSAIC_MAX_TILE_PX`)."""
    factor = images.upscale_factor(side, tile_px)
    _, cols = views.grid_shape(n)
    wide = min(round(_MOSAIC_PX / (cols * side)), _MOSAIC_MAX_TILE_PX // side)
    return max(factor, wide, 1)


def _tile_labels(result: AnalysisResult, tile: tuple[int, int], shape: tuple[int, int]) -> str:
    """The filter index in the corner of every tile (as on the spectra)."""
    n = len(result.labels)
    return svg.mosaic_overlay(
        views.tile_origins(n, tile, gap=2),
        tile,
        shape,
        [None] * n,
        labels=[str(i) for i in range(n)],
    )


def _kernel_mosaics(result: AnalysisResult) -> list[dict[str, Any]]:
    h, w = result.bank.kernel_size
    factor = _tile_factor(len(result.labels), max(h, w), _KERNEL_TILE_PX)
    out = []
    for name in views.VIEWS:
        tiles = images.upscale(result.view(name), factor, axes=(1, 2))
        picture = views.mosaic(tiles, gap=2, fill=1.0)
        overlay = _tile_labels(result, tiles.shape[1:3], picture.shape[:2])
        label = views.VIEW_LABELS[name]
        image = images.picture_context(picture, f"{result.bank.display_name}: {label}", overlay)
        out.append({"label": label, **image})
    return out


def _spectrum_mosaic(result: AnalysisResult, colors: list[str]) -> dict[str, Any]:
    spectra = result.spectrum_images()
    factor = _tile_factor(len(spectra), spectra.shape[1], _SPECTRUM_TILE_PX)
    tiles = images.upscale(spectra, factor, axes=(1, 2))
    gap = 4
    picture = views.mosaic(tiles, gap=gap, fill=1.0)
    tile = tiles.shape[1:3]
    origins = views.tile_origins(len(tiles), tile, gap=gap)
    borders = [colors[lab] if lab >= 0 else None for lab in result.labels.tolist()]
    overlay = svg.mosaic_overlay(
        origins,
        tile,
        picture.shape[:2],
        borders,
        labels=[str(i) for i in range(len(tiles))],
        border=gap * 0.75,
    )
    return images.picture_context(picture, f"{result.bank.display_name}: spectra", overlay)


def _heatmap(result: AnalysisResult, colors: list[str], slug: str, vmin: float) -> dict[str, Any]:
    order = result.cluster_order()
    matrix = result.similarity[np.ix_(order, order)]
    n = len(matrix)
    factor = images.upscale_factor(n, _HEATMAP_PX, most=128)
    picture = images.upscale(images.colormap(matrix, vmin, 1.0), factor)
    labels = result.labels[order]
    blocks, start = [], 0
    for lab in range(result.n_clusters):
        size = int(np.sum(labels == lab))
        blocks.append((start, size, colors[lab]))
        start += size
    overlay = svg.heatmap_overlay(blocks, n, factor)
    stops = [palette.to_hex(c) for c in images.colormap(np.linspace(vmin, 1.0, 11), vmin, 1.0)]
    marks = [(result.threshold, "threshold")]
    if math.isfinite(result.chance_similarity):
        marks.append((result.chance_similarity, "null (1% of pairs)"))
    scale = svg.colour_scale(stops, vmin, 1.0, "tuning similarity", f"scale-{slug}", marks=marks)
    return {
        **images.picture_context(picture, f"{result.bank.display_name}: similarity"),
        "overlay": overlay,
        "scale": scale,
    }


def _pairs(pairs: list[tuple[int, int, float]]) -> dict[str, Any]:
    shown = [{"i": i, "j": j, "cos": number(c, 3)} for i, j, c in pairs[:MAX_LISTED_PAIRS]]
    return {"shown": shown, "total": len(pairs), "more": max(0, len(pairs) - MAX_LISTED_PAIRS)}


def _defined(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def summary_statistics(result: AnalysisResult) -> dict[str, Any]:
    """The numbers of one model's row in the comparison table (also the CLI's summary).

    Descriptors a kernel cannot define (NaN, e.g. the orientation of a 1x1 kernel) are left
    out; a statistic with no defined value at all is NaN (shown as "n/a").

    Returns
    -------
    dict
        ``n_clusters``, ``clustered`` (fraction of filters in a cluster), ``duplicates`` and
        ``sign_pairs`` (counts), ``peak`` (median peak frequency, cycles/pixel),
        ``selectivity`` (median orientation selectivity), ``aliasing`` (mean aliasing
        fraction) and ``achromatic`` (share of filters with an achromatic fraction of at
        least `ACHROMATIC_THRESHOLD`).
    """
    d = result.descriptors

    def stat(values: np.ndarray, how: Any) -> float:
        defined = _defined(values)
        return float(how(defined)) if defined.size else math.nan

    return {
        "n_clusters": result.n_clusters,
        "clustered": result.clustered_fraction,
        "chance": result.chance_clustered_fraction,
        "threshold": result.threshold,
        "threshold_rule": result.threshold_rule,
        "chance_similarity": result.chance_similarity,
        "structure_p": getattr(result, "structure_p_value", math.nan),
        "structure_p_text": format_p(getattr(result, "structure_p_value", None)),
        "null_model": getattr(result, "null_model", ""),
        "null_line": summary_line(result),
        "null_contrast": null_contrast_text(result, max_items=2)
        if result.n_clusters == 0 or not getattr(result, "structure_p_value", 1.0) <= 0.01
        else "",
        "duplicates": len(result.duplicates),
        "sign_pairs": len(result.sign_pairs),
        "peak": stat(d["peak_frequency"], np.median),
        "selectivity": stat(d["orientation_selectivity"], np.median),
        "aliasing": stat(d["aliasing_fraction"], np.mean),
        "achromatic": stat(d["achromatic_fraction"], lambda v: np.mean(v >= ACHROMATIC_THRESHOLD)),
    }


def _model_context(result: AnalysisResult, slug: str, color: str, vmin: float) -> dict[str, Any]:
    bank = result.bank
    n, c, h, w = bank.weights.shape
    colors = [palette.to_hex(rgb) for rgb in palette.cluster_colors(result.n_clusters)]
    rows = []
    for row in result.filter_rows():
        lab = row["cluster"]
        rows.append(
            {
                "index": row["index"],
                "cluster": lab,
                "color": colors[lab] if lab >= 0 else palette.to_hex(palette.UNCLUSTERED_RGB),
                "values": [
                    (_sort_value(row[k]), number(row[k], 1 if k == "orientation_deg" else 3))
                    for k in DESCRIPTOR_NAMES
                ],
            }
        )
    return {
        "slug": slug,
        "color": color,
        "model": bank.model,
        "name": bank.display_name,
        "layer": bank.layer,
        "shape": f"{n}×{c}×{h}×{w}",
        "n_filters": n,
        "stride": _pair_text(bank.stride),
        "stride_known": bank.provenance.get("stride_known", True) is not False,
        "padding": _pair_text(bank.padding),
        "source": bank.source,
        "trained": bank.is_trained,
        "provenance": _provenance_items(bank.provenance),
        "summary": summary_statistics(result),
        "mosaics": _kernel_mosaics(result),
        "spectrum": _spectrum_mosaic(result, colors),
        "clusters": [
            {
                "index": k,
                "color": colors[k],
                "members": ", ".join(map(str, members)),
                "size": len(members),
            }
            for k, members in enumerate(result.clusters)
        ],
        "n_unclustered": int(np.sum(result.labels < 0)),
        "duplicates": _pairs(result.duplicates),
        "sign_pairs": _pairs(result.sign_pairs),
        "heatmap": _heatmap(result, colors, slug, vmin),
        "threshold": number(result.threshold, 3),
        "redundancy_threshold": f"{result.redundancy_threshold:g}",
        "notes": list(result.notes),
        "descriptor_labels": [DESCRIPTOR_LABELS[k] for k in DESCRIPTOR_NAMES],
        "rows": rows,
    }


# --- cross-model charts --------------------------------------------------------------------


def _charts(results: Sequence[AnalysisResult], names: list[str], colors: list[str]) -> dict:
    radial = []
    for result, name, color in zip(results, names, colors, strict=True):
        x, y = result.radial_profile()
        radial.append(svg.Series(name, color, x, y))
    peaks = [
        svg.Series(name, color, r.descriptors["peak_frequency"])
        for r, name, color in zip(results, names, colors, strict=True)
    ]
    top = max((float(np.max(_defined(s.x))) for s in peaks if _defined(s.x).size), default=0.0)
    orientation = [
        svg.Series(
            name,
            color,
            r.descriptors["orientation_deg"],
            weights=r.descriptors["orientation_selectivity"],
        )
        for r, name, color in zip(results, names, colors, strict=True)
    ]
    return {
        "radial": svg.line_chart(
            radial,
            title="Radial power profile of every model",
            xlabel="radial frequency (cycles/pixel)",
            ylabel="share of power",
            xlim=(0.0, 0.5),
            width=580,
            legend_width=130,
        ),
        "peak": svg.strip_chart(
            peaks,
            title="Peak frequency of every filter, per model",
            xlabel="peak frequency (cycles/pixel)",
            xlim=(0.0, 0.75 if top > 0.5 else 0.5),
            width=560,
        ),
        "orientation": svg.histogram_panels(
            orientation,
            title="Orientation histograms weighted by orientation selectivity",
            edges=_ORIENTATION_EDGES,
            xlabel="orientation (°)",
            ylabel="share of selectivity",
            xticks=[0, 45, 90, 135, 180],
        ),
    }


# --- the page ------------------------------------------------------------------------------


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("napari_kernelspec.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = number
    env.filters["pct"] = percent
    env.filters["sortkey"] = _sort_value
    env.filters["breakable"] = _breakable
    return env


def render_report(
    results: Sequence[AnalysisResult],
    *,
    generated: datetime | None = None,
    history: dict[str, Any] | None = None,
    explain: Sequence[dict[str, Any]] | None = None,
    images: Sequence[Any] | None = None,
    failures: Sequence[dict[str, str]] = (),
) -> str:
    """Render analysis results of one or more layers as one self-contained HTML page.

    Parameters
    ----------
    results : sequence of AnalysisResult
        One per model, in the order they are shown.
    generated : datetime, optional
        Time stamp shown in the header (default: now, UTC).
    history : dict, optional
        A training-history section (`report.history.history_context`).
    explain : sequence of dict, optional
        One `report.explain.explain_sections` context per result (maximising images).
    images : sequence of report.maps.ReportImage, optional
        Images to run through every layer (feature maps, top patches; `report.maps`).
    failures : sequence of dict, optional
        Models that could not be analysed (``{"model", "error"}``): a note at the top.

    Returns
    -------
    str
        The HTML document: inline CSS, images as PNG data URIs, charts as inline SVG, one
        small inline script (sorting and click-to-enlarge; the page reads fine without it),
        no external resource. Every name from a user or a file is escaped.

    Raises
    ------
    ValueError
        If `results` is empty or holds something other than `AnalysisResult` objects.
    """
    from markupsafe import Markup

    from ..analysis.pipeline import AnalysisResult

    results = list(results)
    if not results:
        raise ValueError("render_report needs at least one AnalysisResult")
    for r in results:
        if not isinstance(r, AnalysisResult):
            raise ValueError(f"render_report needs AnalysisResult objects, got {type(r).__name__}")
    meta = report_metadata(results, generated)
    slugs = model_slugs([r.bank.model for r in results])
    model_colors = [palette.to_hex(c) for c in palette.cluster_colors(len(results))]
    names = [r.bank.display_name for r in results]
    vmin = similarity_range(results)
    models = [
        _model_context(r, slug, color, vmin)
        for r, slug, color in zip(results, slugs, model_colors, strict=True)
    ]
    for m, e in zip(models, explain or [None] * len(models), strict=True):
        m["explain"] = e
    charts = {k: Markup(v) for k, v in _charts(results, names, model_colors).items()}
    for m in models:  # our own SVG: every text inside was escaped by svg.py
        for mosaic in m["mosaics"]:
            mosaic["overlay"] = Markup(mosaic["overlay"])
        m["spectrum"]["overlay"] = Markup(m["spectrum"]["overlay"])
        m["heatmap"]["overlay"] = Markup(m["heatmap"]["overlay"])
        m["heatmap"]["scale"] = Markup(m["heatmap"]["scale"])
    image_facts = None
    if images:
        from .maps import add_image_sections

        image_facts = add_image_sections(results, models, images)
    stamp = datetime.fromisoformat(meta["generated"])
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            meta=meta,
            generated_text=stamp.strftime("%Y-%m-%d %H:%M %Z").strip(),
            models=models,
            charts=charts,
            achromatic_threshold=ACHROMATIC_THRESHOLD,
            descriptor_help=DESCRIPTOR_HELP,
            n_untrained=sum(not m["trained"] for m in models),
            history=history,
            images=image_facts,
            failures=list(failures),
        )
    )


#: One-line definitions shown under the comparison table.
DESCRIPTOR_HELP = {
    "peak_frequency": "radial frequency of the strongest component of the filter with its "
    "mean removed (cycles/pixel; 0.5 is the Nyquist limit along an axis, diagonals reach "
    "0.71)",
    "orientation_selectivity": "0 = isotropic, 1 = a single orientation",
    "aliasing_fraction": "share of the filter's power above the Nyquist limit of the layer's "
    "stride, which the subsampling folds onto other frequencies",
    "achromatic_fraction": "1 = the same kernel in every input channel (grey), 0 = pure "
    "colour opponent",
}
