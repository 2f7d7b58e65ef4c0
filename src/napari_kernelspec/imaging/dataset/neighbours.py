"""The images among themselves: PCA and t-SNE of their embedding, k nearest neighbours.

scikit-learn does the work (imported inside the functions): `PCA`, `TSNE` (after PCA to at
most 50 dimensions, as its documentation advises) and `NearestNeighbors` (exact, Euclidean).
"""

from __future__ import annotations

import numpy as np

__all__ = ["knn_accuracy", "nearest_neighbours", "pca_2d", "same_class_share", "tsne_2d"]


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an (M, D) array, got shape {x.shape}")
    return x


def pca_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(M, D) -> (M, 2) PCA coordinates (zeros in a missing second component)."""
    from sklearn.decomposition import PCA

    x = _check(x)
    out = np.zeros((len(x), 2))
    dims = min(2, len(x), x.shape[1])
    if len(x) >= 2 and dims >= 1:
        out[:, :dims] = PCA(n_components=dims, random_state=seed).fit_transform(x)
    return out


def tsne_2d(x: np.ndarray, seed: int = 0, threads: int = 1) -> np.ndarray:
    """(M, D) -> (M, 2) t-SNE coordinates (perplexity ``min(30, (M - 1) / 3)``, PCA start).

    One thread by default: this runs on shared machines where OpenMP's extra threads wait
    for busy cores (see `imaging.embedding`).
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = _check(x)
    n = len(x)
    if n < 4:
        return pca_2d(x, seed)
    dims = min(50, n - 1, x.shape[1])
    reduced = (
        PCA(n_components=dims, random_state=seed).fit_transform(x) if dims < x.shape[1] else x
    )
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(limits=threads):
        return tsne.fit_transform(reduced).astype(np.float64)


def nearest_neighbours(x: np.ndarray, k: int = 5) -> np.ndarray:
    """Each row's `k` nearest other rows (Euclidean, exact, nearest first; memory: the
    distances of one block of rows at a time).

    Returns
    -------
    (M, min(k, M - 1)) ndarray of int64
    """
    from sklearn import config_context
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected an (M, D) array, got shape {x.shape}")
    k = min(int(k), len(x) - 1)
    if k < 1:
        return np.zeros((len(x), 0), np.int64)
    # Distances in blocks of at most 64 MB (scikit-learn's default allows 1 GB at once).
    with config_context(working_memory=64):
        found = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)
    out = np.empty((len(x), k), np.int64)
    for i, row in enumerate(found):  # drop the row itself (or one duplicate of it)
        row = row[row != i][:k] if (row == i).any() else row[:k]
        out[i] = row
    return out


def same_class_share(neighbours: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(M,) share of each row's neighbours with its class; NaN for a row without one."""
    labels = np.asarray(labels, np.int64)
    if neighbours.shape[1] == 0:
        return np.full(len(labels), np.nan)
    share = (labels[neighbours] == labels[:, None]).mean(axis=1)
    return np.where(labels >= 0, share, np.nan)


def knn_accuracy(xy: np.ndarray, labels: np.ndarray, k: int = 5, folds: int = 5) -> float:
    """Cross-validated accuracy of a k-nearest-neighbour classifier on `xy` (NaN if it
    cannot be computed: no classes, or a class with fewer images than folds)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels, np.int64)
    keep = labels >= 0
    if keep.sum() < 2 or len(np.unique(labels[keep])) < 2:
        return float("nan")
    counts = np.bincount(labels[keep])
    folds = min(folds, int(counts[counts > 0].min()))
    if folds < 2:
        return float("nan")
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scores = cross_val_score(
        KNeighborsClassifier(n_neighbors=min(k, int(keep.sum()) - 1)),
        np.asarray(xy)[keep],
        labels[keep],
        cv=split,
    )
    return float(scores.mean())
