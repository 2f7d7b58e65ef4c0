"""Training history: how the filters of one layer drift from checkpoint to checkpoint.

Pure: takes the `AnalysisResult` of every step (the front ends load and analyse them) and
returns per-step figures as arrays over the step axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..base.errors import KernelSpecError
from .summary import summary_figures

if TYPE_CHECKING:
    from .pipeline import AnalysisResult

__all__ = ["DRIFT_SERIES", "DriftBuilder", "HistoryDrift", "filter_change", "history_drift"]

#: The per-step series of `HistoryDrift`, with their chart labels.
DRIFT_SERIES = {
    "median_peak_frequency": "median peak frequency (cycles/pixel)",
    "median_orientation_selectivity": "median orientation selectivity",
    "clustered_fraction": "share of filters clustered",
    "duplicates": "duplicate pairs",
    "mean_change": "mean relative change of a filter from the previous step",
}


@dataclass(frozen=True)
class HistoryDrift:
    """Per-step figures of a training history (T steps).

    Attributes
    ----------
    steps : list of str
        Step names, in order.
    median_peak_frequency, median_orientation_selectivity : (T,) ndarray
    clustered_fraction : (T,) ndarray
        Share of filters in some cluster.
    chance_clustered_fraction : (T,) ndarray
        The chance level of that share where the analysis gives one, else NaN.
    duplicates : (T,) ndarray of int
        Duplicate pairs (signed cosine of the raw weights >= threshold).
    mean_change : (T,) ndarray
        Mean over filters of ``||w_t - w_{t-1}|| / ||w_{t-1}||`` (NaN at the first step).
    """

    steps: list[str]
    median_peak_frequency: np.ndarray
    median_orientation_selectivity: np.ndarray
    clustered_fraction: np.ndarray
    chance_clustered_fraction: np.ndarray
    duplicates: np.ndarray
    mean_change: np.ndarray

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, list]:
        """JSON-safe columns (NaN as None)."""
        out: dict[str, list] = {"steps": list(self.steps)}
        for name in (*DRIFT_SERIES, "chance_clustered_fraction"):
            values = np.asarray(getattr(self, name), dtype=float)
            out[name] = [None if not np.isfinite(v) else float(v) for v in values]
        return out


def filter_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Relative change of each filter between two steps.

    Parameters
    ----------
    before, after : (N, C, H, W) ndarray
        The same layer at two steps.

    Returns
    -------
    (N,) ndarray
        ``||after_i - before_i|| / ||before_i||`` (inf where a filter was all zero before).
    """
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two (N, C, H, W) arrays of one shape, got {a.shape}, {b.shape}")
    diff = np.linalg.norm((b - a).reshape(len(a), -1), axis=1)
    norm = np.linalg.norm(a.reshape(len(a), -1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(norm > 0, diff / np.where(norm > 0, norm, 1.0), np.inf)


class DriftBuilder:
    """`history_drift` one step at a time, keeping only per-step figures and the previous
    step's weights: a front end can let go of each step's analysis (its spectra and matrices)
    as soon as it is added.

    Examples
    --------
    >>> builder = DriftBuilder()  # doctest: +SKIP
    >>> for name, result in steps:  # doctest: +SKIP
    ...     builder.add(name, result)
    >>> drift = builder.drift()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._steps: list[str] = []
        self._figures: list[dict] = []
        self._change: list[float] = []
        self._previous: np.ndarray | None = None

    def add(self, name: str, result: AnalysisResult) -> None:
        """Add the next step.

        Raises
        ------
        KernelSpecError
            A layer of another shape than the first step's (not one model's checkpoints).
        """
        weights = np.asarray(result.bank.weights)
        if self._previous is not None and weights.shape != self._previous.shape:
            raise KernelSpecError(
                f"step {name!r} has a layer of shape {list(weights.shape)}, the first "
                f"step {list(self._previous.shape)}: a history is the checkpoints of one model"
            )
        self._change.append(
            np.nan
            if self._previous is None
            else float(np.mean(filter_change(self._previous, weights)))
        )
        self._steps.append(str(name))
        self._figures.append(summary_figures(result))
        self._previous = weights

    def drift(self) -> HistoryDrift:
        """The drift of the steps added so far.

        Raises
        ------
        KernelSpecError
            When no step was added.
        """
        if not self._steps:
            raise KernelSpecError("a history needs at least one step")
        figures = self._figures

        def column(key: str) -> np.ndarray:
            return np.array([np.nan if f[key] is None else f[key] for f in figures], dtype=float)

        return HistoryDrift(
            steps=list(self._steps),
            median_peak_frequency=column("median_peak_frequency"),
            median_orientation_selectivity=column("median_orientation_selectivity"),
            clustered_fraction=column("clustered_fraction"),
            chance_clustered_fraction=column("chance_clustered_fraction"),
            duplicates=column("duplicates").astype(int),
            mean_change=np.array(self._change, dtype=float),
        )


def history_drift(results: Sequence[AnalysisResult], steps: Sequence[str]) -> HistoryDrift:
    """The drift of one layer over the steps of a training history.

    Parameters
    ----------
    results : sequence of AnalysisResult
        One per step, in step order, all of one layer shape.
    steps : sequence of str
        Step names (same length).

    Returns
    -------
    HistoryDrift

    Raises
    ------
    KernelSpecError
        No steps, or steps whose layers differ in shape (not one model's checkpoints).
    """
    results = list(results)
    if not results or len(results) != len(steps):
        raise KernelSpecError(
            f"a history needs one result per step, got {len(results)} results for "
            f"{len(steps)} steps"
        )
    builder = DriftBuilder()
    for name, result in zip(steps, results, strict=True):
        builder.add(name, result)
    return builder.drift()
