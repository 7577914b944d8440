"""The command's worker started early (issue 29: TensorFlow's import off the critical path):
child.prestart() has the worker import ahead while tinygen goes on; the first job runs in that worker
after the import; a worker that never got a job is killed at once; child.when_idle() work runs in a
thread while tinygen waits for a job, and has ended when the job's result is returned."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tinygen.common import child

HERE = Path(__file__).resolve().parent


@pytest.fixture
def jobs_on_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


def _run(tmp_path):
    return child.run_child("prestart_jobs", "pid", tmp_path, {}, steps={"start": ("the test worker", "starting")},
                           subject="m.bin", timeout=120)


def test_the_first_job_runs_in_the_prestarted_worker_after_its_preload(tmp_path, jobs_on_path, monkeypatch):
    monkeypatch.setenv("TG_TEST_PRELOAD", "sleep0.5")
    with child.warm():
        child.prestart("prestart_jobs")
        worker = child._shared[0]
        assert worker is not None and worker.alive()
        child.prestart("prestart_jobs")  # a second call keeps the one worker
        assert child._shared[0] is worker
        got = _run(tmp_path)
        assert got["pid"] == worker.proc.pid and got["preloaded"] == [worker.proc.pid]
        assert _run(tmp_path)["pid"] == worker.proc.pid


def test_a_prestarted_worker_never_sent_a_job_is_killed_not_waited_for(jobs_on_path, monkeypatch):
    monkeypatch.setenv("TG_TEST_PRELOAD", "sleep60")  # a TensorFlow import that nothing needed
    t0 = time.monotonic()
    with child.warm():
        child.prestart("prestart_jobs")
        proc = child._shared[0].proc
    assert time.monotonic() - t0 < 5  # the graceful close would wait 10 s
    assert proc.poll() is not None


def test_prestart_outside_a_warm_scope_starts_nothing(jobs_on_path):
    child.prestart("prestart_jobs")
    assert child._shared[0] is None


def test_a_preload_that_crashes_costs_the_first_job_nothing_but_a_new_worker(tmp_path, jobs_on_path, monkeypatch):
    monkeypatch.setenv("TG_TEST_PRELOAD", "segv")
    with child.warm():
        child.prestart("prestart_jobs")
        dead = child._shared[0]
        dead.proc.wait(60)
        monkeypatch.setenv("TG_TEST_PRELOAD", "")
        got = _run(tmp_path)
        assert got["pid"] != dead.proc.pid


def test_idle_work_runs_in_another_thread_and_has_ended_when_the_job_returns(tmp_path, jobs_on_path):
    seen = []

    def idle():
        time.sleep(0.3)
        seen.append(threading.current_thread() is not threading.main_thread())

    child.when_idle(idle)
    child.when_idle(lambda: 1 / 0)  # a failed head start is ignored
    _run(tmp_path)
    assert seen == [True]
    _run(tmp_path)  # run once, not at every job
    assert seen == [True]
