"""Standard int8 .tflite files (per-channel FULLY_CONNECTED) on TFLM boards whose library computes
FULLY_CONNECTED per-tensor: each such layer is rewritten to RESHAPE + CONV_2D 1x1 + RESHAPE
(tinygen/tflite/fc_rewrite.py), and the rewrite must equal the user's original model bit for bit.

The models are made here with the usual TF recipe (Optimize.DEFAULT, int8 in/out, a
representative dataset), from Keras layers whose output channels have very different weight
ranges, so per-channel scales matter. Expected outputs come from the tflite_micro interpreter on
the ORIGINAL model.

The last two tests need a TFLM tree (TINYGEN_TFLM_DIR, Arduino-library layout with CMSIS-NN
kernels, e.g. spaziochirale/Chirale_TensorFlowLite v2.0.0) and skip without one: the rewritten
model runs bit-exact on qemu-m4 with the tree's CMSIS-NN kernels, and the original model on the
same build gives wrong outputs (the bug the rewrite fixes).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import build_ok, require_tool, run_cli, tflm_outputs, tflm_tree_from_env

N_RANDOM = 300


# ------------------------------------------------------------------ models and helpers

def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def _graph(raw: bytes):
    """(model object, {opcode index: builtin name}) straight from the flatbuffer."""
    schema = _schema()
    m = schema.ModelT.InitFromPackedBuf(raw, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = {i: names[max(c.builtinCode, c.deprecatedBuiltinCode)] for i, c in enumerate(m.operatorCodes)}
    return m, codes


def _ops(raw: bytes) -> list[tuple[str, object]]:
    m, codes = _graph(raw)
    return [(codes[op.opcodeIndex], op) for op in m.subgraphs[0].operators]


def _fc_weights(raw: bytes) -> list:
    m, _ = _graph(raw)
    g = m.subgraphs[0]
    return [g.tensors[op.inputs[1]] for name, op in _ops(raw) if name == "FULLY_CONNECTED"]


def _convert(model, rep: np.ndarray, per_channel: bool = True) -> bytes:
    """The usual recipe; ``rep`` holds whole input tensors (batch dimension included)."""
    import tensorflow as tf

    from tinygen.intake.sources import quiet_native

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x] for x in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    with quiet_native():
        return conv.convert()


def _keras(kind: str):
    """Seeded Dense models; output channels get weight ranges 30x apart. The second Dense of
    "mlp" keeps a zero bias, which the converter drops (an FC without bias input)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(11)
    L = tf.keras.layers
    if kind == "mlp":  # Dense-ReLU-Dense-Softmax; K=6 (CMSIS-NN general conv) and K=8 (1x1 fast path)
        layers = [tf.keras.Input((6,), batch_size=1), L.Dense(8, activation="relu"), L.Dense(3), L.Softmax()]
        in_shape = (1, 6)
    elif kind == "keep":  # 3-D input: the converter sets keep_num_dims
        layers = [tf.keras.Input((4, 6), batch_size=1), L.Dense(5)]
        in_shape = (1, 4, 6)
    elif kind == "batch":  # three rows per inference, fused RELU6
        layers = [tf.keras.Input((6,), batch_size=3), L.Dense(5, activation="relu6")]
        in_shape = (3, 6)
    else:  # "shared": one Dense applied twice, so two FULLY_CONNECTED ops read the same weight tensor
        inp = tf.keras.Input((6,), batch_size=1)
        shared = L.Dense(6, activation="relu")
        layers = None
        model = tf.keras.Model(inp, L.Dense(3)(shared(shared(inp))))
        in_shape = (1, 6)
    if layers is not None:
        model = tf.keras.Sequential(layers)
    rng = np.random.default_rng(11)
    dense = [layer for layer in model.layers if isinstance(layer, L.Dense)]
    for i, layer in enumerate(dense):
        k, n = layer.kernel.shape
        spread = np.geomspace(0.1, 3.0, n).astype(np.float32)
        layer.kernel.assign(rng.normal(size=(k, n)).astype(np.float32) * spread)
        if not (kind in ("mlp", "shared") and i == len(dense) - 1):
            layer.bias.assign(rng.normal(scale=0.5, size=(n,)).astype(np.float32))
    rep = rng.normal(size=(64,) + in_shape).astype(np.float32)
    return model, rep


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("std-int8")
    out = {}
    for kind in ("mlp", "keep", "batch", "shared"):
        model, rep = _keras(kind)
        out[kind] = d / f"{kind}.tflite"
        out[kind].write_bytes(_convert(model, rep))
        if kind == "mlp":
            out["mlp-per-tensor"] = d / "mlp-per-tensor.tflite"
            out["mlp-per-tensor"].write_bytes(_convert(model, rep, per_channel=False))
    return out


