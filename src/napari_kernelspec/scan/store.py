"""The scan's output: two Parquet datasets written batch by batch, safe to resume.

``--out filters.parquet`` and ``--models-out`` are folders of part files
(``part-000000.parquet``, ...), the layout every Parquet reader opens as one table
(``pandas.read_parquet("filters.parquet")``, ``pyarrow.parquet.read_table``, DuckDB's
``read_parquet('filters.parquet/*.parquet')``). Why parts and not one file with a row group
per batch: a Parquet file is readable only once its footer is written, so a scan killed
half-way would lose every batch of a single file; a part file is complete or absent.

Each batch is committed in two atomic renames (`base.atomic.atomic_write`): first its
filters part, then its models part of the same name. The models part is the commit record:
`ScanStore` with ``resume=True`` treats the sources in models parts as done, removes a
filters part whose models part is missing (a crash between the two renames) and the
temporary files of an interrupted write, and numbers new parts after the existing ones.
Every part carries the scan parameters in its schema metadata, so a resume with other
parameters is refused instead of mixing results.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.atomic import atomic_write
from ..base.errors import KernelSpecError

if TYPE_CHECKING:
    import pyarrow as pa

    from .worker import ScanParameters, SourceResult

__all__ = ["ScanStore", "default_models_out", "filter_schema", "model_schema", "read_dataset"]

_PART = re.compile(r"^part-(\d{6})\.parquet$")
_META_KEY = b"kernelspec"


def default_models_out(out: str | os.PathLike[str]) -> Path:
    """``filters.parquet`` -> ``filters-models.parquet`` next to it."""
    out = Path(out)
    suffix = out.suffix or ".parquet"
    return out.with_name(f"{out.stem if out.suffix else out.name}-models{suffix}")


def filter_schema() -> pa.Schema:
    """Columns of ``filters.parquet``: one row per filter."""
    import pyarrow as pa

    from ..analysis.descriptors import DESCRIPTOR_NAMES

    return pa.schema(
        [
            ("source", pa.string()),
            ("model", pa.string()),
            ("layer", pa.string()),
            ("shape", pa.list_(pa.int32())),
            ("stride", pa.list_(pa.int32())),
            ("weights", pa.string()),
            ("index", pa.int32()),
            ("cluster", pa.int32()),
            *[(name, pa.float64()) for name in DESCRIPTOR_NAMES],
        ]
    )


def model_schema() -> pa.Schema:
    """Columns of ``models.parquet``: one row per source, analysed or failed."""
    import pyarrow as pa

    return pa.schema(
        [
            ("source", pa.string()),
            ("model", pa.string()),
            ("display_name", pa.string()),
            ("layer", pa.string()),
            ("weights", pa.string()),
            ("trained", pa.bool_()),
            ("shape", pa.list_(pa.int32())),
            ("stride", pa.list_(pa.int32())),
            ("stride_known", pa.bool_()),
            ("method", pa.string()),
            ("threshold", pa.float64()),
            ("min_samples", pa.int32()),
            ("n_filters", pa.int32()),
            ("n_clusters", pa.int32()),
            ("clustered_fraction", pa.float64()),
            ("chance_clustered_fraction", pa.float64()),
            ("chance_similarity", pa.float64()),
            ("threshold_rule", pa.string()),
            ("structure_p_value", pa.float64()),
            ("null_model", pa.string()),
            ("duplicates", pa.int32()),
            ("sign_pairs", pa.int32()),
            ("median_peak_frequency", pa.float64()),
            ("median_orientation_selectivity", pa.float64()),
            ("mean_aliasing_fraction", pa.float64()),
            ("achromatic_share", pa.float64()),
            ("seconds", pa.float64()),
            ("warnings", pa.string()),
            ("error", pa.string()),
        ]
    )


def _parts(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.iterdir():
        m = _PART.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def read_dataset(folder: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """Every part of a scan dataset as one table (parts in commit order).

    Raises
    ------
    KernelSpecError
        If `folder` holds no part files.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = _parts(Path(folder))
    if not parts:
        raise KernelSpecError(f"{folder} holds no scan results; run `kernelspec scan` first")
    tables = [pq.read_table(parts[k], columns=columns) for k in sorted(parts)]
    return pa.concat_tables(tables)


