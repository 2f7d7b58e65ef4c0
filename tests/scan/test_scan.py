"""`kernelspec scan` on real Dask clusters: rows equal `analyze`, errors are rows, workers
may die, interrupted scans resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_kernelspec.analysis import analyze
from napari_kernelspec.analysis.descriptors import DESCRIPTOR_NAMES
from napari_kernelspec.analysis.summary import summary_figures
from napari_kernelspec.scan.expand import expand_sources
from napari_kernelspec.scan.run import run_scan
from napari_kernelspec.scan.store import read_dataset
from napari_kernelspec.sources.loading import load_kernels

torch = pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")

SRC = Path(__file__).resolve().parents[2] / "src"
DASK = Path(sys.executable).with_name("dask")


def write_checkpoints(folder: Path, n: int, shape=(8, 1, 5, 5), seed: int = 0) -> list[str]:
    """`n` state dicts; every third one has filter 1 = 1.01 x filter 0 (one duplicate pair)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w = rng.standard_normal(shape).astype(np.float32)
        if i % 3 == 0:
            w[1] = 1.01 * w[0]
        path = folder / f"net_{i:03d}.pt"
        torch.save({"conv1.weight": torch.from_numpy(w), "fc.weight": torch.zeros(2, 3)}, path)
        paths.append(str(path))
    return paths


def assert_rows_equal_analyze(out: Path, models_out: Path, sources: list[str]) -> None:
    """Every source's filter rows and model row are what `analyze` gives in this process."""
    filters = read_dataset(out).to_pandas()
    models = read_dataset(models_out).to_pandas().set_index("source")
    for source in sources:
        expected = analyze(load_kernels(source))
        rows = filters[filters["source"] == source].sort_values("index")
        assert rows["index"].tolist() == list(range(expected.n_filters)), source
        assert rows["cluster"].tolist() == expected.labels.tolist(), source
        assert rows["layer"].iloc[0] == expected.bank.layer
        assert rows["shape"].iloc[0].tolist() == list(expected.bank.weights.shape)
        for name in DESCRIPTOR_NAMES:
            np.testing.assert_allclose(rows[name], expected.descriptors[name], rtol=1e-12)
        row = models.loc[source]
        assert pd.isna(row["error"])
        for key, value in summary_figures(expected).items():
            if value is None or (isinstance(value, float) and np.isnan(value)):
                assert pd.isna(row[key]), key
            elif isinstance(value, str):
                assert row[key] == value, key
            else:
                assert row[key] == pytest.approx(value, rel=1e-12), key


# --- a local cluster, started by the command itself ----------------------------------------


def test_scan_on_a_local_cluster_equals_analyze_row_for_row_and_records_failures(tmp_path, cli):
    good = write_checkpoints(tmp_path / "ckpts", 200)
    corrupt = tmp_path / "ckpts" / "sub" / "broken.pth"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    out, models_out = tmp_path / "filters.parquet", tmp_path / "models.parquet"
    code, stdout, err = cli(
        "scan",
        str(tmp_path / "ckpts"),  # a folder: searched recursively, finds broken.pth too
        "no_such_model_xyz",
        "--out",
        str(out),
        "--models-out",
        str(models_out),
        "--workers",
        "2",
        "--batch-size",
        "50",
    )
    assert code == 1, err
    assert "200 analysed, 2 failed" in stdout and str(models_out) in stdout
    models = read_dataset(models_out).to_pandas().set_index("source")
    assert len(models) == 202 and models.index.is_unique
    errors = models["error"].dropna()
    assert set(errors.index) == {str(corrupt), "no_such_model_xyz"}
    assert "broken.pth" in errors[str(corrupt)] and "damaged" in errors[str(corrupt)]
    assert "unknown model 'no_such_model_xyz'" in errors["no_such_model_xyz"]
    assert (models.loc[good, "duplicates"].to_numpy() == [i % 3 == 0 for i in range(200)]).all()
    assert (models["seconds"] > 0).all()
    assert len(list(out.glob("part-*.parquet"))) >= 5  # written batch by batch
    assert_rows_equal_analyze(out, models_out, good)
    assert len(read_dataset(out)) == 200 * 8


# --- a cluster started as separate processes (`dask scheduler`, `dask worker`) ------------


