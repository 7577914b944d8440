"""vectors.quantize_input against the QUANTIZE kernel of tflite_micro (what a board runs),
at exact half-way points."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import require
from tinygen.tflite.model import parse_model
from tinygen.analysis.vectors import quantize_input


def _quantize_model(lo: float, hi: float, n: int) -> bytes:
    """float input -> QUANTIZE -> RESHAPE -> int8 output: the output is the QUANTIZE
    result (RESHAPE keeps its quantization); calibration data spans [lo, hi]."""
    import tensorflow as tf

    from tinygen.intake.sources import quiet_native

    model = tf.keras.Sequential([tf.keras.Input(shape=(n,)), tf.keras.layers.Reshape((2, n // 2))])
    rep = [np.full((1, n), lo, np.float32), np.full((1, n), hi, np.float32)]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_output_type = tf.int8
    with quiet_native():
        return conv.convert()


@pytest.mark.parametrize("lo,hi", [(-8.0, 7.9375), (-2.0, 13.9375)], ids=["zp0", "zp-96"])
def test_quantize_input_matches_tflm_at_ties(lo, hi):
    require(importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("tflite_micro")
            is not None, "tensorflow / tflite_micro (Python packages)")
    from tflite_micro.python.tflite_micro import runtime

    n = 8
    blob = _quantize_model(lo, hi, n)
    m = parse_model(blob)
    assert m.operators[0].opcode == "QUANTIZE" and m.tensors[m.outputs[0]].dtype == "int8"
    out_t = m.tensors[m.outputs[0]]
    scale, zp = out_t.scale[0], out_t.zero_point[0]
    # calibration range / 255 = 1/16, a power of two: (k + 0.5) / 16 divided by the
    # scale is exactly k + 0.5 in float32
    assert scale == 1 / 16
    k = np.arange(-140, 141, dtype=np.float64)
    ties = ((k + 0.5) / 16).astype(np.float32)
    assert np.all((ties / np.float32(scale)) % 1 == 0.5)
    x = np.concatenate([ties, ties + np.float32(1 / 64), ties - np.float32(1 / 64),
                        np.array([0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, 1e6, -1e6], np.float32)])
    x = np.pad(x, (0, -len(x) % n)).reshape(-1, n)
    it = runtime.Interpreter.from_bytes(blob, arena_size=1 << 16)
    want = []
    for row in x:
        it.set_input(row[None], 0)
        it.invoke()
        want.append(np.array(it.get_output(0), dtype=np.int8).reshape(n))
    want = np.stack(want)
    np.testing.assert_array_equal(quantize_input(x, scale, zp), want)
    # Past int32, TFLM's float -> int32 cast is undefined (x86 gives INT_MIN, so -128);
    # tinygen saturates instead.
    np.testing.assert_array_equal(quantize_input(np.array([1e30, -1e30, np.inf, -np.inf]), scale, zp),
                                  [127, -128, 127, -128])
    # ties to even (np.round) would not have matched
    assert not np.array_equal(np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8), want)
