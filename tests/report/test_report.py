"""The HTML report: rendering, files, escaping, atomic writes (no browser needed)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_kernelspec.analysis import analyze
from napari_kernelspec.analysis.descriptors import DESCRIPTOR_NAMES
from napari_kernelspec.base.atomic import Interrupted
from napari_kernelspec.base.bank import KernelBank
from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.report import ReportFiles, images, render, render_report, svg, write_report
from napari_kernelspec.sources.models import SEED_MODELS

SEED = tuple(SEED_MODELS)  # the eight, in order (test_cli checks the list itself)
XSS = "<script>alert(1)</script>"


class _Page(HTMLParser):
    """Collects tags, attributes, inline style text and section ids of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def external_resources(page: _Page) -> list[str]:
    """Every src/href/xlink:href that points outside the file, and remote CSS."""
    bad = []
    for _, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "action", "poster", "data"):
            value = attrs.get(key, "").strip().lower()
            if value.startswith(("http:", "https:", "//", "file:", "ftp:")):
                bad.append(f"{key}={value[:60]}")
        style = attrs.get("style", "").lower()
        if "url(" in style and "url(#" not in style:
            bad.append(f"style={style[:60]}")
    css = " ".join(page.styles).lower()
    if "@import" in css or "url(http" in css or "url(//" in css or "@font-face" in css:
        bad.append("css")
    return bad


def bank(
    model: str = "toy",
    n: int = 12,
    c: int = 3,
    k: int = 5,
    source: str = "array",
    seed: int = 0,
    **kw,
) -> KernelBank:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(n, c, k, k)).astype(np.float32)
    weights[1] = weights[0] * 2  # a duplicate
    weights[2] = -weights[0]  # a sign pair
    return KernelBank(
        weights=weights, model=model, layer=kw.pop("layer", "conv1"), source=source, **kw
    )


@pytest.fixture(scope="module")
def eight(tmp_path_factory) -> tuple[ReportFiles, str]:
    out = tmp_path_factory.mktemp("report") / "eight.html"
    files = write_report(weights="random", out=out)
    return files, files.html.read_text(encoding="utf-8")


# --- images and charts ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 3), (4, 9, 4), (1, 1, 3)])
def test_png_round_trip(shape):
    pixels = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    data = images.encode_png(pixels)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(back.reshape(pixels.shape), pixels)


def test_png_rejects_bad_images_and_uri_is_base64():
    with pytest.raises(ValueError):
        images.encode_png(np.zeros((4, 4, 2)))
    with pytest.raises(ValueError):
        images.encode_png(np.zeros((0, 4)))
    uri = images.png_data_uri(np.ones((2, 3)))
    assert uri.startswith("data:image/png;base64,iVBORw0KGgo")


def test_upscale_is_integer_block_repeat():
    tile = np.arange(6).reshape(2, 3)
    big = images.upscale(tile, 3)
    assert big.shape == (6, 9)
    assert np.array_equal(big[::3, ::3], tile) and np.all(big[:3, :3] == 0)
    stack = images.upscale(np.zeros((5, 2, 2, 3)), 4, axes=(1, 2))
    assert stack.shape == (5, 8, 8, 3)
    with pytest.raises(ValueError):
        images.upscale(tile, 0)
    assert images.upscale_factor(11, 44) == 4 and images.upscale_factor(64, 44) == 1


def test_colormap_ends_and_monotone_lightness():
    rgb = images.colormap(np.array([0.0, 0.5, 1.0, 2.0]))
    assert rgb.shape == (4, 3)
    assert np.allclose(rgb[0], images.SEQUENTIAL[0]) and np.allclose(rgb[2], images.SEQUENTIAL[-1])
    assert np.allclose(rgb[3], rgb[2])  # clipped
    luma = rgb[:3] @ [0.3, 0.6, 0.1]
    assert np.all(np.diff(luma) > 0)


def test_nice_ticks():
    assert svg.nice_ticks(0, 0.5, 5) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert svg.nice_ticks(0, 180, 4) == [0, 50, 100, 150]
    with pytest.raises(ValueError):
        svg.nice_ticks(1, 1)


