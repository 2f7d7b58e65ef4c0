"""The feature-maps benchmark script runs end to end on tiny sizes (numbers not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "feature_maps.py"


def test_feature_map_benchmarks_run_on_tiny_sizes(tmp_path):
    env = {
        **os.environ,
        "KERNELSPEC_CACHE": str(tmp_path / "c"),
        "TORCH_HOME": str(tmp_path / "t"),
    }
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "maps,patches,memory"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for title in ("## 1. First-layer feature maps", "## 2. Top patches", "## 3. Peak memory"):
        assert title in proc.stdout, proc.stdout
    for model in ("alexnet", "resnet50", "vgg16"):
        assert f"\n{model} " in proc.stdout
    assert "images/s" in proc.stdout and "for the call" in proc.stdout
