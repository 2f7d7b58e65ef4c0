"""The cluster table: one row per cluster, its colour swatch, selection highlights frames."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ...analysis.pipeline import AnalysisResult

__all__ = ["TABLE_ROWS", "ClusterTable", "blocked", "table_value"]

#: Rows of the cluster table always visible.
TABLE_ROWS = 8


@contextlib.contextmanager
def blocked(qobject: Any) -> Any:
    previous = qobject.blockSignals(True)
    try:
        yield
    finally:
        qobject.blockSignals(previous)


def table_value(rows: list[list[Any]]) -> dict[str, Any]:
    """magicgui's "split" table value: cluster, size, member filters."""
    return {
        "data": rows,
        "index": list(range(len(rows))),
        "columns": ["cluster", "size", "filters"],
    }


class ClusterTable:
    """Part of `KernelSpectrumWidget` (a mixin: it uses the widget's controls and state)."""

    def setup_table(self) -> None:
        """Rows, not cells, are selected; text wraps; the swatch column stays narrow."""
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy

        table = self.table.native
        table.verticalHeader().setVisible(False)  # row numbers repeated the cluster column
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setWordWrap(True)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        table.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        # At least `TABLE_ROWS` rows visible whatever else the dock holds.
        row = table.verticalHeader().defaultSectionSize()
        head = table.horizontalHeader().sizeHint().height()
        table.setMinimumHeight(int((TABLE_ROWS + 0.5) * row) + head + 2 * table.frameWidth())
        table.itemSelectionChanged.connect(self._on_table_selection)
        table.cellDoubleClicked.connect(self._on_table_double_click)

    def _update_table(self, result: AnalysisResult) -> None:
        from ...analysis.palette import cluster_colors, to_hex
        from .swatches import paint_swatches

        clusters = result.clusters
        colours = [to_hex(c) for c in cluster_colors(len(clusters))]
        rows = [[f"{k}", len(m), ", ".join(str(i) for i in m)] for k, m in enumerate(clusters)]
        native = self.table.native
        with blocked(native):
            self.table.value = table_value(rows)
            paint_swatches(self.table, 0, colours)
            native.resizeRowsToContents()

    def _on_table_selection(self) -> None:
        if self._result is None:
            return
        rows = sorted({index.row() for index in self.table.native.selectedIndexes()})
        clusters = self._result.clusters
        members = [i for r in rows if 0 <= r < len(clusters) for i in clusters[r]]
        self.highlight(members)
        if members and (self.current_filter not in members):
            self._set_current(members[0])

    def _on_table_double_click(self, row: int, column: int) -> None:
        if self._result is not None and 0 <= row < self._result.n_clusters:
            self.focus_filter(self._result.clusters[row][0])

    def highlight(self, filters: list[int]) -> None:
        """Draw the frames of `filters` thicker and dim the other frames (empty: reset)."""
        from ..layers import FRAME_WIDTH, cluster_edge_colors

        layer = self.layers.get("clusters")
        if layer is None or self._result is None:
            return
        n = self._result.n_filters
        chosen = np.zeros(n, dtype=bool)
        chosen[[i for i in filters if 0 <= i < n]] = True
        # A frame per marker: markers are filters, per step of a history and per mosaic
        # side by side; the layer's features say whose each one is.
        features = layer.features
        labels = features["cluster"].to_numpy(dtype=int)
        rgba = cluster_edge_colors(labels)
        width = np.full(len(labels), FRAME_WIDTH)
        if chosen.any():
            every = chosen[features["index"].to_numpy(dtype=int)]
            rgba[~every, 3] *= 0.35
            rgba[every, 3] = 1.0
            rgba[every & (labels < 0), :3] = 1.0  # unclustered: white frame
            width[every] = 2 * FRAME_WIDTH
        layer.border_color = rgba
        layer.border_width = width
        self._highlight = [int(i) for i in np.flatnonzero(chosen)]

    @property
    def highlighted(self) -> list[int]:
        """Filters whose frames are highlighted (a selected table row, a clicked cluster)."""
        return list(self._highlight)

    def _select_row(self, cluster: int) -> None:
        native = self.table.native
        if 0 <= cluster < native.rowCount():
            native.selectRow(cluster)  # -> _on_table_selection highlights the members
        else:
            native.clearSelection()
