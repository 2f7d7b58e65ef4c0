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


def test_lenet5_history_is_deterministic_trained_and_cached(tmp_path_factory, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from napari_kernelspec.sources.digits import RECIPE, _deterministic_torch, load_digits_32
    from napari_kernelspec.sources.models import lenet5_class

    # the same folder as the GUI tests' cache, so the sample is trained once per session
    monkeypatch.setenv(
        "KERNELSPEC_CACHE", str(tmp_path_factory.getbasetemp() / "kernelspec-cache")
    )
    folder = lenet5_history()
    steps = history_steps(folder)
    assert [p.name for p in steps] == [f"epoch_{k:03d}.pt" for k in range(RECIPE["epochs"] + 1)]
    net = lenet5_class()()
    with _deterministic_torch(int(RECIPE["seed"])):
        init = lenet5_class()().conv1.weight.detach().numpy()
    first = torch.load(steps[0], weights_only=True)
    np.testing.assert_array_equal(first["conv1.weight"].numpy(), init)  # step 0 = the seeded init

    _, _, x_test, y_test = load_digits_32()

    def accuracy(path) -> float:
        net.load_state_dict(torch.load(path, weights_only=True))
        with torch.no_grad():
            return float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())

    assert accuracy(steps[0]) < 0.3  # untrained: near chance (10 classes)
    assert accuracy(steps[-1]) > 0.9  # trained
    stamp = steps[-1].stat().st_mtime_ns
    assert lenet5_history() == folder and steps[-1].stat().st_mtime_ns == stamp  # cached
