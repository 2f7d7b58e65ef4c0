"""Feature maps: known answers from an independent reference, the geometry, tiling, images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from napari_kernelspec import KernelBank, KernelSpecError
from napari_kernelspec.imaging import feature_maps
from napari_kernelspec.imaging.images import LUMA
from napari_kernelspec.imaging.network import graph_geometry, layer_geometry


def reference(image, weights, bias, stride, padding, dilation, groups):
    """Cross-correlation by scipy, per channel and summed: the textbook convolution layer.

    image (C_in, H, W) float64; weights (N, C_in / groups, kh, kw).
    """
    n, cg, kh, kw = weights.shape
    padded = np.pad(image, ((0, 0), (padding[0],) * 2, (padding[1],) * 2))
    out = []
    per_group = n // groups
    for f in range(n):
        g = f // per_group
        kernel = np.zeros(((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1))
        acc = 0.0
        for c in range(cg):
            kernel[:] = 0
            kernel[:: dilation[0], :: dilation[1]] = weights[f, c]
            acc = acc + signal.correlate(padded[g * cg + c], kernel, mode="valid")
        out.append(acc[:: stride[0], :: stride[1]] + (bias[f] if bias is not None else 0.0))
    return np.stack(out)


def bank_of(weights, **kw):
    return KernelBank(weights=weights, model="test.npy", layer="w", source="array", **kw)


CASES = [
    # (C_in, groups, N, kh, kw, stride, padding, dilation)
    (1, 1, 4, 3, 3, 1, 0, 1),
    (3, 1, 6, 4, 4, 2, 1, 1),  # even kernel
    (3, 1, 5, 5, 2, 4, 3, 2),  # non-square, even width, dilated
    (1, 1, 3, 2, 2, 2, 3, 2),
    (3, 1, 4, 7, 7, 4, 0, 1),
    (3, 3, 6, 3, 3, 1, 1, 2),  # depthwise-style groups: 2 filters per input channel
]


@pytest.mark.parametrize(("c", "groups", "n", "kh", "kw", "s", "p", "d"), CASES)
def test_maps_equal_scipy_reference(c, groups, n, kh, kw, s, p, d):
    rng = np.random.default_rng(kh * 100 + s * 10 + p)
    weights = rng.normal(size=(n, c // groups, kh, kw)).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32)
    image = rng.random((41, 37) if c == 1 else (41, 37, 3)).astype(np.float32)
    bank = bank_of(weights, stride=s, padding=p, dilation=d, groups=groups, bias=bias)
    result = feature_maps(bank, image, relu=False, normalize="none")
    chw = image[None] if c == 1 else np.moveaxis(image, -1, 0)
    expected = reference(chw.astype(np.float64), weights, bias, (s, s), (p, p), (d, d), groups)
    assert result.maps.dtype == np.float32
    assert result.maps.shape == expected.shape
    np.testing.assert_allclose(
        result.maps, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
    )
    # the geometry of a single convolution
    np.testing.assert_array_equal(result.scale, [s, s])
    np.testing.assert_allclose(result.translate, [(kh - 1) / 2 * d - p, (kw - 1) / 2 * d - p])
    np.testing.assert_array_equal(result.receptive_field, [(kh - 1) * d + 1, (kw - 1) * d + 1])
    relu = feature_maps(bank, image, normalize="none")
    np.testing.assert_allclose(relu.maps, np.maximum(result.maps, 0), atol=1e-6)


def test_geometry_override_replaces_the_bank_geometry():
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    image = rng.random((20, 20)).astype(np.float32)
    result = feature_maps(bank_of(weights), image, stride=2, padding=1, relu=False)
    expected = reference(image[None].astype(float), weights, None, (2, 2), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-5)
    assert result.meta["stride"] == [2, 2] and result.meta["padding"] == [1, 1]


@pytest.mark.parametrize(("s", "p", "k"), [(1, 0, 5), (2, 1, 4), (4, 2, 11), (3, 0, 6)])
def test_tiled_equals_untiled(s, p, k):
    rng = np.random.default_rng(s)
    weights = rng.normal(size=(3, 3, k, k)).astype(np.float32)
    image = (rng.random((97, 64, 3)) * 255).astype(np.uint8)
    bank = bank_of(weights, stride=s, padding=p)
    whole = feature_maps(bank, image, relu=False)
    tiled = feature_maps(bank, image, relu=False, tile_bytes=1)  # one output row per band
    assert whole.meta["tiles"] == 1
    assert tiled.meta["tiles"] == whole.maps.shape[1] > 5
    np.testing.assert_allclose(tiled.maps, whole.maps, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("model", "layer"), [("resnet18", "layer2.0.conv1"), ("mobilenet_v2", "features.4.conv.1.0")]
)
def test_tiled_equals_untiled_inside_a_network(monkeypatch, model, layer):
    from napari_kernelspec.imaging import maps

    image = (np.random.default_rng(2).random((150, 90, 3)) * 255).astype(np.uint8)
    whole = feature_maps(model, image, layer, weights="random")
    monkeypatch.setattr(maps, "_NETWORK_TILE_PIXELS", 90 * 24)
    tiled = feature_maps(model, image, layer, weights="random")
    assert whole.meta["tiles"] == 1 and tiled.meta["tiles"] > 4
    np.testing.assert_allclose(tiled.maps, whole.maps, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("k", "s", "p", "d"), [(5, 1, 2, 1), (4, 2, 1, 1), (7, 4, 2, 1), (3, 2, 0, 2)]
)
def test_planted_pattern_peaks_at_its_world_position(k, s, p, d):
    """A copy of filter j's own pattern centred at (y, x): map j peaks where it lies."""
    rng = np.random.default_rng(k + s)
    # smooth positive blobs with random texture: a unimodal autocorrelation, so that the best
    # stride-grid position off the grid is the nearest one
    yy, xx = np.mgrid[:k, :k] - (k - 1) / 2
    blob = np.exp(-(yy**2 + xx**2) / (2 * (k / 3) ** 2))
    weights = (blob * (1 + 0.3 * rng.random((4, 1, k, k)))).astype(np.float32)
    bank = bank_of(weights, stride=s, padding=p, dilation=d)
    span = (k - 1) * d + 1
    checked = 0
    shift = 0.5 if span % 2 == 0 else 0.0  # an even kernel is centred between pixels
    for j, (y, x) in enumerate([(20, 24), (31, 17), (24, 26), (27, 30)]):
        y, x = y + shift, x + shift
        image = np.zeros((56, 60), dtype=np.float32)  # constant: zero, like the padding
        top, left = y - (span - 1) / 2, x - (span - 1) / 2
        patch = image[int(top) : int(top) + span : d, int(left) : int(left) + span : d]
        patch += 0.1 * weights[j, 0] / np.abs(weights[j, 0]).max()
        result = feature_maps(bank, image, relu=False, normalize="none")
        peak = np.unravel_index(np.argmax(result.maps[j]), result.maps[j].shape)
        world = result.centre(peak)
        on_grid = ((np.array([y, x]) - result.translate) % s == 0).all()
        if not on_grid and d > 1:
            continue  # a dilated filter one pixel off its taps sees none of the sparse copy
        checked += 1
        if on_grid:
            np.testing.assert_allclose(world, [y, x])
        else:
            assert np.all(np.abs(world - [y, x]) <= s / 2), (world, (y, x))
        box = result.boxes(peak)
        if on_grid:
            assert tuple(box) == (int(top), int(left), int(top) + span, int(left) + span)
    assert checked >= 2


