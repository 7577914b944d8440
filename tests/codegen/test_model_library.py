"""The project's model library (lib/tinygen_model, tinygen_model.h) and its example application.

On the emulated Cortex-M4: the example environment built by the real offline PlatformIO, its ELF
run in QEMU, its UART read over the pty, every printed output compared with the tflite_micro
interpreter on the same int8 inputs (sine and digits, compiled runtime).

On the host: the library's C (compiled runtime) with -Wall -Wextra -Werror, ASan and UBSan,
called from C++ (the header's extern "C"), and predict_float's quantization at the edges compared
with tflite_micro running TFLite's QUANTIZE op (an int8 RESHAPE-only model makes the library's
output its quantized input); NaN and +-Inf checked against the header's documented behaviour.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import build_ok, require, require_tool

LIB_SRC = "lib/tinygen_model/src"
STATUS_NAMES = ["OK", "NOT_INITIALIZED", "NULL_ARGUMENT", "BAD_LENGTH", "NAN_INPUT", "ALLOC_FAILED",
                "UNSUPPORTED_OP", "MODEL_MISMATCH", "INVOKE_FAILED"]  # the header's numbering, 0..8


# ------------------------------------------------------------------ the example on QEMU

@pytest.fixture(scope="module")
def pio_core(tmp_path_factory):
    from tinygen.device import pio_build, pio_offline

    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    core = tmp_path_factory.mktemp("pio-core-lib")
    pio_offline.ensure_offline_core(core)
    return core


def _qemu_project(session_dir: Path, name: str, *args: str) -> Path:
    """The session's emulated-board project (test_device_loop builds the same ones), else a new one."""
    out = session_dir / name
    if (out / "tinygen.json").is_file():
        return out
    out = session_dir / f"{name}-lib"
    if not out.exists():
        build_ok("--board", "qemu-m4", *args, "--out", str(out))
    return out


def _run_example(project: Path, core: Path) -> list[str]:
    """pio run -e qemu-m4_example, then the ELF in QEMU; the UART's lines up to 'done N'."""
    import serial

    from tinygen.device import pio_build, pio_offline
    from tinygen.device.emulator import QemuBoard

    pio_build.pio_run(project, core_dir=core, environment="qemu-m4_example")
    elf = project / ".pio" / "build" / "qemu-m4_example" / "firmware.elf"
    text = b""
    with QemuBoard(elf, {"machine": "mps2-an386"}) as qb, serial.Serial(qb.port, 115200, timeout=0.2) as port:
        deadline = time.monotonic() + 30
        while not re.search(rb"\ndone \d+\n", text) and time.monotonic() < deadline:
            text += port.read(4096)
    lines = text.decode("ascii").splitlines()
    assert lines and lines[-1].startswith("done "), text
    return lines


def _example_header_floats(project: Path) -> np.ndarray:
    """The example's inputs as compiled in: the C99 hex-float literals of its vectors header."""
    text = (project / "examples" / "predict" / "tinygen_example_vectors.h").read_text()
    lits = re.findall(r"(-?0x[0-9a-f.]+p[+-]\d+|-?0\.0)f", text)
    return np.array([float.fromhex(s) if "x" in s else float(s) for s in lits], dtype=np.float32)


@pytest.mark.parametrize("name,args", [("sine-qemu", ()), ("digits-qemu", ("--recipe", "digits", "--vectors", "100"))],
                         ids=["sine", "digits"])
