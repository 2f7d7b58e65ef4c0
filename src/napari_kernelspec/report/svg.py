"""Inline SVG charts and image overlays, drawn as strings (no matplotlib).

Every function returns a complete ``<svg>`` element as a string. Every piece of text that
goes into it is XML-escaped here, so callers may pass model or layer names from files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

__all__ = [
    "Series",
    "colour_scale",
    "heatmap_overlay",
    "histogram_panels",
    "line_chart",
    "mosaic_overlay",
    "nice_ticks",
    "strip_chart",
]

_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'
_AXIS = "#444"
_GRID = "#e3e3e3"


@dataclass(frozen=True)
class Series:
    """One named set of values drawn in one colour.

    Attributes
    ----------
    label : str
        Legend text (escaped when drawn).
    color : str
        ``#rrggbb``.
    x, y : (M,) ndarray
        Coordinates (`y` may be empty where only `x` values are drawn).
    weights : (M,) ndarray, optional
        Weights of `x` values (histograms).
    """

    label: str
    color: str
    x: np.ndarray
    y: np.ndarray | None = None
    weights: np.ndarray | None = None


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def _fmt_tick(value: float, step: float) -> str:
    digits = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f"{value:.{digits}f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi] (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"need finite lo < hi, got {lo} and {hi}")
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


class _Frame:
    """Linear mapping of data coordinates to a plot rectangle in SVG pixels."""

    def __init__(
        self,
        xlim: tuple[float, float],
        ylim: tuple[float, float],
        box: tuple[float, float, float, float],
    ) -> None:
        self.xlim, self.ylim = xlim, ylim
        self.left, self.top, self.width, self.height = box

    def x(self, value: float) -> float:
        lo, hi = self.xlim
        return self.left + (value - lo) / (hi - lo) * self.width

    def y(self, value: float) -> float:
        lo, hi = self.ylim
        return self.top + self.height - (value - lo) / (hi - lo) * self.height

    def axes(
        self,
        xticks: Sequence[float],
        yticks: Sequence[float] | None,
        xlabel: str,
        ylabel: str,
        xtick_labels: Sequence[str] | None = None,
    ) -> list[str]:
        out = []
        bottom = self.top + self.height
        xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
        for i, t in enumerate(xticks):
            px = self.x(t)
            text = xtick_labels[i] if xtick_labels is not None else _fmt_tick(t, xstep)
            out.append(
                f'<line x1="{px:.1f}" y1="{self.top:.1f}" x2="{px:.1f}" y2="{bottom:.1f}" '
                f'stroke="{_GRID}"/>'
                f'<line x1="{px:.1f}" y1="{bottom:.1f}" x2="{px:.1f}" y2="{bottom + 4:.1f}" '
                f'stroke="{_AXIS}"/>'
                f'<text x="{px:.1f}" y="{bottom + 16:.1f}" text-anchor="middle">{_e(text)}</text>'
            )
        if yticks:
            ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
            for t in yticks:
                py = self.y(t)
                out.append(
                    f'<line x1="{self.left:.1f}" y1="{py:.1f}" x2="{self.left + self.width:.1f}" '
                    f'y2="{py:.1f}" stroke="{_GRID}"/>'
                    f'<text x="{self.left - 6:.1f}" y="{py + 4:.1f}" text-anchor="end">'
                    f"{_e(_fmt_tick(t, ystep))}</text>"
                )
        out.append(
            f'<rect x="{self.left:.1f}" y="{self.top:.1f}" width="{self.width:.1f}" '
            f'height="{self.height:.1f}" fill="none" stroke="{_AXIS}"/>'
        )
        if xlabel:
            out.append(
                f'<text x="{self.left + self.width / 2:.1f}" y="{bottom + 34:.1f}" '
                f'text-anchor="middle" class="axis-label">{_e(xlabel)}</text>'
            )
        if ylabel:
            cy = self.top + self.height / 2
            out.append(
                f'<text transform="translate({self.left - 46:.1f} {cy:.1f}) rotate(-90)" '
                f'text-anchor="middle" class="axis-label">{_e(ylabel)}</text>'
            )
        return out


def _svg(width: float, height: float, body: Sequence[str], label: str, css: str = "") -> str:
    return (
        f'<svg class="chart {css}" role="img" '
        f'aria-label="{_e(label)}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" font-size="12" {_FONT}>'
        f"<title>{_e(label)}</title>" + "".join(body) + "</svg>"
    )


def _legend(series: Sequence[Series], x: float, y: float, row: float = 18) -> list[str]:
    out = []
    for i, s in enumerate(series):
        yy = y + i * row
        out.append(
            f'<line x1="{x:.1f}" y1="{yy:.1f}" x2="{x + 22:.1f}" y2="{yy:.1f}" '
            f'stroke="{_e(s.color)}" stroke-width="3"/>'
            f'<text x="{x + 28:.1f}" y="{yy + 4:.1f}">{_e(s.label)}</text>'
        )
    return out


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    xlim: tuple[float, float],
    width: int = 760,
    height: int = 340,
    legend_width: int = 170,
) -> str:
    """Several lines on one pair of axes with a legend to the right.

    Parameters
    ----------
    series : sequence of Series
        Each with ``x`` and ``y`` of equal length (M,).
    title : str
        Accessible name of the chart.
    xlabel, ylabel : str
        Axis labels.
    xlim : (float, float)
        Range of the x axis; the y axis runs from 0 to the largest value.

    Returns
    -------
    str
        An ``<svg>`` element.
    """
    if not series:
        raise ValueError("line_chart needs at least one series")
    for s in series:
        if s.y is None or len(s.x) != len(s.y):
            raise ValueError(f"series {s.label!r} needs x and y of equal length")
    top = max(float(np.nanmax(s.y)) for s in series if len(s.y))  # type: ignore[arg-type]
    yticks = nice_ticks(0.0, top if top > 0 else 1.0, 5)
    ylim = (0.0, max(yticks[-1], top))
    legend_w = legend_width
    frame = _Frame(xlim, ylim, (62, 14, width - 62 - legend_w - 16, height - 14 - 48))
    body = frame.axes(nice_ticks(*xlim, 5), yticks, xlabel, ylabel)
    for s in series:
        points = " ".join(
            f"{frame.x(float(x)):.1f},{frame.y(float(y)):.1f}"
            for x, y in zip(s.x, s.y, strict=True)  # type: ignore[arg-type]
            if math.isfinite(float(y))
        )
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{_e(s.color)}" '
            f'stroke-width="2" stroke-linejoin="round"><title>{_e(s.label)}</title></polyline>'
        )
    body += _legend(series, width - legend_w + 4, 24)
    return _svg(width, height, body, title)


def strip_chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    xlim: tuple[float, float],
    width: int = 760,
    row: int = 28,
) -> str:
    """One row of dots per series (the distribution of ``x``) with its median marked.

    Parameters
    ----------
    series : sequence of Series
        ``x`` holds the values (M,) of one group; ``y`` is ignored. Dots are spread
        vertically by a fixed deterministic jitter so ties stay visible.
    xlim : (float, float)
        Range of the shared x axis.

    Returns
    -------
    str
        An ``<svg>`` element.
    """
    if not series:
        raise ValueError("strip_chart needs at least one series")
    label_w = 110
    height = 14 + row * len(series) + 48
    frame = _Frame(
        xlim, (0.0, float(len(series))), (label_w, 14, width - label_w - 20, row * len(series))
    )
    body = frame.axes(nice_ticks(*xlim, 6), None, xlabel, "")
    for i, s in enumerate(series):
        values = np.asarray(s.x, dtype=np.float64)
        values = values[np.isfinite(values)]
        centre = frame.y(len(series) - i - 0.5)
        body.append(
            f'<text x="{label_w - 8}" y="{centre + 4:.1f}" text-anchor="end">{_e(s.label)}</text>'
        )
        jitter = ((np.arange(len(values)) * 0.618034) % 1.0 - 0.5) * row * 0.6
        dots = "".join(
            f'<circle cx="{frame.x(v):.1f}" cy="{centre + j:.1f}" r="2.6"/>'
            for v, j in zip(values, jitter, strict=True)
        )
        body.append(f'<g fill="{_e(s.color)}" fill-opacity="0.55">{dots}</g>')
        if len(values):
            med = float(np.median(values))
            mx = frame.x(med)
            body.append(
                f'<line x1="{mx:.1f}" y1="{centre - row * 0.42:.1f}" x2="{mx:.1f}" '
                f'y2="{centre + row * 0.42:.1f}" stroke="#111" stroke-width="2.5">'
                f"<title>{_e(s.label)}: median {_num(med)}</title></line>"
            )
    return _svg(width, height, body, title)


def histogram_panels(
    series: Sequence[Series],
    *,
    title: str,
    edges: np.ndarray,
    xlabel: str,
    ylabel: str,
    xticks: Sequence[float],
    columns: int = 4,
    panel_width: int = 190,
    panel_height: int = 130,
) -> str:
    """Small multiples: one histogram of ``x`` (weighted by ``weights``) per series.

    Parameters
    ----------
    series : sequence of Series
        ``x`` the values (M,), ``weights`` optional (M,) weights.
    edges : (B + 1,) ndarray
        Shared bin edges.
    xticks : sequence of float
        Tick positions on every panel's x axis.
    columns : int
        Panels per row.

    Returns
    -------
    str
        An ``<svg>`` element; each panel's bars are normalised to its own total.
    """
    if not series:
        raise ValueError("histogram_panels needs at least one series")
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be increasing, with at least two values")
    columns = max(1, min(columns, len(series)))
    rows = math.ceil(len(series) / columns)
    cell_w, cell_h = panel_width + 20, panel_height + 62
    width, height = 52 + columns * cell_w, rows * cell_h + 8
    shares = []
    for s in series:
        x = np.asarray(s.x, dtype=np.float64)
        w = np.ones_like(x) if s.weights is None else np.asarray(s.weights, dtype=np.float64)
        defined = np.isfinite(x) & np.isfinite(w)  # undefined descriptors (NaN) are left out
        counts, _ = np.histogram(x[defined], bins=edges, weights=w[defined])
        total = counts.sum()
        shares.append(counts / total if total > 0 else counts * 0.0)
    top = max(float(np.max(c)) for c in shares)
    yticks = nice_ticks(0.0, top if top > 0 else 1.0, 3)
    ylim = (0.0, max(yticks[-1], top))
    body = []
    for i, (s, share) in enumerate(zip(series, shares, strict=True)):
        r, c = divmod(i, columns)
        left, top_px = 52 + c * cell_w, 24 + r * cell_h
        frame = _Frame(
            (float(edges[0]), float(edges[-1])), ylim, (left, top_px, panel_width, panel_height)
        )
        body.append(
            f'<text x="{left + panel_width / 2:.1f}" y="{top_px - 7:.1f}" text-anchor="middle" '
            f'font-weight="600">{_e(s.label)}</text>'
        )
        body += frame.axes(xticks, yticks if c == 0 else [], xlabel if r == rows - 1 else "", "")
        bars = []
        for lo, hi, value in zip(edges[:-1], edges[1:], share, strict=True):
            x0, x1 = frame.x(lo), frame.x(hi)
            y = frame.y(value)
            bars.append(
                f'<rect x="{x0 + 0.5:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                f'height="{frame.y(0.0) - y:.1f}"/>'
            )
        body.append(f'<g fill="{_e(s.color)}">{"".join(bars)}</g>')
    body.append(
        f'<text transform="translate(14 {height / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'class="axis-label">{_e(ylabel)}</text>'
    )
    return _svg(width, height, body, title)


def mosaic_overlay(
    origins: np.ndarray,
    tile_shape: tuple[int, int],
    image_shape: tuple[int, int],
    colors: Sequence[str | None],
    *,
    labels: Sequence[str] | None = None,
    border: float = 2.0,
) -> str:
    """Transparent SVG laid over a mosaic image: coloured tile borders and tile labels.

    Parameters
    ----------
    origins : (N, 2) ndarray of int
        Top-left (row, column) of each tile in image pixels (`views.tile_origins`).
    tile_shape : (int, int)
        Tile height and width in image pixels.
    image_shape : (int, int)
        Height and width of the whole mosaic image (the overlay's viewBox).
    colors : sequence of str or None
        Border colour of each tile, None for no border.
    labels : sequence of str, optional
        Text drawn in the top-left corner of each tile (filter indices).
    border : float
        Border width in image pixels; drawn inside the gap around the tile.

    Returns
    -------
    str
        An ``<svg>`` element scaled to the image with ``preserveAspectRatio="none"``.
    """
    origins = np.asarray(origins)
    if origins.ndim != 2 or origins.shape[1] != 2 or len(origins) != len(colors):
        raise ValueError("origins must be (N, 2) with one colour per tile")
    if labels is not None and len(labels) != len(origins):
        raise ValueError("need one label per tile")
    th, tw = tile_shape
    height, width = image_shape
    font = max(7.0, min(th, tw) * 0.24)
    body = []
    for i, ((r, c), color) in enumerate(zip(origins.tolist(), colors, strict=True)):
        if color is not None:
            half = border / 2
            body.append(
                f'<rect x="{c - half:.1f}" y="{r - half:.1f}" width="{tw + border:.1f}" '
                f'height="{th + border:.1f}" fill="none" stroke="{_e(color)}" '
                f'stroke-width="{border:.1f}"/>'
            )
        if labels is not None:
            body.append(
                f'<text x="{c + font * 0.25:.1f}" y="{r + font:.1f}">{_e(labels[i])}</text>'
            )
    return (
        f'<svg class="overlay" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="none" aria-hidden="true" font-size="{font:.1f}" '
        f'{_FONT} font-weight="700" fill="#fff" stroke="#000" stroke-width="{font / 5:.2f}" '
        f'paint-order="stroke" stroke-linejoin="round">' + "".join(body) + "</svg>"
    )


def heatmap_overlay(blocks: Sequence[tuple[int, int, str]], n: int, factor: int = 1) -> str:
    """Outline each cluster's diagonal block on an (n x n) similarity heatmap.

    Parameters
    ----------
    blocks : sequence of (start, size, colour)
        A cluster occupying rows/columns ``start .. start + size - 1`` of the ordered matrix.
    n : int
        Matrix size.
    factor : int
        Pixels per matrix cell in the image under the overlay.

    Returns
    -------
    str
        An ``<svg>`` element.
    """
    side = n * factor
    width = max(1.5, factor / 3)
    body = [
        f'<rect x="{start * factor}" y="{start * factor}" width="{size * factor}" '
        f'height="{size * factor}" fill="none" stroke="{_e(color)}" '
        f'stroke-width="{width:.1f}"/>'
        for start, size, color in blocks
    ]
    return (
        f'<svg class="overlay" viewBox="0 0 {side} {side}" '
        'preserveAspectRatio="none" aria-hidden="true">' + "".join(body) + "</svg>"
    )


def colour_scale(
    stops: Sequence[str],
    vmin: float,
    vmax: float,
    label: str,
    gradient_id: str,
    marks: Sequence[tuple[float, str]] = (),
) -> str:
    """Horizontal colour bar with ticks at `vmin`, the middle and `vmax`.

    Parameters
    ----------
    stops : sequence of str
        ``#rrggbb`` colours evenly spaced from `vmin` to `vmax`.
    gradient_id : str
        Document-unique id of the gradient (made of safe characters by the caller).
    marks : sequence of (value, label)
        Levels drawn as dashed lines across the bar, with their label and value above it
        (for example the threshold and the chance level); values outside the range are
        drawn at its ends.
    """
    if len(stops) < 2:
        raise ValueError("need at least two colour stops")
    width, bar_w = 260, 220
    parts = "".join(
        f'<stop offset="{i / (len(stops) - 1):.3f}" stop-color="{_e(c)}"/>'
        for i, c in enumerate(stops)
    )
    top = 14 * len(marks)  # one line of text per mark above the bar
    ticks = []
    for value in (vmin, (vmin + vmax) / 2, vmax):
        x = 20 + (value - vmin) / (vmax - vmin) * bar_w
        ticks.append(
            f'<line x1="{x:.1f}" y1="{30 + top}" x2="{x:.1f}" y2="{35 + top}" '
            f'stroke="{_AXIS}"/>'
            f'<text x="{x:.1f}" y="{47 + top}" text-anchor="middle">{_e(_num(value))}</text>'
        )
    for k, (value, name) in enumerate(marks):
        x = 20 + (min(max(value, vmin), vmax) - vmin) / (vmax - vmin) * bar_w
        y = 12 + 14 * (k + 1)
        ticks.append(
            f'<line class="mark" x1="{x:.1f}" y1="{y + 2}" x2="{x:.1f}" y2="{top + 30}" '
            f'stroke="#000" stroke-dasharray="3 2"/>'
            f'<text x="{min(x, bar_w - 40):.1f}" y="{y}">{_e(name)} {_e(_num(value))}</text>'
        )
    body = [
        f'<defs><linearGradient id="{_e(gradient_id)}">{parts}</linearGradient></defs>',
        f'<text x="20" y="12">{_e(label)}</text>',
        f'<rect x="20" y="{16 + top}" width="{bar_w}" height="14" '
        f'fill="url(#{_e(gradient_id)})" stroke="{_AXIS}"/>',
        *ticks,
    ]
    return _svg(width, 52 + top, body, label, css="scale")
