/*
 * tg_depthwise_mve.c -- DEPTHWISE_CONV_2D on Helium (MVE), depth multiplier 1:
 * tg_depthwise_conv.c hands a layer here first where the compiler targets MVE
 * (tg_mve.h); other multipliers go on to its paths. Bit-exact with them.
 *
 * Per output pixel (row-major, each written after its own taps are read, as
 * tg_depthwise_conv.c's write-order contract asks) and per 8 channels: every
 * valid tap's 8 input and 8 weight bytes are widened to int16 by the load
 * (VLDRB.S16), the input offset added (|x + offset| <= 255), and VMULLB / VMULLT
 * multiply the even / odd lanes into two int32x4 accumulators. The even and odd
 * channels' requantization constants come by word gathers and their outputs go
 * out by byte scatters. A last group of 1..7 channels runs predicated.
 * With rq_fused and the 3x3 widened weights (tg_kernels.h) the constants are for
 * a doubled accumulator (tg_rq_apply_x2): the sums are doubled first.
 */
#include "tg_mve.h"

#if TG_USE_MVE

/* Filter taps k in [0, size) with 0 <= origin + dilation * k < limit: [*k0, *k1). */
static void tg_mve_taps(int32_t origin, int32_t dilation, int32_t size, int32_t limit, int32_t *k0, int32_t *k1)
{
    const int32_t first = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
    const int32_t last = origin > limit - 1 ? 0 : (limit - 1 - origin) / dilation + 1;
    *k0 = tg_min32(first, size);
    *k1 = tg_max32(tg_min32(last, size), *k0);
}

typedef struct {
    const int8_t *x;  /* input of the first valid tap, at the group's first channel */
    const int8_t *w;  /* its weights */
    int32_t nky, nkx; /* valid taps */
    int32_t x_row, x_col, w_row; /* steps: input row / tap, weight row (a tap is in_c) */
    int32_t w_col;
} tg_mve_dw_t;

/* 8 channels (n of them valid when tail) of one pixel: even channels into *ae,
 * odd into *ao (added to what they hold). */
TG_INLINE void tg_mve_dw_body(const tg_mve_dw_t *t, int16_t offset, int32_t n, int32_t tail, int32x4_t *ae,
                              int32x4_t *ao)
{
    const mve_pred16_t p = tail ? vctp16q((uint32_t)n) : 0xFFFF;
    int32x4_t e = *ae, o = *ao;
    const int8_t *xr = t->x, *wr = t->w;
    int32_t ky, kx;
    for (ky = t->nky; ky > 0; ky--, xr += t->x_row, wr += t->w_row) {
        const int8_t *xp = xr, *wp = wr;
        for (kx = t->nkx; kx > 0; kx--, xp += t->x_col, wp += t->w_col) {
            int16x8_t x, w;
            if (tail) {
                x = vldrbq_z_s16(xp, p);
                w = vldrbq_z_s16(wp, p);
            } else {
                x = vldrbq_s16(xp);
                w = vldrbq_s16(wp);
            }
            x = vaddq_n_s16(x, offset);
            e = vaddq_s32(e, vmullbq_int_s16(x, w));
            o = vaddq_s32(o, vmulltq_int_s16(x, w));
        }
    }
    *ae = e;
    *ao = o;
}

static TG_NOINLINE void tg_mve_dw_tail(const tg_mve_dw_t *t, int16_t offset, int32_t n, int32x4_t *ae, int32x4_t *ao)
{
    tg_mve_dw_body(t, offset, n, 1, ae, ao);
}

/* The even (odd = 1: odd) channels' rq_fused constants of the group at q (qstep words
 * per channel), ne of them valid. */
TG_INLINE tg_mve_rq_t tg_mve_rq_gather(const int32_t *q, int32_t qstep, int32_t odd, mve_pred16_t pe)
{
    tg_mve_rq_t k;
    if (qstep != 0) {
        const uint32x4_t idx = vidupq_n_u32(odd ? 4u : 0u, 8);
        k.m = vldrwq_gather_shifted_offset_z_s32(q, idx, pe);
        k.lp1 = vldrwq_gather_shifted_offset_z_s32(q + 1, idx, pe);
        k.c = vldrwq_gather_shifted_offset_z_s32(q + 2, idx, pe);
        k.nright = vnegq_s32(vldrwq_gather_shifted_offset_z_s32(q + 3, idx, pe));
    } else {
        k = tg_mve_rq_load4(q, 0);
    }
    return k;
}

