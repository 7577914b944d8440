"""What the model predicts (issue 16, item 4): one sigmoid output with 0/1 labels is a binary
classifier (accuracy at output >= 0.5, confusion counts), and --task overrides the guess.

The expected figures are computed here from tflite_micro's own outputs and the labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, build_ok, run_cli


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small trained sigmoid classifier and a two-class softmax one, as int8 .tflite, with data."""
    import tensorflow as tf

    from tinygen.intake.quantize import quantize
    from tinygen.intake.sources import quiet_native

    d = tmp_path_factory.mktemp("task")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.2).astype(np.int64)
    np.savez(d / "data.npz", x=x, y=y)
    tf.keras.utils.set_random_seed(3)
    L = tf.keras.layers
    sig = tf.keras.Sequential([tf.keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid")])
    sig.compile(tf.keras.optimizers.Adam(0.03), "binary_crossentropy")
    with quiet_native():
        sig.fit(x, y, epochs=15, verbose=0)
        (d / "sig.tflite").write_bytes(quantize(sig, x[:160]))
        soft = tf.keras.Sequential([tf.keras.Input((6,)), L.Dense(2, activation="softmax")])
        (d / "soft.tflite").write_bytes(quantize(soft, x[:160]))
    return d


def _confusion(pred: np.ndarray, y: np.ndarray) -> dict:
    return {"tn": int(((pred == 0) & (y == 0)).sum()), "fp": int(((pred == 1) & (y == 0)).sum()),
            "fn": int(((pred == 0) & (y == 1)).sum()), "tp": int(((pred == 1) & (y == 1)).sum())}


def test_sigmoid_with_integer_labels_is_a_binary_classifier(models, tmp_path):
    from support.compiled_harness import tflm_outputs

    from tinygen.verification.verify import metrics

    out = tmp_path / "p"
    res = build_ok("--board", "qemu-m4", "--model", str(models / "sig.tflite"), "--data", str(models / "data.npz"),
                   "--out", str(out), "--vectors", "64", "--json")
    man = json.loads(res.stdout)
    assert man["task"] == "binary"
    q = man["quality"]
    y = np.load(models / "data.npz")["y"][-40:]  # the held-out last 20 %
    with np.load(out / "vectors" / "reference.npz") as z:
        inputs, labels = z["inputs"], z["labels"]
    np.testing.assert_array_equal(labels, y)
    raw = (out / "model.tflite").read_bytes()
    outs = tflm_outputs(raw, inputs).reshape(-1).astype(np.float64)
    prob = (outs - man["output"]["zero_point"]) * man["output"]["scale"]
    pred = (prob >= 0.5).astype(np.int64)
    assert q["threshold"] == 0.5
    assert q["int8_accuracy"] == pytest.approx(float(np.mean(pred == y)))
    assert q["int8_confusion"] == _confusion(pred, y)
    assert q["int8_accuracy"] > 0.7  # it did learn
    # verify's figures for a board that answers exactly what tflite_micro does
    m = metrics(tflm_outputs(raw, inputs), tflm_outputs(raw, inputs), man, float_out=None, labels=labels,
                ticks=[1] * len(inputs), tick_hz=1000, instr_per_tick=None, tolerance=0, seconds=1.0)
    assert m["board_accuracy_pct"] == pytest.approx(100 * float(np.mean(pred == y)))
    assert m["board_confusion"] == _confusion(pred, y)


def test_task_flag_overrides_the_guess(models, tmp_path):
    res = build_ok("--board", "qemu-m4", "--model", str(models / "sig.tflite"), "--data", str(models / "data.npz"),
                   "--out", str(tmp_path / "r"), "--task", "regression", "--json")
    man = json.loads(res.stdout)
    assert man["task"] == "regression" and "int8_rmse" in man["quality"] and "int8_accuracy" not in man["quality"]


def test_task_that_does_not_fit_the_model_is_one_line(models, tmp_path):
    res = run_cli("build", "--board", "qemu-m4", "--model", str(models / "soft.tflite"), "--data",
                  str(models / "data.npz"), "--out", str(tmp_path / "b"), "--task", "binary")
    assert_one_line_error(res, "--task binary", "one output", "--task classification", code=2)
    assert not (tmp_path / "b").exists()


def test_api_refuses_an_unknown_task():
    import tinygen
    from tinygen.common.errors import TinygenError

    with pytest.raises(TinygenError, match="unknown task 'binay'"):
        tinygen.build(recipe="sine", board="qemu-m4", task="binay")