def probe(shape: tuple[int, ...], n: int = N_RANDOM, seed: int = 5) -> np.ndarray:
    """Extremes (all -128, all 127, alternating, zero) then uniform random int8."""
    size = int(np.prod(shape))
    alt = np.resize(np.array([-128, 127]), size)
    fixed = np.stack([np.full(size, -128), np.full(size, 127), alt, alt[::-1], np.zeros(size)])
    rnd = np.random.default_rng(seed).integers(-128, 128, size=(n, size))
    return np.concatenate([fixed, rnd]).astype(np.int8).reshape((-1,) + shape)


def input_shape(raw: bytes) -> tuple[int, ...]:
    m, _ = _graph(raw)
    g = m.subgraphs[0]
    return tuple(int(d) for d in g.tensors[g.inputs[0]].shape)


# ------------------------------------------------------------------ the rewrite itself

def test_models_are_standard_per_channel_int8(models):
    no_bias = 0
    for kind in ("mlp", "keep", "batch", "shared"):
        raw = models[kind].read_bytes()
        weights = _fc_weights(raw)
        assert weights, kind
        for w in weights:
            scales = np.asarray(w.quantization.scale)
            assert len(scales) == w.shape[0] > 1 and w.quantization.quantizedDimension == 0, kind
            assert scales.max() > 5 * scales.min(), kind  # genuinely different channels
        no_bias += sum(1 for name, op in _ops(raw) if name == "FULLY_CONNECTED"
                       and (len(op.inputs) < 3 or op.inputs[2] < 0))
        m, _ = _graph(raw)
        g = m.subgraphs[0]
        assert g.tensors[g.inputs[0]].type == g.tensors[g.outputs[0]].type == 9  # int8 io
    assert no_bias >= 1  # the zero-bias path is exercised
    keep = [op for name, op in _ops(models["keep"].read_bytes()) if name == "FULLY_CONNECTED"]
    assert keep[0].builtinOptions.keepNumDims
    shared = [op.inputs[1] for name, op in _ops(models["shared"].read_bytes()) if name == "FULLY_CONNECTED"]
    assert len(shared) == 3 and shared[0] == shared[1]
    for w in _fc_weights(models["mlp-per-tensor"].read_bytes()):
        assert len(w.quantization.scale) == 1


@pytest.mark.parametrize("kind", ["mlp", "keep", "batch", "shared"])
def test_rewrite_is_bit_exact_on_tflite_micro(models, kind):
    from tinygen.tflite.fc_rewrite import fc_to_conv

    raw = models[kind].read_bytes()
    new, n = fc_to_conv(raw)
    assert n == len(_fc_weights(raw)) and n > 0
    assert fc_to_conv(raw) == (new, n)  # deterministic bytes
    names = [name for name, _ in _ops(new)]
    assert "FULLY_CONNECTED" not in names and names.count("CONV_2D") == n and names.count("RESHAPE") >= 2 * n

    # The filters are the FC weights, byte for byte, with their per-channel scales on axis 0.
    m, _ = _graph(new)
    g = m.subgraphs[0]
    filters = [g.tensors[op.inputs[1]] for name, op in _ops(new) if name == "CONV_2D"]
    orig_m, _ = _graph(raw)
    fc_w = [op.inputs[1] for name, op in _ops(raw) if name == "FULLY_CONNECTED"]
    conv_w = [op.inputs[1] for name, op in _ops(new) if name == "CONV_2D"]
    assert len(set(conv_w)) == len(set(fc_w))  # shared weights stay one tensor
    for w, f in zip(_fc_weights(raw), filters):
        assert list(f.shape) == [w.shape[0], 1, 1, w.shape[1]]
        assert f.quantization.quantizedDimension == 0
        np.testing.assert_array_equal(f.quantization.scale, w.quantization.scale)
        assert bytes(m.buffers[f.buffer].data) == bytes(orig_m.buffers[w.buffer].data)

    x = probe(input_shape(raw))
    want, got = tflm_outputs(raw, x), tflm_outputs(new, x)
    og = orig_m.subgraphs[0]
    assert want.shape == got.shape == (len(x),) + tuple(og.tensors[og.outputs[0]].shape)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 3  # the outputs are not saturated into a constant


def test_rewrite_leaves_other_models_alone(models):
    from tinygen.common.boards import get_board
    from tinygen.tflite.fc_rewrite import fc_to_conv, for_board

    per_tensor = models["mlp-per-tensor"].read_bytes()
    assert fc_to_conv(per_tensor) == (per_tensor, 0)
    esp32 = get_board("esp32")
    assert for_board(per_tensor, esp32) == (per_tensor, None)
    raw = models["mlp"].read_bytes()
    assert for_board(raw, replace(esp32, tflm=replace(esp32.tflm, per_channel_fully_connected=True))) == (raw, None)
    new, note = for_board(raw, esp32)
    assert new != raw and note.startswith("FULLY_CONNECTED ×2 rewritten to CONV_2D 1×1 for per-channel exactness on ")