class ScanStore:
    """Writes a scan's batches; knows which sources an earlier run already wrote.

    Parameters
    ----------
    out, models_out : path-like
        The filters and models datasets (folders; created when missing).
    params : ScanParameters
        Recorded in every part; checked against the existing parts on resume.
    resume : bool
        Continue a scan in `out`. Without it, an `out` or `models_out` that already holds
        parts is refused.

    Raises
    ------
    KernelSpecError
        An output that is a file, the same folder twice, an existing scan without
        ``resume``, or a resume with other parameters.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        models_out: str | os.PathLike[str],
        params: ScanParameters,
        *,
        resume: bool = False,
    ) -> None:
        self.out, self.models_out = Path(out), Path(models_out)
        self.params = params
        self._meta = json.dumps({"params": params.to_dict(), "format": 1})
        if self.out.resolve() == self.models_out.resolve():
            raise KernelSpecError(
                f"--out and --models-out are both {self.out}; give two different folders"
            )
        for folder in (self.out, self.models_out):
            if folder.exists() and not folder.is_dir():
                raise KernelSpecError(
                    f"{folder} is a file; the scan writes a Parquet dataset folder there: "
                    "give a new name or remove the file"
                )
        existing = _parts(self.models_out)
        if (existing or _parts(self.out)) and not resume:
            raise KernelSpecError(
                f"{self.out} or {self.models_out} already holds a scan; pass --resume to add "
                "the missing sources, or give new output names"
            )
        if resume and _parts(self.out) and not self.models_out.is_dir():
            raise KernelSpecError(
                f"{self.out} holds a scan but {self.models_out} does not exist; pass the "
                "--models-out of that scan to resume it"
            )
        self.done: set[str] = set()
        self.n_removed = 0
        if resume:
            self._check_parameters(existing)
            self._clean()
            self.done = self._read_done(existing)
        for folder in (self.out, self.models_out):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise KernelSpecError(
                    f"cannot create {folder}: {exc.strerror or exc}; pick a writable path"
                ) from None
        taken = set(existing) | set(_parts(self.out))
        self._next = max(taken, default=-1) + 1

    def _check_parameters(self, existing: dict[int, Path]) -> None:
        import pyarrow.parquet as pq

        if not existing:
            return
        first = existing[min(existing)]
        meta = (pq.read_schema(first).metadata or {}).get(_META_KEY)
        try:
            before = json.loads(meta)["params"] if meta else None
        except (ValueError, KeyError, TypeError):
            before = None
        if before != self.params.to_dict():
            raise KernelSpecError(
                f"{self.models_out} was scanned with {before}, not {self.params.to_dict()}; "
                "resume with the same --weights/--layer/--method/--threshold/--min-samples, "
                "or write to new outputs"
            )

    def _clean(self) -> None:
        """Remove what an interrupted run left: uncommitted filters parts, temporary files."""
        committed = set(_parts(self.models_out))
        for k, path in _parts(self.out).items():
            if k not in committed:
                path.unlink()
                self.n_removed += 1
        for folder in (self.out, self.models_out):
            if folder.is_dir():
                for p in folder.glob(".part-*.tmp"):
                    p.unlink()

    def _read_done(self, existing: dict[int, Path]) -> set[str]:
        import pyarrow.parquet as pq

        done: set[str] = set()
        for path in existing.values():
            done.update(pq.read_table(path, columns=["source"]).column("source").to_pylist())
        return done

    def _write(self, folder: Path, name: str, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        table = table.replace_schema_metadata({_META_KEY: self._meta.encode()})
        try:
            with atomic_write(folder / name, "wb") as fh:
                pq.write_table(table, fh, compression="zstd")
        except OSError as exc:
            raise KernelSpecError(
                f"cannot write {folder / name}: {exc.strerror or exc}; free some space or pick "
                "another --out, then run again with --resume"
            ) from None

    def write(self, results: Sequence[SourceResult]) -> None:
        """Commit one batch: its filters part, then its models part."""
        import pyarrow as pa

        if not results:
            return
        fschema, mschema = filter_schema(), model_schema()
        columns: dict[str, list[Any]] = {name: [] for name in fschema.names}
        for r in results:
            for name in columns:
                columns[name].extend(r.filters.get(name, ()))
        filters = pa.Table.from_pydict(columns, schema=fschema)
        models = pa.Table.from_pylist([r.model for r in results], schema=mschema)
        name = f"part-{self._next:06d}.parquet"
        self._write(self.out, name, filters)
        self._write(self.models_out, name, models)
        self._next += 1
        self.done.update(r.source for r in results)