/* Every channel of one output pixel (t: its valid taps at channel 0) into out, 8 at a time. */
static TG_NOINLINE void tg_mve_dw8(const tg_conv_params_t *p, tg_mve_dw_t t, int8_t *out)
{
    const int32_t c_all = p->in_c;
    const int32_t doubled = p->dw3x3_widened != NULL && p->rq_fused != NULL;
    const int32_t qstep = p->per_channel ? 4 : 0;
    const int16_t offset = (int16_t)p->input_offset;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const uint32x4_t even2 = vidupq_n_u32(0, 2), odd2 = vidupq_n_u32(1, 2);
    int32_t c;
    for (c = 0; c < c_all; c += 8, t.x += 8, t.w += 8) {
        const int32_t n = tg_min32(8, c_all - c);
        const mve_pred16_t pe = vctp32q((uint32_t)((n + 1) >> 1)), po = vctp32q((uint32_t)(n >> 1));
        int32x4_t ae, ao;
        if (p->bias != NULL) {
            ae = vldrwq_gather_shifted_offset_z_s32(p->bias + c, even2, pe);
            ao = vldrwq_gather_shifted_offset_z_s32(p->bias + c, odd2, po);
        } else {
            ae = ao = vdupq_n_s32(0);
        }
        if (n == 8) {
            tg_mve_dw_body(&t, offset, 8, 0, &ae, &ao);
        } else {
            tg_mve_dw_tail(&t, offset, n, &ae, &ao);
        }
        if (p->rq_fused != NULL) {
            const int32_t *q = p->rq_fused + qstep * c;
            tg_mve_rq_t k;
            if (doubled) {
                ae = vaddq_s32(ae, ae);
                ao = vaddq_s32(ao, ao);
            }
            k = tg_mve_rq_gather(q, qstep, 0, pe);
            ae = tg_mve_rq_apply(ae, &k, lo, hi, doubled);
            k = tg_mve_rq_gather(q, qstep, 1, po);
            ao = tg_mve_rq_apply(ao, &k, lo, hi, doubled);
            vstrbq_scatter_offset_p_s32(out + c, even2, ae, pe);
            vstrbq_scatter_offset_p_s32(out + c, odd2, ao, po);
        } else {
            const tg_channel_requant_t r = {p->multiplier, p->shift, p->per_channel, p->output_offset,
                                            p->act_min, p->act_max, p->fast_requant, p->rq_fused};
            int32_t acc[8];
            vstrwq_scatter_shifted_offset_s32(acc, even2, ae);
            vstrwq_scatter_shifted_offset_s32(acc, odd2, ao);
            tg_requantize_channels(&r, acc, 1, n, c, out + c, NULL);
        }
    }
}

/* ---- 3x3, rq_fused, widened weights, in_c a multiple of 8 ----------------------------
 * The widened block's first 4 words per 4 channels are 2 * (bias + input_offset * sum of
 * the channel's 9 weights) (tg_kernels.h): with that folded bias the taps multiply the raw
 * input bytes (no offset add) and VQDMULLB / VQDMULLT give the doubled products 2 * x * w
 * (|x * w| <= 2^14: never saturates) straight into the doubled accumulators that rq_fused
 * expects (its lp1 is 0). A tap outside the input multiplies the zero point instead, which
 * takes input_offset * w back out of the folded bias: the same sum as the valid taps only. */

typedef struct {
    const int32_t *fb;      /* folded, doubled biases: the widened block */
    const int32_t *q;       /* rq_fused */
    int32_t qgroup;         /* rq_fused words per 8 channels: 32 or 0 */
    int32_t c_all;
    int32_t xc, xr;         /* input steps: one tap right, one tap down */
    int16_t zp;             /* the input zero point */
} tg_mve_dw3_t;

/* The folded biases of channels 0, 2, 4, 6 (1, 3, 5, 7) of 8: words 0, 2, 22, 24 (1, 3, 23, 25)
 * of their two widened blocks. (A table: GCC 12's vcreateq_u32 puts its two halves the other
 * way round from what QEMU runs.) */
static const uint32_t tg_mve_fb_idx[8] = {0, 2, 22, 24, 1, 3, 23, 25};