def test_charts_escape_labels_and_draw_every_series():
    series = [
        svg.Series(XSS, "#ff0000", np.linspace(0, 0.5, 5), np.arange(5.0)),
        svg.Series("b", "#00ff00", np.linspace(0, 0.5, 5), np.ones(5)),
    ]
    chart = svg.line_chart(series, title="t", xlabel="x", ylabel="y", xlim=(0, 0.5))
    assert chart.count("<polyline") == 2 and "<script" not in chart and "&lt;script&gt;" in chart
    strip = svg.strip_chart(series, title="t", xlabel="x", xlim=(0, 0.5))
    assert strip.count("<circle") == 10 and "<script" not in strip
    hist = svg.histogram_panels(
        series,
        title="t",
        edges=np.linspace(0, 0.5, 6),
        xlabel="x",
        ylabel="y",
        xticks=[0, 0.25, 0.5],
    )
    assert hist.count("<rect") >= 10 and "<script" not in hist


def test_mosaic_overlay_borders_only_for_clustered_tiles():
    origins = np.array([[0, 0], [0, 11], [11, 0]])
    out = svg.mosaic_overlay(
        origins, (10, 10), (21, 21), ["#123456", None, "#abcdef"], labels=["0", "1", "2"]
    )
    assert out.count("<rect") == 2 and out.count("<text") == 3
    assert 'viewBox="0 0 21 21"' in out


def test_model_slugs_are_safe_and_unique():
    assert render.model_slugs(["AlexNet", "alexnet", XSS, "a b.npy", ""]) == [
        "alexnet",
        "alexnet-2",
        "script-alert-1-script",
        "a-b-npy",
        "model",
    ]


# --- render_report -------------------------------------------------------------------------


def test_render_report_is_pure_and_complete():
    results = [analyze(bank("first", source="array")), analyze(bank("second", n=6, c=1, k=3))]
    when = datetime(2024, 5, 6, 7, 8, tzinfo=timezone.utc)
    html = render_report(results, generated=when)
    assert html == render_report(results, generated=when)  # deterministic
    page = parse(html)
    assert "2024-05-06 07:08" in html
    assert [s["id"] for s in page.find("section") if s.get("id", "").startswith("model-")] == [
        "model-first",
        "model-second",
    ]
    assert external_resources(page) == []
    # 4 kernel views + spectrum + heatmap per model, all PNG data URIs
    srcs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(srcs) == 12 and all(s.startswith("data:image/png;base64,") for s in srcs)
    # the planted duplicate and sign pair are listed
    assert "0 ≈ 1" in html and "0 ≈ −2" in html
    # trained banks: no untrained banner
    assert "UNTRAINED" not in html
    # descriptor table: one row per filter, one column per descriptor (+ index, cluster)
    assert html.count('class="sortable filters"') == 2
    assert "achromatic_fraction &gt;= 0.9" in html or "achromatic fraction ≥ 0.9" in html


def test_render_report_rejects_empty_and_wrong_input():
    with pytest.raises(ValueError, match="at least one"):
        render_report([])
    with pytest.raises(ValueError, match="AnalysisResult"):
        render_report([bank()])


def test_markup_in_names_is_escaped():
    evil = bank(
        XSS,
        layer='"><img src=x onerror=alert(2)>',
        source="random",
        provenance={XSS: "<b>x</b>", "file": f"/tmp/{XSS}.npy"},
        display_name=f"{XSS} net",
    )
    html = render_report([analyze(evil), analyze(bank("plain"))])
    assert "<script>alert" not in html
    assert "<img src=x" not in html and "<b>x</b>" not in html
    page = parse(html)
    assert len(page.find("script")) == 1  # only our own inline script
    assert not page.find("img", src="x")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert page.find("section", id="model-script-alert-1-script")


def test_untrained_models_get_a_banner():
    html = render_report([analyze(bank("rnd", source="random")), analyze(bank("ok"))])
    assert html.count('class="banner"') == 2  # page-level banner + the model's own
    assert "1 of 2 models use UNTRAINED" in html


# --- write_report --------------------------------------------------------------------------


def test_eight_model_report(eight):
    _files, html = eight
    page = parse(html)
    ids = [a["id"] for a in page.find("section") if a.get("id", "").startswith("model-")]
    assert ids == [f"model-{m}" for m in SEED]
    table = html.split('class="sortable comparison"')[1].split("</table>")[0]
    assert table.count("<tr") == 1 + 8
    assert html.count('<svg class="chart') >= 3 + 8  # 3 charts + a colour scale per model
    assert html.count("<polyline") == 8  # one radial profile per model
    assert external_resources(page) == []
    assert "@import" not in html and "https://" not in html.split("<body")[0]
    assert html.count("UNTRAINED – random weights") == 8
    for name in ("numpy", "scipy", "scikit-learn", "torch"):
        assert f"<b>{name}</b>" in html


