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
]

#: A filter counts as achromatic when its achromatic fraction is at least this.
ACHROMATIC_THRESHOLD = 0.9
#: Duplicates / sign pairs listed per model in the HTML (all of them are in the JSON).
MAX_LISTED_PAIRS = 60

_KERNEL_TILE_PX = 44  # target on-page size of one kernel tile
_SPECTRUM_TILE_PX = 56
_HEATMAP_PX = 420
_ORIENTATION_EDGES = np.linspace(0.0, 180.0, 13)  # 15 degree bins
_PACKAGES = ("napari-kernelspec", "numpy", "scipy", "scikit-learn", "jinja2")


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
    """Installed versions of the report's packages, plus torch / torchvision as recorded by
    the loader in ``bank.provenance`` (torch is never imported here).
    """
    from importlib import metadata

    from .. import __version__

    out: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = __version__ if name == "napari-kernelspec" else "not installed"
    for key in ("torch", "torchvision"):
        found = sorted({str(r.bank.provenance[key]) for r in results if key in r.bank.provenance})
        if found:
            out[key] = ", ".join(found)
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
        "threshold": _common(results, "threshold"),
        "min_samples": _common(results, "min_samples"),
        "achromatic_definition": f"achromatic_fraction >= {ACHROMATIC_THRESHOLD}",
        "models": [r.bank.model for r in results],
    }


# --- formatting ----------------------------------------------------------------------------


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{100 * value:.0f}%"


def _pair_text(value: tuple[int, int]) -> str:
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def _provenance_items(provenance: dict[str, Any]) -> list[tuple[str, str]]:
    items = []
    for key, value in provenance.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        items.append((str(key), text))
    return items


def _image(pixels: np.ndarray, alt: str, overlay: str | None = None) -> dict[str, Any]:
    h, w = pixels.shape[:2]
    return {
        "uri": images.png_data_uri(pixels),
        "width": w,
        "height": h,
        "aspect": f"{w / h:.5f}",
        "alt": alt,
        "overlay": overlay,
    }


# --- one model -----------------------------------------------------------------------------


def _kernel_mosaics(result: AnalysisResult) -> list[dict[str, Any]]:
    h, w = result.bank.kernel_size
    factor = images.upscale_factor(max(h, w), _KERNEL_TILE_PX)
    out = []
    for name in views.VIEWS:
        tiles = images.upscale(result.view(name), factor, axes=(1, 2))
        picture = views.mosaic(tiles, gap=2, fill=1.0)
        image = _image(picture, f"{result.bank.display_name}: {views.VIEW_LABELS[name]}")
        out.append({"label": views.VIEW_LABELS[name], **image})
    return out


def _spectrum_mosaic(result: AnalysisResult, colors: list[str]) -> dict[str, Any]:
    spectra = result.spectrum_images()
    factor = images.upscale_factor(spectra.shape[1], _SPECTRUM_TILE_PX)
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
    return _image(picture, f"{result.bank.display_name}: spectra", overlay)


def _heatmap(result: AnalysisResult, colors: list[str], slug: str) -> dict[str, Any]:
    order = result.cluster_order()
    matrix = result.similarity[np.ix_(order, order)]
    # colour range: from the smallest similarity (rounded down to 0.1) to 1, so that layers
    # whose filters are all alike still show structure; the scale below says which range
    vmin = max(-1.0, math.floor(float(matrix.min()) * 10) / 10)
    vmin = min(vmin, 0.9)
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
    scale = svg.colour_scale(stops, vmin, 1.0, "tuning similarity", f"scale-{slug}")
    return {
        **_image(picture, f"{result.bank.display_name}: similarity"),
        "overlay": overlay,
        "scale": scale,
    }


def _pairs(pairs: list[tuple[int, int, float]]) -> dict[str, Any]:
    shown = [{"i": i, "j": j, "cos": _fmt(c, 3)} for i, j, c in pairs[:MAX_LISTED_PAIRS]]
    return {"shown": shown, "total": len(pairs), "more": max(0, len(pairs) - MAX_LISTED_PAIRS)}


def _summary(result: AnalysisResult) -> dict[str, Any]:
    d = result.descriptors
    return {
        "n_clusters": result.n_clusters,
        "clustered": _pct(result.clustered_fraction),
        "clustered_value": result.clustered_fraction,
        "duplicates": len(result.duplicates),
        "sign_pairs": len(result.sign_pairs),
        "peak": float(np.median(d["peak_frequency"])),
        "selectivity": float(np.median(d["orientation_selectivity"])),
        "aliasing": float(np.mean(d["aliasing_fraction"])),
        "achromatic": float(np.mean(d["achromatic_fraction"] >= ACHROMATIC_THRESHOLD)),
    }


def _model_context(result: AnalysisResult, slug: str, color: str) -> dict[str, Any]:
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
                    (row[k], _fmt(row[k], 1 if k == "orientation_deg" else 3))
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
        "summary": _summary(result),
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
        "heatmap": _heatmap(result, colors, slug),
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
    top = max(float(np.max(s.x)) for s in peaks)
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
    env.filters["fmt"] = _fmt
    env.filters["pct"] = _pct
    return env


def render_report(
    results: Sequence[AnalysisResult],
    *,
    generated: datetime | None = None,
    images: Sequence[Any] | None = None,
) -> str:
    """Render analysis results of one or more layers as one self-contained HTML page.

    Parameters
    ----------
    results : sequence of AnalysisResult
        One per model, in the order they are shown.
    generated : datetime, optional
        Time stamp shown in the header (default: now, UTC).
    images : sequence of report.maps.ReportImage, optional
        Images to run through every layer (feature maps, top patches; `report.maps`).

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
    models = [
        _model_context(r, slug, color)
        for r, slug, color in zip(results, slugs, model_colors, strict=True)
    ]
    charts = {k: Markup(v) for k, v in _charts(results, names, model_colors).items()}
    for m in models:  # our own SVG: every text inside was escaped by svg.py
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
            images=image_facts,
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
