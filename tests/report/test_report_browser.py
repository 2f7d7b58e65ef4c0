"""The report opened in a real headless Chromium (Playwright, see conftest.py)."""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from napari_kernelspec.analysis import analyze
from napari_kernelspec.base.bank import KernelBank
from napari_kernelspec.base.text import number, percent
from napari_kernelspec.report import render_report, write_report
from napari_kernelspec.report.render import ACHROMATIC_THRESHOLD

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
    heads = page.locator("table.comparison thead th")
    clusters = heads.all_inner_texts().index("clusters")
    heads.nth(clusters).click()  # ascending
    cells = page.locator(f"table.comparison tbody tr td:nth-child({clusters + 1})")
    order = [int(t) for t in cells.all_inner_texts()]
    assert order == sorted(order) and len(order) == 8
    assert opened.errors == []


def _figures(result: dict) -> list[str]:
    """Every figure of a model's comparison row, computed from the report's JSON alone."""

    def defined(key: str) -> np.ndarray:
        return np.array([f[key] for f in result["filters"] if f[key] is not None], dtype=float)

    def stat(key: str, how, text) -> str:
        values = defined(key)
        return text(how(values)) if values.size else "n/a"

    sy, sx = result["stride"]
    return [
        result["display_name"],
        result["layer"],
        "×".join(map(str, result["shape"])),
        str(sy) if sy == sx else f"{sy}×{sx}",
        "untrained" if not result["trained"] else result["weights"],
        str(result["n_clusters"]),
        percent(result["clustered_fraction"]),
        percent(result["chance_clustered_fraction"]),  # the chance level next to it
        number(result["threshold"], 3),
        str(len(result["duplicates"])),
        str(len(result["sign_pairs"])),
        stat("peak_frequency", np.median, number),
        stat("orientation_selectivity", np.median, lambda v: number(v, 2)),
        stat("aliasing_fraction", np.mean, number),
        stat("achromatic_fraction", lambda v: np.mean(v >= ACHROMATIC_THRESHOLD), percent),
    ]


@pytest.mark.parametrize("width", [1280, 800])
def test_comparison_table_fits_a_laptop_window_with_every_figure(open_page, report, width):
    """At 1280 px (and 800 px) the eight-model table needs no sideways scrolling, and every
    figure of every row (clustered share and its chance level included) is still on screen."""
    results = json.loads(report.with_suffix(".json").read_text())["results"]
    opened = open_page(report, viewport={"width": width, "height": 800})
    page = opened.page
    box = page.evaluate(
        "(() => { const t = document.querySelector('table.comparison'), c = t.parentElement;"
        " return {scroll: c.scrollWidth, client: c.clientWidth, table: t.offsetWidth,"
        " page: document.documentElement.scrollWidth}; })()"
    )
    assert box["scroll"] <= box["client"] and box["table"] <= box["client"], box
    assert box["page"] <= width, box  # nor does the page itself scroll sideways
    rows = page.locator("table.comparison tbody tr").all_inner_texts()
    assert len(rows) == len(results) == 8
    for result in results:
        row = next(r for r in rows if r.split()[0] == result["display_name"])
        shown = Counter(t.strip("()/·,;:") for t in row.split())
        missing = Counter(_figures(result)) - shown
        assert not missing, f"{result['display_name']}: {dict(missing)} not in {row!r}"
    # the heading of the clustered share sorts by it (the chance level rides along)
    heads = page.locator("table.comparison thead th")
    column = next(i for i, t in enumerate(heads.all_inner_texts()) if "clustered" in t)
    heads.nth(column).click()
    share = {r["display_name"]: r["clustered_fraction"] for r in results}
    order = [r.split()[0] for r in page.locator("table.comparison tbody tr").all_inner_texts()]
    assert [share[n] for n in order] == sorted(share.values())
    assert opened.errors == []


def test_markup_in_names_injects_nothing(open_page, tmp_path):
    rng = np.random.default_rng(0)
    evil = KernelBank(
        weights=rng.normal(size=(6, 3, 5, 5)),
        model="<script>alert(1)</script>",
        layer="<img src=x.y_z onerror=alert(2)>",  # "." and "_" get line breaks: inside a tag
        source="array",
        provenance={"file": "/tmp/<script>alert(3)</script>.npy"},
    )
    path = tmp_path / "evil.html"
    path.write_text(render_report([analyze(evil)]), encoding="utf-8")
    opened = open_page(path)
    assert opened.dialogs == [] and opened.errors == []
    assert opened.evaluate("document.scripts.length") == 1
    assert opened.evaluate("document.querySelectorAll('img[src^=\"x\"]').length") == 0
    text = opened.evaluate("document.body.innerText")
    assert "<script>alert(1)</script>" in text and "<img src=x.y_z onerror=alert(2)>" in text
    layer = opened.page.locator("table.comparison tbody td code").inner_text()
    assert layer == "<img src=x.y_z onerror=alert(2)>"


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
