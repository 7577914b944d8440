"""Lowering of the shape and spatial ops: TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK,
PACK, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR and TRANSPOSE_CONV (see :mod:`.lower`).

TFLM copies the int8 values of the data-movement ops without requantizing them, so every one
of them becomes a gather (``tg_gather_s8``: offset, dims, strides) or, for PACK, the
concatenation kernel; an op with several outputs (SPLIT, UNPACK) lowers to one gather per
output. The resize ops get per-row and per-column tables computed here exactly as TFLM
computes them per pixel (float32 for nearest, its 10-bit fixed point for bilinear).
"""

from __future__ import annotations

import numpy as np

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.lower import (INT32_MAX, SHAPE_OPS, OpRefused, _activation, _check_index_range,
                                            _check_rq, _fields, _i32, _need_int8_act, _out_size, _pad_amount)
from tinygen.codegen.compiled.packing import MAX_DIMS
from tinygen.tflite.model import Operator, Tensor, TfliteModel

SUPPORTED = SHAPE_OPS


def _tensor(m: TfliteModel, op: Operator, i: int) -> Tensor:
    if i >= len(op.inputs) or op.inputs[i] < 0:
        raise OpRefused(op, "missing input")
    return m.tensors[op.inputs[i]]


def _const_ints(m: TfliteModel, op: Operator, i: int, what: str) -> list[int]:
    t = _tensor(m, op, i)
    if not t.is_constant or t.dtype != "int32":
        raise OpRefused(op, f"{what} must be a constant int32 tensor")
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def _act_tensor(m: TfliteModel, op: Operator, i: int, what: str) -> Tensor:
    t = _tensor(m, op, i)
    _need_int8_act(m, op, t, what)
    if t.is_constant:
        raise OpRefused(op, f"constant {what}")
    return t


def _outputs(m: TfliteModel, op: Operator) -> list[Tensor]:
    if not op.outputs or any(o < 0 for o in op.outputs):
        raise OpRefused(op, "missing output")
    outs = [m.tensors[o] for o in op.outputs]
    for t in outs:
        _need_int8_act(m, op, t, "output")
    return outs


def _strides(shape) -> list[int]:
    st, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        st[d] = acc
        acc *= int(shape[d])
    return st


