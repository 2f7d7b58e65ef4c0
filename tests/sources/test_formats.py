"""The format readers themselves (`sources.formats`, `onnx_format`, `keras_format`).

Each reader takes any seekable binary file: the tests hand them local files, in-memory
bytes and remote range files, and check that they give the same weights and the same errors.
"""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources import checkpoints, formats, readers, tensors
from napari_kernelspec.sources.loading import load_kernels

_spec = importlib.util.spec_from_file_location(
    "range_server", Path(__file__).with_name("range_server.py")
)
range_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(range_server)

RNG = np.random.default_rng(3)
CONV = RNG.standard_normal((6, 3, 5, 5)).astype(np.float32)
BIAS = RNG.standard_normal(6).astype(np.float32)


def _entries(data: bytes, name: str = "w"):
    return readers.read_entries(io.BytesIO(data), name, len(data))


def _torch_bytes(state: dict, legacy: bool = False) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


# --- torch files and the restricted unpickler -------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_files_from_memory(legacy):
    import torch

    state = {"a.bias": torch.ones(3), "conv.weight": torch.from_numpy(CONV)}
    fmt, entries = _entries(_torch_bytes(state, legacy))
    assert fmt == ("torch-legacy" if legacy else "torch-zip")
    key, weights = formats.select_kernels(entries, "w", None)
    assert key == "conv.weight"
    np.testing.assert_array_equal(weights, CONV)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_restricted_unpickler_never_runs_code(tmp_path, legacy):
    """The pickle names `open`: refused by name, the marker file never written."""
    import torch

    marker = tmp_path / "PWNED"
    data = _torch_bytes({"conv.weight": torch.ones(2, 1, 3, 3), "x": _Payload(marker)}, legacy)
    with pytest.raises(KernelSpecError, match="refusing to unpickle"):
        _entries(data)
    # The same bytes as a local file with a name that says nothing of the format.
    (tmp_path / "pytorch_model.bin").write_bytes(data)
    with pytest.raises(KernelSpecError, match="refusing to unpickle"):
        load_kernels(tmp_path / "pytorch_model.bin")
    assert not marker.exists()


def test_unpickler_refuses_every_global_but_the_weights_ones():
    for module, name in [("os", "system"), ("builtins", "eval"), ("torch", "load")]:
        payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"q\x00."
        with pytest.raises(KernelSpecError, match="refusing to unpickle"):
            formats._unpickle(io.BytesIO(payload), "p", legacy=False)


# --- safetensors: one dtype table -----------------------------------------------------------


def _safetensors(tensors_: dict[str, tuple[str, np.ndarray]]) -> bytes:
    header, blobs, at = {}, [], 0
    for key, (dtype, array) in tensors_.items():
        raw = array.tobytes()
        offsets = [at, at + len(raw)]
        header[key] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": offsets}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


@pytest.mark.parametrize("dtype", ["U16", "U32", "U64", "I8", "F16", "F64"])
def test_safetensors_dtypes_local_and_memory_agree(tmp_path, dtype):
    code = tensors.SAFETENSORS_DTYPES[dtype]
    array = (np.arange(54) % 7).reshape(2, 3, 3, 3).astype(code)
    data = _safetensors({"w": (dtype, array)})
    _, entries = _entries(data)
    from_memory = formats.select_kernels(entries, "w", None)[1]
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    local = checkpoints.read_kernels(path).weights
    np.testing.assert_array_equal(from_memory, array.astype(np.float32))
    np.testing.assert_array_equal(local, from_memory)


def test_f8_tensors_read_as_their_values():
    import torch

    values = torch.tensor([0.5, -1.0, 2.0, 0.25] * 27).reshape(4, 3, 3, 3)
    raw = values.to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    _, entries = _entries(_safetensors({"w": ("F8_E4M3", raw)}))
    np.testing.assert_array_equal(formats.select_kernels(entries, "w", None)[1], values.numpy())


def test_one_set_of_limits():
    assert formats.MAX_HEADER_BYTES == checkpoints.MAX_PICKLE_BYTES == tensors.MAX_HEADER_BYTES
    assert formats.MAX_TENSOR_BYTES == tensors.MAX_TENSOR_BYTES


def test_no_convolution_is_a_typed_error():
    _, entries = _entries(_safetensors({"fc": ("F32", np.ones((3, 4), np.float32))}))
    with pytest.raises(tensors.NoConvolution):
        formats.select_kernels(entries, "w", None)


# --- ONNX graphs written with onnx's helpers --------------------------------------------------


def _onnx_model(*, constant=False, pads=(2, 2, 2, 2), auto_pad=None, group=1, name="conv"):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = CONV if group == 1 else CONV[:, :1]
    channels = 3 * group if group > 1 else 3
    w = numpy_helper.from_array(weights, "w")
    b = numpy_helper.from_array(BIAS, "b")
    attrs = {"kernel_shape": [5, 5], "strides": [2, 3], "dilations": [1, 2], "group": group}
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = list(pads)
    nodes = []
    if constant:
        nodes.append(helper.make_node("Constant", [], ["w"], value=w))
    nodes += [
        helper.make_node("Relu", ["x"], ["r"], name="first_relu"),
        helper.make_node("Conv", ["r", "w", "b"], ["y"], name=name, **attrs),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[b] if constant else [w, b],
    )
    return helper.make_model(graph), onnx


