"""Issue 22 item 5: a board whose HELLO disagrees with the project was believed.

HELLO's output dtype was never compared with tinygen.json: a board declaring INT32 (or UINT8) outputs
had them cast to int8 with wraparound, so outputs off by 1,792 were a PASS at 100 % exact; scales and
zero points were not compared either, and a wrong input dtype came out as "bad input" (exit 2).  Now
one check (tinygen/verification/hello_check.py) compares every HELLO field with the project before
a vector is sent: exit 5, one line naming the field, the board's value and the project's.

Smallest input: the committed sine int8 model built for qemu-m4, and tests/support/fake_board.py's board on
a real pty, honest except for one HELLO field.  Checked to fail before the fix: on the tree before it
(the package copied out of the parent commit, first on PYTHONPATH) output_int32 / output_uint8 /
output_scale / output_zero_point exit 0 (PASS), input_int16 exits 2, output_shape exits 5 without
naming the field.
"""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_line_error, run_cli
from support.fake_board import FakeBoard, lying_project


@pytest.fixture(scope="module")
def project(session_dir):
    return lying_project(session_dir)


def _verify(project, port, *extra):
    return run_cli("verify", "--project", str(project), "--port", port, "--vectors", "0", "--json",
                   "--timeout", "2", "--retries", "1", *extra, timeout=120)


# (lie, what the one line must name: the field, the board's value, the project's)
CASES = [
    ("output_int32", ["output_dtype", "is INT32 on the board", "INT8 in the project"]),
    ("output_uint8", ["output_dtype", "is UINT8 on the board", "INT8 in the project"]),
    ("input_int16", ["input_dtype", "is INT16 on the board", "INT8 in the project"]),
    ("output_shape", ["output_shape", "is [1, 2] on the board", "[1, 1] in the project"]),
    ("output_scale", ["output_scale", "0.0159561", "0.00797805"]),
    ("output_zero_point", ["output_zero_point", "is 0 on the board", "-3 in the project"]),
]


@pytest.mark.parametrize("lie,needles", CASES, ids=[c[0] for c in CASES])
def test_hello_field_that_disagrees_with_the_project_is_a_board_fault(project, lie, needles):
    with FakeBoard(project, lie) as board:
        res = _verify(project, board.port)
    line = assert_one_line_error(res, "board fault", *needles, code=5)
    assert "no vector was sent" in line
    assert board.requests == [1], board.requests  # HELLO only: no INFER ever went out


def test_honest_board_passes_with_its_streams(project, tmp_path):
    """The check and the stream bounds accept the exact description and frame counts a correct board sends."""
    with FakeBoard(project) as board:
        res = _verify(project, board.port, "--layers", "--profile", "--report-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["metrics"]["passed"] and out["metrics"]["vectors"] == 32
    assert out["layers"]["ops_reported"] == 3 and len(out["profile"]["ops"]) == 3
