"""Issue 22 item 8 (device parts): a board's odd answers and the plugin's timeout.

* HELLO tick_hz = 0 put Infinity (not JSON) into verify.json: latency in µs was ticks / 0.  Now the
  latency says the board gives no time, and --profile stays in ticks.
* A board answering every request only with old sequence numbers got "no reply from the board ...
  is the firmware flashed": now it is told as what happened (BoardFault, exit 4).
* The pytest plugin took --tinygen-timeout nan (every read waits forever) and inf (a traceback): now
  both are refused at the command line with pytest's usage line and one error line (exit 4).

Smallest input: the committed sine int8 model built for nano33ble (a real board: its latency is
time, not QEMU instructions) and for qemu-m4, tests/support/fake_board.py's board on a real pty.  Checked
to fail before the fix (the package of the parent commit first on PYTHONPATH): verify.json holds
Infinity, the stale flood says "is the firmware flashed", and pytest runs with nan and inf (exit 0).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import assert_one_line_error, run_cli
from support.fake_board import FakeBoard, lying_project
from support.plugin_kit import plugin_args


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_tick_hz_zero_gives_strict_json_and_no_time(session_dir, tmp_path):
    project = lying_project(session_dir, "nano33ble")
    with FakeBoard(project, "tick_hz_0") as board:
        res = run_cli("verify", "--project", str(project), "--port", board.port, "--vectors", "0", "--json",
                      "--timeout", "2", "--profile", "--report-dir", str(tmp_path), timeout=120)
    assert res.returncode == 0, res.stderr
    saved = _strict((tmp_path / "verify.json").read_text())
    printed = _strict(res.stdout)
    for m in (saved["metrics"], printed["metrics"]):
        assert "latency_us" not in m and "0 Hz" in m["latency_source"], m
        assert m["latency_ticks"]["tick_hz"] == 0
    assert "| latency | none: the board reports a tick rate of 0 Hz" in (tmp_path / "verify.md").read_text()
    prof = printed["profile"]
    assert prof["unit"].startswith("ticks")  # the fake's ticks (100 + op) as they are, not "µs" at 1 Hz
    assert prof["total"] == sum(100 + o["op"] for o in prof["ops"]) and prof["ops"]


def test_stale_sequence_flood_is_told_as_such(session_dir):
    project = lying_project(session_dir)
    with FakeBoard(project, "stale_flood") as board:
        res = run_cli("verify", "--project", str(project), "--port", board.port, "--vectors", "0",
                      "--timeout", "0.5", "--retries", "1", timeout=60)
    line = assert_one_line_error(res, "keeps answering with old sequence numbers", "10 replies to earlier requests",
                                 "after 2 tries", "board fault", code=4)
    assert "is the firmware flashed" not in line


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_plugin_refuses_a_timeout_that_is_not_a_number_of_seconds(tmp_path, value):
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    res = subprocess.run([sys.executable, "-m", "pytest", *plugin_args(), "-p", "no:cacheprovider", "-q",
                          "--tinygen-timeout", value, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert res.returncode == 4, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    errors = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and f"--tinygen-timeout: '{value}' is not a number of seconds in (0, 3600]" in errors[0], \
        res.stderr
