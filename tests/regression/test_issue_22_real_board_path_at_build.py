"""Issue 22 items 1-2, real boards: a project path that a vendor PlatformIO platform would pass to
its shell was refused only at `tinygen flash`, after the build had trained and written the project.
Now `build` refuses it first, in one line, before any work. Fails before the fix: exit 0 and a
project written under 'x;y'."""

from __future__ import annotations

import time

from conftest import assert_one_line_error, run_cli


def test_real_board_build_refuses_a_shell_path_before_training(tmp_path):
    target = tmp_path / "x;y"
    started = time.monotonic()
    res = run_cli("build", "--board", "esp32", "--out", str(target))
    assert_one_line_error(res, "';'")
    assert res.returncode == 2
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert time.monotonic() - started < 60, "refused before training, not after"