#define TG_MVE_DW3_TAP(xv, wp)                                   \
    do {                                                         \
        const int16x8_t w_ = vldrbq_s16(wp);                     \
        const int16x8_t x_ = (xv);                               \
        e = vaddq_s32(e, vqdmullbq_s16(x_, w_));                 \
        o = vaddq_s32(o, vqdmulltq_s16(x_, w_));                 \
        __asm__ volatile("" : "+w"(e), "+w"(o) : : "memory");    \
    } while (0)

/* One filter row of tg_mve_dw3_inside: 3 taps, xt and wt walked to the next row's. */
#define TG_MVE_DW3_ROW()                       \
    do {                                       \
        TG_MVE_DW3_TAP(vldrbq_s16(xt), wt);    \
        xt += xc;                              \
        wt += c_all;                           \
        TG_MVE_DW3_TAP(vldrbq_s16(xt), wt);    \
        xt += xc;                              \
        wt += c_all;                           \
        TG_MVE_DW3_TAP(vldrbq_s16(xt), wt);    \
        wt += c_all;                           \
    } while (0)

/* The same tap for two pixels x_px apart, one weight load for both. */
#define TG_MVE_DW3_TAP2(xp, wp)                                                          \
    do {                                                                                 \
        const int16x8_t w_ = vldrbq_s16(wp);                                             \
        int16x8_t x_ = vldrbq_s16(xp);                                                   \
        e = vaddq_s32(e, vqdmullbq_s16(x_, w_));                                         \
        o = vaddq_s32(o, vqdmulltq_s16(x_, w_));                                         \
        x_ = vldrbq_s16((xp) + x_px);                                                    \
        e1 = vaddq_s32(e1, vqdmullbq_s16(x_, w_));                                       \
        o1 = vaddq_s32(o1, vqdmulltq_s16(x_, w_));                                       \
        __asm__ volatile("" : "+w"(e), "+w"(o), "+w"(e1), "+w"(o1) : : "memory");        \
    } while (0)

/* (The empty asm makes xt / wt real walking pointers: GCC would otherwise address each tap
 * from a base and an offset kept on the stack.) */
#define TG_MVE_DW3_ROW2()                                  \
    do {                                                   \
        TG_MVE_DW3_TAP2(xt, wt);                           \
        xt += xc;                                          \
        wt += c_all;                                       \
        __asm__ volatile("" : "+r"(xt), "+r"(wt));         \
        TG_MVE_DW3_TAP2(xt, wt);                           \
        xt += xc;                                          \
        wt += c_all;                                       \
        __asm__ volatile("" : "+r"(xt), "+r"(wt));         \
        TG_MVE_DW3_TAP2(xt, wt);                           \
        wt += c_all;                                       \
    } while (0)

/* Requantize the even (e) and odd (o) channels of 8 and write them to out; with two, also
 * e1 / o1 to out1 (same channels, the next pixel). */
TG_INLINE void tg_mve_dw3_out2(int32_t qgroup, const int32_t *q, int32x4_t e, int32x4_t o, int32x4_t e1,
                               int32x4_t o1, int32_t two, int32x4_t lo, int32x4_t hi, int8_t *out, int8_t *out1)
{
    const uint32x4_t qe = qgroup ? vidupq_n_u32(0, 8) : vdupq_n_u32(0);
    const uint32x4_t qo = qgroup ? vidupq_n_u32(4, 8) : vdupq_n_u32(0);
    tg_mve_rq_t r;
    r.m = vldrwq_gather_shifted_offset_s32(q, qe);
    r.c = vldrwq_gather_shifted_offset_s32(q + 2, qe);
    r.nright = vnegq_s32(vldrwq_gather_shifted_offset_s32(q + 3, qe));
    e = tg_mve_rq_apply(e, &r, lo, hi, 1);
    if (two) {
        e1 = tg_mve_rq_apply(e1, &r, lo, hi, 1);
    }
    r.m = vldrwq_gather_shifted_offset_s32(q, qo);
    r.c = vldrwq_gather_shifted_offset_s32(q + 2, qo);
    r.nright = vnegq_s32(vldrwq_gather_shifted_offset_s32(q + 3, qo));
    o = tg_mve_rq_apply(o, &r, lo, hi, 1);
    vstrbq_scatter_offset_s32(out, vidupq_n_u32(0, 2), e);
    vstrbq_scatter_offset_s32(out, vidupq_n_u32(1, 2), o);
    if (two) {
        o1 = tg_mve_rq_apply(o1, &r, lo, hi, 1);
        vstrbq_scatter_offset_s32(out1, vidupq_n_u32(0, 2), e1);
        vstrbq_scatter_offset_s32(out1, vidupq_n_u32(1, 2), o1);
    }
}

