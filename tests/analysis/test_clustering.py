"""Clusters: the seed's DBSCAN reproduced, and complete linkage with its pairwise guarantee."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.analysis.clustering import (
    cosine_similarity,
    greedy_threshold_clusters,
    labels_to_clusters,
    linkage_clusters,
    pearson_similarity,
    seed_clusters,
)
from napari_kernelspec.analysis.spectra import resolved_amplitude


def gabor_ring(gabor, n=24, step=7.5):
    """Gabors whose orientation steps by `step` degrees: neighbours alike, ends different."""
    weights = np.stack([gabor(15, 0.2, i * step, sigma=4.0) for i in range(n)])[:, None]
    return pearson_similarity(resolved_amplitude(weights))


def test_seed_dbscan_chains_while_complete_linkage_keeps_its_guarantee(gabor):
    sim = gabor_ring(gabor)
    threshold = float(np.diag(sim, 1).min()) - 1e-9  # every neighbour pair is above it
    chained = seed_clusters(sim, threshold, 2)
    members = np.flatnonzero(chained == chained[0])
    assert sim[np.ix_(members, members)].min() < 0.5  # single linkage chains far apart filters

    labels = linkage_clusters(sim, threshold, 2)
    assert labels.max() >= 1
    for k in range(labels.max() + 1):
        idx = np.flatnonzero(labels == k)
        assert len(idx) >= 2
        assert sim[np.ix_(idx, idx)].min() >= threshold


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.93, 0.99])
def test_complete_linkage_guarantee_on_random_similarities(seed, threshold):
    vectors = np.abs(np.random.default_rng(seed).normal(size=(40, 12)))
    sim = cosine_similarity(vectors)
    labels = linkage_clusters(sim, threshold, 2)
    for idx in labels_to_clusters(labels):
        assert sim[np.ix_(idx, idx)].min() >= threshold


def test_complete_linkage_guarantee_holds_at_the_floating_point_boundary():
    # 1 - 0.09999999999999996 rounds to exactly 1 - 0.1: a cut on distances alone would
    # merge this pair although its similarity is below the threshold.
    below = float(np.nextafter(0.1, 0.0))
    assert 1.0 - below == 1.0 - 0.1 and below < 0.1
    sim = np.array([[1.0, below, 0.5], [below, 1.0, 0.5], [0.5, 0.5, 1.0]])
    labels = linkage_clusters(sim, 0.1, 2)
    for idx in labels_to_clusters(labels):
        assert sim[np.ix_(idx, idx)].min() >= 0.1
    assert labels[0] != labels[1] or labels[0] == -1


def test_everything_unclustered_is_a_valid_answer():
    sim = np.eye(5)
    assert (linkage_clusters(sim, 0.9) == -1).all()
    assert (seed_clusters(sim, 0.9) == -1).all()
    assert labels_to_clusters(np.full(5, -1)) == []


def test_min_samples_drops_small_clusters():
    vectors = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1], [0.02, 1]], dtype=float)
    sim = cosine_similarity(vectors)
    np.testing.assert_array_equal(linkage_clusters(sim, 0.99, 2), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(linkage_clusters(sim, 0.99, 3), [-1, -1, 0, 0, 0])
    np.testing.assert_array_equal(linkage_clusters(sim, 0.99, 1), [0, 0, 1, 1, 1])


def test_labels_are_numbered_by_first_member():
    vectors = np.array([[0, 1], [1, 0], [0, 1.001], [1, 0.001]], dtype=float)
    sim = cosine_similarity(vectors)
    np.testing.assert_array_equal(linkage_clusters(sim, 0.99), [0, 1, 0, 1])
    np.testing.assert_array_equal(seed_clusters(sim, 0.99), [0, 1, 0, 1])


def test_seed_clusters_survive_tiny_negative_distances():
    # 1 - cos can come out as -6.7e-16 for identical rows; DBSCAN raises on that unclipped.
    v = np.array([[0.1, 0.7, 0.3]] * 3 + [[0.9, 0.1, 0.0]])
    sim = v @ v.T / np.outer(np.linalg.norm(v, axis=1), np.linalg.norm(v, axis=1))
    sim[0, 1] = sim[1, 0] = 1 + 6.7e-16
    np.testing.assert_array_equal(seed_clusters(sim, 0.93), [0, 0, 0, -1])


def test_greedy_fallback_groups_by_threshold():
    sim = cosine_similarity(np.array([[1, 0], [1, 0.1], [0, 1]], dtype=float))
    np.testing.assert_array_equal(greedy_threshold_clusters(sim, 0.9, 2), [0, 0, -1])


def test_cosine_similarity_of_zero_row_is_zero_off_diagonal():
    sim = cosine_similarity(np.array([[1.0, 2.0], [0.0, 0.0], [2.0, 4.0]]))
    np.testing.assert_allclose(sim, [[1, 0, 1], [0, 1, 0], [1, 0, 1]], atol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_threshold_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="threshold"):
        linkage_clusters(np.eye(3), bad)
    with pytest.raises(ValueError, match="threshold"):
        seed_clusters(np.eye(3), bad)


def test_seed_clusters_at_threshold_one_fall_back_to_greedy_grouping_as_the_seed_did():
    # scikit-learn's DBSCAN refuses eps = 0, so the seed tool fell back on threshold grouping.
    sim = cosine_similarity(np.array([[1, 0], [2, 0], [0, 1], [0.01, 1]], dtype=float))
    np.testing.assert_array_equal(seed_clusters(sim, 1.0), [0, 0, -1, -1])


def test_asymmetric_similarity_is_rejected():
    sim = np.eye(3)
    sim[0, 1] = 0.5
    with pytest.raises(ValueError, match="symmetric"):
        linkage_clusters(sim, 0.9)


def test_min_samples_below_one_is_rejected():
    with pytest.raises(ValueError, match="min_samples"):
        linkage_clusters(np.eye(3), 0.9, 0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("min_samples", [1, 2, 3, 5])
def test_dbscan_matches_scikit_learn_label_for_label(seed, min_samples):
    from sklearn.cluster import DBSCAN

    from napari_kernelspec.analysis.clustering import dbscan_precomputed

    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(c, 0.3, size=(15, 2)) for c in (0, 2, 4)])
    distance = np.hypot(*(points[:, None] - points[None, :]).transpose(2, 0, 1))
    for eps in (0.1, 0.3, 0.6, 1.5):
        expected = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(
            distance
        )
        np.testing.assert_array_equal(dbscan_precomputed(distance, eps, min_samples), expected)


def test_seed_clusters_fall_back_to_greedy_grouping_when_dbscan_cannot_run():
    sim = cosine_similarity(np.array([[1, 0], [1, 0.1], [0, 1]], dtype=float))
    sim[2, 0] = sim[0, 2] = np.nan
    np.testing.assert_array_equal(seed_clusters(sim, 0.9), [0, 0, -1])


def test_flat_spectra_correlate_with_nothing_instead_of_rounding_noise():
    # A single-pixel filter has a perfectly flat amplitude spectrum: nothing to correlate.
    # Without the guard its rounding noise (1e-16) would be normalised into a random shape.
    impulses = np.zeros((6, 1, 5, 5))
    for i in range(6):
        impulses[i, 0, i % 5, (2 * i) % 5] = 1.0 + i
    sim = pearson_similarity(resolved_amplitude(impulses))
    np.testing.assert_array_equal(sim, np.eye(6))
    assert (linkage_clusters(sim, 0.5) == -1).all()
