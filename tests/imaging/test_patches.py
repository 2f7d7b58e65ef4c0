"""Top patches and the filter map: plant the answer, then find it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec import KernelBank, KernelSpecError
from napari_kernelspec.imaging import filter_embedding, top_patches


def _bank(weights, **kw):
    return KernelBank(weights=weights, model="planted.npy", layer="w", source="array", **kw)


def test_planted_pattern_is_the_filters_top_patch():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 3, 7, 7)).astype(np.float32)
    bank = _bank(weights, stride=2, padding=3)
    images = [rng.random((60, 70, 3)).astype(np.float32) * 0.2 + 0.4 for _ in range(4)]
    j, where, (y0, x0) = 4, 2, (21, 33)  # top-left of the copy; centre (24, 36)
    pattern = weights[j].transpose(1, 2, 0)
    images[where][y0 : y0 + 7, x0 : x0 + 7] = 0.5 + 0.5 * pattern / np.abs(pattern).max()
    found = top_patches(bank, images, k=5)
    best = found.patches(j)[0]
    assert best.image == where
    assert best.box == (y0, x0, y0 + 7, x0 + 7)
    assert len(found.patches(j)) == 5
    acts = found.activations[j]
    assert np.all(np.diff(acts) <= 0)  # best first
    # the crop of the best patch is the planted copy
    crops = found.crops(images, j)
    np.testing.assert_allclose(crops[0], images[where][y0 : y0 + 7, x0 : x0 + 7], atol=1e-6)


def test_patches_are_different_places():
    """One strong spot: the k patches of its filter do not overlap it by half or more."""
    weights = np.ones((1, 1, 5, 5), np.float32)
    image = np.zeros((40, 40), np.float32)
    image[18:23, 18:23] = 1.0  # one bright square: neighbouring pixels respond almost as much
    found = top_patches(_bank(weights, padding=2), [image], k=4)
    boxes = np.array([p.box for p in found.patches(0)])
    assert tuple(boxes[0]) == (18, 18, 23, 23)
    for box in boxes[1:]:
        overlap = np.minimum(boxes[0][2:], box[2:]) - np.maximum(boxes[0][:2], box[:2])
        assert np.any(overlap < 5 / 2), (boxes[0], box)


def test_boxes_are_clipped_to_the_image_and_crops_padded():
    weights = np.ones((1, 1, 5, 5), np.float32)
    image = np.zeros((20, 20), np.float32)
    image[0, 0] = 1.0  # brightest spot in the corner: the receptive field sticks out
    found = top_patches(_bank(weights, padding=2), [image], k=1)
    best = found.patches(0)[0]
    assert best.box == (0, 0, 3, 3)
    crop = found.crops([image], 0)[0]
    assert crop.shape == (5, 5)
    assert crop[2, 2] == 1.0 and crop[:2].sum() == 0


def test_patches_over_image_files(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    weights = rng.normal(size=(3, 1, 3, 3)).astype(np.float32)
    paths = []
    for i in range(3):
        path = tmp_path / f"im{i}.png"
        Image.fromarray((rng.random((30, 30)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    from_files = top_patches(_bank(weights), paths, k=3)
    arrays = [np.array(Image.open(p)) for p in paths]
    from_arrays = top_patches(_bank(weights), arrays, k=3)
    np.testing.assert_array_equal(from_files.image_index, from_arrays.image_index)
    np.testing.assert_array_equal(from_files.boxes, from_arrays.boxes)
    doc = from_files.to_dict([str(p) for p in paths])
    assert doc["filters"][0]["patches"][0]["image"] in map(str, paths)
    assert len(doc["filters"]) == 3


def test_bad_inputs():
    bank = _bank(np.ones((1, 1, 3, 3), np.float32))
    with pytest.raises(KernelSpecError, match="no images"):
        top_patches(bank, [])
    with pytest.raises(KernelSpecError, match="k must be"):
        top_patches(bank, [np.ones((9, 9))], k=0)
    with pytest.raises(KernelSpecError, match=r"image 1: .*smaller than"):
        top_patches(bank, [np.ones((9, 9)), np.ones((2, 2))])


def test_four_orientation_groups_are_four_groups_in_the_pca_map(gabor):
    rng = np.random.default_rng(2)
    filters, groups = [], []
    for g, theta in enumerate((0, 45, 90, 135)):
        for _ in range(8):
            f = gabor(
                11, 0.2 + rng.uniform(-0.02, 0.02), theta + rng.uniform(-5, 5), rng.uniform(0, 6)
            )
            filters.append(f + rng.normal(scale=0.02, size=f.shape))
            groups.append(g)
    weights = np.stack(filters)[:, None].astype(np.float32)
    groups = np.array(groups)
    for method in ("pca", "tsne"):
        xy = filter_embedding(_bank(weights), method=method, seed=0)
        assert xy.shape == (32, 2)
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
        same = groups[:, None] == groups[None]
        # every group is tighter than its distance to any other group
        for g in range(4):
            inside = d[np.ix_(groups == g, groups == g)].max()
            outside = d[np.ix_(groups == g, groups != g)].min()
            assert inside < outside, (method, g, inside, outside)
        assert not same.all()
    np.testing.assert_array_equal(
        filter_embedding(_bank(weights), "tsne", seed=3),
        filter_embedding(_bank(weights), "tsne", seed=3),
    )


def test_embedding_bad_method():
    with pytest.raises(KernelSpecError, match="pca, tsne"):
        filter_embedding(_bank(np.ones((3, 1, 3, 3), np.float32)), method="umap")
