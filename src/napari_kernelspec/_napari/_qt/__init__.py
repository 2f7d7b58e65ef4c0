"""Qt front end: the napari widget and Qt-only helpers (imported only by napari)."""

from __future__ import annotations

__all__ = ["KernelSpectrumWidget"]


def __getattr__(name: str) -> object:
    if name == "KernelSpectrumWidget":
        from .widget import KernelSpectrumWidget

        return KernelSpectrumWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
