"""The figures that sum up one analysed layer (the report's comparison table, the scan's
model rows, the training-history drift), computed in one place."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .pipeline import AnalysisResult

__all__ = ["ACHROMATIC_THRESHOLD", "FIGURES", "summary_figures"]

#: A filter counts as achromatic when its achromatic fraction is at least this.
ACHROMATIC_THRESHOLD = 0.9

#: Keys of `summary_figures`, in table order.
FIGURES = (
    "n_filters",
    "n_clusters",
    "clustered_fraction",
    "chance_clustered_fraction",
    "chance_similarity",
    "threshold_rule",
    "duplicates",
    "sign_pairs",
    "median_peak_frequency",
    "median_orientation_selectivity",
    "mean_aliasing_fraction",
    "achromatic_share",
)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def summary_figures(result: AnalysisResult) -> dict[str, Any]:
    """One layer in a few numbers.

    Parameters
    ----------
    result : AnalysisResult

    Returns
    -------
    dict
        Keys `FIGURES`: counts as int, shares in [0, 1] and medians as float. The chance
        level (``chance_clustered_fraction``, ``chance_similarity``) and ``threshold_rule``
        are None when the result does not carry them.
    """
    d = result.descriptors
    achromatic = np.asarray(d["achromatic_fraction"], dtype=float)
    rule = getattr(result, "threshold_rule", None)
    return {
        "n_filters": int(result.n_filters),
        "n_clusters": int(result.n_clusters),
        "clustered_fraction": float(result.clustered_fraction),
        "chance_clustered_fraction": _number(getattr(result, "chance_clustered_fraction", None)),
        "chance_similarity": _number(getattr(result, "chance_similarity", None)),
        "threshold_rule": None if rule is None else str(rule),
        "duplicates": len(result.duplicates),
        "sign_pairs": len(result.sign_pairs),
        "median_peak_frequency": float(np.median(d["peak_frequency"])),
        "median_orientation_selectivity": float(np.median(d["orientation_selectivity"])),
        "mean_aliasing_fraction": float(np.mean(d["aliasing_fraction"])),
        "achromatic_share": float(np.mean(achromatic >= ACHROMATIC_THRESHOLD)),
    }
