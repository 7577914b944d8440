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
#else
#define TG_USE_DSP 0
#endif

#if defined(__GNUC__)
#define TG_INLINE static inline __attribute__((always_inline))
#else
#define TG_INLINE static inline
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

/* ==== multiply-accumulate inner loops ===================================== */

#if TG_USE_DSP
static uint32_t tg_load_u32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint32_t tg_ror8(uint32_t v) { return (v >> 8) | (v << 24); }
#endif

/* acc + sum_i w[i] * (x[i] + x_offset) */
static int32_t tg_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset, int32_t acc)
{
#if TG_USE_DSP
    const uint32_t off16 = (uint32_t)x_offset & 0xFFFFu;
    const int16x2_t off2 = (int16x2_t)((off16 << 16) | off16);
    while (n >= 4) {
        const uint32_t xv = tg_load_u32(x);
        const uint32_t wv = tg_load_u32(w);
        const int16x2_t x02 = __sxtab16(off2, (int8x4_t)xv);
        const int16x2_t x13 = __sxtab16(off2, (int8x4_t)tg_ror8(xv));
        acc = __smlad(x02, __sxtb16((int8x4_t)wv), acc);
        acc = __smlad(x13, __sxtb16((int8x4_t)tg_ror8(wv)), acc);
        x += 4;
        w += 4;
        n -= 4;
    }
#endif
    while (n > 0) {
        acc += (int32_t)*w * ((int32_t)*x + x_offset);
        x++;
        w++;
        n--;
    }
    return acc;
}

/* The same dot product against two weight rows at once (the input is unpacked once). */
static void tg_dot2_s8(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t x_offset,
                       int32_t *acc0, int32_t *acc1)
{
    int32_t a0 = *acc0;
    int32_t a1 = *acc1;
#if TG_USE_DSP
    const uint32_t off16 = (uint32_t)x_offset & 0xFFFFu;
    const int16x2_t off2 = (int16x2_t)((off16 << 16) | off16);
    while (n >= 4) {
        const uint32_t xv = tg_load_u32(x);
        const uint32_t v0 = tg_load_u32(w0);
        const uint32_t v1 = tg_load_u32(w1);
        const int16x2_t x02 = __sxtab16(off2, (int8x4_t)xv);
        const int16x2_t x13 = __sxtab16(off2, (int8x4_t)tg_ror8(xv));
        a0 = __smlad(x02, __sxtb16((int8x4_t)v0), a0);
        a0 = __smlad(x13, __sxtb16((int8x4_t)tg_ror8(v0)), a0);
        a1 = __smlad(x02, __sxtb16((int8x4_t)v1), a1);
        a1 = __smlad(x13, __sxtb16((int8x4_t)tg_ror8(v1)), a1);
        x += 4;
        w0 += 4;
        w1 += 4;
        n -= 4;
    }
#endif
    while (n > 0) {
        const int32_t xv = (int32_t)*x + x_offset;
        a0 += (int32_t)*w0 * xv;
        a1 += (int32_t)*w1 * xv;
        x++;
        w0++;
        w1++;
        n--;
    }
    *acc0 = a0;
    *acc1 = a1;
}

/* Per-channel bias, requantization, output offset and activation clamp. */
TG_INLINE int8_t tg_finish(int32_t acc, int32_t channel, const int32_t *bias, const int32_t *multiplier,
                        const int32_t *shift, int32_t per_channel, int32_t output_offset,
                        int32_t act_min, int32_t act_max)
{
    const int32_t q = per_channel ? channel : 0;
    if (bias != NULL) {
        acc += bias[channel];
    }
    acc = tg_mbqm_(acc, multiplier[q], shift[q]);
    acc += output_offset;
    return tg_clamp_to_s8(acc, act_min, act_max);
}

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

/* ==== FULLY_CONNECTED ===================================================== */

