"""`analyze`: every analysis of one layer in one result object.

The napari widget, the HTML report and the CLI all call this one function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..base.bank import KernelBank
from ..base.errors import KernelSpecError
from . import spectra as _spectra
from .chance import (
    ALPHA,
    MIN_AUTO_THRESHOLD,
    NULL_MODEL,
    descriptor_contrasts,
    estimate_chance,
    similarity_vectors,
)
from .clustering import (
    cosine_similarity,
    labels_to_clusters,
    linkage_clusters,
    seed_clusters,
    size_tested_clusters,
)
from .descriptors import DESCRIPTOR_NAMES, descriptors, undefined_descriptors
from .redundancy import Pair, redundant_pairs, signed_cosine
from .views import kernel_view

__all__ = [
    "ALPHA",
    "DEFAULT_THRESHOLD",
    "DEFAULT_THRESHOLDS",
    "MAX_FILTERS",
    "AnalysisResult",
    "analyze",
    "check_parameters",
    "resolve_threshold_rule",
]

#: The seed's threshold: the default of the ``"seed"`` method, and of duplicates and sign
#: pairs whenever the cluster threshold is ``"auto"``.
DEFAULT_THRESHOLD = 0.93
#: Each method's default threshold (`analyze` with ``threshold=None``).
DEFAULT_THRESHOLDS: dict[str, float | str] = {"response": "auto", "seed": DEFAULT_THRESHOLD}
DEFAULT_MIN_SAMPLES = 2
DEFAULT_N_FFT = 64
#: Largest layer `analyze` accepts. It keeps two N x N float64 matrices (tuning similarity
#: and signed cosine) and builds a third for clustering (1.5 GiB together at 8,192 filters),
#: besides about 225 KiB of spectra per filter: a peak of 3.4 GiB at 8,192 filters of 7x7x3
#: (tracemalloc; benchmarks/run_benchmarks.py, section "scale").
MAX_FILTERS = 8192


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
        Similarity threshold of the clusters actually used (the auto value when
        `threshold_rule` is ``"auto"``).
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
        Per-filter descriptors, keys `descriptors.DESCRIPTOR_NAMES`; NaN where the kernel
        size or channel count cannot define one (see `notes`).
    threshold_rule : {"auto", "fixed"}
        ``"auto"``: for ``"response"``, complete-linkage clusters each tested against the
        null for its size (`chance.ChanceModel.level_by_size`; null layers have at most
        `alpha` of their filters clustered), and `threshold` is the lowest level a found
        cluster had to pass (every pair inside is at least that similar); for ``"seed"``,
        the lowest threshold at which shuffled surrogates have at most `alpha` clustered.
        ``"fixed"``: the number given, plain complete linkage (DBSCAN for ``"seed"``).
    alpha : float
        Share of chance-clustered filters the auto rule allows.
    chance_similarity : float
        Tuning similarity that structure-free surrogates of this layer exceed with
        probability 1 % (`chance.CHANCE_P`); NaN for a one-filter layer.
    chance_clustered_fraction : float
        Expected share of filters clustered by chance at `threshold`.
    redundancy_threshold : float
        Threshold of duplicates and sign pairs: `threshold` when fixed, `DEFAULT_THRESHOLD`
        when auto (signed cosine of raw weights has its own scale).
    notes : tuple of str
        One line per thing the result cannot say for this layer (undefined descriptors).
    structure_p_value : float
        Layer-level test against the null: the Monte Carlo p-value of the layer's mean
        nearest-neighbour tuning similarity among `chance.NULL_BANKS` null layers
        (``"response"``; resolution ``1 / (banks + 1)``); NaN for ``"seed"`` and for
        one-filter layers.
    null_model : str
        Short name of the null the ``chance_*`` fields and the p-value refer to:
        ``"matched"`` (`chance.matched_surrogates`) or ``"shuffled"`` (pixels shuffled
        within each channel, ``"seed"``).
    null_contrasts : dict of str to {"effect", "p_value"}
        Per descriptor: rank-biserial effect size and Mann-Whitney p-value of the layer
        against the null's filters (`chance.descriptor_contrasts`); empty for ``"seed"``.
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
    threshold_rule: str = "fixed"
    alpha: float = ALPHA
    chance_similarity: float = math.nan
    chance_clustered_fraction: float = math.nan
    redundancy_threshold: float = DEFAULT_THRESHOLD
    notes: tuple[str, ...] = ()
    structure_p_value: float = math.nan
    null_model: str = ""
    null_contrasts: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    @property
    def n_filters(self) -> int:
        return self.bank.n_filters

    @property
    def nbytes(self) -> int:
        """Bytes held by the result's own arrays (spectra, power, similarity matrices,
        descriptors, ...; the bank's weights not counted)."""
        from dataclasses import fields

        total = 0
        for f in fields(self):
            value = getattr(self, f.name)
            values = value.values() if isinstance(value, dict) else (value,)
            total += sum(int(v.nbytes) for v in values if isinstance(v, np.ndarray))
        return total

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
        """One JSON-safe dict per filter: index, cluster and every descriptor (None where
        undefined)."""
        columns = {
            name: [_json_float(v) for v in self.descriptors[name].tolist()]
            for name in DESCRIPTOR_NAMES
        }
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
            "threshold_rule": self.threshold_rule,
            "alpha": self.alpha,
            "min_samples": self.min_samples,
            "n_filters": self.n_filters,
            "n_clusters": self.n_clusters,
            "clustered_fraction": self.clustered_fraction,
            "chance_similarity": _json_float(self.chance_similarity),
            "chance_clustered_fraction": _json_float(self.chance_clustered_fraction),
            "redundancy_threshold": self.redundancy_threshold,
            "structure_p_value": _json_float(self.structure_p_value),
            "null_model": self.null_model,
            "null_contrasts": {
                name: {k: _json_float(v) for k, v in test.items()}
                for name, test in self.null_contrasts.items()
            },
            "notes": list(self.notes),
            "labels": self.labels.tolist(),
            "clusters": self.clusters,
            "duplicates": [list(p) for p in self.duplicates],
            "sign_pairs": [list(p) for p in self.sign_pairs],
            "filters": self.filter_rows(),
        }


