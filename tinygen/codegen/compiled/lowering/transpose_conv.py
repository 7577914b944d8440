"""TRANSPOSE_CONV -> ``firmware/runtime/tg_transpose_conv.c``."""

from __future__ import annotations

import numpy as np

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.lowering.common import (INT32_MAX, OpRefused, act_tensor, check_index_range, check_rq,
                                                      conv_out_size, conv_pad_amount, fields, fused_activation, i32,
                                                      input_tensor, int8_outputs)
from tinygen.tflite.model import Operator, TfliteModel


def transpose_conv(m: TfliteModel, op: Operator) -> OpIR:
    w = input_tensor(m, op, 1)
    x = act_tensor(m, op, 2, "input")
    y, = int8_outputs(m, op)
    if len(x.shape) != 4 or len(y.shape) != 4 or len(w.shape) != 4:
        raise OpRefused(op, "input, filter and output must be 4-D (NHWC)")
    n, in_h, in_w, in_c = (int(v) for v in x.shape)
    yn, out_h, out_w, out_c = (int(v) for v in y.shape)
    w_oc, k_h, k_w, w_ic = (int(v) for v in w.shape)
    if yn != n or w_oc != out_c or w_ic != in_c:
        raise OpRefused(op, f"filter {w.shape} does not match input {x.shape} and output {y.shape}")
    if not w.is_constant or w.dtype != "int8" or not w.scale or any(z != 0 for z in w.zero_point):
        raise OpRefused(op, "weights must be constant symmetric int8")
    if len(w.scale) > 1 and (len(w.scale) != out_c or w.quantized_dimension != 0):
        raise OpRefused(op, "per-channel weight scales do not match the output channels")
    act_min, act_max = quant.activation_range(fused_activation(op), y.scale[0], y.zero_point[0])
    bias = None
    if len(op.inputs) > 3 and op.inputs[3] >= 0:
        bias = m.tensors[op.inputs[3]]
        if not bias.is_constant or bias.dtype != "int32" or bias.size != out_c:
            raise OpRefused(op, "bias must be a constant int32 tensor, one value per output channel")
    sh, sw = int(op.options.get("strideH", 1)), int(op.options.get("strideW", 1))
    padding = op.options.get("padding", "SAME")
    if padding not in ("SAME", "VALID") or sh <= 0 or sw <= 0 or min(k_h, k_w) <= 0:
        raise OpRefused(op, f"padding {padding} / strides {sh}x{sw}")
    # TFLM pads as a convolution whose input is this op's output.
    pad_h = conv_pad_amount(out_h, k_h, sh, 1, conv_out_size(padding, out_h, k_h, sh, 1))
    pad_w = conv_pad_amount(out_w, k_w, sw, 1, conv_out_size(padding, out_w, k_w, sw, 1))
    check_index_range(op, "output size", n, out_h + k_h, out_w + k_w, out_c)
    check_index_range(op, "input extent", n, in_h * sh + k_h + pad_h, in_w * sw + k_w + pad_w, in_c)
    wd = np.asarray(w.data, dtype=np.int64).reshape(out_c, -1)
    bd = np.zeros(out_c, dtype=np.int64) if bias is None else np.asarray(bias.data, dtype=np.int64).reshape(-1)
    # Each output value receives every (tap, input channel) product at most once.
    if int((np.abs(bd) + 255 * np.abs(wd).sum(axis=1)).max(initial=0)) > INT32_MAX:
        raise OpRefused(op, "bias and weights could overflow the int32 accumulator")
    mults, shifts = quant.conv_channel_multipliers(x.scale[0], w.scale, y.scale[0], out_c)
    check_rq(op, mults, shifts)
    per_channel = len(set(zip(mults, shifts))) > 1
    if not per_channel:
        mults, shifts = mults[:1], shifts[:1]
    arrays = [ConstArray("w", np.asarray(w.data, dtype=np.int8)), ConstArray("mult", i32(mults)),
              ConstArray("shift", i32(shifts))]
    if bias is not None:
        arrays.append(ConstArray("b", i32(bias.data)))
    params = fields(
        ("batches", n), ("in_h", in_h), ("in_w", in_w), ("in_c", in_c), ("out_h", out_h), ("out_w", out_w),
        ("out_c", out_c), ("filter_h", k_h), ("filter_w", k_w), ("stride_h", sh), ("stride_w", sw),
        ("pad_h", pad_h), ("pad_w", pad_w), ("input_offset", -x.zero_point[0]),
        ("output_offset", y.zero_point[0]), ("act_min", act_min), ("act_max", act_max),
        ("per_channel", int(per_channel)), ("weights", ArrayRef("w")),
        ("bias", ArrayRef("b") if bias is not None else None), ("multiplier", ArrayRef("mult")),
        ("shift", ArrayRef("shift")))
    return OpIR(op.index, op.opcode, "tg_transpose_conv_s8", (x.index,), y.index, (x.index,), params,
                tuple(arrays), macs=x.size * k_h * k_w * out_c, scratch_bytes=4 * out_h * out_w * out_c)
