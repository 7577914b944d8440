"""What every op family's lowering shares (like tflite-micro's ``kernel_util.h``): the refusal
(:class:`OpRefused`), int8 tensor checks, requantization and index-range checks, convolution
geometry, weight packing and the requantization constants.

Everything here is public: a family module imports these names, never another family's
private ones.
"""

from __future__ import annotations

import math

import numpy as np

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.overlap import window_shift
from tinygen.codegen.compiled.packing import MAX_DIMS, acc_bound_packed, dw3x3_widened, pack_weights
from tinygen.common.errors import UnsupportedModel
from tinygen.tflite.model import Operator, Tensor, TfliteModel


INT32_MAX = 2**31 - 1
f32 = quant.f32


class OpRefused(UnsupportedModel):
    """One operator cannot be compiled; ``reason`` is a short phrase."""

    def __init__(self, op: Operator, reason: str):
        super().__init__(f"{op.opcode} (op {op.index}): {reason}")
        self.op = op
        self.reason = reason


def i32(values) -> np.ndarray:
    """int32 array of ``values``; ValueError (a malformed operator) if one does not fit."""
    v = np.asarray([int(x) for x in np.asarray(values).reshape(-1)], dtype=np.int64)
    if v.size and (v.min() < -2**31 or v.max() > 2**31 - 1):
        raise ValueError("a constant does not fit in int32")
    return v.astype(np.int32)


def fields(*pairs) -> tuple:
    """Params-struct fields with plain Python ints (nested tuples for C arrays)."""
    def norm(v):
        if isinstance(v, (ArrayRef, type(None))):
            return v
        if isinstance(v, (list, tuple, np.ndarray)):
            return tuple(norm(x) for x in v)
        return int(v)
    return tuple((k, norm(v)) for k, v in pairs)


def pad_dims(values, fill=0):
    vals = list(values)
    return vals + [fill] * (MAX_DIMS - len(vals))


