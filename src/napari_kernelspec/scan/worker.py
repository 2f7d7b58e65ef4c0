"""What a Dask worker runs for one source: load, analyse, and return plain rows.

`analyse_source` is a module-level function so that every worker imports it by name (Dask
pickles a reference to it, not its code). It never raises for a bad source: the error
becomes the ``error`` of the source's row, so one damaged file never stops a scan. Only a
worker that dies (killed, out of memory) loses a task; Dask then retries it elsewhere.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult

__all__ = ["ScanParameters", "SourceResult", "analyse_source", "filter_columns", "model_row"]


@dataclass(frozen=True)
class ScanParameters:
    """What every source of a scan is analysed with (see `analyze` and `load_kernels`)."""

    weights: str = "auto"
    layer: str | None = None
    method: str = "response"
    threshold: float | str | None = None
    min_samples: int = 2
    alpha: float = 0.05
    #: The layer geometry of weights files that do not record it (model names keep theirs).
    stride: Any = None
    padding: Any = None
    dilation: Any = None

    def geometry(self) -> dict[str, Any]:
        """The geometry given, as `load_kernels` keyword arguments."""
        given = (("stride", self.stride), ("padding", self.padding), ("dilation", self.dilation))
        return {k: v for k, v in given if v is not None}

    def to_dict(self) -> dict[str, Any]:
        out = {
            "weights": self.weights,
            "layer": self.layer,
            "method": self.method,
            "threshold": self.threshold,
            "min_samples": self.min_samples,
            "alpha": self.alpha,
        }
        # Only when given: earlier scans' outputs stay resumable.
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in self.geometry().items()})
        return out


@dataclass
class SourceResult:
    """The rows of one source.

    Attributes
    ----------
    source : str
        The source as the scan listed it.
    model : dict
        The source's row of ``models.parquet`` (`store.MODEL_SCHEMA` columns).
    filters : dict of str to list
        Columns of its rows of ``filters.parquet`` (`store.filter_schema`), empty on error.
    """

    source: str
    model: dict[str, Any]
    filters: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.model.get("error")


def model_row(source: str, result: AnalysisResult) -> dict[str, Any]:
    """The ``models.parquet`` row of an analysed source (without time and error)."""
    from ..analysis.summary import summary_figures

    bank = result.bank.to_dict()
    return {
        "source": source,
        "model": bank["model"],
        "display_name": bank["display_name"],
        "layer": bank["layer"],
        "weights": bank["weights"],
        "trained": bank["trained"],
        "shape": bank["shape"],
        "stride": bank["stride"],
        "stride_known": bank["stride_known"],
        "method": result.method,
        "threshold": float(result.threshold),
        "min_samples": int(result.min_samples),
        **summary_figures(result),
    }


def filter_columns(source: str, result: AnalysisResult) -> dict[str, list[Any]]:
    """The ``filters.parquet`` rows of an analysed source, as columns.

    Per filter: ``source``, ``model``, ``layer``, ``shape``, ``stride``, ``weights``, then
    `AnalysisResult.filter_rows` (``index``, ``cluster`` and every descriptor).
    """
    from ..analysis.descriptors import DESCRIPTOR_NAMES

    bank = result.bank
    n = bank.n_filters
    columns: dict[str, list[Any]] = {
        "source": [source] * n,
        "model": [bank.model] * n,
        "layer": [bank.layer] * n,
        "shape": [list(bank.weights.shape)] * n,
        "stride": [list(bank.stride)] * n,
        "weights": [bank.source] * n,
        "index": list(range(n)),
        "cluster": result.labels.astype(int).tolist(),
    }
    for name in DESCRIPTOR_NAMES:
        columns[name] = result.descriptors[name].astype(float).tolist()
    return columns


def _error_text(exc: BaseException) -> str:
    from ..base.errors import KernelSpecError

    text = str(exc).strip() or "no message"
    return text if isinstance(exc, KernelSpecError) else f"{type(exc).__name__}: {text}"


def analyse_source(source: str, params: ScanParameters) -> SourceResult:
    """Load and analyse one source; a failure becomes the row's ``error``.

    Parameters
    ----------
    source : str
        A model name or a weights file (anything `load_kernels` takes).
    params : ScanParameters

    Returns
    -------
    SourceResult
        On success ``model["error"]`` is None; on failure it is one line and ``filters``
        is empty. ``model["seconds"]`` is the time taken either way.
    """
    from ..analysis.pipeline import analyze
    from ..base.errors import KernelSpecError
    from ..base.text import redact
    from ..sources import remote
    from ..sources.loading import load_kernels, resolve_source
    from .expand import UNREADABLE

    start = time.perf_counter()
    caught: list[str] = []
    try:
        if source.startswith(UNREADABLE):  # listed by `expand_sources`: say so in its row
            raise KernelSpecError(
                f"cannot read the folder {source[len(UNREADABLE) :]}: the weights files in it "
                "were not scanned; check its permissions"
            )
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            given = params.geometry()
            if given:  # files only: a model name knows its own geometry
                resolved = resolve_source(source)
                is_file = not isinstance(resolved, str) or (
                    remote.is_remote(resolved) and not resolved.startswith("timm:")
                )
                given = given if is_file else {}
            bank = load_kernels(source, weights=params.weights, layer=params.layer, **given)
            result = analyze(
                bank, params.method, params.threshold, params.min_samples, alpha=params.alpha
            )
        caught = list(dict.fromkeys(str(w.message) for w in seen))
        row = model_row(source, result)
        filters = filter_columns(source, result)
    except Exception as exc:  # a bad source is a row, never the end of the scan
        row, filters = {"source": source, "error": _error_text(exc)}, {}
    row["seconds"] = time.perf_counter() - start
    row["warnings"] = redact(" | ".join(caught)) or None
    row.setdefault("error", None)
    # Credentials in a URL are never stored (the Parquet files get shared).
    row["source"] = redact(source)
    if row["error"]:
        row["error"] = redact(row["error"])
    if "source" in filters:
        filters["source"] = [row["source"]] * len(filters["source"])
    return SourceResult(source=source, model=row, filters=filters)
