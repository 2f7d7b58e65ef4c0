"""`kernelspec report --explain LAYER`: maximising images in each model's section."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.report.write import write_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _figures(html: str) -> list[tuple[str, np.ndarray]]:
    """(layer, decoded mosaic) of every explain figure, in page order."""
    found = re.findall(
        r'<img src="data:image/png;base64,([^"]+)"[^>]*alt="[^"]*?(\S+): images maximising',
        html,
    )
    return [
        (layer, np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))))
        for data, layer in found
    ]


def test_each_model_gets_its_first_and_chosen_layer(tmp_path, gabor):
    weights = np.asarray([[gabor(5, 0.25, t)] for t in (0, 45, 90)], dtype=np.float32)
    npy = tmp_path / "three.npy"
    np.save(npy, weights)
    files = write_report(
        ["lenet5", str(npy)],
        weights="random",
        out=tmp_path / "r.html",
        progress=False,
        explain="last",
        explain_options={"steps": 2, "size": 24},
    )
    html = files.html.read_text()
    figures = _figures(html)
    assert [layer for layer, _ in figures] == ["conv1", "conv2", "conv"]
    tile = 24 * 4  # upscaled to about 96 px
    conv1, conv2, conv = (img for _, img in figures)
    assert conv1.shape[:2] == (tile, 6 * (tile + 2) - 2)  # 6 filters in one row
    assert conv2.shape[:2] == (2 * (tile + 2) - 2, 8 * (tile + 2) - 2)  # 16 filters, 8 a row
    assert conv.shape[1] == 3 * (tile + 2) - 2
    assert html.count("What drives the filters") == 2
    # LeNet5 is random here: its explain part says so.
    assert "three.npy holds one convolution (no network): it has no last layer" in html
    lenet = html[html.index('id="model-lenet5"') : html.index("What drives the filters") + 600]
    assert "these images show what the random initialisation responds to" in lenet


def test_a_layer_that_is_not_a_convolution_writes_nothing(tmp_path):
    out = tmp_path / "r.html"
    with pytest.raises(KernelSpecError, match="'fc1' is a Linear, not a convolution"):
        write_report(
            ["lenet5"], weights="random", out=out, progress=False, explain="fc1",
            explain_options={"steps": 1, "size": 16},
        )  # fmt: skip
    assert not out.exists()


def test_trained_classifier_gets_what_drives_its_class(tmp_path, monkeypatch, digits_cache):
    monkeypatch.setenv("KERNELSPEC_CACHE", str(digits_cache))
    files = write_report(
        ["lenet5"], weights="pretrained", out=tmp_path / "r.html", progress=False,
        explain="last", explain_options={"steps": 64, "size": 32},
    )  # fmt: skip
    html = files.html.read_text()
    assert "What drives the class" in html
    # The first held-out digit is a 2, and the trained LeNet5 says so.
    assert "the network predicts <b>2</b> (class 2, probability" in html
    found = re.findall(r'<img src="data:image/png;base64,([^"]+)"[^>]*alt="LeNet5: ([^"]+)"', html)
    ours = [(data, alt) for data, alt in found if alt.endswith(" of 2")]
    assert [alt for _, alt in ours] == [
        "the sample, Grad-CAM and gradient of 2",
        "class visualisation of 2",
    ]
    row = np.asarray(Image.open(io.BytesIO(base64.b64decode(ours[0][0]))))
    assert row.shape[1] > 2.9 * row.shape[0]  # three tiles side by side
