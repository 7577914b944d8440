/*
 * tg_conv_mve.c -- CONV_2D on Helium (MVE): tg_conv.c hands a layer here first
 * where the compiler targets MVE (tg_mve.h). Bit-exact with tg_conv.c's paths
 * (the same folded biases, packed weights and requantization).
 *
 * Two output pixels at a time, as tg_conv.c (same write-order contract: pixels in
 * row-major order, at most 2 computed together): the im2col columns of both are
 * built as raw int8 values (input zero points for the taps outside the input,
 * zeros past K up to a multiple of 16) in the scratch, which holds 4 * K4 bytes:
 * two columns of K16 = K4 rounded up to 16 bytes fit when K4 >= 8 (smaller layers
 * go to tg_conv.c). Then per 4 output channels (2 packed pairs) the dot products
 * (tg_mve_pair: VLD2 of the pair's weights, VMLADAVA.S8 against each column) and
 * the requantization of the 4 channels x 2 pixels as two vectors.
 * Ideas: CMSIS-NN's MVE arm_nn_mat_mult_nt_t_s8 (VMLADAVA over int8 rows, the
 * offset folded into the bias).
 */
#include "tg_mve.h"

#if TG_USE_MVE

/* n >= 0 bytes from src, or n copies of v when src is NULL, to dst: 16 per predicated store. */
static void tg_mve_put(int8_t *dst, const int8_t *src, int8x16_t v, int32_t n)
{
    for (; n > 0; n -= 16, dst += 16) {
        const mve_pred16_t p = vctp8q((uint32_t)n);
        if (src != NULL) {
            v = vldrbq_z_s8(src, p);
            src += 16;
        }
        vstrbq_p_s8(dst, v, p);
    }
}

/* The int8 column of output pixel `pix` for the input channels [goff, goff + filter_in_c)
 * into col (k16 bytes). */
static void tg_mve_col(const tg_conv_params_t *p, const int8_t *in_b, int32_t pix, int32_t goff, int8_t *col,
                       int32_t k16)
{
    const int32_t fic = p->filter_in_c;
    const int32_t oy = pix / p->out_w;
    const int32_t ox = pix - oy * p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_h;
    const int32_t x0 = ox * p->stride_w - p->pad_w;
    const int8x16_t zp = vdupq_n_s8((int8_t)(-p->input_offset));
    /* ungrouped, undilated: a filter row is [left zero points][one run of inside bytes][right ones] */
    const int32_t runs = fic == p->in_c && p->dilation_w == 1;
    const int32_t left = tg_min32(tg_max32(0, -x0), p->filter_w);
    const int32_t right = tg_min32(tg_max32(0, x0 + p->filter_w - p->in_w), p->filter_w - left);
    const int32_t inside = p->filter_w - left - right;
    int8_t *dst = col;
    int32_t ky, kx;
    for (ky = 0; ky < p->filter_h; ky++) {
        const int32_t iy = y0 + p->dilation_h * ky;
        const int32_t row_ok = iy >= 0 && iy < p->in_h;
        if (runs) {
            if (!row_ok) {
                tg_mve_put(dst, NULL, zp, p->filter_w * fic);
            } else {
                tg_mve_put(dst, NULL, zp, left * fic);
                tg_mve_put(dst + left * fic, in_b + (int32_t)((iy * p->in_w + x0 + left) * p->in_c), zp,
                           inside * fic);
                tg_mve_put(dst + (left + inside) * fic, NULL, zp, right * fic);
            }
            dst += p->filter_w * fic;
            continue;
        }
        for (kx = 0; kx < p->filter_w; kx++, dst += fic) {
            const int32_t ix = x0 + p->dilation_w * kx;
            if (row_ok && ix >= 0 && ix < p->in_w) {
                tg_mve_put(dst, in_b + (int32_t)((iy * p->in_w + ix) * p->in_c + goff), zp, fic);
            } else {
                tg_mve_put(dst, NULL, zp, fic);
            }
        }
    }
    tg_mve_put(dst, NULL, vdupq_n_s8(0), k16 - (int32_t)(dst - col));
}

