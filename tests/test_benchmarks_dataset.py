"""`benchmarks/bench_dataset.py` runs end to end on a tiny size (its numbers are not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dataset.py"


def test_dataset_benchmark_runs_on_six_images(tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "t")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "6", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("## Dataset statistics: 6 RGB 224x224 images")
    row = lines[-1].split("|")
    assert row[1].strip() == "in-process"
    wall, rate, client_mb = (float(v) for v in row[2:5])
    assert wall > 0 and rate > 0 and client_mb > 0
