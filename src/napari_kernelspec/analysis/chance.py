"""Chance levels: what structure-free filters of the same layer would score.

A similarity or a clustered share means little on its own: the amplitude spectra of random
filters are alike too. The reference here is a set of *surrogates* of the layer: each filter
with its pixels shuffled within each channel (a fixed seed), which keeps every filter's
weights, channel means and energies but destroys its spatial structure. From them:

``chance_similarity``
    The tuning similarity that two structure-free filters of this layer exceed with
    probability `CHANCE_P` (1 %): the 99th percentile of surrogate pairs.
``clustered_fraction(t)``
    The share of filters the surrogates have clustered at threshold t: the expected share
    of the layer clustered by chance.
``auto_threshold(alpha)``
    The lowest threshold at which surrogates have on average at most `alpha` of their
    filters clustered, *and* at most `TAIL_PROB` of surrogate layers more than
    ``TAIL_FACTOR * alpha`` (a few chance pairs in a small layer are already a large share).

Each surrogate layer has as many filters as the real one (more filters give more chance
partners), and enough surrogate layers are drawn for `TARGET_SURROGATE_FILTERS` surrogate
filters in all. The dendrogram (or DBSCAN core levels) of each surrogate layer is read once
into the similarity at which each filter becomes clustered (`clustering.linkage_reach`), so
every threshold's chance level is one comparison. Estimates are memoised per layer (a digest
of the weights and the parameters): moving a threshold slider re-uses them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass

import numpy as np

from .clustering import centred_rows, dbscan_reach, linkage_reach, unit_rows
from .spectra import METHODS, resolved_amplitude, seed_spectra

__all__ = [
    "ALPHA",
    "CHANCE_P",
    "ChanceModel",
    "estimate_chance",
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
    """

    method: str
    min_samples: int
    reach: np.ndarray
    chance_similarity: float
    p: float = CHANCE_P

    @property
    def n_banks(self) -> int:
        return int(self.reach.shape[0])

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


def similarity_vectors(weights: np.ndarray, method: str) -> np.ndarray:
    """Unit rows whose dot products are the tuning similarity of `method`.

    Parameters
    ----------
    weights : (..., N, C, H, W) array_like
    method : {"response", "seed"}
        ``"response"``: mean-removed `spectra.resolved_amplitude` (dot = Pearson
        correlation); ``"seed"``: the seed spectra (dot = cosine).

    Returns
    -------
    (..., N, D) ndarray of float64
    """
    weights = np.asarray(weights, dtype=np.float64)
    if method == "seed":
        lead = weights.shape[:-3]
        flat = seed_spectra(weights.reshape(-1, *weights.shape[-3:]))
        return unit_rows(flat.reshape(*lead, -1))
    if method == "response":
        return unit_rows(centred_rows(resolved_amplitude(weights)))
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
            )
        ).encode()
    )
    return h.hexdigest()


def n_surrogate_banks(n_filters: int) -> int:
    """Surrogate layers drawn for a layer of `n_filters` filters."""
    return int(np.clip(-(-TARGET_SURROGATE_FILTERS // max(n_filters, 1)), 1, MAX_SURROGATE_BANKS))


def estimate_chance(
    weights: np.ndarray, method: str = "response", min_samples: int = 2, p: float = CHANCE_P
) -> ChanceModel:
    """Chance levels of a layer from shuffled surrogates (memoised per layer and parameters).

    Parameters
    ----------
    weights : (N, C, H, W) array_like
        The layer's filters.
    method : {"response", "seed"}
        Similarity and clustering rule to score the surrogates with (complete linkage for
        ``"response"``, the seed's DBSCAN for ``"seed"``).
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
    model = _estimate(weights, method, int(min_samples), float(p))
    with _memo_lock:
        _memo[key] = model
        if isinstance(_memo, OrderedDict):
            held = sum(m.reach.nbytes for m in _memo.values())
            while len(_memo) > 1 and held > _MEMO_BYTES:
                held -= _memo.popitem(last=False)[1].reach.nbytes
    return model


def _estimate(weights: np.ndarray, method: str, min_samples: int, p: float) -> ChanceModel:
    n = len(weights)
    n_banks = n_surrogate_banks(n)
    vectors = similarity_vectors(shuffled_surrogates(weights, n_banks), method)
    reach = np.empty((n_banks, n))
    n_pairs = n * (n - 1) // 2
    keep = min(n_pairs, max(1, MAX_CHANCE_PAIRS // n_banks))
    rng = np.random.default_rng(SURROGATE_SEED + 1)
    if keep == n_pairs:
        rows, cols = np.triu_indices(n, 1)
    else:  # a random subset of pairs, drawn without building all N^2 / 2 of them
        rows = rng.integers(0, n, keep)
        cols = (rows + rng.integers(1, n, keep)) % n
    pairs = []
    group = max(1, _BLOCK_ENTRIES // (n * n))
    diag = np.arange(n)
    for start in range(0, n_banks, group):
        v = vectors[start : start + group]
        # einsum's plain loop, not BLAS, for small layers: on this project's busy 2-core VM
        # the batched (32, 64, 120) product took 705 ms through multithreaded OpenBLAS and
        # 20 ms here. Large layers (one bank at a time) need BLAS.
        sim = np.einsum("bnd,bmd->bnm", v, v) if n <= 256 else v @ np.swapaxes(v, -1, -2)
        np.clip(sim, -1.0, 1.0, out=sim)
        sim[:, diag, diag] = 1.0
        if method == "seed":
            reach[start : start + group] = dbscan_reach(sim, min_samples)
        else:
            for k, one in enumerate(sim):
                # The product of a matrix with its transpose can differ from symmetric by
                # rounding; linkage reads one triangle, so that is enough.
                reach[start + k] = linkage_reach(one, min_samples)
        if n_pairs:
            pairs.append(sim[:, rows, cols].ravel())
        del sim
    chance = float(np.quantile(np.concatenate(pairs), 1.0 - p)) if pairs else float("nan")
    reach.setflags(write=False)
    return ChanceModel(method, min_samples, reach, chance, p)
