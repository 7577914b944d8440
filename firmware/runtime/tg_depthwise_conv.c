/*
 * tg_depthwise_conv.c -- DEPTHWISE_CONV_2D (int8, NHWC; see tg_kernels.h).
 *
 * Written for tinygen; the arithmetic follows the TensorFlow Lite Micro
 * reference kernels operation for operation so that results are identical,
 * bit for bit. Integer accumulation order may differ from the reference
 * where that cannot change a result (exact integer sums).
 *
 * Write-order contract (the memory planner, tinygen/codegen/compiled/memory.py,
 * may place an op's output over its input where the kernel writes behind what it
 * still has to read): DEPTHWISE_CONV_2D (like CONV_2D) writes its output pixels in
 * row-major order (batch, y, x), computing at most 2 output pixels together before
 * they are written; within those pixels the channel order is free. Keep it.
 */
#include <string.h>

#include "tg_dsp.h"
#include "tg_fixedpoint.h"
#include "tg_kernels.h"
#include "tg_mve.h"

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

/* k = tg_rq_load(q + 4 * i) (the 4 constants of channel i of a group) with the
 * offset in the two LDRDs: no address add per channel. */
#if TG_HW_DSP && defined(__GNUC__)
#define TG_DW_RQ_LOAD_AT(k, q, i)                                                                            \
    do {                                                                                                   \
        __asm__("ldrd %0, %1, [%2, #%c3]" : "=r"((k).m), "=r"((k).lp1)                                      \
                : "r"(q), "i"(16 * (i)), "m"(*(const int32_t(*)[2])((q) + 4 * (i))));                      \
        __asm__("ldrd %0, %1, [%2, #%c3]" : "=r"((k).c), "=r"((k).right)                                    \
                : "r"(q), "i"(16 * (i) + 8), "m"(*(const int32_t(*)[2])((q) + 4 * (i) + 2)));              \
    } while (0)
#else
#define TG_DW_RQ_LOAD_AT(k, q, i) ((k) = tg_rq_load((q) + 4 * (i)))
#endif

/* Output values per chunk of the 3x3 path (accumulators on the stack). */
#define TG_DW_CHUNK 32
/* Zero-point bytes for the taps outside the input (>= TG_DW_CHUNK): channels per
 * call of the multiplier-1 border loop (tg_dw_border_m1). */
#define TG_DW_PAD 64

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

/* One tap pair (input words at pa, pb) of 4 channels: the multiplier-1 loops' step
 * (a0..a3, xa and w16 are the loop's). */
#define TG_DW_PAIR2(pa, pb)                                             \
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
    int32_t npix, xstep, ostep; /* the fused calls: npix pixels of a row, xstep / ostep bytes apart */
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
        TG_DW_PAIR2(x, x + col);
        TG_DW_PAIR2(x + col2, x1);
        TG_DW_PAIR2(x1 + col, x1 + col2);
        TG_DW_PAIR2(x2, x2 + col);
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
            /* per-channel constants only (the caller checks): 4 words per channel */
            int8_t v0, v1, v2, v3;
            tg_rq_t k;
            TG_DW_RQ_LOAD_AT(k, q, 0);
            v0 = tg_rq_clamp(tg_rq_apply_x2(a0, k), lo, hi, full);
            TG_DW_RQ_LOAD_AT(k, q, 1);
            v1 = tg_rq_clamp(tg_rq_apply_x2(a1, k), lo, hi, full);
            TG_DW_RQ_LOAD_AT(k, q, 2);
            v2 = tg_rq_clamp(tg_rq_apply_x2(a2, k), lo, hi, full);
            TG_DW_RQ_LOAD_AT(k, q, 3);
            v3 = tg_rq_clamp(tg_rq_apply_x2(a3, k), lo, hi, full);
            q += 16;
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
/* A run of c->npix inside pixels of one output row in one call (a call and the
 * setup per pixel cost about 150 instructions, 7 % of a 64-channel pixel). */
