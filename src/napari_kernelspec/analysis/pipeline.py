"""`analyze`: every analysis of one layer in one result object.

The napari widget, the HTML report and the CLI all call this one function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError
from . import spectra as _spectra
from .clustering import cosine_similarity, labels_to_clusters, linkage_clusters, seed_clusters
from .descriptors import DESCRIPTOR_NAMES, descriptors
from .redundancy import Pair, redundant_pairs, signed_cosine
from .views import kernel_view

__all__ = ["DEFAULT_THRESHOLD", "AnalysisResult", "analyze", "check_parameters"]

DEFAULT_THRESHOLD = 0.93
DEFAULT_MIN_SAMPLES = 2
DEFAULT_N_FFT = 64


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    """Everything `analyze` found about one layer.

    Attributes
    ----------
    bank : KernelBank
        The analysed filters and their provenance.
    method : {"response", "seed"}
        How spectra and the tuning similarity were computed.
    threshold : float
        Similarity threshold of clusters, duplicates and sign pairs.
    min_samples : int
        Smallest cluster size.
    spectra : (N, S, S) ndarray
        Display spectra of `method`, DC in the centre (S = n_fft or 32 for ``"seed"``).
    frequencies : (S,) ndarray or None
        Cycles/pixel along each spectrum axis (response); None for ``"seed"``, whose bins
        have no physical frequency.
    similarity : (N, N) ndarray
        Tuning similarity the clusters were built from.
    labels : (N,) ndarray of int
        Cluster of each filter, -1 = unclustered.
    signed_cosine : (N, N) ndarray
        Signed cosine of the raw weights (redundancy).
    duplicates, sign_pairs : list of (i, j, cos)
        Redundant pairs, ``i < j``.
    power : (N, n_fft, n_fft) ndarray
        Frequency-response power (uncentred) behind the descriptors, for every method.
    descriptors : dict of str to (N,) ndarray
        Per-filter descriptors, keys `descriptors.DESCRIPTOR_NAMES`.
    """

    bank: KernelBank
    method: str
    threshold: float
    min_samples: int
    spectra: np.ndarray
    frequencies: np.ndarray | None
    similarity: np.ndarray
    labels: np.ndarray
    signed_cosine: np.ndarray
    duplicates: list[Pair]
    sign_pairs: list[Pair]
    power: np.ndarray
    descriptors: dict[str, np.ndarray] = field(repr=False)

    @property
    def n_filters(self) -> int:
        return self.bank.n_filters

    @property
    def clusters(self) -> list[list[int]]:
        """Member filter indices of each cluster (cluster k at position k)."""
        return labels_to_clusters(self.labels)

    @property
    def n_clusters(self) -> int:
        return len(self.clusters)

    @property
    def clustered_fraction(self) -> float:
        """Share of filters that belong to some cluster."""
        return float(np.mean(self.labels >= 0))

    def view(self, name: str = "raw") -> np.ndarray:
        """Kernel view `name` (see `views.VIEWS`) as (N, H, W, 3) float32 RGB in [0, 1]."""
        return kernel_view(self.bank.weights, name)

    def spectrum_images(self) -> np.ndarray:
        """Display spectra scaled to [0, 1] per filter (the seed's per-filter min-max).

        Returns
        -------
        (N, S, S) ndarray of float32
        """
        s = self.spectra
        lo = s.min(axis=(1, 2), keepdims=True)
        span = s.max(axis=(1, 2), keepdims=True) - lo
        out = np.divide(s - lo, span, out=np.zeros_like(s), where=span > 0)
        return out.astype(np.float32)

    def cluster_order(self) -> np.ndarray:
        """Filter indices grouped by cluster (cluster 0 first), unclustered last.

        Returns
        -------
        (N,) ndarray of int
        """
        key = np.where(self.labels >= 0, self.labels, np.iinfo(np.int64).max)
        return np.lexsort((np.arange(self.n_filters), key))

    def radial_profile(self, n_bins: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Mean share of power against radial frequency; see `spectra.radial_profile`."""
        return _spectra.radial_profile(self.power, n_bins)

    def filter_rows(self) -> list[dict[str, Any]]:
        """One JSON-safe dict per filter: index, cluster and every descriptor."""
        columns = {name: self.descriptors[name].tolist() for name in DESCRIPTOR_NAMES}
        return [
            {"index": i, "cluster": int(lab), **{k: v[i] for k, v in columns.items()}}
            for i, lab in enumerate(self.labels.tolist())
        ]

    def to_dict(self) -> dict[str, Any]:
        """The whole result as JSON-safe Python objects (large matrices left out)."""
        bank = self.bank.to_dict()
        return {
            **bank,
            "method": self.method,
            "threshold": self.threshold,
            "min_samples": self.min_samples,
            "n_filters": self.n_filters,
            "n_clusters": self.n_clusters,
            "clustered_fraction": self.clustered_fraction,
            "labels": self.labels.tolist(),
            "clusters": self.clusters,
            "duplicates": [list(p) for p in self.duplicates],
            "sign_pairs": [list(p) for p in self.sign_pairs],
            "filters": self.filter_rows(),
        }


def check_parameters(method: str, threshold: float, min_samples: int) -> None:
    """Raise `KernelSpecError` for a method, threshold or min_samples a user got wrong."""
    if method not in _spectra.METHODS:
        raise KernelSpecError(
            f"unknown method {method!r}; use one of: {', '.join(_spectra.METHODS)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
        raise KernelSpecError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if not (0.0 < float(threshold) <= 1.0):
        raise KernelSpecError(
            f"threshold {threshold} is outside (0, 1]; use a cosine similarity such as 0.93"
        )
    if isinstance(min_samples, bool) or not isinstance(min_samples, int | np.integer):
        raise KernelSpecError(f"min_samples must be a whole number >= 1, got {min_samples!r}")
    if min_samples < 1:
        raise KernelSpecError(f"min_samples is {min_samples}; it must be at least 1")


def analyze(
    bank: KernelBank,
    method: str = "response",
    threshold: float = DEFAULT_THRESHOLD,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    *,
    n_fft: int = DEFAULT_N_FFT,
) -> AnalysisResult:
    """Spectra, clusters, redundancy and descriptors of one layer.

    Parameters
    ----------
    bank : KernelBank
        The layer, e.g. from `load_kernels`.
    method : {"response", "seed"}
        ``"response"`` (default): zero-padded frequency response of all channels on a
        cycles/pixel axis; tuning similarity = cosine of the DC-free amplitude spectra;
        complete-linkage clusters (every pair inside >= `threshold`).
        ``"seed"``: the seed tool's spectra (channel 0, resized, log) and DBSCAN clusters,
        reproduced exactly.
    threshold : float
        Similarity threshold in (0, 1] for clusters, duplicates and sign pairs.
    min_samples : int
        Smallest cluster (DBSCAN's ``min_samples`` for ``"seed"``).
    n_fft : int
        DFT size of the frequency response (at least the kernel size).

    Returns
    -------
    AnalysisResult

    Raises
    ------
    KernelSpecError
        For an unknown method, a threshold outside (0, 1] or min_samples < 1.
    """
    if not isinstance(bank, KernelBank):
        raise TypeError(f"analyze needs a KernelBank, got {type(bank).__name__}")
    check_parameters(method, threshold, min_samples)
    threshold = float(threshold)
    min_samples = int(min_samples)
    weights = bank.weights
    n_fft = max(int(n_fft), *bank.kernel_size)

    power, structure = _spectra.response_powers(weights, n_fft)
    if method == "seed":
        shown = _spectra.seed_spectra(weights)
        similarity = cosine_similarity(shown.reshape(len(shown), -1))
        labels = seed_clusters(similarity, threshold, min_samples)
        frequencies = None
    else:
        shown = _spectra.response_spectra(power)
        similarity = cosine_similarity(_spectra.tuning_vectors(structure))
        labels = linkage_clusters(similarity, threshold, min_samples)
        frequencies = _spectra.centred_frequencies(n_fft)

    cosine = signed_cosine(weights)
    duplicates, sign_pairs = redundant_pairs(cosine, threshold)
    return AnalysisResult(
        bank=bank,
        method=method,
        threshold=threshold,
        min_samples=min_samples,
        spectra=shown,
        frequencies=frequencies,
        similarity=similarity,
        labels=labels,
        signed_cosine=cosine,
        duplicates=duplicates,
        sign_pairs=sign_pairs,
        power=power,
        descriptors=descriptors(weights, power, bank.stride, ac_power=structure),
    )


#: Fields of `AnalysisResult` that `rethreshold` knows how to carry over or recompute.
_RETHRESHOLD_FIELDS = frozenset(
    {
        "bank",
        "method",
        "threshold",
        "min_samples",
        "spectra",
        "frequencies",
        "similarity",
        "labels",
        "signed_cosine",
        "duplicates",
        "sign_pairs",
        "power",
        "descriptors",
    }
)


def rethreshold(result: AnalysisResult, threshold: float) -> AnalysisResult | None:
    """`result` at another threshold, from its similarity matrices (no spectra recomputed).

    The same as ``analyze(result.bank, result.method, threshold, result.min_samples)`` (a test
    checks it), in milliseconds instead of the whole analysis: the napari slider uses it.

    Returns
    -------
    AnalysisResult or None
        None when `result` has fields this function does not know to depend on the threshold
        or not (a newer `AnalysisResult`): then call `analyze`.

    Raises
    ------
    KernelSpecError
        For a threshold outside (0, 1].
    """
    from dataclasses import fields, replace

    if {f.name for f in fields(result)} - _RETHRESHOLD_FIELDS:
        return None
    check_parameters(result.method, threshold, result.min_samples)
    threshold = float(threshold)
    cluster = seed_clusters if result.method == "seed" else linkage_clusters
    labels = cluster(result.similarity, threshold, result.min_samples)
    duplicates, sign_pairs = redundant_pairs(result.signed_cosine, threshold)
    return replace(
        result, threshold=threshold, labels=labels, duplicates=duplicates, sign_pairs=sign_pairs
    )
