"""`analyze` end to end on KernelBanks built from arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import zoom

from napari_kernelspec import KernelBank, KernelSpecError, analyze
from napari_kernelspec.analysis.descriptors import DESCRIPTOR_NAMES


def bank_of(weights, **kwargs) -> KernelBank:
    return KernelBank(np.asarray(weights), "test", "conv1", "array", **kwargs)


def seed_tool_reference(weights: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The seed tool's spectra and clusters, one kernel at a time, with its own libraries."""
    from sklearn.cluster import DBSCAN
    from sklearn.metrics.pairwise import cosine_similarity

    spectra = []
    for kernel in weights.astype(np.float64):
        small = zoom(kernel[0], (16 / kernel.shape[1], 16 / kernel.shape[2]), order=3)
        magnitude = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(small))))
        spectra.append(zoom(magnitude, (2.0, 2.0), order=3))
    flat = [s.flatten() for s in spectra]
    distance = np.clip(1 - cosine_similarity(flat), 0, 2)
    labels = DBSCAN(eps=1 - threshold, min_samples=2, metric="precomputed").fit_predict(distance)
    return np.stack(spectra), labels


@pytest.mark.parametrize(("k", "threshold"), [(3, 0.99), (7, 0.93), (11, 0.9)])
def test_seed_method_reproduces_the_seed_tool(gabor, k, threshold):
    rng = np.random.default_rng(k)
    base = np.stack([gabor(k, f, t) for f in (0.15, 0.3) for t in (0, 60, 120)])
    weights = np.concatenate(
        [base, base * 1.3 + 0.02 * rng.normal(size=base.shape), rng.normal(size=(6, k, k))]
    )
    weights = np.repeat(weights[:, None], 3, axis=1) * rng.uniform(0.5, 1.5, (1, 3, 1, 1))
    weights = weights.astype(np.float32)
    result = analyze(bank_of(weights), method="seed", threshold=threshold)
    spectra, labels = seed_tool_reference(weights, threshold)
    np.testing.assert_allclose(result.spectra, spectra, rtol=0, atol=1e-10)
    # Same partition (our labels are renumbered by first member).
    same_ours = result.labels[:, None] == result.labels[None, :]
    same_seed = labels[:, None] == labels[None, :]
    np.testing.assert_array_equal(same_ours, same_seed)
    np.testing.assert_array_equal(result.labels == -1, labels == -1)
    assert result.n_clusters >= 1


def test_response_method_groups_by_tuning_with_a_guarantee(gabor):
    weights = np.stack(
        [gabor(7, f, t, phase=p) for f, t in ((0.2, 0), (0.2, 90), (0.35, 45)) for p in (0, 1.5)]
    )
    result = analyze(bank_of(np.repeat(weights[:, None], 3, axis=1)), threshold=0.9)
    assert result.clusters == [[0, 1], [2, 3], [4, 5]]  # phase does not matter, tuning does
    for members in result.clusters:
        assert result.similarity[np.ix_(members, members)].min() >= 0.9
    assert result.frequencies is not None and result.frequencies.shape == (64,)
    assert result.spectra.shape == (6, 64, 64)


def test_result_holds_views_descriptors_redundancy_and_serialises(gabor):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(12, 3, 5, 5)).astype(np.float32)
    weights[7] = 2 * weights[2]
    weights[9] = -weights[4]
    result = analyze(bank_of(weights, stride=2, padding=1))
    assert [(i, j) for i, j, _ in result.duplicates] == [(2, 7)]
    assert [(i, j) for i, j, _ in result.sign_pairs] == [(4, 9)]
    assert result.view("colour").shape == (12, 5, 5, 3)
    images = result.spectrum_images()
    assert images.shape == (12, 64, 64) and images.min() == 0 and images.max() == 1
    order = result.cluster_order()
    assert sorted(order.tolist()) == list(range(12))
    clustered = result.labels[order] >= 0
    assert not np.any(np.diff(clustered.astype(int)) > 0)  # unclustered come last

    data = json.loads(json.dumps(result.to_dict()))
    for key in ("model", "layer", "weights", "shape", "stride", "method", "threshold"):
        assert key in data
    assert data["shape"] == [12, 3, 5, 5] and data["stride"] == [2, 2]
    assert data["weights"] == "array" and data["method"] == "response"
    assert data["labels"] == result.labels.tolist()
    assert data["clusters"] == result.clusters
    assert data["duplicates"][0][:2] == [2, 7] and data["sign_pairs"][0][:2] == [4, 9]
    assert len(data["filters"]) == 12
    row = data["filters"][3]
    assert set(row) == {"index", "cluster", *DESCRIPTOR_NAMES}
    assert row["index"] == 3 and row["cluster"] == result.labels[3]
    assert row["peak_frequency"] == pytest.approx(result.descriptors["peak_frequency"][3])


