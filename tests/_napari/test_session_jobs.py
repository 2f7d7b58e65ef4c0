"""The Qt-free session and job runner, without a display."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from napari_kernelspec._napari.jobs import JobRunner
from napari_kernelspec._napari.session import Session, session_for


class _Result:
    def __init__(self, bank: object, n: int = 8) -> None:
        self.bank, self.n_filters = bank, n


def test_session_announces_a_bank_once_and_every_result() -> None:
    session = Session()
    banks, results = [], []
    session.bank_changed.connect(banks.append)
    session.result_changed.connect(results.append)
    bank = object()
    first, second = _Result(bank), _Result(bank)
    session.show(first, source="lenet5")
    session.show(second)  # a threshold change: same bank
    assert banks == [bank]
    assert results == [first, second]
    assert session.result is second and session.source == "lenet5"


def test_focus_emits_on_change_only_and_checks_the_range() -> None:
    session = Session()
    focused = []
    session.filter_focused.connect(focused.append)
    session.show(_Result(object(), n=4))
    assert session.focus(2) and not session.focus(2)
    assert focused == [2]
    with pytest.raises(ValueError, match="out of range"):
        session.focus(4)
    session.show(_Result(object(), n=2))  # a smaller bank drops the focus
    assert session.current_filter is None


def test_explanations_accumulate_under_unique_names() -> None:
    session = Session()
    changes = []
    session.explanations_changed.connect(lambda: changes.append(len(session.explanations)))
    a = session.add_explanation("lenet5 conv1 maximize", ["a"])
    b = session.add_explanation("lenet5 conv1 maximize", ["b"])
    assert (a.name, b.name) == ("lenet5 conv1 maximize", "lenet5 conv1 maximize (2)")
    assert [run.layers for run in session.clear_explanations()] == [["a"], ["b"]]
    assert session.explanations == [] and changes == [1, 2, 0]


def test_one_session_per_viewer() -> None:
    class Viewer:
        pass

    v1, v2 = Viewer(), Viewer()
    assert session_for(v1) is session_for(v1)
    assert session_for(v1) is not session_for(v2)


def test_runner_delivers_only_the_newest_and_drops_superseded_waiting_jobs() -> None:
    runner = JobRunner()
    gate = threading.Event()
    started, delivered = [], []

    def work(tag: str):
        def run(is_stale):
            started.append(tag)
            if tag == "first":
                gate.wait(10)
            return tag, is_stale()

        return run

    def done(job) -> None:
        if not runner.is_stale(job.generation):
            delivered.append(job.value)

    runner.submit(work("first"), done)
    runner.submit(work("second"), done)  # waits
    runner.submit(work("third"), done)  # replaces "second" before it starts
    gate.set()
    assert runner.wait(10)
    assert started == ["first", "third"]
    assert delivered == [("third", False)]


def test_running_job_sees_it_is_stale_and_close_delivers_nothing() -> None:
    runner = JobRunner()
    gate, seen = threading.Event(), threading.Event()
    delivered, stale = [], []

    def run(is_stale):
        gate.wait(10)
        stale.append(is_stale())
        seen.set()
        return 1

    runner.submit(run, delivered.append)
    runner.close()
    gate.set()
    assert seen.wait(10)
    assert stale == [True] and delivered == [] and not runner.busy
    assert runner.submit(run) is None  # closed for good


def test_errors_and_warnings_come_back_with_the_job() -> None:
    runner = JobRunner()
    jobs = []

    def run(is_stale):
        warnings.warn("untrained weights", UserWarning, stacklevel=1)
        raise RuntimeError("boom")

    runner.submit(run, jobs.append)
    assert runner.wait(10)
    (job,) = jobs
    assert isinstance(job.error, RuntimeError) and job.warnings == ["untrained weights"]


def test_prepare_builds_the_work_when_it_starts() -> None:
    runner = JobRunner()
    gate = threading.Event()
    cache: dict[str, np.ndarray] = {}
    out = []

    def first(is_stale):
        gate.wait(10)
        cache["bank"] = np.arange(3)
        return None

    def prepare():
        bank = cache.get("bank")  # read when the job starts, after `first` finished
        return (lambda is_stale: bank), "Rendering"

    runner.submit(first)
    runner.submit(prepare=prepare, on_done=out.append)
    gate.set()
    assert runner.wait(10)
    assert out[0].desc == "Rendering" and np.array_equal(out[0].value, [0, 1, 2])
