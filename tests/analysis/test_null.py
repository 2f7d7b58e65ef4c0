"""The matched null (issue 18): structure-free banks that look like trained layers stay
unclustered, planted same-tuning groups and colour groups are found, a layer learned from
photographs has structure (p <= 0.01), and every figure says what it was compared with.

The banks are `benchmarks/null_acceptance.py`'s (that script prints the whole table).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from napari_kernelspec import KernelBank, analyze
from napari_kernelspec.analysis import chance
from napari_kernelspec.analysis.summary import summary_figures, summary_line

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "null_acceptance.py"
_spec = importlib.util.spec_from_file_location("null_acceptance", _SCRIPT)
banks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(banks)


def run(weights: np.ndarray):
    return analyze(KernelBank(weights, "bank", "conv", "array"))


def assert_guarantee(result) -> None:
    for members in result.clusters:
        assert result.similarity[np.ix_(members, members)].min() >= result.threshold


def test_structure_free_banks_like_trained_layers_stay_unclustered():
    """Every kernel size and blur; colour channels independent and mixed 80 % towards their
    mean (both at sigma 1, alternating otherwise: 15 banks, the whole grid is the
    benchmark's)."""
    shares, low_p = [], 0
    for k in (5, 7, 11):
        for i, sigma in enumerate((0.0, 0.7, 1.0, 1.5)):
            for mix in (0.0, 0.8) if sigma == 1.0 else (0.8 * ((i + k) % 2),):
                result = run(banks.structure_free_bank(k, k, sigma, mix))
                assert result.null_model == "matched"
                assert_guarantee(result)
                shares.append(result.clustered_fraction)
                low_p += result.structure_p_value < 0.01
    assert np.mean(shares) <= 0.05, shares
    assert max(shares) <= 0.15, shares
    assert low_p <= 0.1 * len(shares)


@pytest.mark.parametrize(("k", "snr", "least"), [(11, 2.0, 0.75), (7, 2.0, 0.75), (5, 2.0, 0.5)])
def test_planted_same_tuning_groups_with_random_phase_are_found(k, snr, least):
    weights, truth = banks.planted_bank(1, k, snr)
    result = run(weights)
    ari, fillers = banks.planted_scores(result, truth)
    assert ari >= least, ari
    assert fillers <= 0.1
    assert result.structure_p_value <= 0.01
    assert_guarantee(result)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_planted_groups_in_3x3_kernels_are_found_and_the_layer_test_sees_them(seed):
    """Without noise, on several banks (ARI 0.56-0.91 over seeds 0-11 in the benchmark)."""
    weights, truth = banks.planted_bank(seed, 3, None)
    result = run(weights)
    ari, fillers = banks.planted_scores(result, truth)
    assert ari >= 0.5, ari
    assert fillers <= 0.1, fillers
    assert result.structure_p_value <= 0.01
    assert_guarantee(result)


@pytest.mark.parametrize("seed", [0, 7])
def test_3x3_fillers_stay_unclustered_at_snr_2_and_the_layer_test_sees_the_groups(seed):
    """At SNR 2 a 3x3 group is only partly alike; the smooth fillers around it must not be
    clustered (seed 0: 29 % before the guard band, seed 7: 21 %)."""
    weights, truth = banks.planted_bank(seed, 3, 2.0)
    result = run(weights)
    _, fillers = banks.planted_scores(result, truth)
    assert fillers <= 0.1, fillers
    assert result.structure_p_value <= 0.01
    assert_guarantee(result)


def test_grey_red_green_and_blue_yellow_groups_of_one_shape_are_told_apart():
    weights, truth = banks.colour_bank(0)
    result = run(weights)
    assert adjusted_rand_score(truth, result.labels) >= 0.9
    # the same tuning and colour with another phase is alike; another colour is not
    s = result.similarity
    assert s[np.ix_(truth == 0, truth == 0)].min() > 0.8
    assert s[np.ix_(truth == 0, truth == 1)].max() < 0.2


def test_a_first_layer_learned_from_photographs_has_structure():
    """32 filters of 5x5x3 learned by sparse coding (scikit-learn's dictionary learning)
    from patches of three scikit-image photographs: like a trained first layer, they are
    oriented, band-pass and mostly achromatic."""
    from skimage import data
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from sklearn.feature_extraction.image import extract_patches_2d

    k = 5
    patches = np.concatenate(
        [
            extract_patches_2d(im.astype(float) / 255, (k, k), max_patches=800, random_state=0)
            for im in (data.astronaut(), data.chelsea(), data.coffee())
        ]
    ).reshape(-1, k * k * 3)
    patches -= patches.mean(axis=1, keepdims=True)
    patches /= patches.std(axis=1, keepdims=True) + 0.1
    learner = MiniBatchDictionaryLearning(
        n_components=32, alpha=1.0, batch_size=256, max_iter=5, random_state=0
    )
    weights = learner.fit(patches).components_.reshape(32, k, k, 3).transpose(0, 3, 1, 2)
    result = run(weights)
    assert result.structure_p_value <= 0.01, summary_line(result)
    # shuffling the learned filters' pixels destroys what was learned
    rng = np.random.default_rng(0)
    shuffled = rng.permuted(weights.reshape(32, 3, -1), axis=-1).reshape(weights.shape)
    assert run(shuffled).structure_p_value > 0.01


def test_matched_surrogates_keep_the_layers_mean_and_covariance():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 3, 3, 3)) * np.linspace(0.5, 2, 27).reshape(3, 3, 3) + 0.3
    null = chance.matched_surrogates(w, 400).reshape(-1, 27)
    flat = w.reshape(16, -1)
    assert np.abs(null.mean(axis=0) - flat.mean(axis=0)).max() < 0.1
    expected = np.cov(flat.T, bias=True)
    got = np.cov(null.T, bias=True)
    assert np.abs(got - expected).max() < 0.15 * np.abs(expected).max()
    np.testing.assert_array_equal(null, chance.matched_surrogates(w, 400).reshape(-1, 27))


