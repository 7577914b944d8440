/*
 * tg_fixedpoint.h -- internal to the kernels: the integer arithmetic every
 * kernel shares, bit-exact with gemmlowp / TensorFlow Lite Micro.
 *
 * The primitives are always inlined here so that the hot loops of every kernel
 * file compile as if the kernels were one file; tg_fixedpoint.c links them as
 * tg_sat_rounding_doubling_high_mul & co. (tg_kernels.h) for tests and for the
 * ops outside the hot loops.
 */
#ifndef TG_FIXEDPOINT_H
#define TG_FIXEDPOINT_H

#include <stdint.h>

#include "tg_dsp.h"

#define TG_INT32_MIN_ ((int32_t)(-2147483647 - 1))
#define TG_INT32_MAX_ ((int32_t)2147483647)

static inline int32_t tg_min32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t tg_max32(int32_t a, int32_t b) { return a > b ? a : b; }

static inline int8_t tg_clamp_to_s8(int32_t v, int32_t lo, int32_t hi)
{
    v = tg_max32(v, lo);
    v = tg_min32(v, hi);
    return (int8_t)v;
}

/* x * 2^n with two's-complement wrap-around, n in [0, 31]. */
static inline int32_t tg_shl32(int32_t x, int32_t n) { return (int32_t)((uint32_t)x << n); }

/* gemmlowp SaturatingRoundingDoublingHighMul. */
TG_INLINE int32_t tg_sat_rounding_doubling_high_mul_inline(int32_t a, int32_t b)
{
    int64_t ab;
    if (a == TG_INT32_MIN_ && b == TG_INT32_MIN_) {
        return TG_INT32_MAX_;
    }
    ab = (int64_t)a * (int64_t)b;
    /* gemmlowp adds a nudge of 2^30 (ab >= 0) or 1 - 2^30 (ab < 0) and divides by
     * 2^31 truncating toward zero. For ab < 0 that truncation is a ceiling, and
     * ceil((ab + 1 - 2^30) / 2^31) == floor((ab + 2^30) / 2^31), so both cases are
     * one arithmetic shift: the same integer, without a 64-bit division. */
    return (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero,
 * 0 <= exponent <= 31. */
TG_INLINE int32_t tg_rounding_divide_by_pot_inline(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier; shift > 0 is a left shift. */
TG_INLINE int32_t tg_multiply_by_quantized_multiplier_inline(int32_t x, int32_t multiplier, int32_t shift)
{
#ifdef TG_SINGLE_ROUNDING
    const int32_t total_shift = 31 - shift;
    const int64_t round = (int64_t)1 << (total_shift - 1);
    return (int32_t)(((int64_t)x * (int64_t)multiplier + round) >> total_shift);
#else
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return tg_rounding_divide_by_pot_inline(tg_sat_rounding_doubling_high_mul_inline(tg_shl32(x, left), multiplier),
                                            right);
#endif
}

/* ---- requantizing int32 accumulators to int8 --------------------------------- */

/* One value: MultiplyByQuantizedMultiplier (double rounding) with the shift
 * already split into left / right and mask = 2^right - 1, then the output
 * offset and the activation clamp. The multiplier is >= 0 (all tinygen emits), so
 * the one saturating case of SaturatingRoundingDoublingHighMul (both operands
 * INT32_MIN) cannot occur. */
TG_INLINE int8_t tg_requantize_value(int32_t x, int32_t m, int32_t left, int32_t right, int32_t mask,
                                     int32_t out_offset, int32_t lo, int32_t hi)
{
    const int64_t ab = (int64_t)tg_shl32(x, left) * (int64_t)m;
    const int32_t high = (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
    const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    const int32_t v = (high >> right) + ((high & mask) > threshold ? 1 : 0);
    return tg_clamp_to_s8(v + out_offset, lo, hi);
}

/* SMMULR: (a * b + 2^31) >> 32, the high word of the product rounded. */
#if TG_HW_DSP && defined(__GNUC__)
TG_INLINE int32_t tg_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
TG_INLINE int32_t tg_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 31)) >> 32);
}
#endif

/* The same requantization from the fast constants (tg_kernels.h, fast_requant):
 * m, left_plus_one = left + 1, right, half = right ? 2^(right - 1) : 0, and
 * neg_adjust = half ? -1 : 0. tinygen emits them only where
 * |acc| * 2^left_plus_one < 2^31 for every accumulator value that can occur; then
 * SMMULR(acc << left_plus_one, m) == SaturatingRoundingDoublingHighMul(acc << left, m)
 * exactly, |h| < 2^30, and (h + half + (h < 0 ? neg_adjust : 0)) >> right is
 * RoundingDivideByPOT(h, right) (round half away from zero) without overflow. */
