"""Chance levels: what structure-free filters of the same layer would score.

A similarity or a clustered share means little on its own: the amplitude spectra of random
filters are alike too, and the filters of a trained layer are smooth and colour-correlated
whatever they learned. The reference here is a *null* of the layer: surrogate layers of the
same size drawn with a fixed seed.

``"response"`` (`NULL_MODEL`, "matched"): each surrogate filter is a random Gaussian
combination of the layer's own centred filters plus their mean, ``mu + G (X - mu) / sqrt(N)``
(`matched_surrogates`). It has exactly the layer's mean and sample covariance across
channels and positions (smoothness, spatial envelope, colour correlation) and mixes the
individual tuning of the filters away.
``"seed"`` (`SEED_NULL_MODEL`): each filter's pixels shuffled within each channel (white
noise with the filter's values), the chance level the seed method has always reported.

From the null:

``chance_similarity``
    The tuning similarity that two null filters exceed with probability `CHANCE_P` (1 %).
``clustered_fraction(t)``
    The share of filters the null layers have clustered at threshold t.
``auto_threshold(alpha)``
    The lowest threshold at which null layers have on average at most `alpha` of their
    filters clustered, *and* at most `TAIL_PROB` of null layers more than
    ``TAIL_FACTOR * alpha`` (a few chance pairs in a small layer are already a large share).
``structure_p_value(similarity)``
    The layer-level test (``"response"``): the share of null layers (plus one, over the
    number plus one) whose mean nearest-neighbour similarity is at least the layer's own.

The dendrogram (or DBSCAN core levels) of each null layer is read once into the similarity
at which each filter becomes clustered (`clustering.linkage_reach`), so every threshold's
chance level is one comparison. Estimates are memoised per layer (a digest of the weights and
the parameters): moving a threshold slider re-uses them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import numpy as np

from .clustering import (
    _joins_two_clusters,
    centred_rows,
    dbscan_reach,
    dendrogram_nodes,
    linkage_reach,
    unit_rows,
)
from .spectra import METHODS, seed_spectra, tuning_features

__all__ = [
    "ALPHA",
    "CHANCE_P",
    "ChanceModel",
    "estimate_chance",
    "get_store",
    "matched_surrogates",
    "memo_key",
    "nearest_neighbour_statistic",
    "remember",
    "set_store",
    "shuffled_surrogates",
    "similarity_vectors",
]

#: Default share of filters that structure-free surrogates may have clustered ("auto").
ALPHA = 0.05
#: `chance_similarity` is the similarity surrogate pairs exceed with this probability.
CHANCE_P = 0.01
#: The surrogates' random seed: the same layer always gets the same chance level.
SURROGATE_SEED = 20260909
#: Surrogate filters drawn in all (in layers of the real layer's size).
TARGET_SURROGATE_FILTERS = 2048
MAX_SURROGATE_BANKS = 256
#: Null layers of the ``"response"`` method: 199 give p-values down to 1 / 200 = 0.005.
NULL_BANKS = 199
#: ... fewer for large layers, so that banks x N x N similarities stay within this budget
#: (p-values then resolve to 1 / (banks + 1)); at least `MIN_NULL_BANKS`.
NULL_ENTRIES = 1 << 20
MIN_NULL_BANKS = 3
#: Per-size merge tests never accept a cluster looser than the similarity this share of
#: null pairs exceeds.
FLOOR_P = 0.05
#: The ``"response"`` similarity compares amplitude spectra raised to this power: a mild
#: compression (0.75, chosen on the planted banks) that lets the weaker bins count, so that
#: same-tuning 3x3 filters of different phase stay alike (ARI over 12 banks: mean 0.58 at
#: 1.0, 0.70 at 0.75; 0.5 and 0.6 found more but clustered up to 54 % of the fillers).
TUNING_EXPONENT = 0.75
#: Guard band of the per-size merge tests: an accepted cluster's distance ``1 - level`` is
#: at most ``1 - SIZE_MARGIN`` of the level the calibration chose (usually: just above the
#: tightest cluster of that size in 199 null layers). The null matches the layer's second
#: moments only; a layer that is a mixture of two populations (tuned filters among smooth
#: blobs, say) has a homogeneous sub-population tighter than any of its Gaussian null
#: layers, which passed the bare levels by 0.01-0.04 (up to 29 % of such fillers clustered).
SIZE_MARGIN = 0.15
#: Short names of the nulls (`AnalysisResult.null_model`).
NULL_MODEL = "matched"
SEED_NULL_MODEL = "shuffled"
#: Tail guard of "auto": at most TAIL_PROB of surrogate layers above TAIL_FACTOR * alpha.
TAIL_FACTOR = 2.0
TAIL_PROB = 0.01
#: "auto" never goes below this; it only binds where nothing can cluster (one filter, 1x1).
MIN_AUTO_THRESHOLD = 0.05
#: Surrogate pairs kept for the chance-similarity percentile (a random subset beyond).
MAX_CHANCE_PAIRS = 1_000_000
#: Similarity entries computed at once (banks x N x N), to bound memory.
_BLOCK_ENTRIES = 1 << 22

#: Bytes of chance estimates kept in memory (each is S x N float64, about 16 KiB for 2,048
#: surrogate filters): a training history of hundreds of steps keeps every step's estimate,
#: so a slider move re-cuts every step without re-estimating (100 steps: 6.9 s -> see README).
_MEMO_BYTES = 64 << 20
_memo: MutableMapping[str, ChanceModel] = OrderedDict()
_memo_lock = threading.Lock()  # the napari widget analyses in worker threads


@dataclass(frozen=True, eq=False)
class ChanceModel:
    """Chance levels of one layer under one method, for every threshold.

    Attributes
    ----------
    method : str
        The similarity the surrogates were scored with.
    min_samples : int
        Smallest cluster size used when clustering the surrogates.
    reach : (S, N) ndarray of float64
        For each of S surrogate layers of N filters: the highest threshold at which each
        surrogate filter is clustered (``-inf``: never, ``+inf``: always).
    chance_similarity : float
        Similarity that surrogate pairs exceed with probability `p`; NaN for one filter.
    p : float
    null_model : str
        Short name of the null (`NULL_MODEL` or `SEED_NULL_MODEL`).
    null_statistic : (S,) ndarray of float64 or None
        `nearest_neighbour_statistic` of each null layer (``"response"``), else None.
    """

    method: str
    min_samples: int
    reach: np.ndarray
    chance_similarity: float
    p: float = CHANCE_P
    null_model: str = NULL_MODEL
    null_statistic: np.ndarray | None = None
    size_levels: np.ndarray | None = None
    node_sizes: np.ndarray | None = None
    node_levels: np.ndarray | None = None
    node_under: np.ndarray | None = None
    node_children: np.ndarray | None = None
    floor_similarity: float = float("nan")

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this estimate holds."""
        arrays = (self.reach, self.null_statistic, self.size_levels, self.node_under)
        return sum(int(a.nbytes) for a in arrays if a is not None) + 4 * int(
            0 if self.node_sizes is None else self.node_sizes.nbytes
        )

    @property
    def size_tested(self) -> bool:
        """Whether this null supports the per-size merge tests (``"response"``)."""
        return self.size_levels is not None

    def level_by_size(self, alpha: float = ALPHA) -> np.ndarray:
        """The lowest similarity at which a cluster of each size is accepted ("auto").

        A cluster of m filters is accepted when its lowest pairwise similarity is at least
        the ``1 - q`` quantile, over null layers, of the highest level at which a null layer
        forms a cluster of m or more; q is the largest of a grid at which null layers have on
        average at most `alpha` of their filters clustered by this rule and at most
        `TAIL_PROB` of them more than ``TAIL_FACTOR * alpha``.

        Returns
        -------
        (N + 1,) ndarray of float64
            Index m: the level for size m (+inf below `min_samples`).
        """
        key = round(float(alpha), 12)
        cache = self.__dict__.setdefault("_rules", {})
        if key not in cache:
            cache[key] = self._calibrate(float(alpha))
        return cache[key][0]

    def rule_clustered_fraction(self, alpha: float = ALPHA) -> float:
        """Mean share of null filters that `level_by_size` (at `alpha`) clusters."""
        self.level_by_size(alpha)
        return self.__dict__["_rules"][round(float(alpha), 12)][1]

    def _rule_shares(self, levels: np.ndarray) -> np.ndarray:
        """Share of each null layer's filters clustered by the per-size rule."""
        sizes = self.node_sizes
        passing = (sizes >= self.min_samples) & (self.node_levels >= levels[sizes])  # (S, N-1)
        n = self.reach.shape[1]
        # the same refusals as `size_tested_clusters`, every null layer at once
        passing &= ~_joins_two_clusters(
            passing, self.node_children, n, self.node_levels, self.chance_similarity
        )
        clustered = (self.node_under & passing[:, None, :]).any(axis=-1)
        return clustered.mean(axis=-1)

    def _calibrate(self, alpha: float) -> tuple[np.ndarray, float]:
        n_banks, n = self.reach.shape
        best = self.size_levels  # (S, N + 1)
        ordered = np.sort(best, axis=0)[::-1]  # per size, highest first
        cap = TAIL_FACTOR * alpha
        allowed_tail = int(np.floor(TAIL_PROB * n_banks + 1e-9))
        chosen = np.full(n + 1, np.inf)
        share = 0.0
        # no cluster looser than the pairs that FLOOR_P of null pairs exceed
        floor = self.floor_similarity

        def rule(rank: int) -> tuple[np.ndarray, np.ndarray]:
            levels = np.maximum(np.nextafter(ordered[rank], np.inf), floor)
            levels[: self.min_samples] = np.inf
            return levels, self._rule_shares(levels)

        def allowed(shares: np.ndarray) -> bool:
            return shares.mean() <= alpha + 1e-12 and np.sum(shares > cap + 1e-12) <= allowed_tail

        # q = (rank + 1) / S from strict to lax; the null's clustered share grows with q, so
        # the laxest allowed rank is found by bisection (8 evaluations for 199 null layers)
        lo, hi = -1, n_banks  # allowed(lo) holds (or lo = -1), allowed(hi) fails (or hi = S)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            levels, shares = rule(mid)
            if allowed(shares):
                lo, chosen, share = mid, levels, float(shares.mean())
            else:
                hi = mid
        # the guard band: a cluster's distance (1 - level) at most (1 - SIZE_MARGIN) of the
        # tightest null cluster's of its size (see `SIZE_MARGIN`); only ever stricter
        finite = np.isfinite(chosen)
        chosen[finite] = np.minimum(chosen[finite] + SIZE_MARGIN * (1.0 - chosen[finite]), 1.0)
        if finite.any():
            share = float(self._rule_shares(chosen).mean())
        return chosen, share

    @property
    def n_banks(self) -> int:
        return int(self.reach.shape[0])

    def structure_p_value(self, similarity: np.ndarray) -> float:
        """One-sided p-value of the layer-level test: does the layer have more structure than
        its null?

        ``(1 + #{null layers with statistic >= the layer's}) / (1 + S)`` for
        `nearest_neighbour_statistic`, a Monte Carlo test (NaN without a null statistic or
        with fewer than two filters).
        """
        if self.null_statistic is None or self.reach.shape[1] < 2:
            return float("nan")
        observed = float(nearest_neighbour_statistic(np.asarray(similarity)))
        # a hair of tolerance: a layer equal to its null up to rounding is not "above" it
        exceed = int(np.sum(self.null_statistic >= observed - 1e-12))
        return (1 + exceed) / (1 + self.null_statistic.size)

    def clustered_fraction(self, threshold: float) -> float:
        """Expected share of the layer's filters clustered by chance at `threshold`."""
        return float(np.mean(self.reach >= threshold))

    def auto_threshold(self, alpha: float = ALPHA) -> float:
        """The lowest threshold at which surrogates are clustered at most `alpha` on average
        and at most `TAIL_FACTOR * alpha` in all but `TAIL_PROB` of surrogate layers.

        Returns
        -------
        float
            In ``[MIN_AUTO_THRESHOLD, 1]``.
        """
        n_banks, n = self.reach.shape
        pooled = np.sort(self.reach, axis=None)[::-1]
        allowed = int(np.floor(alpha * pooled.size + 1e-9))
        level = pooled[allowed] if allowed < pooled.size else -np.inf
        cap = int(np.floor(TAIL_FACTOR * alpha * n + 1e-9))
        if cap < n:  # a surrogate layer exceeds the cap when its (cap+1)-th reach is met
            per_bank = np.sort(self.reach, axis=1)[:, ::-1][:, cap]
            per_bank = np.sort(per_bank)[::-1]
            level = max(level, per_bank[int(np.floor(TAIL_PROB * n_banks + 1e-9))])
        threshold = float(np.nextafter(level, np.inf)) if np.isfinite(level) else float(level)
        return float(np.clip(threshold, MIN_AUTO_THRESHOLD, 1.0))


