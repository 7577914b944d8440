/*
 * tg_kernels.c -- int8 kernels of tinygen's compiled runtime (see tg_kernels.h).
 *
 * Written for tinygen; the arithmetic follows the TensorFlow Lite Micro
 * reference kernels operation for operation so that results are identical,
 * bit for bit. Integer accumulation order may differ from the reference
 * where that cannot change a result (exact integer sums).
 */
#include "tg_kernels.h"

#include <string.h>

#if defined(__ARM_FEATURE_DSP) && !defined(TG_NO_DSP)
#include <arm_acle.h>
#define TG_USE_DSP 1
#define TG_HW_DSP 1
#elif defined(TG_DSP_EMULATE)
/* Host testing only: the DSP code path with C models of the DSP instructions. */
#define TG_USE_DSP 1
#define TG_HW_DSP 0
#else
#define TG_USE_DSP 0
#define TG_HW_DSP 0
#endif

#if defined(__GNUC__)
#define TG_INLINE static inline __attribute__((always_inline))
#define TG_NOINLINE __attribute__((noinline))
#else
#define TG_INLINE static inline
#define TG_NOINLINE
#endif

#define TG_INT32_MIN_ ((int32_t)(-2147483647 - 1))
#define TG_INT32_MAX_ ((int32_t)2147483647)

static int32_t tg_min32(int32_t a, int32_t b) { return a < b ? a : b; }
static int32_t tg_max32(int32_t a, int32_t b) { return a > b ? a : b; }

static int8_t tg_clamp_to_s8(int32_t v, int32_t lo, int32_t hi)
{
    v = tg_max32(v, lo);
    v = tg_min32(v, hi);
    return (int8_t)v;
}

/* x * 2^n with two's-complement wrap-around, n in [0, 31]. */
static int32_t tg_shl32(int32_t x, int32_t n) { return (int32_t)((uint32_t)x << n); }

/* ==== fixed-point primitives ============================================= */

TG_INLINE int32_t tg_srdhm_(int32_t a, int32_t b)
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

TG_INLINE int32_t tg_rdbpot_(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

TG_INLINE int32_t tg_mbqm_(int32_t x, int32_t multiplier, int32_t shift)
{
#ifdef TG_SINGLE_ROUNDING
    const int32_t total_shift = 31 - shift;
    const int64_t round = (int64_t)1 << (total_shift - 1);
    return (int32_t)(((int64_t)x * (int64_t)multiplier + round) >> total_shift);
#else
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return tg_rdbpot_(tg_srdhm_(tg_shl32(x, left), multiplier), right);
#endif
}

int32_t tg_srdhm(int32_t a, int32_t b) { return tg_srdhm_(a, b); }
int32_t tg_rdbpot(int32_t x, int32_t exponent) { return tg_rdbpot_(x, exponent); }
int32_t tg_mbqm(int32_t x, int32_t multiplier, int32_t shift) { return tg_mbqm_(x, multiplier, shift); }

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on a raw int32. */
static int32_t tg_sat_mul_pot(int32_t x, int32_t exponent)
{
    int32_t threshold;
    if (exponent == 0) {
        return x;
    }
    if (exponent < 0) {
        return tg_rdbpot(x, -exponent);
    }
    threshold = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1u);
    if (x > threshold) {
        return TG_INT32_MAX_;
    }
    if (x < -threshold) {
        return TG_INT32_MIN_;
    }
    return tg_shl32(x, exponent);
}

/* Number of leading zero bits of a non-zero 32-bit value. */
static int32_t tg_clz32(uint32_t v)
{
#if defined(__GNUC__)
    return (int32_t)__builtin_clz(v);
#else
    int32_t n = 0;
    while ((v & 0x80000000u) == 0u) {
        v <<= 1;
        n++;
    }
    return n;
#endif
}

/* ---- gemmlowp-compatible fixed-point functions (raw int32 values) --------
 * A value with I integer bits is raw / 2^(31 - I). */

/* exp(a) for a in [-1/4, 0), a and result with 0 integer bits. */
static int32_t tg_exp_quarter(int32_t a)
{
    const int32_t exp_minus_one_eighth = 1895147668; /* exp(-1/8) */
    const int32_t one_third = 715827883;
    const int32_t x = a + (1 << 28); /* a + 1/8 */
    const int32_t x2 = tg_srdhm(x, x);
    const int32_t x3 = tg_srdhm(x2, x);
    const int32_t x4 = tg_srdhm(x2, x2);
    const int32_t x4_over_4 = tg_sat_mul_pot(x4, -2);
    const int32_t poly = tg_sat_mul_pot(tg_srdhm(x4_over_4 + x3, one_third) + x2, -1);
    return exp_minus_one_eighth + tg_srdhm(exp_minus_one_eighth, x + poly);
}

/* exp(a) for a <= 0 with `int_bits` integer bits; result has 0 integer bits. */
static int32_t tg_exp_negative(int32_t a, int32_t int_bits)
{
    static const int32_t barrel[7] = {
        1672461947, /* exp(-1/4) */
        1302514674, /* exp(-1/2) */
        790015084,  /* exp(-1) */
        290630308,  /* exp(-2) */
        39332535,   /* exp(-4) */
        720401,     /* exp(-8) */
        242,        /* exp(-16) */
    };
    const int32_t frac_bits = 31 - int_bits;
    const int32_t one_quarter = (int32_t)1 << (frac_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_q_minus_q = (a & mask) - one_quarter;
    int32_t result = tg_exp_quarter(tg_sat_mul_pot(a_mod_q_minus_q, int_bits));
    const int32_t remainder = a_mod_q_minus_q - a;
    int32_t e;
    for (e = -2; e <= 4; e++) {
        if (int_bits > e) {
            const int32_t bit = frac_bits + e;
            if ((remainder & ((int32_t)1 << bit)) != 0) {
                result = tg_srdhm(result, barrel[e + 2]);
            }
        }
    }
    if (int_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - int_bits));
        if (a < clamp) {
            result = 0;
        }
    }
    if (a == 0) {
        result = TG_INT32_MAX_;
    }
    return result;
}

/* (a + b) / 2 rounded half away from zero. */
static int32_t tg_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

/* Newton-Raphson 1/(1 + a) core for a in [0, 1) (0 integer bits).
 * Returns x ~ 1 / half_denominator with 2 integer bits. */
static int32_t tg_newton_reciprocal(int32_t a)
{
    const int32_t c48_17 = 1515870810;     /* 48/17, 2 integer bits */
    const int32_t cneg32_17 = -1010580540; /* -32/17, 2 integer bits */
    const int32_t one_q2 = (int32_t)1 << 29;
    const int32_t half_denominator = tg_rounding_half_sum(a, TG_INT32_MAX_);
    int32_t x = c48_17 + tg_srdhm(half_denominator, cneg32_17);
    int32_t i;
    for (i = 0; i < 3; i++) {
        const int32_t hdx = tg_srdhm(half_denominator, x);
        const int32_t one_minus = one_q2 - hdx;
        x = x + tg_sat_mul_pot(tg_srdhm(x, one_minus), 2);
    }
    return x;
}

