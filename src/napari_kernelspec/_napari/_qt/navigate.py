"""Choosing a filter: a click on a tile, ] and [, zoom to it, fit the mosaic."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layer_updates import framed_bounds
from ..zoom import camera_of
from .table import blocked

__all__ = ["FIT_FILL", "Navigation"]

#: Share of the canvas the fitted mosaic fills (the rest is margin around the frames).
FIT_FILL = 0.92


class Navigation:
    """Part of `KernelSpectrumWidget` (a mixin: it uses the widget's controls and state)."""

    def _on_click(self, viewer: Any, event: Any) -> Any:
        """A click (not a drag) on a tile chooses that filter and its cluster's row."""
        if self._closed or self._result is None:
            return
        press = np.asarray(getattr(event, "pos", (0, 0)), dtype=float)
        yield
        while event.type == "mouse_move":
            yield
        moved = np.asarray(getattr(event, "pos", (0, 0)), dtype=float) - press
        if self._closed or np.abs(moved).max(initial=0.0) > 4:
            return  # a drag (pan), not a click
        index = self._tile_at(event.position)
        if index is not None:
            self.choose_filter(index)

    def choose_filter(self, index: int) -> None:
        """Make `index` the current filter and select its cluster's row (no camera move)."""
        if self._result is None or not 0 <= int(index) < self._result.n_filters:
            return
        self._set_current(int(index))
        lab = int(self._result.labels[index])
        if lab >= 0:
            self._select_row(lab)
        else:
            with blocked(self.table.native):
                self.table.native.clearSelection()
            self.highlight([int(index)])

    def _tile_at(self, position: Any) -> int | None:
        from ..layers import framed_geometries

        layer = self.layers.get("clusters")
        if layer is None:
            return None
        for geometry in framed_geometries(layer.metadata["kernelspec"]):
            index = geometry.tile_at(position)
            if index is not None:
                return index
        return None

    def _set_current(self, index: int) -> None:
        with self.focus.changed.blocked():
            self.focus.value = int(index)
        self._focusing = True  # the session's echo must not move the camera
        try:
            self.session.focus(int(index))
        finally:
            self._focusing = False

    def focus_filter(self, index: int) -> None:
        """Choose filter `index`: centre the camera on its tile, zoom so it fills about half
        the canvas, and emit `filter_focused`."""
        from ..layers import MosaicGeometry

        layer = self.layers.get("clusters")
        if self._result is None or layer is None or not 0 <= int(index) < self._result.n_filters:
            return
        geometry = MosaicGeometry.from_dict(layer.metadata["kernelspec"]["geometry"])
        centre = geometry.centre(int(index))
        canvas = min(self.viewer.canvas.size) or 600
        camera = self.camera
        camera.center = centre
        camera.zoom = 0.5 * canvas / geometry.pitch
        self._set_current(int(index))

    def step_filter(self, step: int) -> None:
        """Focus the next (`step` = 1) or previous (-1) filter."""
        if self._result is None:
            return
        current = self.current_filter if self.current_filter is not None else -step
        self.focus_filter(int(np.clip(current + step, 0, self._result.n_filters - 1)))

    def _on_session_focus(self, index: int) -> None:
        """Another widget or a shortcut focused filter `index`: zoom to it."""
        if not self._closed and not self._focusing:
            self.focus_filter(index)

    def _on_session_request(self, what: str) -> None:
        """A shortcut (napari's action manager) or another widget asked for `what`."""
        if self._closed:
            return
        if what == "zoom" and self.current_filter is not None:
            self.focus_filter(self.current_filter)
        elif what == "fit":
            self._fit()
        elif what == "toggle":
            self.toggle_show()
        elif what == "side_by_side":
            self.show_.value = "side by side" if self.show_.value != "side by side" else "kernels"

    def _fit(self) -> None:
        """Fit the camera to the mosaic, frames included, with a margin on every side.

        From the mosaic's own bounds: napari's layer extents can lag behind a data change
        within the same event-loop turn (seen after switching to the seed method).
        """
        layer = self.layers.get("clusters")
        if layer is None:
            self.viewer.reset_view()
            return
        (y0, x0), (y1, x1) = framed_bounds(layer.metadata["kernelspec"])
        height, width = (float(v) for v in self.viewer.canvas.size)
        camera = self.camera
        camera.center = ((y0 + y1) / 2, (x0 + x1) / 2)
        if height > 0 and width > 0:
            camera.zoom = FIT_FILL * min(height / (y1 - y0), width / (x1 - x0))

    @property
    def camera(self) -> Any:
        """The viewer's camera (``viewer.scene.camera`` from napari 0.9 on)."""
        return camera_of(self.viewer)
