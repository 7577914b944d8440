"""Quantization parameters exactly as TFLM's int8 kernels compute them in Prepare.

TFLM computes multipliers, shifts, activation ranges and input radii with
float/double arithmetic once, in each kernel's Prepare.  The compiled runtime
does that here, in Python, reproducing every float32 / float64 step so that the
integers are identical:

* scales in a .tflite are float32; Python floats hold them exactly;
* ``f32(...)`` rounds an intermediate to float32 where the C++ code computes
  in ``float`` (for example ``input->params.scale * filter->params.scale``);
* ``std::round`` rounds half away from zero (:func:`round_half_away`).

The integer kernels use the "double rounding" MultiplyByQuantizedMultiplier
(gemmlowp SaturatingRoundingDoublingHighMul + RoundingDivideByPOT), which is
what the tflite_micro wheel is built with (TFLITE_SINGLE_ROUNDING unset);
tests/compiled/test_ops_conv.py checks that against the interpreter.
"""

from __future__ import annotations

import math

import numpy as np

from tinygen.common.errors import UnsupportedModel

INT8_MIN, INT8_MAX = -128, 127


def f32(x: float) -> float:
    """Round a Python float to float32 (as a C++ ``float`` intermediate)."""
    return float(np.float32(x))


def round_half_away(x: float) -> int:
    """std::round / roundf: nearest integer, halves away from zero."""
    if x >= 0:
        r = math.floor(x)
        return int(r + 1) if x - r >= 0.5 else int(r)
    return -round_half_away(-x)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier (double-rounding build): (multiplier, shift).

    ``m ~= multiplier * 2^(shift - 31)``; shift > 0 means a left shift.
    """
    if m == 0.0:
        return 0, 0
    if not math.isfinite(m) or m < 0:
        raise UnsupportedModel(f"quantization multiplier {m!r} is not a finite non-negative number")
    q, shift = math.frexp(m)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed > (1 << 31):
        raise UnsupportedModel(f"quantization multiplier {m!r} cannot be represented")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    if shift > 30:
        # The double-rounding kernels would shift a 32-bit value left by more
        # than 30 bits; no sane int8 model gets here.
        raise UnsupportedModel(f"quantization multiplier {m!r} is too large (shift {shift})")
    return int(q_fixed), int(shift)


def quantize_float(value: float, scale: float, zero_point: int) -> int:
    """kernel_util.cc Quantize(): zero_point + (int)roundf(value / scale) in float32."""
    tmp = round_half_away(f32(f32(value) / f32(scale)))
    return zero_point + tmp


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output."""
    qmin, qmax = INT8_MIN, INT8_MAX
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize_float(0.0, scale, zero_point)), qmax
    if activation == "RELU6":
        return (max(qmin, quantize_float(0.0, scale, zero_point)),
                min(qmax, quantize_float(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(qmin, quantize_float(-1.0, scale, zero_point)),
                min(qmax, quantize_float(1.0, scale, zero_point)))
    raise UnsupportedModel(f"fused activation {activation} has no int8 kernel")


def conv_channel_multipliers(input_scale: float, filter_scales, output_scale: float,
                             channels: int) -> tuple[list[int], list[int]]:
    """PopulateConvolutionQuantizationParams: per-channel, in double."""
    mults, shifts = [], []
    for c in range(channels):
        fs = filter_scales[c] if len(filter_scales) > 1 else filter_scales[0]
        m, s = quantize_multiplier(float(input_scale) * float(fs) / float(output_scale))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def fc_per_tensor_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """GetQuantizedConvolutionMultipler: the scale product is a float32."""
    return quantize_multiplier(f32(input_scale * filter_scale) / float(output_scale))


def input_radius(integer_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    """CalculateInputRadius (non-emulated float path)."""
    if left_shift < 0:
        raise UnsupportedModel(f"input left shift {left_shift} is negative; scale is out of range")
    v = ((1 << integer_bits) - 1) * (1 << (total_signed_bits - integer_bits)) / (1 << left_shift)
    return int(math.floor(v))


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) for int8 SOFTMAX."""
    integer_bits = 5
    real = min(float(beta) * float(input_scale) * float(1 << (31 - integer_bits)), float((1 << 31) - 1))
    if real <= 1.0:
        raise UnsupportedModel(f"softmax input scale {input_scale} x beta {beta} is too small")
    mult, shift = quantize_multiplier(real)
    diff_min = -input_radius(integer_bits, shift)
    return mult, shift, diff_min


def sigmoid_params(input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, input_range_radius) for int8 LOGISTIC/TANH."""
    integer_bits = 4
    real = float(input_scale) * float(1 << (31 - integer_bits))
    q, shift = math.frexp(real)
    mult = round_half_away(q * (1 << 31))
    if mult >= (1 << 31) or shift < 0 or shift > 30:
        raise UnsupportedModel(f"logistic/tanh input scale {input_scale} is out of the supported range")
    return mult, shift, input_radius(integer_bits, shift)


def add_params(s1: float, s2: float, so: float) -> dict:
    """CalculateOpDataAdd for int8 (left_shift 20)."""
    left_shift = 20
    twice_max = 2.0 * float(max(f32(s1), f32(s2)))
    r1 = float(s1) / twice_max
    r2 = float(s2) / twice_max
    ro = twice_max / (float(1 << left_shift) * float(so))
    out = {"left_shift": left_shift}
    for key, r in (("input1", r1), ("input2", r2), ("output", ro)):
        if not 0.0 < r < 1.0:
            raise UnsupportedModel(f"ADD rescale factor {r} is out of range (scales {s1}, {s2} -> {so})")
        m, s = quantize_multiplier(r)
        if s > 0:
            raise UnsupportedModel(f"ADD rescale factor {r} is out of range")
        out[key + "_multiplier"] = m
        out[key + "_shift"] = s
    return out


def mean_multiplier(input_scale: float, output_scale: float, num_elements: int) -> tuple[int, int]:
    """QuantizedMeanOrSum: QuantizeMultiplier(in/out) then the division by the count."""
    mult, shift = quantize_multiplier(float(input_scale) / float(output_scale))
    if num_elements <= 0:
        raise UnsupportedModel("MEAN over an empty axis")
    s = num_elements.bit_length() - 1  # 63 - clz64(num)
    s = min(s, 32)
    s = min(s, 31 + shift)  # >= 0: QuantizeMultiplier never returns a shift below -31
    mult = (mult << s) // num_elements  # C++ int64 division; both operands non-negative
    if mult > (1 << 31) - 1:
        raise UnsupportedModel("MEAN multiplier out of range")
    return int(mult), int(shift - s)


def fast_requant_constants(bounds, mults, shifts) -> list[int] | None:
    """Constants of the kernels' fast requantization (see tg_kernels.h), or None.

    ``bounds[i]`` bounds |accumulator| of every value channel i (or, per-tensor,
    every channel) can produce. Per channel: multiplier, (left + 1) | (right << 8),
    rounding term 2^(right - 1) (0 if right == 0). SMMULR on ``acc << (left + 1)``
    equals the double-rounding SaturatingRoundingDoublingHighMul(acc << left,
    multiplier) only when that shift cannot overflow int32, i.e. bound * 2^(left + 1) < 2^31; if any
    channel fails that, None (the kernels' generic path)."""
    out: list[int] = []
    for b, m, s in zip(bounds, mults, shifts):
        left, right = max(int(s), 0), max(-int(s), 0)
        if not (0 <= int(m) < 2**31) or right > 31:
            return None
        if int(b) * (1 << (left + 1)) > 2**31 - 1:
            return None
        out += [int(m), (left + 1) | (right << 8), (1 << (right - 1)) if right else 0]
    return out


def fused_requant_constants(bounds, mults, shifts, output_offset: int, doubled: bool = False) -> list[int] | None:
    """Per-channel constants of the kernels' fused requantization (tg_fixedpoint.h,
    tg_rq_fused), or None where it is not provably exact for every channel.

    Per channel 4 int32, in the order the inner loop loads them with one LDM:
    multiplier m, left + 1, c = 2^(right - 1) + output_offset * 2^right, right. The
    kernel computes (SMMLAR(acc << (left + 1), m, c + (acc < 0 ? -1 : 0))) >> right,
    which equals RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc << left, m),
    right) + output_offset when (checked here, with |acc| <= bound):
      * |acc| * 2^(left + 1) < 2^31: the doubling is exact, and SMMULR of the doubled
        value is the doubling high multiply (no INT32_MIN * INT32_MIN: m > 0);
      * 2^30 < m < 2^31: then the high product h is negative exactly when acc is, so
        acc's sign bit is RoundingDivideByPOT's "round half away from zero" correction;
      * right >= 1 (shift <= -1): RoundingDivideByPOT is then floor((h + 2^(right - 1)
        - [h < 0]) / 2^right), and the offset times 2^right folds into that sum;
      * |h| + |c| + 1 < 2^31: the sum SMMLAR forms does not overflow.
    ``doubled``: the kernel hands over 2 * acc (depthwise 3x3: weights and biases doubled at
    code-generation time, exact by the first condition), so the second word is left, not
    left + 1, and the loop saves its shift."""
    out: list[int] = []
    for b, m, s in zip(bounds, mults, shifts):
        m, s, b = int(m), int(s), int(b)
        left, right = max(s, 0), max(-s, 0)
        if not (1 << 30) < m < (1 << 31) or not 1 <= right <= 30:
            return None
        x = b << (left + 1)
        if x > (1 << 31) - 1:
            return None
        h = (x * m + (1 << 31)) >> 32  # |h| for the largest |acc|, rounded up by at most 1
        c = (1 << (right - 1)) + int(output_offset) * (1 << right)
        if h + 1 + abs(c) + 1 > (1 << 31) - 1:
            return None
        out += [m, left + (0 if doubled else 1), c, right]
    return out


def multiply_by_quantized_multiplier(x: int, m: int, shift: int) -> int:
    """TFLM's MultiplyByQuantizedMultiplier (double rounding), in Python integers: the
    reference the ADD constants below are bounded with."""
    a = x << max(shift, 0)
    right = max(-shift, 0)
    if a == m == -(1 << 31):
        high = (1 << 31) - 1
    else:
        t = a * m + ((1 << 30) if a * m >= 0 else 1 - (1 << 30))
        high = (abs(t) >> 31) * (1 if t >= 0 else -1)  # C's division truncates toward zero
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if (high & mask) > threshold else 0)


def _fused_eval(acc: int, k) -> int | None:
    """tg_rq_fused on the int32 the C code holds; None where a step would leave int32."""
    m, lp1, c, right = k
    lim = 1 << 31
    x = acc << lp1
    if not -lim <= x < lim:
        return None
    v = c + (-1 if acc < 0 else 0) + ((x * m + lim) >> 32)
    return v >> right if -lim <= v < lim else None


def add_fused_constants(offset1: int, offset2: int, left_shift: int, q1, q2, qo,
                        output_offset: int) -> list[int] | None:
    """ADD's three requantizations (each input onto the common scale, then the sum onto the
    output's) as 3 x 4 fused constants (tg_rq_fused), or None where one is not provably exact.

    An input's "accumulator" is (x + offset) << left_shift for the 256 int8 values x, so the
    constants are checked against TFLM's arithmetic for every one of them (a complete proof).
    The input with the larger scale always has the multiplier 0.5 (m = 2^30, shift 0), which
    the general proof excludes; its accumulator is even, so the rescale is exactly acc / 2 =
    (2^0 + [acc < 0] - [acc < 0] + (acc << 2) * 2^30 / 2^32) >> 1, i.e. constants
    (2^30, 2, 1, 1) -- checked like the rest. The sum's bound is the largest
    |rescaled a| + |rescaled b|, and fused_requant_constants' proof covers every sum."""
    out: list[int] = []
    rescaled = []
    for off, (m, sh) in ((offset1, q1), (offset2, q2)):
        m, sh = int(m), int(sh)
        accs = [(x + int(off)) << left_shift for x in range(-128, 128)]
        want = [multiply_by_quantized_multiplier(a, m, sh) for a in accs]
        candidates = [fused_requant_constants([max(abs(a) for a in accs)], [m], [sh], 0)]
        if m == 1 << 30:
            candidates.append([m, max(sh, 0) + 2, 1 << max(-sh, 0), max(-sh, 0) + 1])
        k = next((k for k in candidates if k is not None and [_fused_eval(a, k) for a in accs] == want), None)
        if k is None:
            return None
        out += k
        rescaled.append(max(abs(v) for v in want))
    k = fused_requant_constants([rescaled[0] + rescaled[1]], [qo[0]], [qo[1]], output_offset)
    return None if k is None else out + k