def test_image_kinds_and_channel_conversion():
    rng = np.random.default_rng(3)
    weights3 = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
    weights1 = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    rgb8 = (rng.random((16, 18, 3)) * 255).astype(np.uint8)
    rgba8 = np.dstack([rgb8, np.full((16, 18), 7, np.uint8)])
    b3, b1 = bank_of(weights3), bank_of(weights1)
    base = feature_maps(b3, rgb8, relu=False)
    assert base.meta["scaling"] == "uint8 / 255" and base.meta["normalisation"] == "[0, 1]"
    np.testing.assert_allclose(
        base.maps, feature_maps(b3, rgb8.astype(np.float32) / 255, relu=False).maps, atol=1e-5
    )
    alpha = feature_maps(b3, rgba8, relu=False)
    np.testing.assert_array_equal(alpha.maps, base.maps)
    assert "alpha dropped" in alpha.meta["channels"]
    rgb16 = rgb8.astype(np.uint16) * 257  # the same intensities in 16 bits
    np.testing.assert_allclose(feature_maps(b3, rgb16, relu=False).maps, base.maps, atol=1e-5)
    grey = rgb8[:, :, 0]
    repeated = feature_maps(b3, grey, relu=False)
    assert repeated.meta["channels"] == "grey repeated on 3 channels"
    np.testing.assert_allclose(
        repeated.maps, feature_maps(b3, np.dstack([grey] * 3), relu=False).maps, atol=1e-6
    )
    lum = feature_maps(b1, rgb8, relu=False)
    assert lum.meta["channels"].startswith("RGB -> luminance")
    luminance = (rgb8.astype(np.float32) / 255) @ np.array(LUMA, np.float32)
    np.testing.assert_allclose(lum.maps, feature_maps(b1, luminance, relu=False).maps, atol=1e-5)
    # float outside [0, 1]: min-max for auto, as given for none
    big = rgb8.astype(np.float32) * 4 + 10
    np.testing.assert_allclose(
        feature_maps(b3, big, relu=False).maps,
        feature_maps(b3, (big - big.min()) / (big.max() - big.min()), relu=False).maps,
        atol=1e-5,
    )
    raw = feature_maps(b3, big, relu=False, normalize="none")
    assert raw.meta["normalisation"] == "none"
    np.testing.assert_allclose(
        raw.maps, feature_maps(b3, big / 1000, relu=False, normalize="none").maps * 1000, rtol=1e-4
    )


