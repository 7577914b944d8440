"""Lower each TFLite operator to one call of a tg_kernels.h function, as numbers.

``lower(model)`` checks the model and every operator against what the compiled
runtime (and TFLM's int8 kernel for that op) accepts, computes all parameters
that TFLM computes in Prepare (see :mod:`tinygen.codegen.compiled.quant`), packs
the weights, and returns one :class:`~tinygen.codegen.compiled.ir.Program`: an
:class:`~tinygen.codegen.compiled.ir.OpIR` per operator (or the reason it was
refused). It writes no C: :mod:`.printer` does, from the Program and its memory plan.

All shapes are checked here, so every index the kernels compute stays inside
the buffers by construction.
"""

from __future__ import annotations

import math

import numpy as np

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.packing import MAX_DIMS, acc_bound_packed, broadcast_plan, dw3x3_widened, pack_weights
from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR, Program, Refusal
from tinygen.codegen.compiled.overlap import window_shift
from tinygen.common.errors import UnsupportedModel
from tinygen.tflite.model import Operator, Tensor, TfliteModel

SUPPORTED_OPS = (
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "RESHAPE", "SOFTMAX", "ADD", "MUL", "LOGISTIC", "TANH", "RELU", "RELU6", "PAD", "MEAN",
    "CONCATENATION", "QUANTIZE", "DEQUANTIZE",
)
# Elementwise, activation and reduction ops (lower_elementwise.py; tested in
# tests/test_compiled_ops_elementwise.py).
ELEMENTWISE_OPS = (
    "LEAKY_RELU", "PRELU", "HARD_SWISH", "ABS", "SUB", "SQUARED_DIFFERENCE", "MINIMUM", "MAXIMUM",
    "REDUCE_MAX", "REDUCE_MIN", "SUM",
)
SUPPORTED_OPS += ELEMENTWISE_OPS


class OpRefused(UnsupportedModel):
    """One operator cannot be compiled; ``reason`` is a short phrase."""

    def __init__(self, op: Operator, reason: str):
        super().__init__(f"{op.opcode} (op {op.index}): {reason}")
        self.op = op
        self.reason = reason


# ---- small helpers -----------------------------------------------------------

def _i32(values) -> np.ndarray:
    """int32 array of ``values``; ValueError (a malformed operator) if one does not fit."""
    v = np.asarray([int(x) for x in np.asarray(values).reshape(-1)], dtype=np.int64)
    if v.size and (v.min() < -2**31 or v.max() > 2**31 - 1):
        raise ValueError("a constant does not fit in int32")
    return v.astype(np.int32)


def _fields(*pairs) -> tuple:
    """Params-struct fields with plain Python ints (nested tuples for C arrays)."""
    def norm(v):
        if isinstance(v, (ArrayRef, type(None))):
            return v
        if isinstance(v, (list, tuple, np.ndarray)):
            return tuple(norm(x) for x in v)
        return int(v)
    return tuple((k, norm(v)) for k, v in pairs)


def _pad_dims(values, fill=0):
    vals = list(values)
    return vals + [fill] * (MAX_DIMS - len(vals))


def _size(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


INT32_MAX = 2**31 - 1


def _check_rq(op: Operator, mults, shifts) -> None:
    """The kernels' requantization is free of undefined behaviour only for a multiplier in
    [0, 2^31) and a shift in [-31, 30] (left shifts of at most 30 bits, right shifts of at
    most 31)."""
    for mlt, sh in zip(mults, shifts):
        if not (0 <= int(mlt) <= INT32_MAX and -31 <= int(sh) <= 30):
            raise OpRefused(op, f"requantization multiplier {mlt} / shift {sh} out of the kernels' range")


def _check_index_range(op: Operator, what: str, *factors: int) -> None:
    """Refuse unless the product of ``factors`` (a bound on an index the kernel computes in
    int32) stays below 2^31."""
    prod = 1
    for f in factors:
        prod *= max(int(f), 1)
    if prod > INT32_MAX:
        raise OpRefused(op, f"{what} ({prod}) could overflow the kernel's int32 index arithmetic")


def _need_int8_act(m: TfliteModel, op: Operator, t: Tensor, what: str) -> None:
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


def _int8_io(m: TfliteModel, op: Operator) -> tuple[Tensor, Tensor]:
    """The one activation input and the output of an op, both per-tensor int8; a constant
    input is refused (there is nothing to compute at run time)."""
    x, = _act_inputs(m, op, 1)
    y = m.tensors[op.outputs[0]]
    _need_int8_act(m, op, x, "input")
    _need_int8_act(m, op, y, "output")
    if x.is_constant:
        raise OpRefused(op, "constant input")
    return x, y


def _act_inputs(m: TfliteModel, op: Operator, n: int) -> list[Tensor]:
    if len(op.outputs) != 1:
        raise OpRefused(op, f"{len(op.outputs)} outputs")
    ins = [i for i in op.inputs]
    if len(ins) < n or any(i < 0 for i in ins[:n]):
        raise OpRefused(op, "missing input")
    return [m.tensors[i] for i in ins[:n]]


def _activation(op: Operator) -> str:
    return op.options.get("fusedActivationFunction", "NONE")


def _weights_and_bias(m: TfliteModel, op: Operator, out_c: int, qdim: int):
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


def _out_size(padding: str, in_size: int, k: int, stride: int, dil: int) -> int:
    eff = (k - 1) * dil + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size + stride - eff) // stride
    raise ValueError(padding)


