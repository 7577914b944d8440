/*
 * tg_elementwise.c -- ADD and MUL with broadcasting, requantization (RELU,
 * QUANTIZE) and clamping (RELU6); int8, see tg_kernels.h.
 *
 * Also SUB, SQUARED_DIFFERENCE, MINIMUM / MAXIMUM and PRELU (below).
 *
 * Bit-exact with the TensorFlow Lite Micro reference kernels.
 */
#include <stdint.h>

#include "tg_fixedpoint.h"
#include "tg_index.h"
#include "tg_kernels.h"

/* ==== ADD / MUL =========================================================== */

static int8_t tg_add_one(const tg_add_params_t *p, int32_t a, int32_t b)
{
    const int32_t sa = tg_shl32(a + p->input1_offset, p->left_shift);
    const int32_t sb = tg_shl32(b + p->input2_offset, p->left_shift);
    const int32_t ra = tg_multiply_by_quantized_multiplier(sa, p->input1_multiplier, p->input1_shift);
    const int32_t rb = tg_multiply_by_quantized_multiplier(sb, p->input2_multiplier, p->input2_shift);
    const int32_t out =
        tg_multiply_by_quantized_multiplier(ra + rb, p->output_multiplier, p->output_shift) + p->output_offset;
    return tg_clamp_to_s8(out, p->act_min, p->act_max);
}

static int8_t tg_mul_one(const tg_mul_params_t *p, int32_t a, int32_t b)
{
    const int32_t prod = (a + p->input1_offset) * (b + p->input2_offset);
    const int32_t out =
        p->output_offset + tg_multiply_by_quantized_multiplier(prod, p->output_multiplier, p->output_shift);
    return tg_clamp_to_s8(out, p->act_min, p->act_max);
}

/* ADD from the fused constants: each input onto the common scale and the sum onto the
 * output's, 6 instructions each (tg_rq_fused) instead of a 64-bit multiply and two
 * rounding steps each: ResNet-8's residual ADDs ran ~110 instructions per element. */
TG_INLINE int8_t tg_add_one_fused(const int32_t *k, int32_t off1, int32_t off2, int32_t left, int32_t a,
                                  int32_t b, int32_t lo, int32_t hi)
{
    const int32_t ra = tg_rq_fused(tg_shl32(a + off1, left), k[0], k[1], k[2], k[3]);
    const int32_t rb = tg_rq_fused(tg_shl32(b + off2, left), k[4], k[5], k[6], k[7]);
    return tg_rq_clamp(tg_rq_fused(ra + rb, k[8], k[9], k[10], k[11]), lo, hi, 0);
}

static void tg_add_fused_run(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2,
                             int8_t *output, int32_t n)
{
    const int32_t *k = p->rq_fused;
    const int32_t off1 = p->input1_offset, off2 = p->input2_offset, left = p->left_shift;
    const int32_t lo = p->act_min, hi = p->act_max;
    int32_t i;
    for (i = 0; i < n; i++) {
        output[i] = tg_add_one_fused(k, off1, off2, left, input1[i], input2[i], lo, hi);
    }
}

void tg_add_s8(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    const tg_broadcast_t *bc = &p->bcast;
    int32_t i;
    if (bc->rank == 0 && p->rq_fused != NULL) {
        tg_add_fused_run(p, input1, input2, output, p->size);
    } else if (bc->rank == 0) {
        for (i = 0; i < p->size; i++) {
            output[i] = tg_add_one(p, input1[i], input2[i]);
        }
    } else {
        int32_t idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t off_a = 0, off_b = 0;
        for (i = 0; i < p->size; i++) {
            output[i] = p->rq_fused != NULL
                            ? tg_add_one_fused(p->rq_fused, p->input1_offset, p->input2_offset, p->left_shift,
                                               input1[off_a], input2[off_b], p->act_min, p->act_max)
                            : tg_add_one(p, input1[off_a], input2[off_b]);
            tg_index_next(bc->rank, bc->out_dims, idx, bc->a_strides, &off_a, bc->b_strides, &off_b);
        }
    }
}

void tg_mul_s8(const tg_mul_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    const tg_broadcast_t *bc = &p->bcast;
    int32_t i;
    if (bc->rank == 0) {
        for (i = 0; i < p->size; i++) {
            output[i] = tg_mul_one(p, input1[i], input2[i]);
        }
    } else {
        int32_t idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t off_a = 0, off_b = 0;
        for (i = 0; i < p->size; i++) {
            output[i] = tg_mul_one(p, input1[off_a], input2[off_b]);
            tg_index_next(bc->rank, bc->out_dims, idx, bc->a_strides, &off_a, bc->b_strides, &off_b);
        }
    }
}

/* ==== requantize / clamp ================================================== */

