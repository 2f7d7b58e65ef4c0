"""Group filters whose spectra are similar.

``seed_clusters``
    The seed tool's rule: DBSCAN over the cosine distance, ``eps = 1 - threshold``. With
    ``min_samples=2`` this is single linkage, so clusters can chain: members at the two ends
    of a chain may be very different.
``linkage_clusters``
    Complete linkage cut at distance ``1 - threshold``: **every pair** inside a cluster has
    similarity >= threshold.

Both return labels ``0..K-1`` numbered by each cluster's smallest filter index, and -1 for
unclustered filters; "every filter unclustered" is a valid answer.
"""

from __future__ import annotations

import numpy as np

_PRODUCT_ROWS = 2048

__all__ = [
    "centred_rows",
    "cosine_similarity",
    "dbscan_precomputed",
    "dbscan_reach",
    "greedy_threshold_clusters",
    "labels_to_clusters",
    "linkage_clusters",
    "linkage_reach",
    "pearson_similarity",
    "seed_clusters",
    "unit_rows",
]


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows.

    Parameters
    ----------
    vectors : (N, D) array_like
        An all-zero row (say, a seed spectrum of a filter whose channel 0 is zero) is
        similar to nothing: 0 to every other row, as in scikit-learn.

    Returns
    -------
    (N, N) ndarray of float64
        Symmetric, in [-1, 1], exactly 1 on the diagonal.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, D), got {vectors.shape}")
    unit = unit_rows(vectors)
    n = len(unit)
    sim = np.empty((n, n))
    # Row blocks: one (N, D) x (D, N) product of 20,000 filters crashed multithreaded
    # OpenBLAS (issue 8); blocks of 2,048 rows keep each call small and cost nothing.
    for start in range(0, n, _PRODUCT_ROWS):
        rows = slice(start, start + _PRODUCT_ROWS)
        np.matmul(unit[rows], unit.T, out=sim[rows])
    np.clip(sim, -1.0, 1.0, out=sim)
    _mirror_upper(sim)
    np.fill_diagonal(sim, 1.0)
    return sim


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length along the last axis; all-zero rows stay zero.

    Parameters
    ----------
    vectors : (..., D) ndarray

    Returns
    -------
    (..., D) ndarray of float64
    """
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def pearson_similarity(vectors: np.ndarray) -> np.ndarray:
    """Pearson correlation of every pair of rows: the cosine of the mean-removed rows.

    Parameters
    ----------
    vectors : (N, D) array_like
        A constant row (nothing varies, e.g. D = 0 for 1x1 kernels) correlates with nothing:
        0 to every other row.

    Returns
    -------
    (N, N) ndarray of float64
        Symmetric, in [-1, 1], exactly 1 on the diagonal.
    """
    return cosine_similarity(centred_rows(np.asarray(vectors, dtype=np.float64)))


def centred_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows minus their means along the last axis; a row that is constant up to rounding
    (a flat amplitude spectrum, say a single-pixel filter) becomes exactly zero, so rounding
    noise never correlates.

    Parameters
    ----------
    vectors : (..., D) ndarray

    Returns
    -------
    (..., D) ndarray of float64
    """
    if vectors.shape[-1] == 0:
        return np.asarray(vectors, dtype=np.float64)
    centred = vectors - vectors.mean(axis=-1, keepdims=True)
    spread = np.linalg.norm(centred, axis=-1, keepdims=True)
    scale = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.where(spread > 1e-9 * scale, centred, 0.0)


