"""`filter_embedding`: a 2-D map of the filters, similar tuning close together."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError

__all__ = ["EMBEDDINGS", "filter_embedding", "tuning_features"]

#: Accepted values of ``method``.
EMBEDDINGS = ("pca", "tsne")


def _bank_of(result: Any) -> KernelBank:
    bank = result if isinstance(result, KernelBank) else getattr(result, "bank", None)
    if not isinstance(bank, KernelBank):
        raise TypeError(
            "filter_embedding needs an AnalysisResult, FeatureMaps, TopPatches or KernelBank, "
            f"got {type(result).__name__}"
        )
    return bank


def tuning_features(bank: KernelBank) -> np.ndarray:
    """Unit-length tuning vectors: the vectors whose dot product is the tuning similarity of
    the ``"response"`` method (`analysis.chance.similarity_vectors`: amplitude spectra on
    colour axes, the layer's mean removed, Pearson), so the map and the clusters agree.

    Returns
    -------
    (N, max(D, 2)) ndarray of float64
        Zero-padded to two columns for kernels without spatial structure (1x1).
    """
    from ..analysis.chance import similarity_vectors

    vectors = similarity_vectors(bank.weights, "response")
    if vectors.shape[1] < 2:
        vectors = np.pad(vectors, ((0, 0), (0, 2 - vectors.shape[1])))
    return vectors


def filter_embedding(result: Any, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the filters from their response spectra.

    Parameters
    ----------
    result : AnalysisResult, FeatureMaps, TopPatches or KernelBank
        Anything that holds the layer's bank.
    method : {"pca", "tsne"}
        scikit-learn's PCA (linear, global structure) or t-SNE (perplexity
        ``min(30, (N - 1) / 3)``, PCA initialisation: local groups).
    seed : int
        Random state of the method (results are reproducible).

    Returns
    -------
    (N, 2) ndarray of float64
        Filters with similar tuning (correlated amplitude spectra) lie close together.
    """
    if method not in EMBEDDINGS:
        raise KernelSpecError(f"method must be one of {', '.join(EMBEDDINGS)}, got {method!r}")
    features = tuning_features(_bank_of(result))
    n = len(features)
    if n < 3:  # nothing to reduce: a line through the points
        out = np.zeros((n, 2))
        if n == 2:
            out[:, 0] = [-0.5, 0.5]
        return out
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(features).astype(np.float64)
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # As scikit-learn advises: PCA to at most 50 dimensions first. One thread: on this 2-core
    # machine under load, t-SNE of 32 filters took 18-40 s with OpenMP's default threads and
    # 0.4 s with one (a few hundred points gain nothing from more).
    dims = min(50, n - 1, features.shape[1])
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(features)
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(limits=1):
        return tsne.fit_transform(reduced).astype(np.float64)
