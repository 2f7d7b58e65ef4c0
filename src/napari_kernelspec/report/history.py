"""The report's training-history section (``id="history"``): drift charts and mosaics.

`load_history` loads and analyses every step of a history folder or list file, keeping the
drift figures of every step but the analyses of the shown steps only (first, middle, last),
so memory does not grow with the number of steps. `history_context` turns them into what
``_history.html.j2`` shows: one inline SVG line chart per drift series
(`analysis.history.DRIFT_SERIES`, the clustered share with its chance level when the
analysis gives one), the kernel mosaics at the first, middle and last steps, and a table of
every step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import views
from ..analysis.history import DRIFT_SERIES, DriftBuilder, HistoryDrift
from . import images, svg

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult

__all__ = ["History", "history_context", "history_json", "load_history", "shown_steps"]

_LINE = "#1f6fb2"
_CHANCE = "#b23a1f"
_KERNEL_TILE_PX = 44
_MOSAIC_VIEW = "colour"


@dataclass(frozen=True)
class History:
    """A training history, analysed.

    Attributes
    ----------
    name : str
    steps : list of str
        Every step's name (T).
    results : dict of int to AnalysisResult
        The analyses of the steps the report shows (`shown_steps`), by step index.
    drift : HistoryDrift
        The figures of every step.
    """

    name: str
    steps: list[str]
    results: dict[int, AnalysisResult]
    drift: HistoryDrift

    @property
    def first(self) -> AnalysisResult:
        return self.results[0]

    @property
    def last(self) -> AnalysisResult:
        return self.results[len(self.steps) - 1]


def shown_steps(n_steps: int) -> list[int]:
    """The steps whose kernel mosaics the report shows: first, middle and last."""
    return sorted({0, (n_steps - 1) // 2, n_steps - 1})


def load_history(
    source: str | os.PathLike[str],
    *,
    method: str = "response",
    threshold: float | str | None = None,
    min_samples: int = 2,
    alpha: float = 0.05,
    progress: bool = True,
) -> History:
    """Load and analyse every step of a history (see `sources.history.history_steps`).

    Raises
    ------
    KernelSpecError
        A bad folder or list file, a step that does not load, steps of different shapes.
    """
    from tqdm import tqdm

    from ..analysis.pipeline import analyze
    from ..sources.history import history_steps, step_name
    from ..sources.loading import load_kernels

    paths = history_steps(source)
    steps = [step_name(p) for p in paths]
    keep = set(shown_steps(len(paths)))
    builder = DriftBuilder()
    results = {}
    bar = tqdm(paths, desc="kernelspec report --history", unit="step", disable=not progress)
    for t, (path, name) in enumerate(zip(bar, steps, strict=True)):
        result = analyze(load_kernels(path), method, threshold, min_samples, alpha=alpha)
        builder.add(name, result)
        if t in keep:  # the others are dropped once their figures are in the drift
            results[t] = result
    name = Path(source).name if Path(source).is_dir() else Path(source).stem
    return History(name, steps, results, builder.drift())


def _chart(drift: HistoryDrift, key: str) -> str | None:
    label = DRIFT_SERIES[key]
    y = np.asarray(getattr(drift, key), dtype=float)
    if not np.isfinite(y).any():
        return None
    x = np.arange(drift.n_steps, dtype=float)
    series = [svg.Series("measured", _LINE, x, y)]
    if key == "clustered_fraction":
        chance = np.asarray(drift.chance_clustered_fraction, dtype=float)
        if np.isfinite(chance).any():
            series.append(svg.Series("chance level", _CHANCE, x, chance))
    return svg.line_chart(
        series,
        title=f"{label} over training",
        xlabel="step",
        ylabel=label.split(" (")[0] if len(label) < 32 else "",
        xlim=(0.0, _integer_axis_end(drift.n_steps - 1)),
        width=460,
        height=250,
        legend_width=110,
    )


def _integer_axis_end(last: int) -> float:
    """The smallest axis end >= `last` whose round ticks are whole steps (no "2.5")."""
    end = max(last, 1)
    while not all(float(t).is_integer() for t in svg.nice_ticks(0.0, float(end), 5)):
        end += 1
    return float(end)


def _mosaic(result: AnalysisResult, step: str) -> dict[str, Any]:
    h, w = result.bank.kernel_size
    factor = images.upscale_factor(max(h, w), _KERNEL_TILE_PX)
    tiles = images.upscale(result.view(_MOSAIC_VIEW), factor, axes=(1, 2))
    picture = views.mosaic(tiles, gap=2, fill=1.0)
    ph, pw = picture.shape[:2]
    return {
        "step": step,
        "uri": images.png_data_uri(picture),
        "width": pw,
        "height": ph,
        "aspect": f"{pw / ph:.5f}",
        "alt": f"kernels at step {step}",
    }


def _cell(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def history_context(history: History) -> dict[str, Any]:
    """What the ``_history.html.j2`` partial shows (charts are SVG strings, escaped inside).

    Parameters
    ----------
    history : History

    Returns
    -------
    dict
        ``name``, ``n_steps``, ``charts`` (list of ``{"key", "label", "svg"}``),
        ``mosaics`` (first, middle, last step), ``rows`` (one per step).
    """
    from markupsafe import Markup

    drift = history.drift
    n = drift.n_steps
    charts = []
    for key, label in DRIFT_SERIES.items():
        chart = _chart(drift, key)
        if chart is not None:
            charts.append({"key": key, "label": label, "svg": Markup(chart)})
    picks = shown_steps(n)
    rows = []
    for t in range(n):
        rows.append(
            {
                "step": drift.steps[t],
                "cells": [
                    _cell(drift.median_peak_frequency[t]),
                    _cell(drift.median_orientation_selectivity[t], 2),
                    _cell(drift.clustered_fraction[t], 2),
                    _cell(drift.chance_clustered_fraction[t], 2),
                    str(int(drift.duplicates[t])),
                    _cell(drift.mean_change[t], 4),
                ],
            }
        )
    bank = history.first.bank
    n_f, c, h, w = bank.weights.shape
    return {
        "name": history.name,
        "n_steps": n,
        "first": drift.steps[0],
        "last": drift.steps[-1],
        "layer": bank.layer,
        "shape": f"{n_f}×{c}×{h}×{w}",
        "charts": charts,
        "mosaics": [_mosaic(history.results[t], drift.steps[t]) for t in picks],
        "columns": [
            "median peak freq. c/px",
            "median orient. selectivity",
            "clustered",
            "chance level",
            "duplicate pairs",
            "mean change",
        ],
        "rows": rows,
    }


def history_json(history: History) -> dict[str, Any]:
    """JSON-safe drift of every step (for the report's JSON)."""
    return {"name": history.name, **history.drift.to_dict()}
