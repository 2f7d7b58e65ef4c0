"""`kernelspec analyze/report --threshold T|auto --alpha A`: the rule and chance levels shown."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest


@pytest.fixture
def gaussian(tmp_path) -> str:
    """64 i.i.d. Gaussian filters of AlexNet's first-layer shape, as a .npy file."""
    path = tmp_path / "gaussian.npy"
    np.save(path, np.random.default_rng(0).normal(size=(64, 3, 11, 11)).astype(np.float32))
    return str(path)


def test_default_threshold_is_auto_and_the_summary_puts_chance_beside_the_share(cli, gaussian):
    code, out, err = cli("analyze", gaussian, "--json", "-")
    assert code == 0, err
    data = json.loads(out)
    assert data["threshold_rule"] == "auto" and 0.05 <= data["threshold"] <= 1.0
    assert data["chance_clustered_fraction"] <= data["alpha"] == 0.05

    code, out, _ = cli("analyze", gaussian)
    assert code == 0
    assert f"threshold: {data['threshold']:.3f} (auto" in out
    share = re.search(
        r"^(\d+) % clustered; matched null: (\d+) %; structure p = ([0-9.e+-]+)", out, re.MULTILINE
    )
    assert share, out
    assert int(share[1]) == round(100 * data["clustered_fraction"])
    assert int(share[2]) == round(100 * data["chance_clustered_fraction"])
    assert float(share[3]) == pytest.approx(data["structure_p_value"], rel=0.05)
    assert data["null_model"] == "matched"


def test_a_fixed_threshold_and_the_seed_method_print_their_chance_level(cli, gaussian):
    code, out, _ = cli("analyze", gaussian, "--method", "seed", "--json", "-")
    data = json.loads(out)
    assert code == 0 and data["threshold"] == 0.93 and data["threshold_rule"] == "fixed"
    assert data["chance_clustered_fraction"] > 0.5  # the seed's 0.93 is inside the noise
    assert data["null_model"] == "shuffled" and data["structure_p_value"] is None
    code, out, _ = cli("analyze", gaussian, "--threshold", "0.93")
    assert "threshold: 0.93   " in out and "% clustered; matched null: " in out


def test_alpha_moves_the_auto_threshold(cli, gaussian):
    values = {}
    for alpha in ("0.01", "0.3"):
        code, out, _ = cli("analyze", gaussian, "--alpha", alpha, "--json", "-")
        assert code == 0
        values[alpha] = json.loads(out)["threshold"]
    assert values["0.01"] > values["0.3"]


def test_one_input_channel_1x1_kernels_print_notes_and_json_nulls(cli, tmp_path):
    np.save(tmp_path / "lin.npy", np.random.default_rng(0).normal(size=(8, 1, 1, 1)))
    code, out, _ = cli("analyze", str(tmp_path / "lin.npy"), "--json", "-")
    data = json.loads(out)
    assert code == 0 and len(data["notes"]) == 2
    assert data["filters"][0]["peak_frequency"] is None
    assert data["filters"][0]["achromatic_fraction"] is None
    assert data["filters"][0]["aliasing_fraction"] is not None
    code, out, _ = cli("analyze", str(tmp_path / "lin.npy"))
    assert "note: 1x1 kernels have no spatial structure" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--alpha", "0"], "alpha"),
        (["--alpha", "1"], "alpha"),
        (["--alpha", "some"], "alpha"),
        (["--threshold", "automatic"], "'auto'"),
    ],
)
def test_bad_alpha_or_threshold_is_one_line(cli, gaussian, argv, expected):
    code, _, err = cli("analyze", gaussian, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kernelspec: error: ")
    assert expected in lines[0]


def test_report_takes_the_threshold_rule_and_alpha(cli, gaussian, tmp_path):
    out = tmp_path / "r.html"
    code, _, err = cli("report", "--models", gaussian, "--alpha", "0.2", "--out", str(out))
    assert code == 0, err
    result = json.loads(out.with_suffix(".json").read_text())["results"][0]
    assert result["threshold_rule"] == "auto" and result["alpha"] == 0.2
    assert result["chance_clustered_fraction"] <= 0.2
    code, _, err = cli("report", "--models", gaussian, "--threshold", "0.6", "--out", str(out))
    assert code == 0, err
    result = json.loads(out.with_suffix(".json").read_text())["results"][0]
    assert (result["threshold"], result["threshold_rule"]) == (0.6, "fixed")
    assert "clustered in the matched null" in out.read_text()
