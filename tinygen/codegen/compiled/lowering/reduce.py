"""MEAN, SUM, REDUCE_MAX and REDUCE_MIN: one kept / reduced index walk (``_reduction``).

Kernels: ``firmware/runtime/tg_reduce.c`` (one walk, specialised per reduction; SUM is
``tg_mean_s8`` with a multiplier not divided by the count).
"""

from __future__ import annotations

import numpy as np

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import OpIR
from tinygen.codegen.compiled.lowering.common import (OpRefused, check_index_range, check_rq, check_rq_pairs, f32,
                                                      fields, int8_io, pad_dims, size_of)
from tinygen.codegen.compiled.packing import MAX_DIMS
from tinygen.tflite.model import Operator, TfliteModel


def _reduction(m: TfliteModel, op: Operator):
    """Input, output and the kept / reduced geometry of tg_reduce_params_t: MEAN, SUM, REDUCE_MAX/MIN."""
    x, y = int8_io(m, op)
    axis_t = m.tensors[op.inputs[1]]
    if not axis_t.is_constant or axis_t.dtype != "int32":
        raise OpRefused(op, "axis must be a constant int32 tensor")
    rank = len(x.shape)
    if rank == 0 or rank > MAX_DIMS:
        raise OpRefused(op, f"unsupported rank {rank}")
    axes: list[int] = []
    for a in np.asarray(axis_t.data).reshape(-1):
        a = int(a) + (rank if int(a) < 0 else 0)
        if not 0 <= a < rank:
            raise OpRefused(op, f"axis {a} out of range")
        if a not in axes:
            axes.append(a)
    keep = bool(op.options.get("keepDims", False))
    kept = [d for d in range(rank) if d not in axes]
    want = tuple(1 if d in axes else x.shape[d] for d in range(rank)) if keep else tuple(x.shape[d] for d in kept)
    if size_of(y.shape) != size_of(want):
        raise OpRefused(op, f"output shape {y.shape} does not match the reduction {want}")
    strides = [1] * rank
    for d in range(rank - 2, -1, -1):
        strides[d] = strides[d + 1] * x.shape[d + 1]
    red = sorted(axes)
    num = int(np.prod([x.shape[d] for d in red])) if red else 1
    check_index_range(op, "reduced values x 256", num, 256)
    geometry = [
        ("kept_rank", len(kept)), ("kept_dims", pad_dims([x.shape[d] for d in kept], 1)),
        ("kept_strides", pad_dims([strides[d] for d in kept])),
        ("red_rank", len(red)), ("red_dims", pad_dims([x.shape[d] for d in red], 1)),
        ("red_strides", pad_dims([strides[d] for d in red])), ("num_reduced", num)]
    return x, y, geometry


def mean(m: TfliteModel, op: Operator) -> OpIR:
    x, y, geometry = _reduction(m, op)
    # The kernel sums num int8 values in int32, then subtracts zero_point * num.
    num = dict(geometry)["num_reduced"]
    mult, shift = quant.mean_multiplier(x.scale[0], y.scale[0], num)
    check_rq(op, [mult], [shift])
    params = fields(*geometry, ("input_zero_point", x.zero_point[0]), ("output_zero_point", y.zero_point[0]),
                     ("multiplier", mult), ("shift", shift))
    return OpIR(op.index, op.opcode, "tg_mean_s8", (x.index,), y.index, (x.index,), params)


def reduce_minmax(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    x, y, geometry = _reduction(m, op)
    if f32(x.scale[0]) != f32(y.scale[0]) or x.zero_point[0] != y.zero_point[0]:
        raise OpRefused(op, "input and output quantization differ (TFLM rejects it)")
    params = fields(*geometry, ("input_zero_point", x.zero_point[0]), ("output_zero_point", y.zero_point[0]),
                       ("multiplier", 0), ("shift", 0))
    return OpIR(op.index, op.opcode, f"tg_reduce_{kind}_s8", (x.index,), y.index, (x.index,), params)


def sum_(m: TfliteModel, op: Operator) -> OpIR:
    """QuantizedMeanOrSum with compute_sum: MEAN's kernel without the division by the count."""
    x, y, geometry = _reduction(m, op)
    mult, shift = quant.quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
    check_rq_pairs(op, (mult, shift))
    params = fields(*geometry, ("input_zero_point", x.zero_point[0]), ("output_zero_point", y.zero_point[0]),
                       ("multiplier", mult), ("shift", shift))
    return OpIR(op.index, op.opcode, "tg_mean_s8", (x.index,), y.index, (x.index,), params)
