"""Channels whose weights are all zero (the official MLPerf Tiny VWW model has them in nine of its
1x1 convolutions): their bias is quantized with a near-zero weight scale, so it is +-2^30 with a
right shift of 23..27, and the fused requantization's proof for every |acc| up to a bound refuses
the layer (offset * 2^right leaves int32), which then ran the generic requantization at ~1.6x the
instructions. The accumulator of such a channel has one value, its folded bias, and
lowering.common.constant_channel_rq gives that one value its own constants.

* the constants against a plain C transcription of TFLM's MultiplyByQuantizedMultiplier (double
  rounding), through the kernels' own tg_rq_fused / tg_rq_apply_x2, on the host;
* a Keras model with zero-weight channels and large biases in a CONV_2D and a DEPTHWISE_CONV_2D:
  the CONV_2D now takes the fused path (it did not before), and the compiled model is bit-exact
  with tflite_micro on the host (ASan/UBSan) and on qemu-m4 (the DSP path).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import support.compiled_harness as H
from tinygen.codegen.compiled import compile_model
from tinygen.codegen.compiled.lowering.common import constant_channel_rq
from tinygen.tflite.model import parse_model

_REF = r"""
#include <stdint.h>
#include <stdio.h>
#include "tg_fixedpoint.h"
#include "tg_kernels.h"

/* gemmlowp / TFLM, written out from their definitions */
static int32_t ref_srdhm(int32_t a, int32_t b)
{
    int overflow = a == b && a == INT32_MIN;
    int64_t ab_64 = (int64_t)a * (int64_t)b;
    int32_t nudge = ab_64 >= 0 ? (1 << 30) : (1 - (1 << 30));
    int32_t ab_x2_high32 = (int32_t)((ab_64 + nudge) / (1ll << 31));
    return overflow ? INT32_MAX : ab_x2_high32;
}

static int32_t ref_rdbpot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)((1ll << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + ((x < 0) ? 1 : 0);
    return (x >> exponent) + ((remainder > threshold) ? 1 : 0);
}

int main(void)
{
    long n = 0, bad = 0;
    int32_t acc, m, off, doubled, q[4];
    int shift;
    while (scanf("%d %d %d %d %d %d %d %d %d", &acc, &m, &shift, &off, &doubled, &q[0], &q[1], &q[2], &q[3]) == 9) {
        const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
        const int32_t want = ref_rdbpot(ref_srdhm((int32_t)((uint32_t)acc << left), m), right) + off;
        tg_rq_t k;
        int32_t got;
        k.m = q[0];
        k.lp1 = q[1];
        k.c = q[2];
        k.right = q[3];
        got = doubled ? tg_rq_apply_x2(2 * acc, k) : tg_rq_apply(acc, k);
        n++;
        if (got != want) {
            if (bad++ < 10) printf("acc %d m %d shift %d off %d doubled %d: want %d got %d\n", acc, m, shift, off,
                                   doubled, want, got);
        }
    }
    printf("checked %ld, %ld mismatches\n", n, bad);
    return bad != 0;
}
"""


def test_constant_channel_constants_equal_tflm_reference(tmp_path):
    H.require(H.have_gcc(), "gcc")
    rnd = random.Random(25)
    lines = []
    for i in range(3000):
        doubled = i % 3 == 0
        lim = 1 << (29 if doubled else 30)
        acc = rnd.choice([lim, -lim, lim - 1, -lim + 1, 0, rnd.randint(-lim, lim), rnd.randint(-999, 999)])
        m = rnd.randint((1 << 30) + 1, (1 << 31) - 1)
        shift = rnd.choice([rnd.randint(-31, -1), rnd.randint(-31, -20), rnd.randint(0, 3)])
        off = rnd.randint(-128, 127)
        q = constant_channel_rq(acc, m, shift, off, doubled)
        if q is None:
            continue
        lines.append(f"{acc} {m} {shift} {off} {int(doubled)} {' '.join(map(str, q))}\n")
    assert len(lines) > 2000
    # the refusals: the doubled accumulator, or TFLM's own left shift, would leave int32
    assert constant_channel_rq(1 << 30, 1 << 30 | 1, -26, -128, True) is None
    assert constant_channel_rq(1 << 29, 1 << 30 | 1, 3, 0, False) is None
    p = H.run_fixedpoint_program(tmp_path, _REF, "".join(lines))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert " 0 mismatches" in p.stdout


def _zero_channel_model() -> bytes:
    import keras

    L = keras.layers
    keras.utils.set_random_seed(25)
    inp = L.Input((7, 6, 8))
    conv = L.Conv2D(6, 1, activation="relu")
    dw = L.DepthwiseConv2D(3, padding="same")
    out = dw(conv(inp))
    model = keras.Model(inp, out)
    w, b = conv.get_weights()
    w[..., 2] = 0
    w[..., 5] = 0
    conv.set_weights([w, np.array([0.1, -0.2, 0.7, 0.3, 0.05, -0.4], dtype=np.float32)])
    w2, b2 = dw.get_weights()
    w2[..., 1, 0] = 0
    w2[..., 4, 0] = 0
    b2[1], b2[4] = 0.9, 0.0
    dw.set_weights([w2, b2])
    rep = np.random.default_rng(25).normal(0, 1, (48, 7, 6, 8)).astype(np.float32)
    return H.quantize_quiet(model, rep)


@pytest.fixture(scope="module")
def zero_channel_model():
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")
    m = parse_model(_zero_channel_model(), name="zch")
    conv = compile_model(m).program.ops[0]
    bias = dict((a.role, a.values) for a in conv.arrays)["b"]
    assert conv.opcode == "CONV_2D" and abs(int(bias[2])) >= 1 << 29 and abs(int(bias[5])) >= 1 << 29, bias
    return m


def test_zero_weight_conv_channels_take_the_fused_requantization(zero_channel_model):
    conv = compile_model(zero_channel_model).program.ops[0]
    assert dict(conv.params).get("rq_fused") is not None, "the CONV_2D fell back to the generic requantization"


def test_zero_weight_channels_bit_exact_on_host_and_qemu_m4(zero_channel_model, tmp_path):
    m = zero_channel_model
    x = H.input_vectors(m.input_tensor().shape, 24, np.random.default_rng(26))
    want = H.tflm_outputs(m.raw, x)
    H.assert_identical(H.build_host([m], tmp_path / "host").run(0, x), want, "host")
    if H.have_arm_gcc() and H.have_qemu():
        got = H.run_qemu_m4([m], [x], tmp_path / "m4")[0]
        H.assert_identical(got, want, "qemu-m4")
