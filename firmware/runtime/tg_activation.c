/*
 * tg_activation.c -- SOFTMAX, LOGISTIC and TANH (int8; see tg_kernels.h), and
 * the gemmlowp fixed-point exp / reciprocal functions only they use.
 *
 * Bit-exact with the TensorFlow Lite Micro reference kernels: the same
 * fixed-point steps in the same order.
 */
#include <stdint.h>

#include "tg_fixedpoint.h"
#include "tg_kernels.h"

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on a raw int32. */
static int32_t tg_sat_mul_pot(int32_t x, int32_t exponent)
{
    int32_t threshold;
    if (exponent == 0) {
        return x;
    }
    if (exponent < 0) {
        return tg_rounding_divide_by_pot(x, -exponent);
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
    const int32_t x2 = tg_sat_rounding_doubling_high_mul(x, x);
    const int32_t x3 = tg_sat_rounding_doubling_high_mul(x2, x);
    const int32_t x4 = tg_sat_rounding_doubling_high_mul(x2, x2);
    const int32_t x4_over_4 = tg_sat_mul_pot(x4, -2);
    const int32_t poly =
        tg_sat_mul_pot(tg_sat_rounding_doubling_high_mul(x4_over_4 + x3, one_third) + x2, -1);
    return exp_minus_one_eighth + tg_sat_rounding_doubling_high_mul(exp_minus_one_eighth, x + poly);
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
                result = tg_sat_rounding_doubling_high_mul(result, barrel[e + 2]);
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
    int32_t x = c48_17 + tg_sat_rounding_doubling_high_mul(half_denominator, cneg32_17);
    int32_t i;
    for (i = 0; i < 3; i++) {
        const int32_t hdx = tg_sat_rounding_doubling_high_mul(half_denominator, x);
        const int32_t one_minus = one_q2 - hdx;
        x = x + tg_sat_mul_pot(tg_sat_rounding_doubling_high_mul(x, one_minus), 2);
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
                const int32_t scaled =
                    tg_multiply_by_quantized_multiplier(diff, p->input_multiplier, p->input_left_shift);
                sum_of_exps += tg_rounding_divide_by_pot(tg_exp_negative(scaled, 5), 12);
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
                const int32_t scaled =
                    tg_multiply_by_quantized_multiplier(diff, p->input_multiplier, p->input_left_shift);
                const int32_t e = tg_exp_negative(scaled, 5);
                const int32_t unsat = tg_rounding_divide_by_pot(
                    tg_sat_rounding_doubling_high_mul(shifted_scale, e), exponent);
                out[c] = tg_clamp_to_s8(unsat - 128, -128, 127);
            } else {
                out[c] = -128;
            }
        }
    }
}

/* ==== LOGISTIC / TANH ===================================================== */

/* LOGISTIC and TANH share TFLM's int8 structure: saturate outside the input radius, else
 * rescale to Q4.27 and evaluate in fixed point; they differ only in the function and in
 * how its Q0.31 result maps onto int8 (logistic: [0, 1) -> -128..127; tanh: (-1, 1)). */
static void tg_sigmoid_like_s8(const tg_sigmoid_params_t *p, const int8_t *input, int8_t *output,
                               int is_tanh)
{
    int32_t i;
    for (i = 0; i < p->size; i++) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = -128;
        } else if (x >= p->input_range_radius) {
            output[i] = 127;
        } else {
            const int32_t q4 =
                tg_multiply_by_quantized_multiplier(x, p->input_multiplier, p->input_left_shift);
            const int32_t y = is_tanh ? tg_rounding_divide_by_pot(tg_fp_tanh(q4, 4), 24)
                                      : tg_rounding_divide_by_pot(tg_fp_logistic(q4, 4), 23) - 128;
            output[i] = tg_clamp_to_s8(y, -128, 127);
        }
    }
}

void tg_logistic_s8(const tg_sigmoid_params_t *p, const int8_t *input, int8_t *output)
{
    tg_sigmoid_like_s8(p, input, output, 0);
}

void tg_tanh_s8(const tg_sigmoid_params_t *p, const int8_t *input, int8_t *output)
{
    tg_sigmoid_like_s8(p, input, output, 1);
}


/* ==== LEAKY_RELU, HARD_SWISH, ABS ========================================== */

void tg_leaky_relu_s8(const tg_leaky_relu_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; i++) {
        const int32_t v = (int32_t)input[i] - p->input_zero_point;
        const int32_t r = v >= 0 ? tg_multiply_by_quantized_multiplier(v, p->identity_multiplier, p->identity_shift)
                                 : tg_multiply_by_quantized_multiplier(v, p->alpha_multiplier, p->alpha_shift);
        output[i] = tg_clamp_to_s8(r + p->output_zero_point, -128, 127);
    }
}

/* HARD_SWISH works on int16 values the way TFLM's reference does: gemmlowp's
 * rounding doubling high multiply on int16, a truncating (non-rounding)
 * doubling high multiply, and saturating left shifts. */
static int32_t tg_rdhm16(int32_t a, int32_t b)
{
    int32_t ab;
    if (a == -32768 && b == -32768) {
        return 32767;
    }
    ab = a * b;
    return (ab + (ab >= 0 ? (1 << 14) : 1 - (1 << 14))) / (1 << 15); /* C division truncates, as gemmlowp's */
}

static int32_t tg_dhm16(int32_t a, int32_t b)
{
    if (a == -32768 && b == -32768) {
        return 32767;
    }
    return (a * b) / (1 << 15);
}

static int32_t tg_sat_shl16(int32_t v, int32_t amount)
{
    const int64_t r = (int64_t)v * ((int64_t)1 << amount);
    return r > 32767 ? 32767 : (r < -32768 ? -32768 : (int32_t)r);
}

void tg_hard_swish_s8(const tg_hard_swish_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; i++) {
        const int32_t hires = ((int32_t)input[i] - p->input_zero_point) * 128; /* |.| <= 255 * 128 */
        const int32_t scaled = tg_rdhm16(hires, p->output_multiplier);
        int32_t relu = hires;
        int32_t out;
        if (p->reluish_exponent > 0) {
            relu = tg_sat_shl16(relu, p->reluish_exponent - 1);
        }
        relu = tg_rdhm16(relu, p->reluish_multiplier);
        if (p->reluish_exponent > 0) {
            relu = tg_sat_shl16(relu, 1);
        } else if (p->reluish_exponent < 0) {
            relu = tg_rounding_divide_by_pot(relu, -p->reluish_exponent);
        }
        relu = (relu + 32768) >> 1; /* [-1, 1) on Q15 -> [0, 1) */
        out = tg_rounding_divide_by_pot(tg_dhm16(relu, scaled), -p->output_exponent);
        output[i] = tg_clamp_to_s8(out + p->output_zero_point, -128, 127);
    }
}

void tg_abs_s8(const tg_abs_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; i++) {
        int32_t v = (int32_t)input[i] - p->input_zero_point;
        v = v < 0 ? -v : v;
        if (p->rescale) {
            v = tg_multiply_by_quantized_multiplier(v, p->multiplier, p->shift);
        }
        output[i] = tg_clamp_to_s8(v + p->output_zero_point, -128, 127);
    }
}
