"""File > Save Layers: the plugin's npe2 writers, through a real viewer's ``layers.save``."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-kernelspec"


def _roles(viewer) -> dict[str, object]:
    return {lay.metadata["kernelspec"]["role"]: lay for lay in viewer.layers}


@pytest.fixture
def opened(make_napari_viewer, tmp_path):
    """A viewer with a planted 8-filter bank (and its bias) opened by the plugin's reader.

    Filters 1, 3 and 6 share one shape: a group the matched null supports (a pair in five
    filters is not: the layer-level test needs a few more filters).
    """
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((8, 3, 4, 4)).astype(np.float32)
    weights[3] = weights[1] * 2.0
    weights[6] = weights[1] * 1.5
    bias = rng.standard_normal(8).astype(np.float32)
    source = tmp_path / "bank.npz"
    np.savez(source, **{"stem.weight": weights, "stem.bias": bias})
    viewer = make_napari_viewer()
    viewer.open(str(source), plugin=PLUGIN)
    return viewer, weights, bias


def test_a_kernel_bank_saves_as_npy_and_safetensors(opened, tmp_path):
    from napari_kernelspec.sources.loading import load_kernels

    viewer, weights, bias = opened
    roles = _roles(viewer)
    for role in ("kernels", "spectra", "clusters"):
        viewer.layers.selection = {roles[role]}
        path = tmp_path / f"{role}.npy"
        written = viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
        assert written == [str(path)]
        saved = np.load(path, allow_pickle=False)
        assert saved.dtype == np.float32
        np.testing.assert_array_equal(saved, weights)  # the bank, not the mosaic
    viewer.layers.selection = {roles["kernels"]}
    path = tmp_path / "bank.safetensors"
    assert viewer.layers.save(str(path), selected=True, plugin=PLUGIN) == [str(path)]
    again = load_kernels(path)  # opens as the same layer, bias included
    assert again.layer == roles["kernels"].metadata["kernelspec"]["layer"] == "stem.weight"
    np.testing.assert_array_equal(again.weights, weights)
    np.testing.assert_array_equal(again.bias, bias)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left


def test_the_filter_table_saves_as_csv(opened, tmp_path):
    viewer, _, _ = opened
    kernels = _roles(viewer)["kernels"]
    viewer.layers.selection = {kernels}
    path = tmp_path / "table.csv"
    assert viewer.layers.save(str(path), selected=True, plugin=PLUGIN) == [str(path)]
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    meta = kernels.metadata["kernelspec"]
    assert [int(r["index"]) for r in rows] == list(range(8))
    assert [int(r["cluster"]) for r in rows] == meta["labels"]
    assert rows[1]["cluster"] == rows[3]["cluster"] == rows[6]["cluster"] != "-1"  # planted
    assert rows[1]["colour"].startswith("#") and rows[1]["colour"] == rows[3]["colour"]
    assert {r["model"] for r in rows} == {meta["model"]} and rows[0]["layer"] == "stem.weight"
    for name, values in meta["descriptors"].items():
        got = [float(r[name]) if r[name] else np.nan for r in rows]
        np.testing.assert_allclose(got, values, equal_nan=True)


def test_other_layers_are_refused_with_a_clear_message(opened, tmp_path):
    viewer, _, _ = opened
    image = viewer.add_image(np.zeros((8, 8), np.float32), name="my image")
    viewer.layers.selection = {image}
    from napari_kernelspec._napari.saving import NotOurLayer

    for name in ("x.npy", "x.safetensors", "x.csv"):
        with pytest.raises(NotOurLayer, match=r"saves only its own layers.*'my image'"):
            viewer.layers.save(str(tmp_path / name), selected=True, plugin=PLUGIN)
        assert not (tmp_path / name).exists()
    # with no plugin named, .npy of an image still reaches only this writer: same message
    with pytest.raises(NotOurLayer, match="napari's writer"):
        viewer.layers.save(str(tmp_path / "x.npy"), selected=True)
    # napari's own writer still saves it
    assert viewer.layers.save(str(tmp_path / "x.tif"), selected=True)


def test_a_training_history_saves_every_step(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "lenet5_history")
    from napari_kernelspec.sources import digits

    _, _, shipped = digits.read_shipped()
    kernels = _roles(viewer)["kernels"]
    viewer.layers.selection = {kernels}
    path = tmp_path / "history.npy"
    viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    expected = np.stack([step["conv1.weight"] for step in shipped.values()])
    np.testing.assert_array_equal(np.load(path), expected)  # (T, N, C, H, W)
    table = tmp_path / "history.csv"
    viewer.layers.save(str(table), selected=True, plugin=PLUGIN)
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 13 * 6 and rows[-1]["step"] == "epoch_012"


def test_the_widgets_layers_save_their_bank(docked, tmp_path):
    """Layers the widget made (no bank in their metadata): the model's bank, loaded again."""
    viewer, widget = docked  # AlexNet, seeded random weights
    kernels = next(
        lay for lay in viewer.layers if lay.metadata.get("kernelspec", {}).get("role") == "kernels"
    )
    viewer.layers.selection = {kernels}
    path = tmp_path / "widget.npy"
    assert viewer.layers.save(str(path), selected=True, plugin=PLUGIN) == [str(path)]
    np.testing.assert_array_equal(np.load(path), widget.bank.weights)
