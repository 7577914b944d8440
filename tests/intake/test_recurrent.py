"""Default Keras LSTM and GRU layers through tinygen: unrolled at conversion
(tinygen/intake/recurrent.py), int8 accuracy close to float on a seeded sequence task, the
compiled runtime bit-exact with tflite_micro (host, ASan/UBSan), and an LSTM through
`tinygen build` for the emulated Cortex-M4."""

from __future__ import annotations

import json

import numpy as np
import pytest

import support.compiled_harness as H
from support import shape_cases
from conftest import build_ok
from tinygen.codegen.compiled import SUPPORTED_OPS, lower, unsupported_ops
from tinygen.tflite.model import parse_model

KINDS = ("lstm", "gru")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")
    d = tmp_path_factory.mktemp("recurrent")
    futures = {k: H.pool().submit(shape_cases.recurrent_case, k, str(d)) for k in KINDS}
    out = {"dir": d}
    for k, f in futures.items():
        got = f.result()
        if isinstance(got, Exception):
            raise got
        out[k] = dict(got, model=parse_model(got["raw"], name=k))
    return out


def _quantize_inputs(m, x):
    t = m.input_tensor()
    q = np.round(x / t.scale[0]) + t.zero_point[0]
    return np.clip(q, -128, 127).astype(np.int8).reshape((len(x),) + tuple(t.shape))


@pytest.mark.parametrize("kind", KINDS)
def test_int8_accuracy_close_to_float(converted, kind):
    """The quality report: held-out accuracy of the int8 model (TFLM) against the float model."""
    c = converted[kind]
    x, y = shape_cases.sequence_task()
    out = H.tflm_outputs(c["raw"], _quantize_inputs(c["model"], x[240:]))
    int8_acc = float((out.reshape(len(out), -1).argmax(axis=1) == y[240:]).mean())
    print(f"{kind}: float accuracy {c['float_acc']:.3f}, int8 accuracy {int8_acc:.3f}")
    assert c["float_acc"] >= 0.9
    assert int8_acc >= c["float_acc"] - 0.03


def test_compiled_runtime_bit_exact(converted, tmp_path):
    """Every op of the unrolled LSTM has a compiled kernel, bit-exact with TFLM; the GRU's too once
    SUB has one (else SUB is the only op refused)."""
    H.require(H.have_gcc(), "gcc")
    ms = [converted[k]["model"] for k in KINDS]
    assert {"UNPACK", "SPLIT"} <= set(ms[0].op_names) and "STRIDED_SLICE" in ms[1].op_names
    if "SUB" not in SUPPORTED_OPS:
        assert unsupported_ops(lower(ms[1])) == ["SUB"]
        ms = ms[:1]
    x, _ = shape_cases.sequence_task()
    rng = np.random.default_rng(4)
    build = H.build_host(ms, tmp_path)
    for i, m in enumerate(ms):
        v = np.concatenate([_quantize_inputs(m, x[240:280]), H.input_vectors(m.input_tensor().shape, 20, rng)])
        H.assert_identical(build.run(i, v), H.tflm_outputs(m.raw, v), KINDS[i])


def test_lstm_keras_file_builds_for_the_compiled_runtime(converted, tmp_path):
    """The real CLI on the saved default LSTM: converted (unrolled), compiled runtime chosen for the
    emulated Cortex-M4, reference vectors equal to tflite_micro."""
    d = converted["dir"]
    out = tmp_path / "p"
    res = build_ok("--board", "qemu-m4", "--model", str(d / "lstm.keras"), "--data", str(d / "lstm.npz"),
                   "--out", str(out), "--json")
    summary = json.loads(res.stdout)
    assert summary["runtime"] == "compiled"
    assert summary["quality"]["top1_agreement"] >= 0.9
    raw = (out / "model.tflite").read_bytes()
    assert "UNPACK" in parse_model(raw).op_names
    with np.load(out / "vectors" / "reference.npz") as z:
        np.testing.assert_array_equal(H.tflm_outputs(raw, z["inputs"]), z["outputs"])


def test_stateful_layer_is_refused_in_one_line():
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")
    msg = H.pool().submit(shape_cases.stateful_refusal).result()
    assert "\n" not in msg and "'my gru'" in msg and "stateful=False" in msg
