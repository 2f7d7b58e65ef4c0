"""Drift over a training history: planted changes are found step by step."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.analysis import analyze
from napari_kernelspec.analysis.history import filter_change, history_drift
from napari_kernelspec.base.bank import KernelBank
from napari_kernelspec.base.errors import KernelSpecError


def bank(weights: np.ndarray, name: str) -> KernelBank:
    return KernelBank(weights=weights.astype(np.float32), model=name, layer="conv", source="array")


def gabor_bank(gabor, frequency: float, n: int = 8, size: int = 11) -> np.ndarray:
    """n Gabors of one frequency at n orientations, one channel."""
    return np.stack([gabor(size, frequency, 180.0 * k / n, sigma=3.0)[None] for k in range(n)])


def test_drift_follows_planted_frequency_change_and_scaling(gabor):
    frequencies = [0.1, 0.2, 0.3]
    weights = [gabor_bank(gabor, f) for f in frequencies]
    results = [analyze(bank(w, f"s{t}")) for t, w in enumerate(weights)]
    drift = history_drift(results, ["s0", "s1", "s2"])
    assert drift.steps == ["s0", "s1", "s2"]
    np.testing.assert_allclose(drift.median_peak_frequency, frequencies, atol=0.03)
    assert np.isnan(drift.mean_change[0])
    expected = [np.mean(filter_change(weights[t - 1], weights[t])) for t in (1, 2)]
    np.testing.assert_allclose(drift.mean_change[1:], expected)
    assert (drift.mean_change[1:] > 0.5).all()  # a new frequency is a large change


def test_mean_change_and_duplicates_known_answers():
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((6, 3, 5, 5))
    w1 = 1.5 * w0  # every filter grows by half: relative change 0.5
    w2 = w1.copy()
    w2[4] = 2.0 * w2[3]  # plant one duplicate pair (3, 4)
    results = [analyze(bank(w, f"e{t}")) for t, w in enumerate((w0, w1, w2))]
    drift = history_drift(results, ["e0", "e1", "e2"])
    assert drift.mean_change[1] == pytest.approx(0.5)
    assert drift.duplicates.tolist() == [0, 0, 1]
    # scaling changes no descriptor
    assert drift.median_peak_frequency[0] == pytest.approx(drift.median_peak_frequency[1])
    out = drift.to_dict()
    assert out["mean_change"][0] is None and out["duplicates"] == [0.0, 0.0, 1.0]


def test_steps_of_different_models_are_refused():
    rng = np.random.default_rng(1)
    a = analyze(bank(rng.standard_normal((6, 3, 5, 5)), "a"))
    b = analyze(bank(rng.standard_normal((8, 3, 5, 5)), "b"))
    with pytest.raises(KernelSpecError, match="checkpoints of one model"):
        history_drift([a, b], ["a", "b"])
    with pytest.raises(KernelSpecError, match="one result per step"):
        history_drift([a], ["a", "b"])