def test_imagenet_normalisation_for_torchvision_models():
    from napari_kernelspec import load_kernels
    from napari_kernelspec.imaging.images import IMAGENET_MEAN, IMAGENET_STD

    bank = load_kernels("alexnet", weights="random")
    image = (np.random.default_rng(4).random((40, 40, 3)) * 255).astype(np.uint8)
    result = feature_maps(bank, image, relu=False)
    assert result.meta["normalisation"] == "ImageNet mean / std"
    x = (image / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    expected = reference(np.moveaxis(x, -1, 0), bank.weights, bank.bias, (4, 4), (2, 2), (1, 1), 1)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-4)
    plain = feature_maps(bank, image, relu=False, normalize="none")
    assert plain.meta["normalisation"] == "none"


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 5)),
        np.zeros((5, 5, 2)),
        np.zeros((4, 4, 4, 4)),
        np.array([[np.nan, 1.0], [1.0, 1.0]]),
        np.array([["a"]]),
    ],
)
def test_bad_images_are_one_line_errors(bad):
    bank = bank_of(np.ones((1, 1, 1, 1), np.float32))
    with pytest.raises(KernelSpecError) as info:
        feature_maps(bank, bad)
    assert "\n" not in str(info.value)


def test_image_smaller_than_the_kernel():
    bank = bank_of(np.ones((1, 1, 9, 9), np.float32))
    with pytest.raises(KernelSpecError, match="smaller than"):
        feature_maps(bank, np.ones((5, 30)))
    with pytest.raises(KernelSpecError, match="smaller than"):
        feature_maps("resnet18", np.ones((5, 40, 3)), "layer3.0.conv1", weights="random")


def test_a_layer_that_is_not_a_convolution_lists_valid_names():
    with pytest.raises(KernelSpecError, match=r"give one of: .*layer1\.0\.conv1") as info:
        feature_maps("resnet18", np.ones((64, 64, 3)), "layer1.0.bn1", weights="random")
    assert "\n" not in str(info.value)


def test_geometry_override_on_a_deep_layer_is_refused():
    with pytest.raises(KernelSpecError, match="first layer"):
        feature_maps(
            "resnet18", np.ones((64, 64, 3)), "layer1.0.conv1", weights="random", stride=2
        )