def test_example_on_qemu_prints_the_reference_outputs(name, args, session_dir, pio_core):
    from support.compiled_harness import tflm_outputs

    project = _qemu_project(session_dir, name, *args)
    lines = _run_example(project, pio_core)
    assert lines[0] == "tinygen_model example: runtime compiled, init OK"
    preds = [ln for ln in lines if ln.startswith("pred ")]
    n = int(lines[-1].split()[1])
    assert n == len(preds) >= 1

    from tinygen.tflite.model import parse_model
    m = parse_model((project / "model.tflite").read_bytes())
    it, ot = m.input_tensor(), m.output_tensor()
    if name.startswith("sine"):
        # A sweep over [0, 2*pi]: the floats the example was given, read back from its header, and
        # quantized here as TFLite's QUANTIZE op does (float32 x / scale, round half away, clamp).
        x = _example_header_floats(project)
        assert len(x) == n and x[0] == 0.0 and abs(x[-1] - np.float32(2 * np.pi)) < 1e-6, x
        v = x / np.float32(it.scale[0])
        q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) + it.zero_point[0]
        inputs = np.clip(q, -128, 127).astype(np.int8).reshape((n,) + tuple(it.shape))
    else:
        inputs = np.load(project / "vectors" / "reference.npz")["inputs"][:n]
    want = tflm_outputs((project / "model.tflite").read_bytes(), inputs).reshape(n, -1)
    for i, line in enumerate(preds):
        head, floats = line.split(" | ")
        floats, _, label = floats.partition(" -> ")
        # digits: the recipe's labels "0".."9", named for the first largest output
        assert label == (str(int(np.argmax(want[i]))) if name.startswith("digits") else ""), line
        assert head.startswith(f"pred {i}: ")
        got_q = np.array(head.split(": ")[1].split(), dtype=np.int64)
        np.testing.assert_array_equal(got_q, want[i].astype(np.int64), err_msg=line)  # bit-exact int8
        want_f = (want[i].astype(np.float64) - ot.zero_point[0]) * ot.scale[0]
        np.testing.assert_allclose(np.array(floats.split(), dtype=np.float64), want_f, atol=1.5e-6)
    cycles = [ln for ln in lines if ln.startswith("cycles ")]
    assert len(cycles) == 1 and int(cycles[0].split()[1]) > 0  # the HAL's SysTick, through the hook


def test_example_on_qemu_with_tflm(sine_project, session_dir, pio_core):
    """The same example over the TFLM runtime (the library's tg_runtime_tflm.cc): needs a TFLM tree,
    skipped without TINYGEN_TFLM_DIR like the other TFLM tests."""
    from support.compiled_harness import tflm_outputs
    from conftest import tflm_tree_from_env

    tree = tflm_tree_from_env("src/tensorflow/lite/micro", "in Arduino-library layout")
    project = session_dir / "sine-qemu-tflm-lib"
    if not project.exists():
        build_ok("--board", "qemu-m4", "--runtime", "tflm", "--tflm-dir", str(tree), "--model",
                 str(sine_project / "model.tflite"), "--vectors", "4", "--out", str(project))
    lines = _run_example(project, pio_core)
    assert lines[0] == "tinygen_model example: runtime tflm, init OK"
    preds = [ln.split(" | ")[0].split(": ")[1].split() for ln in lines if ln.startswith("pred ")]
    vec = np.load(project / "vectors" / "reference.npz")
    want = tflm_outputs((project / "model.tflite").read_bytes(), vec["inputs"][:len(preds)])
    np.testing.assert_array_equal(np.array(preds, dtype=np.int64), want.reshape(len(preds), -1))


# ------------------------------------------------------------------ the library's C on the host

