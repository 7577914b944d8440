"""Issue 23 item 5: ``tinygen doctor`` exited 0 with tools missing, so it could not gate a CI job; and
``tinygen run --board qemu-m4`` without arm-none-eabi-gcc trained for 46 s before PlatformIO said the
compiler was missing, although doctor knows it in a second.

Now doctor exits 4 when a board it checks (``--board``, default qemu-m4) lacks a tool, and build (so
run) checks an emulated board's compiler, QEMU and offline PlatformIO home before any training.
Both checks fail before the fix: doctor exited 0, build started training.

The smallest input: a PATH holding QEMU and the host compiler but no arm-none-eabi-gcc (the real tools,
linked into a temp dir); PlatformIO runs as ``python -m platformio`` either way.
"""

from __future__ import annotations

import os
import shutil
import time

from conftest import assert_one_line_error, require_tool, run_cli


def _path_without_the_arm_compiler(tmp_path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("qemu-system-arm", "gcc", "qemu-system-riscv32", "riscv64-unknown-elf-gcc"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    return str(bin_dir)


def test_doctor_exits_4_for_the_default_board_and_0_for_a_board_that_needs_no_compiler(tmp_path):
    require_tool("qemu-system-arm")
    path = _path_without_the_arm_compiler(tmp_path)
    res = run_cli("doctor", env={"PATH": path}, timeout=300)
    assert_one_line_error(res, "arm-none-eabi-gcc", "qemu-m4", code=4)
    assert "MISSING" in res.stdout  # the tables still say everything
    res = run_cli("doctor", "--board", "esp32", env={"PATH": path}, timeout=300)
    assert res.returncode == 0, res.stderr


def test_build_for_an_emulated_board_names_the_missing_compiler_before_training(tmp_path):
    require_tool("qemu-system-arm")
    path = _path_without_the_arm_compiler(tmp_path)
    out = tmp_path / "never"
    t0 = time.monotonic()
    res = run_cli("run", "--board", "qemu-m4", "--out", str(out), env={"PATH": path}, timeout=300)
    elapsed = time.monotonic() - t0
    assert_one_line_error(res, "board qemu-m4 needs arm-none-eabi-gcc", "tinygen doctor", code=4)
    assert "training" not in res.stderr + res.stdout
    assert not out.exists()
    assert elapsed < 60, f"took {elapsed:.0f} s: the check must come before training"
