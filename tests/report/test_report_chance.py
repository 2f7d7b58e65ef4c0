"""The report shows chance next to every clustered share and one similarity colour range."""

from __future__ import annotations

import re

import numpy as np

from napari_kernelspec.analysis import analyze
from napari_kernelspec.base.bank import KernelBank
from napari_kernelspec.report import render, render_report


def gaussian(name: str, shape, seed: int) -> KernelBank:
    rng = np.random.default_rng(seed)
    return KernelBank(rng.normal(size=shape), name, "conv1", "array")


def cells(html: str, row_name: str) -> list[str]:
    table = html.split('class="sortable comparison"')[1].split("</table>")[0]
    row = next(r for r in table.split("<tr")[2:] if f">{row_name}</a>" in r)
    return [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", fragment)).strip()


def test_comparison_table_and_sections_put_chance_next_to_the_clustered_share():
    auto = analyze(gaussian("grid", (64, 3, 7, 7), 0))
    seed = analyze(gaussian("seedlike", (64, 3, 7, 7), 1), method="seed")
    html = render_report([auto, seed])
    header = html.split('class="sortable comparison"')[1].split("</thead>")[0]
    heads = [_text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", header, re.DOTALL)]
    at = heads.index("filters clustered (null)")  # one cell: share (null's share)
    assert heads[at + 1] == "struc&shy;ture p vs null"
    assert heads[at + 2] == "thresh&shy;old"
    for result, name in ((auto, "grid"), (seed, "seedlike")):
        row = cells(html, name)
        clustered = f"{100 * result.clustered_fraction:.0f}%"
        assert row[at] == f"{clustered} ({100 * result.chance_clustered_fraction:.0f}%)"
    # the layer-level test: Gaussian filters have no structure beyond their null
    assert cells(html, "grid")[at + 1].startswith(f"{auto.structure_p_value:.2g}")
    assert cells(html, "seedlike")[at + 1] == "n/a"
    assert cells(html, "grid")[at + 2] == f"{auto.threshold:.3f} auto"
    assert cells(html, "seedlike")[at + 2] == "0.930"
    # each model section shows it too, and the rule is explained once
    for result in (auto, seed):
        section = html.split(f'id="model-{result.bank.model}"')[1].split("</section>")[0]
        share = f"{100 * result.chance_clustered_fraction:.0f}%"
        null = "matched" if result is auto else "shuffled"
        assert f"<b>{share}</b><span>clustered in the {null} null" in section
    assert html.count('id="chance-rule"') == 1
    assert "pixels shuffled within each channel" in html
    assert "random Gaussian combination of the layer's own centred filters" in html


def test_similarity_heatmaps_share_one_colour_range_with_chance_marked():
    small = analyze(gaussian("three", (32, 3, 3, 3), 2))  # 3x3: similarities near +-1
    large = analyze(gaussian("eleven", (64, 3, 11, 11), 3))
    vmin = render.similarity_range([small, large])
    assert vmin <= min(small.similarity.min(), large.similarity.min())
    html = render_report([small, large])
    scales = re.findall(r'<svg class="chart scale".*?</svg>', html, re.DOTALL)
    assert len(scales) == 2
    for svg_text, result in zip(scales, (small, large), strict=True):
        ticks = re.findall(r'text-anchor="middle">([^<]+)<', svg_text)
        assert ticks[0] == f"{vmin:.2f}".rstrip("0").rstrip(".") and ticks[-1] == "1"
        assert f"null (1% of pairs) {result.chance_similarity:.2f}".rstrip("0") in svg_text
        assert "threshold" in svg_text
        marks = re.findall(r'<line class="mark" x1="([\d.]+)"', svg_text)
        assert len(marks) == 2
        expected = 20 + (result.chance_similarity - vmin) / (1 - vmin) * 220
        assert abs(float(marks[1]) - expected) < 0.1


def test_undefined_descriptors_read_as_not_available():
    weights = np.random.default_rng(0).normal(size=(8, 1, 1, 1))
    lin = analyze(KernelBank(weights, "lin", "l", "array"))
    html = render_report([lin])
    assert "1x1 kernels have no spatial structure" in html
    assert "nan" not in re.sub(r"<[^>]+>", " ", html.split("<main>")[1]).lower().split()
