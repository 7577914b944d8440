/*
 * tg_conv_dot.h -- internal to tg_conv.c (included once, inside its DSP fused-requantization
 * section): the dot-product loops of CONV_2D with the requantization fused in, as inline
 * bodies that tg_conv.c instantiates (2 pixels x 2 channels, 4 pixels x 1 channel). Kept
 * apart from tg_conv.c's column building and layer walk, which is the other idea there.
 */
#ifndef TG_CONV_DOT_H
#define TG_CONV_DOT_H

#include <stdint.h>

#include "tg_dsp.h"
#include "tg_fixedpoint.h"

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
#if TG_HW_DSP && defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(__clang__)
/* The 2-pixel dot product as one asm block: 13 registers (4 accumulators, 2
 * pointers, the count, 6 values), which GCC's allocator does not find by itself
 * around this loop (it spilled the weight pointer: 21 instructions per block of
 * 16 MACs). Two blocks per pass after an odd first one: 17 per block. The same
 * sums, in the same order, as the C loop below (its host/emulated twin). */
#define TG_CONV_BLK_ASM                                                                                      \
    "ldrd %[x0], %[x1], [%[x]], #8\n\t"                                                                      \
    "ldrd %[y0], %[y1], [%[x]], #8\n\t"                                                                      \
    "ldr %[v], [%[w]], #4\n\t"                                                                               \
    "sxtb16 %[wl], %[v]\n\t"                                                                                 \
    "sxtb16 %[v], %[v], ror #8\n\t"                                                                          \
    "smlad %[a00], %[x0], %[wl], %[a00]\n\t"                                                                 \
    "smlad %[a01], %[y0], %[wl], %[a01]\n\t"                                                                 \
    "smlad %[a00], %[x1], %[v], %[a00]\n\t"                                                                  \
    "smlad %[a01], %[y1], %[v], %[a01]\n\t"                                                                  \
    "ldr %[v], [%[w]], #4\n\t"                                                                               \
    "sxtb16 %[wl], %[v]\n\t"                                                                                 \
    "sxtb16 %[v], %[v], ror #8\n\t"                                                                          \
    "smlad %[a10], %[x0], %[wl], %[a10]\n\t"                                                                 \
    "smlad %[a11], %[y0], %[wl], %[a11]\n\t"                                                                 \
    "smlad %[a10], %[x1], %[v], %[a10]\n\t"                                                                  \
    "smlad %[a11], %[y1], %[v], %[a11]\n\t"
#define TG_CONV_ASM_2PX 1
#else
#define TG_CONV_ASM_2PX 0
#endif