TG_INLINE int8_t tg_requantize_value_fast(int32_t x, int32_t m, int32_t left_plus_one, int32_t right, int32_t half,
                                          int32_t neg_adjust, int32_t out_offset, int32_t lo, int32_t hi)
{
    const int32_t h = tg_smmulr(tg_shl32(x, left_plus_one), m);
    const int32_t v = (h + half + ((h >> 31) & neg_adjust)) >> right;
    return tg_clamp_to_s8(v + out_offset, lo, hi);
}

/* ---- fused requantization (tg_kernels.h, rq_fused) -----------------------------
 * Per channel {m, left + 1, c, right} with c = 2^(right - 1) + output_offset * 2^right,
 * emitted by tinygen (quant.fused_requant_constants) only where it proved, for every
 * accumulator the layer can produce, that
 *     (SMMLAR(acc << (left + 1), m, c + (acc < 0 ? -1 : 0))) >> right
 * equals MultiplyByQuantizedMultiplier(acc, m, -right) + output_offset (double rounding)
 * -- the proof is in that function's docstring; tests/compiled/test_requant_identity.py checks
 * it against a plain transcription of TFLM's reference over random and edge values.
 * That is 6 instructions per value with the constants in registers (LSL, ADD with
 * ASR #31, SMMLAR, ASR, SSAT, STRB), against ~35 for the generic form.
 * Ideas: CMSIS-NN's arm_nn_requantize (SMMULR-style doubling high multiply) and
 * TinyEngine's per-channel constants computed at code-generation time; folding the
 * output offset and RoundingDivideByPOT's sign correction into SMMLAR's accumulator
 * is tinygen's. */

/* SMMLAR: a + ((x * m + 2^31) >> 32), from the exact 64-bit product. */
#if TG_HW_DSP && defined(__GNUC__)
TG_INLINE int32_t tg_smmlar(int32_t x, int32_t m, int32_t a)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(x), "r"(m), "r"(a));
    return r;
}
#else
TG_INLINE int32_t tg_smmlar(int32_t x, int32_t m, int32_t a)
{
    return a + (int32_t)(((int64_t)x * (int64_t)m + ((int64_t)1 << 31)) >> 32);
}
#endif

/* Saturate to [-128, 127]: SSAT exists from ARMv7-M on (the M3 too). */
#if defined(__ARM_FEATURE_SAT) && defined(__GNUC__)
TG_INLINE int32_t tg_ssat8(int32_t v)
{
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
    return r;
}
#else
TG_INLINE int32_t tg_ssat8(int32_t v) { return tg_min32(tg_max32(v, -128), 127); }
#endif

TG_INLINE int32_t tg_rq_fused(int32_t acc, int32_t m, int32_t lp1, int32_t c, int32_t right)
{
    return tg_smmlar(tg_shl32(acc, lp1), m, c + (acc >> 31)) >> right;
}

/* A channel's 4 fused constants in 2 LDRDs (GCC splits them into 4 LDRs when byte
 * stores may alias them). */
typedef struct {
    int32_t m, lp1, c, right;
} tg_rq_t;

#if TG_HW_DSP && defined(__GNUC__)
TG_INLINE tg_rq_t tg_rq_load(const int32_t *q)
{
    tg_rq_t k;
    __asm__("ldrd %0, %1, [%2]" : "=r"(k.m), "=r"(k.lp1) : "r"(q), "m"(*(const int32_t(*)[2])q));
    __asm__("ldrd %0, %1, [%2, #8]" : "=r"(k.c), "=r"(k.right) : "r"(q), "m"(*(const int32_t(*)[2])(q + 2)));
    return k;
}
#else
TG_INLINE tg_rq_t tg_rq_load(const int32_t *q)
{
    tg_rq_t k;
    k.m = q[0];
    k.lp1 = q[1];
    k.c = q[2];
    k.right = q[3];
    return k;
}
#endif

TG_INLINE int32_t tg_rq_apply(int32_t acc, tg_rq_t k) { return tg_rq_fused(acc, k.m, k.lp1, k.c, k.right); }

/* The same for an accumulator handed over already doubled (k.lp1 == 0: the depthwise
 * 3x3 loops, whose weights tinygen doubled): no shift. */
TG_INLINE int32_t tg_rq_apply_x2(int32_t acc2, tg_rq_t k) { return tg_smmlar(acc2, k.m, k.c + (acc2 >> 31)) >> k.right; }

/* The activation clamp after SSAT: nothing when the range is the whole int8 range
 * (full, a constant at every call site so the test folds away). */
