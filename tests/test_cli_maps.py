"""`kernelspec maps` and `kernelspec patches`: files written, JSON shape, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_kernelspec import KernelBank
from napari_kernelspec.imaging import feature_maps


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
    np.save(tmp_path / "filters.npy", weights)
    image = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    return tmp_path, weights, image


def test_maps_writes_the_npz_the_api_computes(cli, files):
    tmp, weights, image = files
    out = tmp / "deep" / "maps.npz"
    code, stdout, err = cli(
        "maps",
        str(tmp / "filters.npy"),
        str(tmp / "photo.png"),
        "--stride",
        "2",
        "--padding",
        "1",
        "--no-relu",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert "4 maps of 19x24" in stdout
    bank = KernelBank(weights=weights, model="filters.npy", layer="x", source="array")
    expected = feature_maps(bank, image, stride=2, padding=1, relu=False)
    with np.load(out, allow_pickle=False) as data:
        np.testing.assert_allclose(data["maps"], expected.maps, atol=1e-6)
        assert data["maps"].dtype == np.float32
        np.testing.assert_array_equal(data["scale"], [2, 2])
        np.testing.assert_array_equal(data["translate"], [1, 1])  # (5 - 1) / 2 - 1
        np.testing.assert_array_equal(data["receptive_field"], [5, 5])
        meta = json.loads(str(data["meta"]))
    assert meta["relu"] is False and meta["normalisation"] == "[0, 1]"
    assert meta["stride"] == [2, 2] and meta["model"] == "filters.npy"
    assert sorted(p.name for p in out.parent.iterdir()) == ["maps.npz"]  # no temporary left


def test_maps_of_a_deep_layer(cli, files):
    tmp, _, _ = files
    out = tmp / "m.npz"
    code, _stdout, err = cli(
        "maps",
        "resnet18",
        str(tmp / "photo.png"),
        "--layer",
        "layer1.0.conv2",
        "--weights",
        "random",
        "--out",
        str(out),
    )
    assert code == 0, err
    with np.load(out) as data:
        assert data["maps"].shape == (64, 10, 13)
        np.testing.assert_array_equal(data["scale"], [4, 4])
        meta = json.loads(str(data["meta"]))
    assert meta["normalisation"] == "ImageNet mean / std"
    assert meta["geometry"] == "composed through the network"


def test_patches_json(cli, files):
    tmp, _, _ = files
    images = []
    for i in range(3):
        path = tmp / f"im{i}.png"
        Image.fromarray((np.random.default_rng(i).random((30, 30)) * 255).astype(np.uint8)).save(
            path
        )
        images.append(str(path))
    code, stdout, err = cli(
        "patches", str(tmp / "filters.npy"), *images, "--k", "3", "--json", "-"
    )
    assert code == 0, err
    doc = json.loads(stdout)
    assert [f["index"] for f in doc["filters"]] == [0, 1, 2, 3]
    for item in doc["filters"]:
        assert len(item["patches"]) == 3
        acts = [p["activation"] for p in item["patches"]]
        assert acts == sorted(acts, reverse=True)
        for p in item["patches"]:
            assert p["image"] in images
            y0, x0, y1, x1 = p["box"]
            assert 0 <= y0 < y1 <= 30 and 0 <= x0 < x1 <= 30
    code, stdout, err = cli(
        "patches", str(tmp / "filters.npy"), *images, "--json", str(tmp / "p.json")
    )
    assert code == 0, err
    assert "filter 0: best" in stdout
    assert len(json.loads((tmp / "p.json").read_text())["filters"][0]["patches"]) == 9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["maps", "{npy}", "{tmp}/missing.png", "--out", "{tmp}/m.npz"], "does not exist"),
        (["maps", "{npy}", "{tmp}/not-an-image.png", "--out", "{tmp}/m.npz"], "not an image"),
        (["maps", "{npy}", "{tmp}/empty.png", "--out", "{tmp}/m.npz"], "not an image"),
        (["maps", "{npy}", "{tmp}/tiny.png", "--out", "{tmp}/m.npz"], "smaller than the kernel"),
        (["maps", "{npy}", "{tmp}/photo.png", "--out", "{tmp}/m.txt"], ".npz"),
        (
            [
                "maps",
                "resnet18",
                "{tmp}/photo.png",
                "--layer",
                "layer1.0.bn1",
                "--weights",
                "random",
                "--out",
                "{tmp}/m.npz",
            ],
            "give one of: layer1.0.conv1",
        ),
        (["patches", "{npy}", "{tmp}/photo.png", "{tmp}/tiny.png"], "tiny.png: the image"),
        (["patches", "{npy}", "{tmp}/photo.png", "--k", "0"], "at least 1"),
        (["maps", "{npy}", "{tmp}/photo.png", "--stride", "0", "--out", "{tmp}/m.npz"], ">= 1"),
    ],
)
def test_bad_input_is_one_error_line(cli, files, argv, message):
    tmp, _, _ = files
    (tmp / "not-an-image.png").write_text("hello")
    (tmp / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp / "tiny.png")
    argv = [a.format(tmp=tmp, npy=tmp / "filters.npy") for a in argv]
    code, _stdout, err = cli(*argv)
    assert code == 2
    assert err.startswith("kernelspec: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp / "m.npz").exists()
