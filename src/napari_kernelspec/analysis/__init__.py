"""The pure analysis core: numpy / scipy functions over kernel stacks.

Views, spectra, clustering, redundancy, descriptors, palette and :func:`analyze`. Never imports
torch, Qt, napari or jinja2.
"""

from __future__ import annotations

from .pipeline import DEFAULT_MIN_SAMPLES, DEFAULT_THRESHOLD, AnalysisResult, analyze

__all__ = ["DEFAULT_MIN_SAMPLES", "DEFAULT_THRESHOLD", "AnalysisResult", "analyze"]
