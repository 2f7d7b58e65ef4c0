"""Files are files wherever they come from: any name, any framework, the same options."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

CONV = np.random.default_rng(8).standard_normal((8, 3, 5, 5)).astype(np.float32)


@pytest.fixture
def pt_file(tmp_path):
    import torch

    path = tmp_path / "pnet.pt"
    torch.save({"conv1.weight": torch.from_numpy(CONV), "fc.weight": torch.ones(2, 8)}, path)
    return path


def test_a_checkpoint_with_any_name_analyses_like_the_original(cli, pt_file, tmp_path):
    results = []
    for name in ("pnet.pt", "x.bin", "x"):
        target = tmp_path / name
        if not target.exists():
            shutil.copy(pt_file, target)
        code, out, err = cli("analyze", str(target), "--json", "-")
        assert code == 0, err
        results.append(json.loads(out))
    for data in results[1:]:
        assert data["layer"] == results[0]["layer"] == "conv1.weight"
        differ = {k for k in data if data[k] != results[0].get(k)}
        assert differ <= {"model", "display_name", "provenance", "source_file"}, differ


def test_report_takes_a_files_stride(cli, pt_file, tmp_path):
    out = tmp_path / "r.html"
    code, _, err = cli(
        "report", "--models", str(pt_file), "--stride", "2", "--threshold", "0.9",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out.with_suffix(".json").read_text())
    (result,) = data["results"]
    assert result["stride"] == [2, 2] and result["stride_known"] is True


def test_a_files_recorded_stride_cannot_be_contradicted(cli, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], strides=[4, 4], name="stem")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(CONV, "w")],
    )
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    code, out, err = cli("analyze", str(tmp_path / "m.onnx"), "--json", "-")
    assert code == 0, err
    data = json.loads(out)
    assert data["stride"] == [4, 4] and data["stride_known"] is True
    code, _, err = cli("analyze", str(tmp_path / "m.onnx"), "--stride", "2")
    assert code == 2
    assert err.strip().count("\n") == 0 and "records stride [4, 4], not [2, 2]" in err


def test_scan_lists_the_files_it_skipped(cli, pt_file, tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    shutil.copy(pt_file, folder / "a.pt")
    shutil.copy(pt_file, folder / "b.bin")
    (folder / "notes.txt").write_text("lr 0.1\n")
    code, out, err = cli(
        "scan", str(folder), "--out", str(tmp_path / "f.parquet"),
        "--models-out", str(tmp_path / "m.parquet"), "--workers", "1",
        "--no-progress", "--threshold", "0.9", "--stride", "2",
    )  # fmt: skip
    assert code == 0, err
    assert "scanned 2 of 2 sources" in out
    assert "skipped 1 files that hold no weights" in err and "notes.txt" in err
    from napari_kernelspec.scan.store import read_dataset

    models = read_dataset(tmp_path / "m.parquet").to_pandas()
    assert [list(s) for s in models["stride"]] == [[2, 2], [2, 2]]
    assert models["stride_known"].all()
