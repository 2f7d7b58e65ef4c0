"""The napari reader takes other frameworks' files by their first bytes, and nothing else."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_kernelspec._napari.commands import get_reader, read_weights


def test_reader_takes_onnx_keras_and_tfjs_files_and_leaves_the_rest(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    assert get_reader(str(tmp_path / "m.onnx")) is read_weights
    # Same patterns, other contents: left to napari's other readers.
    (tmp_path / "image.h5").write_bytes(b"not hdf5 at all")
    (tmp_path / "model.json").write_text(json.dumps({"name": "a napari project"}))
    (tmp_path / "fake.onnx").write_text("hello")
    for name in ("image.h5", "model.json", "fake.onnx"):
        assert get_reader(str(tmp_path / name)) is None, name
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert get_reader(str(tmp_path / "photo.png")) is None
