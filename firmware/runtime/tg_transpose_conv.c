/*
 * tg_transpose_conv.c -- TRANSPOSE_CONV (Conv2DTranspose), NHWC int8 with
 * per-channel int8 weights [out_c][fh][fw][in_c] (see tg_kernels.h).
 *
 * Like TFLM, every input pixel scatters its products into an int32 scratch
 * image of the whole output; then each sum gets the bias and is requantized.
 * tinygen checked that no sum can leave int32, so the order of the additions
 * does not matter and the result is TFLM's.
 */
#include <string.h>

#include "tg_kernels.h"

void tg_transpose_conv_s8(const tg_transpose_conv_params_t *p, const int8_t *input, int8_t *output,
                          int32_t *scratch)
{
    const int32_t in_c = p->in_c, out_c = p->out_c;
    const int32_t out_row = p->out_w * out_c;
    const int32_t filt = p->filter_h * p->filter_w * in_c; /* one output channel's weights */
    int32_t b, iy, ix, fy, fx, oc, ic, i;
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_img = input + b * p->in_h * p->in_w * in_c;
        int8_t *out_img = output + b * p->out_h * out_row;
        memset(scratch, 0, (size_t)(p->out_h * out_row) * sizeof(int32_t));
        for (iy = 0; iy < p->in_h; iy++) {
            for (ix = 0; ix < p->in_w; ix++) {
                const int8_t *px = in_img + (iy * p->in_w + ix) * in_c;
                for (fy = 0; fy < p->filter_h; fy++) {
                    const int32_t oy = iy * p->stride_h - p->pad_h + fy;
                    if (oy < 0 || oy >= p->out_h) {
                        continue;
                    }
                    for (fx = 0; fx < p->filter_w; fx++) {
                        const int32_t ox = ix * p->stride_w - p->pad_w + fx;
                        int32_t *acc;
                        const int8_t *w;
                        if (ox < 0 || ox >= p->out_w) {
                            continue;
                        }
                        acc = scratch + oy * out_row + ox * out_c;
                        w = p->weights + (fy * p->filter_w + fx) * in_c;
                        for (oc = 0; oc < out_c; oc++) {
                            int32_t sum = 0;
                            for (ic = 0; ic < in_c; ic++) {
                                sum += (px[ic] + p->input_offset) * w[ic];
                            }
                            acc[oc] += sum;
                            w += filt;
                        }
                    }
                }
            }
        }
        for (i = 0; i < p->out_h * out_row; i++) {
            const int32_t oc_i = i % out_c;
            const int32_t k = p->per_channel ? oc_i : 0;
            int32_t acc = scratch[i];
            if (p->bias != NULL) {
                acc += p->bias[oc_i];
            }
            acc = tg_multiply_by_quantized_multiplier(acc, p->multiplier[k], p->shift[k]) + p->output_offset;
            acc = acc < p->act_min ? p->act_min : acc;
            acc = acc > p->act_max ? p->act_max : acc;
            out_img[i] = (int8_t)acc;
        }
    }
}