DRIVER = r"""
#include <cstdio>
#include <cstring>
#include <stdint.h>
#include "tinygen_model.h"

static uint32_t g_clock;
extern "C" uint32_t tinygen_model_ticks(void) { return g_clock += 7u; }

static void hex_name(const char *what, const char *s) {
  std::printf("%s", what);
  for (const unsigned char *p = (const unsigned char *)s; *p; ++p) std::printf(" %02x", *p);
  std::printf("\n");
}

static uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

int main() {
  static float in[TINYGEN_MODEL_INPUT_COUNT], out[TINYGEN_MODEL_OUTPUT_COUNT];
  std::printf("before_init %d\n", tinygen_model_predict_float(in, TINYGEN_MODEL_INPUT_COUNT, out,
                                                               TINYGEN_MODEL_OUTPUT_COUNT));
  int a = tinygen_model_init(), b = tinygen_model_init();
  std::printf("init %d %d\n", a, b);
  std::printf("null %d %d\n", tinygen_model_predict_float(NULL, TINYGEN_MODEL_INPUT_COUNT, out,
                                                           TINYGEN_MODEL_OUTPUT_COUNT),
              tinygen_model_predict_int8((const int8_t *)in, TINYGEN_MODEL_INPUT_COUNT, NULL,
                                         TINYGEN_MODEL_OUTPUT_COUNT));
  std::printf("badlen %d %d\n", tinygen_model_predict_float(in, TINYGEN_MODEL_INPUT_COUNT + 1, out,
                                                             TINYGEN_MODEL_OUTPUT_COUNT),
              tinygen_model_predict_float(in, TINYGEN_MODEL_INPUT_COUNT, out, 0));
  std::printf("input %d %u %08x %d", tinygen_model_input_rank(), (unsigned)tinygen_model_input_count(),
              (unsigned)bits(tinygen_model_input_scale()), (int)tinygen_model_input_zero_point());
  for (int i = -1; i <= tinygen_model_input_rank(); ++i) std::printf(" %d", tinygen_model_input_dim(i));
  std::printf("\noutput %d %u %08x %d", tinygen_model_output_rank(), (unsigned)tinygen_model_output_count(),
              (unsigned)bits(tinygen_model_output_scale()), (int)tinygen_model_output_zero_point());
  for (int i = -1; i <= tinygen_model_output_rank(); ++i) std::printf(" %d", tinygen_model_output_dim(i));
  std::printf("\n");
  hex_name("input_name", tinygen_model_input_name());
  hex_name("output_name", tinygen_model_output_name());
  std::printf("label %d\n", tinygen_model_class_label(0) == NULL);
  std::printf("runtime %s arena %u\n", tinygen_model_runtime_name(), (unsigned)tinygen_model_arena_bytes());
  std::printf("status");
  for (int s = -1; s <= 9; ++s) std::printf(" %s", tinygen_model_status_name(s));
  std::printf("\n");
  std::printf("cycles %u", (unsigned)tinygen_model_last_cycles());
  tinygen_model_predict_float(in, TINYGEN_MODEL_INPUT_COUNT, out, TINYGEN_MODEL_OUTPUT_COUNT);
  std::printf(" %u\n", (unsigned)tinygen_model_last_cycles());
  std::fflush(stdout);
  // then one line per input row of hexadecimal float32 bit patterns: status and output bits
  for (;;) {
    for (int i = 0; i < TINYGEN_MODEL_INPUT_COUNT; ++i) {
      unsigned u;
      if (std::scanf("%x", &u) != 1) return 0;
      uint32_t v = u;
      std::memcpy(&in[i], &v, 4);
    }
    for (int j = 0; j < TINYGEN_MODEL_OUTPUT_COUNT; ++j) out[j] = 12345.0f;  // untouched on a refusal
    std::printf("%d", tinygen_model_predict_float(in, TINYGEN_MODEL_INPUT_COUNT, out, TINYGEN_MODEL_OUTPUT_COUNT));
    for (int j = 0; j < TINYGEN_MODEL_OUTPUT_COUNT; ++j) std::printf(" %08x", (unsigned)bits(out[j]));
    std::printf("\n");
  }
}
"""