/* 1 / (1 + a) for a in [0, 1), 0 integer bits in and out. */
static int32_t tg_one_over_one_plus_x(int32_t a)
{
    return tg_sat_mul_pot(tg_newton_reciprocal(a), 1);
}

/* (1 - a) / (1 + a) for a in [0, 1), 0 integer bits in and out. */
static int32_t tg_one_minus_x_over_one_plus_x(int32_t a)
{
    return tg_sat_mul_pot(tg_newton_reciprocal(a) - ((int32_t)1 << 29), 2);
}

static int32_t tg_fp_logistic(int32_t a, int32_t int_bits)
{
    const int32_t positive = a > 0;
    const int32_t abs_a = positive ? a : -a;
    const int32_t if_positive = tg_one_over_one_plus_x(tg_exp_negative(-abs_a, int_bits));
    const int32_t if_negative = TG_INT32_MAX_ - if_positive;
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    return positive ? if_positive : if_negative;
}

static int32_t tg_fp_tanh(int32_t a, int32_t int_bits)
{
    const int32_t negative = a < 0;
    const int32_t n = negative ? a : -a;
    /* exp(2n): the same raw value read with one more integer bit. */
    const int32_t t = tg_one_minus_x_over_one_plus_x(tg_exp_negative(n, int_bits + 1));
    if (a == 0) {
        return 0;
    }
    return negative ? -t : t;
}

/* ==== DSP instructions ===================================================== */

/* The few DSP-extension instructions the kernels use, on uint32_t values.
 * TG_DSP_EMULATE (host testing only) runs the DSP code path with C models of
 * the instructions, so that path can run under ASan/UBSan too. */
#if TG_HW_DSP
TG_INLINE uint32_t tg_sxtb16(uint32_t v) { return (uint32_t)__sxtb16((int8x4_t)v); }
TG_INLINE uint32_t tg_sxtb16_ror8(uint32_t v)
{
#if defined(__GNUC__)
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
#else
    return (uint32_t)__sxtb16((int8x4_t)((v >> 8) | (v << 24)));
#endif
}
TG_INLINE uint32_t tg_sxtab16(uint32_t a, uint32_t v) { return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)v); }
TG_INLINE uint32_t tg_sxtab16_ror8(uint32_t a, uint32_t v)
{
#if defined(__GNUC__)
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
#else
    return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)((v >> 8) | (v << 24)));
#endif
}
TG_INLINE int32_t tg_smlad(uint32_t a, uint32_t b, int32_t acc) { return __smlad((int16x2_t)a, (int16x2_t)b, acc); }
TG_INLINE int32_t tg_smlabb(uint32_t a, uint32_t b, int32_t acc) { return __smlabb((int16x2_t)a, (int16x2_t)b, acc); }
TG_INLINE int32_t tg_smlatt(uint32_t a, uint32_t b, int32_t acc) { return __smlatt((int16x2_t)a, (int16x2_t)b, acc); }
#elif TG_USE_DSP
static int32_t tg_lo16(uint32_t v) { return (int32_t)(int16_t)(uint16_t)(v & 0xFFFFu); }
static int32_t tg_hi16(uint32_t v) { return (int32_t)(int16_t)(uint16_t)(v >> 16); }
static uint32_t tg_pack16(int32_t lo, int32_t hi) { return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16); }
static int32_t tg_b(uint32_t v, int32_t i) { return (int32_t)(int8_t)(uint8_t)((v >> (8 * i)) & 0xFFu); }
static uint32_t tg_sxtb16(uint32_t v) { return tg_pack16(tg_b(v, 0), tg_b(v, 2)); }
static uint32_t tg_sxtb16_ror8(uint32_t v) { return tg_pack16(tg_b(v, 1), tg_b(v, 3)); }
static uint32_t tg_sxtab16(uint32_t a, uint32_t v) { return tg_pack16(tg_lo16(a) + tg_b(v, 0), tg_hi16(a) + tg_b(v, 2)); }
static uint32_t tg_sxtab16_ror8(uint32_t a, uint32_t v) { return tg_pack16(tg_lo16(a) + tg_b(v, 1), tg_hi16(a) + tg_b(v, 3)); }
static int32_t tg_wrap_add(int32_t acc, int32_t p) { return (int32_t)((uint32_t)acc + (uint32_t)p); }
static int32_t tg_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return tg_wrap_add(tg_wrap_add(acc, tg_lo16(a) * tg_lo16(b)), tg_hi16(a) * tg_hi16(b));
}
static int32_t tg_smlabb(uint32_t a, uint32_t b, int32_t acc) { return tg_wrap_add(acc, tg_lo16(a) * tg_lo16(b)); }
static int32_t tg_smlatt(uint32_t a, uint32_t b, int32_t acc) { return tg_wrap_add(acc, tg_hi16(a) * tg_hi16(b)); }
#endif

/* Unaligned 32-bit load / store (one LDR / STR on Cortex-M4). */
TG_INLINE uint32_t tg_load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

TG_INLINE void tg_store_u32(void *p, uint32_t v) { memcpy(p, &v, sizeof v); }

/* ==== requantization ========================================================= */

/* Requantization parameters of a packed matrix product. */
typedef struct {
    const int32_t *bias;       /* packed products: folded bias, never NULL (unused by tg_rq_row) */
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t per_channel;
    int32_t output_offset;
    int32_t act_min, act_max;
    const int32_t *rq;         /* fast constants (see tg_kernels.h) or NULL */
} tg_rq_t;

/* Requantize one value: MultiplyByQuantizedMultiplier (double rounding) with the
 * shift already split into left / right and mask = 2^right - 1, then the output
 * offset and the activation clamp. The multiplier is >= 0 (all tinygen emits), so
 * the one saturating case of SaturatingRoundingDoublingHighMul (both operands
 * INT32_MIN) cannot occur. */
