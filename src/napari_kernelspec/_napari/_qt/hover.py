"""The hovered filter: its descriptors in the widget and in napari's status bar."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

__all__ = ["HOVER_MARK", "HoverText"]

HOVER_MARK = "  ▸ "
SHOW = ("kernels", "spectra")


class HoverText:
    """Part of `KernelSpectrumWidget` (a mixin: it uses the widget's controls and state)."""

    def hover_text(self, position: Any) -> str | None:
        """Filter, cluster and descriptors of the tile under world `position`, or None.

        Reads the metadata of the topmost visible kernelspec layer, so layers opened by the
        reader work too; over the spectra it adds the frequency under the cursor, over the
        widget's kernels the raw weight of every input channel at the pixel.
        """
        from ..history import step_metadata
        from ..layers import describe_position

        for lay in reversed(list(self.viewer.layers)):
            meta = lay.metadata.get("kernelspec") if isinstance(lay.metadata, dict) else None
            # The frames have no pixels: the image below answers for them.
            if not lay.visible or not meta or meta.get("role") not in SHOW:
                continue
            if meta.get("history"):  # a training history: the step under the dims slider
                t = np.asarray(lay.world_to_data(self.viewer.dims.point), dtype=float)[0]
                meta = step_metadata(meta, round(float(t)) if np.isfinite(t) else 0)
            text = describe_position(meta, position, with_frequency=meta["role"] == "spectra")
            if text is None:
                continue
            if meta["role"] == "kernels" and lay is self.layers.get("kernels"):
                text += self._raw_weights_text(lay, position)
            return text
        return None

    def _raw_weights_text(self, layer: Any, position: Any) -> str:
        """`` · w(y, x) = (c0, c1, ...)``: raw weights of the kernel pixel under `position`."""
        if self._bank is None:
            return ""
        weights = self._bank.weights
        _, _c, h, w = weights.shape
        pos = np.asarray(position, dtype=float).ravel()
        data = np.asarray(layer.world_to_data(pos), dtype=float)[-2:]
        row, col = (math.floor(v + 0.5) for v in data)
        ncols = int(layer.metadata["kernelspec"]["geometry"]["ncols"])
        tr, y = divmod(row, h + 1)
        tc, x = divmod(col, w + 1)
        index = tr * ncols + tc
        if row < 0 or col < 0 or y >= h or x >= w or tc >= ncols or index >= len(weights):
            return ""
        values = ", ".join(f"{v:+.4g}" for v in weights[index, :, y, x].tolist())
        return f" · raw w(y {y}, x {x}) = ({values})"

    def _refresh_hover(self) -> None:
        """Recompute the hover text (after a model switch the old model's text must go)."""
        self._on_cursor()
        status = self.viewer.status
        if isinstance(status, dict) and HOVER_MARK in str(status.get("coordinates", "")):
            coords = str(status["coordinates"]).split(HOVER_MARK)[0]
            self.viewer.status = {**status, "coordinates": coords}
            self._on_status()
        elif isinstance(status, str) and HOVER_MARK in status:
            self.viewer.status = status.split(HOVER_MARK)[0]
            self._on_status()

    def _on_cursor(self, event: Any = None) -> None:
        if self._closed:
            return
        text = self.hover_text(self.viewer.cursor.position)
        if text is not None:
            self.hover.value = html.escape(text)
        elif not self.hover.value.endswith("…"):
            self.hover.value = ""

    def _on_status(self, event: Any = None) -> None:
        """Add the hovered filter to the status napari computed (race-free with its thread)."""
        if self._closed or not self.viewer.mouse_over_canvas:
            return
        text = self.hover_text(self.viewer.cursor.position)
        if text is None:
            return
        status = self.viewer.status
        if isinstance(status, dict):
            coords = str(status.get("coordinates", ""))
            if text in coords:
                return
            coords = coords.split(HOVER_MARK)[0]
            self.viewer.status = {**status, "coordinates": f"{coords}{HOVER_MARK}{text}"}
        elif text not in str(status):
            self.viewer.status = f"{str(status).split(HOVER_MARK)[0]}{HOVER_MARK}{text}"
