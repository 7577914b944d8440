"""TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V and UNPACK -> ``firmware/runtime/tg_gather.c``.

TFLM copies the int8 values of these data-movement ops without requantizing them, so every one
becomes a gather (``tg_gather_s8``: offset, dims, strides); an op with several outputs (SPLIT,
UNPACK) lowers to one gather per output.
"""

from __future__ import annotations

from tinygen.codegen.compiled.ir import ConstArray, OpIR
from tinygen.codegen.compiled.lowering.common import (OpRefused, act_tensor, check_index_range, const_ints, i32,
                                                      int8_outputs, norm_axis, row_major_strides)
from tinygen.codegen.compiled.packing import MAX_DIMS
from tinygen.tflite.model import Operator, Tensor, TfliteModel


def _gather(op: Operator, x: Tensor, y: Tensor, offset: int, dims, strides, role: str = "g") -> OpIR:
    """One tg_gather_s8 call writing ``y`` (row-major over ``dims``) from ``x``: unit dims
    dropped and contiguous ones merged, so most copies are a few memcpy runs."""
    pairs = [(int(d), int(s)) for d, s in zip(dims, strides) if int(d) != 1]
    merged: list[list[int]] = []
    for d, s in reversed(pairs):
        if merged and s == merged[-1][1] * merged[-1][0]:
            merged[-1] = [merged[-1][0] * d, merged[-1][1]]
        else:
            merged.append([d, s])
    merged = merged[::-1] or [[1, 1]]
    if len(merged) > MAX_DIMS:
        raise OpRefused(op, f"the copy needs {len(merged)} dimensions (at most {MAX_DIMS})")
    count = 1
    lo = hi = int(offset)
    for d, s in merged:
        count *= d
        lo += min(0, (d - 1) * s)
        hi += max(0, (d - 1) * s)
    # The shapes were checked already; this keeps every read inside the input by construction.
    if count != y.size or lo < 0 or hi >= x.size:
        raise OpRefused(op, f"output shape {y.shape} does not match the input {x.shape} and the op's parameters")
    check_index_range(op, "input size", x.size)
    g = [len(merged), int(offset)] + [d for d, _ in merged] + [s for _, s in merged]
    return OpIR(op.index, op.opcode, "tg_gather_s8", (x.index,), y.index, (x.index,), (),
                (ConstArray(role, i32(g)),))


def transpose(m: TfliteModel, op: Operator) -> OpIR:
    x = act_tensor(m, op, 0, "input")
    y, = int8_outputs(m, op)
    perm = const_ints(m, op, 1, "permutation")
    rank = len(x.shape)
    if sorted(perm) != list(range(rank)):
        raise OpRefused(op, f"permutation {perm} for rank {rank}")
    if tuple(y.shape) != tuple(x.shape[p] for p in perm):
        raise OpRefused(op, f"output shape {y.shape} is not the permuted input shape")
    st = row_major_strides(x.shape)
    return _gather(op, x, y, 0, y.shape, [st[p] for p in perm])