def _pad_amount(in_size: int, k: int, stride: int, dil: int, out: int) -> int:
    eff = (k - 1) * dil + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2


def _spatial(op: Operator, in_h, in_w, k_h, k_w, out_h, out_w, stride_h, stride_w, dil_h, dil_w):
    padding = op.options.get("padding", "SAME")
    if padding not in ("SAME", "VALID"):
        raise OpRefused(op, f"padding {padding}")
    if min(stride_h, stride_w, dil_h, dil_w, k_h, k_w) <= 0:
        raise OpRefused(op, "non-positive stride, dilation or filter size")
    oh = _out_size(padding, in_h, k_h, stride_h, dil_h)
    ow = _out_size(padding, in_w, k_w, stride_w, dil_w)
    if (oh, ow) != (out_h, out_w) or oh <= 0 or ow <= 0:
        raise OpRefused(op, f"output size {out_h}x{out_w} does not match {padding} padding ({oh}x{ow})")
    return _pad_amount(in_h, k_h, stride_h, dil_h, oh), _pad_amount(in_w, k_w, stride_w, dil_w, ow)


def _packed(op: Operator, w2, bias, input_offset: int, groups: int = 1):
    """pack_weights, refused unless every partial sum the kernel forms stays within int32
    (as TFLM's own do). Returns (packed, folded int32 bias, K4, |accumulator| bounds)."""
    packed, folded, k4 = pack_weights(w2, None if bias is None else bias.data, input_offset, groups)
    bound = acc_bound_packed(w2, folded)
    if (bound > INT32_MAX).any():
        raise OpRefused(op, "bias and weights could overflow the int32 accumulator")
    return packed, folded.astype(np.int32), k4, bound


def _requant_data(bounds, mults, shifts, output_offset: int = 0,
                  doubled: bool = False) -> tuple[list[ConstArray], list[tuple[str, object]]]:
    """The multiplier / shift / fast_requant / rq_fused fields and their arrays: the fused
    constants (array "rqf", the output offset folded in) when provably exact, else the
    fast ones (array "rq"), else the multiplier and shift arrays.

    ``bounds`` (per output channel) bound |accumulator|; with one multiplier for
    all channels the largest bound applies."""
    bounds = [int(b) for b in np.asarray(bounds, dtype=np.int64).reshape(-1)]
    if len(mults) == 1:
        bounds = [max(bounds)] if bounds else [0]
    fused = quant.fused_requant_constants(bounds, mults, shifts, output_offset, doubled)
    if fused is not None:
        return ([ConstArray("rqf", _i32(fused))],
                [("multiplier", None), ("shift", None), ("fast_requant", None), ("rq_fused", ArrayRef("rqf"))])
    consts = quant.fast_requant_constants(bounds, mults, shifts)
    if consts is not None:
        return ([ConstArray("rq", _i32(consts))],
                [("multiplier", None), ("shift", None), ("fast_requant", ArrayRef("rq"))])
    return ([ConstArray("mult", _i32(mults)), ConstArray("shift", _i32(shifts))],
            [("multiplier", ArrayRef("mult")), ("shift", ArrayRef("shift")), ("fast_requant", None)])


# ---- FULLY_CONNECTED ---------------------------------------------------------