def test_eight_model_json_and_csv(eight):
    files, _ = eight
    assert files.json == files.html.with_suffix(".json")
    doc = json.loads(files.json.read_text())
    assert doc["report"]["models"] == list(SEED)
    assert doc["report"]["threshold_rule"] == "auto" and doc["report"]["method"] == "response"
    assert all(r["threshold_rule"] == "auto" for r in doc["results"])
    assert [r["model"] for r in doc["results"]] == list(SEED)
    assert all(r["weights"] == "random" and r["trained"] is False for r in doc["results"])
    rows = list(csv.DictReader(io.StringIO(files.csv.read_text())))
    assert len(rows) == sum(r["n_filters"] for r in doc["results"])
    assert list(rows[0])[:5] == ["model", "layer", "weights", "index", "cluster"]
    assert set(DESCRIPTOR_NAMES) <= set(rows[0])
    lenet = [r for r in rows if r["model"] == "lenet5"]
    assert len(lenet) == 6 and lenet[0]["layer"] == "conv1"


def test_parameters_are_checked_before_loading(monkeypatch, tmp_path):
    import napari_kernelspec.sources.loading as loading

    def boom(*args, **kwargs):
        raise AssertionError("loaded before checking parameters")

    monkeypatch.setattr(loading, "load_kernels", boom)
    for kwargs in ({"threshold": 1.5}, {"method": "fourier"}, {"min_samples": 0}):
        with pytest.raises(KernelSpecError):
            write_report(["lenet5"], out=tmp_path / "r.html", **kwargs)
    with pytest.raises(ValueError, match="html"):
        write_report(["lenet5"], out=tmp_path / "r.txt")
    assert list(tmp_path.iterdir()) == []


def test_loading_errors_propagate_unchanged(tmp_path):
    from napari_kernelspec.sources.loading import load_kernels

    with pytest.raises(KernelSpecError) as expected:
        load_kernels("no_such_model_xyz")
    with pytest.raises(KernelSpecError) as got:
        write_report(
            ["lenet5", "no_such_model_xyz"],
            weights="random",
            out=tmp_path / "r.html",
        )
    assert str(got.value) == str(expected.value)
    assert not (tmp_path / "r.html").exists()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("where", ["render", "csv"])