def test_single_filter_and_single_channel_layers_work():
    result = analyze(bank_of(np.random.default_rng(1).normal(size=(1, 1, 5, 5))))
    assert result.labels.tolist() == [-1] and result.clusters == []
    assert result.view("colour").shape == (1, 5, 5, 3)
    assert analyze(result.bank, method="seed").labels.tolist() == [-1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "outside"),
        ({"threshold": 1.01}, "outside"),
        ({"threshold": float("nan")}, "outside"),
        ({"min_samples": 0}, "at least 1"),
        ({"method": "wavelet"}, "unknown method"),
    ],
)
def test_bad_parameters_get_clear_errors(kwargs, message):
    with pytest.raises(KernelSpecError, match=message):
        analyze(bank_of(np.ones((2, 1, 3, 3))), **kwargs)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones((3, 3, 3)), "4-D"),
        (np.ones((0, 3, 3, 3)), "empty"),
        (np.full((2, 1, 3, 3), np.nan), "NaN or Inf"),
        (
            np.concatenate([np.ones((1, 1, 3, 3)), np.zeros((1, 1, 3, 3))]),
            r"all-zero filter\(s\) \[1\]",
        ),
        (np.array([[[["a"]]]]), "dtype"),
    ],
)
def test_bad_weights_are_refused_with_a_reason(weights, message):
    with pytest.raises(KernelSpecError, match=message):
        bank_of(weights)


def test_bank_is_read_only_and_reports_provenance():
    bank = KernelBank(np.ones((2, 3, 3, 3)), "m", "l", "random", stride=(2, 1))
    assert not bank.is_trained and bank.stride == (2, 1) and bank.display_name == "m"
    with pytest.raises(ValueError, match="read-only"):
        bank.weights[0, 0, 0, 0] = 5
    with pytest.raises(ValueError, match="source"):
        KernelBank(np.ones((1, 1, 1, 1)), "m", "l", "imagenet")


def test_a_layer_beyond_the_filter_limit_is_refused_in_one_line():
    from napari_kernelspec.analysis.pipeline import MAX_FILTERS
    from napari_kernelspec.base.errors import KernelSpecError

    rng = np.random.default_rng(0)
    bank = KernelBank(rng.normal(size=(MAX_FILTERS + 1, 1, 2, 2)), "huge", "conv", "array")
    with pytest.raises(KernelSpecError, match=f"at most {MAX_FILTERS}") as info:
        analyze(bank)
    assert "\n" not in str(info.value)


def test_seed_method_without_a_threshold_is_the_seed_tool(gabor):
    rng = np.random.default_rng(5)
    weights = np.stack([gabor(7, 0.1 + 0.05 * (i % 3), 30.0 * (i % 4)) for i in range(24)])
    weights = weights + 0.05 * rng.normal(size=weights.shape)
    result = analyze(bank_of(weights[:, None].repeat(3, axis=1)), method="seed")
    _, labels = seed_tool_reference(weights[:, None].repeat(3, axis=1), 0.93)
    assert result.threshold == 0.93 and result.threshold_rule == "fixed"
    same = (result.labels[:, None] == result.labels[None]) == (labels[:, None] == labels[None])
    assert same.all() and ((result.labels < 0) == (labels < 0)).all()
    assert result.n_clusters >= 1


@pytest.mark.parametrize("method", ["response", "seed"])
def test_rethreshold_equals_a_new_analysis(method):
    from napari_kernelspec.analysis.pipeline import rethreshold

    rng = np.random.default_rng(3)
    weights = rng.normal(size=(40, 3, 7, 7)).astype(np.float32)
    weights[7] = weights[3]
    weights[9] = -weights[3]
    bank = KernelBank(weights, model="toy", layer="conv1", source="array")
    first = analyze(bank, method=method)  # the default rule (auto for response)
    for threshold in (0.5, 0.8, 0.97):
        fast = rethreshold(first, threshold)
        full = analyze(bank, method=method, threshold=threshold)
        assert fast is not None and fast.threshold == threshold
        np.testing.assert_array_equal(fast.labels, full.labels)
        assert fast.duplicates == full.duplicates and fast.sign_pairs == full.sign_pairs
        assert fast.threshold_rule == full.threshold_rule == "fixed"
        assert fast.redundancy_threshold == full.redundancy_threshold
        assert fast.chance_clustered_fraction == full.chance_clustered_fraction
        assert fast.chance_similarity == full.chance_similarity
    with pytest.raises(KernelSpecError):
        rethreshold(first, 1.5)
