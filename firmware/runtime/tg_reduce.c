/*
 * tg_reduce.c -- MEAN, SUM, REDUCE_MAX and REDUCE_MIN (int8, see tg_kernels.h):
 * one walk over the kept / reduced geometry, specialised per reduction at
 * compile time.
 *
 * Bit-exact with the TensorFlow Lite Micro reference kernels: MEAN (and SUM)
 * sum in int32, subtract zero_point * count in 64 bits and requantize; the
 * extremes are the raw values (input and output share one quantization).
 */
#include <stdint.h>

#include "tg_dsp.h"
#include "tg_fixedpoint.h"
#include "tg_index.h"
#include "tg_kernels.h"

enum { TG_REDUCE_MEAN, TG_REDUCE_MAX, TG_REDUCE_MIN };

/* Always inlined with a constant `kind`, so each kernel below is its own loop. */
TG_INLINE void tg_reduce_walk(const tg_reduce_params_t *p, const int8_t *input, int8_t *output, int32_t kind)
{
    int32_t kept_idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t base = 0; /* input offset of the first element reduced into output o */
    int32_t n_out = 1;
    int32_t o, d, r;
    for (d = 0; d < p->kept_rank; d++) {
        n_out *= p->kept_dims[d];
    }
    for (o = 0; o < n_out; o++) {
        int32_t red_idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t red_off = 0;
        int32_t acc = kind == TG_REDUCE_MAX ? -128 : kind == TG_REDUCE_MIN ? 127 : 0;
        for (r = 0; r < p->num_reduced; r++) {
            const int32_t v = input[base + red_off];
            if (kind == TG_REDUCE_MEAN) {
                acc += v;
            } else if (kind == TG_REDUCE_MAX ? v > acc : v < acc) {
                acc = v;
            }
            tg_index_next(p->red_rank, p->red_dims, red_idx, p->red_strides, &red_off, NULL, NULL);
        }
        if (kind == TG_REDUCE_MEAN) {
            /* The reference subtracts zero_point * count in 64 bits, then narrows to 32 bits. */
            const int64_t shifted = (int64_t)acc - (int64_t)p->input_zero_point * (int64_t)p->num_reduced;
            acc = tg_multiply_by_quantized_multiplier((int32_t)shifted, p->multiplier, p->shift) +
                  p->output_zero_point;
            output[o] = tg_clamp_to_s8(acc, -128, 127);
        } else {
            output[o] = (int8_t)acc;
        }
        tg_index_next(p->kept_rank, p->kept_dims, kept_idx, p->kept_strides, &base, NULL, NULL);
    }
}

void tg_mean_s8(const tg_reduce_params_t *p, const int8_t *input, int8_t *output)
{
    tg_reduce_walk(p, input, output, TG_REDUCE_MEAN);
}

void tg_reduce_max_s8(const tg_reduce_params_t *p, const int8_t *input, int8_t *output)
{
    tg_reduce_walk(p, input, output, TG_REDUCE_MAX);
}

void tg_reduce_min_s8(const tg_reduce_params_t *p, const int8_t *input, int8_t *output)
{
    tg_reduce_walk(p, input, output, TG_REDUCE_MIN);
}
