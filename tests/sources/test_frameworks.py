"""Files of other frameworks, written by the frameworks themselves, read back exactly.

ONNX: ``torch.onnx.export`` of torchvision models (``do_constant_folding=False``, so the
weights stay the module's own). Keras 3: one small model saved by Keras (torch backend, in a
child process: ``import keras`` takes seconds) as ``.keras``, ``.weights.h5`` and legacy
``.h5``, plus a TensorFlow.js ``model.json`` written from the same model. Each layer read
here, run with ``torch.nn.functional.conv2d`` at the geometry read from the file, must give
Keras' own output: kernel layout and geometry are both checked by that.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.sources import checkpoints
from napari_kernelspec.sources.loading import load_kernels

_spec = importlib.util.spec_from_file_location(
    "range_server", Path(__file__).with_name("range_server.py")
)
range_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(range_server)


def _export(model, path: Path, size: int = 64) -> Path:
    import torch

    pytest.importorskip("onnx")
    model.eval()
    with torch.no_grad():
        torch.onnx.export(
            model,
            torch.zeros(1, 3, size, size),
            str(path),
            dynamo=False,
            do_constant_folding=False,
        )
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_onnx_export_of_torchvision_models_every_conv(tmp_path, name):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    path = _export(model, tmp_path / f"{name}.onnx")
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    first = load_kernels(path)
    assert first.layer == f"{convs[0][0]}.weight" and first.stride_known
    for layer, conv in convs:
        bank = load_kernels(path, layer=layer)
        np.testing.assert_array_equal(bank.weights, conv.weight.detach().numpy())
        assert bank.stride == conv.stride and bank.padding == conv.padding, layer
        assert bank.dilation == conv.dilation and bank.groups == conv.groups, layer


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_resnet50_onnx_over_http_reads_under_one_percent(tmp_path):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    served = tmp_path / "served"
    served.mkdir()
    path = _export(model, served / "resnet50.onnx", size=32)
    size = path.stat().st_size
    assert size > 90e6
    with range_server.RangeServer(served) as server:
        bank = load_kernels(f"{server.url}/resnet50.onnx", use_cache=False)
        sent = server.bytes_sent
    np.testing.assert_array_equal(bank.weights, model.conv1.weight.detach().numpy())
    assert bank.stride == (2, 2) and bank.padding == (3, 3)
    assert bank.provenance["bytes_transferred"] == sent
    assert sent <= 0.01 * size, (sent, size)
    print(f"resnet50.onnx: {sent} of {size} bytes ({100 * sent / size:.2f} %)")


# --- Keras ------------------------------------------------------------------------------------

_KERAS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import keras

    out = Path(sys.argv[1])
    keras.utils.set_random_seed(0)
    inp = keras.Input((21, 21, 3))
    c1 = keras.layers.Conv2D(6, 5, strides=2, padding="same", name="c1")(inp)
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(c1)
    c3 = keras.layers.Conv2D(4, 3, dilation_rate=2, groups=2, use_bias=False, name="c3")(dw)
    model = keras.Model(inp, [c1, dw, c3])
    for layer in model.layers[1:]:  # non-zero biases, so that they are checked too
        for var in layer.weights:
            var.assign(np.random.default_rng(1).standard_normal(var.shape).astype("float32"))
    x = np.random.default_rng(2).standard_normal((1, 21, 21, 3)).astype("float32")
    y1, y2, y3 = (np.asarray(keras.ops.convert_to_numpy(y)) for y in model(x))
    np.savez(out / "io.npz", x=x, c1=y1, dw=y2, c3=y3)
    model.save(out / "m.keras")
    model.save_weights(out / "m.weights.h5")
    model.save(out / "m.h5")
    # A TensorFlow.js layers model: the Keras config and one shard of float32 weights.
    specs, blobs = [], []
    for layer in model.layers:
        for var in layer.weights:
            value = np.asarray(keras.ops.convert_to_numpy(var), dtype="<f4")
            specs.append({"name": var.path, "shape": list(value.shape), "dtype": "float32"})
            blobs.append(value.tobytes())
    (out / "tfjs").mkdir()
    (out / "tfjs" / "group1-shard1of1.bin").write_bytes(b"".join(blobs))
    document = {
        "format": "layers-model",
        "modelTopology": {"model_config": json.loads(model.to_json())},
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": specs}],
    }
    (out / "tfjs" / "model.json").write_text(json.dumps(document))
    """
)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    if importlib.util.find_spec("keras") is None:  # not imported here: it takes seconds
        pytest.skip("keras is not installed (the 'keras' extra)")
    pytest.importorskip("h5py")
    out = tmp_path_factory.mktemp("keras")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    proc = subprocess.run(
        [sys.executable, "-c", _KERAS_SCRIPT, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _keras_output(bank, x_nhwc: np.ndarray) -> np.ndarray:
    """The layer's output from the weights and geometry read (NHWC, like Keras)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)
    bias = None if bank.bias is None else torch.from_numpy(bank.bias.copy())
    y = F.conv2d(
        x,
        torch.from_numpy(bank.weights.copy()),
        bias,
        stride=bank.stride,
        padding=bank.padding,
        dilation=bank.dilation,
        groups=bank.groups,
    )
    return y.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("file", ["m.keras", "m.h5", "tfjs/model.json"])
def test_keras_files_give_keras_outputs(keras_files, file):
    io_ = np.load(keras_files / "io.npz")
    inputs = {"c1": io_["x"], "dw": io_["c1"], "c3": io_["dw"]}
    first = load_kernels(keras_files / file)
    assert first.layer == "c1" and first.stride == (2, 2) and first.stride_known
    assert first.provenance["padding_mode"] == "same"
    for layer in ("c1", "dw", "c3"):
        bank = load_kernels(keras_files / file, layer=layer)
        np.testing.assert_allclose(
            _keras_output(bank, inputs[layer]), io_[layer], rtol=1e-4, atol=1e-4
        )
    assert load_kernels(keras_files / file, layer="dw").groups == 6
    assert load_kernels(keras_files / file, layer="c3").bias is None


def test_keras_weights_h5_without_config(keras_files):
    """The bare weights file has the kernels (no geometry: it stores no config)."""
    for layer in ("c1", "dw", "c3"):
        full = checkpoints.read_kernels(keras_files / "m.keras", layer)
        bare = checkpoints.read_kernels(keras_files / "m.weights.h5", layer)
        np.testing.assert_array_equal(bare.weights, full.weights)
        assert bare.geometry is None
    assert not load_kernels(keras_files / "m.weights.h5").stride_known


def test_keras_file_over_http(keras_files):
    with range_server.RangeServer(keras_files) as server:
        bank = load_kernels(f"{server.url}/m.keras", layer="dw", use_cache=False)
    local = load_kernels(keras_files / "m.keras", layer="dw")
    np.testing.assert_array_equal(bank.weights, local.weights)
    assert (bank.stride, bank.padding, bank.groups) == (local.stride, local.padding, 6)


def test_unknown_keras_layer_lists_the_convolutions(keras_files):
    from napari_kernelspec.base.errors import KernelSpecError

    with pytest.raises(KernelSpecError) as err:
        load_kernels(keras_files / "m.keras", layer="c2")
    listed = str(err.value).split("give one of: ")[1]
    assert set(listed.split(", ")) == {"c1", "dw", "c3"}
    assert json.loads((keras_files / "tfjs" / "model.json").read_text())["weightsManifest"]


def test_maps_and_explanations_of_a_keras_file(keras_files):
    """`feature_maps` of the Keras file's first layer are Keras' own output of it."""
    from napari_kernelspec.imaging.explain.model import explain_model
    from napari_kernelspec.imaging.explain.result import explain
    from napari_kernelspec.imaging.maps import feature_maps

    io_ = np.load(keras_files / "io.npz")
    for file in ("m.keras", "tfjs/model.json"):
        maps = feature_maps(keras_files / file, io_["x"][0], normalize="none", relu=False)
        np.testing.assert_allclose(
            maps.maps, io_["c1"][0].transpose(2, 0, 1), rtol=1e-4, atol=1e-4
        )
    model = explain_model(keras_files / "m.keras", device="cpu")
    result = explain(model, None, [0, 1], "maximize", size=24, steps=4, seed=0)
    assert result.images.shape[:2] == (2, 24) and np.isfinite(result.images).all()
