"""Legends: napari's own colour bar on the plugin's colour-mapped layers (no Qt).

A colour bar (napari's per-layer ``colorbar`` overlay, ticks at the contrast limits) shows
the value range of the spectra (magma, each filter's response normalised to its peak: 0-1),
the feature maps (activation, after ReLU or signed) and the attributions (signed, centred on
zero, blue-white-red).
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["show_colour_bar"]


def show_colour_bar(layer: Any) -> bool:
    """Turn on `layer`'s colour bar; False for a layer without one (RGB, points)."""
    if getattr(layer, "rgb", False):
        return False
    with contextlib.suppress(AttributeError):
        layer.colorbar.visible = True
        return True
    return False
