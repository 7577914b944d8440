"""Issue 23 item 6: channels-first samples and one-hot labels were taken silently.

x shaped (N, 3, 128) for a (128, 3) input was reshaped as it lay (the channels interleaved), and
the build exited 0 at chance; one-hot y (N, K) made a classifier a regression.  Now both are
converted, each with one ``note:`` line.  Fails before the fix: no note, the reference vectors'
float inputs are a reshape of x (not its transpose), and the task is "regression" without labels.

Independent references: numpy's own transpose and argmax of the data given, and Keras' forward
pass of the model on the transposed samples for the float outputs saved in the project.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import build_ok
from tinygen.common.errors import TinygenError


def test_channels_first_x_is_transposed_and_one_hot_y_becomes_labels_with_a_note_each(tmp_path):
    import keras

    from tinygen.intake.recipes import seed_everything

    seed_everything(5)
    model = keras.Sequential([keras.Input((128, 3)), keras.layers.Conv1D(4, 5, strides=4, activation="relu"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(4),
                              keras.layers.Softmax()])
    model.save(tmp_path / "accel.keras")
    rng = np.random.default_rng(5)
    x_first = rng.normal(size=(40, 3, 128)).astype(np.float32)  # channels first: (N, C, T)
    labels = rng.integers(0, 4, size=40)
    np.savez(tmp_path / "d.npz", x=x_first, y=np.eye(4, dtype=np.float32)[labels])
    out = tmp_path / "p"
    res = build_ok("--board", "qemu-m4", "--model", str(tmp_path / "accel.keras"), "--data", str(tmp_path / "d.npz"),
                   "--out", str(out), "--vectors", "8")
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 2, res.stderr
    assert "channels-first (3, 128)" in notes[0] and "(128, 3)" in notes[0]
    assert "one-hot (40, 4)" in notes[1] and "argmax" in notes[1]
    man = json.loads((out / "tinygen.json").read_text())
    assert man["task"] == "classification"
    held = slice(32, 40)  # the last fifth is held out
    x_last = np.ascontiguousarray(np.transpose(x_first, (0, 2, 1)))
    with np.load(out / "vectors" / "reference.npz") as z:
        np.testing.assert_array_equal(z["float_inputs"].reshape(8, 128, 3), x_last[held])
        np.testing.assert_array_equal(z["labels"], labels[held])
        np.testing.assert_allclose(z["float_outputs"].reshape(8, 4), model.predict(x_last[held], verbose=0),
                                   rtol=1e-5, atol=1e-6)


def test_labels_that_do_not_fit_the_model_are_one_line_and_regression_keeps_y():
    from tinygen.intake.loader import fit_to_input, labels_for_model

    eye = np.eye(3, dtype=np.float32)[[0, 2, 1, 2]]
    notes = []
    np.testing.assert_array_equal(labels_for_model(eye, (3,), "d.npz", None, notes), [0, 2, 1, 2])
    assert len(notes) == 1
    with pytest.raises(TinygenError, match=r"y is one-hot with 3 columns but the model has 4 outputs; give integer "
                                           r"class labels 0\.\.3"):
        labels_for_model(eye, (4,), "d.npz")
    with pytest.raises(TinygenError, match="the model has 1 output; give labels of 0 and 1"):
        labels_for_model(eye, (1,), "d.npz")
    assert labels_for_model(eye, (3,), "d.npz", "regression") is eye  # --task regression: targets as given
    soft = np.array([[0.2, 0.8, 0.0]] * 4, dtype=np.float32)  # not one-hot: left alone
    assert labels_for_model(soft, (3,), "d.npz") is soft
    # samples that already have the input's shape are never moved, even when a transpose would fit too
    x = np.arange(32, dtype=np.float32).reshape(2, 4, 4)
    assert fit_to_input(x, (1, 4, 4), "d.npz", notes) is x and len(notes) == 1
