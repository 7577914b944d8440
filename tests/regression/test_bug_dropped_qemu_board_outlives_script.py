"""A script that drops a running QemuBoard left QEMU running after it exited (found by running
docs/python-api.md's snippet, issue 23: its last line, ``tinygen.Project.load("sine-m4").flash()``,
returns the running QEMU and drops it).

QEMU runs in its own session and the board's output-reader thread keeps the board referenced, so its
``__del__`` never ran: every run of the snippet left one qemu-system-arm behind.  Fixed by stopping every
started board at interpreter exit (tinygen/device/emulator.py, ``_RUNNING``).  Fails without that fix:
the QEMU process outlives the script.

The smallest firmware: a raw image of two vector-table words and a branch-to-self, which QEMU's mps2
machine loads at address 0 and runs forever.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time

from conftest import REPO, require_tool


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_qemu_stops_when_the_script_that_started_it_exits(tmp_path):
    require_tool("qemu-system-arm")
    image = tmp_path / "spin.bin"
    image.write_bytes(struct.pack("<II", 0x20001000, 0x00000009) + b"\xfe\xe7")  # SP, reset -> `b .`
    code = ("from tinygen.device.emulator import QemuBoard\n"
            f"board = QemuBoard({str(image)!r}, {{'machine': 'mps2-an386'}}).start()\n"
            "print(board._proc.pid, flush=True)\n")  # and exit without stopping it
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    pid = int(res.stdout.split()[0])
    try:
        deadline = time.monotonic() + 3
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "QEMU outlived the script that started it"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
