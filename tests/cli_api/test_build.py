"""`tinygen build` end to end through the real CLI, checked against independent references:
TFLite's own interpreter for the op list, the tflite_micro interpreter for outputs, the
compilers for the C, PlatformIO's own config reader for platformio.ini, scikit-learn's
labels for accuracy."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, require_tool, tflm_outputs

HEX = re.compile(r"0x([0-9a-f]{2}),")


def c_array_bytes(model_data_cc: Path) -> bytes:
    text = model_data_cc.read_text()
    body = text[text.index("{") + 1: text.index("};")]
    return bytes(int(h, 16) for h in HEX.findall(body))


def tflite_op_names(model_bytes: bytes) -> set[str]:
    """Ops as TensorFlow Lite's own interpreter lists them (independent of tinygen's reader)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=model_bytes)
    return {d["op_name"] for d in interp._get_ops_details()}


@pytest.mark.parametrize("fixture", ["sine_project", "digits_project"])
def test_c_array_round_trips_to_the_exact_tflite(fixture, request):
    project = request.getfixturevalue(fixture)
    raw = (project / "model.tflite").read_bytes()
    assert c_array_bytes(project / "lib/tinygen_model/src" / "model_data.cc") == raw
    manifest = json.loads((project / "tinygen.json").read_text())
    assert manifest["model_sha256"] == hashlib.sha256(raw).hexdigest()
    assert f"#define TG_MODEL_DATA_LEN {len(raw)}u" in (project / "lib/tinygen_model/src" / "model_data.h").read_text()
    assert hashlib.sha256(raw).hexdigest() in (project / "lib/tinygen_model/src" / "model_data.cc").read_text()


def test_model_data_compiles_and_runs_on_host(sine_project, tmp_path):
    """Host g++ with warnings as errors and ASan/UBSan: the array is 16-byte aligned and holds the file."""
    require_tool("g++")
    main = tmp_path / "check.cc"
    main.write_text(
        '#include <cstdio>\n#include <cstdint>\n#include <cstring>\n#include "model_data.h"\n'
        "int main(int argc, char **argv) {\n"
        "  (void)argc;\n"
        "  if (reinterpret_cast<uintptr_t>(TG_MODEL_DATA) % 16 != 0) return 3;\n"
        "  if (g_sine_model_data_len != TG_MODEL_DATA_LEN) return 4;\n"
        "  FILE *f = std::fopen(argv[1], \"rb\"); if (!f) return 5;\n"
        "  static unsigned char buf[1 << 20]; size_t n = std::fread(buf, 1, sizeof buf, f); std::fclose(f);\n"
        "  if (n != g_sine_model_data_len) return 6;\n"
        "  return std::memcmp(buf, TG_MODEL_DATA, n) == 0 ? 0 : 7;\n}\n")
    exe = tmp_path / "check"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                    "-I", str(sine_project / "lib/tinygen_model/src"), str(main), str(sine_project / "lib/tinygen_model/src" / "model_data.cc"),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    res = subprocess.run([str(exe), str(sine_project / "model.tflite")])
    assert res.returncode == 0


