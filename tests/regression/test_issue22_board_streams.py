"""Issue 22 item 7 (device part): `verify --layers/--profile` did whatever the board's stream said.

A board that kept sending FLAG_MORE frames kept verify reading forever; a LAYERS chunk header made the
host allocate the tensor size it claimed (4 GiB) before comparing it with the model; a PROFILE record
for op 0xFFFFFFFF was tabulated as '#4294967295 ... 100 %'.  Now tinygen/device/op_stream.py bounds each
by the model and the protocol (StreamLimits): frames by the model's ops and their output sizes, a
chunk's tensor size by the op's tensor, op indices by the op count; beyond them is a BoardFault
(exit 4, one line saying it is the board's fault).

Smallest input: the committed sine int8 model (3 FULLY_CONNECTED ops) built for qemu-m4 and
tests/support/fake_board.py's board on a real pty.  Checked to fail before the fix (the package of the parent
commit first on PYTHONPATH): endless_more runs into the 60 s subprocess timeout, huge_layers exits 4
only after the whole stream ("op 0 sent 16 of its 4294967295 bytes"), profile_op_ffffffff exits 0.
"""

from __future__ import annotations

import pytest

from conftest import assert_one_line_error, run_cli
from support.fake_board import FakeBoard, lying_project


@pytest.fixture(scope="module")
def project(session_dir):
    return lying_project(session_dir)


def _verify(project, port, *extra):
    return run_cli("verify", "--project", str(project), "--port", port, "--vectors", "0", "--json",
                   "--timeout", "2", "--retries", "1", *extra, timeout=60)


@pytest.mark.parametrize("request_flag", ["--layers", "--profile"])
def test_endless_stream_frames_end_at_the_models_bound(project, request_flag, tmp_path):
    with FakeBoard(project, "endless_more") as board:
        res = _verify(project, board.port, request_flag, "--report-dir", str(tmp_path))
    name = request_flag[2:].upper()
    # 3 ops: LAYERS 3 chunks (16 + 16 + 1 bytes), PROFILE 1 frame of records; plus 2 frames of slack
    bound = 5 if name == "LAYERS" else 3
    assert_one_line_error(res, "board fault", f"kept sending {name} stream frames", f"more than {bound}",
                          "the model's 3 ops need", code=4)
    assert not (tmp_path / "verify.json").exists()  # nothing half-written


def test_huge_layers_chunk_header_is_checked_before_allocating(project):
    with FakeBoard(project, "huge_layers") as board:
        res = _verify(project, board.port, "--layers")
    assert_one_line_error(res, "board fault", "op 0's output tensor has 4294967295 bytes", "the model's has 16",
                          code=4)


def test_profile_record_for_an_op_the_model_lacks_is_refused(project):
    with FakeBoard(project, "profile_op_ffffffff") as board:
        res = _verify(project, board.port, "--profile")
    assert_one_line_error(res, "board fault", "PROFILE record for op 4294967295", "the model has 3 ops", code=4)
