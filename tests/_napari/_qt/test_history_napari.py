"""A folder of checkpoints opens as a training history; the dims slider scrubs its steps."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.commands import get_reader
from napari_kernelspec._napari.history import step_name

pytestmark = pytest.mark.gui


def _roles(viewer) -> dict[str, object]:
    return {lay.metadata["kernelspec"]["role"]: lay for lay in viewer.layers}


def test_a_checkpoint_folder_opens_with_a_step_axis(make_napari_viewer, tmp_path):
    import torch

    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 5, 5, generator=g)
    # saved out of order: "epoch_10" must come after "epoch_9"
    for epoch in (10, 2, 9):
        torch.save({"conv1.weight": w * (1 + epoch / 10)}, tmp_path / f"epoch_{epoch}.pt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert get_reader(str(tmp_path)) is not None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path), plugin="napari-kernelspec")
    roles = _roles(viewer)
    assert set(roles) == {"spectra", "kernels", "clusters"}
    kernels, spectra = roles["kernels"], roles["spectra"]
    assert kernels.ndim == spectra.ndim == roles["clusters"].ndim == 3
    assert kernels.data.shape[0] == 3 and kernels.rgb
    assert viewer.dims.nsteps[0] == 3  # the slider runs over the steps
    meta = kernels.metadata["kernelspec"]
    assert meta["history"]["steps"] == ["epoch_2", "epoch_9", "epoch_10"]
    # mean change from epoch_2 (x1.2) to epoch_9 (x1.9): 0.7 / 1.2 for every filter
    assert meta["history"]["drift"]["mean_change"][1] == pytest.approx(0.7 / 1.2, rel=1e-5)
    viewer.dims.set_current_step(0, 2)
    assert step_name(meta, viewer.dims.point) == "epoch_10"
    # the displayed slice is the mosaic of the step under the slider
    np.testing.assert_array_equal(np.asarray(kernels._slice.image.view), kernels.data[2])
    viewer.dims.set_current_step(0, 0)
    np.testing.assert_array_equal(np.asarray(spectra._slice.image.view), spectra.data[0])


def test_the_lenet5_history_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-kernelspec", "lenet5_history")
    roles = _roles(viewer)
    kernels = roles["kernels"]
    assert kernels.name == "LeNet5 training kernels"
    assert kernels.data.shape[0] == 13  # the initialisation and 12 epochs
    steps = kernels.metadata["kernelspec"]["history"]["steps"]
    assert steps[0] == "epoch_000" and steps[-1] == "epoch_012"
    drift = kernels.metadata["kernelspec"]["history"]["drift"]
    # training moves the filters most in the first epoch
    assert drift["mean_change"][1] == max(drift["mean_change"][1:])
