"""The TFLM glue against a real TFLM source tree (TINYGEN_TFLM_DIR, Arduino-library layout:
src/tensorflow/lite/micro/..., src/third_party/...). Without it every test here skips.

* Real boards (esp32, nano33ble): their glue starts with `#include <HEADER>`, HEADER being the
  umbrella header of the library version the board file pins, then includes the TFLM headers.
  tg_runtime_tflm.cc and model_data.cc must compile warning-free (-Wall -Wextra -Werror) for a
  Cortex-M4 against the tree's headers, the tree's own umbrella header included: a glue that names
  a header the tree does not have fails here. Only the Arduino core, which that header pulls in
  (<Arduino.h>, <Wire.h>), is absent: those two get empty stand-ins. tests/codegen/test_board_truth.py
  compiles the same files against the real Arduino-mbed core. The tree's include directories are
  passed with -isystem, the way a library's headers are usually treated, so that -Werror applies to
  our code only (this tree's own headers trip -Wunused-parameter).
* The emulated Cortex-M4 (qemu-m4): `tinygen run` builds the tree with the tinygen-mps2 platform
  and runs the firmware in QEMU. Its outputs must be bit-exact with the tflite_micro interpreter.

The models come from the session fixtures (sine_project: esp32, digits_project: nano33ble), so
nothing is trained again here. A session fixture built while TINYGEN_TFLM_DIR is set (conftest
passes the environment on) uses the tree instead of the board's registry library, and its glue
then has no Chirale include. In that case the real-board glue is built again from the fixture's
model with TINYGEN_TFLM_DIR="" (click treats an empty variable as unset).

Time: most of it goes to compiling the tree for qemu-m4 once (a private PlatformIO core, so a
cold object cache; the digits project reuses the sine project's objects). To keep the compiled
objects between sessions, set PLATFORMIO_CACHE_DIR (e.g. ~/.platformio/.cache).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import build_ok, require_tool, run_cli, tflm_tree_from_env

from support.tflm_tree import BOARD_DEFINES, CXXFLAGS, TREE_INCLUDE_DIRS

pytestmark = [pytest.mark.tflm, pytest.mark.slow]

@pytest.fixture(scope="module")
def tflm_tree() -> Path:
    return tflm_tree_from_env("src/tensorflow/lite/micro", "in Arduino-library layout")


# ------------------------------------------------------------------ real boards: compile the glue

@pytest.fixture(scope="module")
def standin_include(tmp_path_factory) -> Path:
    """Empty stand-ins for the two Arduino core headers the library's umbrella header includes."""
    inc = tmp_path_factory.mktemp("standin")
    for name in ("Arduino.h", "Wire.h"):
        (inc / name).write_text("/* stand-in for the Arduino core, which this test does not have */\n")
    return inc