def test_every_output_says_what_the_clusters_were_compared_with(capsys):
    weights, _ = banks.planted_bank(0, 7, 2.0)
    result = run(weights)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["null_model"] == "matched"
    assert data["structure_p_value"] == result.structure_p_value <= 0.01
    assert set(data["null_contrasts"]) >= {"orientation_selectivity", "peak_frequency"}
    line = summary_line(result)
    assert line.startswith(
        f"{100 * result.clustered_fraction:.0f} % clustered; matched null: "
        f"{100 * result.chance_clustered_fraction:.0f} %; structure p = 0.005"
    )
    figures = summary_figures(result)
    assert figures["structure_p_value"] == result.structure_p_value
    assert figures["null_model"] == "matched"


def test_where_no_cluster_is_supported_the_descriptors_are_compared_with_the_null():
    """Smooth random filters with a strong orientation (all alike: no groups) have no
    structure beyond their null's, but their orientation selectivity is above the
    null's mixtures (which mix orientations), and the summary says so."""
    rng = np.random.default_rng(5)
    k = 7
    filters = []
    for _ in range(48):
        theta = rng.choice([0.0, 90.0])
        wave = banks.gabor(k, rng.uniform(0.15, 0.35), theta + rng.normal(0, 5), 0.0)
        filters.append(np.broadcast_to(wave, (3, k, k)) + 0.05 * rng.normal(size=(3, k, k)))
    result = run(np.stack(filters))
    contrast = result.null_contrasts["orientation_selectivity"]
    assert contrast["effect"] > 0 and contrast["p_value"] < 0.01
    if result.n_clusters == 0 or result.structure_p_value > 0.01:
        assert "orientation selectivity above the null" in summary_line(result)


def test_the_seed_method_keeps_its_own_null_and_reports_no_structure_test():
    weights, _ = banks.planted_bank(0, 7, 2.0)
    result = analyze(KernelBank(weights, "b", "conv", "array"), method="seed")
    assert result.null_model == "shuffled" and np.isnan(result.structure_p_value)
    assert result.to_dict()["structure_p_value"] is None
    assert "shuffled null" in summary_line(result) and "structure p = n/a" in summary_line(result)