def set_store(store: MutableMapping[str, ChanceModel] | None) -> None:
    """Replace the memo of chance estimates (keyed by `estimate_chance`'s digest).

    The default is an in-process store of the most recent layers, up to `_MEMO_BYTES` of
    estimates (thousands of layers). Pass any mapping (for
    example one that persists next to a kernel cache) to share estimates more widely, or
    None to restore the default.
    """
    global _memo
    _memo = OrderedDict() if store is None else store


def get_store() -> MutableMapping[str, ChanceModel]:
    """The store of chance estimates in use (see `set_store`)."""
    return _memo


def memo_key(
    weights: np.ndarray, method: str = "response", min_samples: int = 2, p: float = CHANCE_P
) -> str:
    """The key `estimate_chance` files the estimate of these arguments under."""
    return _digest(np.asarray(weights), method, int(min_samples), float(p))


def remember(models: Mapping[str, ChanceModel]) -> None:
    """Add estimates keyed by `memo_key` to the store (for example ones read from a file),
    so that `estimate_chance` returns them instead of drawing the null again."""
    with _memo_lock:
        for key, model in models.items():
            _memo[key] = model


def shuffled_surrogates(weights: np.ndarray, n_banks: int, seed: int = SURROGATE_SEED):
    """Structure-free copies of a layer: each filter's pixels shuffled within each channel.

    Parameters
    ----------
    weights : (N, C, H, W) array_like
    n_banks : int
        Number of surrogate layers S.
    seed : int

    Returns
    -------
    (S, N, C, H, W) ndarray of float64
        Every filter keeps its weights (so its channel means and energy) in new places.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4 or 0 in weights.shape:
        raise ValueError(f"weights must be a non-empty (N, C, H, W) array, got {weights.shape}")
    if n_banks < 1:
        raise ValueError(f"n_banks must be >= 1, got {n_banks}")
    n, c, h, w = weights.shape
    tiled = np.broadcast_to(weights.reshape(1, n, c, h * w), (n_banks, n, c, h * w))
    rng = np.random.default_rng(seed)
    return rng.permuted(tiled, axis=-1).reshape(n_banks, n, c, h, w)


def matched_surrogates(weights: np.ndarray, n_banks: int, seed: int = SURROGATE_SEED):
    """Null layers with the layer's mean and sample covariance: ``mu + G (X - mu) / sqrt(N)``.

    Each surrogate filter is the layer's mean filter plus a random Gaussian combination of
    its N centred filters, so across surrogates it has exactly the layer's (biased) sample
    covariance over channels and positions: smoothness, spatial envelope and the correlation
    of the colour channels are kept; what makes each filter individual (its own frequency,
    orientation and colour tuning) is mixed away.

    Parameters
    ----------
    weights : (N, C, H, W) array_like
    n_banks : int
        Number of null layers S, each of N filters.
    seed : int

    Returns
    -------
    (S, N, C, H, W) ndarray of float64
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4 or 0 in weights.shape:
        raise ValueError(f"weights must be a non-empty (N, C, H, W) array, got {weights.shape}")
    if n_banks < 1:
        raise ValueError(f"n_banks must be >= 1, got {n_banks}")
    n = len(weights)
    flat = weights.reshape(n, -1)
    mean = flat.mean(axis=0)
    centred = (flat - mean) / np.sqrt(n)
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((n_banks * n, n))
    out = mix @ centred  # one product, not S batched ones
    out += mean
    return out.reshape(n_banks, *weights.shape)


