/*
 * tg_conv.c -- CONV_2D (int8, NHWC; see tg_kernels.h).
 *
 * Written for tinygen; the arithmetic follows the TensorFlow Lite Micro
 * reference kernels operation for operation so that results are identical,
 * bit for bit. Integer accumulation order may differ from the reference
 * where that cannot change a result (exact integer sums).
 *
 * Write-order contract (the memory planner, tinygen/codegen/compiled/memory.py,
 * may place an op's output over its input where the kernel writes behind what it
 * still has to read): CONV_2D (like DEPTHWISE_CONV_2D) writes its output pixels in
 * row-major order (batch, y, x), computing at most 2 output pixels together before
 * they are written (4 on the tg_conv_dot.h 4-pixel paths, which read all 4 before
 * writing any: overlap.py explains why the same shift covers that); within those
 * pixels the channel order is free. Keep it.
 */
#include <string.h>

#include "tg_dsp.h"
#include "tg_fixedpoint.h"
#include "tg_kernels.h"
#include "tg_mve.h"

/* ==== packed int8 x int16 matrix products ====================================
 *
 * CONV_2D and FULLY_CONNECTED are computed as out[pixel][oc] = bias'[oc] + sum_k w[oc][k] * x[pixel][k]
 * where bias' = bias + input_offset * sum_k w[oc][k] is folded in by tinygen at
 * code-generation time (equal in integer arithmetic, so bit-exact), and x holds
 * the raw int8 input values (padding taps hold the input zero point, which
 * contributes w * (zero_point + input_offset) = 0, as TFLM's skipped taps do).
 * CONV_2D goes through the int16 column scratch below; FULLY_CONNECTED reads
 * its int8 rows directly (tg_fully_connected.c, same weight packing).
 *
 * K (values per output) is padded to K4 = a multiple of 4; weight columns past K
 * are zero. Layouts (k = 4 * j + q):
 *
 *  column scratch, int16: two pixel slots interleaved per block of 4 k:
 *      [8 j + 4 slot + TG_COL_POS(q)]      (scratch size 4 * K4 bytes, 4-byte aligned)
 *  weights, int8: output channels in pairs (within a group), interleaved per
 *      block: pair base + 8 j + 4 (oc & 1) + q; an odd last channel of a group
 *      is stored alone: base + 4 j + q.
 *
 * DSP path: one word of weights gives (w0, w2) and (w1, w3) by SXTB16 and
 * SXTB16 ROR 8, so the column stores each block as (x0, x2), (x1, x3)
 * (TG_COL_POS = 0, 2, 1, 3) and every product is one SMLAD on two int16 pairs.
 * Portable path: natural order. */

#if TG_USE_DSP
#define TG_COL_POS(q) ((((q) ^ ((q) >> 1)) & 1) ? ((q) ^ 3) : (q))
#else
#define TG_COL_POS(q) (q)
#endif

/* Store one int16 value of a column (byte access: no aliasing assumptions). */
TG_INLINE void tg_col_put(int16_t *col, int32_t k, int32_t slot, int32_t v)
{
    const int16_t s = (int16_t)v;
    memcpy(col + (8 * (k >> 2) + 4 * slot + TG_COL_POS(k & 3)), &s, sizeof s);
}

/* Column entries k in [k0, k4) of one slot (the padding past K) set to 0. */
static void tg_col_zero_tail(int16_t *col, int32_t k0, int32_t k4, int32_t slot)
{
    for (; k0 < k4; k0++) {
        tg_col_put(col, k0, slot, 0);
    }
}

/* n (a multiple of 4, k0 a multiple of 4) raw int8 values into a column slot. */
TG_INLINE void tg_col_put_run(int16_t *col, int32_t k0, int32_t slot, const int8_t *src, int32_t n)
{
#if TG_USE_DSP
    int8_t *dst = (int8_t *)(col + (8 * (k0 >> 2) + 4 * slot));
    for (; n >= 8; n -= 8, src += 8, dst += 32) { /* two blocks per pass: half the loop overhead */
        const uint32_t v = tg_load_u32(src);
        const uint32_t u = tg_load_u32(src + 4);
        tg_store_u32(dst, tg_sxtb16(v));
        tg_store_u32(dst + 4, tg_sxtb16_ror8(v));
        tg_store_u32(dst + 16, tg_sxtb16(u));
        tg_store_u32(dst + 20, tg_sxtb16_ror8(u));
    }
    for (; n > 0; n -= 4, src += 4, dst += 16) {
        const uint32_t v = tg_load_u32(src);
        tg_store_u32(dst, tg_sxtb16(v));
        tg_store_u32(dst + 4, tg_sxtb16_ror8(v));
    }
#else
    int32_t i;
    for (i = 0; i < n; i++) {
        tg_col_put(col, k0 + i, slot, src[i]);
    }
#endif
}