def strided_slice(m: TfliteModel, op: Operator) -> OpIR:
    x = act_tensor(m, op, 0, "input")
    y, = int8_outputs(m, op)
    o = op.options
    if int(o.get("ellipsisMask", 0)) or int(o.get("newAxisMask", 0)) or o.get("offset", False):
        raise OpRefused(op, "ellipsis, new-axis or offset slicing")
    begin = const_ints(m, op, 1, "begin")
    end = const_ints(m, op, 2, "end")
    step = const_ints(m, op, 3, "strides")
    rank = len(x.shape)
    if not (len(begin) == len(end) == len(step) == rank) or rank == 0:
        raise OpRefused(op, f"begin/end/strides of length {len(begin)} for rank {rank}")
    bm, em, sm = (int(o.get(k, 0)) for k in ("beginMask", "endMask", "shrinkAxisMask"))
    offset, dims, strides, kept = 0, [], [], []
    st = row_major_strides(x.shape)
    for d in range(rank):
        n = int(x.shape[d])
        if step[d] == 0:
            raise OpRefused(op, "zero slice stride")
        if sm >> d & 1:
            b = begin[d] + (n if begin[d] < 0 else 0)
            if bm >> d & 1 or not 0 <= b < n:
                raise OpRefused(op, f"shrinking axis {d} at index {begin[d]} of {n}")
            start, count, kept_dim = b, 1, False
        else:
            # TensorFlow's begin/end/stride rules are Python's slice rules (clamping included).
            sl = slice(None if bm >> d & 1 else begin[d], None if em >> d & 1 else end[d], step[d])
            r = range(*sl.indices(n))
            start, count, kept_dim = (r.start if len(r) else 0), len(r), True
        if count == 0:
            raise OpRefused(op, "empty slice")
        offset += start * st[d]
        dims.append(count)
        strides.append(step[d] * st[d])
        if kept_dim:
            kept.append(count)
    if [int(v) for v in y.shape] != kept:
        raise OpRefused(op, f"output shape {y.shape} does not match the slice {tuple(kept)}")
    return _gather(op, x, y, offset, dims, strides)


def _split_parts(op: Operator, x: Tensor, outs: list[Tensor], axis: int) -> tuple[OpIR, ...]:
    """One gather per output: consecutive pieces of ``x`` along ``axis``."""
    st = row_major_strides(x.shape)
    start, irs = 0, []
    for k, y in enumerate(outs):
        if len(y.shape) != len(x.shape) or any(y.shape[d] != x.shape[d] for d in range(len(x.shape)) if d != axis):
            raise OpRefused(op, f"output shape {y.shape} does not fit input {x.shape} along axis {axis}")
        irs.append(_gather(op, x, y, start * st[axis], y.shape, st, role=f"g{k}"))
        start += int(y.shape[axis])
    if start != x.shape[axis]:
        raise OpRefused(op, "the outputs do not add up to the input along the axis")
    return tuple(irs)


def split(m: TfliteModel, op: Operator) -> tuple[OpIR, ...]:
    axis_v = const_ints(m, op, 0, "axis")
    x = act_tensor(m, op, 1, "input")
    outs = int8_outputs(m, op)
    if len(axis_v) != 1 or int(op.options.get("numSplits", len(outs))) != len(outs):
        raise OpRefused(op, "axis or number of splits")
    return _split_parts(op, x, outs, norm_axis(op, axis_v[0], len(x.shape)))


def split_v(m: TfliteModel, op: Operator) -> tuple[OpIR, ...]:
    x = act_tensor(m, op, 0, "input")
    axis_v = const_ints(m, op, 2, "axis")
    outs = int8_outputs(m, op)
    if len(axis_v) != 1:
        raise OpRefused(op, "axis")
    return _split_parts(op, x, outs, norm_axis(op, axis_v[0], len(x.shape)))


def unpack(m: TfliteModel, op: Operator) -> tuple[OpIR, ...]:
    x = act_tensor(m, op, 0, "input")
    outs = int8_outputs(m, op)
    rank = len(x.shape)
    axis = norm_axis(op, int(op.options.get("axis", 0)), rank)
    if len(outs) != x.shape[axis] or int(op.options.get("num", len(outs))) != len(outs):
        raise OpRefused(op, f"{len(outs)} outputs for an axis of {x.shape[axis]}")
    want = tuple(x.shape[d] for d in range(rank) if d != axis)
    st = row_major_strides(x.shape)
    dims = [x.shape[d] if d != axis else 1 for d in range(rank)]
    irs = []
    for k, y in enumerate(outs):
        if tuple(y.shape) != want:
            raise OpRefused(op, f"output shape {y.shape} is not {want}")
        irs.append(_gather(op, x, y, k * st[axis], dims, st, role=f"g{k}"))
    return tuple(irs)