def _fully_connected(m: TfliteModel, op: Operator) -> OpIR:
    x, y = _int8_io(m, op)
    if op.options.get("weightsFormat", 0) != 0:
        raise OpRefused(op, "shuffled weights format")
    if op.options.get("asymmetricQuantizeInputs", False):
        raise OpRefused(op, "hybrid (asymmetric input) quantization")
    w_t = m.tensors[op.inputs[1]]
    if len(w_t.shape) != 2:
        raise OpRefused(op, f"weights shape {w_t.shape} is not 2-D")
    out_depth, accum = w_t.shape
    w, bias = _weights_and_bias(m, op, out_depth, 0)
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
    _check_rq(op, mults, shifts)
    _check_index_range(op, "output size", batches, out_depth)
    _check_index_range(op, "padded weights", out_depth, accum + 3)
    act_min, act_max = quant.activation_range(_activation(op), s_out, y.zero_point[0])
    packed, folded, k4, bound = _packed(op, np.asarray(w.data).reshape(out_depth, accum), bias, -x.zero_point[0])
    rq_arrays, rq_fields = _requant_data(bound, mults, shifts, y.zero_point[0])
    params = _fields(
        ("batches", batches), ("accum_depth", accum), ("accum_padded", k4), ("output_depth", out_depth),
        ("input_offset", -x.zero_point[0]), ("output_offset", y.zero_point[0]),
        ("act_min", act_min), ("act_max", act_max), ("per_channel", int(per_channel)),
        ("weights", ArrayRef("w")), ("bias", ArrayRef("b")), *rq_fields)
    arrays = (ConstArray("w", packed, align=4), ConstArray("b", folded), *rq_arrays)
    return OpIR(op.index, op.opcode, "tg_fully_connected_s8", (x.index,), y.index, (x.index,), params, arrays,
                macs=batches * accum * out_depth)


# ---- CONV_2D / DEPTHWISE_CONV_2D ---------------------------------------------

def _conv_common(m: TfliteModel, op: Operator, depthwise: bool):
    x, y = _int8_io(m, op)
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
        w, bias = _weights_and_bias(m, op, out_c, 3)
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
        w, bias = _weights_and_bias(m, op, out_c, 0)
    sh, sw = int(op.options.get("strideH", 1)), int(op.options.get("strideW", 1))
    dh, dw = int(op.options.get("dilationHFactor", 1)), int(op.options.get("dilationWFactor", 1))
    pad_h, pad_w = _spatial(op, in_h, in_w, k_h, k_w, out_h, out_w, sh, sw, dh, dw)
    # Row offsets reach (out * stride + pad + dilation * (filter + 2)) whole input rows, and the
    # depthwise DSP path forms dilation * in_w * in_c steps: bound them all.
    ext_h = out_h * sh + pad_h + dh * (k_h + 2) + in_h
    ext_w = out_w * sw + pad_w + dw * (k_w + 2) + in_w
    _check_index_range(op, "input extent rows x columns x channels x batches", ext_h, ext_w, in_c, n)
    _check_index_range(op, "output size", n, out_h, out_w, out_c)
    s_in, s_out = x.scale[0], y.scale[0]
    mults, shifts = quant.conv_channel_multipliers(s_in, w.scale, s_out, out_c)
    _check_rq(op, mults, shifts)
    act_min, act_max = quant.activation_range(_activation(op), s_out, y.zero_point[0])
    return dict(x=x, y=y, w=w, bias=bias, n=n, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h,
                out_w=out_w, out_c=out_c, k_h=k_h, k_w=k_w, filter_in_c=filter_in_c, dm=dm,
                sh=sh, sw=sw, dh=dh, dw=dw, pad_h=pad_h, pad_w=pad_w, mults=mults,
                shifts=shifts, act_min=act_min, act_max=act_max)


