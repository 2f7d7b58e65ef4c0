"""History layers: a leading T axis in step order, one grid for every step."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.history import history_layer_data, step_metadata, step_name
from napari_kernelspec._napari.layers import MosaicGeometry, describe_position, layer_data
from napari_kernelspec.analysis import analyze
from napari_kernelspec.base.bank import KernelBank


def steps_with_a_growing_cluster(make_gabor) -> tuple[list, list[str]]:
    """Six Gabors of different orientations; at step t filters 1..t+1 become scaled copies
    of filter 0 (a cluster that grows: 2, 3, 4 members)."""
    rng = np.random.default_rng(0)
    base = np.stack([make_gabor(11, 0.25, 30.0 * k, sigma=2.5)[None] for k in range(6)])
    results = []
    for t in range(3):
        w = base.copy()
        for k in range(1, t + 2):
            w[k] = base[0] * (1 + 0.1 * k) + 0.01 * rng.standard_normal(base[0].shape)
        results.append(
            analyze(
                KernelBank(
                    weights=w.astype(np.float32), model=f"e{t}", layer="c", source="checkpoint"
                )
            )
        )
    return results, ["epoch_0", "epoch_1", "epoch_2"]


def test_every_layer_gets_a_leading_step_axis_in_step_order(gabor):
    results, steps = steps_with_a_growing_cluster(gabor)
    spectra, kernels, clusters = history_layer_data(results, steps, "colour", "run")
    single = [layer_data(r, "colour") for r in results]
    assert spectra.data.shape[0] == kernels.data.shape[0] == 3
    for t in range(3):  # step t of the stack is exactly the single-step layer of step t
        np.testing.assert_array_equal(spectra.data[t], single[t][0].data)
        np.testing.assert_array_equal(kernels.data[t], single[t][1].data)
    assert kernels.kwargs["scale"] == (1.0, *single[0][1].kwargs["scale"])
    assert kernels.kwargs["translate"] == (0.0, *single[0][1].kwargs["translate"])
    assert [spectra.kwargs["name"], kernels.kwargs["name"]] == ["run spectra", "run kernels"]
    # clusters: one frame marker per filter and step, the step as the first coordinate
    sizes = [int((r.labels >= 0).sum()) for r in results]
    assert sizes == [2, 3, 4]
    n = results[0].n_filters
    assert clusters.data.shape == (3 * n, 3)
    assert clusters.data[:, 0].tolist() == [0.0] * n + [1.0] * n + [2.0] * n
    assert clusters.kwargs["features"]["step"].tolist() == [0] * n + [1] * n + [2] * n
    np.testing.assert_array_equal(clusters.data[n : 2 * n, 1:], single[1][2].data)
    clustered = [
        int((clusters.kwargs["features"]["cluster"][t * n : (t + 1) * n] >= 0).sum())
        for t in range(3)
    ]
    assert clustered == sizes  # the table says which filters are clustered at each step


def test_step_metadata_and_names_follow_the_slider(gabor):
    results, steps = steps_with_a_growing_cluster(gabor)
    meta = history_layer_data(results, steps)[0].kwargs["metadata"]["kernelspec"]
    assert meta["history"]["steps"] == steps
    assert step_name(meta, (2.0, 10.0, 10.0)) == "epoch_2"
    assert step_name(meta, (7.0, 0.0, 0.0)) == "epoch_2"  # clipped
    last = step_metadata(meta, 2)
    assert last["labels"] == results[2].labels.tolist() and last["step_name"] == "epoch_2"
    r, c = MosaicGeometry.from_dict(meta["geometry"]).centre(3)  # filter 3 joins at step 2
    assert describe_position(step_metadata(meta, 0), (0.0, r, c)).startswith("filter 3 · uncl")
    assert describe_position(last, (2.0, r, c)).startswith("filter 3 · cluster 0")


def test_a_history_of_different_shapes_is_refused(gabor):
    results, steps = steps_with_a_growing_cluster(gabor)
    other = analyze(
        KernelBank(
            weights=np.ones((4, 1, 3, 3), np.float32)
            * np.arange(1, 5, dtype=np.float32)[:, None, None, None],
            model="x",
            layer="c",
            source="array",
        )
    )
    from napari_kernelspec.base.errors import KernelSpecError

    with pytest.raises(KernelSpecError):
        history_layer_data([*results, other], [*steps, "x"])


def test_a_history_too_big_for_napari_is_refused_after_its_first_step(tmp_path, monkeypatch):
    import torch

    import napari_kernelspec._napari.history as history
    import napari_kernelspec.sources.loading as loading
    from napari_kernelspec.base.errors import KernelSpecError

    rng = np.random.default_rng(0)
    for t in range(4):
        w = torch.from_numpy(rng.standard_normal((8, 3, 5, 5)).astype(np.float32))
        torch.save({"conv1.weight": w}, tmp_path / f"epoch_{t}.pt")
    first, _ = history.analyse_history(tmp_path)
    per_step = history.history_step_bytes(first[0])
    loaded = []
    real = loading.load_kernels
    monkeypatch.setattr(loading, "load_kernels", lambda *a, **k: loaded.append(a) or real(*a, **k))
    monkeypatch.setattr(history, "MAX_HISTORY_BYTES", 3 * per_step)  # room for 3 of 4
    with pytest.raises(
        KernelSpecError, match=r"4 steps .* one checkpoint in 2 \(at most 3 steps\)"
    ):
        history.analyse_history(tmp_path)
    assert len(loaded) == 1  # the other checkpoints were never read
    monkeypatch.setattr(history, "MAX_HISTORY_BYTES", 4 * per_step)
    results, steps = history.analyse_history(tmp_path)
    assert len(results) == 4 and steps == [f"epoch_{t}" for t in range(4)]