/* n_oc channels (w: their packed rows, bias: folded biases, oc0: the first one's index)
 * for the column col0 -> out0 and, if two, col1 -> out1. two is a constant at each
 * call (tg_mve_outputs_1px / _2px), so no loop tests it. */
TG_INLINE void tg_mve_outputs_body(const tg_conv_params_t *p, const tg_channel_requant_t *r, const int8_t *col0,
                                   const int8_t *col1, int32_t two, const int8_t *w, const int32_t *bias,
                                   int32_t n_oc, int32_t oc0, int8_t *out0, int8_t *out1, mve_pred16_t all)
{
    const int32_t k4 = p->k_padded;
    const int32_t nfull = k4 >> 4, tb = (k4 & 15) >> 2;
    const int32_t qstep = r->per_channel ? 4 : 0;
    const int32x4_t lo = vdupq_n_s32(r->act_min), hi = vdupq_n_s32(r->act_max);
    int32_t a[8]; /* [channel i][pixel j] at 2 i + j */
    int32_t oc = 0;
    if (r->rq_fused != NULL) {
        for (; oc + 4 <= n_oc; oc += 4, w += 4 * k4) {
            tg_mve_rq_t k;
            int32x4x2_t v;
            a[0] = a[1] = bias[oc];
            a[2] = a[3] = bias[oc + 1];
            a[4] = a[5] = bias[oc + 2];
            a[6] = a[7] = bias[oc + 3];
            tg_mve_pair(w, col0, col1, nfull, tb, all, two, a);
            tg_mve_pair(w + 2 * k4, col0, col1, nfull, tb, all, two, a + 4);
            k = tg_mve_rq_load4(r->rq_fused + qstep * (oc0 + oc), qstep);
            v = vld2q_s32(a); /* val[0]: pixel 0's 4 channels, val[1]: pixel 1's */
            vstrbq_s32(out0 + oc, tg_mve_rq_apply(v.val[0], &k, lo, hi, 0));
            if (two) {
                vstrbq_s32(out1 + oc, tg_mve_rq_apply(v.val[1], &k, lo, hi, 0));
            }
        }
    }
    for (; oc < n_oc; oc += 2, w += 2 * k4) {
        const int32_t n = oc + 1 < n_oc ? 2 : 1;
        a[0] = a[1] = bias[oc];
        if (n == 2) {
            a[2] = a[3] = bias[oc + 1];
            tg_mve_pair(w, col0, col1, nfull, tb, all, two, a);
        } else {
            tg_mve_lone(w, col0, col1, nfull, tb, all, two, a);
        }
        tg_requantize_channels(r, a, 2, n, oc0 + oc, out0 + oc, two ? out1 + oc : NULL);
    }
}

static TG_NOINLINE void tg_mve_outputs_2px(const tg_conv_params_t *p, const tg_channel_requant_t *r,
                                           const int8_t *col0, const int8_t *col1, const int8_t *w,
                                           const int32_t *bias, int32_t n_oc, int32_t oc0, int8_t *out0, int8_t *out1)
{
    tg_mve_outputs_body(p, r, col0, col1, 1, w, bias, n_oc, oc0, out0, out1, 0xFFFF);
}

static TG_NOINLINE void tg_mve_outputs_1px(const tg_conv_params_t *p, const tg_channel_requant_t *r,
                                           const int8_t *col0, const int8_t *w, const int32_t *bias, int32_t n_oc,
                                           int32_t oc0, int8_t *out0)
{
    tg_mve_outputs_body(p, r, col0, col0, 0, w, bias, n_oc, oc0, out0, out0, 0xFFFF);
}

/* The same for columns read in place, whose last partial block is read under xp (a constant
 * 0xFFFF above keeps the column path's code as it was: GCC at -Os compiles it worse with
 * a variable predicate). */
static TG_NOINLINE void tg_mve_outputs_2px_xp(const tg_conv_params_t *p, const tg_channel_requant_t *r,
                                              const int8_t *col0, const int8_t *col1, mve_pred16_t xp,
                                              int8_t *out0, int8_t *out1)
{
    tg_mve_outputs_body(p, r, col0, col1, 1, p->weights, p->bias, p->out_c, 0, out0, out1, xp);
}

