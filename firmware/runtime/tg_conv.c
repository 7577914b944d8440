/*
 * tg_conv.c -- CONV_2D and DEPTHWISE_CONV_2D (int8, NHWC; see tg_kernels.h).
 *
 * Written for tinygen; the arithmetic follows the TensorFlow Lite Micro
 * reference kernels operation for operation so that results are identical,
 * bit for bit. Integer accumulation order may differ from the reference
 * where that cannot change a result (exact integer sums).
 *
 * Write-order contract (the memory planner, tinygen/codegen/compiled/memory.py,
 * may place an op's output over its input where the kernel writes behind what it
 * still has to read): CONV_2D and DEPTHWISE_CONV_2D write their output pixels in
 * row-major order (batch, y, x), computing at most 2 output pixels together before
 * they are written; within those pixels the channel order is free. Keep it.
 */
#include <string.h>

#include "tg_dsp.h"
#include "tg_fixedpoint.h"
#include "tg_kernels.h"

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
/* The output stage of tg_conv_outputs with the requantization fused in (rq_fused):
 * one channel pair (w: its interleaved rows, bias: its two folded biases) for the
 * pixel in slot 0 (out0) and, if two, the one in slot 1 (out1); the accumulators are
 * requantized from registers as soon as the dot product ends, each channel's 4
 * constants (q0, q1) loaded once for both pixels. full: the activation range is all
 * of int8 (SSAT alone clamps). two and full are constants at every call, so each
 * variant is its own function. One pair per call: the loop then has the registers
 * to itself (a loop over pairs inside spilled at -Os); the arguments it does not
 * need until the end (q0, q1, out0, out1) arrive on the stack. */
/* The state of tg_conv_pairs_rq between channel pairs: kept in memory so that the
 * dot-product loop has every register but one (the pointer to it). */
typedef struct {
    const uint32_t *col;  /* the column scratch (both pixel slots) */
    const int32_t *bias;  /* the next pair's two folded biases */
    const int32_t *q;     /* the next pair's rq_fused constants */
    int8_t *out0, *out1;  /* the next pair's outputs, slot 0 and slot 1 */
    int32_t qstep;        /* words of constants per channel: 4, or 0 for one set */
    int32_t nblk, npairs; /* blocks per channel (>= 1), pairs left (>= 1) */
    int32_t lo, hi;
} tg_conv_pairs_t;

/* The output stage of tg_conv_outputs with the requantization fused in (rq_fused):
 * npairs channel pairs (w: their interleaved rows, consecutive) for the pixel in
 * slot 0 and, if two, the one in slot 1; each pair's accumulators are requantized
 * from registers as soon as its dot product ends, each channel's constants loaded
 * once for both pixels. full: the activation range is all of int8 (SSAT alone
 * clamps). two and full are constants at every call, so each variant is its own
 * function. */
TG_INLINE void tg_conv_pairs_rq_body(const uint32_t *w, tg_conv_pairs_t *c, int32_t two, int32_t full)
{
    do {
        const uint32_t *x = c->col;
        int32_t nblk = c->nblk;
        int32_t a00 = c->bias[0], a01 = c->bias[0], a10 = c->bias[1], a11 = c->bias[1];
        do {
            uint32_t x0, x1, y0, y1, v, wl;
            TG_LDRD_INC(x0, x1, x);
            if (two) {
                TG_LDRD_INC(y0, y1, x);
            } else {
                x += 2;
                y0 = y1 = 0;
            }
            TG_LDR_INC(v, w);
            wl = tg_sxtb16(v);
            v = tg_sxtb16_ror8(v);
            a00 = tg_smlad(x0, wl, a00);
            a00 = tg_smlad(x1, v, a00);
            if (two) {
                a01 = tg_smlad(y0, wl, a01);
                a01 = tg_smlad(y1, v, a01);
            }
            TG_LDR_INC(v, w);
            wl = tg_sxtb16(v);
            v = tg_sxtb16_ror8(v);
            a10 = tg_smlad(x0, wl, a10);
            a10 = tg_smlad(x1, v, a10);
            if (two) {
                a11 = tg_smlad(y0, wl, a11);
                a11 = tg_smlad(y1, v, a11);
            }
        } while (--nblk != 0);
        {
            /* every load before the first byte store (which may alias anything) */
            const int32_t lo = full ? -128 : c->lo, hi = full ? 127 : c->hi;
            const int32_t qstep = c->qstep;
            const int32_t *q = c->q;
            int8_t *out0 = c->out0, *out1 = c->out1;
            int8_t v00, v01 = 0, v10, v11 = 0;
            tg_rq_t k = tg_rq_load(q);
            v00 = tg_rq_clamp(tg_rq_apply(a00, k), lo, hi, full);
            if (two) {
                v01 = tg_rq_clamp(tg_rq_apply(a01, k), lo, hi, full);
            }
            k = tg_rq_load(q + qstep);
            v10 = tg_rq_clamp(tg_rq_apply(a10, k), lo, hi, full);
            if (two) {
                v11 = tg_rq_clamp(tg_rq_apply(a11, k), lo, hi, full);
            }
            c->q = q + 2 * qstep;
            c->bias += 2;
            c->out0 = out0 + 2;
            c->out1 = out1 + 2;
            out0[0] = v00;
            out0[1] = v10;
            if (two) {
                out1[0] = v01;
                out1[1] = v11;
            }
        }
    } while (--c->npairs != 0);
}

