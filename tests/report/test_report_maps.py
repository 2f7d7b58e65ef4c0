"""The report's image sections: feature maps, top patches and the filter map of each model."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from napari_kernelspec import KernelSpecError
from napari_kernelspec.analysis import analyze, palette
from napari_kernelspec.cli import main
from napari_kernelspec.report.maps import (
    DEFAULT_IMAGE_CREDIT,
    ReportImage,
    image_section,
    scatter_svg,
)
from napari_kernelspec.report.write import write_report


def _decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _pngs(html: str) -> list[np.ndarray]:
    return [
        _decode_png(base64.b64decode(m))
        for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    ]


def test_report_with_user_images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = tmp_path / f"photo{i}.png"
        Image.fromarray((rng.random((64, 80, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    files = write_report(
        ["alexnet", "lenet5"],
        weights="random",
        images=paths,
        out=tmp_path / "r.html",
        progress=False,
    )
    html = files.html.read_text()
    assert html.count("What the filters do to an image") == 2
    assert "Feature maps of <b>photo0.png</b>" in html
    assert "over 2 images" in html
    assert "Chelsea" not in html  # the user's images carry no credit line
    assert html.count('class="chart scatter"') == 2
    # AlexNet: 64 dots, LeNet5: 6 dots, coloured like the clusters
    maps = re.findall(r'<svg class="chart scatter".*?</svg>', html, re.S)
    assert [m.count("<circle") for m in maps] == [64, 6]
    # LeNet5 (1 channel) saw the photo's luminance
    assert "RGB -&gt; luminance" in html
    # AlexNet's map mosaic: 64 tiles of 15x19 maps (64x80 image, 11x11 stride 4 pad 2), 8x8
    sizes = {p.shape[:2] for p in _pngs(html)}
    assert (8 * 15 + 7 * 4, 8 * 19 + 7 * 4) in sizes


def test_default_image_is_the_credited_cat(tmp_path):
    files = write_report(["lenet5"], out=tmp_path / "r.html", progress=False)
    html = files.html.read_text()
    assert "Feature maps of <b>chelsea.png</b>" in html
    assert "Image credit: chelsea.png: " + DEFAULT_IMAGE_CREDIT.replace("'", "&#39;") in html


def test_bad_image_fails_before_loading(tmp_path):
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(KernelSpecError, match="not an image"):
        write_report(["alexnet"], images=[tmp_path / "x.png"], out=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_cli_report_image_option(tmp_path, capsys):
    path = tmp_path / "grey.png"
    Image.fromarray((np.random.default_rng(1).random((40, 40)) * 255).astype(np.uint8)).save(path)
    code = main(
        ["report", "--models", "lenet5", "--image", str(path), "--out", str(tmp_path / "r.html")]
    )
    assert code == 0, capsys.readouterr().err
    assert "Feature maps of <b>grey.png</b>" in (tmp_path / "r.html").read_text()


def test_section_top_patch_grid_shows_the_planted_patch():
    """A planted copy of filter j's pattern appears as filter j's first patch in the grid."""
    from napari_kernelspec import KernelBank

    rng = np.random.default_rng(2)
    weights = rng.normal(size=(3, 1, 5, 5)).astype(np.float32)
    bank = KernelBank(weights=weights, model="f.npy", layer="w", source="array")
    image = np.full((40, 40), 0.5, np.float32)
    image[10:15, 20:25] = 0.5 + 0.5 * weights[1, 0] / np.abs(weights[1, 0]).max()
    section = image_section(analyze(bank), [ReportImage("planted", image)], k=2)
    grid = _decode_png(base64.b64decode(section["patches"]["uri"].split(",", 1)[1]))
    # one row: 3 filters x 2 tiles of 5 px upscaled x6 = 30 px, gap 3; filter 1's first tile
    tile = grid[0:30, 66:96, 0].astype(float) / 255
    expected = np.repeat(np.repeat(image[10:15, 20:25], 6, 0), 6, 1)
    np.testing.assert_allclose(tile, expected, atol=1 / 255 + 1e-6)


def test_scatter_escapes_labels_and_colours_points():
    colors = [palette.to_hex(c) for c in palette.cluster_colors(2)]
    svg = scatter_svg(
        np.array([[0.0, 0.0], [1.0, 1.0]]),
        colors,
        ["filter 0: <script>", "filter 1: x"],
        'a "title" <b>',
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<circle") == 2
    for c in colors:
        assert f'fill="{c}"' in svg
    with pytest.raises(ValueError, match="one colour"):
        scatter_svg(np.zeros((2, 2)), ["#000000"], ["a", "b"], "t")
