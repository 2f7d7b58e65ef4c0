"""The Explain widget's targets, methods and class choices (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec._napari.targets import (
    PREDICTED,
    class_choices,
    methods_for,
    parse_class,
)
from napari_kernelspec.base.errors import KernelSpecError


def test_each_target_offers_its_methods():
    assert "maximize" in methods_for("filters") and "gradcam" not in methods_for("filters")
    assert methods_for("class")[-3:] == ["gradcam", "guided-gradcam", "grabcut"]
    assert methods_for("synthesis") == ["class", "dream"]
    with pytest.raises(ValueError, match="target must be one of"):
        methods_for("pixels")


def test_class_choices_read_back_as_indices(tmp_path):
    from napari_kernelspec.imaging.explain.model import explain_model

    lenet = explain_model("lenet5", weights="random", device="cpu")
    choices = class_choices(lenet)
    assert choices == [PREDICTED, *map(str, range(10))]
    assert [parse_class(c) for c in choices] == [None, *range(10)]
    assert parse_class("281 tabby") == 281
    with pytest.raises(KernelSpecError, match="class must be"):
        parse_class("tabby")
    path = tmp_path / "one.npy"  # one conv layer: no class scores, only "predicted"
    np.save(path, np.random.default_rng(0).normal(size=(3, 3, 5, 5)).astype(np.float32))
    assert class_choices(explain_model(str(path), device="cpu")) == [PREDICTED]