@pytest.mark.parametrize("constant", [False, True])
def test_onnx_weights_bias_and_geometry(tmp_path, constant):
    model, onnx = _onnx_model(constant=constant)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    found = checkpoints.read_kernels(path)
    np.testing.assert_array_equal(found.weights, CONV)
    np.testing.assert_array_equal(found.bias, BIAS)
    assert found.key == "w" and found.provenance["format"] == "onnx"
    assert found.geometry == {"stride": (2, 3), "padding": (2, 2), "dilation": (1, 2), "groups": 1}
    # The Conv node's name selects it too; an unknown name lists the valid ones.
    assert checkpoints.read_kernels(path, "conv").key == "w"
    with pytest.raises(KernelSpecError, match=r"no layer 'nope'; give one of: w, conv"):
        checkpoints.read_kernels(path, "nope")


def test_onnx_same_and_asymmetric_padding_and_groups(tmp_path):
    model, onnx = _onnx_model(auto_pad="SAME_UPPER", group=3)
    onnx.save(model, tmp_path / "same.onnx")
    bank = load_kernels(tmp_path / "same.onnx")
    assert bank.groups == 3 and bank.weights.shape == (6, 1, 5, 5)
    # "same" with kernel 5 and dilation (1, 2): (k - 1) * d / 2 each side.
    assert bank.padding == (2, 4) and bank.provenance["padding_mode"] == "same"
    model, onnx = _onnx_model(pads=(1, 2, 3, 4))
    onnx.save(model, tmp_path / "asym.onnx")
    found = checkpoints.read_kernels(tmp_path / "asym.onnx")
    assert found.geometry["padding"] == (1, 2) and found.geometry["padding_end"] == (3, 4)


def test_onnx_external_data(tmp_path):
    model, onnx = _onnx_model()
    onnx.save(
        model,
        tmp_path / "ext.onnx",
        save_as_external_data=True,
        location="ext.data",
        size_threshold=0,
    )
    assert (tmp_path / "ext.data").stat().st_size >= CONV.nbytes
    np.testing.assert_array_equal(load_kernels(tmp_path / "ext.onnx").weights, CONV)
    (tmp_path / "ext.data").unlink()
    with pytest.raises(KernelSpecError) as err:
        load_kernels(tmp_path / "ext.onnx")
    assert "ext.data" in str(err.value) and "\n" not in str(err.value)


def test_onnx_without_conv_is_no_convolution(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "relu.onnx")
    with pytest.raises(tensors.NoConvolution, match="no Conv node"):
        load_kernels(tmp_path / "relu.onnx")


# --- TensorFlow.js ----------------------------------------------------------------------------


def test_tfjs_model_json_with_two_shards_and_quantization(tmp_path):
    kernel = CONV.transpose(2, 3, 1, 0)  # Keras layout (kH, kW, C, N)
    raw = kernel.astype("<f4").tobytes() + BIAS.astype("<f4").tobytes()
    (tmp_path / "group1-shard1of2.bin").write_bytes(raw[:1000])
    (tmp_path / "group1-shard2of2.bin").write_bytes(raw[1000:])
    topology = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {
                    "class_name": "Conv2D",
                    "config": {
                        "name": "c1",
                        "filters": 6,
                        "kernel_size": [5, 5],
                        "strides": [2, 2],
                        "padding": "same",
                        "dilation_rate": [1, 1],
                    },
                }
            ],
        },
    }
    manifest = [
        {
            "paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"],
            "weights": [
                {"name": "c1/kernel", "shape": list(kernel.shape), "dtype": "float32"},
                {"name": "c1/bias", "shape": [6], "dtype": "float32"},
            ],
        }
    ]
    document = {"modelTopology": topology, "weightsManifest": manifest, "format": "layers-model"}
    (tmp_path / "model.json").write_text(json.dumps(document))
    bank = load_kernels(tmp_path / "model.json")
    np.testing.assert_array_equal(bank.weights, CONV)
    np.testing.assert_array_equal(bank.bias, BIAS)
    assert bank.layer == "c1" and bank.stride == (2, 2) and bank.padding == (2, 2)
    assert bank.provenance["format"] == "tfjs" and bank.stride_known
    # uint8-quantized weights are dequantized with the manifest's scale and min.
    q = np.arange(kernel.size, dtype=np.uint8).reshape(kernel.shape) % 251
    (tmp_path / "q.bin").write_bytes(q.tobytes())
    manifest = [
        {
            "paths": ["q.bin"],
            "weights": [
                {
                    "name": "c1/kernel",
                    "shape": list(kernel.shape),
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
                }
            ],
        }
    ]
    (tmp_path / "q.json").write_text(json.dumps({**document, "weightsManifest": manifest}))
    expected = (q.astype(np.float32) * 0.5 - 1.0).transpose(3, 2, 0, 1)
    np.testing.assert_allclose(load_kernels(tmp_path / "q.json").weights, expected)
    # Over HTTP: the shards are read next to the URL, by Range requests.
    with range_server.RangeServer(tmp_path) as server:
        remote = load_kernels(f"{server.url}/model.json", use_cache=False)
    np.testing.assert_array_equal(remote.weights, CONV)
    assert (remote.stride, remote.padding) == (bank.stride, bank.padding)
    # A shard path that leaves the model's folder is refused.
    manifest[0]["paths"] = ["../../etc/passwd"]
    (tmp_path / "bad.json").write_text(json.dumps({**document, "weightsManifest": manifest}))
    with pytest.raises(KernelSpecError, match="outside its folder"):
        load_kernels(tmp_path / "bad.json")
    with (
        range_server.RangeServer(tmp_path) as server,
        pytest.raises(KernelSpecError, match="outside its folder"),
    ):
        load_kernels(f"{server.url}/bad.json", use_cache=False)


