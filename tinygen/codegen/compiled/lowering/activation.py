"""SOFTMAX, LOGISTIC, TANH, LEAKY_RELU, HARD_SWISH and ABS -> ``firmware/runtime/tg_activation.c``.

Each function mirrors what TFLM's int8 kernel computes in Prepare, including where it rounds to
float32 and where it stays in double, and refuses what that kernel would reject.
"""

from __future__ import annotations

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import OpIR
from tinygen.codegen.compiled.lowering.common import (OpRefused, check_rq, check_rq_pairs, f32, fields, int8_io,
                                                      unary_io)
from tinygen.tflite.model import Operator, TfliteModel


def softmax(m: TfliteModel, op: Operator) -> OpIR:
    x, y = int8_io(m, op)
    if y.zero_point[0] != -128 or quant.f32(y.scale[0]) != quant.f32(1.0 / 256):
        raise OpRefused(op, "int8 softmax output must have scale 1/256 and zero point -128")
    if x.shape != y.shape or not x.shape:
        raise OpRefused(op, "input and output shapes differ")
    depth = x.shape[-1]
    outer = x.size // depth
    # The sum of exponentials has 12 integer bits: each term is at most 1.0 (2^19 raw).
    if depth >= 4096:
        raise OpRefused(op, f"softmax over {depth} values (at most 4095: the int32 sum of exponentials overflows)")
    beta = quant.f32(op.options.get("beta", 1.0))
    mult, shift, diff_min = quant.softmax_params(beta, x.scale[0])
    check_rq(op, [mult], [shift])
    params = fields(("outer", outer), ("depth", depth), ("input_multiplier", mult),
                     ("input_left_shift", shift), ("diff_min", diff_min))
    xi, yi = x.index, y.index
    return OpIR(op.index, op.opcode, "tg_softmax_s8", (xi,), yi, (xi,), params, inplace=(xi,))


def sigmoid(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    x, y = int8_io(m, op)
    if x.size != y.size:
        raise OpRefused(op, "input and output sizes differ")
    if kind == "logistic" and y.zero_point[0] != -128:
        raise OpRefused(op, "int8 logistic output must have zero point -128 (TFLM rejects it)")
    mult, shift, radius = quant.sigmoid_params(x.scale[0])
    check_rq(op, [mult], [shift])
    params = fields(("size", x.size), ("input_zero_point", x.zero_point[0]), ("input_range_radius", radius),
                     ("input_multiplier", mult), ("input_left_shift", shift))
    fn = "tg_logistic_s8" if kind == "logistic" else "tg_tanh_s8"
    xi, yi = x.index, y.index
    return OpIR(op.index, op.opcode, fn, (xi,), yi, (xi,), params, inplace=(xi,))


def leaky_relu(m: TfliteModel, op: Operator) -> OpIR:
    x, y = unary_io(m, op)
    alpha = f32(op.options.get("alpha", 0.2))
    if not alpha >= 0.0:
        raise OpRefused(op, f"negative alpha {alpha} (the compiled kernel takes alpha >= 0)")
    s_in, s_out = f32(x.scale[0]), f32(y.scale[0])
    # LeakyRelu Prepare: both ratios are float expressions, widened to double afterwards.
    alpha_q = quant.quantize_multiplier(f32(f32(s_in * alpha) / s_out))
    ident_q = quant.quantize_multiplier(f32(s_in / s_out))
    check_rq_pairs(op, alpha_q, ident_q)
    params = fields(("size", x.size), ("input_zero_point", x.zero_point[0]),
                       ("output_zero_point", y.zero_point[0]),
                       ("identity_multiplier", ident_q[0]), ("identity_shift", ident_q[1]),
                       ("alpha_multiplier", alpha_q[0]), ("alpha_shift", alpha_q[1]))
    return OpIR(op.index, op.opcode, "tg_leaky_relu_s8", (x.index,), y.index, (x.index,), params,
                inplace=(x.index,))


def _int16_multiplier(m32: int) -> int:
    """DownScaleInt32ToInt16Multiplier: the Q31 multiplier rounded to Q15."""
    if m32 >= 2**31 - 1 - (1 << 15):
        return 2**15 - 1
    return (m32 + (1 << 15)) >> 16


def hard_swish(m: TfliteModel, op: Operator) -> OpIR:
    x, y = unary_io(m, op)
    s_in, s_out = f32(x.scale[0]), f32(y.scale[0])
    hires = f32(f32(1.0 / 128.0) * s_in)
    out_m, out_e = quant.quantize_multiplier(f32(hires / s_out))
    rel_m, rel_e = quant.quantize_multiplier(f32(hires / f32(3.0 / 32768.0)))
    if out_e > 0:
        raise OpRefused(op, "output scale below input scale / 128 (TFLM rejects it)")
    # The int16 rounding shifts of the reference only behave like a division for 0..15 bits.
    if out_e < -15 or not -15 <= rel_e <= 30:
        raise OpRefused(op, f"input/output scale ratio out of the kernel's range (exponents {out_e}, {rel_e})")
    params = fields(("size", x.size), ("input_zero_point", x.zero_point[0]),
                       ("output_zero_point", y.zero_point[0]),
                       ("output_multiplier", _int16_multiplier(out_m)), ("output_exponent", out_e),
                       ("reluish_multiplier", _int16_multiplier(rel_m)), ("reluish_exponent", rel_e))
    return OpIR(op.index, op.opcode, "tg_hard_swish_s8", (x.index,), y.index, (x.index,), params,
                inplace=(x.index,))


def abs_(m: TfliteModel, op: Operator) -> OpIR:
    x, y = unary_io(m, op)
    s_in, s_out = f32(x.scale[0]), f32(y.scale[0])
    rescale = s_in != s_out
    mult, shift = quant.quantize_multiplier(f32(s_in / s_out)) if rescale else (0, 0)
    check_rq_pairs(op, (mult, shift))
    params = fields(("size", x.size), ("input_zero_point", x.zero_point[0]),
                       ("output_zero_point", y.zero_point[0]), ("rescale", int(rescale)),
                       ("multiplier", mult), ("shift", shift))
    return OpIR(op.index, op.opcode, "tg_abs_s8", (x.index,), y.index, (x.index,), params, inplace=(x.index,))