/* Requantize the even (e) and odd (o) channels of 8 and write them to out (one pixel). */
TG_INLINE void tg_mve_dw3_out(int32_t qgroup, const int32_t *q, int32x4_t e, int32x4_t o, int32x4_t lo,
                              int32x4_t hi, int8_t *out)
{
    tg_mve_dw3_out2(qgroup, q, e, o, e, o, 0, lo, hi, out, out);
}

/* n consecutive output pixels whose 9 taps are all inside the input: x at the first one's
 * top-left tap, x_px between pixels. */
static TG_NOINLINE void tg_mve_dw3_inside(const tg_conv_params_t *p, const tg_mve_dw3_t *k, const int8_t *x,
                                          int32_t x_px, int32_t n, int8_t *out)
{
    /* The empty asm after each tap (TG_MVE_DW3_TAP) keeps GCC from hoisting all 18 loads
     * to the top of the body and spilling them. */
    const int32_t c_all = k->c_all, xc = k->xc, xr2 = k->xr - 2 * k->xc, qgroup = k->qgroup;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const uint32x4_t fbe = vld1q_u32(tg_mve_fb_idx), fbo = vld1q_u32(tg_mve_fb_idx + 4);
    /* two pixels at a time (written after both are read: the write-order contract allows it) */
    for (; n >= 2; n -= 2, x += 2 * x_px, out += 2 * c_all) {
        const int8_t *x0 = x, *w = p->weights;
        const int32_t *fb = k->fb, *q = k->q;
        int8_t *o8 = out;
        int32_t c;
        for (c = c_all; c > 0; c -= 8, x0 += 8, w += 8, fb += 44, q += qgroup, o8 += 8) {
            const int8_t *xt = x0, *wt = w;
            int32x4_t e = vldrwq_gather_shifted_offset_s32(fb, fbe);
            int32x4_t o = vldrwq_gather_shifted_offset_s32(fb, fbo);
            int32x4_t e1 = e, o1 = o;
            TG_MVE_DW3_ROW2();
            xt += xr2;
            TG_MVE_DW3_ROW2();
            xt += xr2;
            TG_MVE_DW3_ROW2();
            tg_mve_dw3_out2(qgroup, q, e, o, e1, o1, 1, lo, hi, o8, o8 + c_all);
        }
    }
    for (; n > 0; n--, x += x_px, out += c_all) {
        const int8_t *x0 = x, *w = p->weights;
        const int32_t *fb = k->fb, *q = k->q;
        int8_t *o8 = out;
        int32_t c;
        for (c = c_all; c > 0; c -= 8, x0 += 8, w += 8, fb += 44, q += qgroup, o8 += 8) {
            const int8_t *xt = x0, *wt = w;
            int32x4_t e = vldrwq_gather_shifted_offset_s32(fb, fbe);
            int32x4_t o = vldrwq_gather_shifted_offset_s32(fb, fbo);
            TG_MVE_DW3_ROW();
            xt += xr2;
            TG_MVE_DW3_ROW();
            xt += xr2;
            TG_MVE_DW3_ROW();
            tg_mve_dw3_out(qgroup, q, e, o, lo, hi, o8);
        }
    }
}

/* One output pixel with some of its taps outside the input: x at its top-left tap (not
 * read where outside), rows [ky0, ky1) and columns [kx0, kx1) inside. */
static TG_NOINLINE void tg_mve_dw3_edge(const tg_conv_params_t *p, const tg_mve_dw3_t *k, const int8_t *x,
                                        int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, int8_t *out)
{
    const int32_t c_all = k->c_all;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const int16x8_t zpv = vdupq_n_s16(k->zp);
    const uint32x4_t fbe = vld1q_u32(tg_mve_fb_idx), fbo = vld1q_u32(tg_mve_fb_idx + 4);
    const int8_t *w = p->weights;
    const int32_t *fb = k->fb, *q = k->q;
    int32_t c, t;
    int32_t inside = 0; /* bit t: tap t inside */
    for (t = 0; t < 9; t++) {
        const int32_t ky = t / 3, kx = t - 3 * (t / 3);
        inside |= (ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1) << t;
    }
    for (c = 0; c < c_all; c += 8, x += 8, w += 8, fb += 44, q += k->qgroup) {
        int32x4_t e = vldrwq_gather_shifted_offset_s32(fb, fbe);
        int32x4_t o = vldrwq_gather_shifted_offset_s32(fb, fbo);
        for (t = 0; t < 9; t++) {
            const int32_t ky = t / 3, kx = t - 3 * (t / 3);
            TG_MVE_DW3_TAP((inside >> t) & 1 ? vldrbq_s16(x + ky * k->xr + kx * k->xc) : zpv, w + t * c_all);
        }
        tg_mve_dw3_out(k->qgroup, q, e, o, lo, hi, out + c);
    }
}

