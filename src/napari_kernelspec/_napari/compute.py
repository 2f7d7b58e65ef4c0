"""What the main widget computes, in a worker thread and without Qt.

`Request` freezes the controls; `compute` loads, analyses and builds the layer data that
the request needs and is not done yet; `Outcome` carries it back to the main thread.
`summary_html` is the widget's summary of one analysis.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..analysis.summary import summary_line
from ..base.errors import KernelSpecError
from ..base.text import printable

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult
    from ..base.bank import KernelBank
    from .layers import LayerData

__all__ = [
    "AUTO",
    "History",
    "Outcome",
    "Request",
    "analysis_matches",
    "auto_threshold_supported",
    "compute",
    "summary_html",
    "unanalysed",
]

AUTO = "auto"


@dataclass(frozen=True)
class Request:
    """Everything one update needs, frozen when the controls changed.

    Attributes
    ----------
    generation : int
        Request number; only the newest one is applied.
    source : str
        Model name or file path.
    weights : {"auto", "pretrained", "random"}
    method : {"response", "seed"}
    threshold : float or "auto"
        "auto" lets the analysis choose it from the chance level (where supported).
    min_samples : int
    view : str
        One of `views.VIEWS`.
    history : bool
        `source` is a folder of checkpoints of one model: a training history.
    side_by_side : bool
        The kernels to the right of the spectra (`layers.beside`), framed on both.
    origin : (float, float)
        World position of the mosaics' first pixel (`layout.beside_all`: right of the
        user's layers), for one model and for a training history alike.
    """

    generation: int
    source: str
    weights: str
    method: str
    threshold: float | str
    min_samples: int
    view: str
    history: bool = False
    side_by_side: bool = False
    origin: tuple[float, float] = (0.0, 0.0)

    @property
    def bank_key(self) -> tuple[str, str]:
        return self.source, self.weights

    @property
    def analysis_key(self) -> tuple[str, float | str, int]:
        return self.method, self.threshold, self.min_samples


@dataclass(frozen=True)
class History:
    """A training history as the widget holds it.

    Attributes
    ----------
    banks : tuple of KernelBank
        One per step (T), all of one shape.
    steps : tuple of str
        Step names.
    results : tuple of AnalysisResult
        One analysis per step; empty until analysed.
    asked : float or "auto" or None
        The threshold asked for `results` ("auto" or a number).
    """

    banks: tuple[KernelBank, ...]
    steps: tuple[str, ...]
    results: tuple[AnalysisResult, ...] = ()
    asked: float | str | None = None

    def __len__(self) -> int:
        return len(self.banks)


@dataclass
class Outcome:
    """What a worker hands back to the main thread.

    Attributes
    ----------
    request : Request
    bank : KernelBank or None
    result : AnalysisResult or None
    layers : list of LayerData
        One per role; ``data`` is None where the layer's pixels do not change (only its
        metadata does), e.g. both images after a threshold change.
    error : str or None
        The one-line message of a `KernelSpecError`.
    cancelled : bool
        The request was superseded while the worker ran; nothing to apply.
    history : History or None
        For a history request: the loaded steps (and their analyses once done); ``result``
        is then the first step's analysis.
    """

    request: Request
    bank: KernelBank | None = None
    result: AnalysisResult | None = None
    layers: list[LayerData] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False
    history: History | None = None


def analysis_matches(
    result: AnalysisResult | None, request: Request, asked: float | str | None = None
) -> bool:
    """True if `result` is the analysis `request` asks for (bank aside).

    `asked` is the threshold of the request that produced `result` ("auto" or a number):
    an automatic threshold matches only another automatic one, whatever value it chose.
    """
    if result is None:
        return False
    if (result.method, result.min_samples) != (request.method, request.min_samples):
        return False
    if AUTO in (request.threshold, asked):
        return request.threshold == asked
    return math.isclose(float(result.threshold), float(request.threshold), abs_tol=5e-7)


def compute(
    request: Request,
    bank: KernelBank | None = None,
    result: AnalysisResult | None = None,
    shown: tuple[AnalysisResult, str] | None = None,
    is_stale: Callable[[], bool] = lambda: False,
    history: History | None = None,
    keep_images: bool = False,
) -> Outcome:
    """Do what `request` needs that is not done yet (runs in a worker thread, no Qt).

    Parameters
    ----------
    request : Request
    bank : KernelBank, optional
        The already loaded bank of ``request.bank_key``; loaded when None.
    result : AnalysisResult, optional
        The analysis of `bank` that `request` asks for, if already computed.
    shown : (AnalysisResult, str), optional
        What the layers show now (analysis and kernel view): pixels that would not change
        are not rebuilt. None rebuilds everything.
    is_stale : callable
        Returns True once a newer request exists; checked between stages.
    history : History, optional
        For a history request: the steps already loaded, with their analyses if those are
        what `request` asks for (`bank`, `result` and `shown` are then unused).
    keep_images : bool
        For a history request: the layers show these steps' mosaics already (same banks,
        method and view), so only the frames and metadata are built.

    Returns
    -------
    Outcome
        With ``error`` set instead of raising for a `KernelSpecError`.
    """
    from . import layers as _layers

    if request.history:
        return _compute_history(request, history, is_stale, keep_images)
    try:
        if bank is None:
            from ..sources.loading import load_kernels
            from .commands import preload_torch

            preload_torch()
            bank = load_kernels(request.source, weights=request.weights)
        if is_stale():
            return Outcome(request, bank=bank, cancelled=True)
        old = shown[0] if shown is not None else None
        if (result is None or result.bank is not bank) and _can_rethreshold(old, bank, request):
            # A threshold change: clusters and pairs from the shown analysis' similarity
            # matrices (milliseconds, not the whole analysis). None for a newer result type.
            from ..analysis import pipeline

            result = pipeline.rethreshold(old, float(request.threshold))  # type: ignore[arg-type]
        if result is None or result.bank is not bank:
            from ..analysis.pipeline import analyze

            result = analyze(
                bank,
                method=request.method,
                threshold=request.threshold,  # type: ignore[arg-type]
                min_samples=request.min_samples,
            )
        if is_stale():
            return Outcome(request, bank=bank, result=result, cancelled=True)
        geometry = _layers.result_geometry(result, origin=request.origin)
        kernels_at = _layers.beside(geometry) if request.side_by_side else None
        old, old_view = shown if shown is not None else (None, None)
        same_bank = old is not None and old.bank is bank
        same_spectra = same_bank and old is not None and old.method == result.method
        spectra = _layers.spectra_layer(result, geometry, with_data=not same_spectra)
        kernels = _layers.kernels_layer(
            result,
            request.view,
            kernels_at or geometry,
            with_data=not (same_bank and old_view == request.view),
        )
        built = [spectra, kernels, _layers.clusters_layer(result, geometry, kernels_at=kernels_at)]
    except KernelSpecError as exc:
        return Outcome(request, bank=bank, error=str(exc))
    return Outcome(request, bank=bank, result=result, layers=built)


def _compute_history(
    request: Request,
    history: History | None,
    is_stale: Callable[[], bool],
    keep_images: bool = False,
) -> Outcome:
    """`compute` for a folder of checkpoints: load the steps, analyse each, stack the layers.

    The steps of `history` are reused when given; so are its analyses (a view change), or
    they are re-cut at a new threshold with `pipeline.rethreshold` (a slider move).
    """
    from ..analysis import pipeline
    from .history import check_history_memory, history_label, history_layer_data, load_steps

    def analyse(bank: KernelBank) -> AnalysisResult:
        return pipeline.analyze(
            bank,
            method=request.method,
            threshold=request.threshold,  # type: ignore[arg-type]
            min_samples=request.min_samples,
        )

    first = None
    try:
        if history is None:
            from .commands import preload_torch

            preload_torch()
            loaded = load_steps(request.source, analyse, is_stale)
            if loaded is None:
                return Outcome(request, cancelled=True)
            banks, steps, first = loaded
            history = History(tuple(banks), tuple(steps))
        if not history.results or not analysis_matches(history.results[0], request, history.asked):
            old = history.results or (None,) * len(history)
            results: list[AnalysisResult] = []
            for bank, previous in zip(history.banks, old, strict=True):
                result = first if not results else None
                if (
                    result is None
                    and previous is not None
                    and _can_rethreshold(previous, bank, request)
                ):
                    result = pipeline.rethreshold(previous, float(request.threshold))  # type: ignore[arg-type]
                if result is None:  # (rethreshold: None for a result type it does not know)
                    result = analyse(bank)
                    if not results:  # another method or min samples: check the memory again
                        check_history_memory(result, len(history))
                results.append(result)
                if is_stale():
                    return Outcome(request, history=unanalysed(history), cancelled=True)
            history = replace(history, results=tuple(results), asked=request.threshold)
        built = history_layer_data(
            history.results,
            history.steps,
            request.view,
            history_label(request.source),
            side_by_side=request.side_by_side,
            with_images=not keep_images,
            origin=request.origin,
        )
    except KernelSpecError as exc:
        return Outcome(request, error=str(exc), history=history)
    return Outcome(request, result=history.results[0], layers=built, history=history)


def unanalysed(history: History) -> History:
    return replace(history, results=(), asked=None)


def _can_rethreshold(
    old: AnalysisResult | None, bank: KernelBank | None, request: Request
) -> bool:
    return (
        old is not None
        and old.bank is bank
        and request.threshold != AUTO
        and (old.method, old.min_samples) == (request.method, request.min_samples)
    )


def summary_html(result: AnalysisResult) -> str:
    bank = result.bank
    n, c, h, w = bank.weights.shape
    trained = {
        "pretrained": "pretrained weights",
        "random": "UNTRAINED (random init)",
        "trained-digits": "trained on digits",
        "checkpoint": "checkpoint",
        "array": "array",
    }.get(bank.source, bank.source)
    stride = f"stride {bank.stride[0]}" if bank.stride_known else "stride unknown (1 assumed)"
    rule = getattr(result, "threshold_rule", None)
    threshold = f"≥ {result.threshold:.3f}" + (f", {rule}" if rule else "")
    parts = [
        f"<b>{html.escape(printable(bank.display_name))}</b> · "
        f"{html.escape(printable(bank.layer))} · {n}×{c}×{h}×{w} · {stride} · {trained}",
        f"{result.n_clusters} clusters ({result.method}, {threshold})",
        # what the clusters are compared with: the same line as the CLI's and the report's
        html.escape(summary_line(result)),
    ]
    parts.append(f"{len(result.duplicates)} duplicate pairs, {len(result.sign_pairs)} sign pairs")
    return "<br>".join(parts)


def auto_threshold_supported() -> bool:
    """True if `analyze` accepts ``threshold="auto"`` (chance-level thresholds)."""
    from ..analysis.pipeline import DEFAULT_MIN_SAMPLES, check_parameters

    try:
        check_parameters("response", AUTO, DEFAULT_MIN_SAMPLES)  # type: ignore[arg-type]
    except Exception:
        return False
    return True
