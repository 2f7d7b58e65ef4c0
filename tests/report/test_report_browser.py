"""The report opened in a real headless Chromium (DevTools protocol, stdlib client)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.analysis import analyze
from napari_kernelspec.base.bank import KernelBank
from napari_kernelspec.report import render_report, write_report
from napari_kernelspec.report.chromium import HeadlessChromium, find_chromium
from napari_kernelspec.report.images import decode_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        find_chromium() is None,
        reason="chromium is not installed (apt-get install chromium; CI installs it)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    with HeadlessChromium(width=1280, height=900) as b:
        yield b


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "report.html"
    return write_report(weights="random", out=out, progress=False).html


def _only_local(log, page_url: str) -> list[str]:
    return [u for u in log.requests if not u.startswith("data:") and u != page_url]


def test_page_renders_without_errors(browser, report):
    log = browser.open(report)
    assert log.errors == [] and log.dialogs == []
    assert _only_local(log, report.resolve().as_uri()) == []  # nothing fetched from anywhere
    height = browser.evaluate("document.documentElement.scrollHeight")
    assert 8 * 900 < height < 60_000
    sections = browser.evaluate(
        "Array.from(document.querySelectorAll('section.model')).map(s => [s.id, s.offsetHeight])"
    )
    assert len(sections) == 8 and all(h > 600 for _, h in sections)
    broken = browser.evaluate(
        "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length"
    )
    # per model: 4 kernel views, spectra, heatmap, feature maps and top patches
    assert broken == 0 and browser.evaluate("document.images.length") == 8 * 8
    # the screenshot is not blank: real structure in the pixels of the top of the page
    pixels = decode_png(browser.screenshot(clip=(0, 0, 1280, 500)))[..., :3].astype(float)
    assert pixels.shape[:2] == (500, 1280)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_page_reads_fine_without_javascript(browser, report):
    browser.open(report, javascript=True)
    with_js = browser.evaluate("document.documentElement.scrollHeight")
    log = browser.open(report, javascript=False)
    assert log.errors == []
    assert not browser.evaluate("document.documentElement.classList.contains('js')")
    without_js = browser.evaluate("document.documentElement.scrollHeight")
    assert abs(without_js - with_js) < 0.02 * with_js
    visible = browser.evaluate(
        "Array.from(document.querySelectorAll('section.model img')).filter("
        "i => i.getBoundingClientRect().width > 100).length"
    )
    assert visible == 8 * 8


def test_click_enlarges_images_and_headings_sort(browser, report):
    browser.open(report)
    size = browser.evaluate(
        "(() => { const f = document.querySelector('#model-alexnet figure.zoom');"
        " const w0 = f.querySelector('img').getBoundingClientRect().width;"
        " f.querySelector('img').click();"
        " const w1 = f.querySelector('img').getBoundingClientRect().width;"
        " const open = f.classList.contains('enlarged'); f.click();"
        " return [w0, w1, open, f.classList.contains('enlarged')]; })()"
    )
    w0, w1, opened, still = size
    assert opened and not still and w1 > 1.5 * w0
    order = browser.evaluate(
        "(() => { const t = document.querySelector('table.comparison');"
        " t.tHead.rows[0].cells[5].click();"  # clusters column, ascending
        " return Array.from(t.tBodies[0].rows).map(r => +r.cells[5].textContent); })()"
    )
    assert order == sorted(order) and len(order) == 8
    assert browser.log.errors == []


def test_markup_in_names_injects_nothing(browser, tmp_path):
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
    log = browser.open(path)
    assert log.dialogs == [] and log.errors == []
    assert browser.evaluate("document.scripts.length") == 1
    assert browser.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    text = browser.evaluate("document.body.innerText")
    assert "<script>alert(1)</script>" in text and "<img src=x onerror=alert(2)>" in text
