"""What is shown: kernels, spectra or both side by side; thumbnails of hidden mosaics."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..layer_updates import thumbnail as layer_thumbnail
from ..legends import contrast_index_text, update_mosaic_labels

__all__ = ["SHOW", "SIDE_BY_SIDE", "Arrangement"]

SHOW = ("kernels", "spectra")
#: The "show" choice with both mosaics next to each other, framed by one set of frames.
SIDE_BY_SIDE = "side by side"


class Arrangement:
    """Part of `KernelSpectrumWidget` (a mixin: it uses the widget's controls and state)."""

    def _on_show(self) -> None:
        side = self.show_.value == SIDE_BY_SIDE
        shown, wanted, failed = self._shown_request, self._controls_request(), self._failed
        names_nothing = wanted is None or (
            failed is not None and replace(wanted, side_by_side=failed.side_by_side) == failed
        )
        if shown is not None and names_nothing:
            # The model controls name nothing loadable now (no file yet, the name that just
            # failed): rearrange what the layers show instead.
            if not self._closed:
                self._submit(replace(shown, side_by_side=side))
        else:
            self.request_update()  # side by side: the kernels move in a worker (no reload)
        if side == self._side_of_layers:
            self._apply_visibility()  # otherwise `_apply` does it with the moved layers

    def _refresh_thumbnails(self) -> None:
        """Thumbnails of the hidden mosaics (napari updates only visible layers')."""
        for role in SHOW:
            layer = self.layers.get(role)
            if layer is not None and not layer.visible:
                thumbnail = layer_thumbnail(layer, self._step)
                if thumbnail is not None:
                    layer.thumbnail = thumbnail

    def _apply_visibility(self) -> None:
        show = self.show_.value
        layers = self.layers
        self._syncing = True
        try:
            for role in SHOW:
                visible = show in (role, SIDE_BY_SIDE)
                if role in layers and layers[role].visible != visible:
                    layers[role].visible = visible
        finally:
            self._syncing = False
        self._refresh_legends()
        self._refresh_hover()  # the hover text of the layer now hidden must go

    def _refresh_legends(self, labels: bool = True) -> None:
        """Index text coloured against its tile; a label above each mosaic (`legends`)."""
        layers = self.layers
        clusters = layers.get("clusters")
        if clusters is None or self._closed:
            return
        shown = self.show_.value if self.show_.value in SHOW else SHOW[0]
        mosaics = {role: layers[role] for role in SHOW if role in layers}
        contrast_index_text(clusters, mosaics, shown, self._step)
        if labels:
            steps = len(self._history.results) if self._history is not None else 1
            self._labels_layer = update_mosaic_labels(self.viewer, clusters, shown, steps)

    def _on_layer_visible(self, layer: Any, event: Any = None) -> None:
        """Keep the "show" control in step with the layer list's eye buttons."""
        if self._closed or self._syncing:
            return
        if self.show_.value == SIDE_BY_SIDE:
            if not layer.visible:  # one mosaic hidden: show the other one alone
                layers = self.layers
                for role in SHOW:
                    if layers.get(role) is layer:
                        self.show_.value = SHOW[1 - SHOW.index(role)]
            return
        if not layer.visible:
            return
        layers = self.layers
        for role in SHOW:
            if layers.get(role) is layer and self.show_.value != role:
                self.show_.value = role  # -> _apply_visibility hides the other one
        self._refresh_hover()

    def toggle_show(self) -> None:
        """Show the spectra if the kernels are shown, and the other way round."""
        show = self.show_.value
        self.show_.value = SHOW[1 - SHOW.index(show)] if show in SHOW else SHOW[0]
