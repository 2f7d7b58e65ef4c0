"""Headless HTML report comparing the first convolution of several models.

One self-contained HTML file (inline CSS, PNG data URIs, inline SVG charts; no external
resource, readable without JavaScript) plus a JSON of every result and a CSV of per-filter
rows. Never imports Qt or napari; jinja2 is imported only when rendering.

>>> from napari_kernelspec.report import write_report
>>> files = write_report(["alexnet", "vgg16"], weights="random", out="report.html")
"""

from __future__ import annotations

from .render import render_report
from .write import ReportFiles, write_report

__all__ = ["ReportFiles", "render_report", "write_report"]