TG_INLINE int8_t tg_rq_clamp(int32_t v, int32_t lo, int32_t hi, int32_t full)
{
    v = tg_ssat8(v);
    if (!full) {
        v = tg_max32(v, lo);
        v = tg_min32(v, hi);
    }
    return (int8_t)v;
}

/* Requantization parameters of the output channels of CONV_2D,
 * DEPTHWISE_CONV_2D and FULLY_CONNECTED. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t per_channel;
    int32_t output_offset;
    int32_t act_min, act_max;
    const int32_t *fast_requant; /* fast constants (see tg_kernels.h) or NULL */
    const int32_t *rq_fused;     /* fused constants (above) or NULL */
} tg_channel_requant_t;

/* Channels c0 .. c0 + n - 1 (bias already in the accumulators): out0[i] from
 * acc[i * stride] and, if out1 != NULL, out1[i] from acc[i * stride + 1]; each
 * channel's shift is split once for both pixels. Out of line (called once per
 * one to four channels), one copy in each file that uses it: a call within the
 * file lets the compiler keep the caller's registers across it. */
static TG_NOINLINE TG_MAYBE_UNUSED void tg_requantize_channels(const tg_channel_requant_t *r, const int32_t *acc,
                                                               int32_t stride, int32_t n, int32_t c0, int8_t *out0,
                                                               int8_t *out1)
{
    const int32_t step = r->per_channel ? 1 : 0;
#ifdef TG_SINGLE_ROUNDING
    int32_t i;
    for (i = 0; i < n; i++) {
        const int32_t q = step * (c0 + i);
        int32_t m, sh;
        if (r->rq_fused != NULL) {
            m = r->rq_fused[4 * q];
            sh = r->rq_fused[4 * q + 1] - 1 - r->rq_fused[4 * q + 3];
        } else if (r->fast_requant != NULL) {
            m = r->fast_requant[3 * q];
            sh = (r->fast_requant[3 * q + 1] & 0xFF) - 1 - (r->fast_requant[3 * q + 1] >> 8);
        } else {
            m = r->multiplier[q];
            sh = r->shift[q];
        }
        out0[i] = tg_clamp_to_s8(tg_multiply_by_quantized_multiplier_inline(acc[i * stride], m, sh) +
                                 r->output_offset, r->act_min, r->act_max);
        if (out1 != NULL) {
            out1[i] = tg_clamp_to_s8(tg_multiply_by_quantized_multiplier_inline(acc[i * stride + 1], m, sh) +
                                     r->output_offset, r->act_min, r->act_max);
        }
    }
#else
    const int32_t off = r->output_offset, lo = r->act_min, hi = r->act_max;
    int32_t i;
    if (r->rq_fused != NULL) {
        const int32_t qstep = 4 * step;
        const int32_t *q = r->rq_fused + qstep * c0;
        for (i = 0; i < n; i++, acc += stride, q += qstep) {
            out0[i] = tg_rq_clamp(tg_rq_fused(acc[0], q[0], q[1], q[2], q[3]), lo, hi, 0);
            if (out1 != NULL) {
                out1[i] = tg_rq_clamp(tg_rq_fused(acc[1], q[0], q[1], q[2], q[3]), lo, hi, 0);
            }
        }
    } else if (r->fast_requant != NULL) {
        const int32_t qstep = 3 * step;
        const int32_t *q = r->fast_requant + qstep * c0;
        for (i = 0; i < n; i++, acc += stride, q += qstep) {
            const int32_t m = q[0];
            const int32_t left_plus_one = q[1] & 0xFF;
            const int32_t right = (int32_t)((uint32_t)q[1] >> 8);
            const int32_t half = q[2];
            const int32_t neg_adjust = (int32_t)(0u - (uint32_t)half) >> 31;
            out0[i] = tg_requantize_value_fast(acc[0], m, left_plus_one, right, half, neg_adjust, off, lo, hi);
            if (out1 != NULL) {
                out1[i] = tg_requantize_value_fast(acc[1], m, left_plus_one, right, half, neg_adjust, off, lo, hi);
            }
        }
    } else {
        const int32_t *mp = r->multiplier + step * c0;
        const int32_t *sp = r->shift + step * c0;
        for (i = 0; i < n; i++, acc += stride, mp += step, sp += step) {
            const int32_t m = *mp, sh = *sp;
            const int32_t left = sh > 0 ? sh : 0;
            const int32_t right = sh > 0 ? 0 : -sh;
            const int32_t mask = (int32_t)((1u << right) - 1u);
            out0[i] = tg_requantize_value(acc[0], m, left, right, mask, off, lo, hi);
            if (out1 != NULL) {
                out1[i] = tg_requantize_value(acc[1], m, left, right, mask, off, lo, hi);
            }
        }
    }
#endif
}

#endif /* TG_FIXEDPOINT_H */
