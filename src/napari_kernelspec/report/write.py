"""`write_report`: load models, analyse them, write the HTML, JSON and CSV together."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.atomic import write_together
from ..base.errors import KernelSpecError
from ..base.text import csv_cell, printable, redact
from .render import render_report, report_metadata

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult

__all__ = ["DEFAULT_OUT", "ReportFiles", "write_report"]

DEFAULT_OUT = "reports/kernelspec-report.html"
CSV_LEAD_COLUMNS = ("model", "layer", "weights")


@dataclass(frozen=True)
class ReportFiles:
    """Where `write_report` put its three files."""

    html: Path
    json: Path
    csv: Path
    #: The models that could not be loaded or analysed: ``{"model", "error"}`` each. The
    #: report shows them in a note at its top; the others are in it.
    failures: tuple[dict[str, str], ...] = ()


def seed_models() -> list[str]:
    """The eight seed models in their canonical order."""
    from ..sources.models import SEED_MODELS

    return list(SEED_MODELS)


def _json_safe(value: Any) -> Any:
    """Replace NaN / Inf (not valid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def results_json(
    results: Sequence[AnalysisResult],
    generated: datetime,
    history: Any = None,
    failures: Sequence[dict[str, str]] = (),
) -> str:
    """The JSON document: ``{"report": metadata, "results": [AnalysisResult.to_dict(), ...]}``
    (plus ``"history"``: the drift of every step, when given; ``"failures"``: the models
    that could not be analysed, ``{"model", "error"}``, when there are any)."""
    document = {
        "report": report_metadata(results, generated),
        "results": [r.to_dict() for r in results],
    }
    if history is not None:
        document["history"] = history
    if failures:
        document["failures"] = list(failures)
    return json.dumps(_json_safe(document), indent=1, allow_nan=False) + "\n"


def results_csv(results: Sequence[AnalysisResult]) -> str:
    """One CSV row per filter: model, layer, weights source, then `filter_rows` columns.

    Every cell goes through `csv_cell`: a model or layer name that a spreadsheet would read
    as a formula (``=cmd|' /C calc'!A0``) is written with a leading apostrophe.
    """
    buffer = io.StringIO()
    writer: Any = None
    for r in results:
        lead = {"model": r.bank.model, "layer": r.bank.layer, "weights": r.bank.source}
        for row in r.filter_rows():
            record = {**lead, **row}
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=list(record), lineterminator="\n")
                writer.writeheader()
            writer.writerow({k: csv_cell(v) for k, v in record.items()})
    return buffer.getvalue()


def _paths(
    out: str | os.PathLike[str],
    json_path: str | os.PathLike[str] | None,
    csv_path: str | os.PathLike[str] | None,
) -> ReportFiles:
    """The three output paths, checked before any work: right suffix, distinct, writable."""
    html = Path(out)
    if html.suffix.lower() not in (".html", ".htm"):
        raise KernelSpecError(
            f"the report must be an .html file, got {str(html)!r}; end --out with .html"
        )
    files = ReportFiles(
        html=html,
        json=Path(json_path) if json_path is not None else html.with_suffix(".json"),
        csv=Path(csv_path) if csv_path is not None else html.with_suffix(".csv"),
    )
    resolved = {p.resolve() for p in (files.html, files.json, files.csv)}
    if len(resolved) != 3:
        raise KernelSpecError(
            f"the HTML, JSON and CSV files must be three different files, got {files.html}, "
            f"{files.json} and {files.csv}; pick another --json"
        )
    for path in (files.html, files.json, files.csv):
        if path.is_dir():
            raise KernelSpecError(f"{path} is a folder; give a file name for the report")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KernelSpecError(
                f"cannot create the folder {path.parent}: {exc.strerror or exc}; pick another path"
            ) from None
        try:  # a real probe: permissions alone do not tell (read-only mounts, /proc)
            with tempfile.TemporaryFile(dir=path.parent):
                pass
        except OSError as exc:
            raise KernelSpecError(
                f"cannot write into {path.parent}: {exc.strerror or exc}; pick a writable folder"
            ) from None
    return files


def _is_file(name: str | os.PathLike[str], resolve_source: Any) -> bool:
    """Whether a report source is a weights file or URL (not a model name)."""
    from ..sources import remote

    resolved = resolve_source(name)
    return not isinstance(resolved, str) or (
        remote.is_remote(resolved) and not resolved.startswith("timm:")
    )