static TG_NOINLINE void tg_dw_3x3_m1_rq_full(const int8_t *x, const uint32_t *w16, int32_t ngrp, const tg_dw_m1_t *c,
                                             int8_t *out)
{
    int32_t n = c->npix;
    do {
        tg_dw_3x3_m1_body(x, w16, ngrp, c, NULL, out, 1, 1);
        x += c->xstep;
        out += c->ostep;
    } while (--n != 0);
}

static TG_NOINLINE void tg_dw_3x3_m1_rq(const int8_t *x, const uint32_t *w16, int32_t ngrp, const tg_dw_m1_t *c,
                                        int8_t *out)
{
    int32_t n = c->npix;
    do {
        tg_dw_3x3_m1_body(x, w16, ngrp, c, NULL, out, 1, 0);
        x += c->xstep;
        out += c->ostep;
    } while (--n != 0);
}
#endif

#if TG_DW_FUSED
/* Border pixels of the multiplier-1 fused case: the same sums and requantization
 * as tg_dw_3x3_m1_body, each tap at x + off[t], where a tap outside the input has
 * the offset of a run of zero-point bytes (tg_dw_pad_offset) -- so a border pixel
 * costs about what an inside one does, instead of going through the 9-pointer
 * loop in chunks. (Inside pixels keep the row / column form: GCC allocates it
 * better, -Os 155.6 K against 179.8 K instructions on DS-CNN's inside pixels.) */
typedef struct {
    intptr_t off[9]; /* each tap's byte offset from the group's input pointer */
    const int32_t *q;
    int32_t lo, hi;
} tg_dw_m1t_t;

/* x + o as an address (o may lead from the input to the zero-point pad: integer arithmetic). */
TG_INLINE const int8_t *tg_dw_at(const int8_t *x, intptr_t o) { return (const int8_t *)((uintptr_t)x + (uintptr_t)o); }

/* The offset from x to pad (a tap outside the input). */
TG_INLINE intptr_t tg_dw_pad_offset(const int8_t *pad, const int8_t *x) { return (intptr_t)((uintptr_t)pad - (uintptr_t)x); }

TG_INLINE void tg_dw_3x3_m1t_body(const int8_t *x, const uint32_t *w16, int32_t ngrp, const tg_dw_m1t_t *c,
                                  int8_t *out, int32_t full)
{
    /* a local copy: each tap's offset is then one SP-relative load in the loop */
    intptr_t off[9];
    const int32_t *q = c->q;
    memcpy(off, c->off, sizeof off);
    for (; ngrp > 0; ngrp--, x += 4) {
        int32_t a0, a1, a2, a3;
        uint32_t xa, a02, a13;
        TG_LDRD_INC(a0, a1, w16);
        TG_LDRD_INC(a2, a3, w16);
        TG_DW_PAIR2(tg_dw_at(x, off[0]), tg_dw_at(x, off[1]));
        TG_DW_PAIR2(tg_dw_at(x, off[2]), tg_dw_at(x, off[3]));
        TG_DW_PAIR2(tg_dw_at(x, off[4]), tg_dw_at(x, off[5]));
        TG_DW_PAIR2(tg_dw_at(x, off[6]), tg_dw_at(x, off[7]));
        xa = tg_load_u32(tg_dw_at(x, off[8]));
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
        {
            const int32_t lo = full ? -128 : c->lo, hi = full ? 127 : c->hi;
            int8_t v0, v1, v2, v3;
            tg_rq_t k;
            TG_DW_RQ_LOAD_AT(k, q, 0);
            v0 = tg_rq_clamp(tg_rq_apply_x2(a0, k), lo, hi, full);
            TG_DW_RQ_LOAD_AT(k, q, 1);
            v1 = tg_rq_clamp(tg_rq_apply_x2(a1, k), lo, hi, full);
            TG_DW_RQ_LOAD_AT(k, q, 2);
            v2 = tg_rq_clamp(tg_rq_apply_x2(a2, k), lo, hi, full);
            TG_DW_RQ_LOAD_AT(k, q, 3);
            v3 = tg_rq_clamp(tg_rq_apply_x2(a3, k), lo, hi, full);
            q += 16;
            out[0] = v0;
            out[1] = v1;
            out[2] = v2;
            out[3] = v3;
            out += 4;
        }
    }
}

