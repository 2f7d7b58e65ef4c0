"""Chance levels and the auto threshold: random filters stay unclustered, planted groups do not.

These are issue 9's acceptance tests: structure-free banks of every seed-model shape cluster
at most 5 % on average with default settings, planted Gabor groups are recovered, the
chance level at a fixed threshold predicts what fresh random banks do, and the
complete-linkage guarantee holds for automatic thresholds too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from napari_kernelspec import KernelBank, analyze
from napari_kernelspec.analysis import chance
from napari_kernelspec.analysis.clustering import (
    cosine_similarity,
    dbscan_reach,
    labels_to_clusters,
    linkage_clusters,
    linkage_reach,
    pearson_similarity,
    seed_clusters,
)
from napari_kernelspec.analysis.spectra import resolved_amplitude
from napari_kernelspec.base.errors import KernelSpecError

# The eight seed models' first layers, and three more shapes (issue 9).
SEED_SHAPES = [(64, 3, 11, 11), (64, 3, 3, 3), (64, 3, 7, 7), (6, 1, 5, 5), (32, 3, 3, 3)]
OTHER_SHAPES = [(256, 3, 5, 5), (96, 3, 11, 11), (32, 1, 3, 3)]


def random_bank(shape, dist: str, seed: int) -> KernelBank:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=shape) if dist == "normal" else rng.uniform(-1.0, 1.0, size=shape)
    return KernelBank(w, f"{dist}-{seed}", "conv", "array")


def planted_bank(make_gabor, seed: int, k: int, noise: float = 0.5):
    """Four groups of six Gabors (one frequency and orientation per group, random phases and
    colour gains, additive noise) shuffled among 40 Gaussian filters; truth labels: group
    0-3, and a label of its own (100 + i) for each random filter."""
    rng = np.random.default_rng(seed)
    filters, truth = [], []
    for g, (freq, theta) in enumerate([(0.1, 0.0), (0.2, 45.0), (0.3, 90.0), (0.15, 135.0)]):
        for _ in range(6):
            wave = make_gabor(k, freq, theta, phase=rng.uniform(0, 2 * np.pi))
            wave /= np.linalg.norm(wave)
            x = rng.uniform(0.5, 1.5, size=(3, 1, 1)) * wave
            filters.append(x + noise * rng.normal(size=x.shape) / k)
            truth.append(g)
    for i in range(40):
        filters.append(rng.normal(size=(3, k, k)) / k)
        truth.append(100 + i)
    order = rng.permutation(len(filters))
    bank = KernelBank(np.stack(filters)[order], "planted", "conv", "array")
    return bank, np.array(truth)[order]


def assert_complete_linkage(result) -> None:
    for members in result.clusters:
        assert len(members) >= result.min_samples
        assert result.similarity[np.ix_(members, members)].min() >= result.threshold


# ----------------------------------------------------------------------------- acceptance
def test_random_banks_of_every_shape_are_mostly_unclustered_by_default():
    shares = {}
    for shape in SEED_SHAPES + OTHER_SHAPES:
        for dist in ("normal", "uniform") if shape in SEED_SHAPES else ("normal",):
            for seed in (0,):
                result = analyze(random_bank(shape, dist, seed))
                assert result.threshold_rule == "auto"
                assert_complete_linkage(result)
                shares[shape, dist, seed] = result.clustered_fraction
    worst = max(shares, key=shares.get)
    assert np.mean(list(shares.values())) <= 0.05, shares
    assert shares[worst] <= 0.15, (worst, shares[worst])


@pytest.mark.parametrize(("k", "seed"), [(11, 0), (11, 1), (7, 0), (7, 1)])
def test_planted_gabor_groups_are_recovered_and_random_filters_left_alone(gabor, k, seed):
    bank, truth = planted_bank(gabor, seed, k)
    result = analyze(bank)
    assert result.threshold_rule == "auto"
    assert result.structure_p_value <= 0.01  # the layer has more structure than its null
    assert_complete_linkage(result)
    labels = result.labels
    for group in range(4):
        got = labels[truth == group]
        assert (got >= 0).all(), (group, got)
        values, counts = np.unique(got, return_counts=True)
        main = values[np.argmax(counts)]
        assert counts.max() >= 0.8 * 6, (group, got)
        assert set(truth[labels == main]) == {group}  # the group's cluster holds only it
    random = truth >= 100
    assert np.mean(labels[random] < 0) >= 0.9
    singletons = np.where(labels >= 0, labels, 1000 + np.arange(len(labels)))
    assert adjusted_rand_score(truth, singletons) >= 0.75


@pytest.mark.parametrize(
    ("shape", "method", "threshold"),
    [((64, 3, 11, 11), "seed", 0.97), ((32, 1, 5, 5), "response", 0.4)],
)  # fmt: skip
def test_chance_clustered_fraction_predicts_fresh_random_banks(shape, method, threshold):
    predicted = analyze(random_bank(shape, "normal", 0), method, threshold)
    assert predicted.threshold_rule == "fixed"
    assert 0.1 < predicted.chance_clustered_fraction < 0.9  # a level worth predicting
    measured = [
        analyze(random_bank(shape, "normal", 100 + s), method, threshold).clustered_fraction
        for s in range(6)
    ]
    assert abs(predicted.chance_clustered_fraction - np.mean(measured)) <= 0.1


def test_seed_method_keeps_093_and_shows_its_chance_level():
    result = analyze(random_bank((64, 3, 7, 7), "normal", 0), method="seed")
    assert result.threshold == 0.93 and result.threshold_rule == "fixed"
    # the finding: the seed's rule clusters random filters, and chance says so
    assert result.clustered_fraction > 0.8
    assert result.chance_clustered_fraction > 0.8
    assert result.chance_similarity > 0.93


# ----------------------------------------------------------------------------- the similarity
def test_tuning_similarity_of_random_filters_is_near_zero():
    for shape in [(64, 3, 11, 11), (64, 3, 7, 7), (64, 3, 3, 3)]:
        w = random_bank(shape, "normal", 3).weights
        sim = pearson_similarity(resolved_amplitude(w))
        pairs = sim[np.triu_indices(len(sim), 1)]
        assert abs(np.median(pairs)) < 0.05, shape
        # the cosine of the same amplitude spectra (what 0.93 was set on) is far from zero
        cos = cosine_similarity(resolved_amplitude(w))
        assert np.median(cos[np.triu_indices(len(cos), 1)]) > 0.6


# ----------------------------------------------------------------------------- auto and alpha
def test_alpha_sets_the_chance_share_the_auto_threshold_allows():
    bank = random_bank((64, 3, 7, 7), "normal", 4)
    strict = analyze(bank, alpha=0.01)
    loose = analyze(bank, alpha=0.3)
    assert strict.threshold > loose.threshold
    assert strict.chance_clustered_fraction <= 0.01
    # alpha bounds the null's share; the guard band (chance.SIZE_MARGIN) keeps it below
    assert strict.chance_clustered_fraction <= loose.chance_clustered_fraction <= 0.3
    assert loose.clustered_fraction >= strict.clustered_fraction
    assert strict.alpha == 0.01 and loose.alpha == 0.3
    # an explicit number still wins, and duplicates use it
    fixed = analyze(bank, threshold=0.8)
    assert (fixed.threshold, fixed.threshold_rule, fixed.redundancy_threshold) == (
        0.8,
        "fixed",
        0.8,
    )
    assert strict.redundancy_threshold == 0.93


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, "x", True])
def test_bad_alpha_is_one_line(alpha):
    with pytest.raises(KernelSpecError, match="alpha"):
        analyze(random_bank((8, 1, 3, 3), "normal", 0), alpha=alpha)


def test_bad_threshold_word_is_one_line():
    with pytest.raises(KernelSpecError, match="'auto'"):
        analyze(random_bank((8, 1, 3, 3), "normal", 0), threshold="automatic")


def test_json_carries_the_rule_and_chance_levels():
    result = analyze(random_bank((16, 3, 5, 5), "normal", 0))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["threshold"] == result.threshold and data["threshold_rule"] == "auto"
    assert data["chance_similarity"] == pytest.approx(result.chance_similarity)
    assert data["chance_clustered_fraction"] == pytest.approx(result.chance_clustered_fraction)
    assert data["alpha"] == 0.05 and data["redundancy_threshold"] == 0.93


# ----------------------------------------------------------------------------- the machinery
@pytest.mark.parametrize("min_samples", [2, 3])
def test_linkage_reach_says_when_each_filter_joins_a_cluster(min_samples):
    w = random_bank((30, 3, 5, 5), "normal", 7).weights
    sim = pearson_similarity(resolved_amplitude(w))
    reach = linkage_reach(sim, min_samples)
    levels = np.unique(sim[np.triu_indices(30, 1)])
    for t in levels[levels > 0][::7]:
        labels = linkage_clusters(sim, float(t), min_samples)
        np.testing.assert_array_equal(labels >= 0, reach >= t)


@pytest.mark.parametrize("min_samples", [2, 3])
def test_dbscan_reach_says_when_each_filter_joins_a_cluster(min_samples):
    w = random_bank((30, 1, 5, 5), "normal", 8).weights
    sim = cosine_similarity(np.abs(w.reshape(30, -1)))
    reach = dbscan_reach(sim, min_samples)
    for t in np.quantile(sim[np.triu_indices(30, 1)], [0.5, 0.8, 0.9, 0.95, 0.99]):
        labels = seed_clusters(sim, float(t), min_samples)
        np.testing.assert_array_equal(labels >= 0, reach >= t)


def test_surrogates_keep_each_channels_weights_and_lose_their_places():
    w = random_bank((5, 3, 4, 4), "normal", 0).weights.astype(np.float64)
    sur = chance.shuffled_surrogates(w, 3)
    assert sur.shape == (3, 5, 3, 4, 4)
    flat = np.sort(sur.reshape(3, 5, 3, 16), axis=-1)
    np.testing.assert_array_equal(flat, np.broadcast_to(np.sort(w.reshape(5, 3, 16)), flat.shape))
    assert not np.array_equal(sur[0], w)
    np.testing.assert_array_equal(sur, chance.shuffled_surrogates(w, 3))  # fixed seed


def test_the_estimate_is_memoised_per_layer(monkeypatch):
    bank = random_bank((24, 3, 5, 5), "normal", 11)
    calls = []
    real = chance._estimate
    monkeypatch.setattr(chance, "_estimate", lambda *a: calls.append(a) or real(*a))
    chance.set_store({})
    try:
        first = analyze(bank, threshold=0.5)
        again = analyze(bank, threshold=0.7)  # a slider move: no new surrogates
        assert len(calls) == 1
        assert first.chance_clustered_fraction >= again.chance_clustered_fraction
        analyze(bank, method="seed")
        analyze(random_bank((24, 3, 5, 5), "normal", 12), threshold=0.5)
        assert len(calls) == 3
    finally:
        chance.set_store(None)


def test_one_filter_has_no_chance_pairs():
    result = analyze(random_bank((1, 3, 5, 5), "normal", 0))
    assert np.isnan(result.chance_similarity) and result.chance_clustered_fraction == 0.0
    assert result.to_dict()["chance_similarity"] is None
    assert result.labels.tolist() == [-1]


def test_auto_is_infeasible_when_every_filter_is_its_own_cluster():
    result = analyze(random_bank((10, 3, 5, 5), "normal", 0), min_samples=1)
    assert result.threshold == 1.0 and result.chance_clustered_fraction == 1.0


def test_clusters_of_auto_thresholds_keep_the_guarantee_with_min_samples_3(gabor):
    bank, _ = planted_bank(gabor, 2, 9)
    result = analyze(bank, min_samples=3)
    assert result.n_clusters >= 3
    assert_complete_linkage(result)
    assert labels_to_clusters(result.labels) == result.clusters


def test_the_memo_holds_a_long_history_and_is_bounded_by_bytes(monkeypatch):
    """Every step of a 100-step history stays memoised (a slider move re-cuts them all
    without new surrogates), and the memo drops the oldest estimates beyond its byte budget."""
    calls = []
    real = chance._estimate
    monkeypatch.setattr(chance, "_estimate", lambda *a: calls.append(a) or real(*a))
    chance.set_store(None)  # the default, bounded memo
    try:
        steps = [random_bank((6, 1, 3, 3), "normal", seed) for seed in range(100)]
        for bank in steps:
            chance.estimate_chance(bank.weights)
        assert len(calls) == 100
        for bank in steps:  # all still there
            chance.estimate_chance(bank.weights)
        assert len(calls) == 100
        one = chance.estimate_chance(steps[99].weights).nbytes  # the newest anyway
        monkeypatch.setattr(chance, "_MEMO_BYTES", 10 * one)
        chance.estimate_chance(random_bank((6, 1, 3, 3), "normal", 1000).weights)
        assert len(calls) == 101
        chance.estimate_chance(steps[99].weights)  # among the newest ten: kept
        assert len(calls) == 101
        chance.estimate_chance(steps[0].weights)  # the oldest: dropped, estimated again
        assert len(calls) == 102
    finally:
        chance.set_store(None)
