"""History steps: natural order, list order, clear errors; the LeNet5 history sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.sources.history import (
    history_steps,
    is_history_folder,
    lenet5_history,
    natural_key,
    step_name,
)


def test_folder_steps_are_in_natural_order(tmp_path):
    for name in ("step_10.pt", "step_9.pt", "step_2.pt", "notes.txt", ".step_1.pt"):
        (tmp_path / name).write_bytes(b"x")
    steps = history_steps(tmp_path)
    assert [p.name for p in steps] == ["step_2.pt", "step_9.pt", "step_10.pt"]
    assert [step_name(p) for p in steps] == ["step_2", "step_9", "step_10"]
    assert is_history_folder(tmp_path)
    assert sorted(["b2", "a10", "a9"], key=natural_key) == ["a9", "a10", "b2"]


def test_list_file_order_is_kept(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "steps.txt").write_text("# late first\nck/late.pt\n\nck/early.pt\n/abs/x.pt\n")
    steps = history_steps(tmp_path / "steps.txt")
    assert steps == [tmp_path / "ck" / "late.pt", tmp_path / "ck" / "early.pt", Path("/abs/x.pt")]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "no such folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no weights files"),
        (lambda p: (p / "one.pt").write_bytes(b"x") and p / "one.pt", "is one checkpoint"),
        (lambda p: (p / "l.txt").write_text("# nothing\n") and p / "l.txt", "names no"),
    ],
)
def test_bad_histories_are_one_clear_error(tmp_path, make, message):
    with pytest.raises(KernelSpecError, match=message):
        history_steps(make(tmp_path))


def test_lenet5_history_comes_from_the_shipped_weights_and_is_cached(
    tmp_path_factory, monkeypatch
):
    from napari_kernelspec.sources import digits

    # the same folder as the GUI tests' cache, so the sample is written once per session
    monkeypatch.setenv(
        "KERNELSPEC_CACHE", str(tmp_path_factory.getbasetemp() / "kernelspec-cache")
    )

    def no_training(*args, **kwargs):
        raise AssertionError("trained despite the shipped history")

    monkeypatch.setattr(digits, "train_lenet5", no_training)
    folder = lenet5_history()
    steps = history_steps(folder)
    epochs = digits.RECIPE["epochs"]
    assert [p.name for p in steps] == [f"epoch_{k:03d}.npz" for k in range(epochs + 1)]
    state, _, shipped = digits.read_shipped()
    for step, (name, layer) in zip(steps, shipped.items(), strict=True):
        with np.load(step) as data:
            assert sorted(data.files) == ["conv1.bias", "conv1.weight"], name
            np.testing.assert_array_equal(data["conv1.weight"], layer["conv1.weight"])
    with np.load(steps[-1]) as data:  # the last step is the trained first layer
        np.testing.assert_array_equal(data["conv1.weight"], state["conv1.weight"])
    stamp = steps[-1].stat().st_mtime_ns
    assert lenet5_history() == folder and steps[-1].stat().st_mtime_ns == stamp  # cached