def _json_float(value: float) -> float | None:
    """A float for JSON: NaN (undefined) becomes None (null)."""
    return None if math.isnan(value) else float(value)


def resolve_threshold_rule(
    method: str, threshold: float | str | None
) -> tuple[Literal["auto", "fixed"], float | None]:
    """``("auto", None)`` or ``("fixed", value)`` for a method and a threshold argument.

    ``None`` means the method's default (`DEFAULT_THRESHOLDS`).
    """
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS.get(method, DEFAULT_THRESHOLD)
    if isinstance(threshold, str):
        if threshold.strip().lower() != "auto":
            raise KernelSpecError(
                f"threshold must be a number in (0, 1] or 'auto', got {threshold!r}"
            )
        return "auto", None
    return "fixed", float(threshold)


def check_parameters(
    method: str,
    threshold: float | str | None,
    min_samples: int,
    alpha: float = ALPHA,
) -> None:
    """Raise `KernelSpecError` for a method, threshold, min_samples or alpha a user got wrong."""
    if method not in _spectra.METHODS:
        raise KernelSpecError(
            f"unknown method {method!r}; use one of: {', '.join(_spectra.METHODS)}"
        )
    if threshold is not None and not isinstance(threshold, str):
        if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
            raise KernelSpecError(
                f"threshold must be a number in (0, 1] or 'auto', got {threshold!r}"
            )
        if not (0.0 < float(threshold) <= 1.0):
            raise KernelSpecError(
                f"threshold {threshold} is outside (0, 1]; use a similarity such as 0.93, "
                "or 'auto'"
            )
    resolve_threshold_rule(method, threshold)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int | np.integer):
        raise KernelSpecError(f"min_samples must be a whole number >= 1, got {min_samples!r}")
    if min_samples < 1:
        raise KernelSpecError(f"min_samples is {min_samples}; it must be at least 1")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating):
        raise KernelSpecError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if not (0.0 < float(alpha) < 1.0):
        raise KernelSpecError(
            f"alpha {alpha} is outside (0, 1); it is the share of filters chance may "
            "cluster, such as 0.05"
        )


