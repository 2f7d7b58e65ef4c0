"""Reader and sample data through napari's own plugin machinery."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.commands import get_reader

pytestmark = pytest.mark.gui


def _roles(viewer) -> dict[str, object]:
    return {lay.metadata["kernelspec"]["role"]: lay for lay in viewer.layers}


def test_reader_opens_a_checkpoint(make_napari_viewer, tmp_path):
    import torch

    weights = torch.randn(12, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": {"stem.weight": weights, "fc.weight": torch.randn(10, 4)}}, path)
    assert get_reader(str(path)) is not None
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-kernelspec")
    roles = _roles(viewer)
    assert set(roles) == {"kernels", "spectra", "clusters"}
    assert roles["kernels"].data.shape[-1] == 3
    assert roles["kernels"].metadata["kernelspec"]["geometry"]["n"] == 12
    assert all("tiny" in lay.name for lay in viewer.layers)


def test_indices_of_opened_files_follow_the_zoom_without_the_widget(make_napari_viewer, tmp_path):
    from napari_kernelspec._napari.layers import index_text_size

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", rng.standard_normal((64, 3, 7, 7)).astype(np.float32))
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "a.npy"), plugin="napari-kernelspec")
    viewer.open(str(tmp_path / "b.npy"), plugin="napari-kernelspec")
    frames = [lay for lay in viewer.layers if lay.metadata["kernelspec"]["role"] == "clusters"]
    assert len(frames) == 2
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    for tile_px in (5.0, 60.0, 200.0):  # unreadable, then zoomed in, then in further
        tile = float(frames[0].metadata["kernelspec"]["geometry"]["tile"])
        camera.zoom = tile_px / tile
        size, shown = index_text_size(tile_px)
        for layer in frames:  # both files' indices, no widget open
            assert layer.text.visible == shown
            assert layer.text.size == pytest.approx(round(size))
    assert frames[0].text.visible and frames[0].text.size > 7


def test_reader_leaves_plain_images_to_napari(tmp_path):
    image = tmp_path / "image.npy"
    np.save(image, np.zeros((8, 8)))
    kernels = tmp_path / "kernels.npz"
    np.savez(kernels, conv=np.ones((4, 1, 3, 3)), bias=np.zeros(4))
    assert get_reader(str(image)) is None
    assert get_reader(str(kernels)) is not None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(kernels), str(kernels)]) is None
    # 4-D image stacks (T, Z, Y, X) and integer volumes are not convolution weights.
    stack = tmp_path / "stack.npy"
    np.save(stack, np.zeros((2, 3, 128, 128), dtype=np.float32))
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros((2, 3, 5, 5), dtype=np.uint8))
    assert get_reader(str(stack)) is None
    assert get_reader(str(labels)) is None


def test_sample_data(make_napari_viewer):
    from napari_kernelspec.sources.loading import UntrainedWeightsWarning

    viewer = make_napari_viewer()
    viewer.open_sample("napari-kernelspec", "lenet5_digits")
    roles = _roles(viewer)
    assert roles["kernels"].metadata["kernelspec"]["weights"] == "trained-digits"
    assert roles["kernels"].name == "LeNet5 kernels"
    viewer.layers.clear()
    from napari.utils.notifications import NotificationSeverity, notification_manager

    shown = []
    notification_manager.notification_ready.connect(shown.append)
    # No pretrained AlexNet in the private TORCH_HOME: the sample says it is untrained,
    # in a napari notification as well as on stderr.
    try:
        with pytest.warns(UntrainedWeightsWarning):
            viewer.open_sample("napari-kernelspec", "alexnet")
    finally:
        notification_manager.notification_ready.disconnect(shown.append)
    warned = [n for n in shown if n.severity == NotificationSeverity.WARNING]
    assert len(warned) == 1 and "AlexNet: no pretrained weights" in warned[0].message
    assert "RANDOM, UNTRAINED" in warned[0].message
    names = [lay.name for lay in viewer.layers]
    assert names == [
        "AlexNet (untrained) spectra",
        "AlexNet (untrained) kernels",
        "AlexNet (untrained) clusters",
    ]