def nearest_neighbour_statistic(similarity: np.ndarray) -> np.ndarray:
    """Mean over filters of each filter's highest similarity to another filter.

    The layer-level statistic: a layer whose filters come in groups of like tuning has close
    neighbours for many filters, whatever the clustering threshold.

    Parameters
    ----------
    similarity : (..., N, N) ndarray
        N >= 2; leading axes (null layers) kept.

    Returns
    -------
    (...) ndarray of float64
    """
    sim = np.array(similarity, dtype=np.float64)
    n = sim.shape[-1]
    idx = np.arange(n)
    sim[..., idx, idx] = -np.inf
    return sim.max(axis=-1).mean(axis=-1)


def similarity_vectors(weights: np.ndarray, method: str, dtype: type = np.float64) -> np.ndarray:
    """Unit rows whose dot products are the tuning similarity of `method`.

    Parameters
    ----------
    weights : (..., N, C, H, W) array_like
    method : {"response", "seed"}
        ``"response"``: `spectra.tuning_features` (amplitudes to the power
        `TUNING_EXPONENT`) with the layer's mean feature removed
        (over the N axis: the spectrum every filter shares, such as the low-pass shape of
        smooth filters, does not make them alike), then each row's mean (dot = Pearson
        correlation); ``"seed"``: the seed spectra (dot = cosine).
    dtype : {np.float64, np.float32}
        Precision of the ``"response"`` features (float32 for null layers).

    Returns
    -------
    (..., N, D) ndarray
    """
    weights = np.asarray(weights, dtype=np.float64)
    if method == "seed":
        lead = weights.shape[:-3]
        flat = seed_spectra(weights.reshape(-1, *weights.shape[-3:]))
        return unit_rows(flat.reshape(*lead, -1))
    if method == "response":
        features = tuning_features(weights, dtype=dtype, exponent=TUNING_EXPONENT)
        # centred across the layer's filters: the spectrum every filter shares (the low-pass
        # shape of smooth filters) does not make them alike
        features = features - features.mean(axis=-2, keepdims=True)
        return unit_rows(centred_rows(features))
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _digest(weights: np.ndarray, method: str, min_samples: int, p: float) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(np.ascontiguousarray(weights, dtype=np.float32).tobytes())
    h.update(
        repr(
            (
                weights.shape,
                method,
                min_samples,
                p,
                SURROGATE_SEED,
                TARGET_SURROGATE_FILTERS,
                MAX_SURROGATE_BANKS,
                NULL_BANKS,
                NULL_ENTRIES,
                TUNING_EXPONENT,
                SIZE_MARGIN,
            )
        ).encode()
    )
    return h.hexdigest()