TG_INLINE int8_t tg_rq1(int32_t x, int32_t m, int32_t left, int32_t right, int32_t mask, int32_t off,
                        int32_t lo, int32_t hi)
{
    const int64_t ab = (int64_t)tg_shl32(x, left) * (int64_t)m;
    const int32_t high = (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
    const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    const int32_t v = (high >> right) + ((high & mask) > threshold ? 1 : 0);
    return tg_clamp_to_s8(v + off, lo, hi);
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

/* The same requantization from the fast constants (m, s1 = left + 1, right,
 * rnd = right ? 2^(right - 1) : 0), nm = rnd ? -1 : 0. tinygen emits them only
 * where |acc| * 2^s1 < 2^31 for every accumulator value that can occur; then
 * SMMULR(acc << s1, m) == SaturatingRoundingDoublingHighMul(acc << left, m)
 * exactly, |h| < 2^30, and (h + rnd + (h < 0 ? nm : 0)) >> right is
 * RoundingDivideByPOT(h, right) (round half away from zero) without overflow. */
TG_INLINE int8_t tg_rqf(int32_t x, int32_t m, int32_t s1, int32_t right, int32_t rnd, int32_t nm,
                        int32_t off, int32_t lo, int32_t hi)
{
    const int32_t h = tg_smmulr(tg_shl32(x, s1), m);
    const int32_t v = (h + rnd + ((h >> 31) & nm)) >> right;
    return tg_clamp_to_s8(v + off, lo, hi);
}

/* Channels c0 .. c0 + n - 1 (bias already in the accumulators): out0[i] from
 * acc[i * stride] and, if out1 != NULL, out1[i] from acc[i * stride + 1].
 * Each channel's shift is split once for both pixels. */
static TG_NOINLINE void tg_rq_row(const tg_rq_t *r, const int32_t *acc, int32_t stride, int32_t n, int32_t c0,
                                  int8_t *out0, int8_t *out1)
{
    const int32_t step = r->per_channel ? 1 : 0;
#ifdef TG_SINGLE_ROUNDING
    int32_t i;
    for (i = 0; i < n; i++) {
        const int32_t q = step * (c0 + i);
        int32_t m, sh;
        if (r->rq != NULL) {
            m = r->rq[3 * q];
            sh = (r->rq[3 * q + 1] & 0xFF) - 1 - (r->rq[3 * q + 1] >> 8);
        } else {
            m = r->multiplier[q];
            sh = r->shift[q];
        }
        out0[i] = tg_clamp_to_s8(tg_mbqm_(acc[i * stride], m, sh) + r->output_offset, r->act_min, r->act_max);
        if (out1 != NULL) {
            out1[i] = tg_clamp_to_s8(tg_mbqm_(acc[i * stride + 1], m, sh) + r->output_offset,
                                     r->act_min, r->act_max);
        }
    }
#else
    const int32_t off = r->output_offset, lo = r->act_min, hi = r->act_max;
    int32_t i;
    if (r->rq != NULL) {
        const int32_t qstep = 3 * step;
        const int32_t *q = r->rq + qstep * c0;
        for (i = 0; i < n; i++, acc += stride, q += qstep) {
            const int32_t m = q[0];
            const int32_t s1 = q[1] & 0xFF;
            const int32_t right = (int32_t)((uint32_t)q[1] >> 8);
            const int32_t rnd = q[2];
            const int32_t nm = (int32_t)(0u - (uint32_t)rnd) >> 31;
            out0[i] = tg_rqf(acc[0], m, s1, right, rnd, nm, off, lo, hi);
            if (out1 != NULL) {
                out1[i] = tg_rqf(acc[1], m, s1, right, rnd, nm, off, lo, hi);
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
            out0[i] = tg_rq1(acc[0], m, left, right, mask, off, lo, hi);
            if (out1 != NULL) {
                out1[i] = tg_rq1(acc[1], m, left, right, mask, off, lo, hi);
            }
        }
    }
#endif
}

/* ==== packed int8 x int16 matrix products (CONV_2D, FULLY_CONNECTED) =========
 *
 * Both ops are computed as out[pixel][oc] = bias'[oc] + sum_k w[oc][k] * x[pixel][k]
 * where bias' = bias + input_offset * sum_k w[oc][k] is folded in by tinygen at
 * code-generation time (equal in integer arithmetic, so bit-exact), and x holds
 * the raw int8 input values (padding taps hold the input zero point, which
 * contributes w * (zero_point + input_offset) = 0, as TFLM's skipped taps do).
 * CONV_2D goes through the int16 column scratch below; FULLY_CONNECTED reads
 * its int8 rows directly (tg_fc4 / tg_fc2, same weight packing).
 *
 * K (values per output) is padded to K4 = a multiple of 4; weight columns past K
 * are zero. Layouts (k = 4 * j + q):
 *
 *  column scratch, int16: two pixel slots interleaved per block of 4 k:
 *      [8 j + 4 slot + TG_POS(q)]      (scratch size 4 * K4 bytes, 4-byte aligned)
 *  weights, int8: output channels in pairs (within a group), interleaved per
 *      block: pair base + 8 j + 4 (oc & 1) + q; an odd last channel of a group
 *      is stored alone: base + 4 j + q.
 *
 * DSP path: one word of weights gives (w0, w2) and (w1, w3) by SXTB16 and
 * SXTB16 ROR 8, so the column stores each block as (x0, x2), (x1, x3)
 * (TG_POS = 0, 2, 1, 3) and every product is one SMLAD on two int16 pairs.
 * Portable path: natural order. */

#if TG_USE_DSP
#define TG_POS(q) ((((q) ^ ((q) >> 1)) & 1) ? ((q) ^ 3) : (q))
#else
#define TG_POS(q) (q)
#endif

/* Store one int16 value of a column (byte access: no aliasing assumptions). */
TG_INLINE void tg_col_put(int16_t *col, int32_t k, int32_t slot, int32_t v)
{
    const int16_t s = (int16_t)v;
    memcpy(col + (8 * (k >> 2) + 4 * slot + TG_POS(k & 3)), &s, sizeof s);
}

/* Column entries k in [k0, k4) of one slot (the padding past K) set to 0. */
static void tg_col_zero_tail(int16_t *col, int32_t k0, int32_t k4, int32_t slot)
{
    for (; k0 < k4; k0++) {
        tg_col_put(col, k0, slot, 0);
    }
}

/* n (a multiple of 4, k0 a multiple of 4) raw int8 values into a column slot. */
TG_INLINE void tg_col_put_run(int16_t *col, int32_t k0, int32_t slot, const int8_t *src, int32_t n)
{
#if TG_USE_DSP
    int8_t *dst = (int8_t *)(col + (8 * (k0 >> 2) + 4 * slot));
    for (; n > 0; n -= 4, src += 4, dst += 16) {
        const uint32_t v = tg_load_u32(src);
        tg_store_u32(dst, tg_sxtb16(v));
        tg_store_u32(dst + 4, tg_sxtb16_ror8(v));
    }
#else
    int32_t i;
    for (i = 0; i < n; i++) {
        tg_col_put(col, k0 + i, slot, src[i]);
    }
#endif
}

/* n (a multiple of 4, k0 a multiple of 4) copies of v into a column slot. */
TG_INLINE void tg_col_fill_run(int16_t *col, int32_t k0, int32_t slot, int32_t v, int32_t n)
{
    const uint32_t pair = ((uint32_t)v & 0xFFFFu) | ((uint32_t)v << 16);
    int8_t *dst = (int8_t *)(col + (8 * (k0 >> 2) + 4 * slot));
    for (; n > 0; n -= 4, dst += 16) {
        tg_store_u32(dst, pair);
        tg_store_u32(dst + 4, pair);
    }
}

/* ---- inner products: accumulators += sum over nblk blocks ------------------
 * x: column scratch (4 words per block: slot 0 pair, slot 1 pair);
 * w2: a channel pair's interleaved rows (8 bytes per block), 4-byte aligned;
 * w1: a lone channel's row (4 bytes per block). */

#if TG_USE_DSP
#if TG_HW_DSP && defined(__GNUC__)
/* Loads with post-increment, as the instructions the loops are built around
 * (GCC does not always form them itself). Weights are 4-byte aligned. */
#define TG_LDR_INC(a, p) __asm__("ldr %0, [%1], #4" : "=r"(a), "+r"(p))
#define TG_LDRD_INC(a, b, p) __asm__("ldrd %0, %1, [%2], #8" : "=r"(a), "=r"(b), "+r"(p))
#else
#define TG_LDR_INC(a, p) do { (a) = tg_load_u32(p); (p) += 1; } while (0)
#define TG_LDRD_INC(a, b, p) do { (a) = tg_load_u32(p); (b) = tg_load_u32((p) + 1); (p) += 2; } while (0)
#endif

/* 2 channels x 2 pixels. */
static TG_NOINLINE void tg_k2x2(const uint32_t *x, const uint32_t *w, int32_t nblk, int32_t *acc)
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    for (; nblk > 0; nblk--) {
        uint32_t x0, x1, y0, y1, v, wl;
        TG_LDRD_INC(x0, x1, x);
        TG_LDRD_INC(y0, y1, x);
        TG_LDR_INC(v, w);
        wl = tg_sxtb16(v);
        v = tg_sxtb16_ror8(v);
        a00 = tg_smlad(x0, wl, a00);
        a01 = tg_smlad(y0, wl, a01);
        a00 = tg_smlad(x1, v, a00);
        a01 = tg_smlad(y1, v, a01);
        TG_LDR_INC(v, w);
        wl = tg_sxtb16(v);
        v = tg_sxtb16_ror8(v);
        a10 = tg_smlad(x0, wl, a10);
        a11 = tg_smlad(y0, wl, a11);
        a10 = tg_smlad(x1, v, a10);
        a11 = tg_smlad(y1, v, a11);
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* 2 channels x the pixel in slot 0. */
static TG_NOINLINE void tg_k2x1(const uint32_t *x, const uint32_t *w, int32_t nblk, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[2];
    for (; nblk > 0; nblk--) {
        uint32_t x0, x1, v0, v1;
        TG_LDRD_INC(x0, x1, x);
        x += 2;
        TG_LDRD_INC(v0, v1, w);
        a0 = tg_smlad(x0, tg_sxtb16(v0), a0);
        a0 = tg_smlad(x1, tg_sxtb16_ror8(v0), a0);
        a1 = tg_smlad(x0, tg_sxtb16(v1), a1);
        a1 = tg_smlad(x1, tg_sxtb16_ror8(v1), a1);
    }
    acc[0] = a0;
    acc[2] = a1;
}

/* 1 channel x 2 pixels (two = 1) or the pixel in slot 0 (two = 0). */
static TG_NOINLINE void tg_k1x2(const uint32_t *x, const uint32_t *w, int32_t nblk, int32_t two, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    for (; nblk > 0; nblk--) {
        uint32_t x0, x1, y0, y1, v;
        TG_LDRD_INC(x0, x1, x);
        TG_LDRD_INC(y0, y1, x);
        TG_LDR_INC(v, w);
        a0 = tg_smlad(x0, tg_sxtb16(v), a0);
        a0 = tg_smlad(x1, tg_sxtb16_ror8(v), a0);
        if (two) {
            a1 = tg_smlad(y0, tg_sxtb16(v), a1);
            a1 = tg_smlad(y1, tg_sxtb16_ror8(v), a1);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}
#else
static TG_NOINLINE void tg_k2x2(const int16_t *x, const int8_t *w, int32_t nblk, int32_t *acc)
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    int32_t q;
    for (; nblk > 0; nblk--, x += 8, w += 8) {
        for (q = 0; q < 4; q++) {
            a00 += x[q] * w[q];
            a01 += x[4 + q] * w[q];
            a10 += x[q] * w[4 + q];
            a11 += x[4 + q] * w[4 + q];
        }
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

static TG_NOINLINE void tg_k2x1(const int16_t *x, const int8_t *w, int32_t nblk, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[2];
    int32_t q;
    for (; nblk > 0; nblk--, x += 8, w += 8) {
        for (q = 0; q < 4; q++) {
            a0 += x[q] * w[q];
            a1 += x[q] * w[4 + q];
        }
    }
    acc[0] = a0;
    acc[2] = a1;
}

static TG_NOINLINE void tg_k1x2(const int16_t *x, const int8_t *w, int32_t nblk, int32_t two, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    int32_t q;
    for (; nblk > 0; nblk--, x += 8, w += 4) {
        for (q = 0; q < 4; q++) {
            a0 += x[q] * w[q];
            if (two) {
                a1 += x[4 + q] * w[q];
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}
#endif

#if TG_USE_DSP
#define TG_COLP(col) ((const uint32_t *)(const void *)(col))
#define TG_WP(w) ((const uint32_t *)(const void *)(w))
#else
#define TG_COLP(col) (col)
#define TG_WP(w) (w)
#endif

/* Outputs of n_oc channels (w: the channels' packed rows) for the pixel in slot 0
 * (out0) and, if out1 != NULL, the pixel in slot 1 (out1). */
static void tg_mm_s8(const int16_t *col, const int8_t *w, int32_t nblk, int32_t n_oc, int32_t oc0,
                     const tg_rq_t *r, int8_t *out0, int8_t *out1)
{
    const int32_t *bias = r->bias + oc0;
    int32_t acc[4]; /* [channel oc + i][pixel p] at 2 i + p */
    int32_t oc;
    for (oc = 0; oc < n_oc; oc += 2, w += 8 * nblk) {
        const int32_t n = (oc + 1 < n_oc) ? 2 : 1;
        acc[0] = acc[1] = bias[oc];
        acc[2] = acc[3] = (n == 2) ? bias[oc + 1] : 0;
        if (n == 1) {
            tg_k1x2(TG_COLP(col), TG_WP(w), nblk, out1 != NULL, acc);
        } else if (out1 != NULL) {
            tg_k2x2(TG_COLP(col), TG_WP(w), nblk, acc);
        } else {
            tg_k2x1(TG_COLP(col), TG_WP(w), nblk, acc);
        }
        tg_rq_row(r, acc, 2, n, oc0 + oc, out0 + oc, out1 != NULL ? out1 + oc : NULL);
    }
}

/* ==== FULLY_CONNECTED =====================================================
 *
 * No scratch: the int8 input row is read directly, one word of 4 values per
 * block widened on the fly (SXTB16 / SXTB16 ROR 8 give (x0, x2), (x1, x3), the
 * same order the weights widen to), and each widened word is used by up to 4
 * output channels (two packed pairs). The last partial block (K not a
 * multiple of 4) is read from a zero-padded 4-byte copy on the stack. */

#if TG_USE_DSP
/* 4 channels (pairs at wa and wb) x one input row: acc[0..3] += nblk blocks. */
static TG_NOINLINE void tg_fc4(const int8_t *x, const uint32_t *wa, const uint32_t *wb, int32_t nblk,
                               int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; nblk > 0; nblk--, x += 4) {
        const uint32_t xv = tg_load_u32(x);
        const uint32_t x02 = tg_sxtb16(xv);
        const uint32_t x13 = tg_sxtb16_ror8(xv);
        uint32_t v0, v1;
        TG_LDRD_INC(v0, v1, wa);
        a0 = tg_smlad(x02, tg_sxtb16(v0), a0);
        a0 = tg_smlad(x13, tg_sxtb16_ror8(v0), a0);
        a1 = tg_smlad(x02, tg_sxtb16(v1), a1);
        a1 = tg_smlad(x13, tg_sxtb16_ror8(v1), a1);
        TG_LDRD_INC(v0, v1, wb);
        a2 = tg_smlad(x02, tg_sxtb16(v0), a2);
        a2 = tg_smlad(x13, tg_sxtb16_ror8(v0), a2);
        a3 = tg_smlad(x02, tg_sxtb16(v1), a3);
        a3 = tg_smlad(x13, tg_sxtb16_ror8(v1), a3);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* 2 channels (a pair, 8 bytes per block, two = 1) or a lone channel (4 bytes per
 * block, two = 0) x one input row. */
static TG_NOINLINE void tg_fc2(const int8_t *x, const uint32_t *w, int32_t nblk, int32_t two, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    for (; nblk > 0; nblk--, x += 4) {
        const uint32_t xv = tg_load_u32(x);
        const uint32_t x02 = tg_sxtb16(xv);
        const uint32_t x13 = tg_sxtb16_ror8(xv);
        uint32_t v;
        TG_LDR_INC(v, w);
        a0 = tg_smlad(x02, tg_sxtb16(v), a0);
        a0 = tg_smlad(x13, tg_sxtb16_ror8(v), a0);
        if (two) {
            TG_LDR_INC(v, w);
            a1 = tg_smlad(x02, tg_sxtb16(v), a1);
            a1 = tg_smlad(x13, tg_sxtb16_ror8(v), a1);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}
#else
static void tg_fc4(const int8_t *x, const int8_t *wa, const int8_t *wb, int32_t nblk, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t q;
    for (; nblk > 0; nblk--, x += 4, wa += 8, wb += 8) {
        for (q = 0; q < 4; q++) {
            const int32_t v = x[q];
            a0 += v * wa[q];
            a1 += v * wa[4 + q];
            a2 += v * wb[q];
            a3 += v * wb[4 + q];
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

static void tg_fc2(const int8_t *x, const int8_t *w, int32_t nblk, int32_t two, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    int32_t q;
    for (; nblk > 0; nblk--, x += 4, w += two ? 8 : 4) {
        for (q = 0; q < 4; q++) {
            a0 += x[q] * w[q];
            if (two) {
                a1 += x[q] * w[4 + q];
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}
#endif

void tg_fully_connected_s8(const tg_fc_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t n = p->accum_depth;
    const int32_t k4 = p->accum_padded;
    const int32_t od = p->output_depth;
    const tg_rq_t r = {p->bias, p->multiplier, p->shift, p->per_channel, p->output_offset,
                       p->act_min, p->act_max, p->rq};
    int32_t b, oc;
    for (b = 0; b < p->batches; b++) {
        const int8_t *row = input + (int32_t)(b * n);
        int8_t *out = output + (int32_t)(b * od);
        const int32_t nfull = n >> 2;
        int8_t tail[4] = {0, 0, 0, 0};
        memcpy(tail, row + 4 * nfull, (size_t)(n & 3));
        for (oc = 0; oc < od;) {
            const int8_t *w = p->weights + (int32_t)(oc * k4);
            int32_t acc[4];
            if (oc + 4 <= od) {
                acc[0] = p->bias[oc];
                acc[1] = p->bias[oc + 1];
                acc[2] = p->bias[oc + 2];
                acc[3] = p->bias[oc + 3];
                tg_fc4(row, TG_WP(w), TG_WP(w + 2 * k4), nfull, acc);
                if (n & 3) {
                    tg_fc4(tail, TG_WP(w + 8 * nfull), TG_WP(w + 2 * k4 + 8 * nfull), 1, acc);
                }
                tg_rq_row(&r, acc, 1, 4, oc, out + oc, NULL);
                oc += 4;
            } else {
                const int32_t two = oc + 2 <= od;
                const int32_t blk = two ? 8 : 4;
                acc[0] = p->bias[oc];
                acc[1] = two ? p->bias[oc + 1] : 0;
                tg_fc2(row, TG_WP(w), nfull, two, acc);
                if (n & 3) {
                    tg_fc2(tail, TG_WP(w + blk * nfull), 1, two, acc);
                }
                tg_rq_row(&r, acc, 1, two ? 2 : 1, oc, out + oc, NULL);
                oc += two ? 2 : 1;
            }
        }
    }
}

/* ==== CONV_2D ============================================================= */

/* Filter taps k in [0, size) with 0 <= origin + dilation * k < limit: [*k0, *k1). */
static void tg_valid_taps(int32_t origin, int32_t dilation, int32_t size, int32_t limit, int32_t *k0, int32_t *k1)
{
    int32_t first = 0;
    int32_t last;
    if (origin < 0) {
        first = (-origin + dilation - 1) / dilation;
    }
    if (origin > limit - 1) {
        last = 0;
    } else {
        last = (limit - 1 - origin) / dilation + 1;
    }
    *k0 = tg_min32(first, size);
    *k1 = tg_max32(tg_min32(last, size), *k0);
}

/* The im2col column of output pixel `pix` (flat over out_h * out_w) for the input
 * channels [goff, goff + filter_in_c) into a scratch slot. */
static void tg_conv_col(const tg_conv_params_t *p, const int8_t *in_b, int32_t pix, int32_t goff,
                        int16_t *col, int32_t slot)
{
    const int32_t fic = p->filter_in_c;
    const int32_t oy = pix / p->out_w;
    const int32_t ox = pix - oy * p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_h;
    const int32_t x0 = ox * p->stride_w - p->pad_w;
    const int32_t zp = -p->input_offset;
    int32_t ky, kx, c;
    int32_t k = 0;
    for (ky = 0; ky < p->filter_h; ky++) {
        const int32_t iy = y0 + p->dilation_h * ky;
        const int32_t row_ok = (iy >= 0) && (iy < p->in_h);
        for (kx = 0; kx < p->filter_w; kx++, k += fic) {
            const int32_t ix = x0 + p->dilation_w * kx;
            const int32_t ok = row_ok && (ix >= 0) && (ix < p->in_w);
            const int8_t *src = in_b + (ok ? (int32_t)((iy * p->in_w + ix) * p->in_c + goff) : 0);
            if ((fic & 3) == 0) {
                if (ok) {
                    tg_col_put_run(col, k, slot, src, fic);
                } else {
                    tg_col_fill_run(col, k, slot, zp, fic);
                }
            } else {
                for (c = 0; c < fic; c++) {
                    tg_col_put(col, k + c, slot, ok ? src[c] : zp);
                }
            }
        }
    }
    tg_col_zero_tail(col, k, p->k_padded, slot);
}

void tg_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output, int16_t *scratch)
{
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t per_group = p->out_c / groups;
    const int32_t k4 = p->k_padded;
    const int32_t n_pix = p->out_h * p->out_w;
    const tg_rq_t r = {p->bias, p->multiplier, p->shift, p->per_channel, p->output_offset,
                       p->act_min, p->act_max, p->rq};
    int32_t b, pix, g;
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->in_c);
        int8_t *out_b = output + (int32_t)(b * n_pix * p->out_c);
        for (pix = 0; pix < n_pix; pix += 2) {
            const int32_t two = pix + 1 < n_pix;
            for (g = 0; g < groups; g++) {
                const int32_t oc0 = g * per_group;
                int8_t *o0 = out_b + (int32_t)(pix * p->out_c + oc0);
                tg_conv_col(p, in_b, pix, g * p->filter_in_c, scratch, 0);
                if (two) {
                    tg_conv_col(p, in_b, pix + 1, g * p->filter_in_c, scratch, 1);
                }
                tg_mm_s8(scratch, p->weights + (int32_t)(oc0 * k4), k4 >> 2, per_group, oc0, &r, o0,
                         two ? o0 + p->out_c : NULL);
            }
        }
    }
}

/* ==== DEPTHWISE_CONV_2D =================================================== */

#if TG_USE_DSP
/* Four channels (depth multiplier 1) of one output pixel over nky x nkx valid taps:
 * one 32-bit load of input and of filter bytes per tap, the input offset added
 * while widening (SXTAB16), four accumulators. */
static TG_NOINLINE void tg_dw4(const int8_t *x, const int8_t *w, int32_t nky, int32_t nkx,
                               const int32_t *steps, uint32_t off2, int32_t *acc)
{
    const int32_t x_row = steps[0], x_step = steps[1], w_row = steps[2], w_step = steps[3];
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; nky > 0; nky--, x += x_row, w += w_row) {
        const int8_t *xp = x;
        const int8_t *wp = w;
        int32_t k;
        for (k = nkx; k > 0; k--, xp += x_step, wp += w_step) {
            const uint32_t xv = tg_load_u32(xp);
            const uint32_t wv = tg_load_u32(wp);
            const uint32_t x02 = tg_sxtab16(off2, xv);
            const uint32_t x13 = tg_sxtab16_ror8(off2, xv);
            const uint32_t w02 = tg_sxtb16(wv);
            const uint32_t w13 = tg_sxtb16_ror8(wv);
            a0 = tg_smlabb(x02, w02, a0);
            a2 = tg_smlatt(x02, w02, a2);
            a1 = tg_smlabb(x13, w13, a1);
            a3 = tg_smlatt(x13, w13, a3);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

#if TG_USE_DSP
/* (lo16(a), lo16(b)) and (hi16(a), hi16(b)): PKHBT / PKHTB. */
#if TG_HW_DSP && defined(__GNUC__)
TG_INLINE uint32_t tg_pk_lo(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
TG_INLINE uint32_t tg_pk_hi(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
    return r;
}
#else
TG_INLINE uint32_t tg_pk_lo(uint32_t a, uint32_t b) { return (a & 0xFFFFu) | (b << 16); }
TG_INLINE uint32_t tg_pk_hi(uint32_t a, uint32_t b) { return (a >> 16) | (b & 0xFFFF0000u); }
#endif

#define TG_DW_CHUNK 32

/* 3x3 filter, depth multiplier 1, all 9 taps inside the input: ngrp groups of 4
 * channels of one output pixel into acc (bias included). o: the 9 taps' input
 * offsets; w16: the pre-widened weights, 18 words per group (tg_kernels.h):
 * taps (0,1), (2,3), (4,5), (6,7) one SMLAD per channel, tap 8 SMLABB/SMLATT. */
static TG_NOINLINE void tg_dw3x3(const int8_t *x, const uint32_t *w16, int32_t ngrp, const int32_t *o,
                                 uint32_t off2, const int32_t *bias, int32_t *acc)
{
    for (; ngrp > 0; ngrp--, x += 4, acc += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        uint32_t xa, a02, a13;
        if (bias != NULL) {
            a0 = bias[0];
            a1 = bias[1];
            a2 = bias[2];
            a3 = bias[3];
            bias += 4;
        }
#define TG_DW_PAIR(t)                                                  \
    do {                                                               \
        const uint32_t xb = tg_load_u32(x + o[(t) + 1]);               \
        uint32_t u, v;                                                 \
        xa = tg_load_u32(x + o[t]);                                    \
        u = tg_sxtab16(off2, xa);                                      \
        v = tg_sxtab16(off2, xb);                                      \
        a0 = tg_smlad(tg_pk_lo(u, v), w16[2 * (t)], a0);               \
        a2 = tg_smlad(tg_pk_hi(u, v), w16[2 * (t) + 1], a2);           \
        u = tg_sxtab16_ror8(off2, xa);                                 \
        v = tg_sxtab16_ror8(off2, xb);                                 \
        a1 = tg_smlad(tg_pk_lo(u, v), w16[2 * (t) + 2], a1);           \
        a3 = tg_smlad(tg_pk_hi(u, v), w16[2 * (t) + 3], a3);           \
    } while (0)
        TG_DW_PAIR(0);
        TG_DW_PAIR(2);
        TG_DW_PAIR(4);
        TG_DW_PAIR(6);
#undef TG_DW_PAIR
        w16 += 16;
        xa = tg_load_u32(x + o[8]);
        a02 = tg_sxtab16(off2, xa);
        a13 = tg_sxtab16_ror8(off2, xa);
        a0 = tg_smlabb(a02, w16[0], a0);
        a2 = tg_smlatt(a02, w16[0], a2);
        a1 = tg_smlabb(a13, w16[1], a1);
        a3 = tg_smlatt(a13, w16[1], a3);
        w16 += 2;
        acc[0] = a0;
        acc[1] = a1;
        acc[2] = a2;
        acc[3] = a3;
    }
}
#endif

void tg_depthwise_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t dm = p->depth_multiplier;
    const tg_rq_t r = {p->bias, p->multiplier, p->shift, p->per_channel, p->output_offset,
                       p->act_min, p->act_max, p->rq};
    int32_t b, oy, ox, ic, m, ky, kx;
#if TG_USE_DSP
    const uint32_t off16 = (uint32_t)p->input_offset & 0xFFFFu;
    const uint32_t off2 = (off16 << 16) | off16;
    const int32_t steps[4] = {p->dilation_h * p->in_w * p->in_c, p->dilation_w * p->in_c,
                              p->filter_w * p->out_c, p->out_c};
    const int32_t fast3 = p->w16 != NULL && dm == 1 && p->filter_h == 3 && p->filter_w == 3 &&
                          (p->in_c & 3) == 0;
    int32_t o9[9];
    for (ky = 0; ky < 9; ky++) {
        o9[ky] = (ky / 3) * steps[0] + (ky % 3) * steps[1];
    }
#endif
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->in_c);
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            tg_valid_taps(y0, p->dilation_h, p->filter_h, p->in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int8_t *out = output + (int32_t)(((b * p->out_h + oy) * p->out_w + ox) * p->out_c);
                int32_t kx0, kx1;
                tg_valid_taps(x0, p->dilation_w, p->filter_w, p->in_w, &kx0, &kx1);
                ic = 0;
#if TG_USE_DSP
                if (fast3 && ky1 - ky0 == 3 && kx1 - kx0 == 3) {
                    const int8_t *xb = in_b + (int32_t)((y0 * p->in_w + x0) * p->in_c);
                    for (; ic < p->in_c; ic += TG_DW_CHUNK) {
                        const int32_t nch = tg_min32(TG_DW_CHUNK, p->in_c - ic);
                        int32_t acc[TG_DW_CHUNK];
                        tg_dw3x3(xb + ic, TG_WP(p->w16) + (ic / 4) * 18, nch / 4, o9, off2,
                                 p->bias != NULL ? p->bias + ic : NULL, acc);
                        tg_rq_row(&r, acc, 1, nch, ic, out + ic, NULL);
                    }
                }
                if (dm == 1 && ky1 > ky0 && kx1 > kx0) {
                    const int8_t *xb = in_b + (int32_t)(((y0 + p->dilation_h * ky0) * p->in_w + x0 +
                                                         p->dilation_w * kx0) * p->in_c);
                    const int8_t *wb = p->weights + (int32_t)((ky0 * p->filter_w + kx0) * p->out_c);
                    for (; ic + 4 <= p->in_c; ic += 4) {
                        int32_t acc[4] = {0, 0, 0, 0};
                        if (p->bias != NULL) {
                            acc[0] = p->bias[ic];
                            acc[1] = p->bias[ic + 1];
                            acc[2] = p->bias[ic + 2];
                            acc[3] = p->bias[ic + 3];
                        }
                        tg_dw4(xb + ic, wb + ic, ky1 - ky0, kx1 - kx0, steps, off2, acc);
                        tg_rq_row(&r, acc, 1, 4, ic, out + ic, NULL);
                    }
                }
#endif
                for (; ic < p->in_c; ic++) {
                    for (m = 0; m < dm; m++) {
                        const int32_t oc = ic * dm + m;
                        int32_t acc = 0;
                        for (ky = ky0; ky < ky1; ky++) {
                            const int32_t iy = y0 + p->dilation_h * ky;
                            for (kx = kx0; kx < kx1; kx++) {
                                const int32_t ix = x0 + p->dilation_w * kx;
                                const int32_t xval = in_b[(iy * p->in_w + ix) * p->in_c + ic];
                                const int32_t wval = p->weights[(ky * p->filter_w + kx) * p->out_c + oc];
                                acc += wval * (xval + p->input_offset);
                            }
                        }
                        if (p->bias != NULL) {
                            acc += p->bias[oc];
                        }
                        tg_rq_row(&r, &acc, 1, 1, oc, out + oc, NULL);
                    }
                }
            }
        }
    }
}

/* ==== pooling ============================================================= */

/* Both pools walk the same clipped windows (TFLM's reference pooling: the window is cut to
 * the input, padding never counts); they differ only in how a window is reduced. */
static void tg_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output, int is_max)
{
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->channels);
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = tg_max32(0, -y0);
            const int32_t fy1 = tg_min32(p->filter_h, p->in_h - y0);
            for (ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = tg_max32(0, -x0);
                const int32_t fx1 = tg_min32(p->filter_w, p->in_w - x0);
                const int32_t count = (fy1 - fy0) * (fx1 - fx0);
                for (c = 0; c < p->channels; c++) {
                    int32_t acc = is_max ? -128 : 0;
                    for (fy = fy0; fy < fy1; fy++) {
                        for (fx = fx0; fx < fx1; fx++) {
                            const int32_t v = in_b[((y0 + fy) * p->in_w + (x0 + fx)) * p->channels + c];
                            acc = is_max ? tg_max32(acc, v) : acc + v;
                        }
                    }
                    if (!is_max) {
                        /* count > 0: tinygen only emits windows that overlap the input. */
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    *output++ = tg_clamp_to_s8(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void tg_avg_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output)
{
    tg_pool_s8(p, input, output, 0);
}

void tg_max_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output)
{
    tg_pool_s8(p, input, output, 1);
}

/* ==== SOFTMAX ============================================================= */

void tg_softmax_s8(const tg_softmax_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t i, c;
    for (i = 0; i < p->outer; i++) {
        const int8_t *in = input + (int32_t)(i * p->depth);
        int8_t *out = output + (int32_t)(i * p->depth);
        int32_t max_in_row = -128;
        int32_t sum_of_exps = 0; /* 12 integer bits */
        int32_t headroom_plus_one, num_bits_over_unit, shifted_scale, exponent;
        for (c = 0; c < p->depth; c++) {
            max_in_row = tg_max32(max_in_row, in[c]);
        }
        for (c = 0; c < p->depth; c++) {
            const int32_t diff = (int32_t)in[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = tg_mbqm(diff, p->input_multiplier, p->input_left_shift);
                sum_of_exps += tg_rdbpot(tg_exp_negative(scaled, 5), 12);
            }
        }
        /* Reciprocal of the sum (>= 1.0, so the leading-zero count is <= 12). */
        headroom_plus_one = tg_clz32((uint32_t)sum_of_exps);
        num_bits_over_unit = 12 - headroom_plus_one;
        shifted_scale = tg_one_over_one_plus_x(
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - 0x80000000u));
        exponent = num_bits_over_unit + 31 - 8;
        for (c = 0; c < p->depth; c++) {
            const int32_t diff = (int32_t)in[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = tg_mbqm(diff, p->input_multiplier, p->input_left_shift);
                const int32_t e = tg_exp_negative(scaled, 5);
                const int32_t unsat = tg_rdbpot(tg_srdhm(shifted_scale, e), exponent);
                out[c] = tg_clamp_to_s8(unsat - 128, -128, 127);
            } else {
                out[c] = -128;
            }
        }
    }
}

/* ==== LOGISTIC / TANH ===================================================== */

void tg_logistic_s8(const tg_sigmoid_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; i++) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = -128;
        } else if (x >= p->input_range_radius) {
            output[i] = 127;
        } else {
            const int32_t q4 = tg_mbqm(x, p->input_multiplier, p->input_left_shift);
            const int32_t q0 = tg_fp_logistic(q4, 4);
            output[i] = tg_clamp_to_s8(tg_rdbpot(q0, 23) - 128, -128, 127);
        }
    }
}

void tg_tanh_s8(const tg_sigmoid_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; i++) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = -128;
        } else if (x >= p->input_range_radius) {
            output[i] = 127;
        } else {
            const int32_t q4 = tg_mbqm(x, p->input_multiplier, p->input_left_shift);
            const int32_t q0 = tg_fp_tanh(q4, 4);
            output[i] = tg_clamp_to_s8(tg_rdbpot(q0, 24), -128, 127);
        }
    }
}

/* ==== ADD / MUL =========================================================== */

static int8_t tg_add_one(const tg_add_params_t *p, int32_t a, int32_t b)
{
    const int32_t sa = tg_shl32(a + p->input1_offset, p->left_shift);
    const int32_t sb = tg_shl32(b + p->input2_offset, p->left_shift);
    const int32_t ra = tg_mbqm(sa, p->input1_multiplier, p->input1_shift);
    const int32_t rb = tg_mbqm(sb, p->input2_multiplier, p->input2_shift);
    const int32_t out = tg_mbqm(ra + rb, p->output_multiplier, p->output_shift) + p->output_offset;
    return tg_clamp_to_s8(out, p->act_min, p->act_max);
}

static int8_t tg_mul_one(const tg_mul_params_t *p, int32_t a, int32_t b)
{
    const int32_t prod = (a + p->input1_offset) * (b + p->input2_offset);
    const int32_t out = p->output_offset + tg_mbqm(prod, p->output_multiplier, p->output_shift);
    return tg_clamp_to_s8(out, p->act_min, p->act_max);
}

/* Advance an N-d index (last dimension fastest) and the two input offsets. */
static void tg_bcast_next(const tg_broadcast_t *bc, int32_t *idx, int32_t *oa, int32_t *ob)
{
    int32_t d;
    for (d = bc->rank - 1; d >= 0; d--) {
        idx[d]++;
        *oa += bc->a_strides[d];
        *ob += bc->b_strides[d];
        if (idx[d] < bc->out_dims[d]) {
            return;
        }
        *oa -= bc->a_strides[d] * bc->out_dims[d];
        *ob -= bc->b_strides[d] * bc->out_dims[d];
        idx[d] = 0;
    }
}

void tg_add_s8(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    int32_t i;
    if (p->bcast.rank == 0) {
        for (i = 0; i < p->size; i++) {
            output[i] = tg_add_one(p, input1[i], input2[i]);
        }
    } else {
        int32_t idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t oa = 0, ob = 0;
        for (i = 0; i < p->size; i++) {
            output[i] = tg_add_one(p, input1[oa], input2[ob]);
            tg_bcast_next(&p->bcast, idx, &oa, &ob);
        }
    }
}

void tg_mul_s8(const tg_mul_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    int32_t i;
    if (p->bcast.rank == 0) {
        for (i = 0; i < p->size; i++) {
            output[i] = tg_mul_one(p, input1[i], input2[i]);
        }
    } else {
        int32_t idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t oa = 0, ob = 0;
        for (i = 0; i < p->size; i++) {
            output[i] = tg_mul_one(p, input1[oa], input2[ob]);
            tg_bcast_next(&p->bcast, idx, &oa, &ob);
        }
    }
}

/* ==== requantize / clamp ================================================== */

void tg_requantize_s8(const tg_requant_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; i++) {
        const int32_t v = tg_mbqm((int32_t)input[i] - p->input_zero_point, p->multiplier, p->shift) +
                          p->output_zero_point;
        output[i] = tg_clamp_to_s8(v, p->act_min, p->act_max);
    }
}

void tg_clamp_s8(int32_t size, int8_t lo, int8_t hi, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        const int8_t v = input[i];
        output[i] = v > hi ? hi : (v < lo ? lo : v);
    }
}

/* ==== PAD ================================================================= */

void tg_pad_s8(const tg_pad_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t out_strides[TG_MAX_DIMS];
    int32_t idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    const int32_t last = p->rank - 1;
    const int32_t row = p->in_dims[last];
    int32_t rows = 1;
    int32_t d, r;
    out_strides[last] = 1;
    for (d = last - 1; d >= 0; d--) {
        out_strides[d] = out_strides[d + 1] * p->out_dims[d + 1];
    }
    for (d = 0; d < last; d++) {
        rows *= p->in_dims[d];
    }
    memset(output, (int)(int8_t)p->pad_value, (size_t)p->out_size);
    if (row == 0) {
        return;
    }
    for (r = 0; r < rows; r++) {
        int32_t off = p->before[last];
        for (d = 0; d < last; d++) {
            off += (idx[d] + p->before[d]) * out_strides[d];
        }
        memcpy(output + off, input + (int32_t)(r * row), (size_t)row);
        for (d = last - 1; d >= 0; d--) {
            if (++idx[d] < p->in_dims[d]) {
                break;
            }
            idx[d] = 0;
        }
    }
}

/* ==== MEAN ================================================================ */

void tg_mean_s8(const tg_mean_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t kidx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t n_out = 1;
    int32_t o, d, r;
    for (d = 0; d < p->kept_rank; d++) {
        n_out *= p->kept_dims[d];
    }
    for (o = 0; o < n_out; o++) {
        int32_t ridx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t base = 0;
        int32_t roff = 0;
        int32_t sum = 0;
        int64_t shifted;
        int32_t v;
        for (d = 0; d < p->kept_rank; d++) {
            base += kidx[d] * p->kept_strides[d];
        }
        for (r = 0; r < p->num_reduced; r++) {
            sum += input[base + roff];
            for (d = p->red_rank - 1; d >= 0; d--) {
                roff += p->red_strides[d];
                if (++ridx[d] < p->red_dims[d]) {
                    break;
                }
                roff -= p->red_strides[d] * p->red_dims[d];
                ridx[d] = 0;
            }
        }
        /* The reference subtracts zero_point * count in 64 bits, then
         * narrows to 32 bits. */
        shifted = (int64_t)sum - (int64_t)p->input_zero_point * (int64_t)p->num_reduced;
        v = tg_mbqm((int32_t)shifted, p->multiplier, p->shift) + p->output_zero_point;
        output[o] = tg_clamp_to_s8(v, -128, 127);
        for (d = p->kept_rank - 1; d >= 0; d--) {
            if (++kidx[d] < p->kept_dims[d]) {
                break;
            }
            kidx[d] = 0;
        }
    }
}

/* ==== CONCATENATION / copy ================================================ */

void tg_concat_s8(int32_t outer, int32_t n_inputs, const int8_t *const *inputs,
                  const int32_t *inner_bytes, int8_t *output)
{
    int32_t o, i;
    for (o = 0; o < outer; o++) {
        for (i = 0; i < n_inputs; i++) {
            const int32_t n = inner_bytes[i];
            memcpy(output, inputs[i] + (int32_t)(o * n), (size_t)n);
            output += n;
        }
    }
}

void tg_copy_s8(int32_t size, const int8_t *input, int8_t *output)
{
    if (input != output) {
        memmove(output, input, (size_t)size);
    }
}