@pytest.fixture(scope="module")
def external_cluster(tmp_path_factory):
    """A scheduler and a `dask worker --nworkers 2` on 127.0.0.1 that import this tree."""
    if not DASK.exists():
        pytest.skip("the dask command is not installed")
    folder = tmp_path_factory.mktemp("cluster")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    file = folder / "scheduler.json"
    procs = [
        subprocess.Popen(
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(file),
            ],
            env=env,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        procs.append(
            subprocess.Popen(
                [
                    str(DASK),
                    "worker",
                    address,
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                env=env,
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            # where the workers import the package from: this tree, not an installed copy
            where = set(client.run(lambda: __import__("napari_kernelspec").__file__).values())
        assert where == {str(SRC / "napari_kernelspec" / "__init__.py")}
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_scan_against_a_running_scheduler(external_cluster, tmp_path, cli):
    good = write_checkpoints(tmp_path / "ckpts", 24, shape=(6, 3, 3, 3), seed=1)
    (tmp_path / "list.txt").write_text("# one per line\nckpts/net_000.pt\n\nresnet999\n")
    out = tmp_path / "f.parquet"
    code, stdout, err = cli(
        "scan",
        str(tmp_path / "ckpts" / "net_*.pt"),
        f"@{tmp_path / 'list.txt'}",
        "--out",
        str(out),
        "--scheduler",
        external_cluster,
        "--batch-size",
        "8",
    )
    assert code == 1, err
    assert "scanned 25 of 25 sources" in stdout and "24 analysed, 1 failed" in stdout
    models_out = tmp_path / "f-models.parquet"  # the default name
    models = read_dataset(models_out).to_pandas().set_index("source")
    assert sorted(models.index) == sorted([*good, "resnet999"])
    assert_rows_equal_analyze(out, models_out, good)


def test_a_killed_worker_process_is_replaced_and_every_source_gets_its_row(
    external_cluster, tmp_path
):
    sources = write_checkpoints(tmp_path / "ckpts", 16, shape=(64, 3, 7, 7), seed=2)
    out, models_out = tmp_path / "f.parquet", tmp_path / "m.parquet"
    client = distributed.Client(external_cluster, timeout=30)
    try:
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)
        done: dict[str, object] = {}

        def scan() -> None:
            done["summary"] = run_scan(
                sources,
                out,
                models_out,
                scheduler=external_cluster,
                batch_size=2,
                progress=False,
            )

        thread = threading.Thread(target=scan)
        thread.start()
        deadline = time.monotonic() + 120
        while not list(models_out.glob("part-*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        assert busy, "no worker was busy after the first batch"
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed_mid_scan = thread.is_alive()
        thread.join(180)
        assert not thread.is_alive()
        assert killed_mid_scan
    finally:
        client.close()
    summary = done["summary"]
    assert summary.analysed == 16 and summary.failed == 0
    models = read_dataset(models_out).to_pandas()
    assert sorted(models["source"]) == sorted(sources)  # each exactly once
    assert models["error"].isna().all()
    assert len(read_dataset(out)) == 16 * 64


def test_resume_analyses_only_the_missing_sources(external_cluster, tmp_path, cli):
    sources = write_checkpoints(tmp_path / "ckpts", 9, seed=3)
    out, models_out = tmp_path / "f.parquet", tmp_path / "m.parquet"
    common = ["--out", str(out), "--models-out", str(models_out), "--scheduler", external_cluster]
    # an interrupted scan: the first 4 sources committed in two batches ...
    code, _, err = cli("scan", *sources[:4], *common, "--batch-size", "2")
    assert code == 0, err
    committed = {p.name: p.read_bytes() for p in models_out.glob("part-*.parquet")}
    assert len(committed) == 2
    # ... then a crash between the two renames of the next batch (its filters part is there,
    # its models part is not) and in the middle of writing another one (a temporary file)
    orphan = out / "part-000002.parquet"
    orphan.write_bytes((out / "part-000000.parquet").read_bytes())
    (out / ".part-000003.parquet.abc123.tmp").write_bytes(b"half a part")
    # without --resume the existing scan is refused
    code, _, err = cli("scan", *sources, *common)
    assert code == 2 and "--resume" in err
    # with other parameters, too
    code, _, err = cli("scan", *sources, *common, "--resume", "--threshold", "0.5")
    assert code == 2 and "same --weights" in err
    # with another models dataset (whose absence would make every filters part look
    # uncommitted), nothing is deleted
    code, _, err = cli("scan", *sources, *common, "--resume", "--models-out", str(tmp_path / "x"))
    assert code == 2 and "does not exist" in err and orphan.exists()
    code, stdout, err = cli("scan", *sources, *common, "--resume")
    assert code == 0, err
    assert "scanned 5 of 9 sources" in stdout and "4 already there" in stdout
    assert not list(out.glob(".*.tmp"))
    for name, data in committed.items():  # the earlier batches were not written again
        assert (models_out / name).read_bytes() == data
    models = read_dataset(models_out).to_pandas()
    assert sorted(models["source"]) == sorted(sources)
    assert len(read_dataset(out)) == 9 * 8  # no rows of the orphan part survive
    assert_rows_equal_analyze(out, models_out, sources)
    # nothing left to do
    code, stdout, _ = cli("scan", *sources, *common, "--resume")
    assert code == 0 and "scanned 0 of 9 sources" in stdout


def test_an_interrupted_scan_keeps_its_batches(external_cluster, tmp_path):
    """Ctrl-C (SIGINT) mid-scan: the batches that arrived are on disk, resume adds the rest."""
    sources = write_checkpoints(tmp_path / "ckpts", 8, shape=(32, 3, 7, 7), seed=4)
    out, models_out = tmp_path / "f.parquet", tmp_path / "m.parquet"
    args = [
        sys.executable,
        "-m",
        "napari_kernelspec.cli",
        "scan",
        *sources,
        "--out",
        str(out),
        "--models-out",
        str(models_out),
        "--scheduler",
        external_cluster,
        "--batch-size",
        "1",
        "--no-progress",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(models_out.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    first = read_dataset(models_out).to_pandas()
    if proc.returncode == 130:
        assert "--resume" in stderr
        assert 1 <= len(first) < 8
    else:  # the scan won the race and finished before the signal
        assert proc.returncode == 0, stderr
    proc = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    if len(first) < 8:
        # parts whose batch was not committed before the signal are redone, never trusted
        kept = int(re.search(r"(\d+) already there", proc.stdout).group(1))
        assert kept <= len(first), proc.stdout
    models = read_dataset(models_out).to_pandas()
    assert sorted(models["source"]) == sorted(sources)


# --- arguments ------------------------------------------------------------------------------


def test_sources_expand_folders_globs_and_list_files_in_natural_order(tmp_path):
    (tmp_path / "run" / "deep").mkdir(parents=True)
    for name in ("e10.pt", "e9.pt", "e1.pt", "notes.txt", ".hidden.pt"):
        (tmp_path / "run" / name).write_bytes(b"x")
    (tmp_path / "run" / "deep" / "w.npy").write_bytes(b"x")
    (tmp_path / "l.txt").write_text("run/e9.pt\nalexnet\n# comment\n\nalexnet\n")
    run = tmp_path / "run"
    assert expand_sources([str(run)]) == [
        str(run / "deep" / "w.npy"),
        str(run / "e1.pt"),
        str(run / "e9.pt"),
        str(run / "e10.pt"),
    ]
    assert expand_sources([str(run / "e*.pt"), f"@{tmp_path / 'l.txt'}", "vgg16"]) == [
        str(run / "e1.pt"),
        str(run / "e9.pt"),
        str(run / "e10.pt"),
        "alexnet",
        "vgg16",
    ]
    assert expand_sources([str(tmp_path / "nothing_*.pt")]) == [str(tmp_path / "nothing_*.pt")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["@/no/such/list.txt"], "cannot read the list file"),
        (["EMPTY"], "nothing to scan"),
        (["alexnet", "--out", "FILE"], "is a file"),
        (["alexnet", "--workers", "0"], "must be at least 1"),
        (["alexnet", "--threshold", "2"], "outside (0, 1]"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, cli, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    argv = [
        a.replace("EMPTY", str(tmp_path / "empty")).replace("FILE", str(tmp_path / "file"))
        for a in argv
    ]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o.parquet")]
    code, _, err = cli("scan", *argv)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_our_local_workers_keep_glibcs_memory_trimming_default(monkeypatch):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which made an analysis
    take about twice as long (see scan/run.py); the scan's own LocalCluster leaves it out,
    and the client process's environment is untouched."""
    import os

    from napari_kernelspec.scan.run import _client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    client, cluster = _client(None, 1, 30.0)
    try:
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        threads = client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
    finally:
        client.close()
        cluster.close()
    assert list(seen.values()) == [None]
    assert list(threads.values()) == ["1"]  # Dask's other settings stay
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