/* The layer when it has the 3x3 fast path's form (above); 0 otherwise. */
static int32_t tg_mve_dw3(const tg_conv_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t c_all = p->in_c;
    tg_mve_dw3_t k;
    int32_t b, oy, ox;
    if (p->dw3x3_widened == NULL || p->rq_fused == NULL || p->filter_h != 3 || p->filter_w != 3 ||
        (c_all & 7) != 0 || c_all == 0) {
        return 0;
    }
    k.fb = p->dw3x3_widened;
    k.q = p->rq_fused;
    k.qgroup = p->per_channel ? 32 : 0;
    k.c_all = c_all;
    k.xc = p->dilation_w * c_all;
    k.xr = p->dilation_h * p->in_w * c_all;
    k.zp = (int16_t)(-p->input_offset);
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * c_all);
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int8_t *out_row = output + (int32_t)((b * p->out_h + oy) * p->out_w * c_all);
            int32_t ky0, ky1;
            tg_mve_taps(y0, p->dilation_h, 3, p->in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w;) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                const int8_t *x = in_b + (int32_t)((y0 * p->in_w + x0) * c_all);
                int32_t kx0, kx1;
                tg_mve_taps(x0, p->dilation_w, 3, p->in_w, &kx0, &kx1);
                if (ky0 == 0 && ky1 == 3 && kx0 == 0 && kx1 == 3) {
                    /* the run of pixels whose taps are all inside: x0 + 2 dilation < in_w */
                    const int32_t last = (p->in_w - 1 - 2 * p->dilation_w + p->pad_w) / p->stride_w;
                    const int32_t n = tg_min32(last, p->out_w - 1) - ox + 1;
                    tg_mve_dw3_inside(p, &k, x, p->stride_w * c_all, n, out_row + ox * c_all);
                    ox += n;
                } else {
                    tg_mve_dw3_edge(p, &k, x, ky0, ky1, kx0, kx1, out_row + ox * c_all);
                    ox++;
                }
            }
        }
    }
    return 1;
}

int32_t tg_depthwise_conv2d_s8_mve(const tg_conv_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t c_all = p->in_c;
    int32_t b, oy, ox;
    if (p->depth_multiplier != 1) {
        return 0;
    }
    if (tg_mve_dw3(p, input, output)) {
        return 1;
    }
    for (b = 0; b < p->batches; b++) {
        const int8_t *in_b = input + (int32_t)(b * p->in_h * p->in_w * c_all);
        for (oy = 0; oy < p->out_h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            tg_mve_taps(y0, p->dilation_h, p->filter_h, p->in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int8_t *out = output + (int32_t)(((b * p->out_h + oy) * p->out_w + ox) * c_all);
                int32_t kx0, kx1;
                tg_mve_dw_t t;
                tg_mve_taps(x0, p->dilation_w, p->filter_w, p->in_w, &kx0, &kx1);
                t.x = in_b + (int32_t)(((y0 + p->dilation_h * ky0) * p->in_w + x0 + p->dilation_w * kx0) * c_all);
                t.w = p->weights + (int32_t)((ky0 * p->filter_w + kx0) * c_all);
                t.nky = ky1 - ky0;
                t.nkx = kx1 - kx0;
                t.x_row = p->dilation_h * p->in_w * c_all;
                t.x_col = p->dilation_w * c_all;
                t.w_row = p->filter_w * c_all;
                t.w_col = c_all;
                if (t.nkx == 0) {
                    t.nky = 0;
                }
                tg_mve_dw8(p, t, out);
            }
        }
    }
    return 1;
}

#else
typedef int tg_depthwise_mve_unused_t; /* no MVE: an empty translation unit is not ISO C */
#endif
