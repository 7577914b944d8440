"""An untrained stock MobileNetV2 (benchmarks/zoo.py) calibrates to near-zero logits, and its int8
SOFTMAX gets an input scale too small for any kernel (TFLM's Prepare rejects it too). The refusal
said "a layer (TFLite op SOFTMAX: ...): remove or replace it": no layer (the converter names the
output tensor after the call, not the Dense), advice that is wrong (the layer is fine, its
calibrated range is not), and on boards with a TFLM library it offered `--runtime tflm`, which
fails the same way.

Fails before the fix in keras_names.origin/describe and refusals.check_ops (checked by running it
on the parent commit: "a layer" and "remove or replace it" in the message).
"""

from __future__ import annotations

import numpy as np


def test_degenerate_softmax_names_the_dense_and_asks_for_calibration_data():
    import tensorflow as tf

    from tinygen.codegen.refusals import check_ops
    from tinygen.common.boards import get_board
    from tinygen.common.errors import UnsupportedModel
    from tinygen.intake.quantize import quantize
    from tinygen.intake.sources import quiet_native
    from tinygen.intake.jobs import _walk_layers
    from tinygen.tflite.model import parse_model

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(3, activation="softmax", name="probs")])
    w = model.layers[0]
    w.set_weights([np.full((8, 3), 1e-9, np.float32) * np.arange(3), np.zeros(3, np.float32)])
    x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    with quiet_native():
        raw = quantize(model, x)
    for board in ("esp32", "qemu-m4"):
        try:
            check_ops(parse_model(raw), get_board(board), "compiled", name="m", layers=_walk_layers(model))
        except UnsupportedModel as exc:
            msg = str(exc)
        else:
            raise AssertionError("a softmax over a ~1e-8 range must be refused")
        assert "\n" not in msg and "Dense layer 'probs'" in msg and "SOFTMAX" in msg, msg
        assert "representative --data" in msg and "remove or replace" not in msg, msg
        assert "--runtime" not in msg, msg
