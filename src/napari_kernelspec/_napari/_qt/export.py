"""Writing the filter table, the kernels and the canvas to files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...base.errors import KernelSpecError
from ...base.text import printable

if TYPE_CHECKING:
    from ...analysis.pipeline import AnalysisResult

__all__ = ["Exports"]


class Exports:
    """Part of `KernelSpectrumWidget` (a mixin: it uses the widget's controls and state)."""

    def export_table(self, path: str | os.PathLike[str]) -> Path:
        """Write the filter table (one row per filter) as CSV; cells neutralised.

        Raises
        ------
        KernelSpecError
            When nothing is shown yet.
        """
        from ...base.atomic import atomic_write
        from ..layers import filter_table_csv

        result = self._need_result()
        path = Path(path)
        with atomic_write(path, "w") as handle:
            handle.write(filter_table_csv(result))
        return path

    def export_kernels(self, path: str | os.PathLike[str]) -> Path:
        """Write the raw float32 weights, (N, C, H, W), as a ``.npy`` file."""
        from ...base.atomic import atomic_write

        result = self._need_result()
        path = Path(path)
        with atomic_write(path, "wb") as handle:
            np.save(handle, np.asarray(result.bank.weights, dtype=np.float32))
        return path

    def export_view(self, path: str | os.PathLike[str]) -> Path:
        """Write what the canvas shows now as a PNG."""
        from PIL import Image

        from ...base.atomic import atomic_write

        image = self.viewer.screenshot(canvas_only=True, flash=False)
        path = Path(path)
        with atomic_write(path, "wb") as handle:
            Image.fromarray(np.asarray(image)[..., :3]).save(handle, format="PNG")
        return path

    def _need_result(self) -> AnalysisResult:
        if self._result is None:
            raise KernelSpecError("nothing to export yet: choose a model and wait for it")
        return self._result

    def _export_dialog(self, what: str) -> None:
        from qtpy.QtWidgets import QFileDialog

        if self._result is None:
            return
        stem = f"{self._result.bank.model}_{self._result.bank.layer}".replace("/", "_")
        suffix, kind, write = {
            "table": (".csv", "CSV (*.csv)", self.export_table),
            "kernels": (".npy", "NumPy (*.npy)", self.export_kernels),
            "view": (".png", "PNG (*.png)", self.export_view),
        }[what]
        path, _ = QFileDialog.getSaveFileName(self.native, f"Export {what}", stem + suffix, kind)
        if not path:
            return
        try:
            written = write(path)
        except (KernelSpecError, OSError) as exc:
            from napari.utils.notifications import show_error

            show_error(printable(f"could not write {path}: {exc}"))
            return
        from napari.utils.notifications import show_info

        show_info(f"wrote {printable(written)}")
