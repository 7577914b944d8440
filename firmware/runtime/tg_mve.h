/*
 * tg_mve.h -- internal to the kernels: the Helium (M-profile Vector Extension,
 * Cortex-M55/M85) paths of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED
 * (tg_conv_mve.c, tg_depthwise_mve.c, tg_fc_mve.c) and what they share.
 *
 * Compile-time dispatch: where the compiler targets MVE (__ARM_FEATURE_MVE, e.g.
 * -mcpu=cortex-m55 with -mfloat-abi=hard or softfp) the generic entry points of
 * tg_kernels.h hand a layer to the tg_*_mve function here first; it returns 0
 * for a layer it does not take (the DSP path then runs it). TG_NO_MVE forces the
 * DSP / portable paths; TG_NO_DSP and TG_SINGLE_ROUNDING imply it. Same packed
 * weights, same parameters, bit-exact results: one kernel API.
 *
 * The int8 dot products are VMLADAVA.S8 (16 multiply-accumulates into a scalar
 * per instruction). A channel pair's weights are stored interleaved per block of
 * 4 values (tg_kernels.h, "packed weights"); VLD20/VLD21.32 de-interleave 32
 * bytes of them into the two channels' 16 values, so the packing needs no
 * change. A last partial 16 (4, 8 or 12 values) is read by predicated word
 * gathers, which read nothing past the pair's row.
 *
 * Requantization of 4 channels at once from the rq_fused constants
 * (tg_fixedpoint.h, tg_rq_fused): per lane
 *     VRMULH(acc << (left + 1), m) + c + (acc >> 31), then >> right
 * where VRMULH.S32 is (a * b + 2^31) >> 32 from the exact 64-bit product, the
 * same value as SMMULR, and adding c + sign after it equals SMMLAR's accumulate
 * (c + sign is a whole multiple of 2^32 in the 64-bit sum); VSHL by -right is the
 * arithmetic shift right; VMAX/VMIN with the activation range (inside int8) is
 * SSAT then the clamp. So every lane is tg_rq_fused's value, which tinygen proved
 * equal to TFLM's MultiplyByQuantizedMultiplier at code generation. Without
 * rq_fused the scalar tg_requantize_channels runs.
 */
#ifndef TG_MVE_H
#define TG_MVE_H

#include "tg_dsp.h"
#include "tg_fixedpoint.h"
#include "tg_kernels.h"

#if defined(__ARM_FEATURE_MVE) && !defined(TG_NO_MVE) && !defined(TG_NO_DSP) && !defined(TG_SINGLE_ROUNDING)
#define TG_USE_MVE 1
#include <arm_mve.h>

/* 1 where the layer ran on the MVE path, 0 where the caller must run it. */
int32_t tg_conv2d_s8_mve(const tg_conv_params_t *p, const int8_t *input, int8_t *output, int16_t *scratch);
int32_t tg_depthwise_conv2d_s8_mve(const tg_conv_params_t *p, const int8_t *input, int8_t *output);
int32_t tg_fully_connected_s8_mve(const tg_fc_params_t *p, const int8_t *input, int8_t *output);

/* One channel pair (w: its interleaved rows, 8 bytes per block of 4, 4-byte aligned)
 * against the int8 row x0 and, if two, x1: nfull blocks of 16 values, then tb (0..3)
 * blocks of 4 with x read under the predicate xp. a = {c0.x0, c0.x1, c1.x0, c1.x1}. */
