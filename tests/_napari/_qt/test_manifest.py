"""The npe2 manifest: valid, found from the installed distribution, shipped in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "src" / "napari_kernelspec" / "napari.yaml"


def test_manifest_name_is_the_distribution_name():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-kernelspec"
    widgets = [w.display_name for w in manifest.contributions.widgets]
    assert widgets[0] == "Kernel spectrum"
    assert {"Explain filters", "Feature maps", "Dataset"} <= set(widgets)
    patterns = set(manifest.contributions.readers[0].filename_patterns)
    torch_and_arrays = {f"*{s}" for s in (".pth", ".pt", ".ckpt", ".safetensors", ".npy", ".npz")}
    other_frameworks = {"*.onnx", "*.keras", "*.h5", "model.json"}
    assert patterns == torch_and_arrays | other_frameworks
    keys = {s.key for s in manifest.contributions.sample_data}
    assert keys == {"lenet5_digits", "lenet5_history", "alexnet"}
    assert manifest.contributions.readers[0].accepts_directories  # checkpoint folders
    writers = {
        (w.command.split(".")[-1], tuple(w.layer_types), ext)
        for w in manifest.contributions.writers
        for ext in w.filename_extensions
    }
    assert writers == {
        ("write_bank", ("image",), ".npy"),
        ("write_bank", ("image",), ".safetensors"),
        ("write_bank", ("points",), ".npy"),
        ("write_bank", ("points",), ".safetensors"),
        ("write_filter_table", ("image",), ".csv"),  # points .csv stays napari's own
    }


def test_installed_distribution_provides_the_manifest():
    """What napari sees from the (editable or wheel) install: entry point -> manifest."""
    from npe2 import PluginManager, PluginManifest

    manifest = PluginManifest.from_distribution("napari-kernelspec")
    manifest.validate_imports()
    pm = PluginManager()
    pm.discover()
    assert "napari-kernelspec" in pm.iter_manifests() or pm.get_manifest("napari-kernelspec")
    widgets = [(m, w.display_name) for m, w in _iter_widgets(pm)]
    assert ("napari-kernelspec", "Kernel spectrum") in widgets
    assert ("napari-kernelspec", "Feature maps") in widgets


def _iter_widgets(pm):
    for widget in pm.iter_widgets():
        yield widget.plugin_name, widget


def test_npe2_validate_cli():
    npe2 = Path(sys.executable).with_name("npe2")
    out = subprocess.run(
        [str(npe2), "validate", "napari-kernelspec"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_wheel_ships_the_manifest(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if out.returncode != 0 and "Could not find a version" in out.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("napari_kernelspec-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "napari_kernelspec/napari.yaml" in names
        for template in ("report.html.j2", "_model.html.j2", "report.css", "report.js"):
            assert f"napari_kernelspec/report/templates/{template}" in names
        # the trained LeNet5 weights ship in the wheel, byte for byte
        import hashlib

        from napari_kernelspec.sources import digits

        shipped = archive.read("napari_kernelspec/sources/data/lenet5_digits.npz")
        assert hashlib.sha256(shipped).hexdigest() == digits.SHIPPED_SHA256
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        text = archive.read(entry_points).decode()
        yaml_text = archive.read("napari_kernelspec/napari.yaml").decode()
    assert "[napari.manifest]" in text
    assert "napari-kernelspec = napari_kernelspec:napari.yaml" in text
    from npe2 import PluginManifest

    manifest_file = tmp_path / "napari.yaml"
    manifest_file.write_text(yaml_text)
    assert PluginManifest.from_file(manifest_file).name == "napari-kernelspec"
