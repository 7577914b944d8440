"""Keras models for the shape and spatial op tests (tests/compiled/test_ops_shape.py), built
and converted in the compiled_harness worker processes: a case is a plain dict."""

from __future__ import annotations

import numpy as np

# The ops tests/compiled/test_ops_shape.py covers (tests/support/op_cases.py holds the others).
OPS = ("TRANSPOSE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "UNPACK", "PACK",
       "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "TRANSPOSE_CONV")


def build(case: dict):
    import keras
    import tensorflow as tf

    L = keras.layers
    keras.utils.set_random_seed(int(case["seed"]))
    kind = case["kind"]
    init = keras.initializers.RandomNormal(stddev=float(case.get("w_std", 0.3)), seed=int(case["seed"]))
    inp = L.Input(tuple(case["shape"]))
    # A Dense/Conv in front gives the op an input quantized by calibration rather than the model input.
    if kind == "transpose":
        y = L.Permute(tuple(case["perm"]))(L.Dense(case["shape"][-1], kernel_initializer=init)(inp))
    elif kind == "slice":
        sl = tuple(slice(*s) if isinstance(s, list) else s for s in case["slices"])
        y = L.Lambda(lambda t: t[(slice(None),) + sl])(inp)
    elif kind == "split":
        parts = L.Lambda(lambda t: tf.split(t, case["parts"], axis=case["axis"]))(inp)
        parts = [L.Activation("tanh")(p) if i % 2 else p for i, p in enumerate(parts)]
        y = L.Concatenate(axis=case["axis"])(parts[::-1])
    elif kind == "unstack":
        parts = L.Lambda(lambda t: tf.unstack(t, axis=case["axis"]))(inp)
        parts = [L.Activation("sigmoid")(p) if i == 1 else p for i, p in enumerate(parts)]
        y = L.Lambda(lambda ts: tf.stack(ts[::-1], axis=case["stack_axis"]))(parts)
    elif kind in ("nearest", "bilinear"):
        # The three coordinate modes side by side: Keras (half-pixel centers), align corners, plain.
        size = tuple(case["size"])
        if case.get("factor"):
            first = L.UpSampling2D(tuple(case["factor"]), interpolation=kind)(inp)
        else:
            first = L.Resizing(*size, interpolation=kind)(inp)
        fn = tf.compat.v1.image.resize_bilinear if kind == "bilinear" else tf.compat.v1.image.resize_nearest_neighbor
        align = L.Lambda(lambda t: fn(t, size, align_corners=True))(inp)
        plain = L.Lambda(lambda t: fn(t, size, align_corners=False))(inp)
        y = L.Concatenate()([first, align, plain])
    elif kind == "tconv":
        y = L.Conv2DTranspose(case["filters"], tuple(case["k"]), strides=tuple(case["strides"]),
                              padding=case["padding"], use_bias=case["bias"], activation=case.get("act"),
                              kernel_initializer=init,
                              bias_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=3))(inp)
    elif kind in ("lstm", "gru"):
        cls = L.LSTM if kind == "lstm" else L.GRU
        x = cls(case["units"], return_sequences=case.get("seq", False), go_backwards=case.get("back", False))(inp)
        if case.get("seq"):
            x = L.Flatten()(x)
        y = L.Dense(case.get("classes", 3))(x)
    else:
        raise ValueError(kind)
    return keras.Model(inp, y)


def representative(case: dict, n: int = 48) -> np.ndarray:
    rng = np.random.default_rng(int(case["seed"]) + 12345)
    return rng.normal(0.0, 1.0, size=(n,) + tuple(case["shape"])).astype(np.float32)


def convert(case: dict):
    """int8 .tflite bytes of the case, or the exception the conversion raised (reported, not raised,
    so one bad case does not kill the worker pool)."""
    from support.compiled_harness import quantize_quiet

    try:
        return quantize_quiet(build(case), representative(case))
    except Exception as exc:
        return exc


# ---- recurrent layers: a small seeded sequence task ------------------------------------

STEPS = 8


def sequence_task(seed: int = 11, n: int = 360):
    """(x, y): 2-feature sequences of STEPS steps; class 0 rises, 1 falls, 2 alternates in
    sign (feature 0), under noise; feature 1 is noise only."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    t = np.linspace(-1.0, 1.0, STEPS)
    shapes = np.stack([t, -t, np.where(np.arange(STEPS) % 2 == 0, 0.8, -0.8)])
    amp = rng.uniform(0.5, 1.5, size=(n, 1))
    x = np.zeros((n, STEPS, 2), dtype=np.float32)
    x[:, :, 0] = amp * shapes[y] + rng.normal(0, 0.35, size=(n, STEPS))
    x[:, :, 1] = rng.normal(0, 1.0, size=(n, STEPS))
    return x.astype(np.float32), y.astype(np.int64)


def recurrent_model(kind: str, seed: int = 5):
    """A trained LSTM / GRU classifier on sequence_task (default Keras layers, no unroll)."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    x, y = sequence_task()
    inp = L.Input((STEPS, 2))
    h = (L.LSTM if kind == "lstm" else L.GRU)(8)(inp)
    model = keras.Model(inp, L.Dense(3)(h))
    model.compile(keras.optimizers.Adam(0.02), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:240], y[:240], epochs=12, batch_size=32, verbose=0)
    return model, x, y


def recurrent_case(kind: str, save_dir: str):
    """{raw int8 bytes, float accuracy on the held-out 120 sequences} for a trained default
    LSTM / GRU, quantized by tinygen.intake.quantize (which unrolls it); the model is also saved
    as <save_dir>/<kind>.keras with its training data in <kind>.npz."""
    from pathlib import Path

    from support.compiled_harness import quantize_quiet

    try:
        model, x, y = recurrent_model(kind)
        model.save(Path(save_dir) / f"{kind}.keras")
        np.savez(Path(save_dir) / f"{kind}.npz", x=x[:240], y=y[:240])
        pred = np.asarray(model.predict(x[240:], verbose=0)).argmax(axis=1)
        return {"raw": quantize_quiet(model, x[:200]), "float_acc": float((pred == y[240:]).mean())}
    except Exception as exc:
        return exc


def stateful_refusal() -> str:
    """The UnsupportedModel message for a stateful GRU (raises if it is not refused)."""
    import keras

    from tinygen.common.errors import UnsupportedModel
    from tinygen.intake.recurrent import unroll_recurrent

    inp = keras.Input((4, 2), batch_size=1)
    model = keras.Model(inp, keras.layers.GRU(3, stateful=True, name="my gru")(inp))
    try:
        unroll_recurrent(model)
    except UnsupportedModel as exc:
        return str(exc)
    raise AssertionError("a stateful GRU was not refused")
