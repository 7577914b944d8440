/*
 * tg_shape.c -- PAD, CONCATENATION and the RESHAPE copy: kernels that move
 * int8 values without changing them (see tg_kernels.h).
 */
#include <string.h>

#include "tg_index.h"
#include "tg_kernels.h"

/* ==== PAD ================================================================= */

void tg_pad_s8(const tg_pad_params_t *p, const int8_t *input, int8_t *output)
{
    int32_t out_strides[TG_MAX_DIMS];
    int32_t idx[TG_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    const int32_t last = p->rank - 1;
    const int32_t row = p->in_dims[last];
    int32_t rows = 1;
    int32_t off = 0; /* output offset of the input row being copied */
    int32_t d, r;
    out_strides[last] = 1;
    for (d = last - 1; d >= 0; d--) {
        out_strides[d] = out_strides[d + 1] * p->out_dims[d + 1];
    }
    for (d = 0; d <= last; d++) {
        off += p->before[d] * out_strides[d];
    }
    for (d = 0; d < last; d++) {
        rows *= p->in_dims[d];
    }
    memset(output, (int)(int8_t)p->pad_value, (size_t)p->out_size);
    if (row == 0) {
        return;
    }
    /* One input row (the last dimension) at a time. */
    for (r = 0; r < rows; r++) {
        memcpy(output + off, input + (int32_t)(r * row), (size_t)row);
        tg_index_next(last, p->in_dims, idx, out_strides, &off, NULL, NULL);
    }
}

/* ==== CONCATENATION / copy ================================================ */

void tg_concat_s8(int32_t outer, int32_t n_inputs, const int8_t *const *inputs,
                  const int32_t *inner_bytes, int8_t *output)
{
    int32_t o, i;
    for (o = 0; o < outer; o++) {
        for (i = 0; i < n_inputs; i++) {
            const int32_t n = inner_bytes[i];
            memcpy(output, inputs[i] + (int32_t)(o * n), (size_t)n);
            output += n;
        }
    }
}

void tg_copy_s8(int32_t size, const int8_t *input, int8_t *output)
{
    if (input != output) {
        memmove(output, input, (size_t)size);
    }
}
