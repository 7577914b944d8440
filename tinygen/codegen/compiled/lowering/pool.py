"""AVERAGE_POOL_2D and MAX_POOL_2D -> ``firmware/runtime/tg_pool.c``."""

from __future__ import annotations

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import OpIR
from tinygen.codegen.compiled.lowering.common import (OpRefused, check_index_range, f32diff, fields, fused_activation,
                                                      int8_io, spatial_padding, window_overlap)
from tinygen.tflite.model import Operator, TfliteModel


def pool(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    x, y = int8_io(m, op)
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise OpRefused(op, "input and output must be 4-D (NHWC)")
    if abs(f32diff(x.scale[0], y.scale[0])) > 1.0e-6 or x.zero_point[0] != y.zero_point[0]:
        raise OpRefused(op, "input and output quantization differ (TFLM rejects it)")
    n, in_h, in_w, ch = x.shape
    yn, out_h, out_w, ych = y.shape
    if (yn, ych) != (n, ch):
        raise OpRefused(op, "batch or channel mismatch")
    k_h, k_w = int(op.options.get("filterHeight", 1)), int(op.options.get("filterWidth", 1))
    sh, sw = int(op.options.get("strideH", 1)), int(op.options.get("strideW", 1))
    pad_h, pad_w = spatial_padding(op, in_h, in_w, k_h, k_w, out_h, out_w, sh, sw, 1, 1)
    check_index_range(op, "input extent rows x columns x channels x batches",
                       out_h * sh + pad_h + k_h + in_h, out_w * sw + pad_w + k_w + in_w, ch, n)
    # The average pool sums up to (window clipped to the input) int8 values in int32.
    check_index_range(op, "window sum", 256, min(k_h, in_h), min(k_w, in_w))
    # Every window must overlap the input (else TFLM's average pool fails).
    for o, s, pad, k, size in ((out_h, sh, pad_h, k_h, in_h), (out_w, sw, pad_w, k_w, in_w)):
        for pos in (0, o - 1):
            start = pos * s - pad
            if min(k, size - start) - max(0, -start) <= 0:
                raise OpRefused(op, "a pooling window lies entirely in the padding")
    act_min, act_max = quant.activation_range(fused_activation(op), y.scale[0], y.zero_point[0])
    params = fields(
        ("batches", n), ("in_h", in_h), ("in_w", in_w), ("channels", ch),
        ("out_h", out_h), ("out_w", out_w), ("filter_h", k_h), ("filter_w", k_w),
        ("stride_h", sh), ("stride_w", sw), ("pad_h", pad_h), ("pad_w", pad_w),
        ("act_min", act_min), ("act_max", act_max))
    fn = "tg_avg_pool_s8" if kind == "avg" else "tg_max_pool_s8"
    ov = window_overlap(x.index, n, in_h, in_w, ch, out_h, out_w, ch, sh, sw, pad_h, pad_w)
    return OpIR(op.index, op.opcode, fn, (x.index,), y.index, (x.index,), params, overlap=ov)