/* n (a multiple of 4, k0 a multiple of 4) copies of v into a column slot. */
TG_INLINE void tg_col_fill_run(int16_t *col, int32_t k0, int32_t slot, int32_t v, int32_t n)
{
    const uint32_t pair = ((uint32_t)v & 0xFFFFu) | ((uint32_t)v << 16);
    int8_t *dst = (int8_t *)(col + (8 * (k0 >> 2) + 4 * slot));
    for (; n > 0; n -= 4, dst += 16) {
        tg_store_u32(dst, pair);
        tg_store_u32(dst + 4, pair);
    }
}

/* ---- inner products: accumulators += sum over nblk blocks ------------------
 * x: column scratch (4 words per block: slot 0 pair, slot 1 pair);
 * w2: a channel pair's interleaved rows (8 bytes per block), 4-byte aligned;
 * w1: a lone channel's row (4 bytes per block). */

#if TG_USE_DSP
/* 2 channels x 2 pixels. */
static TG_NOINLINE void tg_dot_2ch_2px(const uint32_t *x, const uint32_t *w, int32_t nblk, int32_t *acc)
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    for (; nblk > 0; nblk--) {
        uint32_t x0, x1, y0, y1, v, wl;
        TG_LDRD_INC(x0, x1, x);
        TG_LDRD_INC(y0, y1, x);
        TG_LDR_INC(v, w);
        wl = tg_sxtb16(v);
        v = tg_sxtb16_ror8(v);
        a00 = tg_smlad(x0, wl, a00);
        a01 = tg_smlad(y0, wl, a01);
        a00 = tg_smlad(x1, v, a00);
        a01 = tg_smlad(y1, v, a01);
        TG_LDR_INC(v, w);
        wl = tg_sxtb16(v);
        v = tg_sxtb16_ror8(v);
        a10 = tg_smlad(x0, wl, a10);
        a11 = tg_smlad(y0, wl, a11);
        a10 = tg_smlad(x1, v, a10);
        a11 = tg_smlad(y1, v, a11);
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* 2 channels x the pixel in slot 0. */
static TG_NOINLINE void tg_dot_2ch_1px(const uint32_t *x, const uint32_t *w, int32_t nblk, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[2];
    for (; nblk > 0; nblk--) {
        uint32_t x0, x1, v0, v1;
        TG_LDRD_INC(x0, x1, x);
        x += 2;
        TG_LDRD_INC(v0, v1, w);
        a0 = tg_smlad(x0, tg_sxtb16(v0), a0);
        a0 = tg_smlad(x1, tg_sxtb16_ror8(v0), a0);
        a1 = tg_smlad(x0, tg_sxtb16(v1), a1);
        a1 = tg_smlad(x1, tg_sxtb16_ror8(v1), a1);
    }
    acc[0] = a0;
    acc[2] = a1;
}

/* 1 channel x 2 pixels (two = 1) or the pixel in slot 0 (two = 0). */
static TG_NOINLINE void tg_dot_1ch_2px(const uint32_t *x, const uint32_t *w, int32_t nblk, int32_t two,
                                       int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    for (; nblk > 0; nblk--) {
        uint32_t x0, x1, y0, y1, v;
        TG_LDRD_INC(x0, x1, x);
        TG_LDRD_INC(y0, y1, x);
        TG_LDR_INC(v, w);
        a0 = tg_smlad(x0, tg_sxtb16(v), a0);
        a0 = tg_smlad(x1, tg_sxtb16_ror8(v), a0);
        if (two) {
            a1 = tg_smlad(y0, tg_sxtb16(v), a1);
            a1 = tg_smlad(y1, tg_sxtb16_ror8(v), a1);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}
#else
static TG_NOINLINE void tg_dot_2ch_2px(const int16_t *x, const int8_t *w, int32_t nblk, int32_t *acc)
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    int32_t q;
    for (; nblk > 0; nblk--, x += 8, w += 8) {
        for (q = 0; q < 4; q++) {
            a00 += x[q] * w[q];
            a01 += x[4 + q] * w[q];
            a10 += x[q] * w[4 + q];
            a11 += x[4 + q] * w[4 + q];
        }
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

static TG_NOINLINE void tg_dot_2ch_1px(const int16_t *x, const int8_t *w, int32_t nblk, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[2];
    int32_t q;
    for (; nblk > 0; nblk--, x += 8, w += 8) {
        for (q = 0; q < 4; q++) {
            a0 += x[q] * w[q];
            a1 += x[q] * w[4 + q];
        }
    }
    acc[0] = a0;
    acc[2] = a1;
}

static TG_NOINLINE void tg_dot_1ch_2px(const int16_t *x, const int8_t *w, int32_t nblk, int32_t two,
                                       int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    int32_t q;
    for (; nblk > 0; nblk--, x += 8, w += 4) {
        for (q = 0; q < 4; q++) {
            a0 += x[q] * w[q];
            if (two) {
                a1 += x[4 + q] * w[q];
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}
#endif

#if TG_USE_DSP && !defined(TG_SINGLE_ROUNDING)
#define TG_CONV_FUSED 1
#include "tg_conv_dot.h" /* tg_conv_pairs_rq_body, tg_conv_4px_body */

#define TG_CONV_PAIRS_RQ(name, two, full)                                                                   \
    static TG_NOINLINE void name(const uint32_t *w, tg_conv_pairs_t *c) { tg_conv_pairs_rq_body(w, c, two, full); }
TG_CONV_PAIRS_RQ(tg_conv_pairs_rq_2px_full, 1, 1)
TG_CONV_PAIRS_RQ(tg_conv_pairs_rq_1px_full, 0, 1)
TG_CONV_PAIRS_RQ(tg_conv_pairs_rq_2px, 1, 0)
TG_CONV_PAIRS_RQ(tg_conv_pairs_rq_1px, 0, 0)
#undef TG_CONV_PAIRS_RQ

static TG_NOINLINE void tg_conv_4px_full(const uint32_t *w, tg_conv_4px_t *c) { tg_conv_4px_body(w, c, 1); }
static TG_NOINLINE void tg_conv_4px_act(const uint32_t *w, tg_conv_4px_t *c) { tg_conv_4px_body(w, c, 0); }

/* The outputs of the 4 pixels whose columns are in col0 (slots 0, 1) and col1 (slots
 * 0, 1) into o (pixel 0's first channel; out_c bytes per pixel). */
static void tg_conv_4px_outputs(const tg_conv_params_t *p, const tg_channel_requant_t *r, const int16_t *col0,
                                const int16_t *col1, int8_t *o)
{
    tg_conv_4px_t c;
    c.col0 = TG_WORDS(col0);
    c.col1 = TG_WORDS(col1);
    c.bias = p->bias;
    c.q = r->rq_fused;
    c.out = o;
    c.ostride = p->out_c;
    c.qstep = r->per_channel ? 4 : 0;
    c.nblk = p->k_padded >> 2;
    c.npairs = p->out_c >> 1;
    c.lo = r->act_min;
    c.hi = r->act_max;
    (r->act_min == -128 && r->act_max == 127 ? tg_conv_4px_full : tg_conv_4px_act)(TG_WORDS(p->weights), &c);
}

/* The 4-pixel passes of a pointwise layer: nquad groups of 4 pixels from x (K4 = in_c
 * bytes each) into o (out_c each); the column of pixels 2 and 3 on the stack. */
static TG_NOINLINE void tg_conv_pointwise_4px(const tg_conv_params_t *p, const tg_channel_requant_t *r,
                                              const int8_t *x, int8_t *o, int16_t *scratch, int32_t nquad)
{
    const int32_t k4 = p->k_padded;
    uint32_t colb[k4]; /* 4 * K4 bytes: two pixel slots of K4 int16 values */
    int16_t *col1 = (int16_t *)(void *)colb;
    for (; nquad > 0; nquad--, x += 4 * k4, o += 4 * p->out_c) {
        tg_col_put_run(scratch, 0, 0, x, k4);
        tg_col_put_run(scratch, 0, 1, x + k4, k4);
        tg_col_put_run(col1, 0, 0, x + 2 * k4, k4);
        tg_col_put_run(col1, 0, 1, x + 3 * k4, k4);
        tg_conv_4px_outputs(p, r, scratch, col1, o);
    }
}

/* npairs >= 1 channel pairs (nblk >= 1 blocks each) of the pixels in slot 0 (out0)
 * and, if out1 != NULL, slot 1 (out1), requantized with rq_fused constants q
 * (qstep words per channel: 4, or 0 for one set). */
static void tg_conv_pairs_rq(const int16_t *col, const int8_t *w, const int32_t *bias, int32_t nblk,
                             int32_t npairs, const int32_t *q, int32_t qstep, const tg_channel_requant_t *r,
                             int8_t *out0, int8_t *out1)
{
    const int32_t full = r->act_min == -128 && r->act_max == 127;
    tg_conv_pairs_t c;
    c.col = TG_WORDS(col);
    c.bias = bias;
    c.q = q;
    c.out0 = out0;
    c.out1 = out1 != NULL ? out1 : out0;
    c.qstep = qstep;
    c.nblk = nblk;
    c.npairs = npairs;
    c.lo = r->act_min;
    c.hi = r->act_max;
    if (out1 != NULL) {
        (full ? tg_conv_pairs_rq_2px_full : tg_conv_pairs_rq_2px)(TG_WORDS(w), &c);
    } else {
        (full ? tg_conv_pairs_rq_1px_full : tg_conv_pairs_rq_1px)(TG_WORDS(w), &c);
    }
}
#else
#define TG_CONV_FUSED 0
#endif

/* Outputs of n_oc channels (w: the channels' packed rows, bias: their folded
 * biases) for the pixel in slot 0 (out0) and, if out1 != NULL, the pixel in
 * slot 1 (out1). */
static void tg_conv_outputs(const int16_t *col, const int8_t *w, const int32_t *bias, int32_t nblk, int32_t n_oc,
                            int32_t oc0, const tg_channel_requant_t *r, int8_t *out0, int8_t *out1)
{
    int32_t acc[4]; /* [channel oc + i][pixel p] at 2 i + p */
    int32_t oc = 0;
#if TG_CONV_FUSED
    if (r->rq_fused != NULL && n_oc >= 2) {
        const int32_t qstep = r->per_channel ? 4 : 0;
        const int32_t npairs = n_oc >> 1;
        tg_conv_pairs_rq(col, w, bias, nblk, npairs, r->rq_fused + qstep * oc0, qstep, r, out0, out1);
        oc = 2 * npairs;
        w += 8 * nblk * npairs;
    }
#endif
    for (; oc < n_oc; oc += 2, w += 8 * nblk) {
        const int32_t n = (oc + 1 < n_oc) ? 2 : 1;
        acc[0] = acc[1] = bias[oc];
        acc[2] = acc[3] = (n == 2) ? bias[oc + 1] : 0;
        if (n == 1) {
            tg_dot_1ch_2px(TG_WORDS(col), TG_WORDS(w), nblk, out1 != NULL, acc);
        } else if (out1 != NULL) {
            tg_dot_2ch_2px(TG_WORDS(col), TG_WORDS(w), nblk, acc);
        } else {
            tg_dot_2ch_1px(TG_WORDS(col), TG_WORDS(w), nblk, acc);
        }
        tg_requantize_channels(r, acc, 2, n, oc0 + oc, out0 + oc, out1 != NULL ? out1 + oc : NULL);
    }
}


/* ==== CONV_2D ============================================================= */

/* Bytes staged by tg_conv_col_staged before they are widened into the column. */
#define TG_COL_STAGE 64

/* The column when filter_in_c is not a multiple of 4 (first layers: 1 or 3 input
 * channels): the raw bytes (or zero points) of the taps are appended to a small int8
 * stage in k order, and whole multiples of 4 go through tg_col_put_run, 4 values
 * per 32-bit load, instead of one scattered int16 store per value. A filter row
 * inside the input of an ungrouped, undilated layer is one run of filter_w * in_c
 * adjacent bytes and is appended as such (a word at a time): the per-tap walk
 * (bounds, address, a copy of 1 or 3 bytes) cost about 60 instructions a tap.
 * Same column either way. */
typedef struct {
    int8_t buf[TG_COL_STAGE + 4];
    int32_t ns, kbase;
} tg_col_stage_t;

/* The stage's whole multiples of 4 into the column; the 0..3 left over move to its start. */
static void tg_stage_flush(tg_col_stage_t *s, int16_t *col, int32_t slot)
{
    const int32_t n4 = s->ns & ~3;
    int32_t c;
    tg_col_put_run(col, s->kbase, slot, s->buf, n4);
    s->kbase += n4;
    for (c = n4; c < s->ns; c++) {
        s->buf[c - n4] = s->buf[c];
    }
    s->ns -= n4;
}

/* n bytes from src, or n copies of zp when src is NULL, appended to the stage. */
TG_INLINE void tg_stage_append(tg_col_stage_t *s, const int8_t *src, int8_t zp, int32_t n, int16_t *col, int32_t slot)
{
    while (n > 0) {
        int32_t m, i;
        int8_t *dst;
        if (s->ns == TG_COL_STAGE) {
            tg_stage_flush(s, col, slot);
        }
        m = tg_min32(n, TG_COL_STAGE - s->ns);
        dst = s->buf + s->ns;
        s->ns += m;
        n -= m;
        if (src != NULL) {
            for (; m >= 4; m -= 4, src += 4, dst += 4) {
                tg_store_u32(dst, tg_load_u32(src));
            }
            for (; m > 0; m--) {
                *dst++ = *src++;
            }
        } else {
            for (i = 0; i < m; i++) {
                dst[i] = zp;
            }
        }
    }
}

static void tg_conv_col_staged(const tg_conv_params_t *p, const int8_t *in_b, int32_t y0, int32_t x0, int32_t goff,
                               int16_t *col, int32_t slot)
{
    const int32_t filter_in_c = p->filter_in_c;
    const int8_t zp = (int8_t)(-p->input_offset);
    /* ungrouped, undilated: a row is [left zero-point taps][one run of inside taps][right ones] */
    const int32_t runs = filter_in_c == p->in_c && p->dilation_w == 1;
    const int32_t left = tg_min32(tg_max32(0, -x0), p->filter_w);
    const int32_t right = tg_min32(tg_max32(0, x0 + p->filter_w - p->in_w), p->filter_w - left);
    const int32_t inside = p->filter_w - left - right;
    const int32_t row_n = p->filter_w * filter_in_c;
    tg_col_stage_t s;
    int32_t ky, kx;
    if (runs && left == 0 && right == 0 && y0 >= 0 && y0 + p->dilation_h * (p->filter_h - 1) < p->in_h &&
        p->filter_h * row_n <= TG_COL_STAGE) {
        /* the whole window inside and K <= TG_COL_STAGE: the filter rows' runs copied one after
         * the other, a word at a time, then widened once (none of the stage's bookkeeping) */
        const int8_t *src = in_b + (int32_t)((y0 * p->in_w + x0) * p->in_c);
        const int32_t src_row = p->dilation_h * p->in_w * p->in_c;
        int32_t n = 0;
        for (ky = 0; ky < p->filter_h; ky++, src += src_row) {
            int32_t i;
            for (i = 0; i + 4 <= row_n; i += 4) {
                tg_store_u32(s.buf + n + i, tg_load_u32(src + i));
            }
            for (; i < row_n; i++) {
                s.buf[n + i] = src[i];
            }
            n += row_n;
        }
        while (n & 3) { /* the padding past K: zero weights, zero column */
            s.buf[n++] = 0;
        }
        tg_col_put_run(col, 0, slot, s.buf, n);
        tg_col_zero_tail(col, n, p->k_padded, slot);
        return;
    }
    s.ns = 0;
    s.kbase = 0;
    for (ky = 0; ky < p->filter_h; ky++) {
        const int32_t iy = y0 + p->dilation_h * ky;
        const int32_t row_ok = (iy >= 0) && (iy < p->in_h);
        if (runs) {
            if (!row_ok) {
                tg_stage_append(&s, NULL, zp, p->filter_w * filter_in_c, col, slot);
                continue;
            }
            tg_stage_append(&s, NULL, zp, left * filter_in_c, col, slot);
            if (inside > 0) {
                tg_stage_append(&s, in_b + (int32_t)((iy * p->in_w + x0 + left) * p->in_c), zp, inside * filter_in_c,
                                col, slot);
            }
            tg_stage_append(&s, NULL, zp, right * filter_in_c, col, slot);
            continue;
        }
        for (kx = 0; kx < p->filter_w; kx++) {
            const int32_t ix = x0 + p->dilation_w * kx;
            if (row_ok && ix >= 0 && ix < p->in_w) {
                tg_stage_append(&s, in_b + (int32_t)((iy * p->in_w + ix) * p->in_c + goff), zp, filter_in_c, col,
                                slot);
            } else {
                tg_stage_append(&s, NULL, zp, filter_in_c, col, slot);
            }
        }
    }
    while (s.ns & 3) { /* the padding past K: zero weights, zero column */
        s.buf[s.ns++] = 0;
    }
    tg_col_put_run(col, s.kbase, slot, s.buf, s.ns);
    tg_col_zero_tail(col, s.kbase + s.ns, p->k_padded, slot);
}

/* The im2col column of output pixel `pix` (flat over out_h * out_w) for the input
 * channels [goff, goff + filter_in_c) into a scratch slot. */
static void tg_conv_col(const tg_conv_params_t *p, const int8_t *in_b, int32_t pix, int32_t goff,
                        int16_t *col, int32_t slot)
{
    const int32_t filter_in_c = p->filter_in_c;
    const int32_t oy = pix / p->out_w;
    const int32_t ox = pix - oy * p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_h;
    const int32_t x0 = ox * p->stride_w - p->pad_w;
    const int32_t input_zero_point = -p->input_offset;
    int32_t ky, kx, c;
    int32_t k = 0;
    /* a filter row whose taps are all inside the input and adjacent in memory (ungrouped,
     * dilation 1) is one run of filter_w * in_c bytes: k order is memory order */
    const int32_t row_run = (filter_in_c == p->in_c && p->dilation_w == 1 && (filter_in_c & 3) == 0 &&
                             x0 >= 0 && x0 + p->filter_w <= p->in_w) ? p->filter_w * filter_in_c : 0;
    if ((filter_in_c & 3) != 0 && filter_in_c <= TG_COL_STAGE - 3) {
        tg_conv_col_staged(p, in_b, y0, x0, goff, col, slot);
        return;
    }
    for (ky = 0; ky < p->filter_h; ky++) {
        const int32_t iy = y0 + p->dilation_h * ky;
        const int32_t row_ok = (iy >= 0) && (iy < p->in_h);
        if (row_ok && row_run > 0) {
            tg_col_put_run(col, k, slot, in_b + (int32_t)((iy * p->in_w + x0) * p->in_c), row_run);
            k += row_run;
            continue;
        }
        for (kx = 0; kx < p->filter_w; kx++, k += filter_in_c) {
            const int32_t ix = x0 + p->dilation_w * kx;
            const int32_t ok = row_ok && (ix >= 0) && (ix < p->in_w);
            const int8_t *src = in_b + (ok ? (int32_t)((iy * p->in_w + ix) * p->in_c + goff) : 0);
            if ((filter_in_c & 3) == 0) {
                if (ok) {
                    tg_col_put_run(col, k, slot, src, filter_in_c);
                } else {
                    tg_col_fill_run(col, k, slot, input_zero_point, filter_in_c);
                }
            } else {
                for (c = 0; c < filter_in_c; c++) {
                    tg_col_put(col, k + c, slot, ok ? src[c] : input_zero_point);
                }
            }
        }
    }
    tg_col_zero_tail(col, k, p->k_padded, slot);
}

#if TG_CONV_FUSED
/* Any other ungrouped layer with K4 <= TG_CONV_4PX_MAX_K (first layers: DS-CNN's 10x4
 * convolution, ResNet-8's 3x3 on 3 channels): the same 4-pixel passes over
 * tg_conv_col's columns, nquad of them from output pixel 0. */
static TG_NOINLINE void tg_conv_window_4px(const tg_conv_params_t *p, const tg_channel_requant_t *r,
                                           const int8_t *in_b, int8_t *out_b, int16_t *scratch, int32_t nquad)
{
    const int32_t k4 = p->k_padded;
    uint32_t colb[k4]; /* 4 * K4 bytes: two pixel slots of K4 int16 values */
    int16_t *col1 = (int16_t *)(void *)colb;
    int32_t pix;
    for (pix = 0; nquad > 0; nquad--, pix += 4) {
        tg_conv_col(p, in_b, pix, 0, scratch, 0);
        tg_conv_col(p, in_b, pix + 1, 0, scratch, 1);
        tg_conv_col(p, in_b, pix + 2, 0, col1, 0);
        tg_conv_col(p, in_b, pix + 3, 0, col1, 1);
        tg_conv_4px_outputs(p, r, scratch, col1, out_b + (int32_t)(pix * p->out_c));
    }
}
#endif

/* A pointwise layer (1x1, stride 1, no padding, ungrouped, in_c a multiple of 4): output
 * pixel i's column is input pixel i widened, with none of tg_conv_col's geometry; 4 pixels
 * per pass where tg_conv_pointwise_4px can, then 2. (Its own function: inside
 * tg_conv2d_s8 it cost the other layers' loop registers, ResNet-8 +8 K instructions.) */
static TG_NOINLINE void tg_conv_pointwise(const tg_conv_params_t *p, const tg_channel_requant_t *r,
                                          const int8_t *x, int8_t *o0, int16_t *scratch, int32_t n_pix)
{
    const int32_t k4 = p->k_padded;
    int32_t pix = 0;
#if TG_CONV_FUSED
    if (r->rq_fused != NULL && (p->out_c & 1) == 0 && k4 <= TG_CONV_4PX_MAX_K && n_pix >= 4) {
        const int32_t nquad = n_pix >> 2;
        tg_conv_pointwise_4px(p, r, x, o0, scratch, nquad);
        pix = 4 * nquad;
        x += pix * k4;
        o0 += pix * p->out_c;
    }
#endif
    for (; pix < n_pix; pix += 2, x += 2 * k4, o0 += 2 * p->out_c) {
        const int32_t two = pix + 1 < n_pix;
        tg_col_put_run(scratch, 0, 0, x, k4);
        if (two) {
            tg_col_put_run(scratch, 0, 1, x + k4, k4);
        }
        tg_conv_outputs(scratch, p->weights, p->bias, k4 >> 2, p->out_c, 0, r, o0, two ? o0 + p->out_c : NULL);
    }
}

void tg_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output, int16_t *scratch)
{
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t per_group = p->out_c / groups;
    const int32_t k4 = p->k_padded;
    const int32_t n_pix = p->out_h * p->out_w;
    const tg_channel_requant_t r = {p->multiplier, p->shift, p->per_channel, p->output_offset,
                                    p->act_min, p->act_max, p->fast_requant, p->rq_fused};
    /* a pointwise layer (1x1, stride 1, no padding, ungrouped, in_c a multiple of 4): output
     * pixel i's column is input pixel i widened, with none of tg_conv_col's geometry */
    const int32_t pointwise = p->filter_h == 1 && p->filter_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                              p->pad_h == 0 && p->pad_w == 0 && groups == 1 && k4 == p->in_c &&
                              n_pix == p->in_h * p->in_w;
    int32_t b, pix, g;
#if TG_USE_MVE
    if (tg_conv2d_s8_mve(p, input, output, scratch)) {
        return;
    }
#endif
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->in_c);
        int8_t *out_b = output + (int32_t)(b * n_pix * p->out_c);
        if (pointwise) {
            tg_conv_pointwise(p, &r, in_b, out_b, scratch, n_pix);
            continue;
        }
        pix = 0;
#if TG_CONV_FUSED
        /* 4 pixels per pass (tg_conv_window_4px), the rest 2 at a time */
        if (groups == 1 && r.rq_fused != NULL && (p->out_c & 1) == 0 && k4 <= TG_CONV_4PX_MAX_K && n_pix >= 4) {
            tg_conv_window_4px(p, &r, in_b, out_b, scratch, n_pix >> 2);
            pix = n_pix & ~3;
        }
#endif
        for (; pix < n_pix; pix += 2) {
            const int32_t two = pix + 1 < n_pix;
            for (g = 0; g < groups; g++) {
                const int32_t oc0 = g * per_group;
                int8_t *o0 = out_b + (int32_t)(pix * p->out_c + oc0);
                tg_conv_col(p, in_b, pix, g * p->filter_in_c, scratch, 0);
                if (two) {
                    tg_conv_col(p, in_b, pix + 1, g * p->filter_in_c, scratch, 1);
                }
                tg_conv_outputs(scratch, p->weights + (int32_t)(oc0 * k4), p->bias + oc0, k4 >> 2, per_group, oc0,
                                &r, o0, two ? o0 + p->out_c : NULL);
            }
        }
    }
}