static TG_NOINLINE void tg_mve_outputs_1px_xp(const tg_conv_params_t *p, const tg_channel_requant_t *r,
                                              const int8_t *col0, mve_pred16_t xp, int8_t *out0)
{
    tg_mve_outputs_body(p, r, col0, col0, 0, p->weights, p->bias, p->out_c, 0, out0, out0, xp);
}

int32_t tg_conv2d_s8_mve(const tg_conv_params_t *p, const int8_t *input, int8_t *output, int16_t *scratch)
{
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t per_group = p->out_c / groups;
    const int32_t k4 = p->k_padded;
    const int32_t k16 = (k4 + 15) & ~15;
    const int32_t n_pix = p->out_h * p->out_w;
    const tg_channel_requant_t r = {p->multiplier, p->shift, p->per_channel, p->output_offset,
                                    p->act_min, p->act_max, p->fast_requant, p->rq_fused};
    int8_t *col0 = (int8_t *)(void *)scratch;
    int8_t *col1 = col0 + k16;
    int32_t b, pix, g;
    /* A 1x1 layer without padding, ungrouped, in_c a multiple of 4: a pixel's column is its
     * input pixel itself (no copy; the tail block's bytes read under a predicate). Reading
     * the input while the pair's outputs are written is safe: the memory plan's shift keeps
     * pixels k and k + 1's outputs off the input of every pixel >= k (overlap.py). */
    const int32_t direct = p->filter_h == 1 && p->filter_w == 1 && p->pad_h == 0 && p->pad_w == 0 && groups == 1 &&
                           k4 == p->in_c;
    if (direct) {
        const mve_pred16_t xp = vctp8q((uint32_t)(k4 & 15));
        for (b = 0; b < p->batches; b++) {
            const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->in_c);
            int8_t *out_b = output + (int32_t)(b * n_pix * p->out_c);
            for (pix = 0; pix < n_pix; pix += 2) {
                const int32_t oy = pix / p->out_w, ox = pix - oy * p->out_w;
                const int8_t *x0 = in_b + (int32_t)((oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c);
                int8_t *o0 = out_b + (int32_t)(pix * p->out_c);
                if (pix + 1 < n_pix) {
                    const int32_t oy1 = (pix + 1) / p->out_w, ox1 = pix + 1 - oy1 * p->out_w;
                    const int8_t *x1 = in_b + (int32_t)((oy1 * p->stride_h * p->in_w + ox1 * p->stride_w) * p->in_c);
                    tg_mve_outputs_2px_xp(p, &r, x0, x1, xp, o0, o0 + p->out_c);
                } else {
                    tg_mve_outputs_1px_xp(p, &r, x0, xp, o0);
                }
            }
        }
        return 1;
    }
    if (k4 < 8) {
        return 0; /* two columns of 16 bytes would not fit the 4 * K4 bytes of scratch */
    }
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * p->in_c);
        int8_t *out_b = output + (int32_t)(b * n_pix * p->out_c);
        for (pix = 0; pix < n_pix; pix += 2) {
            const int32_t two = pix + 1 < n_pix;
            for (g = 0; g < groups; g++) {
                const int32_t oc0 = g * per_group;
                int8_t *o0 = out_b + (int32_t)(pix * p->out_c + oc0);
                tg_mve_col(p, in_b, pix, g * p->filter_in_c, col0, k16);
                if (two) {
                    tg_mve_col(p, in_b, pix + 1, g * p->filter_in_c, col1, k16);
                }
                if (two) {
                    tg_mve_outputs_2px(p, &r, col0, col1, p->weights + (int32_t)(oc0 * k4), p->bias + oc0,
                                       per_group, oc0, o0, o0 + p->out_c);
                } else {
                    tg_mve_outputs_1px(p, &r, col0, p->weights + (int32_t)(oc0 * k4), p->bias + oc0, per_group,
                                       oc0, o0);
                }
            }
        }
    }
    return 1;
}

#else
typedef int tg_conv_mve_unused_t; /* no MVE: an empty translation unit is not ISO C */
#endif
