"""Keras models for tests/compiled/test_ops_elementwise.py: one small seeded model per
case dict, converted to int8 in the harness's worker processes (this module is
imported there by name, so it must not import the test module or pytest)."""

from __future__ import annotations

import numpy as np

# The ops tests/compiled/test_ops_elementwise.py covers (tests/support/op_cases.py holds the others).
OPS = ("LEAKY_RELU", "PRELU", "HARD_SWISH", "ABS", "SUB", "SQUARED_DIFFERENCE", "MINIMUM", "MAXIMUM",
       "REDUCE_MAX", "REDUCE_MIN", "SUM")


def _weights(case: dict, k: int = 0):
    import keras

    return keras.initializers.RandomNormal(stddev=float(case.get("w_std", 0.4)), seed=int(case["seed"]) + k)


def _other(inp, case: dict, mode: str):
    """The second operand of a binary op: same shape, a broadcast reduction, or None (a constant)."""
    import keras

    L = keras.layers
    c = case["shape"][-1]
    if mode == "same":
        return L.Conv2D(c, 1, kernel_initializer=_weights(case, 7), bias_initializer=_weights(case, 8))(inp)
    if mode == "mean_hw":
        return L.GlobalAveragePooling2D(keepdims=True)(inp)
    if mode == "mean_w":
        return L.Lambda(lambda t: keras.ops.mean(t, axis=2, keepdims=True))(inp)
    if mode == "mean_c":
        return L.Lambda(lambda t: keras.ops.mean(t, axis=3, keepdims=True))(inp)
    return None


_BINARY = {
    "sub": lambda keras, a, b: a - b,
    "sqdiff": lambda keras, a, b: keras.ops.square(a - b),
    "minimum": lambda keras, a, b: keras.ops.minimum(a, b),
    "maximum": lambda keras, a, b: keras.ops.maximum(a, b),
}


def build(case: dict):
    import keras

    L = keras.layers
    keras.utils.set_random_seed(int(case["seed"]))
    kind = case["kind"]
    inp = L.Input(tuple(case["shape"]))
    x = inp
    if case.get("dense"):
        x = L.Dense(case["dense"], kernel_initializer=_weights(case), bias_initializer=_weights(case, 1))(x)
    if kind == "leaky":
        y = L.LeakyReLU(negative_slope=case["alpha"])(x)
    elif kind == "prelu":
        lo, hi = case["alpha_range"]
        y = L.PReLU(alpha_initializer=keras.initializers.RandomUniform(lo, hi, seed=int(case["seed"])),
                    shared_axes=case.get("shared"))(x)
    elif kind == "hswish":
        y = L.Activation("hard_swish")(x)
    elif kind == "abs":
        y = L.Lambda(lambda t: keras.ops.abs(t))(x)
    elif kind in _BINARY:
        fn = _BINARY[kind]
        a = L.Conv2D(case["shape"][-1], 1, kernel_initializer=_weights(case, 3))(x) if case.get("conv_a") else x
        b = _other(x, case, case["mode"])
        if b is None:
            const = np.random.default_rng(int(case["seed"])).uniform(-1.5, 1.5, size=(case["shape"][-1],))
            const = const.astype(np.float32)
            y = L.Lambda(lambda t: fn(keras, t, const) if case["order"] == 0 else fn(keras, const, t))(a)
        else:
            first, second = (a, b) if case["order"] == 0 else (b, a)
            y = L.Lambda(lambda t: fn(keras, t[0], t[1]))([first, second])
        if case.get("relu"):
            y = L.ReLU()(y)
    elif kind == "gmp":
        cls = L.GlobalMaxPooling2D if len(case["shape"]) == 3 else L.GlobalMaxPooling1D
        y = cls(keepdims=case["keep"])(x)
    elif kind in ("rmax", "rmin", "rsum"):
        fn = {"rmax": keras.ops.max, "rmin": keras.ops.min, "rsum": keras.ops.sum}[kind]
        axes, keep = tuple(case["axes"]), case["keep"]
        y = L.Lambda(lambda t: fn(t, axis=axes, keepdims=keep))(x)
    else:
        raise ValueError(kind)
    return keras.Model(inp, y)


def representative(case: dict, n: int = 48) -> np.ndarray:
    rng = np.random.default_rng(int(case["seed"]) + 12345)
    mu, sigma = case.get("rep", (0.0, 1.0))
    return rng.normal(mu, sigma, size=(n,) + tuple(case["shape"])).astype(np.float32)


def convert(case: dict) -> bytes:
    import support.compiled_harness as H

    return H.quantize_quiet(build(case), representative(case))


def convert_safe(case: dict):
    try:
        return convert(case)
    except Exception as exc:  # reported by the test, not lost in the pool
        return exc
