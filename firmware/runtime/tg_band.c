/*
 * tg_band.c -- a band: a chain of CONV_2D / DEPTHWISE_CONV_2D ops run one output
 * row at a time (MCUNetV2's patch-based inference, in rows), so that the chain's
 * intermediate tensors exist only as windows of a few rows.
 *
 * Stage j's output row n needs its input rows n * stride_h - pad_h .. + filter_h - 1
 * (clipped to the tensor). Rows are produced in order, each exactly once: before a
 * stage computes a row, the stage before it is brought up to the last input row that
 * row needs, and its window keeps the last window_rows rows (the next stage's filter
 * height), which always hold the rows still needed. The kernel is called on a
 * copy of the stage's params describing just those input rows (in_h, pad_h) and one
 * output row (out_h = 1): the same per-pixel code as the whole-tensor call, so the
 * results are identical (tinygen/codegen/compiled/band.py chooses bands and checks
 * their geometry: one batch, dilation_h 1).
 */
#include <stdint.h>
#include <string.h>

#include "tg_kernels.h"

typedef struct {
    int32_t produced; /* rows produced so far */
    int32_t first;    /* row index of the window's first row */
    int32_t count;    /* rows in the window */
} tg_band_state_t;

static int32_t tg_band_min(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

static int32_t tg_band_max(int32_t a, int32_t b)
{
    return a > b ? a : b;
}

/* Move a window's rows down by one row (overlapping, dst < src). newlib-nano's memmove goes byte
 * by byte; the windows are 16-byte aligned, so rows of a multiple of 4 bytes move a word at a
 * time. GCC must not turn the loop back into a memmove call. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static void tg_band_shift(int8_t *dst, const int8_t *src, int32_t n)
{
    if ((((uintptr_t)dst | (uintptr_t)src | (uintptr_t)n) & 3u) == 0u) {
        uint32_t *d = (uint32_t *)(void *)dst;
        const uint32_t *s = (const uint32_t *)(const void *)src;
        int32_t i, words = n >> 2;
        for (i = 0; i + 4 <= words; i += 4) {
            const uint32_t a = s[i], b = s[i + 1], c = s[i + 2], e = s[i + 3];
            d[i] = a;
            d[i + 1] = b;
            d[i + 2] = c;
            d[i + 3] = e;
        }
        for (; i < words; i++) {
            d[i] = s[i];
        }
    } else {
        memmove(dst, src, (size_t)n);
    }
}

void tg_band_depthwise(const tg_conv_params_t *p, const int8_t *input, int8_t *output, int16_t *scratch)
{
    (void)scratch;
    tg_depthwise_conv2d_s8(p, input, output);
}

/* Row bytes of stage j's output. */
static int32_t tg_band_row_bytes(const tg_conv_params_t *c)
{
    return c->out_w * c->out_c;
}

/* Run stage j's kernel for output row n, reading input rows [lo, hi] at `in` (row lo first). */
static void tg_band_row(const tg_band_params_t *p, int32_t j, int32_t n, const int8_t *in, int32_t lo, int32_t hi,
                        int8_t *out)
{
    const tg_band_stage_t *s = &p->stage[j];
    tg_conv_params_t c = *s->conv;
    c.pad_h = lo - (n * s->conv->stride_h - s->conv->pad_h);
    c.in_h = hi - lo + 1;
    c.out_h = 1;
    s->kernel(&c, in, out, p->scratch);
}

/* The input rows stage j's output row n reads, clipped: [*lo, *hi]. */
static void tg_band_need(const tg_conv_params_t *c, int32_t n, int32_t *lo, int32_t *hi)
{
    const int32_t top = n * c->stride_h - c->pad_h;
    *lo = tg_band_max(top, 0);
    *hi = tg_band_min(top + c->filter_h - 1, c->in_h - 1);
}

/* Bring stages 0..j up until stage j has produced rows [0, upto]; stage j < last only. */
static void tg_band_fill(const tg_band_params_t *p, tg_band_state_t *st, const int8_t *input, int32_t j,
                         int32_t upto)
{
    const tg_band_stage_t *s = &p->stage[j];
    const int32_t bytes = tg_band_row_bytes(s->conv);
    while (st[j].produced <= upto) {
        const int32_t n = st[j].produced;
        int32_t lo, hi;
        const int8_t *in;
        tg_band_need(s->conv, n, &lo, &hi);
        if (j == 0) {
            in = input + (int32_t)lo * s->conv->in_w * s->conv->in_c;
        } else {
            tg_band_fill(p, st, input, j - 1, hi);
            in = p->stage[j - 1].window + (lo - st[j - 1].first) * tg_band_row_bytes(p->stage[j - 1].conv);
        }
        if (st[j].count == s->window_rows) {
            tg_band_shift(s->window, s->window + bytes, (s->window_rows - 1) * bytes);
            st[j].first++;
            st[j].count--;
        }
        tg_band_row(p, j, n, in, lo, hi, s->window + st[j].count * bytes);
        st[j].count++;
        st[j].produced++;
    }
}

void tg_band_s8(const tg_band_params_t *p, const int8_t *input, int8_t *output)
{
    tg_band_state_t st[TG_BAND_MAX_STAGES];
    const int32_t last = p->stages - 1;
    const tg_conv_params_t *c = p->stage[last].conv;
    const int32_t bytes = tg_band_row_bytes(c);
    const int32_t in_bytes = p->stage[0].conv->in_w * p->stage[0].conv->in_c;
    int32_t j, r;
    for (j = 0; j < p->stages; j++) {
        st[j].produced = 0;
        st[j].first = 0;
        st[j].count = 0;
    }
    for (r = 0; r < c->out_h; r++) {
        int32_t lo, hi;
        const int8_t *in;
        int8_t *out = p->add != NULL ? p->row : output + r * bytes;
        tg_band_need(c, r, &lo, &hi);
        if (last == 0) {
            in = input + lo * in_bytes;
        } else {
            tg_band_fill(p, st, input, last - 1, hi);
            in = p->stage[last - 1].window + (lo - st[last - 1].first) * tg_band_row_bytes(p->stage[last - 1].conv);
        }
        tg_band_row(p, last, r, in, lo, hi, out);
        if (p->add != NULL) {
            const int8_t *x = input + r * bytes;
            if (p->add_input_first) {
                tg_add_s8(p->add, x, p->row, output + r * bytes);
            } else {
                tg_add_s8(p->add, p->row, x, output + r * bytes);
            }
        }
    }
}