TG_INLINE void tg_mve_pair(const int8_t *w, const int8_t *x0, const int8_t *x1, int32_t nfull, int32_t tb,
                           mve_pred16_t xp, int32_t two, int32_t *a)
{
    int32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
    for (; nfull > 0; nfull--) {
        const int32x4x2_t v = vld2q_s32((const int32_t *)(const void *)w);
        const int8x16_t w0 = vreinterpretq_s8_s32(v.val[0]);
        const int8x16_t w1 = vreinterpretq_s8_s32(v.val[1]);
        const int8x16_t xa = vld1q_s8(x0);
        a00 = vmladavaq_s8(a00, w0, xa);
        a10 = vmladavaq_s8(a10, w1, xa);
        if (two) {
            const int8x16_t xb = vld1q_s8(x1);
            a01 = vmladavaq_s8(a01, w0, xb);
            a11 = vmladavaq_s8(a11, w1, xb);
            x1 += 16;
        }
        w += 32;
        x0 += 16;
    }
    if (tb > 0) {
        const mve_pred16_t wp = vctp32q((uint32_t)tb);
        const int32_t *wq = (const int32_t *)(const void *)w;
        const int8x16_t w0 = vreinterpretq_s8_s32(vldrwq_gather_offset_z_s32(wq, vidupq_n_u32(0, 8), wp));
        const int8x16_t w1 = vreinterpretq_s8_s32(vldrwq_gather_offset_z_s32(wq, vidupq_n_u32(4, 8), wp));
        const int8x16_t xa = vldrbq_z_s8(x0, xp);
        a00 = vmladavaq_s8(a00, w0, xa);
        a10 = vmladavaq_s8(a10, w1, xa);
        if (two) {
            const int8x16_t xb = vldrbq_z_s8(x1, xp);
            a01 = vmladavaq_s8(a01, w0, xb);
            a11 = vmladavaq_s8(a11, w1, xb);
        }
    }
    a[0] = a00;
    a[1] = a01;
    a[2] = a10;
    a[3] = a11;
}

/* A lone channel (w: its row, 4 bytes per block) the same way: a = {c.x0, c.x1}. */
TG_INLINE void tg_mve_lone(const int8_t *w, const int8_t *x0, const int8_t *x1, int32_t nfull, int32_t tb,
                           mve_pred16_t xp, int32_t two, int32_t *a)
{
    int32_t a0 = a[0], a1 = a[1];
    for (; nfull > 0; nfull--, w += 16, x0 += 16) {
        const int8x16_t wv = vld1q_s8(w);
        a0 = vmladavaq_s8(a0, wv, vld1q_s8(x0));
        if (two) {
            a1 = vmladavaq_s8(a1, wv, vld1q_s8(x1));
            x1 += 16;
        }
    }
    if (tb > 0) {
        const int8x16_t wv = vldrbq_z_s8(w, vctp8q((uint32_t)(4 * tb)));
        a0 = vmladavaq_s8(a0, wv, vldrbq_z_s8(x0, xp));
        if (two) {
            a1 = vmladavaq_s8(a1, wv, vldrbq_z_s8(x1, xp));
        }
    }
    a[0] = a0;
    a[1] = a1;
}

/* rq_fused constants of 4 channels as vectors: m, lp1 (left + 1), c, -right. */
typedef struct {
    int32x4_t m, lp1, c, nright;
} tg_mve_rq_t;

/* 4 consecutive channels' constants from q (qstep 4: per channel; 0: one set). */
TG_INLINE tg_mve_rq_t tg_mve_rq_load4(const int32_t *q, int32_t qstep)
{
    tg_mve_rq_t k;
    if (qstep != 0) {
        const int32x4x4_t v = vld4q_s32(q);
        k.m = v.val[0];
        k.lp1 = v.val[1];
        k.c = v.val[2];
        k.nright = vnegq_s32(v.val[3]);
    } else {
        k.m = vdupq_n_s32(q[0]);
        k.lp1 = vdupq_n_s32(q[1]);
        k.c = vdupq_n_s32(q[2]);
        k.nright = vdupq_n_s32(-q[3]);
    }
    return k;
}

/* tg_rq_fused on 4 lanes, clamped to [lo, hi] (inside int8). doubled: acc is handed
 * over as 2 * acc and lp1 is not applied (tg_rq_apply_x2). */
TG_INLINE int32x4_t tg_mve_rq_apply(int32x4_t acc, const tg_mve_rq_t *k, int32x4_t lo, int32x4_t hi, int32_t doubled)
{
    const int32x4_t x = doubled ? acc : vshlq_s32(acc, k->lp1);
    int32x4_t h = vrmulhq_s32(x, k->m);
    h = vaddq_s32(h, vaddq_s32(k->c, vshrq_n_s32(acc, 31)));
    h = vshlq_s32(h, k->nright);
    return vmaxq_s32(vminq_s32(h, hi), lo);
}
#else
#define TG_USE_MVE 0
#endif

#endif /* TG_MVE_H */
