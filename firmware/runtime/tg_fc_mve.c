/*
 * tg_fc_mve.c -- FULLY_CONNECTED on Helium (MVE): tg_fully_connected.c hands a
 * layer here first where the compiler targets MVE (tg_mve.h). Bit-exact with its
 * other paths (same packed weights, folded biases and requantization).
 *
 * The int8 input row is read directly: accum_depth / 16 whole vectors, then the
 * rest (0..15 values) by a predicated load, which reads nothing past the row;
 * the weights past accum_depth up to K4 are zero. Per 4 output channels (2 packed
 * pairs) the dot products are tg_mve_pair's and the requantization one vector.
 */
#include "tg_mve.h"

#if TG_USE_MVE

int32_t tg_fully_connected_s8_mve(const tg_fc_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t n = p->accum_depth;
    const int32_t k4 = p->accum_padded;
    const int32_t od = p->output_depth;
    const int32_t nfull = n >> 4;
    const int32_t rest = n & 15;
    const int32_t tb = (rest + 3) >> 2;
    const mve_pred16_t xp = vctp8q((uint32_t)rest);
    const int32_t qstep = p->per_channel ? 4 : 0;
    const tg_channel_requant_t r = {p->multiplier, p->shift, p->per_channel, p->output_offset,
                                    p->act_min, p->act_max, p->fast_requant, p->rq_fused};
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    int32_t b, oc;
    for (b = 0; b < p->batches; b++) {
        const int8_t *row = input + (int32_t)(b * n);
        int8_t *out = output + (int32_t)(b * od);
        const int8_t *w = p->weights;
        int32_t a[8];
        oc = 0;
        if (p->rq_fused != NULL) {
            for (; oc + 4 <= od; oc += 4, w += 4 * k4) {
                tg_mve_rq_t k;
                int32x4x2_t v;
                a[0] = p->bias[oc];
                a[2] = p->bias[oc + 1];
                a[4] = p->bias[oc + 2];
                a[6] = p->bias[oc + 3];
                a[1] = a[3] = a[5] = a[7] = 0;
                tg_mve_pair(w, row, row, nfull, tb, xp, 0, a);
                tg_mve_pair(w + 2 * k4, row, row, nfull, tb, xp, 0, a + 4);
                k = tg_mve_rq_load4(p->rq_fused + qstep * oc, qstep);
                v = vld2q_s32(a); /* val[0]: the 4 channels */
                vstrbq_s32(out + oc, tg_mve_rq_apply(v.val[0], &k, lo, hi, 0));
            }
        }
        for (; oc < od; oc += 2, w += 2 * k4) {
            const int32_t two = oc + 1 < od;
            a[0] = p->bias[oc];
            a[1] = a[3] = 0;
            if (two) {
                a[2] = p->bias[oc + 1];
                tg_mve_pair(w, row, row, nfull, tb, xp, 0, a);
                a[1] = a[2]; /* tg_requantize_channels: channel i at acc[i] (stride 1) */
            } else {
                tg_mve_lone(w, row, row, nfull, tb, xp, 0, a);
            }
            tg_requantize_channels(&r, a, 1, two ? 2 : 1, oc, out + oc, NULL);
        }
    }
    return 1;
}

#else
typedef int tg_fc_mve_unused_t; /* no MVE: an empty translation unit is not ISO C */
#endif
