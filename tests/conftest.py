"""Shared fixtures: synthetic filters with known answers, and isolated caches."""

from __future__ import annotations

import numpy as np
import pytest


def make_gabor(
    size: int,
    frequency: float,
    theta_deg: float,
    phase: float = 0.0,
    sigma: float | None = None,
) -> np.ndarray:
    """A (size, size) Gabor: wave vector at `theta_deg` from +x towards +y (rows, down)."""
    sigma = sigma if sigma is not None else size / 4
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    t = np.radians(theta_deg)
    envelope = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return envelope * np.cos(2 * np.pi * frequency * (x * np.cos(t) + y * np.sin(t)) + phase)


@pytest.fixture
def gabor():
    """The `make_gabor` function."""
    return make_gabor


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Keep every test away from the real ~/.cache and torch hub folder."""
    root = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("KERNELSPEC_CACHE", str(root / "kernelspec"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: on a shared 2-core machine, OpenMP's second thread
    waits for a busy core and made a ResNet50 forward 10-40x slower (measured here)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (exit status, stdout, stderr)``: ``kernelspec`` run in this process."""
    from napari_kernelspec.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory):
    """A cache folder holding LeNet5 trained on the digits (trained once per session, ~7 s).

    Point ``KERNELSPEC_CACHE`` at it (``monkeypatch.setenv``) to use the trained weights.
    """
    from napari_kernelspec.sources import digits

    root = tmp_path_factory.mktemp("digits-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERNELSPEC_CACHE", str(root))
        digits.trained_lenet5()
    return root


@pytest.fixture(scope="session")
def trained_lenet5(digits_cache):
    """``(model, x_test, y_test)``: the trained LeNet5 as an ExplainModel on the CPU, and the
    first 20 held-out digits (1, 32, 32) in [0, 1] with their labels."""
    from napari_kernelspec.imaging.explain.model import explain_model
    from napari_kernelspec.sources.digits import load_digits_32

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERNELSPEC_CACHE", str(digits_cache))
        model = explain_model("lenet5", weights="pretrained", device="cpu")
    _, _, x_test, y_test = load_digits_32()
    return model, x_test[:20], y_test[:20]