def size_of(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def check_rq(op: Operator, mults, shifts) -> None:
    """The kernels' requantization is free of undefined behaviour only for a multiplier in
    [0, 2^31) and a shift in [-31, 30] (left shifts of at most 30 bits, right shifts of at
    most 31)."""
    for mlt, sh in zip(mults, shifts):
        if not (0 <= int(mlt) <= INT32_MAX and -31 <= int(sh) <= 30):
            raise OpRefused(op, f"requantization multiplier {mlt} / shift {sh} out of the kernels' range")


def check_rq_pairs(op: Operator, *pairs) -> None:
    check_rq(op, [p[0] for p in pairs], [p[1] for p in pairs])


def check_index_range(op: Operator, what: str, *factors: int) -> None:
    """Refuse unless the product of ``factors`` (a bound on an index the kernel computes in
    int32) stays below 2^31."""
    prod = 1
    for f in factors:
        prod *= max(int(f), 1)
    if prod > INT32_MAX:
        raise OpRefused(op, f"{what} ({prod}) could overflow the kernel's int32 index arithmetic")


def need_int8_act(m: TfliteModel, op: Operator, t: Tensor, what: str) -> None:
    if t.dtype != "int8":
        raise OpRefused(op, f"{what} tensor {t.index} is {t.dtype}, the compiled runtime computes int8 only")
    if len(t.scale) != 1 or len(t.zero_point) != 1:
        raise OpRefused(op, f"{what} tensor {t.index} needs one scale and zero point (per-tensor int8)")
    if not (t.scale[0] > 0 and math.isfinite(t.scale[0])):
        raise OpRefused(op, f"{what} tensor {t.index} has scale {t.scale[0]}")
    if not -128 <= t.zero_point[0] <= 127:
        raise OpRefused(op, f"{what} tensor {t.index} has zero point {t.zero_point[0]}")
    if any(d <= 0 for d in t.shape):
        raise OpRefused(op, f"{what} tensor {t.index} has shape {t.shape}")


def int8_io(m: TfliteModel, op: Operator) -> tuple[Tensor, Tensor]:
    """The one activation input and the output of an op, both per-tensor int8; a constant
    input is refused (there is nothing to compute at run time)."""
    x, = act_inputs(m, op, 1)
    y = m.tensors[op.outputs[0]]
    need_int8_act(m, op, x, "input")
    need_int8_act(m, op, y, "output")
    if x.is_constant:
        raise OpRefused(op, "constant input")
    return x, y


def unary_io(m: TfliteModel, op: Operator):
    x, y = int8_io(m, op)
    if x.size != y.size:
        raise OpRefused(op, "input and output sizes differ")
    return x, y


def act_inputs(m: TfliteModel, op: Operator, n: int) -> list[Tensor]:
    if len(op.outputs) != 1:
        raise OpRefused(op, f"{len(op.outputs)} outputs")
    ins = [i for i in op.inputs]
    if len(ins) < n or any(i < 0 for i in ins[:n]):
        raise OpRefused(op, "missing input")
    return [m.tensors[i] for i in ins[:n]]


def fused_activation(op: Operator) -> str:
    return op.options.get("fusedActivationFunction", "NONE")


def input_tensor(m: TfliteModel, op: Operator, i: int) -> Tensor:
    if i >= len(op.inputs) or op.inputs[i] < 0:
        raise OpRefused(op, "missing input")
    return m.tensors[op.inputs[i]]


def const_ints(m: TfliteModel, op: Operator, i: int, what: str) -> list[int]:
    t = input_tensor(m, op, i)
    if not t.is_constant or t.dtype != "int32":
        raise OpRefused(op, f"{what} must be a constant int32 tensor")
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def act_tensor(m: TfliteModel, op: Operator, i: int, what: str) -> Tensor:
    t = input_tensor(m, op, i)
    need_int8_act(m, op, t, what)
    if t.is_constant:
        raise OpRefused(op, f"constant {what}")
    return t


def int8_outputs(m: TfliteModel, op: Operator) -> list[Tensor]:
    if not op.outputs or any(o < 0 for o in op.outputs):
        raise OpRefused(op, "missing output")
    outs = [m.tensors[o] for o in op.outputs]
    for t in outs:
        need_int8_act(m, op, t, "output")
    return outs


def row_major_strides(shape) -> list[int]:
    st, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        st[d] = acc
        acc *= int(shape[d])
    return st


def norm_axis(op: Operator, axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise OpRefused(op, f"axis {axis} out of range for rank {rank}")
    return a


def weights_and_bias(m: TfliteModel, op: Operator, out_c: int, qdim: int):
    w = m.tensors[op.inputs[1]]
    if not w.is_constant:
        raise OpRefused(op, "weights are not constant")
    if w.dtype != "int8":
        raise OpRefused(op, f"weights are {w.dtype}; only int8 weights are supported")
    if any(z != 0 for z in w.zero_point):
        raise OpRefused(op, "weights have a non-zero zero point")
    if len(w.scale) == 0:
        raise OpRefused(op, "weights are not quantized")
    if len(w.scale) > 1 and (len(w.scale) != out_c or w.quantized_dimension != qdim):
        raise OpRefused(op, "per-channel weight scales do not match the output channels")
    bias = None
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = m.tensors[op.inputs[2]]
        if not b.is_constant or b.dtype != "int32":
            raise OpRefused(op, f"bias must be a constant int32 tensor (got {b.dtype})")
        if b.size != out_c:
            raise OpRefused(op, "bias length does not match the output channels")
        bias = b
    return w, bias


def conv_out_size(padding: str, in_size: int, k: int, stride: int, dil: int) -> int:
    eff = (k - 1) * dil + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size + stride - eff) // stride
    raise ValueError(padding)


def conv_pad_amount(in_size: int, k: int, stride: int, dil: int, out: int) -> int:
    eff = (k - 1) * dil + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2


def spatial_padding(op: Operator, in_h, in_w, k_h, k_w, out_h, out_w, stride_h, stride_w, dil_h, dil_w):
    padding = op.options.get("padding", "SAME")
    if padding not in ("SAME", "VALID"):
        raise OpRefused(op, f"padding {padding}")
    if min(stride_h, stride_w, dil_h, dil_w, k_h, k_w) <= 0:
        raise OpRefused(op, "non-positive stride, dilation or filter size")
    oh = conv_out_size(padding, in_h, k_h, stride_h, dil_h)
    ow = conv_out_size(padding, in_w, k_w, stride_w, dil_w)
    if (oh, ow) != (out_h, out_w) or oh <= 0 or ow <= 0:
        raise OpRefused(op, f"output size {out_h}x{out_w} does not match {padding} padding ({oh}x{ow})")
    return conv_pad_amount(in_h, k_h, stride_h, dil_h, oh), conv_pad_amount(in_w, k_w, stride_w, dil_w, ow)


def packed_weights(op: Operator, w2, bias, input_offset: int, groups: int = 1):
    """pack_weights, refused unless every partial sum the kernel forms stays within int32
    (as TFLM's own do). Returns (packed, folded int32 bias, K4, |accumulator| bounds)."""
    packed, folded, k4 = pack_weights(w2, None if bias is None else bias.data, input_offset, groups)
    bound = acc_bound_packed(w2, folded)
    if (bound > INT32_MAX).any():
        raise OpRefused(op, "bias and weights could overflow the int32 accumulator")
    return packed, folded.astype(np.int32), k4, bound


def constant_channel_rq(acc: int, m: int, shift: int, output_offset: int, doubled: bool) -> list[int] | None:
    """rq_fused constants for a channel whose accumulator is the one value ``acc`` (all its
    weights zero: the accumulator is its folded bias), or None. Such channels (a bias near
    2^30 with a right shift of 26 or more, as in the official MLPerf VWW model) fail
    quant.fused_requant_constants' proof, which covers every |acc| up to a bound. Here the
    output is one number, TFLM's MultiplyByQuantizedMultiplier(acc) + offset = t, and the
    constants (m 0, shift 0, c = 2 t + [a < 0], right 1) make the kernels' tg_rq_fused
    (SMMLAR(a << 0, 0, c + (a < 0 ? -1 : 0)) >> 1, a = acc or 2 acc when doubled) give 2 t >> 1
    = t: the product is (a * 0 + 2^31) >> 32 = 0 and every step stays in int32 (checked)."""
    a = 2 * int(acc) if doubled else int(acc)
    if not -2**31 <= a <= INT32_MAX or not -2**31 <= int(acc) << max(int(shift), 0) <= INT32_MAX:
        return None  # (TFLM's own left shift must not leave int32 either)
    t = quant.multiply_by_quantized_multiplier(int(acc), int(m), int(shift)) + int(output_offset)
    if not -2**29 < t < 2**29:
        return None
    return [0, 0, 2 * t + (1 if a < 0 else 0), 1]


def requant_data(bounds, mults, shifts, output_offset: int = 0, doubled: bool = False,
                  known=None) -> tuple[list[ConstArray], list[tuple[str, object]]]:
    """The multiplier / shift / fast_requant / rq_fused fields and their arrays: the fused
    constants (array "rqf", the output offset folded in) when provably exact, else the
    fast ones (array "rq"), else the multiplier and shift arrays.

    ``bounds`` (per output channel) bound |accumulator|; with one multiplier for
    all channels the largest bound applies. ``known`` (per channel, per-channel
    multipliers only): the accumulator's one value where it has only one, else None; such
    a channel the bound's proof refuses gets constant_channel_rq's constants."""
    bounds = [int(b) for b in np.asarray(bounds, dtype=np.int64).reshape(-1)]
    if len(mults) == 1:
        bounds = [max(bounds)] if bounds else [0]
        known = None
    fused = quant.fused_requant_constants(bounds, mults, shifts, output_offset, doubled)
    if fused is None and known is not None and len(known) == len(bounds) == len(mults):
        fused = []
        for b, m, s, a in zip(bounds, mults, shifts, known):
            k = quant.fused_requant_constants([b], [m], [s], output_offset, doubled)
            if k is None and a is not None:
                k = constant_channel_rq(a, m, s, output_offset, doubled)
            if k is None:
                fused = None
                break
            fused += k
    if fused is not None:
        return ([ConstArray("rqf", i32(fused))],
                [("multiplier", None), ("shift", None), ("fast_requant", None), ("rq_fused", ArrayRef("rqf"))])
    consts = quant.fast_requant_constants(bounds, mults, shifts)
    if consts is not None:
        return ([ConstArray("rq", i32(consts))],
                [("multiplier", None), ("shift", None), ("fast_requant", ArrayRef("rq"))])
    return ([ConstArray("mult", i32(mults)), ConstArray("shift", i32(shifts))],
            [("multiplier", ArrayRef("mult")), ("shift", ArrayRef("shift")), ("fast_requant", None)])


def window_overlap(xi: int, *geometry: int) -> tuple[tuple[int, int], ...]:
    """OpIR.overlap for a windowed kernel (conv, depthwise, pooling): see overlap.py."""
    shift = window_shift(*geometry)
    return () if shift is None else ((xi, shift),)


def f32diff(a: float, b: float) -> float:
    return quant.f32(quant.f32(a) - quant.f32(b))


def conv_geometry(m: TfliteModel, op: Operator, depthwise: bool) -> dict:
    """The checked shapes, strides, padding and requantization of a CONV_2D or
    DEPTHWISE_CONV_2D (one params struct, tg_conv_params_t, serves both kernels)."""
    x, y = int8_io(m, op)
    w_t = m.tensors[op.inputs[1]]
    if len(x.shape) != 4 or len(y.shape) != 4 or len(w_t.shape) != 4:
        raise OpRefused(op, "input, filter and output must be 4-D (NHWC)")
    n, in_h, in_w, in_c = x.shape
    yn, out_h, out_w, out_c = y.shape
    if yn != n:
        raise OpRefused(op, "batch mismatch")
    if depthwise:
        one, k_h, k_w, w_oc = w_t.shape
        if one != 1 or w_oc != out_c:
            raise OpRefused(op, f"filter shape {w_t.shape} does not match output channels {out_c}")
        if out_c % in_c:
            raise OpRefused(op, "output channels are not a multiple of input channels")
        dm = out_c // in_c
        if int(op.options.get("depthMultiplier", dm)) != dm:
            raise OpRefused(op, "depth_multiplier option does not match the shapes")
        filter_in_c = 1
        w, bias = weights_and_bias(m, op, out_c, 3)
    else:
        w_oc, k_h, k_w, filter_in_c = w_t.shape
        if w_oc != out_c:
            raise OpRefused(op, f"filter shape {w_t.shape} does not match output channels {out_c}")
        if in_c % filter_in_c:
            raise OpRefused(op, "input channels are not a multiple of the filter depth")
        groups = in_c // filter_in_c
        if out_c % groups:
            raise OpRefused(op, "output channels are not a multiple of the groups")
        dm = 1
        w, bias = weights_and_bias(m, op, out_c, 0)
    sh, sw = int(op.options.get("strideH", 1)), int(op.options.get("strideW", 1))
    dh, dw = int(op.options.get("dilationHFactor", 1)), int(op.options.get("dilationWFactor", 1))
    pad_h, pad_w = spatial_padding(op, in_h, in_w, k_h, k_w, out_h, out_w, sh, sw, dh, dw)
    # Row offsets reach (out * stride + pad + dilation * (filter + 2)) whole input rows, and the
    # depthwise DSP path forms dilation * in_w * in_c steps: bound them all.
    ext_h = out_h * sh + pad_h + dh * (k_h + 2) + in_h
    ext_w = out_w * sw + pad_w + dw * (k_w + 2) + in_w
    check_index_range(op, "input extent rows x columns x channels x batches", ext_h, ext_w, in_c, n)
    check_index_range(op, "output size", n, out_h, out_w, out_c)
    s_in, s_out = x.scale[0], y.scale[0]
    mults, shifts = quant.conv_channel_multipliers(s_in, w.scale, s_out, out_c)
    check_rq(op, mults, shifts)
    act_min, act_max = quant.activation_range(fused_activation(op), s_out, y.zero_point[0])
    return dict(x=x, y=y, w=w, bias=bias, n=n, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h,
                out_w=out_w, out_c=out_c, k_h=k_h, k_w=k_w, filter_in_c=filter_in_c, dm=dm,
                sh=sh, sw=sw, dh=dh, dw=dw, pad_h=pad_h, pad_w=pad_w, mults=mults,
                shifts=shifts, act_min=act_min, act_max=act_max)


def conv_opir(op: Operator, c: dict, arrays: list[ConstArray], acc_bound, k4: int, bias_ref: ArrayRef | None,
              w16_ref: ArrayRef | None, depthwise: bool, known=None) -> OpIR:
    """The OpIR of a CONV_2D / DEPTHWISE_CONV_2D from its geometry (conv_geometry) and the
    weight arrays its family packed: the requantization data, the params, the write overlap.
    ``known``: per output channel, the accumulator's one value (all weights zero) or None."""
    per_channel = len(set(zip(c["mults"], c["shifts"]))) > 1
    if per_channel:
        mults, shifts = c["mults"], c["shifts"]
    else:
        mults, shifts = c["mults"][:1], c["shifts"][:1]
    # fast requantization constants replace the multiplier / shift arrays
    # depthwise 3x3 with fused requantization: the widened weights and biases doubled, so
    # the kernel's accumulators arrive doubled and its requantization needs no shift
    rq_arrays, rq_fields = requant_data(acc_bound, mults, shifts, c["y"].zero_point[0], w16_ref is not None,
                                        known if per_channel else None)
    arrays += rq_arrays
    if w16_ref is not None:
        scale = 2 if dict(rq_fields).get("rq_fused") is not None else 1
        arrays.append(ConstArray("w16", i32(dw3x3_widened(
            c["w"].data, c["out_c"], c["dm"], None if c["bias"] is None else c["bias"].data,
            -int(c["x"].zero_point[0]), scale))))
    x, y = c["x"], c["y"]
    params = fields(
        ("batches", c["n"]), ("in_h", c["in_h"]), ("in_w", c["in_w"]), ("in_c", c["in_c"]),
        ("out_h", c["out_h"]), ("out_w", c["out_w"]), ("out_c", c["out_c"]),
        ("filter_h", c["k_h"]), ("filter_w", c["k_w"]), ("filter_in_c", c["filter_in_c"]),
        ("depth_multiplier", c["dm"]), ("stride_h", c["sh"]), ("stride_w", c["sw"]),
        ("dilation_h", c["dh"]), ("dilation_w", c["dw"]), ("pad_h", c["pad_h"]), ("pad_w", c["pad_w"]),
        ("input_offset", -x.zero_point[0]), ("output_offset", y.zero_point[0]),
        ("act_min", c["act_min"]), ("act_max", c["act_max"]), ("per_channel", int(per_channel)),
        ("k_padded", k4), ("weights", ArrayRef("w")), ("bias", bias_ref), *rq_fields,
        *([("dw3x3_widened", w16_ref)] if depthwise else []))
    xi, yi = x.index, y.index
    per_out = c["k_h"] * c["k_w"] * (1 if depthwise else c["filter_in_c"])
    ov = window_overlap(xi, c["n"], c["in_h"], c["in_w"], c["in_c"], c["out_h"], c["out_w"], c["out_c"],
                        c["sh"], c["sw"], c["pad_h"], c["pad_w"])
    if depthwise:
        return OpIR(op.index, op.opcode, "tg_depthwise_conv2d_s8", (xi,), yi, (xi,), params, tuple(arrays),
                    macs=y.size * per_out, overlap=ov)
    return OpIR(op.index, op.opcode, "tg_conv2d_s8", (xi,), yi, (xi,), params, tuple(arrays),
                macs=y.size * per_out, scratch_bytes=4 * k4, overlap=ov)
