"""The `kernelspec` command: summaries, JSON, and one clear line for every bad input."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_kernelspec.analysis.descriptors import DESCRIPTOR_NAMES
from napari_kernelspec.cli import main

SEED_EIGHT = [
    "alexnet",
    "vgg16",
    "resnet50",
    "lenet5",
    "densenet121",
    "mobilenet_v2",
    "googlenet",
    "inception_v3",
]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse rejects bad option values itself
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_lists_the_eight_seed_models_first(capsys):
    code, out, _ = run(capsys, "models")
    names = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and names == SEED_EIGHT
    code, out, _ = run(capsys, "models", "--all")
    names = [line.split()[0] for line in out.splitlines()]
    assert names[:8] == SEED_EIGHT
    assert {"vit_b_16", "convnext_tiny", "resnet18"} <= set(names[8:])
    groups = [line for line in out.splitlines() if line.startswith("# ")]
    assert [g.split(":")[0] for g in groups] == ["# torchvision", "# timm"]
    timm_names = out.split("# timm")[1].splitlines()[1:]
    assert "timm:resnet50.a1_in1k" in timm_names
    assert all(n.startswith("timm:") for n in timm_names)


def test_analyze_prints_a_summary_with_the_weights_source_and_clusters(capsys):
    code, out, err = run(capsys, "analyze", "MobileNetV2", "--weights", "random")
    assert code == 0, err
    assert "model: MobileNetV2" in out and "layer: features.0.0" in out
    assert "weights: random (UNTRAINED" in out
    assert "filters: 32 x 3 channels x 3x3, stride 2x2" in out
    assert "clusters found:" in out and "duplicates (cos >= 0.93)" in out


def test_analyze_json_to_stdout_is_only_json_with_every_field(capsys):
    code, out, _ = run(
        capsys, "analyze", "vgg16", "--weights", "random", "--json", "-", "--threshold", "0.9"
    )
    assert code == 0
    data = json.loads(out)
    for key in ("model", "layer", "weights", "shape", "stride", "method", "threshold"):
        assert key in data
    assert data["model"] == "vgg16" and data["layer"] == "features.0"
    assert data["weights"] == "random" and data["shape"] == [64, 3, 3, 3]
    assert data["threshold"] == 0.9 and data["method"] == "response"
    assert len(data["labels"]) == 64
    assert sum(len(c) for c in data["clusters"]) == sum(lab >= 0 for lab in data["labels"])
    assert isinstance(data["duplicates"], list) and isinstance(data["sign_pairs"], list)
    assert [f["index"] for f in data["filters"]] == list(range(64))
    assert set(data["filters"][0]) == {"index", "cluster", *DESCRIPTOR_NAMES}


def test_analyze_json_file_and_seed_method(capsys, tmp_path):
    weights = np.random.default_rng(0).normal(size=(10, 3, 5, 5)).astype(np.float32)
    weights[6] = -weights[1]
    np.save(tmp_path / "filters.npy", weights)
    target = tmp_path / "out" / "result.json"
    code, out, _ = run(
        capsys, "analyze", str(tmp_path / "filters.npy"), "--method", "seed", "--json", str(target)
    )
    assert code == 0
    data = json.loads(target.read_text())
    assert data["method"] == "seed" and data["weights"] == "array"
    assert [p[:2] for p in data["sign_pairs"]] == [[1, 6]]
    assert "sign pairs (cos <= -0.93): 1: (1, 6, -1.000)" in out


class Boom:
    """A pickle whose loading would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    torch = pytest.importorskip("torch")
    cases: dict[str, tuple[list[str], str]] = {}
    cases["unknown model"] = (["analyze", "alexnot"], "unknown model")
    cases["missing file"] = (["analyze", str(tmp_path / "nope.pth")], "nope.pth")
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty file"] = (["analyze", str(tmp_path / "empty.pt")], "empty")
    torch.save({"conv.weight": torch.ones(4, 3, 3, 3)}, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    cases["truncated file"] = (["analyze", str(tmp_path / "truncated.pth")], "truncated.pth")
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x00garbage" * 64)
    cases["corrupt file"] = (["analyze", str(tmp_path / "corrupt.ckpt")], "corrupt.ckpt")
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"conv.weight": Boom(tmp_path / "PWNED")}, fh)
    cases["pickle needing code"] = (["analyze", str(tmp_path / "evil.pth")], "evil.pth")
    torch.save({"fc.weight": torch.ones(10, 5)}, tmp_path / "flat.pth")
    cases["no 4-D tensor"] = (["analyze", str(tmp_path / "flat.pth")], "4-D")
    nan = np.ones((2, 3, 3, 3), dtype=np.float32)
    nan[1, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    cases["NaN weights"] = (["analyze", str(tmp_path / "nan.npy")], "NaN")
    np.save(tmp_path / "inf.npy", np.full((2, 3, 3, 3), np.inf, dtype=np.float32))
    cases["Inf weights"] = (["analyze", str(tmp_path / "inf.npy")], "Inf")
    np.save(tmp_path / "zero.npy", np.zeros((2, 3, 3, 3), dtype=np.float32))
    cases["all-zero filters"] = (["analyze", str(tmp_path / "zero.npy")], "all-zero")
    cases["missing layer"] = (
        ["analyze", "resnet50", "--weights", "random", "--layer", "conv9"],
        "conv9",
    )
    cases["threshold 0"] = (["analyze", "vgg16", "--threshold", "0"], "threshold")
    cases["threshold 1.5"] = (["analyze", "vgg16", "--threshold", "1.5"], "threshold")
    cases["threshold text"] = (["analyze", "vgg16", "--threshold", "high"], "threshold")
    cases["min-samples 0"] = (["analyze", "vgg16", "--min-samples", "0"], "min-samples")
    return cases


CASE_NAMES = [
    "unknown model",
    "missing file",
    "empty file",
    "truncated file",
    "corrupt file",
    "pickle needing code",
    "no 4-D tensor",
    "NaN weights",
    "Inf weights",
    "all-zero filters",
    "missing layer",
    "threshold 0",
    "threshold 1.5",
    "threshold text",
    "min-samples 0",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_exits_2_with_one_line_and_no_traceback(case, tmp_path, capsys):
    argv, expected = bad_inputs(tmp_path)[case]
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kernelspec: error: ")
    assert expected.lower() in lines[0].lower()
    assert "Traceback" not in err
    assert not (tmp_path / "PWNED").exists()


def test_the_installed_console_script_refuses_a_malicious_pickle(tmp_path):
    marker = tmp_path / "PWNED"
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"w": Boom(marker)}, fh)
    script = Path(sys.executable).with_name("kernelspec")
    proc = subprocess.run(
        [str(script), "analyze", str(tmp_path / "evil.pt")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("kernelspec: error: ") and proc.stderr.count("\n") == 1
    assert "code execution" in proc.stderr or "unpickle" in proc.stderr
    assert not marker.exists()


def test_report_command_writes_html_json_and_csv(capsys, tmp_path):
    np.save(tmp_path / "mine.npy", np.random.default_rng(3).normal(size=(8, 3, 5, 5)))
    out = tmp_path / "r" / "report.html"
    code, stdout, err = run(
        capsys,
        "report",
        "--models",
        f"LeNet5, {tmp_path / 'mine.npy'}",
        "--weights",
        "random",
        "--threshold",
        "0.9",
        "--out",
        str(out),
        "--json",
        str(tmp_path / "all.json"),
    )
    assert code == 0, err
    assert f"report written to {out}" in stdout
    html = out.read_text()
    assert 'id="model-lenet5"' in html and "mine.npy" in html
    data = json.loads((tmp_path / "all.json").read_text())
    assert [r["model"] for r in data["results"]] == ["lenet5", "mine.npy"]
    assert all(r["threshold"] == 0.9 for r in data["results"])
    assert out.with_suffix(".csv").read_text().count("\n") == 6 + 8 + 1  # header + filters
    assert "2/2" in err  # the progress bar counts models


def test_report_command_refuses_an_unknown_model_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "report.html"
    code, _, err = run(capsys, "report", "--models", "alexnet,nosuchnet", "--out", str(out))
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("kernelspec: error: ")
    assert "nosuchnet" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--out", "{tmp}/report.txt"], ".html"),
        (["--out", "{tmp}"], ".html"),
        (["--out", "{tmp}/sub.html/"], "folder"),
        (["--out", "{tmp}/r.html", "--json", "{tmp}/r.html"], "three different files"),
        (["--out", "/proc/kernelspec/r.html"], "/proc/kernelspec"),
        (["--out", "{tmp}/r.html", "--json", "/proc/r.json"], "/proc"),
    ],
)
def test_report_command_refuses_bad_output_paths_before_any_work(capsys, tmp_path, args, expected):
    (tmp_path / "sub.html").mkdir()
    argv = [a.format(tmp=tmp_path) for a in args]
    code, _, err = run(capsys, "report", "--models", "lenet5", "--weights", "random", *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kernelspec: error: "), err
    assert expected in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.html"]


def test_a_file_layer_says_its_stride_is_unknown(capsys, tmp_path):
    np.save(tmp_path / "w.npy", np.random.default_rng(0).normal(size=(4, 3, 5, 5)))
    code, out, _ = run(capsys, "analyze", str(tmp_path / "w.npy"))
    assert code == 0
    assert "stride unknown (1 assumed" in out
    code, out, _ = run(capsys, "analyze", str(tmp_path / "w.npy"), "--json", "-")
    data = json.loads(out)
    assert data["stride"] == [1, 1] and data["stride_known"] is False


def test_weights_beyond_float32_are_named_as_such(capsys, tmp_path):
    np.save(tmp_path / "big.npy", np.full((2, 1, 3, 3), 1e300))
    code, _, err = run(capsys, "analyze", str(tmp_path / "big.npy"))
    assert code == 2 and "beyond the float32 range" in err and "rescale" in err


# --- long results, undefined values, hostile names, interruption ------------------------------


def _planted_clusters(groups: int, size: int, seed: int = 0) -> np.ndarray:
    """`groups` clusters of `size` nearly identical 5x5x3 filters (known answer)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, 3, 5, 5))
    noise = 0.01 * rng.normal(size=(groups, size, 3, 5, 5))
    return (centres[:, None] + noise).reshape(groups * size, 3, 5, 5).astype(np.float32)


def test_analyze_summarises_a_long_cluster_list_and_prints_descriptor_medians(capsys, tmp_path):
    np.save(tmp_path / "many.npy", _planted_clusters(60, 3))
    many = [str(tmp_path / "many.npy"), "--threshold", "0.98"]  # random centres differ less
    code, out, err = run(capsys, "analyze", *many)
    assert code == 0, err
    lines = out.splitlines()
    assert "clusters found: 60 (180 of 180 filters clustered)" in out
    listed = [line for line in lines if line.startswith("cluster ")]
    assert [line.split(" (")[0] for line in listed] == [f"cluster {k}" for k in range(10)]
    assert all("(3 filters)" in line for line in listed)
    assert "... 50 more clusters; --json has them all" in lines
    assert len(lines) < 25  # was one line per cluster (60 + 7)
    medians = next(line for line in lines if line.startswith("median peak frequency:"))
    assert "median orientation selectivity:" in medians and "achromatic filters:" in medians
    code, data, _ = run(capsys, "analyze", *many, "--json", "-")
    assert len(json.loads(data)["clusters"]) == 60  # --json has them all


def test_analyze_shows_n_a_for_descriptors_a_kernel_cannot_define(capsys, tmp_path, monkeypatch):
    import napari_kernelspec.analysis as analysis

    real = analysis.analyze

    def undefined_orientation(*args, **kwargs):  # what 1x1 kernels get (NaN, undefined)
        result = real(*args, **kwargs)
        result.descriptors["orientation_selectivity"] = np.full(len(result.labels), np.nan)
        return result

    monkeypatch.setattr(analysis, "analyze", undefined_orientation)
    np.save(tmp_path / "k.npy", _planted_clusters(2, 2))
    code, out, err = run(capsys, "analyze", str(tmp_path / "k.npy"))
    assert code == 0, err
    assert "median orientation selectivity: n/a" in out and "nan" not in out.lower()


def _hostile_checkpoint(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    key = "conv\nkernelspec: error: fake second line\x1b[2J\x1b[H"
    path = tmp_path / "net\x1b[31m.pth"
    torch.save({f"{key}.weight": torch.randn(4, 3, 3, 3)}, path)
    return path


def test_names_with_newlines_and_escape_codes_reach_the_terminal_escaped(capsys, tmp_path):
    path = _hostile_checkpoint(tmp_path)
    code, out, err = run(capsys, "analyze", str(path))
    assert code == 0, err
    assert "\x1b" not in out + err
    (first,) = [line for line in out.splitlines() if line.startswith("model:")]
    assert "layer: conv\\nkernelspec: error: fake second line\\x1b[2J\\x1b[H" in first
    assert not any(line.startswith("kernelspec: error") for line in out.splitlines())


def test_an_error_about_a_hostile_name_is_exactly_one_line(capsys, tmp_path):
    bad = tmp_path / "x\nkernelspec: error: forged\x1b[2J.npy"
    bad.write_bytes(b"not an array")
    code, _, err = run(capsys, "analyze", str(bad))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("kernelspec: error: ")
    assert "\x1b" not in err and "\\x1b[2J" in err
    code, _, err = run(capsys, "analyze", "alexnet\n\x1b[2J", "--weights", "random")
    assert code == 2 and err.count("\n") == 1 and "\x1b" not in err


def test_warnings_are_one_line_too(capsys, monkeypatch):
    import warnings

    import napari_kernelspec.cli.models as models

    def warn_then_list(args):
        warnings.warn("cannot reach\nkernelspec: error: forged\x1b[2J", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(models, "run", warn_then_list)
    code, _, err = run(capsys, "models")
    assert code == 0
    assert err == "kernelspec: warning: cannot reach\\nkernelspec: error: forged\\x1b[2J\n"


def test_ctrl_c_between_the_report_renames_is_reported_truthfully(capsys, tmp_path, monkeypatch):
    import os

    out = tmp_path / "r.html"
    assert (
        run(capsys, "report", "--models", "lenet5", "--weights", "random", "--out", str(out))[0]
        == 0
    )
    real = os.replace
    done: list[str] = []

    def replace(src, dst):
        if Path(dst).parent == tmp_path:
            if done:
                raise KeyboardInterrupt
            done.append(str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run(
        capsys, "report", "--models", "lenet5,vgg16", "--weights", "random", "--out", str(out)
    )
    assert code == 130
    json_path, csv_path = out.with_suffix(".json"), out.with_suffix(".csv")
    assert err.splitlines()[-1] == (
        f"kernelspec: interrupted; replaced {json_path}; left as they were: {csv_path}, {out}"
    )
    assert "nothing was written" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.html", "r.json"]


# --- issue 8, sources: geometry options, offline warnings, hostile names --------------------


def test_analyze_takes_a_files_geometry(capsys, tmp_path):
    np.save(tmp_path / "w.npy", np.random.default_rng(4).normal(size=(6, 3, 5, 5)))
    code, out, err = run(
        capsys,
        "analyze",
        str(tmp_path / "w.npy"),
        "--stride",
        "2",
        "--padding",
        "1,2",
        "--dilation",
        "3",
        "--json",
        "-",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["stride"] == [2, 2] and data["padding"] == [1, 2] and data["dilation"] == [3, 3]
    assert data["stride_known"] is True


@pytest.mark.parametrize("argv", [["--stride", "two"], ["--stride", "0"], ["--padding", "1,2,3"]])
def test_analyze_bad_geometry_is_one_line(capsys, tmp_path, argv):
    np.save(tmp_path / "w.npy", np.random.default_rng(4).normal(size=(6, 3, 5, 5)))
    code, _, err = run(capsys, "analyze", str(tmp_path / "w.npy"), *argv)
    assert code == 2 and err.startswith("kernelspec: error: ") and err.count("\n") == 1, err


def test_offline_auto_warns_once_in_cli_syntax_and_stops_retrying(
    capsys, caplog, tmp_path, monkeypatch
):
    import socket

    import torch

    from napari_kernelspec.sources import pretrained

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    real_info = pretrained.weights_info
    monkeypatch.setattr(
        pretrained,
        "weights_info",
        lambda m: pretrained.WeightsInfo(
            real_info(m).enum_name, f"http://127.0.0.1:{port}/{real_info(m).filename}"
        ),
    )
    calls = []
    real_download = torch.hub.download_url_to_file
    monkeypatch.setattr(
        torch.hub,
        "download_url_to_file",
        lambda url, *a, **k: calls.append(url) or real_download(url, *a, **k),
    )
    from napari_kernelspec.sources import remote

    real_range_read = remote.read_torchvision  # missing weights are first read by ranges
    monkeypatch.setattr(
        remote,
        "read_torchvision",
        lambda url, *a, **k: calls.append(url) or real_range_read(url, *a, **k),
    )
    for _ in range(2):
        code, _, err = run(capsys, "analyze", "mobilenet_v2")
        assert code == 0, err
        warnings_ = [line for line in err.splitlines() if "warning:" in line]
        assert len(warnings_) == 1, err
        line = warnings_[0]
        assert "--weights random" in line and "weights='random'" not in line
        assert 'weights="random"' not in line and len(line) < 200, line
    assert len(calls) == 1  # the second run remembered the failure


def test_too_long_file_name_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "analyze", str(tmp_path / ("w" * 300 + ".pth")))
    assert code == 2 and err.count("\n") == 1 and "too long" in err, err
