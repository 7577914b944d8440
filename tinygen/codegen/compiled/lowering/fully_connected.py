"""FULLY_CONNECTED -> ``firmware/runtime/tg_fully_connected.c`` (per-tensor or per-channel weights)."""

from __future__ import annotations

import numpy as np

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.lowering.common import (OpRefused, check_index_range, check_rq, fields,
                                                      fused_activation, int8_io, packed_weights, requant_data,
                                                      weights_and_bias)
from tinygen.tflite.model import Operator, TfliteModel


def fully_connected(m: TfliteModel, op: Operator) -> OpIR:
    x, y = int8_io(m, op)
    if op.options.get("weightsFormat", 0) != 0:
        raise OpRefused(op, "shuffled weights format")
    if op.options.get("asymmetricQuantizeInputs", False):
        raise OpRefused(op, "hybrid (asymmetric input) quantization")
    w_t = m.tensors[op.inputs[1]]
    if len(w_t.shape) != 2:
        raise OpRefused(op, f"weights shape {w_t.shape} is not 2-D")
    out_depth, accum = w_t.shape
    w, bias = weights_and_bias(m, op, out_depth, 0)
    if not y.shape or y.shape[-1] != out_depth:
        raise OpRefused(op, f"output shape {y.shape} does not end in {out_depth}")
    batches = y.size // out_depth
    if x.size != batches * accum:
        raise OpRefused(op, f"input of {x.size} values is not {batches} rows of {accum}")
    s_in, s_out = x.scale[0], y.scale[0]
    per_channel = len(w.scale) > 1
    if per_channel:
        mults, shifts = quant.conv_channel_multipliers(s_in, w.scale, s_out, out_depth)
    else:
        if bias is not None and bias.scale:
            diff = abs(float(s_in) * float(w.scale[0]) - float(bias.scale[0]))
            if diff / float(s_out) > 0.02:
                raise OpRefused(op, "bias scale does not match input x weight scale (TFLM rejects it)")
        mm, ss = quant.fc_per_tensor_multiplier(s_in, w.scale[0], s_out)
        mults, shifts = [mm], [ss]
    check_rq(op, mults, shifts)
    check_index_range(op, "output size", batches, out_depth)
    check_index_range(op, "padded weights", out_depth, accum + 3)
    act_min, act_max = quant.activation_range(fused_activation(op), s_out, y.zero_point[0])
    packed, folded, k4, bound = packed_weights(op, np.asarray(w.data).reshape(out_depth, accum), bias, -x.zero_point[0])
    rq_arrays, rq_fields = requant_data(bound, mults, shifts, y.zero_point[0])
    params = fields(
        ("batches", batches), ("accum_depth", accum), ("accum_padded", k4), ("output_depth", out_depth),
        ("input_offset", -x.zero_point[0]), ("output_offset", y.zero_point[0]),
        ("act_min", act_min), ("act_max", act_max), ("per_channel", int(per_channel)),
        ("weights", ArrayRef("w")), ("bias", ArrayRef("b")), *rq_fields)
    arrays = (ConstArray("w", packed, align=4), ConstArray("b", folded), *rq_arrays)
    return OpIR(op.index, op.opcode, "tg_fully_connected_s8", (x.index,), y.index, (x.index,), params, arrays,
                macs=batches * accum * out_depth)
