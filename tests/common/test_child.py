"""tinygen.common.child: the one wording of a child process's crash, used by every runner."""

from __future__ import annotations

import signal

from tinygen.common import child


def test_crash_wording_names_tool_signal_step_and_what_to_try():
    steps = {"start": ("the worker", "starting"), "convert": ("the TFLite converter", "converting the model")}
    line = child.crash_message(steps, "convert", -signal.SIGSEGV, "m.keras", "use LSTM(unroll=True)")
    assert line == "the TFLite converter crashed (SIGSEGV) while converting the model for m.keras; use LSTM(unroll=True)"
    # an unknown step is worded as the table's start; a plain exit status is not called a crash
    assert child.crash_message(steps, "nope", 3, "m").startswith("the worker exited with status 3 while starting for m; ")
    assert child.signal_name(128 + signal.SIGABRT) == "SIGABRT" and child.signal_name(1) is None


def test_last_step_is_the_last_step_line():
    assert child.last_step(b"noise\nSTEP load\nSTEP convert\nlog") == "convert"
    assert child.last_step("") == child.last_step(None) == "start"


def test_no_module_rewrites_another_modules_step_table():
    from tinygen.intake import jobs as tf_jobs

    before = dict(tf_jobs.STEPS)
    from tinygen.compress import jobs  # noqa: F401  (importing the compression jobs once rewrote the TF table)

    assert tf_jobs.STEPS == before and "prune" not in tf_jobs.STEPS
    assert "prune" in jobs.STEPS and "convert" in jobs.STEPS


def test_one_warm_worker_a_crash_ends_only_it_and_is_one_line(tmp_path, monkeypatch):
    """Jobs in a warm() scope share one worker; a native crash is one line (tool, signal, step,
    subject, what to try; exit 4), leaves no result, and the next job gets a new worker."""
    import os
    from pathlib import Path

    import pytest

    from tinygen.common.errors import TinygenError

    here = Path(__file__).resolve().parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]))
    steps = {"start": ("the test worker", "starting"), "poke": ("the poking tool", "poking the model")}

    def run(job):
        return child.run_child("child_jobs", job, tmp_path, {}, steps=steps, subject="m.bin", timeout=120,
                               hint="try another model")

    with child.warm():
        first = run("pid")["pid"]
        assert run("pid")["pid"] == first  # started once, fed jobs
        with pytest.raises(TinygenError) as refused:
            run("refuse")
        assert str(refused.value) == "m.bin is not a model" and refused.value.exit_code == 2
        assert run("pid")["pid"] == first  # a refusal is not a crash
        with pytest.raises(child.ChildCrashed) as crashed:
            run("segv")
        assert str(crashed.value) == ("the poking tool crashed (SIGSEGV) while poking the model for m.bin; "
                                      "try another model")
        assert crashed.value.exit_code == 4 and crashed.value.step == "poke"
        assert not (tmp_path / "segv.result.json").exists()
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
        second = run("pid")["pid"]
        assert second != first
    with pytest.raises(ProcessLookupError):  # the scope's end stops the worker
        os.kill(second, 0)
    # outside any scope, each job has a worker of its own
    assert run("pid")["pid"] != run("pid")["pid"]
