"""Qt-only helper: colour swatches in the cluster table."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magicgui.widgets import Table


def paint_swatches(table: Table, column: int, colours: list[str]) -> None:
    """Fill the cells of `column` with the hex `colours`, one per row.

    Parameters
    ----------
    table : magicgui.widgets.Table
        A table whose native widget is a ``QTableWidget``.
    column : int
        Column to paint.
    colours : list of str
        ``#rrggbb`` per row.
    """
    from qtpy.QtGui import QBrush, QColor, QIcon, QPixmap

    native = table.native
    side = max(8, native.fontMetrics().height() - 4)
    for row, colour in enumerate(colours):
        item = native.item(row, column)
        if item is None:
            continue
        qcolour = QColor(colour)
        item.setBackground(QBrush(qcolour))
        # A selected row paints over the background: the icon keeps the colour visible.
        pixmap = QPixmap(side, side)
        pixmap.fill(qcolour)
        item.setIcon(QIcon(pixmap))
        # Readable text on any swatch: black on light colours, white on dark ones.
        item.setForeground(QBrush(QColor("black" if qcolour.lightness() > 140 else "white")))