void tg_fully_connected_s8(const tg_fc_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t n = p->accum_depth;
    int32_t b;
    int32_t oc;
    for (b = 0; b < p->batches; b++) {
        const int8_t *row = input + (int32_t)(b * n);
        int8_t *out = output + (int32_t)(b * p->output_depth);
        for (oc = 0; oc + 2 <= p->output_depth; oc += 2) {
            int32_t a0 = 0;
            int32_t a1 = 0;
            tg_dot2_s8(row, p->weights + (int32_t)(oc * n), p->weights + (int32_t)((oc + 1) * n), n,
                       p->input_offset, &a0, &a1);
            out[oc] = tg_finish(a0, oc, p->bias, p->multiplier, p->shift, p->per_channel,
                                p->output_offset, p->act_min, p->act_max);
            out[oc + 1] = tg_finish(a1, oc + 1, p->bias, p->multiplier, p->shift, p->per_channel,
                                    p->output_offset, p->act_min, p->act_max);
        }
        if (oc < p->output_depth) {
            const int32_t acc = tg_dot_s8(row, p->weights + (int32_t)(oc * n), n, p->input_offset, 0);
            out[oc] = tg_finish(acc, oc, p->bias, p->multiplier, p->shift, p->per_channel,
                                p->output_offset, p->act_min, p->act_max);
        }
    }
}

/* ==== CONV_2D ============================================================= */

/* Accumulators for output channels oc (and oc + 1 when two) at one output pixel. */
static void tg_conv_pixel(const tg_conv_params_t *p, const int8_t *in_b, int32_t y0, int32_t x0,
                          int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, int32_t oc, int32_t two,
                          int32_t *acc0, int32_t *acc1)
{
    const int32_t fic = p->filter_in_c;
    const int32_t per_group = p->out_c / (p->in_c / fic);
    const int32_t group_off = (oc / per_group) * fic;
    const int32_t filter_oc_stride = p->filter_h * p->filter_w * fic;
    const int8_t *f0 = p->weights + (int32_t)(oc * filter_oc_stride);
    const int8_t *f1 = f0 + filter_oc_stride;
    /* Ungrouped and undilated along x: a filter row is one contiguous run of input. */
    const int32_t contiguous = (fic == p->in_c) && (p->dilation_w == 1);
    int32_t ky, kx;
    for (ky = ky0; ky < ky1; ky++) {
        const int32_t iy = y0 + p->dilation_h * ky;
        const int8_t *in_row = in_b + (int32_t)(iy * p->in_w * p->in_c);
        if (contiguous) {
            const int8_t *xin = in_row + (int32_t)((x0 + kx0) * p->in_c);
            const int32_t off = (ky * p->filter_w + kx0) * fic;
            const int32_t len = (kx1 - kx0) * fic;
            if (two) {
                tg_dot2_s8(xin, f0 + off, f1 + off, len, p->input_offset, acc0, acc1);
            } else {
                *acc0 = tg_dot_s8(xin, f0 + off, len, p->input_offset, *acc0);
            }
            continue;
        }
        for (kx = kx0; kx < kx1; kx++) {
            const int32_t ix = x0 + p->dilation_w * kx;
            const int8_t *xin = in_row + (int32_t)(ix * p->in_c + group_off);
            const int32_t off = (ky * p->filter_w + kx) * fic;
            if (two) {
                tg_dot2_s8(xin, f0 + off, f1 + off, fic, p->input_offset, acc0, acc1);
            } else {
                *acc0 = tg_dot_s8(xin, f0 + off, fic, p->input_offset, *acc0);
            }
        }
    }
}

void tg_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t per_group = p->out_c / (p->in_c / p->filter_in_c);
    int32_t b, oy, ox, oc;
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->in_c);
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            tg_valid_taps(y0, p->dilation_h, p->filter_h, p->in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                tg_valid_taps(x0, p->dilation_w, p->filter_w, p->in_w, &kx0, &kx1);
                for (oc = 0; oc < p->out_c; ) {
                    /* Two channels share one pass over the input when they are in the same group. */
                    const int32_t two = (oc + 1 < p->out_c) && ((oc + 1) % per_group != 0);
                    int32_t a0 = 0;
                    int32_t a1 = 0;
                    tg_conv_pixel(p, in_b, y0, x0, ky0, ky1, kx0, kx1, oc, two, &a0, &a1);
                    *output++ = tg_finish(a0, oc, p->bias, p->multiplier, p->shift, p->per_channel,
                                          p->output_offset, p->act_min, p->act_max);
                    if (two) {
                        *output++ = tg_finish(a1, oc + 1, p->bias, p->multiplier, p->shift, p->per_channel,
                                              p->output_offset, p->act_min, p->act_max);
                    }
                    oc += two ? 2 : 1;
                }
            }
        }
    }
}

