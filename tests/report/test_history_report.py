"""`kernelspec report --history DIR`: the section id="history", its charts, mosaics and steps."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from napari_kernelspec.cli import main


class _Section(HTMLParser):
    """Collects what the history section holds."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # > 0 inside <section id="history">
        self.series: list[str] = []
        self.captions: list[str] = []
        self.rows: list[list[str]] = []
        self._tag: str | None = None
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("id") == "history":
            self.depth = 1
        elif self.depth and tag == "section":
            self.depth += 1
        if not self.depth:
            return
        if "data-series" in a:
            self.series.append(a["data-series"])
        if tag == "svg":
            self.svgs += 1
        if tag == "tr":
            self.rows.append([])
        self._tag = tag

    def handle_endtag(self, tag):
        if self.depth and tag == "section":
            self.depth -= 1
        self._tag = None

    def handle_data(self, data):
        if not self.depth or not data.strip():
            return
        if self._tag == "figcaption":
            self.captions.append(data.strip())
        elif self._tag == "td" and self.rows:
            self.rows[-1].append(data.strip())


@pytest.fixture
def history_dir(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3, 5, 5)).astype(np.float32)
    folder = tmp_path / "run"
    folder.mkdir()
    for t in range(5):
        step = w * (1 + 0.25 * t)
        if t == 4:
            step[5] = 1.1 * step[4]  # a duplicate pair appears at the last step
        torch.save({"conv1.weight": torch.from_numpy(step)}, folder / f"epoch_{t}.pth")
    return folder


def test_report_history_section(tmp_path, history_dir, capsys):
    out = tmp_path / "r.html"
    code = main(["report", "--history", str(history_dir), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    html = out.read_text()
    parser = _Section()
    parser.feed(html)
    assert parser.series == [
        "median_peak_frequency",
        "median_orientation_selectivity",
        "clustered_fraction",
        "duplicates",
        "mean_change",
    ]
    assert parser.svgs == 5
    assert parser.captions == ["epoch_0", "epoch_2", "epoch_4"]  # first, middle, last
    body = [r for r in parser.rows if r]
    assert [r[0] for r in body] == [f"epoch_{t}" for t in range(5)]
    assert [r[5] for r in body] == ["0", "0", "0", "0", "1"]  # duplicate pairs
    # mean change of step t: 0.25 / (1 + 0.25 (t - 1)), except the planted filter at step 4
    assert [r[6] for r in body][:4] == ["–", "0.2500", "0.2000", "0.1667"]
    # without --models, the comparison shows the first and the last step
    ids = re.findall(r'<section class="card model" id="model-([^"]+)"', html)
    assert ids == ["epoch_0-pth", "epoch_4-pth"]
    assert html.index('id="history"') < html.index('id="model-epoch_0-pth"')
    drift = json.loads(out.with_suffix(".json").read_text())["history"]
    assert drift["steps"] == [f"epoch_{t}" for t in range(5)]
    assert drift["mean_change"][:3] == [None, pytest.approx(0.25), pytest.approx(0.2)]


def test_report_history_of_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    code = main(["report", "--history", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 2 and "no such folder or list file" in err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.browser
def test_history_section_renders_in_a_browser(tmp_path, history_dir, open_page):
    from napari_kernelspec.report.write import write_report

    out = write_report([], out=tmp_path / "r.html", history=history_dir, progress=False).html
    page = open_page(out)
    assert page.errors == []
    height = page.evaluate("document.getElementById('history').offsetHeight")
    charts = page.evaluate(
        "Array.from(document.querySelectorAll('#history svg'))"
        ".map(s => s.getBoundingClientRect().width * s.getBoundingClientRect().height)"
    )
    images = page.evaluate(
        "Array.from(document.querySelectorAll('#history img')).map(i => i.naturalWidth)"
    )
    assert height > 600
    assert len(charts) == 5 and min(charts) > 100 * 100
    assert len(images) == 3 and min(images) > 0


def test_load_history_keeps_every_steps_figures_but_only_the_shown_analyses(tmp_path):
    import torch

    from napari_kernelspec.analysis import analyze
    from napari_kernelspec.analysis.history import history_drift
    from napari_kernelspec.report.history import load_history, shown_steps
    from napari_kernelspec.sources.loading import load_kernels

    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
    for t in range(7):
        w = w + 0.3 * rng.standard_normal(w.shape).astype(np.float32)
        torch.save({"conv1.weight": torch.from_numpy(w)}, tmp_path / f"step_{t}.pt")
    history = load_history(tmp_path, progress=False)
    assert sorted(history.results) == shown_steps(7) == [0, 3, 6]  # the rest let go
    # the figures of every step are those of the whole list of analyses
    everything = [analyze(load_kernels(tmp_path / f"step_{t}.pt")) for t in range(7)]
    expected = history_drift(everything, [f"step_{t}" for t in range(7)]).to_dict()
    assert history.drift.to_dict() == expected
    assert history.last.bank.weights.tolist() == everything[6].bank.weights.tolist()
