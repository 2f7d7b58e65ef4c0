"""Images through filters: feature maps, top-activating patches, a map of the filters, and
attribution (what drives a filter: `imaging.explain`).

`feature_maps` runs one convolution layer over an image (the first layer from its
`KernelBank` alone, a deeper one inside its network) and returns the maps with their
geometry in image pixels; `top_patches` finds every filter's strongest patches over a set of
images; `filter_embedding` places the filters on a 2-D map by their frequency response.

torch, torchvision, Pillow and scikit-learn are imported inside the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "FeatureMaps",
    "Patch",
    "TopPatches",
    "feature_maps",
    "filter_embedding",
    "read_image",
    "top_patches",
]

_LAZY = {
    "FeatureMaps": "maps",
    "feature_maps": "maps",
    "Patch": "patches",
    "TopPatches": "patches",
    "top_patches": "patches",
    "filter_embedding": "embedding",
    "read_image": "images",
}

if TYPE_CHECKING:
    from .embedding import filter_embedding
    from .images import read_image
    from .maps import FeatureMaps, feature_maps
    from .patches import Patch, TopPatches, top_patches


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
