/*
 * tg_pool.c -- AVERAGE_POOL_2D, MAX_POOL_2D (int8, NHWC) and MEAN: averages
 * and maxima over windows or axes (see tg_kernels.h).
 *
 * Bit-exact with the TensorFlow Lite Micro reference kernels.
 */
#include <stdint.h>

#include "tg_fixedpoint.h"
#include "tg_index.h"
#include "tg_kernels.h"

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

/* ==== MEAN ================================================================ */

void tg_mean_s8(const tg_mean_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t kept_idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t base = 0; /* input offset of the first element averaged into output o */
    int32_t n_out = 1;
    int32_t o, d, r;
    for (d = 0; d < p->kept_rank; d++) {
        n_out *= p->kept_dims[d];
    }
    for (o = 0; o < n_out; o++) {
        int32_t red_idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t red_off = 0;
        int32_t sum = 0;
        int64_t shifted;
        int32_t v;
        for (r = 0; r < p->num_reduced; r++) {
            sum += input[base + red_off];
            tg_index_next(p->red_rank, p->red_dims, red_idx, p->red_strides, &red_off, NULL, NULL);
        }
        /* The reference subtracts zero_point * count in 64 bits, then
         * narrows to 32 bits. */
        shifted = (int64_t)sum - (int64_t)p->input_zero_point * (int64_t)p->num_reduced;
        v = tg_multiply_by_quantized_multiplier((int32_t)shifted, p->multiplier, p->shift) +
            p->output_zero_point;
        output[o] = tg_clamp_to_s8(v, -128, 127);
        tg_index_next(p->kept_rank, p->kept_dims, kept_idx, p->kept_strides, &base, NULL, NULL);
    }
}