def test_a_rewrite_that_differs_is_refused(models):
    """The build's own check: a 'rewrite' with one weight changed must stop the build."""
    import flatbuffers

    from tinygen.common.boards import get_board
    from tinygen.common.errors import TinygenError
    from tinygen.analysis.equivalence import check_equivalent
    from tinygen.tflite.fc_rewrite import fc_to_conv

    raw = models["mlp"].read_bytes()
    new, _ = fc_to_conv(raw)
    m, _ = _graph(new)
    g = m.subgraphs[0]
    conv = [op for name, op in _ops(new) if name == "CONV_2D"][0]
    buf = m.buffers[g.tensors[conv.inputs[1]].buffer]
    data = np.array(buf.data, dtype=np.uint8)
    data[0] ^= 0x40
    buf.data = data
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    broken = bytes(b.Output())
    x = probe(input_shape(raw), n=16)
    check_equivalent(raw, new, x, tflm_outputs(raw, x), "mlp.tflite", get_board("esp32"))
    with pytest.raises(TinygenError, match=r"differs from the original on the tflite_micro interpreter in \d+ of"):
        check_equivalent(raw, broken, x, tflm_outputs(raw, x), "mlp.tflite", get_board("esp32"))


# ------------------------------------------------------------------ tinygen build / inspect

@pytest.mark.parametrize("kind,board", [("mlp", "esp32"), ("mlp", "nano33ble"), ("keep", "nano33ble")])
def test_build_for_real_boards_rewrites_and_matches_the_original(models, kind, board, tmp_path):
    original = models[kind].read_bytes()
    out = tmp_path / "p"
    res = build_ok("--board", board, "--model", str(models[kind]), "--vectors", "24", "--out", str(out), "--json")
    summary = json.loads(res.stdout)
    assert "rewritten to CONV_2D 1×1 for per-channel exactness" in summary["quantization"]
    man = json.loads((out / "tinygen.json").read_text())
    assert man["quantization"] == summary["quantization"]
    raw = (out / "model.tflite").read_bytes()
    assert raw != original and man["model_sha256"] != ""
    names = [name for name, _ in _ops(raw)]
    assert "FULLY_CONNECTED" not in names and {"CONV_2D", "RESHAPE"} <= set(man["ops"])
    glue = (out / "lib/tinygen_model/src" / "tg_runtime_tflm.cc").read_text()
    assert "AddConv2D" in glue and "AddReshape" in glue and "AddFullyConnected" not in glue
    # reference vectors are the USER'S model on tflite_micro, and the shipped model agrees with them
    with np.load(out / "vectors" / "reference.npz") as z:
        np.testing.assert_array_equal(z["outputs"], tflm_outputs(original, z["inputs"]))
        np.testing.assert_array_equal(z["outputs"], tflm_outputs(raw, z["inputs"]))

    # inspect says what build did: the same rewritten model, so the same figures
    res = run_cli("inspect", str(models[kind]), "--json")
    assert res.returncode == 0, res.stderr
    fit = json.loads(res.stdout)["fits"][board]["tflm"]
    assert fit["rewrite"].startswith("FULLY_CONNECTED ×")
    assert {k: fit[k] for k in man["budget"]} == man["budget"]


def test_inspect_table_names_the_rewrite(models):
    res = run_cli("inspect", str(models["mlp"]))
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if "nano33ble" in ln or "esp32" in ln]
    assert any("tflm (FC rewritten to CONV_2D)" in ln for ln in rows if "nano33ble" in ln)
    assert any("tflm (FC rewritten to CONV_2D)" in ln for ln in rows if "esp32" in ln)


def test_compiled_runtime_on_qemu_runs_the_original(models, tmp_path):
    """The compiled runtime computes per-channel FULLY_CONNECTED exactly: no rewrite there."""
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    out = tmp_path / "p"
    res = run_cli("run", "--board", "qemu-m4", "--runtime", "compiled", "--model", str(models["mlp"]),
                  "--out", str(out), "--json", "--vectors", "8", env={"PLATFORMIO_CORE_DIR": str(tmp_path / "core")},
                  timeout=1200)
    assert res.returncode == 0, f"{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    m = json.loads(res.stdout)["metrics"]
    assert m["passed"] and m["max_abs_diff_lsb"] == 0
    assert (out / "model.tflite").read_bytes() == models["mlp"].read_bytes()


