"""The figures that sum up one analysed layer (the report's comparison table, the scan's
model rows, the training-history drift), computed in one place."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .pipeline import AnalysisResult

__all__ = [
    "ACHROMATIC_THRESHOLD",
    "CONTRAST_P",
    "FIGURES",
    "format_p",
    "null_contrast_text",
    "summary_figures",
    "summary_line",
]

#: Descriptor differences from the null named in `summary_line` when p is below this.
CONTRAST_P = 0.01

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
    "structure_p_value",
    "null_model",
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
        "structure_p_value": _number(getattr(result, "structure_p_value", None)),
        "null_model": getattr(result, "null_model", None) or None,
        "duplicates": len(result.duplicates),
        "sign_pairs": len(result.sign_pairs),
        "median_peak_frequency": float(np.median(d["peak_frequency"])),
        "median_orientation_selectivity": float(np.median(d["orientation_selectivity"])),
        "mean_aliasing_fraction": float(np.mean(d["aliasing_fraction"])),
        "achromatic_share": float(np.mean(achromatic >= ACHROMATIC_THRESHOLD)),
    }


def format_p(p: float | None) -> str:
    """A p-value in two significant digits (``"0.005"``, ``"3e-05"``); ``"n/a"`` if None or NaN."""
    p = _number(p)
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.0e}"


def null_contrast_text(result: AnalysisResult, max_items: int = 3) -> str:
    """The descriptors that differ most from the null, e.g.
    ``"orientation selectivity above the null, p = 3e-05"``; "" when none has p < `CONTRAST_P`.
    """
    contrasts = getattr(result, "null_contrasts", None) or {}
    found = sorted(
        (test["p_value"], name, test["effect"])
        for name, test in contrasts.items()
        if _number(test.get("p_value")) is not None and test["p_value"] < CONTRAST_P
    )
    bits = [
        f"{name.replace('_', ' ')} {'above' if effect > 0 else 'below'} the null, "
        f"p = {format_p(p)}"
        for p, name, effect in found[:max_items]
    ]
    return "; ".join(bits)


def summary_line(result: AnalysisResult) -> str:
    """What the clusters are compared with, in one line (CLI, widget and report).

    ``"34 % clustered; matched null: 2 %; structure p = 0.005"``, followed, where the layer
    shows no clusters or its structure is not above the null (p > 0.01), by how its
    descriptors differ from the null (`null_contrast_text`) or that they do not.
    """
    figures = summary_figures(result)
    null = figures["null_model"] or "chance"
    chance = figures["chance_clustered_fraction"]
    text = f"{100 * figures['clustered_fraction']:.0f} % clustered; {null} null: " + (
        "n/a" if chance is None else f"{100 * chance:.0f} %"
    )
    p = figures["structure_p_value"]
    text += f"; structure p = {format_p(p)}"
    unsupported = figures["n_clusters"] == 0 or p is None or p > CONTRAST_P
    if unsupported and getattr(result, "null_contrasts", None):
        contrast = null_contrast_text(result)
        text += f"; {contrast}" if contrast else "; descriptors like the null's"
    return text
