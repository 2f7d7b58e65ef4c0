"""Layer data for the Dataset widget: the image embedding, one image, the class heatmap.

No Qt here. From a `DatasetResult` (`imaging.dataset.dataset_statistics`):

- `embedding_layer`: one point per image (row i of ``images.parquet`` is point i) at its
  t-SNE (or PCA) coordinates fitted into a square of `SIDE` world units, coloured by class
  through napari's ``face_color`` cycle over the ``class`` feature;
- `image_layer`: the image of one row, exactly as `sources.load_item` reads it, scaled to
  `SIDE` world units high;
- `heatmap_layer`: the per-class mean activation after ReLU as an (N filters, C classes)
  image with ``axis_labels = ("filter", "class")``, so row i is filter i and column c is
  ``result.classes[c]``.

Each layer carries ``metadata["kernelspec"]["role"]`` (one of `DATASET_ROLES`), so the
layout helpers (`layout.is_ours`) know it is the plugin's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import palette
from .layers import LayerData
from .maps_layers import _meta as maps_meta

if TYPE_CHECKING:
    from ..imaging.dataset.run import DatasetResult

__all__ = [
    "COORDINATES",
    "DATASET_ROLES",
    "NO_CLASS",
    "SIDE",
    "embedding_coordinates",
    "embedding_layer",
    "heatmap_layer",
    "image_layer",
]

#: Roles of the widget's layers (``metadata["kernelspec"]["role"]``).
DATASET_ROLES = ("embedding", "dataset_image", "class_heatmap")
#: Embedding coordinates the widget offers.
COORDINATES = ("tsne", "pca")
#: World size (height and width) of the embedding square, and the height of the image.
SIDE = 100.0
#: The ``class`` feature of an image without a class (an unlabelled folder).
NO_CLASS = "(none)"


def _meta(role: str, result: DatasetResult, **extra: Any) -> dict[str, Any]:
    """The feature-maps layers' metadata (model, layer, filters) plus the dataset's name."""
    return maps_meta(role, result, source=result.source.name, **extra)


def embedding_coordinates(
    result: DatasetResult, coordinates: str = "tsne"
) -> tuple[np.ndarray, str]:
    """(M, 2) coordinates of the images and the name of those used.

    t-SNE falls back to PCA when it was not computed (NaN).

    Raises
    ------
    ValueError
        An unknown `coordinates`.
    """
    if coordinates not in COORDINATES:
        raise ValueError(f"coordinates must be one of {COORDINATES}, got {coordinates!r}")
    xy = np.asarray(result.tsne if coordinates == "tsne" else result.pca, dtype=np.float64)
    if coordinates == "tsne" and not np.all(np.isfinite(xy)):
        return np.asarray(result.pca, dtype=np.float64), "pca"
    return xy, coordinates


def _class_names(result: DatasetResult) -> np.ndarray:
    classes = result.classes
    return np.array([classes[i] if i >= 0 else NO_CLASS for i in result.labels], dtype=object)


def embedding_layer(
    result: DatasetResult, coordinates: str = "tsne", translate: Any = (0.0, 0.0)
) -> LayerData:
    """The embedding as Points: point i is image i (row i of ``images.parquet``).

    Parameters
    ----------
    result : DatasetResult
    coordinates : {"tsne", "pca"}
    translate : (2,) array_like
        World (y, x) of the square's top-left corner (`layout.beside_all`).

    Returns
    -------
    LayerData
        (M, 2) points (row = -y, column = x, fitted into `SIDE` x `SIDE`); ``features``
        ``row``, ``class``, ``path``; ``face_color`` maps each class name to a colour
        (class c of ``result.classes``: colour c of `palette.cluster_colors`).
    """
    xy, used = embedding_coordinates(result, coordinates)
    n = len(xy)
    if n == 0:
        raise ValueError("the result has no images")
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-12))
    inner = 0.9 * SIDE
    rows = (hi[1] - xy[:, 1]) / span * inner + 0.05 * SIDE  # up is up
    cols = (xy[:, 0] - lo[0]) / span * inner + 0.05 * SIDE
    classes = [*result.classes, NO_CLASS]
    cycle = np.concatenate(
        [
            palette.cluster_colors(max(len(result.classes), 1))[: len(result.classes)],
            np.array([palette.UNCLUSTERED_RGB]),
        ]
    )
    names = _class_names(result)
    features = {
        "row": np.arange(n),
        "class": names,
        "path": np.array([key for key, _ in result.source.items], dtype=object),
    }
    kwargs = {
        "name": f"embedding · {used} · {result.bank.layer}",
        "features": features,
        "face_color": "class",
        # class name -> colour: class c has colour c whatever order the rows come in
        "face_color_cycle": {
            name: (*rgb, 1.0) for name, rgb in zip(classes, cycle.tolist(), strict=True)
        },
        "border_color": "#222222",
        "size": 2.0,
        "translate": tuple(float(v) for v in np.asarray(translate, float).reshape(-1)[-2:]),
        "metadata": _meta(
            "embedding",
            result,
            coordinates=used,
            classes=list(result.classes),
            embedding=result.meta.get("embedding"),
        ),
    }
    return LayerData(np.stack([rows, cols], axis=1), kwargs, "points")


def image_layer(result: DatasetResult, row: int, translate: Any = (0.0, 0.0)) -> LayerData:
    """The image of row `row`, as `sources.load_item` reads it, `SIDE` world units high.

    Raises
    ------
    IndexError
        `row` outside the dataset.
    KernelSpecError
        The file can no longer be read.
    """
    from ..imaging.dataset.sources import load_item

    row = int(row)
    if not 0 <= row < len(result.source):
        raise IndexError(f"row {row} is outside the dataset of {len(result.source)} images")
    key, label = result.source.items[row]
    image = np.asarray(load_item(key))
    rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    scale = SIDE / max(image.shape[0], 1)
    name_class = result.classes[label] if label >= 0 else NO_CLASS
    kwargs: dict[str, Any] = {
        "name": f"dataset image · {row} · {name_class}",
        "rgb": rgb,
        "scale": (scale, scale),
        "translate": tuple(float(v) for v in np.asarray(translate, float).reshape(-1)[-2:]),
        "colormap": "gray",
        "metadata": _meta("dataset_image", result, row=row, path=key, **{"class": name_class}),
    }
    if rgb:
        kwargs.pop("colormap")
    elif image.size:
        lo, hi = float(np.min(image)), float(np.max(image))
        kwargs["contrast_limits"] = (lo, hi if hi > lo else lo + 1.0)
    return LayerData(image, kwargs, "image")


def heatmap_layer(result: DatasetResult, translate: Any = (0.0, 0.0)) -> LayerData:
    """Mean activation after ReLU per filter and class: an (N, C) image.

    Row i is filter i, column c is class ``result.classes[c]`` (``axis_labels`` ``("filter",
    "class")``; the class names are in ``metadata["kernelspec"]["classes"]``). Each cell is
    ``SIDE / max(N, C)`` world units wide, so the map is at most `SIDE` high or wide.

    Raises
    ------
    ValueError
        An unlabelled dataset (no classes).
    """
    n_classes = result.stats.n_classes
    if n_classes == 0:
        raise ValueError("the dataset has no classes: no per-class heatmap")
    means = np.asarray(result.stats.means()[:n_classes], dtype=np.float32).T  # (N, C)
    cell = SIDE / max(means.shape)
    hi = float(np.nanmax(means)) if means.size else 1.0
    return LayerData(
        means,
        {
            "name": f"class heatmap · {result.bank.layer} (filter × class)",
            "colormap": "magma",
            "contrast_limits": (0.0, hi if hi > 0 else 1.0),
            "scale": (cell, cell),
            "translate": tuple(float(v) for v in np.asarray(translate, float).reshape(-1)[-2:]),
            "axis_labels": ("filter", "class"),
            "metadata": _meta(
                "class_heatmap",
                result,
                axes=["filter", "class"],
                classes=list(result.classes),
                value="mean activation after ReLU",
            ),
        },
        "image",
    )
