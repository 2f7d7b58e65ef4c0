"""Import hygiene: a light package import, and no matplotlib anywhere on our code paths."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "torchvision", "sklearn", "scipy", "napari", "qtpy", "jinja2", "matplotlib")


def run_python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return proc.stdout.strip()


def test_importing_the_package_imports_nothing_heavy():
    out = run_python(
        f"import sys, napari_kernelspec; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert out == ""


def test_cli_analysis_never_imports_matplotlib_or_a_gui():
    out = run_python(
        "import sys, io, contextlib\n"
        "from napari_kernelspec.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['analyze', 'lenet5', '--weights', 'random', '--json', '-']) == 0\n"
        "    assert main(['analyze', 'alexnet', '--weights', 'random', '--method', 'seed']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6')))"
    )
    assert out == "[]"


def test_a_cached_model_loads_without_importing_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELSPEC_CACHE", str(tmp_path))
    load = (
        "import sys\n"
        "from napari_kernelspec import load_kernels\n"
        "bank = load_kernels('resnet50', weights='random')\n"
        "print(bank.layer, bank.stride, bank.padding, bank.provenance['cached'], "
        "'torch' in sys.modules)"
    )
    first = run_python(load)
    second = run_python(load)
    assert first == "conv1 (2, 2) (3, 3) False True"
    assert second == "conv1 (2, 2) (3, 3) True False"
