/*
 * tg_fully_connected.c -- FULLY_CONNECTED (int8; see tg_kernels.h).
 *
 * Bit-exact with the TensorFlow Lite Micro reference kernel; the weights are
 * packed as for CONV_2D (tg_conv.c), with the input offset folded into the bias.
 */
#include <string.h>

#include "tg_dsp.h"
#include "tg_fixedpoint.h"
#include "tg_kernels.h"
#include "tg_mve.h"

/* ==== FULLY_CONNECTED =====================================================
 *
 * No scratch: the int8 input row is read directly, one word of 4 values per
 * block widened on the fly (SXTB16 / SXTB16 ROR 8 give (x0, x2), (x1, x3), the
 * same order the weights widen to), and each widened word is used by up to 4
 * output channels (two packed pairs). The last partial block (K not a
 * multiple of 4) is read from a zero-padded 4-byte copy on the stack. */

#if TG_USE_DSP
/* 4 channels (pairs at wa and wb) x one input row: acc[0..3] += nblk blocks. */
static TG_NOINLINE void tg_fc_dot_4ch(const int8_t *x, const uint32_t *wa, const uint32_t *wb, int32_t nblk,
                                      int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; nblk > 0; nblk--, x += 4) {
        const uint32_t xv = tg_load_u32(x);
        const uint32_t x02 = tg_sxtb16(xv);
        const uint32_t x13 = tg_sxtb16_ror8(xv);
        uint32_t v0, v1;
        TG_LDRD_INC(v0, v1, wa);
        a0 = tg_smlad(x02, tg_sxtb16(v0), a0);
        a0 = tg_smlad(x13, tg_sxtb16_ror8(v0), a0);
        a1 = tg_smlad(x02, tg_sxtb16(v1), a1);
        a1 = tg_smlad(x13, tg_sxtb16_ror8(v1), a1);
        TG_LDRD_INC(v0, v1, wb);
        a2 = tg_smlad(x02, tg_sxtb16(v0), a2);
        a2 = tg_smlad(x13, tg_sxtb16_ror8(v0), a2);
        a3 = tg_smlad(x02, tg_sxtb16(v1), a3);
        a3 = tg_smlad(x13, tg_sxtb16_ror8(v1), a3);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* 2 channels (a pair, 8 bytes per block, two = 1) or a lone channel (4 bytes per
 * block, two = 0) x one input row. */
static TG_NOINLINE void tg_fc_dot_2ch(const int8_t *x, const uint32_t *w, int32_t nblk, int32_t two, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    for (; nblk > 0; nblk--, x += 4) {
        const uint32_t xv = tg_load_u32(x);
        const uint32_t x02 = tg_sxtb16(xv);
        const uint32_t x13 = tg_sxtb16_ror8(xv);
        uint32_t v;
        TG_LDR_INC(v, w);
        a0 = tg_smlad(x02, tg_sxtb16(v), a0);
        a0 = tg_smlad(x13, tg_sxtb16_ror8(v), a0);
        if (two) {
            TG_LDR_INC(v, w);
            a1 = tg_smlad(x02, tg_sxtb16(v), a1);
            a1 = tg_smlad(x13, tg_sxtb16_ror8(v), a1);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}
#else
static void tg_fc_dot_4ch(const int8_t *x, const int8_t *wa, const int8_t *wb, int32_t nblk, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t q;
    for (; nblk > 0; nblk--, x += 4, wa += 8, wb += 8) {
        for (q = 0; q < 4; q++) {
            const int32_t v = x[q];
            a0 += v * wa[q];
            a1 += v * wa[4 + q];
            a2 += v * wb[q];
            a3 += v * wb[4 + q];
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

static void tg_fc_dot_2ch(const int8_t *x, const int8_t *w, int32_t nblk, int32_t two, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1];
    int32_t q;
    for (; nblk > 0; nblk--, x += 4, w += two ? 8 : 4) {
        for (q = 0; q < 4; q++) {
            a0 += x[q] * w[q];
            if (two) {
                a1 += x[q] * w[4 + q];
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}
#endif

/* n (1 to 4) values of channels oc.. requantized: with rq_fused constants straight
 * from the accumulators (tg_fixedpoint.h, tg_rq_fused), else the generic routine. */
static void tg_fc_requant(const tg_channel_requant_t *r, const int32_t *acc, int32_t n, int32_t oc, int8_t *out)
{
#if !defined(TG_SINGLE_ROUNDING)
    if (r->rq_fused != NULL) {
        const int32_t qs = r->per_channel ? 4 : 0;
        const int32_t *q = r->rq_fused + qs * oc;
        const int32_t lo = r->act_min, hi = r->act_max;
        int32_t j;
        if (n == 4 && lo == -128 && hi == 127) {
            /* every load before the first byte store */
            const int8_t v0 = tg_rq_clamp(tg_rq_apply(acc[0], tg_rq_load(q)), lo, hi, 1);
            const int8_t v1 = tg_rq_clamp(tg_rq_apply(acc[1], tg_rq_load(q + qs)), lo, hi, 1);
            const int8_t v2 = tg_rq_clamp(tg_rq_apply(acc[2], tg_rq_load(q + 2 * qs)), lo, hi, 1);
            const int8_t v3 = tg_rq_clamp(tg_rq_apply(acc[3], tg_rq_load(q + 3 * qs)), lo, hi, 1);
            out[oc] = v0;
            out[oc + 1] = v1;
            out[oc + 2] = v2;
            out[oc + 3] = v3;
            return;
        }
        for (j = 0; j < n; j++, q += qs) {
            out[oc + j] = tg_rq_clamp(tg_rq_apply(acc[j], tg_rq_load(q)), lo, hi, 0);
        }
        return;
    }
#endif
    tg_requantize_channels(r, acc, 1, n, oc, out + oc, NULL);
}

void tg_fully_connected_s8(const tg_fc_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t n = p->accum_depth;
    const int32_t k4 = p->accum_padded;
    const int32_t od = p->output_depth;
    const tg_channel_requant_t r = {p->multiplier, p->shift, p->per_channel, p->output_offset,
                                    p->act_min, p->act_max, p->fast_requant, p->rq_fused};
    int32_t b, oc;
#if TG_USE_MVE
    if (tg_fully_connected_s8_mve(p, input, output)) {
        return;
    }
#endif
    for (b = 0; b < p->batches; b++) {
        const int8_t *row = input + (int32_t)(b * n);
        int8_t *out = output + (int32_t)(b * od);
        const int32_t nfull = n >> 2;
        int8_t tail[4] = {0, 0, 0, 0};
        int32_t j;
        for (j = 0; j < (n & 3); j++) { /* a library memcpy call costs more than the bytes */
            tail[j] = row[4 * nfull + j];
        }
        for (oc = 0; oc < od;) {
            const int8_t *w = p->weights + (int32_t)(oc * k4);
            int32_t acc[4];
            if (oc + 4 <= od) {
                acc[0] = p->bias[oc];
                acc[1] = p->bias[oc + 1];
                acc[2] = p->bias[oc + 2];
                acc[3] = p->bias[oc + 3];
                tg_fc_dot_4ch(row, TG_WORDS(w), TG_WORDS(w + 2 * k4), nfull, acc);
                if (n & 3) {
                    tg_fc_dot_4ch(tail, TG_WORDS(w + 8 * nfull), TG_WORDS(w + 2 * k4 + 8 * nfull), 1, acc);
                }
                tg_fc_requant(&r, acc, 4, oc, out);
                oc += 4;
            } else {
                const int32_t two = oc + 2 <= od;
                const int32_t blk = two ? 8 : 4;
                acc[0] = p->bias[oc];
                acc[1] = two ? p->bias[oc + 1] : 0;
                tg_fc_dot_2ch(row, TG_WORDS(w), nfull, two, acc);
                if (n & 3) {
                    tg_fc_dot_2ch(tail, TG_WORDS(w + blk * nfull), 1, two, acc);
                }
                tg_fc_requant(&r, acc, two ? 2 : 1, oc, out);
                oc += two ? 2 : 1;
            }
        }
    }
}
