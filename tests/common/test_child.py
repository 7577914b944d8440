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


def test_no_runner_rewrites_another_modules_step_table():
    from tinygen.intake import worker

    before = dict(worker.STEPS)
    from tinygen.compress import runner  # noqa: F401  (importing it once rewrote worker.STEPS)

    assert worker.STEPS == before and "prune" not in worker.STEPS
    assert "prune" in runner.STEPS and "convert" in runner.STEPS