def _mirror_upper(matrix: np.ndarray, block: int = 512) -> None:
    """Make a square matrix exactly symmetric in place (copy the upper triangle down).

    Works block by block, so no second N x N array is allocated.
    """
    n = len(matrix)
    for start in range(0, n, block):
        stop = min(start + block, n)
        matrix[start:stop, :start] = matrix[:start, start:stop].T
        diag = matrix[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        diag[lower] = diag.T[lower]


def _check(similarity: np.ndarray, threshold: float, min_samples: int) -> np.ndarray:
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be a square (N, N) matrix, got {similarity.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    if not _is_symmetric(similarity):
        raise ValueError("similarity must be a symmetric matrix")
    return similarity


def _is_symmetric(matrix: np.ndarray, block: int = 512) -> bool:
    """Symmetric up to 1e-12 (NaN where the mirror is NaN), checked a block of rows at a time:
    the whole-matrix check made five N x N temporaries, the peak of a large analysis."""
    for start in range(0, len(matrix), block):
        rows = matrix[start : start + block]
        cols = matrix[:, start : start + block].T
        finite = np.isfinite(rows)
        if not np.array_equal(finite, np.isfinite(cols)):
            return False
        if not np.allclose(
            np.where(finite, rows, 0), np.where(finite, cols, 0), rtol=0, atol=1e-12
        ):
            return False
    return True


def _distance(similarity: np.ndarray) -> np.ndarray:
    """``1 - similarity`` made a valid metric input: clipped, symmetric, zero diagonal.

    One new N x N array; everything else happens in place.
    """
    dist = np.subtract(1.0, similarity)
    np.clip(dist, 0.0, 2.0, out=dist)
    _mirror_upper(dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Labels 0..K-1 in order of each cluster's first filter; -1 stays -1."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    next_label = 0
    mapping: dict[int, int] = {}
    for i, lab in enumerate(labels.tolist()):
        if lab < 0:
            continue
        if lab not in mapping:
            mapping[lab] = next_label
            next_label += 1
        out[i] = mapping[lab]
    return out


def greedy_threshold_clusters(
    similarity: np.ndarray, threshold: float, min_samples: int = 2
) -> np.ndarray:
    """The seed's fallback: each unassigned filter, in order, takes every unassigned filter
    at least `threshold` similar to it; groups smaller than `min_samples` stay unclustered.

    Returns
    -------
    (N,) ndarray of int64
    """
    similarity = _check(similarity, threshold, min_samples)
    n = len(similarity)
    labels = np.full(n, -1, dtype=np.int64)
    assigned = np.zeros(n, dtype=bool)
    next_label = 0
    for i in range(n):
        if assigned[i]:
            continue
        members = np.flatnonzero(~assigned & (similarity[i] >= threshold))
        members = np.union1d(members, [i])
        assigned[members] = True
        if len(members) >= min_samples:
            labels[members] = next_label
            next_label += 1
    return labels


def dbscan_precomputed(distance: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN on a precomputed distance matrix, the same labels as scikit-learn's.

    A filter is *core* if at least `min_samples` filters (itself included) lie within `eps`.
    Clusters are the connected groups of core filters; a non-core filter within `eps` of a
    core filter joins the cluster found first (scikit-learn expands clusters in index order),
    any other filter is noise (-1). Written here because scikit-learn's per-call validation
    costs more than the whole analysis of a 64-filter layer.

    Parameters
    ----------
    distance : (N, N) ndarray
        Symmetric, finite distances.
    eps : float
        Neighbourhood radius (``distance <= eps``).
    min_samples : int

    Returns
    -------
    (N,) ndarray of int64
        Labels in scikit-learn's order: cluster 0 holds the lowest-indexed core filter.
    """
    from scipy.sparse.csgraph import connected_components

    near = distance <= eps
    core = near.sum(axis=1) >= min_samples
    labels = np.full(len(distance), -1, dtype=np.int64)
    core_idx = np.flatnonzero(core)
    if core_idx.size == 0:
        return labels
    _, comp = connected_components(near[np.ix_(core_idx, core_idx)], directed=False)
    # Number components in the order their first core filter appears.
    _, first = np.unique(comp, return_index=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(len(first))
    labels[core_idx] = rank[comp]
    border = np.flatnonzero(~core & near[:, core].any(axis=1))
    if border.size:
        core_labels = np.where(near[np.ix_(border, core_idx)], labels[core_idx], len(first))
        labels[border] = core_labels.min(axis=1)
    return labels


def seed_clusters(
    similarity: np.ndarray, threshold: float = 0.93, min_samples: int = 2
) -> np.ndarray:
    """The seed tool's clusters: DBSCAN on cosine distance with ``eps = 1 - threshold``.

    Parameters
    ----------
    similarity : (N, N) array_like
        Cosine similarity of the seed spectra.
    threshold : float
        In (0, 1].
    min_samples : int
        DBSCAN's ``min_samples`` (a point counts itself).

    Returns
    -------
    (N,) ndarray of int64
        -1 for noise, clusters numbered by first member (the seed kept scikit-learn's
        numbering; the partition is the same). Where the seed's DBSCAN raised (threshold 1,
        i.e. ``eps = 0``, or a similarity with NaN), falls back to
        `greedy_threshold_clusters`, as the seed did.
    """
    similarity = _check(similarity, threshold, min_samples)
    if threshold >= 1.0 or not np.isfinite(similarity).all():
        return greedy_threshold_clusters(similarity, threshold, min_samples)
    labels = dbscan_precomputed(_distance(similarity), 1.0 - threshold, min_samples)
    return _renumber(labels)


def linkage_clusters(
    similarity: np.ndarray, threshold: float = 0.93, min_samples: int = 2
) -> np.ndarray:
    """Complete-linkage clusters with a guarantee: every pair inside has similarity >= threshold.

    Parameters
    ----------
    similarity : (N, N) array_like
        Symmetric similarity, 1 on the diagonal.
    threshold : float
        In (0, 1]; the dendrogram is cut at distance ``1 - threshold``.
    min_samples : int
        Clusters with fewer members are reported as unclustered (-1).

    Returns
    -------
    (N,) ndarray of int64
    """
    similarity = _check(similarity, threshold, min_samples)
    labels = _complete_linkage(similarity, threshold)
    sizes = np.bincount(labels)
    labels = np.where(sizes[labels] >= min_samples, labels, -1)
    return _renumber(labels)


def _complete_linkage(similarity: np.ndarray, threshold: float) -> np.ndarray:
    """Flat complete-linkage clusters (every filter labelled, singletons included).

    Complete linkage merges two groups at their largest pairwise distance, so cutting the
    tree at ``1 - threshold`` keeps every pair of a cluster within it. In floating point,
    ``1 - s`` can round to exactly ``1 - threshold`` for an `s` a hair below `threshold`; a
    cluster that holds such a pair is cut again, one step tighter, until the guarantee holds
    on the similarities themselves.
    """
    n = len(similarity)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    cut = 1.0 - threshold
    while True:
        tree = linkage(squareform(_distance(similarity), checks=False), method="complete")
        labels = np.asarray(fcluster(tree, t=cut, criterion="distance"), dtype=np.int64)
        broken = [
            k
            for k in np.unique(labels)
            if similarity[np.ix_(labels == k, labels == k)].min() < threshold
        ]
        if not broken:
            return labels
        cut = np.nextafter(cut, -np.inf)


def labels_to_clusters(labels: np.ndarray) -> list[list[int]]:
    """Member filter indices of each cluster, cluster 0 first; unclustered filters left out."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.max() < 0:
        return []
    return [np.flatnonzero(labels == k).tolist() for k in range(int(labels.max()) + 1)]


def linkage_reach(similarity: np.ndarray, min_samples: int = 2) -> np.ndarray:
    """The highest threshold at which `linkage_clusters` puts each filter in a cluster.

    Filter i is clustered by ``linkage_clusters(similarity, t, min_samples)`` exactly when
    ``t <= reach[i]`` (up to the rounding that function corrects for): the dendrogram is
    built once and read at every threshold, which is what a chance level over all
    thresholds needs.

    Parameters
    ----------
    similarity : (N, N) ndarray
        Symmetric similarity, 1 on the diagonal.
    min_samples : int
        Smallest cluster size.

    Returns
    -------
    (N,) ndarray of float64
        ``1 - height`` of the merge at which the filter's cluster first reaches
        `min_samples` members; ``+inf`` for ``min_samples <= 1`` (every filter is its own
        cluster), ``-inf`` where the layer has fewer than `min_samples` filters.
    """
    n = len(similarity)
    if min_samples <= 1:
        return np.full(n, np.inf)
    reach = np.full(n, -np.inf)
    if n < min_samples:
        return reach
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    tree = linkage(squareform(_distance(similarity), checks=False), method="complete")
    small: dict[int, list[int]] = {i: [i] for i in range(n)}  # clusters below min_samples
    for row, (a, b, height, size) in enumerate(tree.tolist()):
        joined = small.pop(int(a), None), small.pop(int(b), None)
        if size >= min_samples:
            for members in joined:
                if members:
                    reach[members] = 1.0 - height
        else:
            small[n + row] = joined[0] + joined[1]  # type: ignore[operator]
    return reach


def dbscan_reach(similarity: np.ndarray, min_samples: int = 2) -> np.ndarray:
    """The highest threshold at which `seed_clusters` (DBSCAN) clusters each filter.

    At threshold t a filter is *core* when at least ``min_samples - 1`` others have
    similarity >= t, and clustered when it is core or within t of a core filter. So its
    reach is ``max(core_i, max_j min(s_ij, core_j))`` with ``core_i`` the
    ``(min_samples - 1)``-th largest similarity of filter i to the others.

    Parameters
    ----------
    similarity : (..., N, N) ndarray
        Symmetric similarities; leading axes (surrogate banks) are kept.
    min_samples : int

    Returns
    -------
    (..., N) ndarray of float64
        As `linkage_reach`.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    n = similarity.shape[-1]
    if min_samples <= 1:
        return np.full(similarity.shape[:-1], np.inf)
    if n < min_samples:
        return np.full(similarity.shape[:-1], -np.inf)
    others = similarity.copy()
    idx = np.arange(n)
    others[..., idx, idx] = -np.inf
    core = -np.partition(-others, min_samples - 2, axis=-1)[..., min_samples - 2]
    via_core = np.minimum(others, core[..., None, :]).max(axis=-1)
    return np.maximum(core, via_core)


def _joins_two_clusters(
    passing: np.ndarray,
    children: np.ndarray,
    n: int,
    levels: np.ndarray,
    join_level: float = np.inf,
) -> np.ndarray:
    """For each merge: whether it or a merge below it joins two subtrees that each hold a
    passing merge, at a level below `join_level`.

    Parameters
    ----------
    passing, levels : (..., N - 1) ndarray
        Leading axes (null layers) are processed together.
    children : (..., N - 1, 2) ndarray of int
    n : int

    Returns
    -------
    (..., N - 1) ndarray of bool
    """
    passing = np.asarray(passing, dtype=bool)
    lead = passing.shape[:-1]
    passing = passing.reshape(-1, n - 1)
    children = np.asarray(children).reshape(-1, n - 1, 2)
    loose = np.asarray(levels).reshape(-1, n - 1) < join_level
    rows = np.arange(len(passing))
    holds = np.zeros((len(passing), 2 * n - 1), dtype=bool)  # a passing merge at/below
    blocked = np.zeros((len(passing), 2 * n - 1), dtype=bool)
    for j in range(n - 1):
        a, b = children[:, j, 0], children[:, j, 1]
        ha, hb = holds[rows, a], holds[rows, b]
        blocked[:, n + j] = blocked[rows, a] | blocked[rows, b] | (ha & hb & loose[:, j])
        holds[:, n + j] = ha | hb | passing[:, j]
    return blocked[:, n:].reshape(*lead, n - 1)


def dendrogram_nodes(similarity: np.ndarray, children: bool = False) -> tuple[np.ndarray, ...]:
    """The complete-linkage dendrogram as merges: size, level and members of each.

    Parameters
    ----------
    similarity : (N, N) ndarray
        Symmetric similarity, N >= 2.

    Returns
    -------
    sizes : (N - 1,) ndarray of int64
        Members of the cluster each merge makes.
    levels : (N - 1,) ndarray of float64
        Its lowest pairwise similarity (``1 - height`` of complete linkage).
    under : (N, N - 1) ndarray of bool
        ``under[i, j]``: filter i belongs to the cluster of merge j.
    children : (N - 1, 2) ndarray of int64
        Only with ``children=True``: the two nodes each merge joins (``< N``: a filter,
        ``N + j``: merge j).
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    n = len(similarity)
    tree = linkage(squareform(_distance(similarity), checks=False), method="complete")
    members = np.zeros((n, 2 * n - 1), dtype=bool)
    members[np.arange(n), np.arange(n)] = True
    for row, (a, b) in enumerate(tree[:, :2].astype(np.int64).tolist()):
        members[:, n + row] = members[:, a] | members[:, b]
    out = (tree[:, 3].astype(np.int64), 1.0 - tree[:, 2], members[:, n:])
    return (*out, tree[:, :2].astype(np.int64)) if children else out


def size_tested_clusters(
    similarity: np.ndarray,
    level_by_size: np.ndarray,
    min_samples: int = 2,
    join_level: float = np.inf,
) -> np.ndarray:
    """Complete-linkage clusters, each kept only if its level passes its size's test.

    A merge of m filters whose lowest pairwise similarity is s is a cluster when
    ``s >= level_by_size[m]`` (and ``m >= min_samples``); the clusters are the largest such
    merges. The test can only refuse merges: every pair inside a cluster of size m has
    similarity >= ``level_by_size[m]``, so >= ``min(level_by_size[sizes found])``.

    A merge below `join_level` that joins two groups which each contain an accepted merge is
    refused, and so are the merges above it: two tight groups stay two clusters even where
    their union is still more alike than the null's clusters of that size.

    Parameters
    ----------
    similarity : (N, N) ndarray
        Symmetric similarity, 1 on the diagonal.
    level_by_size : (N + 1,) array_like
        Lowest similarity accepted for a cluster of each size (+inf: never).
    min_samples : int
    join_level : float
        See above (the analysis passes the similarity 1 % of null pairs exceed).

    Returns
    -------
    (N,) ndarray of int64
        Labels numbered by first member, -1 unclustered.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    n = len(similarity)
    labels = np.full(n, -1, dtype=np.int64)
    if n < max(2, min_samples):
        return labels
    sizes, levels, under, children = dendrogram_nodes(similarity, children=True)
    level_by_size = np.asarray(level_by_size, dtype=np.float64)
    passing = (sizes >= min_samples) & (levels >= level_by_size[sizes])
    passing &= ~_joins_two_clusters(passing, children, n, levels, join_level)
    # the largest passing merges: visit merges from the top of the tree down
    for j in np.flatnonzero(passing)[::-1]:
        members = under[:, j]
        if (labels[members] < 0).all():
            block = similarity[np.ix_(members, members)]
            if block.min() >= level_by_size[sizes[j]]:  # rounding guard, as linkage_clusters
                labels[members] = j
    return _renumber(labels)
