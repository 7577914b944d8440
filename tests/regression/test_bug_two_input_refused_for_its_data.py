"""A two-input Keras model with a .npz made for it (x0, x1) was refused for its data file ("has no
array named 'x'", advice `np.savez(file, x=...)`), advice that cannot help: the data was read
before the model was described. The model's own refusal (several inputs, what to do) must come
first. Found by benchmarks/zoo.py; fails before the fix in intake/sources.source_from_user."""

from __future__ import annotations

import numpy as np

from conftest import assert_one_line_error, run_cli


def test_two_input_model_is_refused_for_its_inputs_not_its_data(tmp_path):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    a, b = tf.keras.Input((4,), name="a"), tf.keras.Input((3,), name="b")
    y = tf.keras.layers.Dense(2)(tf.keras.layers.Concatenate()([a, b]))
    model_path = tmp_path / "two_in.keras"
    tf.keras.Model([a, b], y).save(model_path)
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x0=rng.normal(size=(8, 4)).astype(np.float32), x1=rng.normal(size=(8, 3)).astype(np.float32))
    res = run_cli("build", "--board", "qemu-m4", "--model", str(model_path), "--data", str(data),
                  "--out", str(tmp_path / "out"))
    msg = assert_one_line_error(res, "input")
    assert "no array named" not in msg, msg
    assert not (tmp_path / "out").exists()