def _axis(op: Operator, axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise OpRefused(op, f"axis {axis} out of range for rank {rank}")
    return a


# ---- gathers -----------------------------------------------------------------------

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
    _check_index_range(op, "input size", x.size)
    g = [len(merged), int(offset)] + [d for d, _ in merged] + [s for _, s in merged]
    return OpIR(op.index, op.opcode, "tg_gather_s8", (x.index,), y.index, (x.index,), (),
                (ConstArray(role, _i32(g)),))


def _transpose(m: TfliteModel, op: Operator) -> OpIR:
    x = _act_tensor(m, op, 0, "input")
    y, = _outputs(m, op)
    perm = _const_ints(m, op, 1, "permutation")
    rank = len(x.shape)
    if sorted(perm) != list(range(rank)):
        raise OpRefused(op, f"permutation {perm} for rank {rank}")
    if tuple(y.shape) != tuple(x.shape[p] for p in perm):
        raise OpRefused(op, f"output shape {y.shape} is not the permuted input shape")
    st = _strides(x.shape)
    return _gather(op, x, y, 0, y.shape, [st[p] for p in perm])


def _strided_slice(m: TfliteModel, op: Operator) -> OpIR:
    x = _act_tensor(m, op, 0, "input")
    y, = _outputs(m, op)
    o = op.options
    if int(o.get("ellipsisMask", 0)) or int(o.get("newAxisMask", 0)) or o.get("offset", False):
        raise OpRefused(op, "ellipsis, new-axis or offset slicing")
    begin = _const_ints(m, op, 1, "begin")
    end = _const_ints(m, op, 2, "end")
    step = _const_ints(m, op, 3, "strides")
    rank = len(x.shape)
    if not (len(begin) == len(end) == len(step) == rank) or rank == 0:
        raise OpRefused(op, f"begin/end/strides of length {len(begin)} for rank {rank}")
    bm, em, sm = (int(o.get(k, 0)) for k in ("beginMask", "endMask", "shrinkAxisMask"))
    offset, dims, strides, kept = 0, [], [], []
    st = _strides(x.shape)
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
    st = _strides(x.shape)
    start, irs = 0, []
    for k, y in enumerate(outs):
        if len(y.shape) != len(x.shape) or any(y.shape[d] != x.shape[d] for d in range(len(x.shape)) if d != axis):
            raise OpRefused(op, f"output shape {y.shape} does not fit input {x.shape} along axis {axis}")
        irs.append(_gather(op, x, y, start * st[axis], y.shape, st, role=f"g{k}"))
        start += int(y.shape[axis])
    if start != x.shape[axis]:
        raise OpRefused(op, "the outputs do not add up to the input along the axis")
    return tuple(irs)


def _split(m: TfliteModel, op: Operator) -> tuple[OpIR, ...]:
    axis_v = _const_ints(m, op, 0, "axis")
    x = _act_tensor(m, op, 1, "input")
    outs = _outputs(m, op)
    if len(axis_v) != 1 or int(op.options.get("numSplits", len(outs))) != len(outs):
        raise OpRefused(op, "axis or number of splits")
    return _split_parts(op, x, outs, _axis(op, axis_v[0], len(x.shape)))


def _split_v(m: TfliteModel, op: Operator) -> tuple[OpIR, ...]:
    x = _act_tensor(m, op, 0, "input")
    axis_v = _const_ints(m, op, 2, "axis")
    outs = _outputs(m, op)
    if len(axis_v) != 1:
        raise OpRefused(op, "axis")
    return _split_parts(op, x, outs, _axis(op, axis_v[0], len(x.shape)))


def _unpack(m: TfliteModel, op: Operator) -> tuple[OpIR, ...]:
    x = _act_tensor(m, op, 0, "input")
    outs = _outputs(m, op)
    rank = len(x.shape)
    axis = _axis(op, int(op.options.get("axis", 0)), rank)
    if len(outs) != x.shape[axis] or int(op.options.get("num", len(outs))) != len(outs):
        raise OpRefused(op, f"{len(outs)} outputs for an axis of {x.shape[axis]}")
    want = tuple(x.shape[d] for d in range(rank) if d != axis)
    st = _strides(x.shape)
    dims = [x.shape[d] if d != axis else 1 for d in range(rank)]
    irs = []
    for k, y in enumerate(outs):
        if tuple(y.shape) != want:
            raise OpRefused(op, f"output shape {y.shape} is not {want}")
        irs.append(_gather(op, x, y, k * st[axis], dims, st, role=f"g{k}"))
    return tuple(irs)


def _pack(m: TfliteModel, op: Operator) -> OpIR:
    y, = _outputs(m, op)
    if not op.inputs or any(i < 0 for i in op.inputs):
        raise OpRefused(op, "missing input")
    ins = [m.tensors[i] for i in op.inputs]
    for t in ins:
        _need_int8_act(m, op, t, "input")
    shape = tuple(ins[0].shape)
    axis = _axis(op, int(op.options.get("axis", 0)), len(shape) + 1)
    if any(tuple(t.shape) != shape for t in ins) or int(op.options.get("valuesCount", len(ins))) != len(ins):
        raise OpRefused(op, "inputs of different shapes")
    if tuple(y.shape) != shape[:axis] + (len(ins),) + shape[axis:]:
        raise OpRefused(op, f"output shape {y.shape} does not stack {len(ins)} inputs of {shape} on axis {axis}")
    # Stacking on an axis is concatenating rows of prod(shape[axis:]) values.
    outer = int(np.prod(shape[:axis])) if axis else 1
    inner = int(np.prod(shape[axis:])) if axis < len(shape) else 1
    reads = tuple(dict.fromkeys(t.index for t in ins if not t.is_constant))
    consts = tuple(dict.fromkeys(t.index for t in ins if t.is_constant))
    return OpIR(op.index, op.opcode, "tg_concat_s8", tuple(t.index for t in ins), y.index, reads,
                _fields(("outer", outer), ("count", len(ins)), ("inner", ArrayRef("inner"))),
                (ConstArray("inner", _i32([inner] * len(ins))),), const_inputs=consts)


# ---- resize ----------------------------------------------------------------------

def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _nearest_table(in_size: int, out_size: int, align: bool, half: bool) -> list[int]:
    """TFLM's GetNearestNeighbor for every output index, in float32 as it computes."""
    f = np.float32
    if align and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    table = []
    for v in range(out_size):
        s = (f(v) + f(0.5 if half else 0.0)) * scale
        src = int(np.floor(s)) if not align else int(quant.round_half_away(float(s)))
        src = min(src, in_size - 1)
        table.append(max(0, src) if half else src)
    return table


def _bilinear_table(in_size: int, out_size: int, align: bool, half: bool) -> list[int]:
    """TFLM's ResizeBilinearInteger interpolation values per output index: (lower, upper,
    position - 1024 * lower), all in its 10-bit fixed point."""
    if align and out_size > 1:
        s10 = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        s10 = ((1 << 10) * in_size + out_size // 2) // out_size
    table = []
    for v in range(out_size):
        pos = v * s10 + s10 // 2 - (1 << 9) if half else v * s10
        lo = max(_c_div(pos, 1 << 10), 0)
        hi = min(_c_div(pos + (1 << 10) - 1, 1 << 10), in_size - 1)
        table += [lo, hi, pos - (1 << 10) * lo]
    return table


def _resize(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    x = _act_tensor(m, op, 0, "input")
    y, = _outputs(m, op)
    size = _const_ints(m, op, 1, "size")
    if len(x.shape) != 4 or len(y.shape) != 4 or len(size) != 2:
        raise OpRefused(op, "input and output must be 4-D (NHWC) with a 2-value size")
    n, in_h, in_w, ch = (int(v) for v in x.shape)
    if tuple(y.shape) != (n, size[0], size[1], ch):
        raise OpRefused(op, f"output shape {y.shape} does not match size {size}")
    align = bool(op.options.get("alignCorners", False))
    half = bool(op.options.get("halfPixelCenters", False))
    if align and half:
        raise OpRefused(op, "align_corners together with half_pixel_centers (TFLM rejects it)")
    out_h, out_w = size
    _check_index_range(op, "input size", n, in_h, in_w, ch)
    _check_index_range(op, "output size x 1024", n, out_h, out_w, ch, 1024)
    table = _nearest_table if kind == "nearest" else _bilinear_table
    params = _fields(("batches", n), ("in_h", in_h), ("in_w", in_w), ("channels", ch), ("out_h", out_h),
                     ("out_w", out_w), ("ys", ArrayRef("ys")), ("xs", ArrayRef("xs")))
    arrays = (ConstArray("ys", _i32(table(in_h, out_h, align, half))),
              ConstArray("xs", _i32(table(in_w, out_w, align, half))))
    fn = "tg_resize_nearest_s8" if kind == "nearest" else "tg_resize_bilinear_s8"
    return OpIR(op.index, op.opcode, fn, (x.index,), y.index, (x.index,), params, arrays)


# ---- TRANSPOSE_CONV ------------------------------------------------------------------

def _transpose_conv(m: TfliteModel, op: Operator) -> OpIR:
    w = _tensor(m, op, 1)
    x = _act_tensor(m, op, 2, "input")
    y, = _outputs(m, op)
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
    act_min, act_max = quant.activation_range(_activation(op), y.scale[0], y.zero_point[0])
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
    pad_h = _pad_amount(out_h, k_h, sh, 1, _out_size(padding, out_h, k_h, sh, 1))
    pad_w = _pad_amount(out_w, k_w, sw, 1, _out_size(padding, out_w, k_w, sw, 1))
    _check_index_range(op, "output size", n, out_h + k_h, out_w + k_w, out_c)
    _check_index_range(op, "input extent", n, in_h * sh + k_h + pad_h, in_w * sw + k_w + pad_w, in_c)
    wd = np.asarray(w.data, dtype=np.int64).reshape(out_c, -1)
    bd = np.zeros(out_c, dtype=np.int64) if bias is None else np.asarray(bias.data, dtype=np.int64).reshape(-1)
    # Each output value receives every (tap, input channel) product at most once.
    if int((np.abs(bd) + 255 * np.abs(wd).sum(axis=1)).max(initial=0)) > INT32_MAX:
        raise OpRefused(op, "bias and weights could overflow the int32 accumulator")
    mults, shifts = quant.conv_channel_multipliers(x.scale[0], w.scale, y.scale[0], out_c)
    _check_rq(op, mults, shifts)
    per_channel = len(set(zip(mults, shifts))) > 1
    if not per_channel:
        mults, shifts = mults[:1], shifts[:1]
    arrays = [ConstArray("w", np.asarray(w.data, dtype=np.int8)), ConstArray("mult", _i32(mults)),
              ConstArray("shift", _i32(shifts))]
    if bias is not None:
        arrays.append(ConstArray("b", _i32(bias.data)))
    params = _fields(
        ("batches", n), ("in_h", in_h), ("in_w", in_w), ("in_c", in_c), ("out_h", out_h), ("out_w", out_w),
        ("out_c", out_c), ("filter_h", k_h), ("filter_w", k_w), ("stride_h", sh), ("stride_w", sw),
        ("pad_h", pad_h), ("pad_w", pad_w), ("input_offset", -x.zero_point[0]),
        ("output_offset", y.zero_point[0]), ("act_min", act_min), ("act_max", act_max),
        ("per_channel", int(per_channel)), ("weights", ArrayRef("w")),
        ("bias", ArrayRef("b") if bias is not None else None), ("multiplier", ArrayRef("mult")),
        ("shift", ArrayRef("shift")))
    return OpIR(op.index, op.opcode, "tg_transpose_conv_s8", (x.index,), y.index, (x.index,), params,
                tuple(arrays), macs=x.size * k_h * k_w * out_c, scratch_bytes=4 * out_h * out_w * out_c)


LOWER = {
    "TRANSPOSE": _transpose,
    "STRIDED_SLICE": _strided_slice,
    "SPLIT": _split,
    "SPLIT_V": _split_v,
    "UNPACK": _unpack,
    "PACK": _pack,
    "RESIZE_NEAREST_NEIGHBOR": lambda m, op: _resize(m, op, "nearest"),
    "RESIZE_BILINEAR": lambda m, op: _resize(m, op, "bilinear"),
    "TRANSPOSE_CONV": _transpose_conv,
}