def _identity_model(lo: float, hi: float, n: int, int8_input: bool) -> bytes:
    """Keras Reshape (batch 1) calibrated on [lo, hi]: with int8 input it is one int8 RESHAPE,
    whose output (same quantization) is exactly what predict_float quantized; with float input
    the converter puts TFLite's QUANTIZE op in front (the reference)."""
    import tensorflow as tf

    from tinygen.intake.sources import quiet_native

    model = tf.keras.Sequential([tf.keras.Input(shape=(n,), batch_size=1), tf.keras.layers.Reshape((2, n // 2))])
    rep = [np.full((1, n), lo, np.float32), np.full((1, n), hi, np.float32)]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_input:
        conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with quiet_native():
        return conv.convert()


def _host_library(blob: bytes, work: Path) -> tuple[Path, Path]:
    """Build a qemu-m4 compiled project of ``blob`` through the API, compile its library (C, gcc)
    and the C++ driver with -Wall -Wextra -Werror and the sanitizers; (program, project)."""
    import tinygen
    from tinygen.verification.host_check import HOST_CFLAGS, find_compiler

    require_tool("g++")
    cc = find_compiler()
    (work / "m.tflite").write_bytes(blob)
    project = tinygen.build(model=str(work / "m.tflite"), board="qemu-m4", runtime="compiled", vectors=4,
                            out=str(work / "p")).path
    src = Path(project) / LIB_SRC
    objs = []
    for c in sorted(src.glob("*.c")):
        obj = work / (c.stem + ".o")
        res = subprocess.run([cc, *HOST_CFLAGS, "-I", str(src), "-c", str(c), "-o", str(obj)],
                             capture_output=True, text=True)
        assert res.returncode == 0, f"{c.name}:\n{res.stderr}"
        objs.append(str(obj))
    (work / "driver.cc").write_text(DRIVER)
    cxxflags = [f for f in HOST_CFLAGS if f != "-std=c99"] + ["-std=c++11"]
    exe = work / "driver"
    res = subprocess.run(["g++", *cxxflags, "-I", str(src), str(work / "driver.cc"), *objs, "-o", str(exe), "-lm"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return exe, Path(project)


def _run_driver(exe: Path, rows: np.ndarray) -> tuple[dict[str, list[str]], list[list[str]]]:
    stdin = "\n".join(" ".join(f"{v:08x}" for v in row) for row in np.asarray(rows, np.float32).view(np.uint32))
    res = subprocess.run([str(exe)], input=stdin + "\n", capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "runtime error" not in res.stderr, res.stderr  # ASan/UBSan findings
    lines = res.stdout.splitlines()
    head = {ln.split()[0]: ln.split()[1:] for ln in lines[:12]}
    return head, [ln.split() for ln in lines[12:]]


def _tools():
    require(importlib.util.find_spec("tflite_micro") is not None, "tflite_micro (Python package)")
    require_tool("gcc")


@pytest.fixture(scope="module")
def edge_setup(tmp_path_factory):
    """(library program, project, reference blob): calibration [-2, 13.9375] gives scale 1/16 and
    zero point -96, so halves between levels are exact float32 values."""
    _tools()
    work = tmp_path_factory.mktemp("lib-edges")
    exe, project = _host_library(_identity_model(-2.0, 13.9375, 8, True), work)
    return exe, project, _identity_model(-2.0, 13.9375, 8, False)


def test_api_facts_match_the_model(edge_setup):
    from tinygen.tflite.model import parse_model

    exe, project, _ = edge_setup
    m = parse_model((project / "model.tflite").read_bytes())
    it, ot = m.input_tensor(), m.output_tensor()
    head, _ = _run_driver(exe, np.zeros((0, 8)))
    assert head["before_init"] == ["1"] and head["init"] == ["0", "0"]
    assert head["null"] == ["2", "2"] and head["badlen"] == ["3", "3"]
    for key, t in (("input", it), ("output", ot)):
        rank, count, scale_bits, zp, *dims = head[key]
        assert int(rank) == len(t.shape) and int(count) == int(np.prod(t.shape))
        assert int(scale_bits, 16) == int(np.float32(t.scale[0]).view(np.uint32)) and int(zp) == t.zero_point[0]
        assert [int(d) for d in dims] == [0, *t.shape, 0]  # out-of-range indices give 0
    assert bytes.fromhex("".join(head["input_name"])) == it.name.encode()
    assert bytes.fromhex("".join(head["output_name"])) == ot.name.encode()
    assert head["label"] == ["1"]  # no labels known: NULL
    assert head["runtime"][0] == "compiled" and int(head["runtime"][2]) >= 0
    assert head["status"] == ["UNKNOWN", *STATUS_NAMES, "UNKNOWN"]
    assert head["cycles"] == ["0", "7"]  # nothing measured yet, then one tick of the driver's counter


def test_predict_float_rounds_and_clamps_as_tflite_quantize(edge_setup):
    from support.compiled_harness import tflm_outputs
    from tinygen.tflite.model import parse_model

    exe, project, ref_blob = edge_setup
    t = parse_model((project / "model.tflite").read_bytes()).input_tensor()
    rt = parse_model(ref_blob).output_tensor()
    assert (t.scale[0], t.zero_point[0]) == (rt.scale[0], rt.zero_point[0]) == (1 / 16, -96)
    k = np.arange(-140, 141, dtype=np.float64)
    ties = ((k + 0.5) / 16).astype(np.float32)
    assert np.all((ties / np.float32(1 / 16)) % 1 == 0.5)  # exactly halfway, in float32 too
    x = np.concatenate([ties, ties + np.float32(1 / 64), ties - np.float32(1 / 64),
                        np.array([0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, 1e6, -1e6,
                                  -8.0, -8.03125, 9.9375, 9.96875, 10.0, -10.0, 15.96875, 16.0],
                                 np.float32)]).astype(np.float32)
    x = np.pad(x, (0, -len(x) % 8)).reshape(-1, 8)
    want = tflm_outputs(ref_blob, x[:, None, :]).reshape(len(x), 8)
    _, rows = _run_driver(exe, x)
    assert len(rows) == len(x)
    assert all(r[0] == "0" for r in rows)
    out = np.array([[int(v, 16) for v in r[1:]] for r in rows], np.uint32).view(np.float32)
    got = out * 16 - 96  # the dequantized RESHAPE output, back to int8: exact for scale 1/16
    np.testing.assert_array_equal(got, want)
    assert np.any(want == 127) and np.any(want == -128)  # beyond the range on both sides was tested


def test_nan_is_refused_and_inf_saturates(edge_setup):
    exe, _, _ = edge_setup
    rows = np.zeros((4, 8), np.float32)
    rows[0, 0] = np.nan
    rows[1, 7] = -np.nan
    rows[2, :] = np.inf
    rows[3, :] = -np.inf
    _, got = _run_driver(exe, rows)
    untouched = f"{int(np.float32(12345.0).view(np.uint32)):08x}"
    assert got[0] == ["4"] + [untouched] * 8 and got[1] == ["4"] + [untouched] * 8  # NAN_INPUT, nothing run
    as_q = [np.array([int(v, 16) for v in r[1:]], np.uint32).view(np.float32) * 16 - 96 for r in got[2:]]
    assert got[2][0] == got[3][0] == "0"
    np.testing.assert_array_equal(as_q[0], [127] * 8)  # documented: +-Inf clamp like any value out of range
    np.testing.assert_array_equal(as_q[1], [-128] * 8)


def test_hostile_tensor_names_are_escaped_byte_for_byte(tmp_path):
    """A tensor name with quotes, newlines, `*/` or `??/` reaches the library's C only as an escaped
    string literal: the library compiles with -Werror and returns exactly the name's bytes."""
    from support.hostile import MARK, TENSOR_NAMES, rename_tensors, strip_c_comments
    from tinygen.tflite.model import parse_model

    _tools()
    name = "".join(TENSOR_NAMES[k] for k in ("close-comment", "newline", "trigraph", "nested")) + '"\\'
    blob = rename_tensors(_identity_model(-8.0, 7.9375, 8, True), name)
    exe, project = _host_library(blob, tmp_path)
    m = parse_model(blob)
    head, _ = _run_driver(exe, np.zeros((0, 8)))
    assert bytes.fromhex("".join(head["input_name"])) == m.input_tensor().name.encode()
    assert bytes.fromhex("".join(head["output_name"])) == m.output_tensor().name.encode()
    code = strip_c_comments(project / LIB_SRC / "tinygen_model.c")
    strings = re.findall(r'"(?:[^"\\\n]|\\.)*"', code)
    outside = re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', code)
    assert MARK not in outside and any(MARK in s for s in strings)


# ------------------------------------------------------------------ real boards: what can be checked here

@pytest.mark.parametrize("fixture,board", [("sine_project", "esp32"), ("digits_project", "nano33ble")])
def test_real_board_projects_hold_the_library_and_the_example_env(fixture, board, request, tmp_path):
    """PlatformIO's own config reader and source matcher: the example env extends the validation env
    and compiles the HAL and examples/predict/ instead of the validation app; `default_envs` is still
    the validation env. The example's C compiles with -Werror, its main.cpp against a stand-in
    Arduino.h (no Arduino core here; the board-truth kit compiles it against the real one)."""
    from platformio.fs import match_src_files
    from platformio.project.config import ProjectConfig

    project = request.getfixturevalue(fixture)
    cfg = ProjectConfig(str(project / "platformio.ini"), parse_extra=False)
    assert cfg.default_envs() == [board]
    ex = f"env:{board}_example"
    for option in ("platform", "board", "framework", "lib_deps", "monitor_speed", "build_flags"):
        assert cfg.get(ex, option) == cfg.get(f"env:{board}", option), option
    build_exts = ["c", "cc", "cpp", "cxx", "c++", "S", "spp", "SPP", "sx", "s", "asm", "ASM"]  # piobuild's SRC_BUILD_EXT
    chosen = match_src_files(str(project / "src"), cfg.get(ex, "build_src_filter"), build_exts)
    assert sorted(chosen) == ["../examples/predict/main.cpp", "../examples/predict/predict.c", "tg_hal_arduino.cpp"]
    lib = project / "lib" / "tinygen_model"
    meta = json.loads((lib / "library.json").read_text())
    assert meta["name"] == "tinygen_model" and meta["build"]["srcDir"] == "src"
    assert {"tinygen_model.h", "tinygen_model.c", "model_data.cc", "tg_runtime_tflm.cc"} <= {
        p.name for p in (lib / "src").iterdir()}

    cc = require_tool("gcc")
    inc = ["-I", str(lib / "src"), "-I", str(project / "src"), "-I", str(project / "examples" / "predict")]
    res = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *inc, "-c",
                          str(project / "examples" / "predict" / "predict.c"), "-o", str(tmp_path / "p.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (tmp_path / "Arduino.h").write_text("void delay(unsigned long ms);\n")
    res = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path), *inc, "-c",
                          str(project / "examples" / "predict" / "main.cpp"), "-o", str(tmp_path / "m.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
