/*
 * tg_resize.c -- RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR (NHWC int8, see
 * tg_kernels.h). The source rows / columns and the bilinear weights are
 * tables computed by tinygen exactly as TFLM computes them per pixel; the
 * bilinear blend is TFLM's integer one: weights in 1/1024, a 2^20-scaled sum
 * rounded half away from zero.
 */
#include <string.h>

#include "tg_kernels.h"

void tg_resize_nearest_s8(const tg_resize_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t ch = p->channels;
    const int32_t row = p->in_w * ch;
    int32_t b, y, x;
    for (b = 0; b < p->batches; b++) {
        const int8_t *img = input + b * p->in_h * row;
        for (y = 0; y < p->out_h; y++) {
            const int8_t *src = img + p->ys[y] * row;
            for (x = 0; x < p->out_w; x++) {
                memcpy(output, src + p->xs[x] * ch, (size_t)ch);
                output += ch;
            }
        }
    }
}

void tg_resize_bilinear_s8(const tg_resize_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t ch = p->channels;
    const int32_t row = p->in_w * ch;
    int32_t b, y, x, c;
    for (b = 0; b < p->batches; b++) {
        const int8_t *img = input + b * p->in_h * row;
        for (y = 0; y < p->out_h; y++) {
            const int8_t *r0 = img + p->ys[3 * y] * row;
            const int8_t *r1 = img + p->ys[3 * y + 1] * row;
            const int64_t wy1 = p->ys[3 * y + 2];
            const int64_t wy0 = 1024 - wy1;
            for (x = 0; x < p->out_w; x++) {
                const int32_t c0 = p->xs[3 * x] * ch;
                const int32_t c1 = p->xs[3 * x + 1] * ch;
                const int64_t wx1 = p->xs[3 * x + 2];
                const int64_t wx0 = 1024 - wx1;
                for (c = 0; c < ch; c++) {
                    const int64_t sum = r0[c0 + c] * wy0 * wx0 + r1[c0 + c] * wy1 * wx0
                                      + r0[c1 + c] * wy0 * wx1 + r1[c1 + c] * wy1 * wx1;
                    const int64_t half = sum > 0 ? ((int64_t)1 << 19) : -((int64_t)1 << 19);
                    /* C division truncates toward zero, as TFLM's does */
                    *output++ = (int8_t)((sum + half) / ((int64_t)1 << 20));
                }
            }
        }
    }
}