void tg_requantize_s8(const tg_requant_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; i++) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        const int32_t v = tg_multiply_by_quantized_multiplier(x, p->multiplier, p->shift) + p->output_zero_point;
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

/* ==== SUB, SQUARED_DIFFERENCE, MINIMUM / MAXIMUM, PRELU =================== */

/* out[i] = ONE(p, a, b) over the output in row-major order, a and b at the
 * broadcast offsets of p->bcast (a macro so that the per-element function
 * inlines into each kernel's loop). */
#define TG_BROADCAST_LOOP(p, in1, in2, out, ONE)                                                   \
    do {                                                                                           \
        const tg_broadcast_t *bc_ = &(p)->bcast;                                                   \
        int32_t i_;                                                                                \
        if (bc_->rank == 0) {                                                                      \
            for (i_ = 0; i_ < (p)->size; i_++) {                                                   \
                (out)[i_] = ONE((p), (in1)[i_], (in2)[i_]);                                        \
            }                                                                                      \
        } else {                                                                                   \
            int32_t idx_[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};                                        \
            int32_t oa_ = 0, ob_ = 0;                                                              \
            for (i_ = 0; i_ < (p)->size; i_++) {                                                   \
                (out)[i_] = ONE((p), (in1)[oa_], (in2)[ob_]);                                      \
                tg_index_next(bc_->rank, bc_->out_dims, idx_, bc_->a_strides, &oa_, bc_->b_strides, &ob_); \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* Both inputs on the common scale of ADD's parameters (left shift, then the
 * per-input multiplier, which is below one). */
static int32_t tg_scaled(int32_t v, int32_t offset, int32_t left_shift, int32_t multiplier, int32_t shift)
{
    return tg_multiply_by_quantized_multiplier(tg_shl32(v + offset, left_shift), multiplier, shift);
}

static int8_t tg_sub_one(const tg_add_params_t *p, int32_t a, int32_t b)
{
    const int32_t d = tg_scaled(a, p->input1_offset, p->left_shift, p->input1_multiplier, p->input1_shift) -
                      tg_scaled(b, p->input2_offset, p->left_shift, p->input2_multiplier, p->input2_shift);
    const int32_t out = tg_multiply_by_quantized_multiplier(d, p->output_multiplier, p->output_shift) + p->output_offset;
    return tg_clamp_to_s8(out, p->act_min, p->act_max);
}

static int8_t tg_sqdiff_one(const tg_add_params_t *p, int32_t a, int32_t b)
{
    /* |d| < 2^15 (each scaled input is below 255 * 2^7 / 2), so d * d fits int32. */
    const int32_t d = tg_scaled(a, p->input1_offset, p->left_shift, p->input1_multiplier, p->input1_shift) -
                      tg_scaled(b, p->input2_offset, p->left_shift, p->input2_multiplier, p->input2_shift);
    const int32_t out =
        tg_multiply_by_quantized_multiplier(d * d, p->output_multiplier, p->output_shift) + p->output_offset;
    return tg_clamp_to_s8(out, p->act_min, p->act_max);
}

void tg_sub_s8(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    TG_BROADCAST_LOOP(p, input1, input2, output, tg_sub_one);
}

void tg_squared_difference_s8(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2,
                              int8_t *output)
{
    TG_BROADCAST_LOOP(p, input1, input2, output, tg_sqdiff_one);
}

#define TG_MIN_(p, a, b) ((int8_t)((a) < (b) ? (a) : (b)))
#define TG_MAX_(p, a, b) ((int8_t)((a) > (b) ? (a) : (b)))

void tg_minimum_s8(const tg_minmax_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    TG_BROADCAST_LOOP(p, input1, input2, output, TG_MIN_);
}

void tg_maximum_s8(const tg_minmax_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    TG_BROADCAST_LOOP(p, input1, input2, output, TG_MAX_);
}

static int8_t tg_prelu_one(const tg_prelu_params_t *p, int32_t x, int32_t alpha)
{
    const int32_t v = x + p->input_offset;
    int32_t out;
    if (v >= 0) {
        out = tg_multiply_by_quantized_multiplier(v, p->identity_multiplier, p->identity_shift);
    } else {
        /* |v * alpha| <= 255 * 255 */
        out = tg_multiply_by_quantized_multiplier(v * (alpha + p->alpha_offset), p->alpha_multiplier,
                                                  p->alpha_shift);
    }
    return tg_clamp_to_s8(out + p->output_offset, -128, 127);
}

void tg_prelu_s8(const tg_prelu_params_t *p, const int8_t *input, const int8_t *alpha, int8_t *output)
{
    TG_BROADCAST_LOOP(p, input, alpha, output, tg_prelu_one);
}