static TG_NOINLINE void tg_dw_3x3_m1t_rq_full(const int8_t *x, const uint32_t *w16, int32_t ngrp,
                                              const tg_dw_m1t_t *c, int8_t *out)
{
    tg_dw_3x3_m1t_body(x, w16, ngrp, c, out, 1);
}

static TG_NOINLINE void tg_dw_3x3_m1t_rq(const int8_t *x, const uint32_t *w16, int32_t ngrp, const tg_dw_m1t_t *c,
                                         int8_t *out)
{
    tg_dw_3x3_m1t_body(x, w16, ngrp, c, out, 0);
}
#undef TG_DW_PAIR2

/* A border pixel of a multiplier-1 layer with fused per-channel requantization:
 * channels [0, in_c & ~3), TG_DW_PAD per call, its outside taps pointed at pad. */
static void tg_dw_border_m1(const tg_conv_params_t *p, const tg_channel_requant_t *r, const int8_t *in_b,
                            int32_t y0, int32_t x0, int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1,
                            const int8_t *pad, int8_t *out)
{
    const int32_t n4 = p->in_c & ~3;
    const int32_t full = r->act_min == -128 && r->act_max == 127;
    int32_t inside[9];
    int32_t ic, t;
    tg_dw_m1t_t c;
    c.lo = r->act_min;
    c.hi = r->act_max;
    for (t = 0; t < 9; t++) {
        const int32_t ky = t / 3, kx = t % 3;
        inside[t] = ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1;
        c.off[t] = inside[t] ? ((y0 + p->dilation_h * ky) * p->in_w + x0 + p->dilation_w * kx) * p->in_c : 0;
    }
    for (ic = 0; ic < n4; ic += TG_DW_PAD) {
        const int8_t *x = in_b + ic;
        for (t = 0; t < 9; t++) {
            if (!inside[t]) {
                c.off[t] = tg_dw_pad_offset(pad, x);
            }
        }
        c.q = r->rq_fused + 4 * ic;
        (full ? tg_dw_3x3_m1t_rq_full : tg_dw_3x3_m1t_rq)(x, TG_WORDS(p->dw3x3_widened) + (ic / 4) * 22,
                                                        tg_min32(TG_DW_PAD, n4 - ic) / 4, &c, out + ic);
    }
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
#if TG_USE_MVE
    if (tg_depthwise_conv2d_s8_mve(p, input, output)) {
        return;
    }
#endif
#if TG_USE_DSP
    const uint32_t offset16 = (uint32_t)p->input_offset & 0xFFFFu;
    const uint32_t offset_pair = (offset16 << 16) | offset16;
    const int32_t steps[4] = {p->dilation_h * p->in_w * p->in_c, p->dilation_w * p->in_c,
                              p->filter_w * p->out_c, p->out_c};
    const int32_t use_3x3 = p->dw3x3_widened != NULL && p->filter_h == 3 && p->filter_w == 3 && dm >= 1 &&
                            dm <= 8 && p->in_c >= 4;
    int8_t pad[TG_DW_PAD];
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
                        /* this pixel and the inside ones after it in the row (x0 + 2 dilation_w < in_w),
                         * unless a channel tail (in_c % 4, below) must follow each pixel */
                        const int32_t last = (p->in_c & 3) != 0 ? ox :
                            tg_min32(p->out_w - 1, (p->in_w - 1 - 2 * p->dilation_w + p->pad_w) / p->stride_w);
                        const tg_dw_m1_t c = {steps[0], steps[1], r.rq_fused, r.per_channel ? 4 : 0,
                                              r.act_min, r.act_max, last - ox + 1, p->stride_w * p->in_c, p->out_c};
                        ox = last;
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
                        const tg_dw_m1_t c = {steps[0], steps[1], NULL, 0, 0, 0, 1, 0, 0};
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
                }
#if TG_DW_FUSED
                else if (use_3x3 && dm == 1 && r.rq_fused != NULL && r.per_channel) {
                    tg_dw_border_m1(p, &r, in_b, y0, x0, ky0, ky1, kx0, kx1, pad, out);
                    ic = p->in_c & ~3;
                }
#endif
                else if (use_3x3) {
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