TG_INLINE void tg_conv_pairs_rq_body(const uint32_t *w, tg_conv_pairs_t *c, int32_t two, int32_t full)
{
    do {
        const uint32_t *x = c->col;
        int32_t nblk = c->nblk;
        int32_t a00 = c->bias[0], a01 = c->bias[0], a10 = c->bias[1], a11 = c->bias[1];
#if TG_CONV_ASM_2PX
        if (two) {
            uint32_t x0, x1, y0, y1, v, wl;
            __asm__ volatile(
                "tst %[n], #1\n\t"
                "beq 2f\n\t"
                TG_CONV_BLK_ASM
                "subs %[n], %[n], #1\n\t"
                "beq 3f\n"
                "2:\n\t"
                TG_CONV_BLK_ASM
                TG_CONV_BLK_ASM
                "subs %[n], %[n], #2\n\t"
                "bne 2b\n"
                "3:\n\t"
                : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [x] "+r"(x), [w] "+r"(w),
                  [n] "+r"(nblk), [x0] "=&r"(x0), [x1] "=&r"(x1), [y0] "=&r"(y0), [y1] "=&r"(y1), [v] "=&r"(v),
                  [wl] "=&r"(wl)
                :
                : "cc", "memory");
        } else
#endif
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

/* ---- 4 pixels x 1 channel ---------------------------------------------------
 * An ungrouped layer with fused requantization, an even channel count and K4 <=
 * TG_CONV_4PX_MAX_K (1x1 layers; first layers) runs 4 output pixels per pass: pixels 0
 * and 1 in the scratch column's two slots, pixels 2 and 3 in a second column of the same
 * layout on the stack (4 * K4 bytes), and one channel at a time (its weights: every other
 * word of its pair's interleaved rows). Per block of 4 k: one weight load and its two
 * SXTB16 serve 4 pixels (15 instructions per 16 MACs against 17 for 2 channels x 2
 * pixels), and a channel's requantization constants are loaded once for 4 outputs. The
 * 4 pixels are read whole before any is written, which the memory plan's overlap shift
 * covers (tinygen/codegen/compiled/overlap.py). */
#define TG_CONV_4PX_MAX_K 128

typedef struct {
    const uint32_t *col0, *col1; /* pixels 0, 1 (scratch) and 2, 3 (stack) */
    const int32_t *bias;         /* the next channel's folded bias */
    const int32_t *q;            /* the next channel's rq_fused constants */
    int8_t *out;                 /* the next channel of pixel 0 */
    int32_t ostride;             /* out_c: pixel 0 -> pixel 1 */
    int32_t qstep;               /* words of constants per channel: 4, or 0 for one set */
    int32_t nblk, npairs;        /* blocks per channel (>= 1), channel pairs left (>= 1) */
    int32_t lo, hi;
} tg_conv_4px_t;

#if TG_CONV_ASM_2PX
/* One block of 16 MACs: the channel's weight word (every other word: stride 8 bytes),
 * then the 4 pixels' two pairs each. */
#define TG_CONV4_BLK_ASM                                                                                     \
    "ldr %[v], [%[w]], #8\n\t"                                                                               \
    "sxtb16 %[wl], %[v]\n\t"                                                                                 \
    "sxtb16 %[v], %[v], ror #8\n\t"                                                                          \
    "ldrd %[x0], %[x1], [%[xa]], #8\n\t"                                                                     \
    "smlad %[a0], %[x0], %[wl], %[a0]\n\t"                                                                   \
    "smlad %[a0], %[x1], %[v], %[a0]\n\t"                                                                    \
    "ldrd %[x0], %[x1], [%[xa]], #8\n\t"                                                                     \
    "smlad %[a1], %[x0], %[wl], %[a1]\n\t"                                                                   \
    "smlad %[a1], %[x1], %[v], %[a1]\n\t"                                                                    \
    "ldrd %[x0], %[x1], [%[xb]], #8\n\t"                                                                     \
    "smlad %[a2], %[x0], %[wl], %[a2]\n\t"                                                                   \
    "smlad %[a2], %[x1], %[v], %[a2]\n\t"                                                                    \
    "ldrd %[x0], %[x1], [%[xb]], #8\n\t"                                                                     \
    "smlad %[a3], %[x0], %[wl], %[a3]\n\t"                                                                   \
    "smlad %[a3], %[x1], %[v], %[a3]\n\t"
#endif

/* One channel (w: its first weight word) of the 4 pixels, requantized into c->out[i * ostride]. */
TG_INLINE void tg_conv_4px_channel(const uint32_t *w, tg_conv_4px_t *c, int32_t full)
{
    const uint32_t *xa = c->col0, *xb = c->col1;
    int32_t nblk = c->nblk;
    int32_t a0 = c->bias[0], a1 = a0, a2 = a0, a3 = a0;
#if TG_CONV_ASM_2PX
    {
        uint32_t x0, x1, v, wl;
        __asm__ volatile(
            "tst %[n], #1\n\t"
            "beq 2f\n\t"
            TG_CONV4_BLK_ASM
            "subs %[n], %[n], #1\n\t"
            "beq 3f\n"
            "2:\n\t"
            TG_CONV4_BLK_ASM
            TG_CONV4_BLK_ASM
            "subs %[n], %[n], #2\n\t"
            "bne 2b\n"
            "3:\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xa] "+r"(xa), [xb] "+r"(xb),
              [w] "+r"(w), [n] "+r"(nblk), [x0] "=&r"(x0), [x1] "=&r"(x1), [v] "=&r"(v), [wl] "=&r"(wl)
            :
            : "cc", "memory");
    }
#else
    do {
        uint32_t x0, x1, v = *w, wl;
        w += 2;
        wl = tg_sxtb16(v);
        v = tg_sxtb16_ror8(v);
        TG_LDRD_INC(x0, x1, xa);
        a0 = tg_smlad(x0, wl, a0);
        a0 = tg_smlad(x1, v, a0);
        TG_LDRD_INC(x0, x1, xa);
        a1 = tg_smlad(x0, wl, a1);
        a1 = tg_smlad(x1, v, a1);
        TG_LDRD_INC(x0, x1, xb);
        a2 = tg_smlad(x0, wl, a2);
        a2 = tg_smlad(x1, v, a2);
        TG_LDRD_INC(x0, x1, xb);
        a3 = tg_smlad(x0, wl, a3);
        a3 = tg_smlad(x1, v, a3);
    } while (--nblk != 0);
#endif
    {
        /* every load before the first byte store (which may alias anything) */
        const int32_t lo = full ? -128 : c->lo, hi = full ? 127 : c->hi;
        const int32_t os = c->ostride;
        const tg_rq_t k = tg_rq_load(c->q);
        int8_t *out = c->out;
        const int8_t v0 = tg_rq_clamp(tg_rq_apply(a0, k), lo, hi, full);
        const int8_t v1 = tg_rq_clamp(tg_rq_apply(a1, k), lo, hi, full);
        const int8_t v2 = tg_rq_clamp(tg_rq_apply(a2, k), lo, hi, full);
        const int8_t v3 = tg_rq_clamp(tg_rq_apply(a3, k), lo, hi, full);
        c->q += c->qstep;
        c->bias += 1;
        c->out = out + 1;
        out[0] = v0;
        out[os] = v1;
        out[2 * os] = v2;
        out[3 * os] = v3;
    }
}

/* npairs channel pairs (w: their interleaved rows, consecutive) of the 4 pixels. */
TG_INLINE void tg_conv_4px_body(const uint32_t *w, tg_conv_4px_t *c, int32_t full)
{
    do {
        tg_conv_4px_channel(w, c, full);
        tg_conv_4px_channel(w + 1, c, full);
        w += 2 * c->nblk;
    } while (--c->npairs != 0);
}

#endif /* TG_CONV_DOT_H */
