"""`tinygen verify --layers` and `--profile` on the emulated Cortex-M4: real PlatformIO build, real
QEMU, a real pty, the LAYERS / PROFILE requests, and tflite_micro (kPreserveAllTensors) as the
reference for every intermediate tensor.

The model is written here as a flatbuffer (no TensorFlow, so no training and no converter):
FULLY_CONNECTED (RELU) -> FULLY_CONNECTED -> FULLY_CONNECTED -> SOFTMAX, int8, seeded weights.
The project is built once; the clean firmware must show no divergence. Then one statement is
compiled into the project's tg_model.c right after op 1's kernel call, adding 1 LSB to one
element of its output (a fault in one kernel of one layer; op 0 has the same type, so only the
right index passes), and the rebuilt firmware must be named at op 1, FULLY_CONNECTED, 1 LSB, one
element.  The TFLM glue is compile-checked against a TFLM tree when TINYGEN_TFLM_DIR is set.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from conftest import build_ok, require, require_tool, run_cli, tflm_tree_from_env

FAULT_OP = 1


def _fc_model(seed: int = 11, per_channel_op: int | None = None) -> bytes:
    """int8 [1,8] -> FC+RELU 16 -> FC 16 -> FC 4 -> SOFTMAX, per-tensor quantization (but the weights of
    FC ``per_channel_op``: one scale per output channel)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

    rng = np.random.default_rng(seed)
    m = S.ModelT()
    m.version, m.description = 3, "tinygen --layers test"
    m.buffers = [S.BufferT()]
    tensors = []

    def tensor(name, shape, dtype, scale, zp, data=None):
        t = S.TensorT()
        t.name, t.shape, t.type = name.encode(), list(shape), dtype
        q = S.QuantizationParametersT()
        scales = [float(v) for v in np.atleast_1d(scale)]
        q.scale, q.zeroPoint, q.quantizedDimension = scales, [int(zp)] * len(scales), 0
        t.quantization = q
        t.buffer = 0
        if data is not None:
            b = S.BufferT()
            b.data = list(np.ascontiguousarray(data).tobytes())
            m.buffers.append(b)
            t.buffer = len(m.buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    codes = {}

    def opcode(code):
        return codes.setdefault(code, len(codes))

    ops = []
    x = tensor("input", (1, 8), S.TensorType.INT8, 0.05, -3)
    prev, prev_scale = x, 0.05
    for k, (n_in, n_out, act, out_scale, out_zp) in enumerate(
            [(8, 16, S.ActivationFunctionType.RELU, 0.1, -128), (16, 16, S.ActivationFunctionType.NONE, 0.15, 5),
             (16, 4, S.ActivationFunctionType.NONE, 0.2, 0)]):
        w_scale = 0.02 + 0.01 * k
        if k == per_channel_op:
            w_scale = w_scale * (1.0 + 0.05 * np.arange(n_out))
        w = tensor(f"w{k}", (n_out, n_in), S.TensorType.INT8, w_scale, 0,
                   rng.integers(-127, 128, size=(n_out, n_in), dtype=np.int8))
        b = tensor(f"b{k}", (n_out,), S.TensorType.INT32, prev_scale * w_scale, 0,
                   rng.integers(-2000, 2000, size=n_out).astype("<i4"))
        y = tensor(f"dense {k} \x1b[31m$out", (1, n_out), S.TensorType.INT8, out_scale, out_zp)
        op = S.OperatorT()
        op.opcodeIndex = opcode(S.BuiltinOperator.FULLY_CONNECTED)
        op.inputs, op.outputs = [prev, w, b], [y]
        op.builtinOptionsType = S.BuiltinOptions.FullyConnectedOptions
        op.builtinOptions = S.FullyConnectedOptionsT()
        op.builtinOptions.fusedActivationFunction = act
        ops.append(op)
        prev, prev_scale = y, out_scale
    probs = tensor("probs", (1, 4), S.TensorType.INT8, 1.0 / 256, -128)
    op = S.OperatorT()
    op.opcodeIndex = opcode(S.BuiltinOperator.SOFTMAX)
    op.inputs, op.outputs = [prev], [probs]
    op.builtinOptionsType = S.BuiltinOptions.SoftmaxOptions
    op.builtinOptions = S.SoftmaxOptionsT()
    op.builtinOptions.beta = 1.0
    ops.append(op)

    g = S.SubGraphT()
    g.tensors, g.operators, g.inputs, g.outputs, g.name = tensors, ops, [x], [probs], b"main"
    m.subgraphs = [g]
    m.operatorCodes = [None] * len(codes)
    for code, i in codes.items():
        c = S.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = code
        c.version = 1
        m.operatorCodes[i] = c
    b = flatbuffers.Builder(4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _inject_fault(project: Path, op: int) -> None:
    """Compile a +1 LSB (saturating) on element 0 of op's output into the generated model code."""
    path = project / "lib" / "tinygen_model" / "src" / "tg_model.c"
    text = path.read_text()
    hook = re.search(rf"    if \(tg_hook != NULL\) {{\n        tg_hook\(tg_hook_ctx, {op}u, (.+), \d+u\);\n    }}\n",
                     text)
    assert hook, "the emitted model has no op hook for op %d" % op
    fault = ("    { int8_t *tg_fault = (int8_t *)(void *)%s; /* test fault: op %d off by one LSB */\n"
             "      tg_fault[0] = (int8_t)(tg_fault[0] == 127 ? 126 : tg_fault[0] + 1); }\n" % (hook.group(1), op))
    path.write_text(text[:hook.start()] + fault + text[hook.start():])


def _run(project: Path, *extra: str) -> dict:
    res = run_cli("run", "--project", str(project), "--vectors", "0", "--json", *extra, timeout=600)
    assert "Traceback" not in res.stderr
    assert res.returncode in (0, 5), res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    try:
        raw = _fc_model()
    except ImportError:
        require(False, "tflite_micro")
    d = tmp_path_factory.mktemp("layers")
    (d / "fc.tflite").write_bytes(raw)
    build_ok("--board", "qemu-m4", "--model", str(d / "fc.tflite"), "--vectors", "4", "--out", str(d / "p"))
    return d / "p"


def test_clean_build_no_divergence_and_profile(project):
    result = _run(project, "--layers", "--profile")
    assert result["metrics"]["passed"]
    layers = result["layers"]
    assert layers["divergence"] is None and layers["ops_compared"] == layers["ops_in_model"] == 4
    prof = result["profile"]
    assert prof["runtime"] == "compiled" and prof["unit"].startswith("instructions")
    assert sorted(o["op"] for o in prof["ops"]) == [0, 1, 2, 3]
    assert [o["value"] for o in prof["ops"]] == sorted((o["value"] for o in prof["ops"]), reverse=True)
    assert all(o["value"] > 0 for o in prof["ops"])
    reports = result["reports"]
    md = Path(reports["markdown"]).read_text()
    assert "## Per-op check" in md and "no divergence" in md and "## Per-op profile" in md
    assert Path(reports["profile_plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(Path(reports["json"]).read_text())["profile"]["ops"] == prof["ops"]
    # the profile command: same numbers (QEMU -icount is deterministic), its own report files
    res = run_cli("profile", "--project", str(project), "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["profiles"][0]["ops"] == prof["ops"]
    assert "| #" in Path(data["reports"]["markdown"]).read_text()


def test_one_lsb_fault_is_named(project):
    model_c = project / "lib" / "tinygen_model" / "src" / "tg_model.c"
    clean = model_c.read_text()
    _inject_fault(project, FAULT_OP)
    try:
        _check_fault_named(project)
    finally:
        model_c.write_text(clean)  # later tests get the clean firmware back (pio rebuilds it)


def _check_fault_named(project):
    # the console run: the divergence is printed (hostile tensor name escaped) and in verify.json
    res = run_cli("run", "--project", str(project), "--vectors", "0", "--layers", timeout=600)
    assert "Traceback" not in res.stderr and res.returncode in (0, 5), res.stderr
    assert f"first divergent op: #{FAULT_OP} FULLY_CONNECTED" in res.stdout, res.stdout + res.stderr
    assert "\x1b" not in res.stdout
    d = json.loads((project / "reports" / "verify.json").read_text())["layers"]["divergence"]
    assert d is not None
    assert (d["op"], d["type"]) == (FAULT_OP, "FULLY_CONNECTED")
    assert (d["max_abs_diff_lsb"], d["differing_elements"]) == (1, 1)
    assert d["output_quantization"]["per_channel"] is False and d["fused_activation"] == "NONE"
    assert "1-LSB" in d["diagnosis"]
    assert "first divergent op: #1" in (project / "reports" / "verify.md").read_text()


def test_diagnoses_from_the_pattern(tmp_path):
    """The diagnosis reads the difference pattern at the first divergent op: the board's tensors are
    the reference's with a known fault (per-channel FC computed with one scale; a rounding shift)."""
    from tinygen.device.op_stream import LayerDump
    from tinygen.tflite.model import parse_model
    from tinygen.verification.layers import compare, reference_tensors

    try:
        raw = _fc_model(per_channel_op=1)
    except ImportError:
        require(False, "tflite_micro")
    model = parse_model(raw)
    x = np.random.default_rng(3).integers(-128, 128, size=8, dtype=np.int16).astype(np.int8)
    ref = reference_tensors(raw, x, 1 << 16)
    outs = [op.outputs[0] for op in model.operators]

    def dump(op, fault):
        tensors = {i: ref[t].tobytes() for i, t in enumerate(outs)}
        tensors[op] = fault(ref[outs[op]].astype(np.int32)).clip(-128, 127).astype(np.int8).tobytes()
        return LayerDump(order=list(range(len(outs))), tensors=tensors)

    assert compare(model, dump(0, lambda v: v), ref)["divergence"] is None
    # one weight scale for every channel: channel c off in proportion to its scale ratio
    per_tensor = compare(model, dump(1, lambda v: np.round((v - 5) / (1.0 + 0.05 * np.arange(16)) + 5)), ref)
    d = per_tensor["divergence"]
    assert (d["op"], d["type"], d["weights_quantization"]["per_channel"]) == (1, "FULLY_CONNECTED", True)
    assert "per-channel FULLY_CONNECTED" in d["diagnosis"]
    rounding = compare(model, dump(0, lambda v: np.where(v > -128, v - 1, v)), ref)["divergence"]
    assert rounding["op"] == 0 and rounding["max_abs_diff_lsb"] == 1
    assert "rounding-mode" in rounding["diagnosis"]


def test_tflm_glue_with_op_hook_compiles_against_the_tree(project, tmp_path):
    """The TFLM glue with its op hook (profiler interface + the interpreter's context) compiles
    warning-free for a Cortex-M4 against the tree, as tests/codegen/test_tflm_glue.py checks the glue."""
    from support.tflm_tree import BOARD_DEFINES, CXXFLAGS, TREE_INCLUDE_DIRS

    tree = tflm_tree_from_env("src/tensorflow/lite/micro", "in Arduino-library layout")
    gxx = require_tool("arm-none-eabi-g++")
    out = tmp_path / "tflm"
    build_ok("--board", "nano33ble", "--model", str(project.parent / "fc.tflite"), "--vectors", "2",
             "--out", str(out))
    src = out / "lib" / "tinygen_model" / "src"
    assert "tinygen_model_rt_set_op_hook" in (src / "tg_runtime_tflm.cc").read_text()
    (tmp_path / "inc").mkdir()
    for name in ("Arduino.h", "Wire.h"):
        (tmp_path / "inc" / name).write_text("/* stand-in for the Arduino core */\n")
    cmd = [gxx, *CXXFLAGS, *BOARD_DEFINES["nano33ble"], f"-I{src}", f"-I{tmp_path / 'inc'}"]
    cmd += [f"-isystem{tree / d}" for d in TREE_INCLUDE_DIRS]
    res = subprocess.run(cmd + [str(src / "tg_runtime_tflm.cc"), "-o", str(tmp_path / "glue.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
@pytest.mark.tflm
def test_tflm_on_the_emulator_layers_and_profile_side_by_side(project, tmp_path):
    """With a TFLM tree: the same model on TFLM under QEMU shows no divergence through the profiler
    hook, and `tinygen profile` puts compiled and tflm side by side (the tree is compiled once)."""
    tree = tflm_tree_from_env("src/tensorflow/lite/micro", "in Arduino-library layout")
    out = tmp_path / "tflm-qemu"
    res = run_cli("build", "--board", "qemu-m4", "--runtime", "tflm", "--model", str(project.parent / "fc.tflite"),
                  "--vectors", "2", "--out", str(out), env={"TINYGEN_TFLM_DIR": str(tree)})
    assert res.returncode == 0, res.stderr
    result = _run(out, "--layers")
    assert result["runtime"] == "tflm" and result["metrics"]["passed"]
    assert result["layers"]["divergence"] is None and result["layers"]["ops_compared"] == 4
    res = run_cli("profile", "--project", str(project), "--project", str(out), "--json", timeout=900)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [p["runtime"] for p in data["profiles"]] == ["compiled", "tflm"]
    assert all(sorted(o["op"] for o in p["ops"]) == [0, 1, 2, 3] for p in data["profiles"])
    assert Path(data["reports"]["plot"]).read_bytes()[:4] == b"\x89PNG"
