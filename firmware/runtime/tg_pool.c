/*
 * tg_pool.c -- AVERAGE_POOL_2D and MAX_POOL_2D (int8, NHWC): averages and
 * maxima over windows (see tg_kernels.h; MEAN over axes is in tg_reduce.c).
 *
 * Bit-exact with the TensorFlow Lite Micro reference kernels.
 */
#include <stdint.h>

#include "tg_fixedpoint.h"
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
