"""`tinygen doctor` and port discovery."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from conftest import REPO, run_cli


def test_doctor_reports_tools_and_boards_as_they_are_here():
    """Every verdict against facts found here without tinygen: PATH, importlib, boards/*.json."""
    res = run_cli("doctor", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    tools = {t["tool"]: t for t in data["tools"]}
    on_path = {"arm-none-eabi-gcc": "arm-none-eabi-gcc", "arm-none-eabi-g++ (+libstdc++)": "arm-none-eabi-g++",
               "qemu-system-arm": "qemu-system-arm", "host gcc": "gcc", "qemu-system-riscv32": "qemu-system-riscv32"}
    for tool, exe in on_path.items():
        path = shutil.which(exe)
        assert tools[tool]["ok"] == (path is not None), tools[tool]
        if path:
            assert tools[tool]["detail"] == path
    have = {mod: importlib.util.find_spec(mod) is not None for mod in ("tensorflow", "tflite_micro", "SCons")}
    assert tools["tensorflow"]["ok"] == have["tensorflow"] and tools["tflite_micro"]["ok"] == have["tflite_micro"]
    pio_here = importlib.util.find_spec("platformio") is not None or bool(shutil.which("pio"))
    assert tools["platformio"]["ok"] == pio_here
    # the offline core is PlatformIO plus pip's SCons (tinygen packages it as tool-scons)
    assert tools.get("platformio offline core", {"ok": False})["ok"] == (pio_here and have["SCons"])
    for t in data["tools"]:
        assert t["ok"] or t["fix"], t
    emulated_here = pio_here and have["SCons"] and all(shutil.which(x) for x in ("arm-none-eabi-gcc", "qemu-system-arm"))
    files = {json.loads(p.read_text())["id"]: json.loads(p.read_text()) for p in (REPO / "boards").glob("*.json")}
    boards = {b["board"]: b for b in data["boards"]}
    assert set(boards) == set(files)
    for bid, spec in files.items():
        want = emulated_here if spec.get("emulator") else pio_here
        if spec.get("emulator", {}).get("binary") == "qemu-system-riscv32":  # qemu-rv32: the RISC-V tools instead
            want = pio_here and have["SCons"] and tools["riscv64-unknown-elf-gcc (+picolibc)"]["ok"] and \
                bool(shutil.which("qemu-system-riscv32"))
        assert boards[bid]["usable"] == want, (bid, boards[bid])
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