# --- deeper layers -----------------------------------------------------------------------


def _gradient_boxes(gm, size, points):
    """Bounding box of the input pixels with a nonzero gradient of output pixels (i, j)."""
    import torch

    boxes = []
    for i, j in points:
        hit = np.zeros((size, size), bool)
        for seed in range(3):  # max-pool routes gradients to one input: union a few inputs
            torch.manual_seed(seed)
            x = torch.randn(1, 3, size, size, requires_grad=True)
            out = gm(x)["out"]
            out[0, :, i, j].sum().backward()
            hit |= (x.grad[0].abs().sum(0) > 0).numpy()
        rows, cols = np.flatnonzero(hit.any(1)), np.flatnonzero(hit.any(0))
        boxes.append((rows[0], cols[0], rows[-1] + 1, cols[-1] + 1))
    return np.array(boxes)


@pytest.mark.parametrize(
    ("model", "layer"),
    [
        ("resnet18", "layer2.0.conv1"),
        ("vgg11", "features.6"),
        ("googlenet", "inception3a.branch3.1.conv"),
        ("mobilenet_v2", "features.4.conv.1.0"),  # inside torchvision's Conv2dNormActivation
    ],
)
def test_network_geometry_matches_the_gradient(model, layer):
    """The analytic receptive field of interior output pixels = where the gradient reaches."""
    import torch

    from napari_kernelspec.imaging.network import _extractor
    from napari_kernelspec.sources.models import build_model

    geo = layer_geometry(model, layer)
    torch.manual_seed(0)
    net = build_model(model, "cpu")
    gm = _extractor(net, layer)  # torchvision's extractor, or the plain trace it falls back on
    half = (geo.receptive_field[0] - 1) / 2
    i0 = int(np.ceil((half - geo.translate[0]) / geo.scale[0])) + 1  # first interior pixel
    points = [(i0, i0), (i0 + 1, i0 + 2)]
    size = int(geo.translate[0] + (i0 + 4) * geo.scale[0] + half) + 2
    boxes = _gradient_boxes(gm, size, points)
    for (i, j), box in zip(points, boxes, strict=True):
        centre = np.array(geo.translate) + np.array([i, j]) * geo.scale
        half = (np.array(geo.receptive_field) - 1) / 2
        np.testing.assert_allclose(box[:2], centre - half)
        np.testing.assert_allclose(box[2:], centre + half + 1)
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]["out"]
    assert graph_geometry(gm, out.name) == geo


def test_tiny_network_geometry_through_layers():
    """Two stacked convolutions and a pool: the textbook receptive-field recurrence."""
    geo = layer_geometry("lenet5", "conv2")
    # conv1 5x5 s1 -> avgpool 2 s2 -> conv2 5x5: rf = 5 + 1 + 4 * 2 = 14, jump 2, start 2.5 + 3
    assert geo.receptive_field == (14, 14)
    assert geo.scale == (2.0, 2.0)
    assert geo.translate == (6.5, 6.5)


def test_functional_pools_and_convs_in_the_graph():
    """F.max_pool2d / F.avg_pool2d calls compose like their modules (avg's 5th arg is ceil)."""
    import torch.nn.functional as F
    from torch import fx, nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3, padding=1)
            self.d = nn.Conv2d(2, 2, 3)

        def forward(self, x):
            x = F.max_pool2d(self.c(x), 2)
            x = F.avg_pool2d(x, 3, 1, 1, True)  # ceil_mode=True, not a dilation
            return self.d(x)

    geo = graph_geometry(fx.symbolic_trace(Net()), "d")
    # conv 3 p1 -> rf 3; max 2 s2 -> rf 4, jump 2, centre 0.5; avg 3 s1 p1 -> rf 8;
    # conv 3 -> rf 12, centre 0.5 + 1 * 2
    assert geo.receptive_field == (12, 12)
    assert geo.scale == (2.0, 2.0)
    assert geo.translate == (2.5, 2.5)