#define TG_CONV_PAIRS_RQ(name, two, full)                                                                   \
    static TG_NOINLINE void name(const uint32_t *w, tg_conv_pairs_t *c) { tg_conv_pairs_rq_body(w, c, two, full); }
TG_CONV_PAIRS_RQ(tg_conv_pairs_rq_2px_full, 1, 1)
TG_CONV_PAIRS_RQ(tg_conv_pairs_rq_1px_full, 0, 1)
TG_CONV_PAIRS_RQ(tg_conv_pairs_rq_2px, 1, 0)
TG_CONV_PAIRS_RQ(tg_conv_pairs_rq_1px, 0, 0)
#undef TG_CONV_PAIRS_RQ

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

/* Filter taps k in [0, size) with 0 <= origin + dilation * k < limit: [*k0, *k1). */
static void tg_valid_taps(int32_t origin, int32_t dilation, int32_t size, int32_t limit, int32_t *k0, int32_t *k1)
{
    int32_t first = 0;
    int32_t last;
    if (origin < 0) {
        first = (-origin + dilation - 1) / dilation;
    }
    if (origin > limit - 1) {
        last = 0;
    } else {
        last = (limit - 1 - origin) / dilation + 1;
    }
    *k0 = tg_min32(first, size);
    *k1 = tg_max32(tg_min32(last, size), *k0);
}

/* Bytes staged by tg_conv_col_staged before they are widened into the column. */
#define TG_COL_STAGE 64

/* The column when filter_in_c is not a multiple of 4 (first layers: 1 or 3 input
 * channels): each tap's raw bytes (or zero points) are appended to a small int8
 * stage in k order, and whole multiples of 4 go through tg_col_put_run, 4 values
 * per 32-bit load, instead of one scattered int16 store per value. Same column. */
