"""The report opened in a real headless Chromium (Playwright, see conftest.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from napari_kernelspec.analysis import analyze
from napari_kernelspec.base.bank import KernelBank
from napari_kernelspec.report import render_report, write_report

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "report.html"
    return write_report(weights="random", out=out).html


def _only_local(requests: list[str], page_url: str) -> list[str]:
    return [u for u in requests if not u.startswith("data:") and u != page_url]


def test_page_renders_without_errors(open_page, report):
    opened = open_page(report)
    assert opened.errors == [] and opened.dialogs == []
    assert _only_local(opened.requests, report.resolve().as_uri()) == []  # nothing fetched
    height = opened.evaluate("document.documentElement.scrollHeight")
    assert 8 * 900 < height < 60_000
    sections = opened.evaluate(
        "Array.from(document.querySelectorAll('section.model')).map(s => [s.id, s.offsetHeight])"
    )
    assert len(sections) == 8 and all(h > 600 for _, h in sections)
    broken = opened.evaluate(
        "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length"
    )
    # per model: 4 kernel views, spectra, heatmap, feature maps and top patches
    assert broken == 0 and opened.evaluate("document.images.length") == 8 * 8
    # the screenshot is not blank: real structure in the pixels of the top of the page
    png = opened.page.screenshot(clip={"x": 0, "y": 0, "width": 1280, "height": 500})
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (500, 1280)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_page_reads_fine_without_javascript(open_page, report):
    with_js = open_page(report).evaluate("document.documentElement.scrollHeight")
    opened = open_page(report, javascript=False)
    assert opened.errors == []
    # evaluate() still works with page scripts off; the page's own script did not run
    assert not opened.evaluate("document.documentElement.classList.contains('js')")
    without_js = opened.evaluate("document.documentElement.scrollHeight")
    assert abs(without_js - with_js) < 0.02 * with_js
    visible = opened.evaluate(
        "Array.from(document.querySelectorAll('section.model img')).filter("
        "i => i.getBoundingClientRect().width > 100).length"
    )
    assert visible == 8 * 8


def test_click_enlarges_images_and_headings_sort(open_page, report):
    opened = open_page(report)
    page = opened.page
    figure = page.locator("#model-alexnet figure.zoom").first
    w0 = figure.locator("img").bounding_box()["width"]
    figure.locator("img").click()
    w1 = figure.locator("img").bounding_box()["width"]
    assert "enlarged" in figure.get_attribute("class")
    assert w1 > 1.5 * w0
    figure.click()
    assert "enlarged" not in figure.get_attribute("class")
    page.locator("table.comparison thead th").nth(5).click()  # clusters column, ascending
    order = [
        int(t) for t in page.locator("table.comparison tbody tr td:nth-child(6)").all_inner_texts()
    ]
    assert order == sorted(order) and len(order) == 8
    assert opened.errors == []


def test_markup_in_names_injects_nothing(open_page, tmp_path):
    rng = np.random.default_rng(0)
    evil = KernelBank(
        weights=rng.normal(size=(6, 3, 5, 5)),
        model="<script>alert(1)</script>",
        layer="<img src=x onerror=alert(2)>",
        source="array",
        provenance={"file": "/tmp/<script>alert(3)</script>.npy"},
    )
    path = tmp_path / "evil.html"
    path.write_text(render_report([analyze(evil)]), encoding="utf-8")
    opened = open_page(path)
    assert opened.dialogs == [] and opened.errors == []
    assert opened.evaluate("document.scripts.length") == 1
    assert opened.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    text = opened.evaluate("document.body.innerText")
    assert "<script>alert(1)</script>" in text and "<img src=x onerror=alert(2)>" in text


def test_a_planted_alert_is_caught(open_page, tmp_path):
    """The harness itself: a dialog, an exception and a remote request are all seen."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><img src='http://127.0.0.1:9/x.png'>"
        "<script>alert('hi'); throw new Error('boom');</script></body></html>"
    )
    opened = open_page(page)
    assert opened.dialogs == ["hi"]
    assert any("boom" in e for e in opened.errors)
    assert "http://127.0.0.1:9/x.png" in opened.requests
