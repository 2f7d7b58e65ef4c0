"""The samples use the shipped chance estimates and keep new ones in the kernel cache."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.analysis import chance


@pytest.fixture(autouse=True)
def _fresh_store():
    chance.set_store(None)
    yield
    chance.set_store(None)


def _refuse(*args, **kwargs):
    raise AssertionError("a null was drawn")


def test_history_sample_opens_without_drawing_a_null(monkeypatch):
    """Empty kernel cache: every step's estimate comes from the shipped file, and the
    layers are those of a fresh analysis (the same clusters in every step)."""
    from napari_kernelspec._napari.history import analyse_history, sample_lenet5_history
    from napari_kernelspec.sources.history import lenet5_history

    expected, _ = analyse_history(lenet5_history())  # drawn here, with the default store
    chance.set_store(None)
    monkeypatch.setattr(chance, "_estimate", _refuse)
    monkeypatch.setattr("napari_kernelspec.analysis.pipeline.descriptor_contrasts", _refuse)
    layers = sample_lenet5_history()
    assert [layer_type for _, _, layer_type in layers] == ["image", "image", "points"]
    history = layers[0][1]["metadata"]["kernelspec"]["history"]
    assert len(history["labels"]) == len(expected) == 13
    assert history["labels"] == [r.labels.astype(int).tolist() for r in expected]


def test_store_is_in_the_kernel_cache_and_follows_it(tmp_path, monkeypatch):
    from napari_kernelspec._napari import reading
    from napari_kernelspec.analysis.chance_store import ChanceStore

    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "a"))
    reading.use_chance_store()
    store = chance.get_store()
    assert isinstance(store, ChanceStore) and store.folder == tmp_path / "a" / "chance-v1"
    assert len(store) == 13  # the shipped estimates, held in memory
    reading.use_chance_store()
    assert chance.get_store() is store  # installed once
    weights = np.random.default_rng(1).normal(size=(5, 1, 3, 3)).astype(np.float32)
    chance.estimate_chance(weights)
    assert [p.stem for p in store.folder.glob("*.npz")] == [chance.memo_key(weights)]
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path / "b"))
    reading.use_chance_store()
    assert chance.get_store().folder == tmp_path / "b" / "chance-v1"
