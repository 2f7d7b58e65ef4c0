"""Chance estimates on disk and the shipped ones: what is read back is what was computed."""

from __future__ import annotations

import hashlib
from dataclasses import fields

import numpy as np
import pytest

from napari_kernelspec.analysis import chance, chance_store
from napari_kernelspec.analysis.chance import ChanceModel
from napari_kernelspec.analysis.pipeline import analyze
from napari_kernelspec.base.bank import KernelBank


@pytest.fixture(autouse=True)
def _fresh_store():
    chance.set_store(None)
    yield
    chance.set_store(None)


def _bank(weights: np.ndarray) -> KernelBank:
    return KernelBank(
        weights=weights.astype(np.float32), model="test", layer="conv1", source="array"
    )


def _layer(seed: int = 3, n: int = 12) -> np.ndarray:
    """Two groups of like filters (a vertical and a horizontal grating) plus noise."""
    rng = np.random.default_rng(seed)
    x = np.arange(5) - 2.0
    vertical = np.cos(2.0 * x)[None, :].repeat(5, 0)
    out = rng.normal(0.0, 0.3, (n, 1, 5, 5))
    out[: n // 3, 0] += vertical
    out[n // 3 : 2 * n // 3, 0] += vertical.T
    return out


def assert_same_model(a: ChanceModel, b: ChanceModel) -> None:
    for f in fields(ChanceModel):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-9, err_msg=f.name)
        elif isinstance(x, float):
            np.testing.assert_allclose(x, y, rtol=1e-9, err_msg=f.name)
        else:
            assert x == y, f.name
    for alpha, (levels, share) in a.__dict__.get("_rules", {}).items():
        other_levels, other_share = b.__dict__["_rules"][alpha]
        np.testing.assert_allclose(levels, other_levels, rtol=1e-9)
        assert share == pytest.approx(other_share, rel=1e-9)
    ca, cb = a.__dict__.get("_contrasts", {}), b.__dict__.get("_contrasts", {})
    assert ca.keys() == cb.keys()
    for key in ca:
        assert ca[key].keys() == cb[key].keys()
        for name in ca[key]:
            assert ca[key][name] == pytest.approx(cb[key][name], rel=1e-9, abs=1e-300)


def test_round_trip_keeps_levels_and_contrasts(tmp_path):
    weights = _layer()
    analyze(_bank(weights))  # calibrates the levels and the contrasts
    model = chance.estimate_chance(weights.astype(np.float32))
    assert model.__dict__["_rules"] and model.__dict__["_contrasts"]
    key = chance.memo_key(weights.astype(np.float32))
    chance_store.write_models(tmp_path / "m.npz", {key: model})
    back = chance_store.read_models(tmp_path / "m.npz")
    assert list(back) == [key]
    assert_same_model(model, back[key])
    assert not back[key].reach.flags.writeable


def test_store_answers_a_new_process_without_drawing_the_null(tmp_path, monkeypatch):
    weights = _layer(seed=5)
    chance.set_store(chance_store.ChanceStore(tmp_path / "chance"))
    first = analyze(_bank(weights))
    assert len(list((tmp_path / "chance").glob("*.npz"))) == 1
    # a new process: an empty memo over the same folder, and no null may be drawn
    chance.set_store(chance_store.ChanceStore(tmp_path / "chance"))

    def refuse(*args, **kwargs):
        raise AssertionError("the null was drawn again")

    monkeypatch.setattr(chance, "_estimate", refuse)
    monkeypatch.setattr(chance, "descriptor_contrasts", refuse)
    monkeypatch.setattr("napari_kernelspec.analysis.pipeline.descriptor_contrasts", refuse)
    again = analyze(_bank(weights))
    np.testing.assert_array_equal(again.labels, first.labels)
    assert again.n_clusters == first.n_clusters >= 1
    assert again.threshold == first.threshold
    assert again.structure_p_value == first.structure_p_value
    assert again.chance_clustered_fraction == first.chance_clustered_fraction
    assert again.null_contrasts == first.null_contrasts


def test_damaged_store_file_counts_as_missing(tmp_path):
    weights = _layer(seed=7)
    folder = tmp_path / "chance"
    chance.set_store(chance_store.ChanceStore(folder))
    first = analyze(_bank(weights))
    (file,) = folder.glob("*.npz")
    file.write_bytes(b"not an npz")
    chance.set_store(chance_store.ChanceStore(folder))
    again = analyze(_bank(weights))  # drawn again, and written again
    np.testing.assert_array_equal(again.labels, first.labels)
    assert chance_store.read_models(file)


def test_shipped_file_with_another_digest_is_not_used(tmp_path, monkeypatch):
    bad = tmp_path / "lenet5_chance.npz"
    bad.write_bytes(chance_store.SHIPPED_FILE.read_bytes() + b"x")
    monkeypatch.setattr(chance_store, "SHIPPED_FILE", bad)
    assert chance_store.read_shipped() == {}


def test_shipped_estimates_equal_recomputed_ones():
    """Known answer: the shipped estimates are those of the sample history's steps, drawn
    again here from the shipped weights (fails whenever the weights or the null change:
    run scripts/make_lenet5_chance.py)."""
    from napari_kernelspec.sources.history import history_steps, lenet5_history
    from napari_kernelspec.sources.loading import load_kernels

    raw = chance_store.SHIPPED_FILE.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == chance_store.SHIPPED_SHA256
    shipped = chance_store.read_shipped()
    banks = [load_kernels(path) for path in history_steps(lenet5_history())]
    banks.append(load_kernels("lenet5"))  # the lenet5 sample: the last step's weights
    keys = {chance.memo_key(bank.weights) for bank in banks}
    assert keys == set(shipped)
    for bank in banks:
        analyze(bank)
        assert_same_model(
            chance.estimate_chance(bank.weights), shipped[chance.memo_key(bank.weights)]
        )