# ------------------------------------------------------------------ with a TFLM tree (CMSIS-NN) on qemu-m4

@pytest.fixture(scope="module")
def tflm_tree() -> Path:
    return tflm_tree_from_env("src/tensorflow/lite/micro/kernels/cmsis_nn", "with CMSIS-NN kernels")


@pytest.fixture(scope="module")
def pio_core(tflm_tree, tmp_path_factory) -> Path:
    from tinygen.device import pio_offline
    require_tool("arm-none-eabi-g++")
    require_tool("qemu-system-arm")
    core = tmp_path_factory.mktemp("pio-core-fc")
    pio_offline.ensure_offline_core(core)
    return core


def _run_project(project: Path, pio_core: Path):
    res = run_cli("run", "--project", str(project), "--json", "--vectors", "16",
                  env={"PLATFORMIO_CORE_DIR": str(pio_core)}, timeout=1800)
    try:
        result = json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"tinygen run printed no JSON (exit {res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return res, result


def _assert_cmsis_nn_kernels(project: Path, *symbols: str) -> None:
    import subprocess

    elf = project / ".pio" / "build" / "qemu-m4" / "firmware.elf"
    nm = subprocess.run(["arm-none-eabi-nm", "-C", str(elf)], capture_output=True, text=True, check=True).stdout
    for symbol in symbols:
        assert symbol in nm, f"{symbol} not linked into {elf}"


@pytest.mark.tflm
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "keep", "batch"])
def test_tree_qemu_m4_rewritten_model_equals_the_original(tflm_tree, pio_core, models, kind, tmp_path):
    original = models[kind].read_bytes()
    project = tmp_path / "rewritten"
    build_ok("--board", "qemu-m4", "--runtime", "tflm", "--tflm-dir", str(tflm_tree), "--model", str(models[kind]),
             "--vectors", "48", "--out", str(project))
    man = json.loads((project / "tinygen.json").read_text())
    assert "FULLY_CONNECTED" not in man["ops"] and "CONV_2D" in man["ops"]
    with np.load(project / "vectors" / "reference.npz") as z:
        np.testing.assert_array_equal(z["outputs"], tflm_outputs(original, z["inputs"]))

    res, result = _run_project(project, pio_core)
    assert res.returncode == 0, f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    m = result["metrics"]
    print(f"\n{kind}: rewritten on qemu-m4 tflm (CMSIS-NN): {m['vectors']} vectors, max |Δ| "
          f"{m['max_abs_diff_lsb']} LSB, {m['exact_match_pct']} % exact, instructions/inference "
          f"{m.get('instructions_per_inference')}")
    assert result["runtime"] == "tflm"
    assert m["passed"] and m["max_abs_diff_lsb"] == 0 and m["exact_match_pct"] == 100.0
    assert m["vectors"] == 48 + 16
    _assert_cmsis_nn_kernels(project, "arm_convolve_wrapper_s8")


@pytest.mark.tflm
@pytest.mark.slow
def test_tree_qemu_m4_original_model_without_the_rewrite_is_wrong(tflm_tree, pio_core, models, tmp_path):
    """What the rewrite fixes: the same tree runs the original model's per-channel FULLY_CONNECTED
    with one per-tensor multiplier. The project is made as build would make it for a library that
    computed FC per-channel (the board file's flag flipped), so the original model is shipped."""
    from tinygen.common.boards import get_board
    from tinygen.codegen.plan import make_plan
    from tinygen.intake.sources import source_from_user
    from tinygen.codegen.project import write_project
    from tinygen.codegen.render import render

    qemu = get_board("qemu-m4")
    trusting = replace(qemu, tflm=replace(qemu.tflm, per_channel_fully_connected=True))
    plan = make_plan(source_from_user(str(models["mlp"]), None), trusting, "tflm", n_vectors=48, seed=1234,
                     tflm_dir=str(tflm_tree))
    project = tmp_path / "original"
    write_project(render(plan), project)
    assert (project / "model.tflite").read_bytes() == models["mlp"].read_bytes()

    res, result = _run_project(project, pio_core)
    m = result["metrics"]
    print(f"\nmlp: ORIGINAL model on qemu-m4 tflm (CMSIS-NN): max |Δ| {m['max_abs_diff_lsb']} LSB, "
          f"{m['exact_match_pct']} % exact, {m['vectors_exact_pct']} % vectors exact, instructions/inference "
          f"{m.get('instructions_per_inference')}")
    assert res.returncode == 5 and not m["passed"], f"{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    assert m["max_abs_diff_lsb"] > 0 and m["vectors_exact_pct"] < 50
    _assert_cmsis_nn_kernels(project, "arm_fully_connected_s8")
