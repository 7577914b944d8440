"""The CONV_2D / DEPTHWISE_CONV_2D fast paths of issue 25, bit-exact with tflite_micro: the
pointwise CONV_2D (1x1, stride 1, no padding, in_c a multiple of 4: the column is the input pixel
widened) with an odd pixel count (the last pass has one pixel) and an odd channel count, beside a
strided 1x1 and a 3x3 that must keep the general column; the first-layer column (in_c 3 or 7) of a
window wholly inside the input copied row by row, and of border windows through the stage; depthwise 3x3 layers (stride 1 and 2,
borders, 4 to 40 channels) after it. On the host (ASan/UBSan, portable C and the DSP path's C
models), on qemu-m4 (DSP) and on qemu-m3 (portable)."""

from __future__ import annotations

import numpy as np
import pytest

import support.compiled_harness as H
from tinygen.tflite.model import parse_model


def _model() -> bytes:
    import keras

    L = keras.layers
    keras.utils.set_random_seed(2525)
    inp = L.Input((7, 5, 8))
    a = L.Conv2D(12, 1, activation="relu")(inp)                       # pointwise, 35 pixels
    b = L.DepthwiseConv2D(3, padding="same", activation="relu6")(a)   # 3x3 stride 1, borders
    b = L.DepthwiseConv2D(3, padding="valid", activation="relu")(b)   # 3x3 valid: 5x3
    c = L.Conv2D(7, 1, activation="relu")(b)                          # pointwise, 15 pixels, odd channels
    c = L.Conv2D(3, 3, strides=2, padding="same", activation="relu")(L.Conv2D(3, 1)(c))  # in_c 3: first-layer
    c = L.Conv2D(7, 2, padding="valid")(L.ZeroPadding2D(((0, 1), (1, 2)))(c))  # column, inside and border
    d = L.Conv2D(8, 1, strides=2)(c)                                  # strided 1x1 (in_c 7: the column)
    e = L.DepthwiseConv2D(3, strides=2, padding="same")(L.Conv2D(40, 3, padding="same")(d))
    model = keras.Model(inp, e)
    rep = np.random.default_rng(2525).normal(0.3, 1.2, (48, 7, 5, 8)).astype(np.float32)
    return H.quantize_quiet(model, rep)


@pytest.fixture(scope="module")
def model():
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")
    return parse_model(_model(), name="fast")


def test_fast_paths_bit_exact(model, tmp_path):
    m = model
    x = H.input_vectors(m.input_tensor().shape, 16, np.random.default_rng(2526))
    want = H.tflm_outputs(m.raw, x)
    H.assert_identical(H.build_host([m], tmp_path / "host").run(0, x), want, "host portable")
    H.assert_identical(H.build_host([m], tmp_path / "dsp", ("-DTG_DSP_EMULATE",)).run(0, x), want, "host DSP")
    if H.have_arm_gcc() and H.have_qemu():
        H.assert_identical(H.run_qemu_m4([m], [x], tmp_path / "m4")[0], want, "qemu-m4")
        H.assert_identical(H.run_qemu_m4([m], [x], tmp_path / "m3", cflags=H.M3_CFLAGS, machine="mps2-an385")[0],
                           want, "qemu-m3")
