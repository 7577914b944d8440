/*
 * tg_pool.c -- AVERAGE_POOL_2D and MAX_POOL_2D (int8, NHWC): averages and
 * maxima over windows (see tg_kernels.h; MEAN over axes is in tg_reduce.c).
 *
 * Bit-exact with the TensorFlow Lite Micro reference kernels.
 */
#include <stdint.h>

#include "tg_dsp.h"
#include "tg_fixedpoint.h"
#include "tg_kernels.h"

/* ==== pooling ============================================================= */

/* TFLM's rounding of a window sum to the average (count > 0). */
TG_INLINE int32_t tg_avg_round(int32_t acc, int32_t count)
{
    return acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
}

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
                        acc = tg_avg_round(acc, count);
                    }
                    *output++ = tg_clamp_to_s8(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

#if TG_USE_DSP
/* The DSP path of the average pool: 4 channels per 32-bit load, summed as two int16
 * pairs by SXTAB16 (channels 0, 2 and 1, 3). A window of at most 256 taps cannot
 * leave int16 (|sum| <= 256 * 128), so the sums are exact; larger windows, and the
 * last in_c % 4 channels, take the per-channel walk. The channel loop is outside the
 * tap loop: one load per 4 values instead of one indexed byte load per value. */
static void tg_avg_pool_window_4ch(const int8_t *x, int32_t rows, int32_t cols, int32_t row_step, int32_t col_step,
                                   int32_t n4, int32_t count, int32_t lo, int32_t hi, int8_t *out)
{
    int32_t c;
    for (c = 0; c < n4; c += 4, x += 4, out += 4) {
        uint32_t s02 = 0, s13 = 0;
        const int8_t *xr = x;
        int32_t r, k;
        for (r = rows; r > 0; r--, xr += row_step) {
            const int8_t *xp = xr;
            for (k = cols; k > 0; k--, xp += col_step) {
                const uint32_t v = tg_load_u32(xp);
                s02 = tg_sxtab16(s02, v);
                s13 = tg_sxtab16_ror8(s13, v);
            }
        }
        out[0] = tg_clamp_to_s8(tg_avg_round((int32_t)(int16_t)(s02 & 0xFFFFu), count), lo, hi);
        out[1] = tg_clamp_to_s8(tg_avg_round((int32_t)(int16_t)(s13 & 0xFFFFu), count), lo, hi);
        out[2] = tg_clamp_to_s8(tg_avg_round((int32_t)(int16_t)(s02 >> 16), count), lo, hi);
        out[3] = tg_clamp_to_s8(tg_avg_round((int32_t)(int16_t)(s13 >> 16), count), lo, hi);
    }
}
#endif

void tg_avg_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output)
{
#if TG_USE_DSP
    const int32_t ch = p->channels;
    const int32_t n4 = ch & ~3;
    int32_t b, oy, ox, c, fy, fx;
    if (n4 == 0) {
        tg_pool_s8(p, input, output, 0);
        return;
    }
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * ch);
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = tg_max32(0, -y0);
            const int32_t fy1 = tg_min32(p->filter_h, p->in_h - y0);
            for (ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = tg_max32(0, -x0);
                const int32_t fx1 = tg_min32(p->filter_w, p->in_w - x0);
                const int32_t count = (fy1 - fy0) * (fx1 - fx0);
                const int8_t *xw = in_b + (int32_t)(((y0 + fy0) * p->in_w + (x0 + fx0)) * ch);
                c = 0;
                if (count <= 256) {
                    tg_avg_pool_window_4ch(xw, fy1 - fy0, fx1 - fx0, p->in_w * ch, ch, n4, count, p->act_min,
                                           p->act_max, output);
                    c = n4;
                }
                for (; c < ch; c++) {
                    int32_t acc = 0;
                    for (fy = fy0; fy < fy1; fy++) {
                        for (fx = fx0; fx < fx1; fx++) {
                            acc += in_b[((y0 + fy) * p->in_w + (x0 + fx)) * ch + c];
                        }
                    }
                    output[c] = tg_clamp_to_s8(tg_avg_round(acc, count), p->act_min, p->act_max);
                }
                output += ch;
            }
        }
    }
#else
    tg_pool_s8(p, input, output, 0);
#endif
}

void tg_max_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output)
{
    tg_pool_s8(p, input, output, 1);
}
