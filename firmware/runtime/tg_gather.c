/*
 * tg_gather.c -- TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V and UNPACK: each
 * output is a strided view of the input, copied out (see tg_kernels.h).
 * TFLM copies the int8 values of these ops without requantizing; so do we.
 */
#include <string.h>

#include "tg_index.h"
#include "tg_kernels.h"

void tg_gather_s8(const int32_t *g, const int8_t *input, int8_t *output)
{
    const int32_t rank = g[0];
    const int32_t last = rank - 1;
    const int32_t *dims = g + 2;
    const int32_t *strides = g + 2 + rank;
    const int32_t run = dims[last];
    const int32_t step = strides[last];
    int32_t idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t off = g[1];
    int32_t rows = 1;
    int32_t d, r, i;
    for (d = 0; d < last; d++) {
        rows *= dims[d];
    }
    for (r = 0; r < rows; r++) {
        if (step == 1) {
            memcpy(output, input + off, (size_t)run);
        } else {
            int32_t o = off;
            for (i = 0; i < run; i++) {
                output[i] = input[o];
                /* never stepped past the last value read: o stays an offset inside the input */
                if (i + 1 < run) {
                    o += step;
                }
            }
        }
        output += run;
        tg_index_next(last, dims, idx, strides, &off, NULL, NULL);
    }
}
