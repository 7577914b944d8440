"""ADD, MUL, SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, PRELU, and the requantizing steps RELU,
RELU6 and QUANTIZE -> ``firmware/runtime/tg_elementwise.c``; DEQUANTIZE is refused here.

Binary ops broadcast through ``packing.broadcast_plan``; each function computes what TFLM's
int8 kernel computes in Prepare (the float32 / double split differs between ops, so each says which).
"""

from __future__ import annotations

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.lowering.common import (OpRefused, act_inputs, check_rq, check_rq_pairs, f32, fields,
                                                      fused_activation, i32, need_int8_act, pad_dims, unary_io)
from tinygen.codegen.compiled.packing import MAX_DIMS, broadcast_plan
from tinygen.tflite.model import Operator, TfliteModel


def add_mul(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    a, b = act_inputs(m, op, 2)
    y = m.tensors[op.outputs[0]]
    for t, what in ((a, "first input"), (b, "second input"), (y, "output")):
        need_int8_act(m, op, t, what)
    try:
        bc = broadcast_plan(a.shape, b.shape, y.shape)
    except ValueError as exc:
        raise OpRefused(op, str(exc)) from None
    act_min, act_max = quant.activation_range(fused_activation(op), y.scale[0], y.zero_point[0])
    if bc is None:  # {rank, out_dims, a_strides, b_strides}; rank 0: same shapes
        bfields = ("bcast", (0, (0,), (0,), (0,)))
    else:
        rank, out, sa, sb = bc
        bfields = ("bcast", (rank, tuple(pad_dims(out, 1)), tuple(pad_dims(sa)), tuple(pad_dims(sb))))
    common = [("size", y.size), bfields, ("input1_offset", -a.zero_point[0]),
              ("input2_offset", -b.zero_point[0]), ("output_offset", y.zero_point[0])]
    if kind == "add":
        q = quant.add_params(a.scale[0], b.scale[0], y.scale[0])
        pairs = common + [(k, q[k]) for k in (
            "left_shift", "input1_multiplier", "input1_shift", "input2_multiplier", "input2_shift",
            "output_multiplier", "output_shift")]
        fn = "tg_add_s8"
        fused = quant.add_fused_constants(-a.zero_point[0], -b.zero_point[0], q["left_shift"],
                                          (q["input1_multiplier"], q["input1_shift"]),
                                          (q["input2_multiplier"], q["input2_shift"]),
                                          (q["output_multiplier"], q["output_shift"]), y.zero_point[0])
        arrays = (ConstArray("rqf", i32(fused)),) if fused is not None else ()
    else:
        mm, ss = quant.quantize_multiplier(float(a.scale[0]) * float(b.scale[0]) / float(y.scale[0]))
        pairs = common + [("output_multiplier", mm), ("output_shift", ss)]
        fn = "tg_mul_s8"
        arrays = ()
    pairs += [("act_min", act_min), ("act_max", act_max)]
    if kind == "add":
        pairs.append(("rq_fused", ArrayRef("rqf") if arrays else None))
    got = dict(pairs)
    heads = [k[:-len("_multiplier")] for k in got if k.endswith("_multiplier")]
    check_rq(op, [got[h + "_multiplier"] for h in heads], [got[h + "_shift"] for h in heads])
    reads = tuple(t.index for t in (a, b) if not t.is_constant)
    consts = tuple(t.index for t in (a, b) if t.is_constant)
    inplace = tuple(t.index for t in (a, b) if not t.is_constant and t.size == y.size)
    return OpIR(op.index, op.opcode, fn, (a.index, b.index), y.index, reads, fields(*pairs),
                arrays=arrays, const_inputs=consts, inplace=inplace)


def _binary_io(m: TfliteModel, op: Operator, max_rank: int):
    a, b = act_inputs(m, op, 2)
    y = m.tensors[op.outputs[0]]
    for t, what in ((a, "first input"), (b, "second input"), (y, "output")):
        need_int8_act(m, op, t, what)
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
        bfield = ("bcast", (rank, tuple(pad_dims(out, 1)), tuple(pad_dims(sa)), tuple(pad_dims(sb))))
    return a, b, y, bfield


def _binary_op(op: Operator, kernel: str, a, b, y, pairs) -> OpIR:
    reads = tuple(dict.fromkeys(t.index for t in (a, b) if not t.is_constant))
    consts = tuple(dict.fromkeys(t.index for t in (a, b) if t.is_constant))
    inplace = tuple(t.index for t in (a, b) if not t.is_constant and t.size == y.size)
    return OpIR(op.index, op.opcode, kernel, (a.index, b.index), y.index, reads, fields(*pairs),
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
    act_min, act_max = quant.activation_range(fused_activation(op), y.scale[0], y.zero_point[0])
    pairs = _add_struct(a, b, y, bfield, 20, q1, q2, qo, act_min, act_max)
    return _binary_op(op, "tg_sub_s8", a, b, y, pairs)


def squared_difference(m: TfliteModel, op: Operator) -> OpIR:
    a, b, y, bfield = _binary_io(m, op, 4)
    s1, s2, so = f32(a.scale[0]), f32(b.scale[0]), f32(y.scale[0])
    # SquaredDifference PrepareQuantized: double ratios, left shift 7 (squared: 2^14).
    twice = 2.0 * max(s1, s2)
    q1 = _smaller_than_one(op, s1 / twice)
    q2 = _smaller_than_one(op, s2 / twice)
    qo = quant.quantize_multiplier(twice * twice / f32(float(1 << 14) * so))
    check_rq_pairs(op, qo)
    pairs = _add_struct(a, b, y, bfield, 7, q1, q2, qo, -128, 127)
    return _binary_op(op, "tg_squared_difference_s8", a, b, y, pairs)


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
    check_rq_pairs(op, q1, q2)
    pairs = [("size", y.size), bfield, ("input_offset", -x.zero_point[0]), ("alpha_offset", -alpha.zero_point[0]),
              ("output_offset", y.zero_point[0]), ("identity_multiplier", q1[0]), ("identity_shift", q1[1]),
              ("alpha_multiplier", q2[0]), ("alpha_shift", q2[1])]
    return _binary_op(op, "tg_prelu_s8", x, alpha, y, pairs)


def relu(m: TfliteModel, op: Operator) -> OpIR:
    x, y = unary_io(m, op)
    # CalculateReluOpData: the scale ratio is a float32 division; the lower
    # bound is the output zero point (roundf(0 / scale) == 0).
    mult, shift = quant.quantize_multiplier(quant.f32(quant.f32(x.scale[0]) / quant.f32(y.scale[0])))
    act_min = max(-128, y.zero_point[0])
    return _requant_step(op, x, y, mult, shift, act_min, 127)


def relu6(m: TfliteModel, op: Operator) -> OpIR:
    x, y = unary_io(m, op)
    zp = x.zero_point[0]
    six = quant.round_half_away(quant.f32(quant.f32(6.0) / quant.f32(x.scale[0]))) + zp
    six = max(-128, min(127, six))
    xi, yi = x.index, y.index
    params = fields(("size", x.size), ("lo", zp), ("hi", six))
    return OpIR(op.index, op.opcode, "tg_clamp_s8", (xi,), yi, (xi,), params, inplace=(xi,))


def quantize(m: TfliteModel, op: Operator) -> OpIR:
    x, = act_inputs(m, op, 1)
    if x.dtype != "int8":
        raise OpRefused(op, f"input is {x.dtype}; only int8 -> int8 requantization is supported")
    x, y = unary_io(m, op)
    mult, shift = quant.quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
    return _requant_step(op, x, y, mult, shift, -128, 127)


def _requant_step(op, x, y, mult, shift, act_min, act_max) -> OpIR:
    check_rq(op, [mult], [shift])
    params = fields(
        ("size", x.size), ("input_zero_point", x.zero_point[0]), ("output_zero_point", y.zero_point[0]),
        ("multiplier", mult), ("shift", shift), ("act_min", act_min), ("act_max", act_max))
    xi, yi = x.index, y.index
    return OpIR(op.index, op.opcode, "tg_requantize_s8", (xi,), yi, (xi,), params, inplace=(xi,))


def dequantize(m: TfliteModel, op: Operator) -> OpIR:
    y = m.tensors[op.outputs[0]] if op.outputs else None
    raise OpRefused(op, f"output is {y.dtype if y is not None else '?'}; the compiled runtime computes int8 only")
