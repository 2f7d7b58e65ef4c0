"""Filter indices that follow the camera's zoom, for every kernelspec clusters layer.

napari draws a Points layer's text at a fixed size in screen pixels. The filter index on each
tile is sized to the tile on screen instead (`layers.index_text_size`) and hidden when it
would be too small to read, so it has to follow the zoom. `follow_zoom` connects one
callback per viewer to its camera and its layer list; the widget, the reader and the sample
data all call it, so layers opened without the widget behave like the widget's own.

No napari import: the functions work on the viewer object they are given.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["camera_of", "follow_zoom", "follow_zoom_of_current_viewer", "update_index_text"]

#: Viewers already followed (weak: a closed viewer is forgotten).
_FOLLOWED: weakref.WeakSet[Any] = weakref.WeakSet()


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9 on)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def update_index_text(viewer: Any) -> None:
    """Size the filter indices of every kernelspec clusters layer to the tiles on screen.

    A layer's text is touched only when its size or visibility changes (each change
    re-renders the text of every marker: about 76 ms for 768 filters).
    """
    from .layers import index_text_size

    zoom = float(camera_of(viewer).zoom)
    for layer in list(viewer.layers):
        meta = layer.metadata.get("kernelspec") if isinstance(layer.metadata, dict) else None
        if not isinstance(meta, dict) or meta.get("role") != "clusters" or "geometry" not in meta:
            continue
        text = getattr(layer, "text", None)
        if text is None:
            continue
        tile = float(meta["geometry"]["tile"]) * abs(float(layer.scale[-1]))
        size, shown = index_text_size(tile * zoom)
        if round(float(text.size)) != round(size):
            text.size = float(round(size))
        if bool(text.visible) != shown:
            text.visible = shown


def follow_zoom(viewer: Any) -> None:
    """Keep the filter indices of `viewer`'s kernelspec layers sized to the zoom (once per
    viewer; later calls only update the sizes now)."""
    if viewer is None:
        return
    if viewer not in _FOLLOWED:
        ref = weakref.ref(viewer)

        def on_change(event: Any = None) -> None:
            followed = ref()
            if followed is not None:
                update_index_text(followed)

        camera_of(viewer).events.zoom.connect(on_change)
        viewer.layers.events.inserted.connect(on_change)
        _FOLLOWED.add(viewer)
    update_index_text(viewer)


def follow_zoom_of_current_viewer() -> None:
    """`follow_zoom` for napari's current viewer, if there is one (reader, sample data)."""
    try:
        from napari import current_viewer

        viewer = current_viewer()
    except Exception:  # no Qt / no viewer: nothing to follow
        return
    if viewer is not None:
        follow_zoom(getattr(viewer, "__wrapped__", viewer))
