"""Lowering of the elementwise, activation and reduction ops added for issue 16:
LEAKY_RELU, PRELU, HARD_SWISH, ABS, SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM,
REDUCE_MAX, REDUCE_MIN and SUM.

Each function mirrors what TFLM's int8 kernel computes in Prepare, including where
it rounds to float32 and where it stays in double (the two differ between ops, so
each says which), and refuses what that kernel would reject or what the C kernel
does not reproduce exactly.  The shared checks (and OpRefused) live in
:mod:`.lower`, which imports this module on first use and calls it through its op table.
"""

from __future__ import annotations

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import OpIR
from tinygen.codegen.compiled.lower import (OpRefused, _act_inputs, _activation, _check_rq, _fields, _int8_io,
                                            _need_int8_act, _pad_dims, _reduction)
from tinygen.codegen.compiled.packing import MAX_DIMS, broadcast_plan
from tinygen.tflite.model import Operator, TfliteModel

f32 = quant.f32


def _rq(op: Operator, *pairs) -> None:
    _check_rq(op, [p[0] for p in pairs], [p[1] for p in pairs])


def _unary(m: TfliteModel, op: Operator):
    x, y = _int8_io(m, op)
    if x.size != y.size:
        raise OpRefused(op, "input and output sizes differ")
    return x, y


# ---- LEAKY_RELU / HARD_SWISH / ABS -----------------------------------------------------

