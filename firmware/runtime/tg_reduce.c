/*
 * tg_reduce.c -- REDUCE_MAX and REDUCE_MIN (int8, see tg_kernels.h) over the
 * kept / reduced geometry MEAN uses. Input and output share one quantization,
 * so the result is the raw extreme value, as in TFLM's reference.
 */
#include <stdint.h>

#include "tg_index.h"
#include "tg_kernels.h"

static void tg_reduce_extreme_s8(const tg_mean_params_t *p, const int8_t *input, int8_t *output, int32_t want_max)
{
    int32_t kept_idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t base = 0;
    int32_t n_out = 1;
    int32_t o, d, r;
    for (d = 0; d < p->kept_rank; d++) {
        n_out *= p->kept_dims[d];
    }
    for (o = 0; o < n_out; o++) {
        int32_t red_idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
        int32_t red_off = 0;
        int8_t best = want_max ? (int8_t)-128 : (int8_t)127;
        for (r = 0; r < p->num_reduced; r++) {
            const int8_t v = input[base + red_off];
            if (want_max ? v > best : v < best) {
                best = v;
            }
            tg_index_next(p->red_rank, p->red_dims, red_idx, p->red_strides, &red_off, NULL, NULL);
        }
        output[o] = best;
        tg_index_next(p->kept_rank, p->kept_dims, kept_idx, p->kept_strides, &base, NULL, NULL);
    }
}

void tg_reduce_max_s8(const tg_mean_params_t *p, const int8_t *input, int8_t *output)
{
    tg_reduce_extreme_s8(p, input, output, 1);
}

void tg_reduce_min_s8(const tg_mean_params_t *p, const int8_t *input, int8_t *output)
{
    tg_reduce_extreme_s8(p, input, output, 0);
}