def test_interrupted_run_keeps_the_old_report(monkeypatch, tmp_path, where):
    out = tmp_path / "r.html"
    write_report(["lenet5"], weights="random", out=out)
    before = _snapshot(tmp_path)
    assert set(before) == {"r.html", "r.json", "r.csv"}

    if where == "render":  # fail midway through encoding the images
        calls = {"n": 0}
        real = images.encode_png

        def flaky(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("interrupted")
            return real(*args, **kwargs)

        monkeypatch.setattr(images, "encode_png", flaky)
    else:  # fail while the temporary files are being written
        import napari_kernelspec.report.write as write

        monkeypatch.setattr(write, "results_csv", lambda results: 1 / 0)
    with pytest.raises((RuntimeError, ZeroDivisionError)):
        write_report(["lenet5", "vgg16"], weights="random", out=out)
    assert _snapshot(tmp_path) == before  # byte-identical, and no temporary files


def _replace_then_ctrl_c(monkeypatch, folder: Path) -> list[Path]:
    """os.replace renames the first file into `folder`, then raises KeyboardInterrupt."""
    real, done = os.replace, []

    def replace(src, dst):
        if Path(dst).parent != folder:  # the kernel cache, for example
            return real(src, dst)
        if done:
            raise KeyboardInterrupt
        real(src, dst)
        done.append(Path(dst))

    monkeypatch.setattr(os, "replace", replace)
    return done


def test_ctrl_c_between_the_renames_says_what_was_replaced(monkeypatch, tmp_path):
    out = tmp_path / "r.html"
    write_report(["lenet5"], weights="random", out=out)
    before = _snapshot(tmp_path)
    done = _replace_then_ctrl_c(monkeypatch, tmp_path)
    with pytest.raises(Interrupted) as info:
        write_report(["lenet5", "vgg16"], weights="random", out=out)
    monkeypatch.undo()
    after = _snapshot(tmp_path)
    assert set(after) == {"r.html", "r.json", "r.csv"}  # no temporary file left
    assert done == [tmp_path / "r.json"]
    assert json.loads(after["r.json"])["report"]["models"] == ["lenet5", "vgg16"]  # new
    assert after["r.csv"] == before["r.csv"] and after["r.html"] == before["r.html"]  # old
    assert str(info.value) == (
        f"replaced {tmp_path / 'r.json'}; left as they were: {tmp_path / 'r.csv'}, {out}"
    )
    assert isinstance(info.value, KeyboardInterrupt)  # still a Ctrl-C for callers


def test_stale_temporaries_of_the_same_output_are_removed(tmp_path):
    import fcntl

    out = tmp_path / "r.html"
    stale = [tmp_path / ".r.html.k2j4_x9q.tmp", tmp_path / ".r.csv.abcdefgh.tmp"]
    others = [
        tmp_path / ".other.html.abcdefgh.tmp",  # another report's
        tmp_path / "notes.tmp",
        tmp_path / ".r.html.not-ours.tmp",  # not a name atomic writes make
    ]
    for path in [*stale, *others]:
        path.write_text("left by a killed run")
    live = tmp_path / ".r.json.livewrit.tmp"  # a writer that is still running holds a lock
    with open(live, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        write_report(["lenet5"], weights="random", out=out)
        assert live.exists()
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in others)
    assert {p.name for p in tmp_path.iterdir()} == {
        "r.html",
        "r.json",
        "r.csv",
        live.name,
        *(p.name for p in others),
    }


def test_csv_cells_never_become_formulas(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    npy = tmp_path / "=cmd|' \\C calc'!A0.npy"  # a file name cannot hold the "/" of the classic
    np.save(npy, rng.normal(size=(4, 3, 5, 5)).astype(np.float32))
    ckpt = tmp_path / "@SUM(1+1).pth"
    torch.save({"=cmd|' /C calc'!A0.weight": torch.randn(5, 3, 3, 3)}, ckpt)
    files = write_report([npy, ckpt], out=tmp_path / "r.html")
    rows = list(csv.DictReader(io.StringIO(files.csv.read_text())))
    assert len(rows) == 4 + 5
    assert {r["model"] for r in rows} == {"'" + npy.name, "'@SUM(1+1).pth"}
    assert {r["layer"] for r in rows[4:]} == {"'=cmd|' /C calc'!A0.weight"}
    for row in rows:  # no cell starts like a formula; numbers stay numbers
        assert not any(v.startswith(("=", "+", "@", "\t", "\r")) for v in row.values())
        float(row["peak_frequency"])
    assert any(row["cluster"] == "-1" for row in rows)  # a negative number is not text


def test_a_library_call_is_quiet_and_progress_is_opt_in(tmp_path, capfd):
    write_report(["lenet5", "vgg16"], weights="random", out=tmp_path / "quiet.html")
    quiet = capfd.readouterr()
    assert quiet.err == "" and quiet.out == ""
    write_report(["lenet5", "vgg16"], weights="random", out=tmp_path / "r.html", progress=True)
    err = capfd.readouterr().err
    assert "kernelspec report" in err and "2/2" in err and "VGG16" in err  # tqdm's bar


def test_report_never_imports_qt_or_napari(tmp_path):
    code = (
        "import sys\n"
        "from napari_kernelspec.report import write_report\n"
        f"write_report(['lenet5', 'alexnet'], weights='random', out={str(tmp_path / 'r.html')!r}"
        ")\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy', 'magicgui', "
        "'matplotlib'))\n"
        "print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "r.html").stat().st_size > 10_000


# --- files (loading) -------------------------------------------------------------------------


def test_report_over_npy_files_with_markup_names(tmp_path):
    folder = (
        tmp_path / "<script>alert(1)<"
    )  # with the file below: .../<script>alert(1)</script>.npy
    folder.mkdir()
    rng = np.random.default_rng(3)
    first = folder / "script>.npy"
    np.save(first, rng.normal(size=(8, 3, 5, 5)).astype(np.float32))
    second = tmp_path / "<img src=x onerror=alert(2)>.npy"
    np.save(second, rng.normal(size=(4, 1, 3, 3)))
    assert XSS in str(first)
    files = write_report([str(first), second], out=tmp_path / "files.html")
    html = files.html.read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert XSS.replace("<", "&lt;").replace(">", "&gt;") in html  # shown, escaped (file path)
    page = parse(html)
    assert len(page.find("script")) == 1
    assert len([a for a in page.find("section") if a.get("id", "").startswith("model-")]) == 2
    doc = json.loads(files.json.read_text())
    assert [r["weights"] for r in doc["results"]] == ["array", "array"]


def test_report_over_a_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    state = {
        "backbone.conv1.weight": torch.tensor(rng.normal(size=(16, 3, 7, 7)), dtype=torch.float32),
        "backbone.conv1.bias": torch.zeros(16),
        "head.weight": torch.zeros(10, 16),
    }
    path = tmp_path / "my-net.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    files = write_report([path], out=tmp_path / "ckpt.html")
    html = files.html.read_text()
    assert 'id="model-my-net-pth"' in html and "backbone.conv1" in html
    doc = json.loads(files.json.read_text())
    assert doc["results"][0]["weights"] == "checkpoint"
    assert doc["results"][0]["n_filters"] == 16


# --- what the report shows -------------------------------------------------------------------


def _model_colours(html: str) -> list[str]:
    toc = html.split('<nav class="toc"')[1].split("</nav>")[0]
    return re.findall(r"background: (#[0-9a-f]{6})", toc)


def test_model_colours_are_perceptually_distinct(eight):
    from skimage.color import deltaE_ciede2000, rgb2lab

    _, html = eight
    colours = _model_colours(html)
    assert len(colours) == 8
    rgb = np.array([[int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for c in colours])
    lab = rgb2lab(rgb[None])[0]
    difference = deltaE_ciede2000(lab[:, None], lab[None, :]) + np.eye(8) * 1e9
    # ResNet50 and InceptionV3 had two greens 4.8 apart; 2 is just noticeable
    assert difference.min() > 25


def test_kernel_tiles_carry_filter_indices_and_small_mosaics_are_enlarged(eight):
    _, html = eight
    lenet = html.split('id="model-lenet5"')[1].split("</section>")[0]
    kernels = lenet.split("<h3>Kernels</h3>")[1].split("</div>\n  <p")[0]
    figures = kernels.split("<figure")[1:]
    assert len(figures) == 4  # raw, high contrast, colour, symmetric colour
    for figure in figures:
        assert re.findall(r"<text[^>]*>(\d+)</text>", figure) == [str(i) for i in range(6)]
        width = int(re.search(r'<img [^>]*width="(\d+)"', figure).group(1))
        assert width >= 300  # six 5x5 kernels were drawn 139 px wide
    alexnet = html.split('id="model-alexnet"')[1].split("<h3>Kernels</h3>")[1]
    assert len(re.findall(r"<text[^>]*>\d+</text>", alexnet.split("</div>\n  <p")[0])) == 4 * 64


def test_provenance_numbers_are_formatted(tmp_path):
    result = analyze(
        bank("digits", provenance={"accuracy": 0.9777777777777777, "loss": 0.123456789, "n": 3})
    )
    html = render_report([result])
    assert "97.8%" in html and "0.9777777777777777" not in html
    assert "0.1235" in html and "0.123456789" not in html


def test_a_report_of_files_only_names_the_torch_that_read_them(tmp_path):
    from importlib import metadata

    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(4, 3, 3, 3)))
    files = write_report([tmp_path / "a.npy"], out=tmp_path / "r.html")
    html = files.html.read_text()
    for name in ("torch", "torchvision"):
        assert f"<b>{name}</b> {metadata.version(name)}" in html
    assert json.loads(files.json.read_text())["report"]["versions"]["torch"] == metadata.version(
        "torch"
    )


def test_undefined_descriptors_read_n_a_in_the_tables():
    # 1x1 kernels over one channel: the analysis leaves frequency, orientation and colour
    # descriptors undefined (NaN); the tables must say n/a for exactly those values.
    result = analyze(bank("one-by-one", n=6, c=1, k=1))
    d = result.descriptors
    assert np.isnan(d["peak_frequency"]).all() and np.isnan(d["achromatic_fraction"]).all()
    html = render_report([result])
    comparison = html.split('class="sortable comparison"')[1].split("</table>")[0]
    undefined_medians = ["peak_frequency", "orientation_selectivity", "achromatic_fraction"]
    assert comparison.count(">n/a</td>") == len(undefined_medians)
    per_filter = html.split('class="sortable filters"')[1].split("</table>")[0]
    assert per_filter.count(">n/a</td>") == sum(int(np.isnan(v).sum()) for v in d.values())
    assert re.search(r"\bnan\b", html, re.IGNORECASE) is None  # not shown, not used to sort
