"""Redundant filters: near-copies and sign-flipped copies of each other.

Spectral similarity ignores sign, shift and phase, so it groups filters by *tuning*; it
cannot say that two filters compute the same thing. The signed cosine of the raw weights
(all ``C*H*W`` numbers) can: ``cos >= t`` is a duplicate (the second filter adds nothing),
``cos <= -t`` a sign pair (one is the negation of the other; after a ReLU they are
complementary, before it they are redundant).
"""

from __future__ import annotations

import numpy as np

from .clustering import cosine_similarity

__all__ = ["Pair", "redundant_pairs", "signed_cosine"]

Pair = tuple[int, int, float]


def signed_cosine(weights: np.ndarray) -> np.ndarray:
    """Signed cosine similarity of the flattened filters.

    Parameters
    ----------
    weights : (N, C, H, W) array_like

    Returns
    -------
    (N, N) ndarray of float64
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4:
        raise ValueError(f"weights must be (N, C, H, W), got {weights.shape}")
    return cosine_similarity(weights.reshape(len(weights), -1))


def redundant_pairs(cosine: np.ndarray, threshold: float = 0.93) -> tuple[list[Pair], list[Pair]]:
    """Duplicate pairs (cos >= threshold) and sign pairs (cos <= -threshold).

    Parameters
    ----------
    cosine : (N, N) array_like
        Output of `signed_cosine`.
    threshold : float
        In (0, 1].

    Returns
    -------
    duplicates, sign_pairs : list of (i, j, cos)
        Pairs with ``i < j``, ordered by ``(i, j)``.
    """
    cosine = np.asarray(cosine, dtype=np.float64)
    if cosine.ndim != 2 or cosine.shape[0] != cosine.shape[1]:
        raise ValueError(f"cosine must be a square (N, N) matrix, got {cosine.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")

    def pick(mask: np.ndarray) -> list[Pair]:
        rows, cols = np.nonzero(np.triu(mask, k=1))  # row-major: ordered by (i, j)
        return [(int(i), int(j), float(cosine[i, j])) for i, j in zip(rows, cols, strict=True)]

    return pick(cosine >= threshold), pick(cosine <= -threshold)