def analyze(
    bank: KernelBank,
    method: str = "response",
    threshold: float | str | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    *,
    n_fft: int = DEFAULT_N_FFT,
    alpha: float = ALPHA,
) -> AnalysisResult:
    """Spectra, clusters, redundancy, descriptors and chance levels of one layer.

    Parameters
    ----------
    bank : KernelBank
        The layer, e.g. from `load_kernels`.
    method : {"response", "seed"}
        ``"response"`` (default): zero-padded frequency response of all channels on a
        cycles/pixel axis; tuning similarity = Pearson correlation of the amplitude spectra
        on colour axes (`spectra.tuning_features`, the layer's mean removed;
        `chance.similarity_vectors`); complete-linkage clusters (every pair inside >=
        `threshold`), against the matched null (`chance.matched_surrogates`).
        ``"seed"``: the seed tool's spectra (channel 0, resized, log) and DBSCAN clusters,
        reproduced exactly.
    threshold : float in (0, 1], "auto" or None
        Similarity threshold of clusters. ``"auto"``: merges tested against the layer's
        null for their size, so that null layers have at most `alpha` of their filters
        clustered (``"response"``), or the lowest threshold at which shuffled surrogates
        have at most `alpha` clustered (``"seed"``; see `chance`). None: the method's
        default, ``"auto"`` for ``"response"`` and 0.93 for ``"seed"`` (which then
        reproduces the seed tool). A fixed number also sets duplicates and sign pairs;
        with ``"auto"`` they use `DEFAULT_THRESHOLD`.
    min_samples : int
        Smallest cluster (DBSCAN's ``min_samples`` for ``"seed"``).
    n_fft : int
        DFT size of the displayed frequency response and descriptors (at least the kernel
        size).
    alpha : float in (0, 1)
        Share of filters chance may cluster under ``threshold="auto"`` (default 0.05).

    Returns
    -------
    AnalysisResult

    Raises
    ------
    KernelSpecError
        For an unknown method, a threshold outside (0, 1] (or not "auto"), min_samples < 1,
        alpha outside (0, 1), or a layer of more than `MAX_FILTERS` filters.
    """
    if not isinstance(bank, KernelBank):
        raise TypeError(f"analyze needs a KernelBank, got {type(bank).__name__}")
    check_parameters(method, threshold, min_samples, alpha)
    rule, fixed = resolve_threshold_rule(method, threshold)
    min_samples = int(min_samples)
    alpha = float(alpha)
    if bank.n_filters > MAX_FILTERS:
        raise KernelSpecError(
            f"{bank.display_name} {bank.layer} has {bank.n_filters} filters; analysis keeps "
            f"N x N similarity matrices and supports at most {MAX_FILTERS}: pick a layer with "
            "fewer filters or analyse a slice of its weights"
        )
    weights = bank.weights
    n_fft = max(int(n_fft), *bank.kernel_size)

    power, structure = _spectra.response_powers(weights, n_fft)
    if method == "seed":
        shown = _spectra.seed_spectra(weights)
        similarity = cosine_similarity(shown.reshape(len(shown), -1))
        frequencies = None
    else:
        shown = _spectra.response_spectra(power)
        similarity = cosine_similarity(similarity_vectors(weights, "response"))
        frequencies = _spectra.centred_frequencies(n_fft)
    chance = estimate_chance(weights, method, min_samples)
    chance_fraction = None
    if fixed is None and chance.size_tested and min_samples >= 2:
        levels = chance.level_by_size(alpha)
        labels = size_tested_clusters(similarity, levels, min_samples, chance.chance_similarity)
        # the reported threshold: the loosest level a found cluster passed (every pair inside
        # every cluster is at least that similar); with none, the level of the smallest size
        sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.array([])
        used = levels[sizes[sizes > 0]] if sizes.size else levels[min_samples : min_samples + 1]
        finite = used[np.isfinite(used)]
        threshold = float(np.clip(finite.min(), MIN_AUTO_THRESHOLD, 1.0)) if finite.size else 1.0
        chance_fraction = chance.rule_clustered_fraction(alpha)
    else:
        threshold = chance.auto_threshold(alpha) if fixed is None else fixed
        if method == "seed":
            labels = seed_clusters(similarity, threshold, min_samples)
        else:
            labels = linkage_clusters(similarity, threshold, min_samples)
    if chance_fraction is None:
        chance_fraction = chance.clustered_fraction(threshold)

    redundancy_threshold = DEFAULT_THRESHOLD if fixed is None else fixed
    cosine = signed_cosine(weights)
    duplicates, sign_pairs = redundant_pairs(cosine, redundancy_threshold)
    values, notes = undefined_descriptors(
        descriptors(weights, power, bank.stride, ac_power=structure), weights.shape
    )
    contrasts = {}
    if chance.null_model == NULL_MODEL:
        # memoised with the null (same weights): a slider move or a re-analysis re-uses it
        memo = chance.__dict__.setdefault("_contrasts", {})
        key = (n_fft, tuple(bank.stride))
        if key not in memo:
            memo[key] = descriptor_contrasts(weights, values, n_fft, bank.stride)
        contrasts = memo[key]
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
        descriptors=values,
        threshold_rule=rule,
        alpha=alpha,
        chance_similarity=chance.chance_similarity,
        chance_clustered_fraction=chance_fraction,
        redundancy_threshold=redundancy_threshold,
        notes=notes,
        structure_p_value=chance.structure_p_value(similarity),
        null_model=chance.null_model,
        null_contrasts=contrasts,
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
        # the chance level: threshold_rule and redundancy_threshold follow the new (fixed)
        # threshold, chance_clustered_fraction is read off the memoised estimate
        "threshold_rule",
        "alpha",
        "chance_similarity",
        "chance_clustered_fraction",
        "redundancy_threshold",
        "notes",
        # the null: the layer-level test and the descriptors against the null do not
        # depend on the threshold
        "structure_p_value",
        "null_model",
        "null_contrasts",
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
    chance = estimate_chance(result.bank.weights, result.method, result.min_samples)
    return replace(
        result,
        threshold=threshold,
        threshold_rule="fixed",
        redundancy_threshold=threshold,
        chance_clustered_fraction=chance.clustered_fraction(threshold),
        labels=labels,
        duplicates=duplicates,
        sign_pairs=sign_pairs,
    )
