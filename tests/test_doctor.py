"""`tinygen doctor` and port discovery."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_cli


def test_doctor_reports_tools_and_boards_as_they_are_here():
    res = run_cli("doctor", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    tools = {t["tool"]: t for t in data["tools"]}
    # Each verdict must agree with what is really on PATH here.
    assert tools["arm-none-eabi-gcc"]["ok"] == bool(shutil.which("arm-none-eabi-gcc"))
    assert tools["qemu-system-arm"]["ok"] == bool(shutil.which("qemu-system-arm"))
    for t in data["tools"]:
        assert t["ok"] or t["fix"], t
    boards = {b["board"]: b for b in data["boards"]}
    assert {"esp32", "nano33ble", "qemu-m4"} <= set(boards)
    emulated_ok = all(tools[k]["ok"] for k in ("platformio offline core", "arm-none-eabi-gcc", "qemu-system-arm"))
    assert boards["qemu-m4"]["usable"] == emulated_ok
    assert "registry" in boards["esp32"]["what"]


def test_port_auto_without_a_board_is_one_clear_line(sine_project):
    from serial.tools import list_ports

    if any(p.vid in (0x10C4, 0x1A86) for p in list_ports.comports()):
        pytest.skip("an ESP32 USB bridge is plugged in")
    res = run_cli("verify", "--project", str(sine_project), "--port", "auto")
    assert res.returncode == 2
    assert "no ESP32 DevKit" in res.stderr and "10C4:EA60" in res.stderr and "Traceback" not in res.stderr


def test_verify_on_a_port_that_does_not_exist(sine_project, tmp_path):
    res = run_cli("verify", "--project", str(sine_project), "--port", str(tmp_path / "ttyNOPE"))
    assert res.returncode != 0 and "cannot open serial port" in res.stderr and "Traceback" not in res.stderr