# --- local and remote: the same results, the same errors ----------------------------------------


def _hostile(tmp: Path) -> dict[str, bytes]:
    """Crafted files, each with the weights a real file would have nearby."""
    import torch

    good = _torch_bytes({"conv.weight": torch.from_numpy(CONV)})
    files = {
        "code.bin": _torch_bytes({"conv.weight": torch.ones(2, 1, 3), "x": _Payload(tmp / "X")}),
        "legacy-code.bin": _torch_bytes({"x": _Payload(tmp / "X")}, legacy=True),
        "truncated.bin": good[: len(good) // 2],
        "garbage.bin": bytes(range(256)) * 4,
        "tar.bin": bytes(257) + b"ustar" + bytes(300),
        "huge-header.bin": struct.pack("<Q", 2**40) + b"{" + bytes(2000),
        "span.bin": _safetensors({"w": ("F32", np.ones(1, np.float32))}).replace(
            b"[1]", b"[100000, 1000, 3, 3]"
        ),
        "bad-dtype.bin": _safetensors({"w": ("F32", CONV)}).replace(b'"F32"', b'"Q99"'),
        "no-conv.bin": _safetensors({"fc": ("F32", np.ones((3, 4), np.float32))}),
        "not-a-state-dict.bin": _torch_bytes([1, 2, 3]),
        "onnx-cut.bin": b"\x08\x07\x3a\xff\xff\xff\x0f" + bytes(50),
        "big-kernel.bin": _safetensors({"w": ("F32", np.ones((1, 1, 65, 65), np.float32))}),
    }
    pickled = pickle.dumps({"conv.weight": 1}, protocol=2)
    files["plain-pickle.bin"] = pickled
    return files


def test_hostile_files_local_and_remote_alike(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    files = _hostile(tmp_path)
    for name, data in files.items():
        (served / name).write_bytes(data)
    with range_server.RangeServer(served) as server:
        for name in files:
            with pytest.raises(KernelSpecError) as local:
                load_kernels(served / name)
            url = f"{server.url}/{name}"
            with pytest.raises(KernelSpecError) as remote:
                load_kernels(url, use_cache=False)
            local_text, remote_text = str(local.value), str(remote.value)
            assert "\n" not in local_text and "\n" not in remote_text
            assert remote_text.replace(url, name) == local_text, name
    assert not (tmp_path / "X").exists()


def test_good_files_local_and_remote_alike(tmp_path):
    import torch

    served = tmp_path / "served"
    served.mkdir()
    state = {"conv.weight": torch.from_numpy(CONV), "conv.bias": torch.from_numpy(BIAS)}
    (served / "zip.bin").write_bytes(_torch_bytes(state))
    (served / "legacy").write_bytes(_torch_bytes(state, legacy=True))
    (served / "st.bin").write_bytes(
        _safetensors({"conv.weight": ("F32", CONV), "conv.bias": ("F32", BIAS)})
    )
    model, onnx = _onnx_model()
    onnx.save(model, served / "m.onnx")
    shutil.copy(served / "m.onnx", served / "onnx-no-extension")
    with range_server.RangeServer(served) as server:
        for name in ("zip.bin", "legacy", "st.bin", "m.onnx", "onnx-no-extension"):
            local = load_kernels(served / name)
            remote = load_kernels(f"{server.url}/{name}", use_cache=False)
            np.testing.assert_array_equal(local.weights, CONV)
            np.testing.assert_array_equal(remote.weights, CONV)
            np.testing.assert_array_equal(local.bias, remote.bias)
            assert (local.layer, local.stride, local.padding, local.dilation) == (
                remote.layer,
                remote.stride,
                remote.padding,
                remote.dilation,
            ), name
