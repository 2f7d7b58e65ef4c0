"""napari-kernelspec: what the first convolutional layer of a CNN has learned.

The public API is imported lazily, so ``import napari_kernelspec`` (and napari's start-up,
which imports this package to read its manifest) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AnalysisResult", "KernelBank", "KernelSpecError", "analyze", "load_kernels"]

_LAZY = {
    "AnalysisResult": "analysis.pipeline",
    "analyze": "analysis.pipeline",
    "KernelBank": "base.bank",
    "KernelSpecError": "base.errors",
    "load_kernels": "sources.loading",
}

if TYPE_CHECKING:
    from .analysis.pipeline import AnalysisResult, analyze
    from .base.bank import KernelBank
    from .base.errors import KernelSpecError
    from .sources.loading import load_kernels


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