def n_surrogate_banks(n_filters: int, method: str = "seed") -> int:
    """Null layers drawn for a layer of `n_filters` filters under `method`."""
    if method == "response":
        budget = NULL_ENTRIES // max(n_filters, 1) ** 2
        return int(np.clip(budget, MIN_NULL_BANKS, NULL_BANKS))
    return int(np.clip(-(-TARGET_SURROGATE_FILTERS // max(n_filters, 1)), 1, MAX_SURROGATE_BANKS))


def estimate_chance(
    weights: np.ndarray, method: str = "response", min_samples: int = 2, p: float = CHANCE_P
) -> ChanceModel:
    """Chance levels of a layer from its null (memoised per layer and parameters).

    Parameters
    ----------
    weights : (N, C, H, W) array_like
        The layer's filters.
    method : {"response", "seed"}
        Similarity, clustering rule and null: complete linkage against `matched_surrogates`
        for ``"response"``, the seed's DBSCAN against `shuffled_surrogates` for ``"seed"``.
    min_samples : int
        Smallest cluster size.
    p : float
        Tail probability of `ChanceModel.chance_similarity`.

    Returns
    -------
    ChanceModel
    """
    weights = np.asarray(weights)
    if weights.ndim != 4 or 0 in weights.shape:
        raise ValueError(f"weights must be a non-empty (N, C, H, W) array, got {weights.shape}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    key = _digest(weights, method, int(min_samples), float(p))
    with _memo_lock:
        found = _memo.get(key)
        if found is not None and isinstance(_memo, OrderedDict):
            _memo.move_to_end(key)
    if found is not None:
        return found
    from threadpoolctl import threadpool_limits

    # One BLAS thread: the many small products of the null ran 2-3 times slower with
    # OpenBLAS's threads on this project's busy 2-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        model = _estimate(weights, method, int(min_samples), float(p))
    with _memo_lock:
        _memo[key] = model
        if isinstance(_memo, OrderedDict):
            held = sum(m.nbytes for m in _memo.values())
            while len(_memo) > 1 and held > _MEMO_BYTES:
                held -= _memo.popitem(last=False)[1].nbytes
    return model


def _estimate(weights: np.ndarray, method: str, min_samples: int, p: float) -> ChanceModel:
    n = len(weights)
    n_banks = n_surrogate_banks(n, method)
    if method == "response":
        null = matched_surrogates(weights, n_banks)
    else:
        null = shuffled_surrogates(weights, n_banks)
    reach = np.empty((n_banks, n))
    statistic = np.empty(n_banks)
    tested = method == "response" and min_samples >= 2 and n >= min_samples
    if tested:
        node_sizes = np.empty((n_banks, n - 1), dtype=np.int64)
        node_levels = np.empty((n_banks, n - 1))
        node_under = np.empty((n_banks, n, n - 1), dtype=bool)
        node_children = np.empty((n_banks, n - 1, 2), dtype=np.int64)
        size_levels = np.empty((n_banks, n + 1))
    n_pairs = n * (n - 1) // 2
    keep = min(n_pairs, max(1, MAX_CHANCE_PAIRS // n_banks))
    rng = np.random.default_rng(SURROGATE_SEED + 1)
    if keep == n_pairs:
        rows, cols = np.triu_indices(n, 1)
    else:  # a random subset of pairs, drawn without building all N^2 / 2 of them
        rows = rng.integers(0, n, keep)
        cols = (rows + rng.integers(1, n, keep)) % n
    pairs = []
    n_features = similarity_vectors(null[:1, :1], method).shape[-1]
    group = max(1, min(_BLOCK_ENTRIES // (n * n), _BLOCK_ENTRIES // (n * max(n_features, 1))))
    diag = np.arange(n)
    for start in range(0, n_banks, group):
        v = similarity_vectors(null[start : start + group], method, np.float32)
        # einsum's plain loop, not BLAS, for small layers: on this project's busy 2-core VM
        # the batched (32, 64, 120) product took 705 ms through multithreaded OpenBLAS and
        # 20 ms here. Large layers (one bank at a time) need BLAS.
        if n_features > 256 or n > 256:
            sim = v @ np.swapaxes(v, -1, -2)
        else:
            sim = np.einsum("bnd,bmd->bnm", v, v)
        sim = np.clip(sim, -1.0, 1.0, dtype=np.float64)
        sim[:, diag, diag] = 1.0
        if method == "seed":
            reach[start : start + group] = dbscan_reach(sim, min_samples)
        elif tested:
            for k, one in enumerate(sim):
                # The product of a matrix with its transpose can differ from symmetric by
                # rounding; linkage reads one triangle, so that is enough.
                b = start + k
                node_sizes[b], node_levels[b], node_under[b], node_children[b] = dendrogram_nodes(
                    one, children=True
                )
                big = node_sizes[b] >= min_samples
                reach[b] = np.where(node_under[b] & big, node_levels[b], -np.inf).max(axis=1)
                size_levels[b] = _levels_by_size(node_sizes[b], node_levels[b], n)
        else:
            for k, one in enumerate(sim):
                reach[start + k] = linkage_reach(one, min_samples)
        if n_pairs:
            pairs.append(sim[:, rows, cols].ravel())
            statistic[start : start + group] = nearest_neighbour_statistic(sim)
        del sim
    if pairs:
        pooled = np.concatenate(pairs)
        chance, floor = (float(v) for v in np.quantile(pooled, [1.0 - p, 1.0 - FLOOR_P]))
    else:
        chance = floor = float("nan")
    reach.setflags(write=False)
    if method != "response" or not n_pairs:
        return ChanceModel(method, min_samples, reach, chance, p, SEED_NULL_MODEL, None)
    statistic.setflags(write=False)
    if not tested:
        return ChanceModel(method, min_samples, reach, chance, p, NULL_MODEL, statistic)
    return ChanceModel(
        method,
        min_samples,
        reach,
        chance,
        p,
        NULL_MODEL,
        statistic,
        size_levels,
        node_sizes,
        node_levels,
        node_under,
        node_children,
        floor,
    )


def _levels_by_size(sizes: np.ndarray, levels: np.ndarray, n: int) -> np.ndarray:
    """(N + 1,) highest level at which a merge of at least m filters forms (-inf: none)."""
    out = np.full(n + 1, -np.inf)
    np.maximum.at(out, sizes, levels)
    return np.maximum.accumulate(out[::-1])[::-1]


#: Null layers whose filters the descriptors are compared with (`descriptor_contrasts`).
CONTRAST_BANKS = 4
#: Descriptors compared with the null (orientation itself is circular: its selectivity is).
CONTRAST_DESCRIPTORS = (
    "peak_frequency",
    "centroid_frequency",
    "bandwidth",
    "orientation_selectivity",
    "dc_ratio",
    "aliasing_fraction",
    "achromatic_fraction",
)


def descriptor_contrasts(
    weights: np.ndarray,
    values: dict[str, np.ndarray],
    n_fft: int,
    stride: tuple[int, int] = (1, 1),
) -> dict[str, dict[str, float]]:
    """How the layer's descriptors differ from those of its matched null.

    Each descriptor of the layer's N filters against those of ``CONTRAST_BANKS * N`` filters
    of `matched_surrogates` (the same seed as the chance level): a two-sided Mann-Whitney U
    test and the rank-biserial effect size ``2 U / (n1 n2) - 1`` (+1: every filter of the
    layer above every null filter, -1: below). The null filters are combinations of the
    layer's own, so they are not independent of it: read the p-value as a screen, not as an
    exact error rate.

    Parameters
    ----------
    weights : (N, C, H, W) array_like
    values : dict of str to (N,) ndarray
        The layer's descriptors (`descriptors.descriptors`, NaN where undefined).
    n_fft : int
        DFT size the descriptors were computed at.
    stride : (int, int)

    Returns
    -------
    dict of str to {"effect": float, "p_value": float}
        Only descriptors defined (finite and not constant) for the layer and the null.
    """
    from scipy.stats import mannwhitneyu

    from .descriptors import descriptors
    from .spectra import response_powers

    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) < 2:
        return {}
    null = matched_surrogates(weights, CONTRAST_BANKS).reshape(-1, *weights.shape[1:])
    power, structure = response_powers(null, n_fft)
    null_values = descriptors(null, power, stride, ac_power=structure)
    out: dict[str, dict[str, float]] = {}
    for name in CONTRAST_DESCRIPTORS:
        a = np.asarray(values.get(name, []), dtype=np.float64)
        b = np.asarray(null_values[name], dtype=np.float64)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size < 2 or b.size < 2 or np.ptp(np.concatenate([a, b])) == 0:
            continue
        test = mannwhitneyu(a, b, alternative="two-sided")
        effect = 2.0 * float(test.statistic) / (a.size * b.size) - 1.0
        out[name] = {"effect": effect, "p_value": float(test.pvalue)}
    return out