def test_model_data_compiles_for_cortex_m4(digits_project, tmp_path):
    require_tool("arm-none-eabi-g++")
    res = subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                          "-mfpu=fpv4-sp-d16", "-Os", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-c",
                          str(digits_project / "lib/tinygen_model/src" / "model_data.cc"), "-o", str(tmp_path / "m.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    size = subprocess.run(["arm-none-eabi-size", "-A", str(tmp_path / "m.o")], capture_output=True, text=True)
    rodata = [ln for ln in size.stdout.splitlines() if ln.startswith(".rodata")]
    assert rodata and int(rodata[0].split()[1]) >= len((digits_project / "model.tflite").read_bytes())


@pytest.mark.parametrize("fixture,board,platform,pio_board", [
    ("sine_project", "esp32", "espressif32", "esp32dev"),
    ("digits_project", "nano33ble", "nordicnrf52", "nano33ble"),
])
def test_platformio_ini_parses_with_platformio(fixture, board, platform, pio_board, request):
    from platformio.project.config import ProjectConfig

    project = request.getfixturevalue(fixture)
    cfg = ProjectConfig(str(project / "platformio.ini"), parse_extra=False)
    env = f"env:{board}"
    assert cfg.envs() == [board, f"{board}_example", f"{board}_tflm_debug"]  # TFLM projects: the debug build
    assert cfg.get(env, "platform").split("@")[0] == platform
    assert cfg.get(env, "board") == pio_board
    assert cfg.get(env, "framework") == ["arduino"]
    deps = cfg.get(env, "lib_deps")
    board_file = json.loads((REPO / "boards" / f"{board}.json").read_text())
    tflm = board_file["tflm"]  # the board file's one fact: library + exact version
    assert deps == [f"{tflm['library']}@{tflm['version']}"]
    assert cfg.get(env, "monitor_speed") == board_file["platformio"]["monitor_speed"]
    raw = (project / "model.tflite").read_bytes()
    assert cfg.get(env, "custom_tinygen_model_sha256") == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("fixture", ["sine_project", "digits_project"])
def test_op_resolver_registers_exactly_the_models_ops(fixture, request):
    from tinygen.analysis.ops import TFLM_RESOLVER_METHODS

    project = request.getfixturevalue(fixture)
    glue = (project / "lib/tinygen_model/src" / "tg_runtime_tflm.cc").read_text()
    registered = re.findall(r"resolver\.(Add\w+)\((?:tflite::Register_\w+_INT8\(\))?\)", glue)
    expected = tflite_op_names((project / "model.tflite").read_bytes())
    by_method = {v: k for k, v in TFLM_RESOLVER_METHODS.items()}
    assert sorted(by_method[m] for m in registered) == sorted(expected)
    assert len(registered) == len(set(registered))
    n = int(re.search(r"MicroMutableOpResolver<(\d+)>", glue).group(1))
    assert n == len(expected)


@pytest.mark.parametrize("fixture", ["sine_project", "digits_project"])
def test_reference_vectors_reproduce_through_tflite_micro(fixture, request):
    project = request.getfixturevalue(fixture)
    raw = (project / "model.tflite").read_bytes()
    with np.load(project / "vectors" / "reference.npz") as z:
        inputs, outputs = z["inputs"], z["outputs"]
        assert inputs.dtype == np.int8 and outputs.dtype == np.int8
        assert len(inputs) == json.loads((project / "tinygen.json").read_text())["vectors"]["count"]
        np.testing.assert_array_equal(tflm_outputs(raw, inputs), outputs)


def test_classifier_int8_accuracy_within_bound_of_float(digits_project):
    """On the 360 held-out digits: int8 accuracy (tflite_micro) within 3 points of the float
    model's, and at least 85 %; labels come from scikit-learn."""
    raw = (digits_project / "model.tflite").read_bytes()
    with np.load(digits_project / "vectors" / "reference.npz") as z:
        inputs, labels, float_out = z["inputs"], z["labels"], z["float_outputs"]
    assert len(labels) == 360
    int8_pred = tflm_outputs(raw, inputs).reshape(len(inputs), -1).argmax(1)
    float_pred = float_out.reshape(len(inputs), -1).argmax(1)
    int8_acc, float_acc = np.mean(int8_pred == labels), np.mean(float_pred == labels)
    assert float_acc >= 0.85
    assert int8_acc >= float_acc - 0.03
    ops = tflite_op_names(raw)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= ops
    assert ops & {"MAX_POOL_2D", "AVERAGE_POOL_2D"}


def test_sine_int8_close_to_float_and_to_sin(sine_project):
    raw = (sine_project / "model.tflite").read_bytes()
    m = json.loads((sine_project / "tinygen.json").read_text())
    with np.load(sine_project / "vectors" / "reference.npz") as z:
        inputs, x = z["inputs"], z["float_inputs"]
    q = tflm_outputs(raw, inputs).astype(np.float32)
    y = (q - m["output"]["zero_point"]) * m["output"]["scale"]
    err = np.abs(y.reshape(-1) - np.sin(x.reshape(-1)))
    assert np.sqrt(np.mean(err ** 2)) < 0.12


def test_fully_int8_with_batch_one_and_single_reshape(digits_project):
    """Full-integer: int8 in/out, int8 weights, int32 biases; batch fixed to 1 so Flatten is one RESHAPE."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=(digits_project / "model.tflite").read_bytes())
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert list(interp.get_input_details()[0]["shape"]) == [1, 8, 8, 1]
    ops = [d["op_name"] for d in interp._get_ops_details()]
    assert ops.count("RESHAPE") == 1
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(ops)
    for d in interp.get_tensor_details():
        assert d["dtype"] in (np.int8, np.int32), d["name"]


def test_dense_is_per_tensor_for_the_tflm_boards(sine_project):
    """The pinned TFLM Arduino library computes per-tensor FULLY_CONNECTED only."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=(sine_project / "model.tflite").read_bytes())
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    fcs = [op for op in interp._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    assert len(fcs) == 3
    for op in fcs:
        weights = tensors[op["inputs"][1]]
        assert weights["dtype"] == np.int8
        assert len(weights["quantization_parameters"]["scales"]) == 1, weights["name"]
    assert "per-tensor" in json.loads((sine_project / "tinygen.json").read_text())["quantization"]


def test_building_twice_gives_identical_bytes(sine_project, session_dir):
    from conftest import build_ok

    again = session_dir / "sine-esp32-again"
    build_ok("--board", "esp32", "--out", str(again))
    a = {p.relative_to(sine_project): p.read_bytes() for p in sorted(sine_project.rglob("*")) if p.is_file()}
    b = {p.relative_to(again): p.read_bytes() for p in sorted(again.rglob("*")) if p.is_file()}
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k] == b[k], f"{k} differs between two identical builds"


def test_generated_readme_and_banner(sine_project):
    readme = (sine_project / "README.md").read_text()
    assert "pio run -t upload" in readme and "tinygen verify" in readme
    for f in ("model_data.cc", "model_data.h", "tg_runtime_tflm.cc"):
        assert "Generated by tinygen" in (sine_project / "lib/tinygen_model/src" / f).read_text()
