"""Layer data of the Dataset widget (no Qt): embedding points, one image, class heatmap."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.dataset_layers import (
    SIDE,
    embedding_coordinates,
    embedding_layer,
    heatmap_layer,
    image_layer,
)

N_IMAGES = 40


@pytest.fixture(scope="module")
def result():
    from napari_kernelspec.imaging.dataset.run import dataset_statistics
    from napari_kernelspec.imaging.dataset.sources import digits_source

    # the package's trained LeNet5, its first conv; PCA only (t-SNE off: NaN coordinates)
    return dataset_statistics("lenet5", digits_source(N_IMAGES), tsne=False)


def test_one_point_per_image_with_its_class(result):
    from sklearn.datasets import load_digits

    data = embedding_layer(result, "tsne")  # t-SNE not computed: PCA instead
    assert data.layer_type == "points"
    assert data.data.shape == (N_IMAGES, 2)
    features = data.kwargs["features"]
    expected = [str(d) for d in load_digits().target[:N_IMAGES]]
    assert list(features["class"]) == expected
    np.testing.assert_array_equal(features["row"], np.arange(N_IMAGES))
    assert data.kwargs["metadata"]["kernelspec"]["coordinates"] == "pca"
    # inside the SIDE x SIDE square, and PCA x increases with the column
    assert data.data.min() >= 0 and data.data.max() <= SIDE
    xy, used = embedding_coordinates(result, "tsne")
    assert used == "pca"
    order = np.argsort(xy[:, 0])
    assert np.all(np.diff(data.data[order, 1]) >= -1e-9)
    cycle = data.kwargs["face_color_cycle"]
    assert set(cycle) >= set(expected) and len({cycle[c] for c in result.classes}) == 10


def test_the_image_of_a_row_is_that_digit(result):
    from napari_kernelspec.imaging.dataset.sources import load_item

    data = image_layer(result, 7, translate=(3, 4))
    np.testing.assert_array_equal(data.data, load_item("digits:7"))
    assert data.data.shape == (32, 32)
    assert data.kwargs["metadata"]["kernelspec"]["row"] == 7
    assert data.kwargs["translate"] == (3.0, 4.0)
    assert data.kwargs["scale"][0] * 32 == pytest.approx(SIDE)
    with pytest.raises(IndexError):
        image_layer(result, N_IMAGES)


def test_heatmap_is_filters_by_classes(result):
    data = heatmap_layer(result)
    assert data.data.shape == (6, 10)  # LeNet5 conv1: 6 filters; 10 digit classes
    assert data.kwargs["axis_labels"] == ("filter", "class")
    np.testing.assert_allclose(data.data, result.stats.means()[:10].T, rtol=1e-6)
    assert data.kwargs["metadata"]["kernelspec"]["classes"] == [str(d) for d in range(10)]
    # the class table's means, filter 2 and class "3"
    table = result.class_table().to_pandas()
    row = table[(table["index"] == 2) & (table["class"] == "3")]
    assert data.data[2, 3] == pytest.approx(float(row["mean"].iloc[0]), rel=1e-5)