/* ==== DEPTHWISE_CONV_2D =================================================== */

void tg_depthwise_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t dm = p->depth_multiplier;
    int32_t b, oy, ox, ic, m, ky, kx;
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
                if (dm == 1) {
                    /* Four channels at a time: one 32-bit load of input and of filter
                     * bytes per tap, four independent accumulators. */
                    const uint32_t off16 = (uint32_t)p->input_offset & 0xFFFFu;
                    const int16x2_t off2 = (int16x2_t)((off16 << 16) | off16);
                    for (; ic + 4 <= p->in_c; ic += 4) {
                        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                        const int32_t x_step = p->dilation_w * p->in_c;
                        for (ky = ky0; ky < ky1; ky++) {
                            const int32_t iy = y0 + p->dilation_h * ky;
                            const int8_t *xp = in_b + (int32_t)((iy * p->in_w + x0 + p->dilation_w * kx0) * p->in_c + ic);
                            const int8_t *wp = p->weights + (int32_t)((ky * p->filter_w + kx0) * p->out_c + ic);
                            for (kx = kx0; kx < kx1; kx++, xp += x_step, wp += p->out_c) {
                                const uint32_t xv = tg_load_u32(xp);
                                const uint32_t wv = tg_load_u32(wp);
                                const int16x2_t x02 = __sxtab16(off2, (int8x4_t)xv);
                                const int16x2_t x13 = __sxtab16(off2, (int8x4_t)tg_ror8(xv));
                                const int16x2_t w02 = __sxtb16((int8x4_t)wv);
                                const int16x2_t w13 = __sxtb16((int8x4_t)tg_ror8(wv));
                                a0 = __smlabb(x02, w02, a0);
                                a2 = __smlatt(x02, w02, a2);
                                a1 = __smlabb(x13, w13, a1);
                                a3 = __smlatt(x13, w13, a3);
                            }
                        }
                        out[ic + 0] = tg_finish(a0, ic + 0, p->bias, p->multiplier, p->shift, p->per_channel,
                                                p->output_offset, p->act_min, p->act_max);
                        out[ic + 1] = tg_finish(a1, ic + 1, p->bias, p->multiplier, p->shift, p->per_channel,
                                                p->output_offset, p->act_min, p->act_max);
                        out[ic + 2] = tg_finish(a2, ic + 2, p->bias, p->multiplier, p->shift, p->per_channel,
                                                p->output_offset, p->act_min, p->act_max);
                        out[ic + 3] = tg_finish(a3, ic + 3, p->bias, p->multiplier, p->shift, p->per_channel,
                                                p->output_offset, p->act_min, p->act_max);
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
                        out[oc] = tg_finish(acc, oc, p->bias, p->multiplier, p->shift, p->per_channel,
                                            p->output_offset, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

/* ==== pooling ============================================================= */

void tg_avg_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output)
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
                    int32_t acc = 0;
                    for (fy = fy0; fy < fy1; fy++) {
                        for (fx = fx0; fx < fx1; fx++) {
                            acc += in_b[((y0 + fy) * p->in_w + (x0 + fx)) * p->channels + c];
                        }
                    }
                    /* count > 0: tinygen only emits windows that overlap the input. */
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    *output++ = tg_clamp_to_s8(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void tg_max_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output)
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
                for (c = 0; c < p->channels; c++) {
                    int32_t best = -128;
                    for (fy = fy0; fy < fy1; fy++) {
                        for (fx = fx0; fx < fx1; fx++) {
                            best = tg_max32(best, in_b[((y0 + fy) * p->in_w + (x0 + fx)) * p->channels + c]);
                        }
                    }
                    *output++ = tg_clamp_to_s8(best, p->act_min, p->act_max);
                }
            }
        }
    }
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