def _conv(m: TfliteModel, op: Operator, depthwise: bool) -> OpIR:
    c = _conv_common(m, op, depthwise)
    arrays: list[ConstArray] = []
    bias_ref: ArrayRef | None = ArrayRef("b")
    w16_ref: ArrayRef | None = None
    k4 = 0
    if depthwise:
        arrays.append(ConstArray("w", np.asarray(c["w"].data)))
        # accumulators: bias + sum w * (x + input_offset), x in [-128, 127], over
        # any subset of the taps (padding taps are skipped)
        wd = np.abs(np.asarray(c["w"].data, dtype=np.int64)).reshape(-1, c["out_c"]).sum(axis=0)
        off = -int(c["x"].zero_point[0])
        bd = np.zeros(c["out_c"], dtype=np.int64) if c["bias"] is None else \
            np.abs(np.asarray(c["bias"].data, dtype=np.int64).reshape(-1))
        acc_bound = bd + max(abs(-128 + off), abs(127 + off)) * wd
        if int(acc_bound.max(initial=0)) > INT32_MAX:
            raise OpRefused(op, "bias and weights could overflow the int32 accumulator")
        if c["dm"] <= 8 and c["k_h"] == 3 and c["k_w"] == 3 and c["in_c"] >= 4:
            w16_ref = ArrayRef("w16")
        if c["bias"] is not None:
            arrays.append(ConstArray("b", _i32(c["bias"].data)))
        else:
            bias_ref = None
    else:
        w2 = np.asarray(c["w"].data).reshape(c["out_c"], -1)
        packed, folded, k4, acc_bound = _packed(op, w2, c["bias"], -c["x"].zero_point[0],
                                                c["in_c"] // c["filter_in_c"])
        arrays += [ConstArray("w", packed, align=4), ConstArray("b", folded)]
    per_channel = len(set(zip(c["mults"], c["shifts"]))) > 1
    if per_channel:
        mults, shifts = c["mults"], c["shifts"]
    else:
        mults, shifts = c["mults"][:1], c["shifts"][:1]
    # fast requantization constants replace the multiplier / shift arrays
    # depthwise 3x3 with fused requantization: the widened weights and biases doubled, so
    # the kernel's accumulators arrive doubled and its requantization needs no shift
    rq_arrays, rq_fields = _requant_data(acc_bound, mults, shifts, c["y"].zero_point[0], w16_ref is not None)
    arrays += rq_arrays
    if w16_ref is not None:
        scale = 2 if dict(rq_fields).get("rq_fused") is not None else 1
        arrays.append(ConstArray("w16", _i32(dw3x3_widened(
            c["w"].data, c["out_c"], c["dm"], None if c["bias"] is None else c["bias"].data,
            -int(c["x"].zero_point[0]), scale))))
    x, y = c["x"], c["y"]
    params = _fields(
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
    ov = _overlap(xi, c["n"], c["in_h"], c["in_w"], c["in_c"], c["out_h"], c["out_w"], c["out_c"],
                  c["sh"], c["sw"], c["pad_h"], c["pad_w"])
    if depthwise:
        return OpIR(op.index, op.opcode, "tg_depthwise_conv2d_s8", (xi,), yi, (xi,), params, tuple(arrays),
                    macs=y.size * per_out, overlap=ov)
    return OpIR(op.index, op.opcode, "tg_conv2d_s8", (xi,), yi, (xi,), params, tuple(arrays),
                macs=y.size * per_out, scratch_bytes=4 * k4, overlap=ov)


def _overlap(xi: int, *geometry: int) -> tuple[tuple[int, int], ...]:
    """OpIR.overlap for a windowed kernel (conv, depthwise, pooling): see overlap.py."""
    shift = window_shift(*geometry)
    return () if shift is None else ((xi, shift),)


# ---- pooling -----------------------------------------------------------------

def _pool(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    x, y = _int8_io(m, op)
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
    pad_h, pad_w = _spatial(op, in_h, in_w, k_h, k_w, out_h, out_w, sh, sw, 1, 1)
    _check_index_range(op, "input extent rows x columns x channels x batches",
                       out_h * sh + pad_h + k_h + in_h, out_w * sw + pad_w + k_w + in_w, ch, n)
    # The average pool sums up to (window clipped to the input) int8 values in int32.
    _check_index_range(op, "window sum", 256, min(k_h, in_h), min(k_w, in_w))
    # Every window must overlap the input (else TFLM's average pool fails).
    for o, s, pad, k, size in ((out_h, sh, pad_h, k_h, in_h), (out_w, sw, pad_w, k_w, in_w)):
        for pos in (0, o - 1):
            start = pos * s - pad
            if min(k, size - start) - max(0, -start) <= 0:
                raise OpRefused(op, "a pooling window lies entirely in the padding")
    act_min, act_max = quant.activation_range(_activation(op), y.scale[0], y.zero_point[0])
    params = _fields(
        ("batches", n), ("in_h", in_h), ("in_w", in_w), ("channels", ch),
        ("out_h", out_h), ("out_w", out_w), ("filter_h", k_h), ("filter_w", k_w),
        ("stride_h", sh), ("stride_w", sw), ("pad_h", pad_h), ("pad_w", pad_w),
        ("act_min", act_min), ("act_max", act_max))
    fn = "tg_avg_pool_s8" if kind == "avg" else "tg_max_pool_s8"
    ov = _overlap(x.index, n, in_h, in_w, ch, out_h, out_w, ch, sh, sw, pad_h, pad_w)
    return OpIR(op.index, op.opcode, fn, (x.index,), y.index, (x.index,), params, overlap=ov)


def f32diff(a: float, b: float) -> float:
    return quant.f32(quant.f32(a) - quant.f32(b))


# ---- RESHAPE -------------------------------------------------------------------

def _reshape(m: TfliteModel, op: Operator) -> OpIR:
    x, = _act_inputs(m, op, 1)
    y = m.tensors[op.outputs[0]]
    if x.dtype != "int8" or y.dtype != "int8":
        raise OpRefused(op, f"{x.dtype} -> {y.dtype}; only int8 tensors are supported")
    if x.size != y.size:
        raise OpRefused(op, f"{x.shape} -> {y.shape} changes the number of values")
    xi, yi = x.index, y.index
    params = _fields(("size", y.size))
    if x.is_constant:
        return OpIR(op.index, op.opcode, "tg_copy_s8", (xi,), yi, (), params, const_inputs=(xi,))
    return OpIR(op.index, op.opcode, "tg_copy_s8", (xi,), yi, (xi,), params, alias=xi)


# ---- SOFTMAX -------------------------------------------------------------------

def _softmax(m: TfliteModel, op: Operator) -> OpIR:
    x, y = _int8_io(m, op)
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
    _check_rq(op, [mult], [shift])
    params = _fields(("outer", outer), ("depth", depth), ("input_multiplier", mult),
                     ("input_left_shift", shift), ("diff_min", diff_min))
    xi, yi = x.index, y.index
    return OpIR(op.index, op.opcode, "tg_softmax_s8", (xi,), yi, (xi,), params, inplace=(xi,))


# ---- LOGISTIC / TANH -------------------------------------------------------------

def _sigmoid(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    x, y = _int8_io(m, op)
    if x.size != y.size:
        raise OpRefused(op, "input and output sizes differ")
    if kind == "logistic" and y.zero_point[0] != -128:
        raise OpRefused(op, "int8 logistic output must have zero point -128 (TFLM rejects it)")
    mult, shift, radius = quant.sigmoid_params(x.scale[0])
    _check_rq(op, [mult], [shift])
    params = _fields(("size", x.size), ("input_zero_point", x.zero_point[0]), ("input_range_radius", radius),
                     ("input_multiplier", mult), ("input_left_shift", shift))
    fn = "tg_logistic_s8" if kind == "logistic" else "tg_tanh_s8"
    xi, yi = x.index, y.index
    return OpIR(op.index, op.opcode, fn, (xi,), yi, (xi,), params, inplace=(xi,))


# ---- ADD / MUL -----------------------------------------------------------------

def _binary(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    a, b = _act_inputs(m, op, 2)
    y = m.tensors[op.outputs[0]]
    for t, what in ((a, "first input"), (b, "second input"), (y, "output")):
        _need_int8_act(m, op, t, what)
    try:
        bc = broadcast_plan(a.shape, b.shape, y.shape)
    except ValueError as exc:
        raise OpRefused(op, str(exc)) from None
    act_min, act_max = quant.activation_range(_activation(op), y.scale[0], y.zero_point[0])
    if bc is None:  # {rank, out_dims, a_strides, b_strides}; rank 0: same shapes
        bfields = ("bcast", (0, (0,), (0,), (0,)))
    else:
        rank, out, sa, sb = bc
        bfields = ("bcast", (rank, tuple(_pad_dims(out, 1)), tuple(_pad_dims(sa)), tuple(_pad_dims(sb))))
    common = [("size", y.size), bfields, ("input1_offset", -a.zero_point[0]),
              ("input2_offset", -b.zero_point[0]), ("output_offset", y.zero_point[0])]
    if kind == "add":
        q = quant.add_params(a.scale[0], b.scale[0], y.scale[0])
        fields = common + [(k, q[k]) for k in (
            "left_shift", "input1_multiplier", "input1_shift", "input2_multiplier", "input2_shift",
            "output_multiplier", "output_shift")]
        fn = "tg_add_s8"
        fused = quant.add_fused_constants(-a.zero_point[0], -b.zero_point[0], q["left_shift"],
                                          (q["input1_multiplier"], q["input1_shift"]),
                                          (q["input2_multiplier"], q["input2_shift"]),
                                          (q["output_multiplier"], q["output_shift"]), y.zero_point[0])
        arrays = (ConstArray("rqf", _i32(fused)),) if fused is not None else ()
    else:
        mm, ss = quant.quantize_multiplier(float(a.scale[0]) * float(b.scale[0]) / float(y.scale[0]))
        fields = common + [("output_multiplier", mm), ("output_shift", ss)]
        fn = "tg_mul_s8"
        arrays = ()
    fields += [("act_min", act_min), ("act_max", act_max)]
    if kind == "add":
        fields.append(("rq_fused", ArrayRef("rqf") if arrays else None))
    got = dict(fields)
    heads = [k[:-len("_multiplier")] for k in got if k.endswith("_multiplier")]
    _check_rq(op, [got[h + "_multiplier"] for h in heads], [got[h + "_shift"] for h in heads])
    reads = tuple(t.index for t in (a, b) if not t.is_constant)
    consts = tuple(t.index for t in (a, b) if t.is_constant)
    inplace = tuple(t.index for t in (a, b) if not t.is_constant and t.size == y.size)
    return OpIR(op.index, op.opcode, fn, (a.index, b.index), y.index, reads, _fields(*fields),
                arrays=arrays, const_inputs=consts, inplace=inplace)


# ---- RELU / RELU6 / QUANTIZE ---------------------------------------------------------

def _unary_checks(m: TfliteModel, op: Operator):
    x, y = _int8_io(m, op)
    if x.size != y.size:
        raise OpRefused(op, "input and output sizes differ")
    return x, y


def _relu(m: TfliteModel, op: Operator) -> OpIR:
    x, y = _unary_checks(m, op)
    # CalculateReluOpData: the scale ratio is a float32 division; the lower
    # bound is the output zero point (roundf(0 / scale) == 0).
    mult, shift = quant.quantize_multiplier(quant.f32(quant.f32(x.scale[0]) / quant.f32(y.scale[0])))
    act_min = max(-128, y.zero_point[0])
    return _requant_step(op, x, y, mult, shift, act_min, 127)


def _quantize(m: TfliteModel, op: Operator) -> OpIR:
    x, = _act_inputs(m, op, 1)
    if x.dtype != "int8":
        raise OpRefused(op, f"input is {x.dtype}; only int8 -> int8 requantization is supported")
    x, y = _unary_checks(m, op)
    mult, shift = quant.quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
    return _requant_step(op, x, y, mult, shift, -128, 127)


def _requant_step(op, x, y, mult, shift, act_min, act_max) -> OpIR:
    _check_rq(op, [mult], [shift])
    params = _fields(
        ("size", x.size), ("input_zero_point", x.zero_point[0]), ("output_zero_point", y.zero_point[0]),
        ("multiplier", mult), ("shift", shift), ("act_min", act_min), ("act_max", act_max))
    xi, yi = x.index, y.index
    return OpIR(op.index, op.opcode, "tg_requantize_s8", (xi,), yi, (xi,), params, inplace=(xi,))


def _relu6(m: TfliteModel, op: Operator) -> OpIR:
    x, y = _unary_checks(m, op)
    zp = x.zero_point[0]
    six = quant.round_half_away(quant.f32(quant.f32(6.0) / quant.f32(x.scale[0]))) + zp
    six = max(-128, min(127, six))
    xi, yi = x.index, y.index
    params = _fields(("size", x.size), ("lo", zp), ("hi", six))
    return OpIR(op.index, op.opcode, "tg_clamp_s8", (xi,), yi, (xi,), params, inplace=(xi,))


# ---- PAD ------------------------------------------------------------------------------

def _pad(m: TfliteModel, op: Operator) -> OpIR:
    if len(op.inputs) != 2:
        raise OpRefused(op, "PAD with a constant-value input (PADV2 form)")
    x, y = _int8_io(m, op)
    pads = m.tensors[op.inputs[1]]
    if not pads.is_constant or pads.dtype != "int32":
        raise OpRefused(op, "paddings must be a constant int32 tensor")
    rank = len(x.shape)
    if rank == 0 or rank > 5 or len(y.shape) != rank or pads.size != 2 * rank:
        raise OpRefused(op, f"unsupported rank {rank}")
    pv = np.asarray(pads.data).reshape(rank, 2)
    if (pv < 0).any():
        raise OpRefused(op, "negative padding")
    # Python ints: an int32 sum of hostile paddings could wrap around to the right shape.
    want = tuple(int(x.shape[i]) + int(pv[i, 0]) + int(pv[i, 1]) for i in range(rank))
    if want != tuple(y.shape):
        raise OpRefused(op, f"output shape {y.shape} is not input {x.shape} plus paddings")
    params = _fields(
        ("rank", rank), ("in_dims", _pad_dims(x.shape, 1)), ("out_dims", _pad_dims(y.shape, 1)),
        ("before", _pad_dims([int(v) for v in pv[:, 0]])), ("out_size", y.size),
        ("pad_value", y.zero_point[0]))
    return OpIR(op.index, op.opcode, "tg_pad_s8", (x.index,), y.index, (x.index,), params)


# ---- MEAN -------------------------------------------------------------------------------

def _reduction(m: TfliteModel, op: Operator):
    """Input, output and the kept / reduced geometry of tg_mean_params_t: MEAN, SUM, REDUCE_MAX/MIN."""
    x, y = _int8_io(m, op)
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
    if _size(y.shape) != _size(want):
        raise OpRefused(op, f"output shape {y.shape} does not match the reduction {want}")
    strides = [1] * rank
    for d in range(rank - 2, -1, -1):
        strides[d] = strides[d + 1] * x.shape[d + 1]
    red = sorted(axes)
    num = int(np.prod([x.shape[d] for d in red])) if red else 1
    _check_index_range(op, "reduced values x 256", num, 256)
    geometry = [
        ("kept_rank", len(kept)), ("kept_dims", _pad_dims([x.shape[d] for d in kept], 1)),
        ("kept_strides", _pad_dims([strides[d] for d in kept])),
        ("red_rank", len(red)), ("red_dims", _pad_dims([x.shape[d] for d in red], 1)),
        ("red_strides", _pad_dims([strides[d] for d in red])), ("num_reduced", num)]
    return x, y, geometry


def _mean(m: TfliteModel, op: Operator) -> OpIR:
    x, y, geometry = _reduction(m, op)
    # The kernel sums num int8 values in int32, then subtracts zero_point * num.
    num = dict(geometry)["num_reduced"]
    mult, shift = quant.mean_multiplier(x.scale[0], y.scale[0], num)
    _check_rq(op, [mult], [shift])
    params = _fields(*geometry, ("input_zero_point", x.zero_point[0]), ("output_zero_point", y.zero_point[0]),
                     ("multiplier", mult), ("shift", shift))
    return OpIR(op.index, op.opcode, "tg_mean_s8", (x.index,), y.index, (x.index,), params)


# ---- CONCATENATION ----------------------------------------------------------------------

def _concat(m: TfliteModel, op: Operator) -> OpIR:
    if len(op.outputs) != 1 or not op.inputs or any(i < 0 for i in op.inputs):
        raise OpRefused(op, "bad inputs/outputs")
    ins = [m.tensors[i] for i in op.inputs]
    y = m.tensors[op.outputs[0]]
    _need_int8_act(m, op, y, "output")
    if _activation(op) != "NONE":
        raise OpRefused(op, "fused activation on CONCATENATION")
    rank = len(y.shape)
    axis = int(op.options.get("axis", 0))
    axis += rank if axis < 0 else 0
    if not 0 <= axis < rank:
        raise OpRefused(op, f"axis {axis} out of range")
    total = 0
    for t in ins:
        _need_int8_act(m, op, t, "input")
        if t.scale[0] != y.scale[0] or t.zero_point[0] != y.zero_point[0]:
            raise OpRefused(op, "inputs need the output's scale and zero point (TFLM rejects it)")
        if len(t.shape) != rank or any(t.shape[d] != y.shape[d] for d in range(rank) if d != axis):
            raise OpRefused(op, f"input shape {t.shape} does not fit output {y.shape} along axis {axis}")
        total += t.shape[axis]
    if total != y.shape[axis]:
        raise OpRefused(op, "input sizes along the axis do not add up to the output")
    outer = int(np.prod(y.shape[:axis])) if axis else 1
    inner = [int(np.prod(t.shape[axis:])) for t in ins]
    reads = tuple(dict.fromkeys(t.index for t in ins if not t.is_constant))
    consts = tuple(dict.fromkeys(t.index for t in ins if t.is_constant))
    return OpIR(op.index, op.opcode, "tg_concat_s8", tuple(t.index for t in ins), y.index, reads,
                _fields(("outer", outer), ("count", len(ins)), ("inner", ArrayRef("inner"))),
                (ConstArray("inner", _i32(inner)),), const_inputs=consts)


def _dequantize(m: TfliteModel, op: Operator) -> OpIR:
    y = m.tensors[op.outputs[0]] if op.outputs else None
    raise OpRefused(op, f"output is {y.dtype if y is not None else '?'}; the compiled runtime computes int8 only")


_LOWER = {
    "FULLY_CONNECTED": _fully_connected,
    "CONV_2D": lambda m, op: _conv(m, op, False),
    "DEPTHWISE_CONV_2D": lambda m, op: _conv(m, op, True),
    "AVERAGE_POOL_2D": lambda m, op: _pool(m, op, "avg"),
    "MAX_POOL_2D": lambda m, op: _pool(m, op, "max"),
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
    "ADD": lambda m, op: _binary(m, op, "add"),
    "MUL": lambda m, op: _binary(m, op, "mul"),
    "LOGISTIC": lambda m, op: _sigmoid(m, op, "logistic"),
    "TANH": lambda m, op: _sigmoid(m, op, "tanh"),
    "RELU": _relu,
    "RELU6": _relu6,
    "PAD": _pad,
    "MEAN": _mean,
    "CONCATENATION": _concat,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
}


# Elementwise, activation and reduction ops. lower_elementwise builds on this module's
# helpers, so it is imported when first used rather than at the top (no import cycle).
def _ew():
    from tinygen.codegen.compiled import lower_elementwise

    return lower_elementwise


_LOWER.update({
    "LEAKY_RELU": lambda m, op: _ew().leaky_relu(m, op),
    "PRELU": lambda m, op: _ew().prelu(m, op),
    "HARD_SWISH": lambda m, op: _ew().hard_swish(m, op),
    "ABS": lambda m, op: _ew().abs_(m, op),
    "SUB": lambda m, op: _ew().sub(m, op),
    "SQUARED_DIFFERENCE": lambda m, op: _ew().squared_difference(m, op),
    "MINIMUM": lambda m, op: _ew().minmax(m, op, "minimum"),
    "MAXIMUM": lambda m, op: _ew().minmax(m, op, "maximum"),
    "REDUCE_MAX": lambda m, op: _ew().reduce_minmax(m, op, "max"),
    "REDUCE_MIN": lambda m, op: _ew().reduce_minmax(m, op, "min"),
    "SUM": lambda m, op: _ew().sum_(m, op),
})


def lower_op(m: TfliteModel, op: Operator) -> OpIR:
    """One operator as an OpIR, or OpRefused saying why the compiled runtime cannot run it."""
    fn = _LOWER.get(op.opcode)
    if fn is None:
        raise OpRefused(op, "no compiled kernel")
    try:
        return fn(m, op)
    except OpRefused:
        raise
    except UnsupportedModel as exc:  # a parameter TFLM's Prepare would also reject
        raise OpRefused(op, str(exc)) from None
    except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise OpRefused(op, f"malformed operator ({type(exc).__name__}: {exc})") from None


# ---- shape and spatial ops: lowered in lower_shape.py, which builds on this module's helpers
# and is imported on first use (no import cycle). An op with several outputs (SPLIT, UNPACK)
# lowers to a tuple of OpIRs, one kernel call each.
SHAPE_OPS = ("TRANSPOSE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "UNPACK", "PACK",
             "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "TRANSPOSE_CONV")
SUPPORTED_OPS += SHAPE_OPS


def _shape_op(name: str):
    def run(m: TfliteModel, op: Operator):
        from tinygen.codegen.compiled import lower_shape

        return lower_shape.LOWER[name](m, op)
    return run


_LOWER.update({name: _shape_op(name) for name in SHAPE_OPS})


def model_problems(model: TfliteModel) -> list[str]:
    """Whole-model reasons the compiled runtime cannot take the model."""
    problems = []
    if len(model.inputs) != 1:
        problems.append(f"{len(model.inputs)} inputs (needs exactly one)")
    if len(model.outputs) != 1:
        problems.append(f"{len(model.outputs)} outputs (needs exactly one)")
    if not model.operators:
        problems.append("no operators")
    if problems:
        return problems
    for what, t in (("input", model.input_tensor()), ("output", model.output_tensor())):
        if t.dtype != "int8":
            problems.append(f"model {what} is {t.dtype} (needs int8)")
        elif len(t.scale) != 1 or len(t.zero_point) != 1:
            problems.append(f"model {what} is not per-tensor quantized")
    if model.inputs[0] == model.outputs[0]:
        problems.append("the model output is its input")
    written: set[int] = set()
    for op in model.operators:
        for t in op.outputs:
            if t == model.inputs[0] or model.tensors[t].is_constant or t in written:
                problems.append(f"op {op.index} ({op.opcode}) writes tensor {t} that is an input, "
                                "a constant, or written twice")
            written.add(t)
    if model.outputs[0] not in written:
        problems.append("the model output is not computed by any operator")
    # Only the model input and the outputs of earlier ops exist when an op runs.
    available = {model.inputs[0]}
    for op in model.operators:
        for t in op.inputs:
            if t >= 0 and not model.tensors[t].is_constant and t not in available:
                problems.append(f"op {op.index} ({op.opcode}) reads tensor {t} before it is computed")
        available |= set(op.outputs)
    return problems


def lower(m: TfliteModel) -> Program:
    """The model as one Program; every operator is lowered exactly once, here."""
    ops: list[OpIR] = []
    refusals: list[Refusal] = []
    for op in m.operators:
        try:
            got = lower_op(m, op)
            ops.extend(got if isinstance(got, tuple) else (got,))
        except OpRefused as exc:
            refusals.append(Refusal(op.index, op.opcode, exc.reason))
    return Program(m.sha256, tuple(m.tensors), tuple(m.inputs), tuple(m.outputs), tuple(ops),
                   tuple(model_problems(m)), tuple(refusals))