def write_report(
    sources: Sequence[str | os.PathLike[str]] | None = None,
    *,
    weights: str = "auto",
    method: str = "response",
    threshold: float | str | None = None,
    min_samples: int = 2,
    alpha: float = 0.05,
    out: str | os.PathLike[str] = DEFAULT_OUT,
    json_path: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
    history: str | os.PathLike[str] | None = None,
    explain: str | None = None,
    explain_options: dict[str, Any] | None = None,
    images: Sequence[str | os.PathLike[str]] | None = None,
    geometry: dict[str, Any] | None = None,
    arch: str | None = None,
) -> ReportFiles:
    """Analyse models or weight files and write the HTML report, its JSON and its CSV.

    Parameters
    ----------
    sources : sequence of str or path-like, optional
        Model names or weight files, in report order (see `load_kernels`); default the
        eight seed models.
    weights : {"auto", "pretrained", "random"}
        Which weights to load for models (ignored for files).
    method, threshold, min_samples, alpha
        Passed to `analyze`; checked before anything is loaded (threshold None: the
        method's default, "auto" for response).
    out : path-like
        The HTML file (``.html``); its folder is created if missing.
    json_path, csv_path : path-like, optional
        Default: `out` with the suffix ``.json`` / ``.csv``.
    progress : bool
        Draw a progress bar (tqdm) on stderr, one step per model. Off by default: a library
        call stays quiet; the ``kernelspec report`` command turns it on.
    history : path-like, optional
        A training history (folder of checkpoints or list file): adds the section
        ``id="history"`` (`report.history`). With an empty `sources`, the models compared
        are the history's first and last steps.
    explain : str, optional
        Add each model's maximising images of its first layer and of this layer (a name,
        ``"middle"`` or ``"last"``); see `report.explain`.
    explain_options : dict, optional
        ``steps``, ``size``, ``seed``, ``device`` for those images.
    images : sequence of path-like, optional
        Images for the feature maps (the first) and top patches (all) of every model;
        default scikit-image's photo of Chelsea the cat (credited in the report).
    geometry : dict, optional
        ``stride``, ``padding``, ``dilation`` (see `load_kernels`) of the weights files among
        `sources` (model names know their own geometry and are left as they are).
    arch : str, optional
        The torchvision architecture of the state-dict files among `sources`.

    Returns
    -------
    ReportFiles
        The three paths written.

    Raises
    ------
    KernelSpecError
        Bad parameters, an unknown model, an empty `sources` list, an `out` that is not
        ``.html``, colliding or unwritable output paths (all checked before anything is
        loaded), or no model that could be analysed. Nothing is written then. A model that
        fails to load or analyse while others succeed is left out with a note at the top
        of the report and in the JSON (``"failures"``), and listed in
        `ReportFiles.failures`.
    Interrupted
        A `KeyboardInterrupt` that got between the renames; its message names the files
        replaced and those left as they were.

    Notes
    -----
    All three files are rendered in memory, written in full to temporary files next to
    their targets and only then renamed over them, back to back, with Ctrl-C held until the
    last rename (`write_together`): an interrupted run leaves the earlier report intact. If
    an interrupt gets through between two renames anyway, the `Interrupted` it raises names
    the files that were replaced. Temporary files that a killed run left next to the same
    outputs are removed.
    """
    from ..analysis.pipeline import analyze, check_parameters
    from ..sources.loading import load_kernels, resolve_source

    check_parameters(method, threshold, min_samples, alpha)
    files = _paths(out, json_path, csv_path)
    names: list[str | os.PathLike[str]] = list(seed_models() if sources is None else sources)
    if not names and history is None:
        raise KernelSpecError("no models or files to report on; name at least one")
    for name in names:  # every name checked before the first (slow) load
        resolve_source(name)
    from .maps import load_report_images

    report_images = load_report_images(images)  # a bad image fails before any model loads
    steps = None
    if history is not None:
        from .history import load_history

        steps = load_history(
            history,
            method=method,
            threshold=threshold,
            min_samples=min_samples,
            alpha=alpha,
            progress=progress,
        )

    from tqdm import tqdm

    results = []
    failures: list[dict[str, str]] = []
    caught: list[warnings.WarningMessage] = []
    with tqdm(
        total=len(names),
        desc="kernelspec report",
        unit="model",
        disable=not progress or not names,  # no empty "0model" bar for a history alone
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        for name in names:
            bar.set_postfix_str(f"loading {printable(name, limit=40)}")
            try:  # one bad model is a note in the report, not the end of it
                with warnings.catch_warnings(record=True) as seen:
                    warnings.simplefilter("always")
                    given: dict[str, Any] = {}
                    if (geometry or arch) and _is_file(name, resolve_source):
                        local = not isinstance(resolve_source(name), str)
                        given = {**(geometry or {}), **({"arch": arch} if arch and local else {})}
                    bank = load_kernels(name, weights=weights, **given)
                caught += seen
                results.append(analyze(bank, method, threshold, min_samples, alpha=alpha))
            except Exception as exc:  # as in a scan: the error becomes the model's note
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                reason = (
                    text if isinstance(exc, KernelSpecError) else f"{type(exc).__name__}: {text}"
                )
                failures.append({"model": redact(os.fspath(name)), "error": redact(reason)})
                bar.update(1)
                continue
            bar.set_postfix_str(printable(bank.display_name, limit=40))
            bar.update(1)
    for w in caught:  # after the bar, so messages do not break it
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    if steps is not None and not names:
        results = [steps.first] if len(steps.steps) == 1 else [steps.first, steps.last]
    if not results:
        first = failures[0]
        raise KernelSpecError(
            f"no model could be analysed, nothing was written; {first['model']}: {first['error']}"
        )
    sections = None
    if explain is not None:
        from .explain import explain_sections

        sections = explain_sections(results, explain, **(explain_options or {}))
    generated = datetime.now(timezone.utc)
    section = drift = None
    if steps is not None:
        from .history import history_context, history_json

        section, drift = history_context(steps), history_json(steps)
    html = render_report(
        results,
        generated=generated,
        history=section,
        explain=sections,
        images=report_images,
        failures=failures,
    )
    document = results_json(results, generated, drift, failures)
    table = results_csv(results)
    write_together([(files.json, document), (files.csv, table), (files.html, html)])
    return dataclasses.replace(files, failures=tuple(failures))
