/*
 * tg_elementwise.c -- ADD and MUL with broadcasting, requantization (RELU,
 * QUANTIZE) and clamping (RELU6); int8, see tg_kernels.h.
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

void tg_add_s8(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    const tg_broadcast_t *bc = &p->bcast;
    int32_t i;
    if (bc->rank == 0) {
        for (i = 0; i < p->size; i++) {
            output[i] = tg_add_one(p, input1[i], input2[i]);
        }
    } else {
        int32_t idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t off_a = 0, off_b = 0;
        for (i = 0; i < p->size; i++) {
            output[i] = tg_add_one(p, input1[off_a], input2[off_b]);
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