@pytest.mark.parametrize("fixture,board", [("digits_project", "nano33ble"), ("sine_project", "esp32")])
def test_real_board_glue_compiles_against_the_tree(fixture, board, request, tflm_tree, standin_include,
                                                   tmp_path):
    require_tool("arm-none-eabi-g++")
    project = request.getfixturevalue(fixture)
    board_file = json.loads((Path(__file__).resolve().parents[2] / "boards" / f"{board}.json").read_text())
    header = board_file["tflm"]["header"]
    include_line = f"#include <{header}>"
    if include_line not in (project / "lib/tinygen_model/src" / "tg_runtime_tflm.cc").read_text():
        # the session fixture was built while TINYGEN_TFLM_DIR was set: build the shipping glue
        # for the same model without the tree
        model = project / "model.tflite"
        project = tmp_path / board
        build_ok("--board", board, "--model", str(model), "--vectors", "4", "--out", str(project))
    src = project / "lib/tinygen_model/src"
    glue = (src / "tg_runtime_tflm.cc").read_text()
    assert include_line in glue
    assert glue.index(include_line) < glue.index('#include "tensorflow/lite/micro/micro_interpreter.h"')
    props = tflm_tree / "library.properties"
    if props.is_file() and f"version={board_file['tflm']['version']}" in props.read_text():
        assert (tflm_tree / "src" / header).is_file(), f"the pinned version's tree has no {header}"

    includes = ["-I", str(standin_include), "-I", str(src)]
    for d in TREE_INCLUDE_DIRS:
        if (tflm_tree / d).is_dir():
            includes += ["-isystem", str(tflm_tree / d)]
    for name in ("tg_runtime_tflm.cc", "model_data.cc"):
        obj = tmp_path / (name + ".o")
        res = subprocess.run(["arm-none-eabi-g++", *CXXFLAGS, *BOARD_DEFINES[board], *includes, str(src / name),
                              "-o", str(obj)], capture_output=True, text=True)
        assert res.returncode == 0, f"{board} {name}:\n{res.stderr}"
        assert obj.stat().st_size > 0
    # the glue calls the tree's API: interpreter, resolver methods, arena figure
    nm = subprocess.run(["arm-none-eabi-nm", "-C", str(tmp_path / "tg_runtime_tflm.cc.o")],
                        capture_output=True, text=True, check=True).stdout
    for symbol in ("tflite::MicroInterpreter::MicroInterpreter", "tflite::MicroInterpreter::AllocateTensors",
                   "tflite::MicroInterpreter::Invoke", "tinygen_model_rt_init", "tinygen_model_rt_invoke"):
        assert symbol in nm, symbol


# ------------------------------------------------------------------ qemu-m4: the whole loop

@pytest.fixture(scope="module")
def pio_core(tmp_path_factory):
    """An isolated PlatformIO core dir (its .cache holds the compiled TFLM objects, shared by the
    two projects below: the second one compiles only its own kernels)."""
    from tinygen.device import pio_offline
    require_tool("arm-none-eabi-g++")
    require_tool("qemu-system-arm")
    core = tmp_path_factory.mktemp("pio-core-tflm")
    pio_offline.ensure_offline_core(core)
    return core


@pytest.mark.parametrize("fixture,ops", [("sine_project", {"FULLY_CONNECTED"}),
                                         ("digits_project", {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                                                             "SOFTMAX"})])
def test_qemu_m4_tflm_bit_exact(fixture, ops, request, tflm_tree, pio_core, tmp_path):
    from platformio.project.config import ProjectConfig

    model = request.getfixturevalue(fixture) / "model.tflite"
    project = tmp_path / "qemu-tflm"
    build_ok("--board", "qemu-m4", "--runtime", "tflm", "--tflm-dir", str(tflm_tree), "--model", str(model),
           "--out", str(project))
    cfg = ProjectConfig(str(project / "platformio.ini"), parse_extra=False)
    assert cfg.get("env:qemu-m4", "custom_tinygen_tflm_dir") == tflm_tree.as_posix()
    assert not cfg.get("env:qemu-m4", "lib_deps")
    man = json.loads((project / "tinygen.json").read_text())
    assert set(cfg.get("env:qemu-m4", "custom_tinygen_tflm_ops").split()) == set(man["ops"])
    assert set(man["ops"]) >= ops
    assert (project / "src" / "tg_tflm_platform.cc").is_file()

    res = run_cli("run", "--project", str(project), "--json", "--vectors", "16",
                  env={"PLATFORMIO_CORE_DIR": str(pio_core)}, timeout=1200)
    assert res.returncode == 0, f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    result = json.loads(res.stdout)
    m = result["metrics"]
    assert result["runtime"] == "tflm"
    assert m["passed"] and m["max_abs_diff_lsb"] == 0 and m["exact_match_pct"] == 100.0
    assert m["vectors"] == man["vectors"]["count"] + 16
    assert m["instructions_per_inference"]["min"] > 0

    # bare metal: nothing of the Arduino core or the tree's Arduino files got in
    elf = project / ".pio" / "build" / "qemu-m4" / "firmware.elf"
    nm = subprocess.run(["arm-none-eabi-nm", "-C", str(elf)], capture_output=True, text=True, check=True).stdout
    assert "DebugLog" in nm and "tflite::MicroInterpreter::Invoke" in nm
    assert "Serial" not in nm and "peripherals::" not in nm
