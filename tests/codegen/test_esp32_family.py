"""The ESP32-C3 and ESP32-S3 board files, as far as this machine can check them without the registry:
generated projects (both runtimes) as PlatformIO reads them, the compiled runtime's C built for the
C3's own ISA (RV32IMC, Debian's riscv64-unknown-elf-gcc), the USB ids `--port auto` looks for, and the
ESP-NN statement against the pinned library's tree when one is given (TINYGEN_TFLM_LIB_DIR).
The pins and headers are checked for every real board by tests/codegen/test_board_truth.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, build_ok, require, require_tool
from tinygen.common.boards import all_boards

BOARDS = ("esp32c3", "esp32s3")


@pytest.fixture(scope="module")
def projects(sine_project, tmp_path_factory) -> dict:
    """Both boards x both runtimes from the session's sine model (no training here)."""
    root = tmp_path_factory.mktemp("esp32-family")
    out = {}
    for board in BOARDS:
        for runtime in ("tflm", "compiled"):
            path = root / f"{board}-{runtime}"
            build_ok("--board", board, "--runtime", runtime, "--model", str(sine_project / "model.tflite"),
                     "--out", str(path))
            out[board, runtime] = path
    return out


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("runtime", ["tflm", "compiled"])
def test_platformio_reads_the_generated_project(projects, board, runtime):
    from platformio.project.config import ProjectConfig

    spec = all_boards()[board]
    project = projects[board, runtime]
    cfg = ProjectConfig(str(project / "platformio.ini"), parse_extra=False)
    env = f"env:{board}"
    # TFLM: its release build's debug twin; both runtimes: the native-USB build (issue 23.9)
    assert cfg.envs() == [board, f"{board}_example"] + ([f"{board}_tflm_debug"] if runtime == "tflm" else []) \
        + [f"{board}_native_usb"]
    assert "-DARDUINO_USB_CDC_ON_BOOT=1" in cfg.get(f"env:{board}_native_usb", "build_flags")
    assert cfg.get(env, "platform") == spec.platformio.platform == "espressif32@6.9.0"
    assert cfg.get(env, "board") == spec.platformio.board
    assert cfg.get(env, "framework") == ["arduino"]
    manifest = json.loads((project / "tinygen.json").read_text())
    assert manifest["board"] == board and manifest["runtime"] == runtime
    src = project / "lib" / "tinygen_model" / "src"
    if runtime == "tflm":
        tflm = spec.tflm
        assert cfg.get(env, "lib_deps") == [f"{tflm.library}@{tflm.version}"]
        assert f"#include <{tflm.header}>" in (src / "tg_runtime_tflm.cc").read_text()
    else:
        assert not cfg.get(env, "lib_deps", []) and (src / "tg_model.c").is_file()
    assert (project / "src" / "main.cpp").is_file()  # the Arduino entry points, on the arduino HAL


def test_compiled_runtime_c_builds_for_the_c3_isa(projects, tmp_path):
    """Every C file of the esp32c3 compiled project but the Arduino HAL, for RV32IMC/ilp32 as the C3's
    toolchain targets it, warning-free (the HAL is C++ against Arduino.h, not on this machine)."""
    gcc = require_tool("riscv64-unknown-elf-gcc")
    project = projects["esp32c3", "compiled"]
    sources = sorted(p for p in (project / "src").glob("*.c")) + sorted((project / "lib").rglob("*.c"))
    assert any(p.name == "tg_model.c" for p in sources) and any(p.name == "tg_app.c" for p in sources)
    includes = [f"-I{project / 'src'}", f"-I{project / 'lib' / 'tinygen_model' / 'src'}"]
    specs = subprocess.run([gcc, "-print-file-name=picolibc.specs"], capture_output=True, text=True).stdout.strip()
    require(Path(specs).is_absolute(), "picolibc-riscv64-unknown-elf (string.h for the RISC-V compiler)")
    res = subprocess.run([gcc, "--specs=picolibc.specs", "-march=rv32imc", "-mabi=ilp32", "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror",
                          *includes, "-c", *map(str, sources)], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(list(tmp_path.glob("*.o"))) == len(sources)


@pytest.mark.parametrize("board", BOARDS)
def test_port_auto_names_the_native_usb_and_the_bridges(board):
    from serial.tools import list_ports

    from tinygen.common.errors import TinygenError
    from tinygen.device.ports import resolve_port

    spec = all_boards()[board]
    ids = {(int(v, 16), int(p, 16)) for v, p in spec.serial.hwids}
    assert {(0x303A, 0x1001), (0x10C4, 0xEA60), (0x1A86, 0x7523), (0x1A86, 0x55D4), (0x0403, 0x6001)} <= ids
    if any((p.vid, p.pid) in ids for p in list_ports.comports()):
        pytest.skip("an ESP32 USB port is plugged in")
    with pytest.raises(TinygenError) as exc:
        resolve_port("auto", spec)
    assert spec.name in str(exc.value) and "303A:1001" in str(exc.value) and "10C4:EA60" in str(exc.value)


def test_esp_nn_statement_against_the_pinned_library():
    """esp32s3 says what ESP-NN would bring and that the pinned library does not use it; with the
    library's tree (TINYGEN_TFLM_LIB_DIR, the pinned version) that claim is checked file by file."""
    s3 = all_boards()["esp32s3"]
    reason = s3.tflm.reason
    assert "ESP-NN" in reason and "does not use it" in reason
    assert "ESP-NN" in (REPO / "docs" / "boards.md").read_text()
    tree = os.environ.get("TINYGEN_TFLM_LIB_DIR")
    if not tree:
        pytest.skip("TINYGEN_TFLM_LIB_DIR is not set: the pinned Chirale_TensorFlowLite tree checks the claim")
    props = (Path(tree) / "library.properties").read_text()
    assert f"version={s3.tflm.version}" in props, f"{tree} is not the pinned version"
    assert "esp32" in next(ln for ln in props.splitlines() if ln.startswith("architectures="))
    hits = [p for p in (Path(tree) / "src").rglob("*") if p.is_file() and ("esp_nn" in p.name.lower() or
            b"esp_nn" in p.read_bytes().lower() or b"esp-nn" in p.read_bytes().lower())]
    assert not hits, hits[:5]
    assert (Path(tree) / "src/tensorflow/lite/micro/kernels/cmsis_nn").is_dir()
