/*
 * tg_index.h -- internal to the kernels: walking an N-d index in row-major
 * order (ADD / MUL broadcasting, PAD, MEAN).
 */
#ifndef TG_INDEX_H
#define TG_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* Advance idx over dims[0 .. rank) (last dimension fastest, wrapping to all
 * zeros after the last element). *off_a, and *off_b unless strides_b is NULL,
 * follow: each is sum(idx[d] * strides[d]) plus its value when idx was zero. */
static inline void tg_index_next(int32_t rank, const int32_t *dims, int32_t *idx, const int32_t *strides_a,
                                 int32_t *off_a, const int32_t *strides_b, int32_t *off_b)
{
    int32_t d;
    for (d = rank - 1; d >= 0; d--) {
        idx[d]++;
        *off_a += strides_a[d];
        if (strides_b != NULL) {
            *off_b += strides_b[d];
        }
        if (idx[d] < dims[d]) {
            return;
        }
        *off_a -= strides_a[d] * dims[d];
        if (strides_b != NULL) {
            *off_b -= strides_b[d] * dims[d];
        }
        idx[d] = 0;
    }
}

#endif /* TG_INDEX_H */