static void tg_conv_col_staged(const tg_conv_params_t *p, const int8_t *in_b, int32_t y0, int32_t x0, int32_t goff,
                               int16_t *col, int32_t slot)
{
    const int32_t filter_in_c = p->filter_in_c;
    const int8_t zp = (int8_t)(-p->input_offset);
    int8_t stage[TG_COL_STAGE + 4];
    int32_t ns = 0, kbase = 0;
    int32_t ky, kx, c;
    for (ky = 0; ky < p->filter_h; ky++) {
        const int32_t iy = y0 + p->dilation_h * ky;
        const int32_t row_ok = (iy >= 0) && (iy < p->in_h);
        for (kx = 0; kx < p->filter_w; kx++) {
            const int32_t ix = x0 + p->dilation_w * kx;
            if (ns + filter_in_c > TG_COL_STAGE) {
                const int32_t n4 = ns & ~3;
                tg_col_put_run(col, kbase, slot, stage, n4);
                kbase += n4;
                for (c = n4; c < ns; c++) {
                    stage[c - n4] = stage[c];
                }
                ns -= n4;
            }
            if (row_ok && ix >= 0 && ix < p->in_w) {
                const int8_t *src = in_b + (int32_t)((iy * p->in_w + ix) * p->in_c + goff);
                for (c = 0; c < filter_in_c; c++) {
                    stage[ns + c] = src[c];
                }
            } else {
                for (c = 0; c < filter_in_c; c++) {
                    stage[ns + c] = zp;
                }
            }
            ns += filter_in_c;
        }
    }
    while (ns & 3) { /* the padding past K: zero weights, zero column */
        stage[ns++] = 0;
    }
    tg_col_put_run(col, kbase, slot, stage, ns);
    tg_col_zero_tail(col, kbase + ns, p->k_padded, slot);
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

void tg_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output, int16_t *scratch)
{
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t per_group = p->out_c / groups;
    const int32_t k4 = p->k_padded;
    const int32_t n_pix = p->out_h * p->out_w;
    const tg_channel_requant_t r = {p->multiplier, p->shift, p->per_channel, p->output_offset,
                                    p->act_min, p->act_max, p->fast_requant, p->rq_fused};
    int32_t b, pix, g;
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->in_c);
        int8_t *out_b = output + (int32_t)(b * n_pix * p->out_c);
        for (pix = 0; pix < n_pix; pix += 2) {
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

/* ==== DEPTHWISE_CONV_2D =================================================== */

#if TG_USE_DSP
/* Four channels (depth multiplier 1) of one output pixel over nky x nkx valid taps:
 * one 32-bit load of input and of filter bytes per tap, the input offset added
 * while widening (SXTAB16), four accumulators. */
static TG_NOINLINE void tg_dw_dot_4ch(const int8_t *x, const int8_t *w, int32_t nky, int32_t nkx,
                                      const int32_t *steps, uint32_t offset_pair, int32_t *acc)
{
    const int32_t x_row = steps[0], x_step = steps[1], w_row = steps[2], w_step = steps[3];
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; nky > 0; nky--, x += x_row, w += w_row) {
        const int8_t *xp = x;
        const int8_t *wp = w;
        int32_t k;
        for (k = nkx; k > 0; k--, xp += x_step, wp += w_step) {
            const uint32_t xv = tg_load_u32(xp);
            const uint32_t wv = tg_load_u32(wp);
            const uint32_t x02 = tg_sxtab16(offset_pair, xv);
            const uint32_t x13 = tg_sxtab16_ror8(offset_pair, xv);
            const uint32_t w02 = tg_sxtb16(wv);
            const uint32_t w13 = tg_sxtb16_ror8(wv);
            a0 = tg_smlabb(x02, w02, a0);
            a2 = tg_smlatt(x02, w02, a2);
            a1 = tg_smlabb(x13, w13, a1);
            a3 = tg_smlatt(x13, w13, a3);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

#if TG_USE_DSP
/* (lo16(a), lo16(b)) and (hi16(a), hi16(b)): PKHBT / PKHTB. */
#if TG_HW_DSP && defined(__GNUC__)
TG_INLINE uint32_t tg_pack_lo16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
TG_INLINE uint32_t tg_pack_hi16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
    return r;
}
#else
TG_INLINE uint32_t tg_pack_lo16(uint32_t a, uint32_t b) { return (a & 0xFFFFu) | (b << 16); }
TG_INLINE uint32_t tg_pack_hi16(uint32_t a, uint32_t b) { return (a >> 16) | (b & 0xFFFF0000u); }
#endif

/* Output values per chunk of the 3x3 path (accumulators on the stack). */
#define TG_DW_CHUNK 32

/* Where a fused depthwise loop requantizes to: rq_fused constants of the first
 * channel (qstep words per channel), activation range, output of that channel. */
typedef struct {
    const int32_t *q;
    int32_t qstep, lo, hi;
    int8_t *out;
} tg_rq_ctx_t;

#if !defined(TG_SINGLE_ROUNDING)
#define TG_DW_FUSED 1
TG_INLINE void tg_rq_run_body(const int32_t *acc, int32_t n, const int32_t *q, int32_t qstep, int32_t lo, int32_t hi,
                              int8_t *out, int32_t full)
{
    do {
        const tg_rq_t k = tg_rq_load(q);
        *out++ = tg_rq_clamp(tg_rq_apply(*acc++, k), lo, hi, full);
        q += qstep;
    } while (--n != 0);
}

/* n accumulators of consecutive channels requantized with rq_fused constants q
 * (qstep words per channel) into out: the depthwise paths' output stage. */
static TG_NOINLINE void tg_rq_run(const tg_channel_requant_t *r, const int32_t *acc, int32_t n, int32_t c0, int8_t *out)
{
    const int32_t qstep = r->per_channel ? 4 : 0;
    const int32_t *q = r->rq_fused + qstep * c0;
    if (r->act_min == -128 && r->act_max == 127) {
        tg_rq_run_body(acc, n, q, qstep, -128, 127, out, 1);
    } else {
        tg_rq_run_body(acc, n, q, qstep, r->act_min, r->act_max, out, 0);
    }
}

/* The depthwise output stage: the fused run where the constants allow it. */
TG_INLINE void tg_dw_requant(const tg_channel_requant_t *r, const int32_t *acc, int32_t n, int32_t c0, int8_t *out)
{
    if (r->rq_fused != NULL) {
        tg_rq_run(r, acc, n, c0, out);
    } else {
        tg_requantize_channels(r, acc, 1, n, c0, out, NULL);
    }
}
#else
#define tg_dw_requant(r, acc, n, c0, out) tg_requantize_channels((r), (acc), 1, (n), (c0), (out), NULL)
#endif

/* 3x3 filter, any stride / dilation / padding, depth multiplier dm (<= 8): ngrp
 * groups of 4 input channels of one output pixel into acc[(4 g + j) * dm + m]
 * (bias included), or with rc requantized straight into the output.
 * taps: the 9 taps' input pointers at the chunk's first channel;
 * a tap outside the input points at a run of zero-point bytes instead, which
 * adds w * zero_point and cancels the input_offset * w folded into the bias
 * (as TFLM's skipped taps add nothing), so border pixels take this loop too and
 * it has no bounds checks. w16: 22 words per (group, m) (tg_kernels.h,
 * dw3x3_widened): the 4 channels' biases with input_offset * sum(w) folded in (so
 * inputs widen raw, SXTB16, and no offset register is live), then the pre-widened
 * weights: taps (0,1), (2,3), (4,5), (6,7) one SMLAD per channel, tap 8
 * SMLABB/SMLATT.
 * Ideas: CMSIS-NN's arm_depthwise_conv_3x3_s8 (4 channels per 32-bit load,
 * offset added while widening) and its _opt variant's int16 tap pairs; the
 * padding-as-zero-point-taps trick replaces TinyEngine's padded copy of the
 * input with 9 pointers, and depth multiplier m re-reads the same input words
 * with another weight set (channel-interleaved at code-generation time). */
TG_INLINE void tg_dw_dot_3x3_body(const int8_t *const *tap_ptrs, const uint32_t *w16, int32_t ngrp, int32_t dm,
                                  int32_t *acc, const tg_rq_ctx_t *rc, int32_t full)
{
    /* a local copy: each tap's pointer is then one SP-relative load in the loop */
    const int8_t *taps[9];
    int32_t g, m;
    memcpy(taps, tap_ptrs, sizeof taps);
    for (g = 0; g < ngrp; g++) {
        const int32_t xo = 4 * g;
        for (m = 0; m < dm; m++) {
            const int32_t o = xo * dm + m;
            int32_t a0, a1, a2, a3;
            uint32_t xa, a02, a13;
            TG_LDRD_INC(a0, a1, w16);
            TG_LDRD_INC(a2, a3, w16);
#define TG_DW_PAIR(t)                                                  \
    do {                                                               \
        const uint32_t xb = tg_load_u32(taps[(t) + 1] + xo);           \
        uint32_t u, v;                                                 \
        xa = tg_load_u32(taps[t] + xo);                                \
        u = tg_sxtb16(xa);                               \
        v = tg_sxtb16(xb);                               \
        a0 = tg_smlad(tg_pack_lo16(u, v), w16[2 * (t)], a0);           \
        a2 = tg_smlad(tg_pack_hi16(u, v), w16[2 * (t) + 1], a2);       \
        u = tg_sxtb16_ror8(xa);                          \
        v = tg_sxtb16_ror8(xb);                          \
        a1 = tg_smlad(tg_pack_lo16(u, v), w16[2 * (t) + 2], a1);       \
        a3 = tg_smlad(tg_pack_hi16(u, v), w16[2 * (t) + 3], a3);       \
    } while (0)
            TG_DW_PAIR(0);
            TG_DW_PAIR(2);
            TG_DW_PAIR(4);
            TG_DW_PAIR(6);
#undef TG_DW_PAIR
            xa = tg_load_u32(taps[8] + xo);
            a02 = tg_sxtb16(xa);
            a13 = tg_sxtb16_ror8(xa);
            a0 = tg_smlabb(a02, w16[16], a0);
            a2 = tg_smlatt(a02, w16[16], a2);
            a1 = tg_smlabb(a13, w16[17], a1);
            a3 = tg_smlatt(a13, w16[17], a3);
            w16 += 18;
            if (rc != NULL) {
                /* requantized from registers: every load before the first byte store */
                const int32_t lo = full ? -128 : rc->lo, hi = full ? 127 : rc->hi;
                const int32_t qs = rc->qstep * dm;
                const int32_t *q = rc->q + rc->qstep * o;
                int8_t *out = rc->out + o;
                int8_t v0, v1, v2, v3;
                tg_rq_t k = tg_rq_load(q);
                v0 = tg_rq_clamp(tg_rq_apply_x2(a0, k), lo, hi, full);
                k = tg_rq_load(q + qs);
                v1 = tg_rq_clamp(tg_rq_apply_x2(a1, k), lo, hi, full);
                k = tg_rq_load(q + 2 * qs);
                v2 = tg_rq_clamp(tg_rq_apply_x2(a2, k), lo, hi, full);
                k = tg_rq_load(q + 3 * qs);
                v3 = tg_rq_clamp(tg_rq_apply_x2(a3, k), lo, hi, full);
                out[0] = v0;
                out[dm] = v1;
                out[2 * dm] = v2;
                out[3 * dm] = v3;
            } else {
                acc[o] = a0;
                acc[o + dm] = a1;
                acc[o + 2 * dm] = a2;
                acc[o + 3 * dm] = a3;
            }
        }
    }
}

/* Multiplier 1 gets its own copy with dm constant: the indexing folds away and
 * fewer values compete for registers (it serves every border pixel of the
 * common case). */
static TG_NOINLINE void tg_dw_dot_3x3_dm1(const int8_t *const *taps, const uint32_t *w16, int32_t ngrp, int32_t *acc)
{
    tg_dw_dot_3x3_body(taps, w16, ngrp, 1, acc, NULL, 0);
}

static TG_NOINLINE void tg_dw_dot_3x3(const int8_t *const *taps, const uint32_t *w16, int32_t ngrp, int32_t dm,
                                      int32_t *acc)
{
    tg_dw_dot_3x3_body(taps, w16, ngrp, dm, acc, NULL, 0);
}

#if TG_DW_FUSED
/* The same with the requantization fused in (rc: rq_fused constants and output of
 * the chunk), multiplier 1 and any, full range or not. */
#define TG_DW_3X3_RQ(name, dm_expr, full)                                                                    \
    static TG_NOINLINE void name(const int8_t *const *taps, const uint32_t *w16, int32_t ngrp, int32_t dm,   \
                                 const tg_rq_ctx_t *rc)                                                     \
    {                                                                                                      \
        (void)dm;                                                                                          \
        tg_dw_dot_3x3_body(taps, w16, ngrp, dm_expr, NULL, rc, full);                                      \
    }
TG_DW_3X3_RQ(tg_dw_3x3_rq_dm1_full, 1, 1)
TG_DW_3X3_RQ(tg_dw_3x3_rq_dm1, 1, 0)
TG_DW_3X3_RQ(tg_dw_3x3_rq_full, dm, 1)
TG_DW_3X3_RQ(tg_dw_3x3_rq, dm, 0)
#undef TG_DW_3X3_RQ
#endif

/* Depth multiplier 1, all 9 taps inside the input: the same sums as
 * tg_dw_dot_3x3 with the taps as offsets from one pointer (fewer loads than
 * 9 pointers, and no multiplier indexing) -- the common MobileNet/DS-CNN case.
 * With rq (rq_fused constants, qstep words per channel) each group's 4 values are
 * requantized from registers into out; without, they go to acc. full: as in
 * tg_rq_clamp. */
typedef struct {
    int32_t row, col; /* input offsets of the next filter row, of the next tap in a row */
    const int32_t *q;
    int32_t qstep, lo, hi;
} tg_dw_m1_t;

TG_INLINE void tg_dw_3x3_m1_body(const int8_t *x, const uint32_t *w16, int32_t ngrp, const tg_dw_m1_t *c,
                                 int32_t *acc, int8_t *out, int32_t rq, int32_t full)
{
    /* tap (ky, kx) at x + ky * row + kx * col: three row pointers and two register
     * offsets address all 9 taps without loading an offset table */
    const int32_t row = c->row, col = c->col, col2 = 2 * c->col;
    const int32_t *q = c->q;
    for (; ngrp > 0; ngrp--, x += 4) {
        const int8_t *x1 = x + row, *x2 = x1 + row;
        int32_t a0, a1, a2, a3;
        uint32_t xa, a02, a13;
        TG_LDRD_INC(a0, a1, w16);
        TG_LDRD_INC(a2, a3, w16);
        /* weights two words per LDRD, post-incremented (22 words per group) */
#define TG_DW_PAIR(pa, pb)                                             \
    do {                                                               \
        const uint32_t xb = tg_load_u32(pb);                           \
        uint32_t u, v, wa, wb;                                         \
        xa = tg_load_u32(pa);                                          \
        u = tg_sxtb16(xa);                               \
        v = tg_sxtb16(xb);                               \
        TG_LDRD_INC(wa, wb, w16);                                      \
        a0 = tg_smlad(tg_pack_lo16(u, v), wa, a0);                     \
        a2 = tg_smlad(tg_pack_hi16(u, v), wb, a2);                     \
        u = tg_sxtb16_ror8(xa);                          \
        v = tg_sxtb16_ror8(xb);                          \
        TG_LDRD_INC(wa, wb, w16);                                      \
        a1 = tg_smlad(tg_pack_lo16(u, v), wa, a1);                     \
        a3 = tg_smlad(tg_pack_hi16(u, v), wb, a3);                     \
    } while (0)
        TG_DW_PAIR(x, x + col);
        TG_DW_PAIR(x + col2, x1);
        TG_DW_PAIR(x1 + col, x1 + col2);
        TG_DW_PAIR(x2, x2 + col);
#undef TG_DW_PAIR
        xa = tg_load_u32(x2 + col2);
        a02 = tg_sxtb16(xa);
        a13 = tg_sxtb16_ror8(xa);
        {
            uint32_t wa, wb;
            TG_LDRD_INC(wa, wb, w16);
            a0 = tg_smlabb(a02, wa, a0);
            a2 = tg_smlatt(a02, wa, a2);
            a1 = tg_smlabb(a13, wb, a1);
            a3 = tg_smlatt(a13, wb, a3);
        }
        if (rq) {
            const int32_t lo = full ? -128 : c->lo, hi = full ? 127 : c->hi;
            const int32_t qs = 4; /* per-channel constants only (the caller checks) */
            int8_t v0, v1, v2, v3;
            tg_rq_t k = tg_rq_load(q);
            v0 = tg_rq_clamp(tg_rq_apply_x2(a0, k), lo, hi, full);
            k = tg_rq_load(q + qs);
            v1 = tg_rq_clamp(tg_rq_apply_x2(a1, k), lo, hi, full);
            k = tg_rq_load(q + 2 * qs);
            v2 = tg_rq_clamp(tg_rq_apply_x2(a2, k), lo, hi, full);
            k = tg_rq_load(q + 3 * qs);
            v3 = tg_rq_clamp(tg_rq_apply_x2(a3, k), lo, hi, full);
            q += 4 * qs;
            out[0] = v0;
            out[1] = v1;
            out[2] = v2;
            out[3] = v3;
            out += 4;
        } else {
            acc[0] = a0;
            acc[1] = a1;
            acc[2] = a2;
            acc[3] = a3;
            acc += 4;
        }
    }
}

static TG_NOINLINE void tg_dw_dot_3x3_m1(const int8_t *x, const uint32_t *w16, int32_t ngrp, const tg_dw_m1_t *c,
                                         int32_t *acc)
{
    tg_dw_3x3_m1_body(x, w16, ngrp, c, acc, NULL, 0, 0);
}

#if TG_DW_FUSED
static TG_NOINLINE void tg_dw_3x3_m1_rq_full(const int8_t *x, const uint32_t *w16, int32_t ngrp, const tg_dw_m1_t *c,
                                             int8_t *out)
{
    tg_dw_3x3_m1_body(x, w16, ngrp, c, NULL, out, 1, 1);
}

static TG_NOINLINE void tg_dw_3x3_m1_rq(const int8_t *x, const uint32_t *w16, int32_t ngrp, const tg_dw_m1_t *c,
                                        int8_t *out)
{
    tg_dw_3x3_m1_body(x, w16, ngrp, c, NULL, out, 1, 0);
}
#endif


/* One output pixel of the 3x3 path: channels [0, in_c & ~3) in chunks of at
 * most TG_DW_CHUNK output values. tap_off: each tap's input offset, or -1 for
 * a tap outside the input (then it reads pad, TG_DW_CHUNK zero-point bytes). */
static void tg_dw_pixel_3x3(const tg_conv_params_t *p, const tg_channel_requant_t *r, const int8_t *in_b,
                            const int32_t *tap_off, const int8_t *pad, int8_t *out)
{
    const int32_t dm = p->depth_multiplier;
    const int32_t step = (TG_DW_CHUNK / dm) & ~3;
    const int32_t n4 = p->in_c & ~3;
    const int8_t *taps[9];
    int32_t ic, t;
    for (ic = 0; ic < n4; ic += step) {
        const int32_t nch = tg_min32(step, n4 - ic);
        int32_t acc[TG_DW_CHUNK];
        for (t = 0; t < 9; t++) {
            taps[t] = tap_off[t] >= 0 ? in_b + tap_off[t] + ic : pad;
        }
        const uint32_t *w16 = TG_WORDS(p->dw3x3_widened) + (ic / 4) * dm * 22;
#if TG_DW_FUSED
        if (r->rq_fused != NULL) {
            const int32_t qstep = r->per_channel ? 4 : 0;
            const tg_rq_ctx_t rc = {r->rq_fused + qstep * ic * dm, qstep, r->act_min, r->act_max, out + ic * dm};
            const int32_t full = r->act_min == -128 && r->act_max == 127;
            if (dm == 1) {
                (full ? tg_dw_3x3_rq_dm1_full : tg_dw_3x3_rq_dm1)(taps, w16, nch / 4, 1, &rc);
            } else {
                (full ? tg_dw_3x3_rq_full : tg_dw_3x3_rq)(taps, w16, nch / 4, dm, &rc);
            }
            continue;
        }
#endif
        if (dm == 1) {
            tg_dw_dot_3x3_dm1(taps, w16, nch / 4, acc);
        } else {
            tg_dw_dot_3x3(taps, w16, nch / 4, dm, acc);
        }
        tg_dw_requant(r, acc, nch * dm, ic * dm, out + ic * dm);
    }
}
#endif

void tg_depthwise_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t dm = p->depth_multiplier;
    /* with rq_fused, a 3x3 layer's widened weights are doubled (tg_kernels.h) */
    const int32_t doubled = p->dw3x3_widened != NULL && p->rq_fused != NULL;
    const tg_channel_requant_t r = {p->multiplier, p->shift, p->per_channel, p->output_offset,
                                    p->act_min, p->act_max, p->fast_requant, p->rq_fused};
    int32_t b, oy, ox, ic, m, ky, kx;
#if TG_USE_DSP
    const uint32_t offset16 = (uint32_t)p->input_offset & 0xFFFFu;
    const uint32_t offset_pair = (offset16 << 16) | offset16;
    const int32_t steps[4] = {p->dilation_h * p->in_w * p->in_c, p->dilation_w * p->in_c,
                              p->filter_w * p->out_c, p->out_c};
    const int32_t use_3x3 = p->dw3x3_widened != NULL && p->filter_h == 3 && p->filter_w == 3 && dm >= 1 &&
                            dm <= 8 && p->in_c >= 4;
    int8_t pad[TG_DW_CHUNK];
    int32_t tap_offsets[9];
    for (ky = 0; ky < 9; ky++) {
        tap_offsets[ky] = (ky / 3) * steps[0] + (ky % 3) * steps[1];
    }
    memset(pad, -p->input_offset, sizeof pad);
#endif
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->in_c);
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            tg_valid_taps(y0, p->dilation_h, p->filter_h, p->in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int8_t *out = output + (int32_t)(((b * p->out_h + oy) * p->out_w + ox) * p->out_c);
                int32_t kx0, kx1;
                tg_valid_taps(x0, p->dilation_w, p->filter_w, p->in_w, &kx0, &kx1);
                ic = 0;
#if TG_USE_DSP
                if (use_3x3 && ky1 - ky0 == 3 && kx1 - kx0 == 3) {
                    const int8_t *xb = in_b + (int32_t)((y0 * p->in_w + x0) * p->in_c);
                    const int32_t n4 = p->in_c & ~3;
#if TG_DW_FUSED
                    if (dm == 1 && r.rq_fused != NULL && r.per_channel) {
                        const tg_dw_m1_t c = {steps[0], steps[1], r.rq_fused, r.per_channel ? 4 : 0,
                                              r.act_min, r.act_max};
                        if (r.act_min == -128 && r.act_max == 127) {
                            tg_dw_3x3_m1_rq_full(xb, TG_WORDS(p->dw3x3_widened), n4 / 4, &c, out);
                        } else {
                            tg_dw_3x3_m1_rq(xb, TG_WORDS(p->dw3x3_widened), n4 / 4, &c, out);
                        }
                        ic = n4;
                    }
#endif
                    for (; dm == 1 && ic < n4; ic += TG_DW_CHUNK) {
                        const int32_t nch = tg_min32(TG_DW_CHUNK, n4 - ic);
                        int32_t acc[TG_DW_CHUNK];
                        const tg_dw_m1_t c = {steps[0], steps[1], NULL, 0, 0, 0};
                        tg_dw_dot_3x3_m1(xb + ic, TG_WORDS(p->dw3x3_widened) + (ic / 4) * 22, nch / 4, &c, acc);
                        tg_dw_requant(&r, acc, nch, ic, out + ic);
                    }
                    if (dm != 1) {
                        int32_t tap_off[9];
                        const int32_t base = (y0 * p->in_w + x0) * p->in_c;
                        for (ky = 0; ky < 9; ky++) {
                            tap_off[ky] = base + tap_offsets[ky];
                        }
                        tg_dw_pixel_3x3(p, &r, in_b, tap_off, pad, out);
                    }
                    ic = n4;
                } else if (use_3x3) {
                    int32_t tap_off[9];
                    for (ky = 0; ky < 3; ky++) {
                        for (kx = 0; kx < 3; kx++) {
                            const int32_t in = ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1;
                            tap_off[3 * ky + kx] = in ? ((y0 + p->dilation_h * ky) * p->in_w + x0 +
                                                         p->dilation_w * kx) * p->in_c : -1;
                        }
                    }
                    tg_dw_pixel_3x3(p, &r, in_b, tap_off, pad, out);
                    ic = p->in_c & ~3;
                }
                if (dm == 1 && ky1 > ky0 && kx1 > kx0) {
                    const int8_t *xb = in_b + (int32_t)(((y0 + p->dilation_h * ky0) * p->in_w + x0 +
                                                         p->dilation_w * kx0) * p->in_c);
                    const int8_t *wb = p->weights + (int32_t)((ky0 * p->filter_w + kx0) * p->out_c);
                    for (; ic + 4 <= p->in_c; ic += 4) {
                        int32_t acc[4] = {0, 0, 0, 0};
                        if (p->bias != NULL) {
                            acc[0] = p->bias[ic];
                            acc[1] = p->bias[ic + 1];
                            acc[2] = p->bias[ic + 2];
                            acc[3] = p->bias[ic + 3];
                        }
                        tg_dw_dot_4ch(xb + ic, wb + ic, ky1 - ky0, kx1 - kx0, steps, offset_pair, acc);
                        tg_requantize_channels(&r, acc, 1, 4, ic, out + ic, NULL);
                    }
                }
#endif
                for (; ic < p->in_c; ic++) {
                    for (m = 0; m < dm; m++) {
                        const int32_t oc = ic * dm + m;
                        int32_t acc = 0;
                        for (ky = ky0; ky < ky1; ky++) {
                            const int32_t iy = y0 + p->dilation_h * ky;
                            for (kx = kx0; kx < kx1; kx++) {
                                const int32_t ix = x0 + p->dilation_w * kx;
                                const int32_t xval = in_b[(iy * p->in_w + ix) * p->in_c + ic];
                                const int32_t wval = p->weights[(ky * p->filter_w + kx) * p->out_c + oc];
                                acc += wval * (xval + p->input_offset);
                            }
                        }
                        if (p->bias != NULL) {
                            acc += p->bias[oc];
                        }
                        if (doubled) {
                            acc *= 2; /* as the 3x3 loops' accumulators (lp1 = 0 in rq_fused) */
                        }
                        tg_requantize_channels(&r, &acc, 1, 1, oc, out + oc, NULL);
                    }
                }
            }
        }
    }
}
