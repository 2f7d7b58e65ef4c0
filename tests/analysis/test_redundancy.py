"""Redundancy: planted duplicates and sign pairs are found; spectra alone cannot find them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.analysis.redundancy import redundant_pairs, signed_cosine


def test_planted_duplicates_and_sign_pairs_are_found():
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(32, 3, 7, 7))
    weights[20] = 1.7 * weights[3] + 0.01 * rng.normal(size=(3, 7, 7))
    weights[25] = -0.5 * weights[11]
    duplicates, sign_pairs = redundant_pairs(signed_cosine(weights), 0.93)
    assert [(i, j) for i, j, _ in duplicates] == [(3, 20)]
    assert [(i, j) for i, j, _ in sign_pairs] == [(11, 25)]
    assert duplicates[0][2] > 0.99
    assert sign_pairs[0][2] == pytest.approx(-1.0)


def test_shifted_copy_is_not_a_duplicate(gabor):
    # Same tuning (identical amplitude spectrum) but a different filter: not redundant.
    g = gabor(9, 0.25, 0.0, sigma=2.0)
    weights = np.stack([g, np.roll(g, 2, axis=1)])[:, None]
    duplicates, sign_pairs = redundant_pairs(signed_cosine(weights), 0.93)
    assert duplicates == [] and sign_pairs == []


def test_pairs_are_ordered_and_plain_python():
    weights = np.ones((4, 1, 2, 2))
    weights[2] *= -1
    duplicates, sign_pairs = redundant_pairs(signed_cosine(weights), 0.99)
    assert duplicates == [
        (0, 1, pytest.approx(1.0)),
        (0, 3, pytest.approx(1.0)),
        (1, 3, pytest.approx(1.0)),
    ]
    assert [(i, j) for i, j, _ in sign_pairs] == [(0, 2), (1, 2), (2, 3)]
    assert all(type(v) is int for i, j, _ in duplicates for v in (i, j))