def leaky_relu(m: TfliteModel, op: Operator) -> OpIR:
    x, y = _unary(m, op)
    alpha = f32(op.options.get("alpha", 0.2))
    if not alpha >= 0.0:
        raise OpRefused(op, f"negative alpha {alpha} (the compiled kernel takes alpha >= 0)")
    s_in, s_out = f32(x.scale[0]), f32(y.scale[0])
    # LeakyRelu Prepare: both ratios are float expressions, widened to double afterwards.
    alpha_q = quant.quantize_multiplier(f32(f32(s_in * alpha) / s_out))
    ident_q = quant.quantize_multiplier(f32(s_in / s_out))
    _rq(op, alpha_q, ident_q)
    params = _fields(("size", x.size), ("input_zero_point", x.zero_point[0]),
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
    x, y = _unary(m, op)
    s_in, s_out = f32(x.scale[0]), f32(y.scale[0])
    hires = f32(f32(1.0 / 128.0) * s_in)
    out_m, out_e = quant.quantize_multiplier(f32(hires / s_out))
    rel_m, rel_e = quant.quantize_multiplier(f32(hires / f32(3.0 / 32768.0)))
    if out_e > 0:
        raise OpRefused(op, "output scale below input scale / 128 (TFLM rejects it)")
    # The int16 rounding shifts of the reference only behave like a division for 0..15 bits.
    if out_e < -15 or not -15 <= rel_e <= 30:
        raise OpRefused(op, f"input/output scale ratio out of the kernel's range (exponents {out_e}, {rel_e})")
    params = _fields(("size", x.size), ("input_zero_point", x.zero_point[0]),
                       ("output_zero_point", y.zero_point[0]),
                       ("output_multiplier", _int16_multiplier(out_m)), ("output_exponent", out_e),
                       ("reluish_multiplier", _int16_multiplier(rel_m)), ("reluish_exponent", rel_e))
    return OpIR(op.index, op.opcode, "tg_hard_swish_s8", (x.index,), y.index, (x.index,), params,
                inplace=(x.index,))


def abs_(m: TfliteModel, op: Operator) -> OpIR:
    x, y = _unary(m, op)
    s_in, s_out = f32(x.scale[0]), f32(y.scale[0])
    rescale = s_in != s_out
    mult, shift = quant.quantize_multiplier(f32(s_in / s_out)) if rescale else (0, 0)
    _rq(op, (mult, shift))
    params = _fields(("size", x.size), ("input_zero_point", x.zero_point[0]),
                       ("output_zero_point", y.zero_point[0]), ("rescale", int(rescale)),
                       ("multiplier", mult), ("shift", shift))
    return OpIR(op.index, op.opcode, "tg_abs_s8", (x.index,), y.index, (x.index,), params, inplace=(x.index,))


# ---- binary ops with broadcasting ------------------------------------------------------

def _binary_io(m: TfliteModel, op: Operator, max_rank: int):
    a, b = _act_inputs(m, op, 2)
    y = m.tensors[op.outputs[0]]
    for t, what in ((a, "first input"), (b, "second input"), (y, "output")):
        _need_int8_act(m, op, t, what)
    if max(len(a.shape), len(b.shape), len(y.shape)) > max_rank:
        raise OpRefused(op, f"more than {max_rank} dimensions (TFLM's kernel broadcasts up to {max_rank})")
    try:
        bc = broadcast_plan(a.shape, b.shape, y.shape)
    except ValueError as exc:
        raise OpRefused(op, str(exc)) from None
    if bc is None:
        bfield = ("bcast", (0, (0,), (0,), (0,)))
    else:
        rank, out, sa, sb = bc
        bfield = ("bcast", (rank, tuple(_pad_dims(out, 1)), tuple(_pad_dims(sa)), tuple(_pad_dims(sb))))
    return a, b, y, bfield


def _binary_op(op: Operator, kernel: str, a, b, y, fields) -> OpIR:
    reads = tuple(dict.fromkeys(t.index for t in (a, b) if not t.is_constant))
    consts = tuple(dict.fromkeys(t.index for t in (a, b) if t.is_constant))
    inplace = tuple(t.index for t in (a, b) if not t.is_constant and t.size == y.size)
    return OpIR(op.index, op.opcode, kernel, (a.index, b.index), y.index, reads, _fields(*fields),
                const_inputs=consts, inplace=inplace)


def _smaller_than_one(op: Operator, r: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp, whose CHECKs abort TFLM outside (0, 1)."""
    if not 0.0 < r < 1.0:
        raise OpRefused(op, f"rescale factor {r} is outside (0, 1) (TFLM aborts on it)")
    mult, shift = quant.quantize_multiplier(r)
    if shift > 0:
        raise OpRefused(op, f"rescale factor {r} is outside (0, 1) (TFLM aborts on it)")
    return mult, shift


def sub(m: TfliteModel, op: Operator) -> OpIR:
    a, b, y, bfield = _binary_io(m, op, MAX_DIMS)
    s1, s2, so = f32(a.scale[0]), f32(b.scale[0]), f32(y.scale[0])
    # CalculateOpDataSub: unlike ADD, every ratio is a float expression.
    twice = f32(2.0 * max(s1, s2))
    q1 = _smaller_than_one(op, f32(s1 / twice))
    q2 = _smaller_than_one(op, f32(s2 / twice))
    qo = _smaller_than_one(op, f32(twice / f32(float(1 << 20) * so)))
    act_min, act_max = quant.activation_range(_activation(op), y.scale[0], y.zero_point[0])
    fields = _add_struct(a, b, y, bfield, 20, q1, q2, qo, act_min, act_max)
    return _binary_op(op, "tg_sub_s8", a, b, y, fields)


def squared_difference(m: TfliteModel, op: Operator) -> OpIR:
    a, b, y, bfield = _binary_io(m, op, 4)
    s1, s2, so = f32(a.scale[0]), f32(b.scale[0]), f32(y.scale[0])
    # SquaredDifference PrepareQuantized: double ratios, left shift 7 (squared: 2^14).
    twice = 2.0 * max(s1, s2)
    q1 = _smaller_than_one(op, s1 / twice)
    q2 = _smaller_than_one(op, s2 / twice)
    qo = quant.quantize_multiplier(twice * twice / f32(float(1 << 14) * so))
    _rq(op, qo)
    fields = _add_struct(a, b, y, bfield, 7, q1, q2, qo, -128, 127)
    return _binary_op(op, "tg_squared_difference_s8", a, b, y, fields)


def _add_struct(a, b, y, bfield, left_shift, q1, q2, qo, act_min, act_max):
    """The fields of tg_add_params_t (SUB and SQUARED_DIFFERENCE share ADD's parameters)."""
    return [("size", y.size), bfield, ("input1_offset", -a.zero_point[0]),
            ("input2_offset", -b.zero_point[0]), ("output_offset", y.zero_point[0]),
            ("left_shift", left_shift), ("input1_multiplier", q1[0]), ("input1_shift", q1[1]),
            ("input2_multiplier", q2[0]), ("input2_shift", q2[1]),
            ("output_multiplier", qo[0]), ("output_shift", qo[1]),
            ("act_min", act_min), ("act_max", act_max), ("rq_fused", None)]


def minmax(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    """TFLM compares the raw int8 values whatever the quantization (the converter gives both
    inputs and the output one scale), so the kernel does the same."""
    a, b, y, bfield = _binary_io(m, op, 5)
    return _binary_op(op, f"tg_{kind}_s8", a, b, y, [("size", y.size), bfield])


def prelu(m: TfliteModel, op: Operator) -> OpIR:
    x, alpha, y, bfield = _binary_io(m, op, 4)
    if x.is_constant:
        raise OpRefused(op, "constant input")
    if tuple(y.shape) != tuple(x.shape):
        raise OpRefused(op, f"output shape {y.shape} is not the input shape {x.shape}")
    s_in, s_a, s_out = float(f32(x.scale[0])), float(f32(alpha.scale[0])), float(f32(y.scale[0]))
    q1 = quant.quantize_multiplier(s_in / s_out)
    q2 = quant.quantize_multiplier(s_in * s_a / s_out)
    _rq(op, q1, q2)
    fields = [("size", y.size), bfield, ("input_offset", -x.zero_point[0]), ("alpha_offset", -alpha.zero_point[0]),
              ("output_offset", y.zero_point[0]), ("identity_multiplier", q1[0]), ("identity_shift", q1[1]),
              ("alpha_multiplier", q2[0]), ("alpha_shift", q2[1])]
    return _binary_op(op, "tg_prelu_s8", x, alpha, y, fields)


# ---- REDUCE_MAX / REDUCE_MIN / SUM -----------------------------------------------------

def reduce_minmax(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    x, y, geometry = _reduction(m, op)
    if f32(x.scale[0]) != f32(y.scale[0]) or x.zero_point[0] != y.zero_point[0]:
        raise OpRefused(op, "input and output quantization differ (TFLM rejects it)")
    params = _fields(*geometry, ("input_zero_point", x.zero_point[0]), ("output_zero_point", y.zero_point[0]),
                       ("multiplier", 0), ("shift", 0))
    return OpIR(op.index, op.opcode, f"tg_reduce_{kind}_s8", (x.index,), y.index, (x.index,), params)


def sum_(m: TfliteModel, op: Operator) -> OpIR:
    """QuantizedMeanOrSum with compute_sum: MEAN's kernel without the division by the count."""
    x, y, geometry = _reduction(m, op)
    mult, shift = quant.quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
    _rq(op, (mult, shift))
    params = _fields(*geometry, ("input_zero_point", x.zero_point[0]), ("output_zero_point", y.zero_point[0]),
                       ("multiplier", mult), ("shift", shift))
    return OpIR(op.index, op.opcode, "tg_mean_s8", (x.index,), y.index, (x.index,), params)
