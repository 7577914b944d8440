/* tinygen feature front end (see tg_frontend.h).  Each step is written exactly as its twin in
 * tinygen/intake/frontend.py; change both or neither (tests/intake/test_frontend.py compares them bit
 * for bit on the host, Cortex-M4 and RV32). */
#include "tg_frontend.h"

#include <string.h>

#define TG_FE_AUTOSCALE_BITS 14
#define TG_FE_LOG_FRAC_BITS 8

/* -DTG_FE_PROFILE (benchmarks only): the caller's tg_fe_profile_mark(stage) is called after each
 * stage, the stages in tinygen/intake/frontend.py's PROFILE_STAGES order. */
#if defined(TG_FE_PROFILE)
void tg_fe_profile_mark(int stage);
#define TG_FE_MARK(stage) tg_fe_profile_mark(stage)
#else
#define TG_FE_MARK(stage) ((void)0)
#endif
#define TG_FE_ST_WINDOW 0
#define TG_FE_ST_FFT 1
#define TG_FE_ST_POWER 2
#define TG_FE_ST_FILTERBANK 3
#define TG_FE_ST_LOG 4
#define TG_FE_ST_OTHER 5

/* The butterfly helpers must inline into the loops even at -Os. */
#if defined(__GNUC__)
#define TG_FE_INLINE static inline __attribute__((always_inline))
#else
#define TG_FE_INLINE static inline
#endif

/* The Cortex-M4/M7/M33 DSP extension's dual 16-bit instructions, unless -DTG_NO_DSP. */
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(TG_NO_DSP)
#include <arm_acle.h>
#define TG_FE_DSP 1
#else
#define TG_FE_DSP 0
#endif

size_t tg_fe_scratch_words(const tg_fe_config_t *cfg)
{
    /* the windowed frame (fft_size, zero padded; later the power spectrum) + the packed complex FFT
     * (N/2 words) + one spare + one frame (imu: mean-removed) */
    return (size_t)cfg->fft_size + (size_t)cfg->fft_size / 2u + 1u + cfg->frame_length;
}

size_t tg_fe_feature_count(const tg_fe_config_t *cfg)
{
    size_t per = cfg->kind == TG_FE_KIND_AUDIO ? cfg->n_bands
                                               : (size_t)TG_FE_IMU_AXES * (TG_FE_IMU_STATS + cfg->n_bands);
    return (size_t)cfg->n_frames * per;
}

static int32_t tg_fe_bit_length32(uint32_t v)
{
#if defined(__GNUC__)
    return v != 0u ? 32 - __builtin_clz(v) : 0; /* CLZ on Cortex-M3/M4 */
#else
    int32_t n = 0, step;
    for (step = 16; step > 0; step >>= 1) {
        if (v >= ((uint32_t)1 << step)) {
            v >>= step;
            n += step;
        }
    }
    return n + (v != 0u);
#endif
}

static int32_t tg_fe_bit_length(uint64_t v)
{
    const uint32_t hi = (uint32_t)(v >> 32);
    return hi != 0u ? 32 + tg_fe_bit_length32(hi) : tg_fe_bit_length32((uint32_t)v);
}

/* log2(e + 1) in Q8: the integer part is the bit length, the fraction the table's entry for
 * the 8 bits after the leading one (log_lut[i] = round(256 log2(1 + i/256)), from tinygen). */
static int32_t tg_fe_log2_q8(const tg_fe_config_t *cfg, uint64_t e)
{
    const uint64_t v = e + 1u;
    const int32_t ip = tg_fe_bit_length(v) - 1;
    const uint32_t top = (uint32_t)(ip >= 8 ? v >> (ip - 8) : v << (8 - ip)) & 255u;
    return ip * (1 << TG_FE_LOG_FRAC_BITS) + cfg->log_lut[top];
}

/* Complex values are packed in one 32-bit word: real part in the low half, imaginary in the high
 * half (int16 each), as the Cortex-M4's dual 16-bit instructions take them.  Each helper has a
 * DSP-extension form and a portable C form that computes the same bits (the tests run both:
 * qemu-m4 the first, the host, qemu-m3 and RV32 the second). */
TG_FE_INLINE int32_t tg_fe_lo(uint32_t v) { return (int32_t)(int16_t)(uint16_t)(v & 0xFFFFu); }
TG_FE_INLINE int32_t tg_fe_hi(uint32_t v) { return (int32_t)(int16_t)(uint16_t)(v >> 16); }
TG_FE_INLINE uint32_t tg_fe_pack(int32_t lo, int32_t hi) { return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16); }

#if TG_FE_DSP
/* (a + b) >> 1 and (a - b) >> 1 per half, computed in 17 bits (SHADD16 / SHSUB16) */
TG_FE_INLINE uint32_t tg_fe_hadd(uint32_t a, uint32_t b) { return (uint32_t)__shadd16((int16x2_t)a, (int16x2_t)b); }
TG_FE_INLINE uint32_t tg_fe_hsub(uint32_t a, uint32_t b) { return (uint32_t)__shsub16((int16x2_t)a, (int16x2_t)b); }
/* b * conj(w) with w = cos + i sin in Q15, each part rounded: SMLAD and SMLSDX with 2^14 */
TG_FE_INLINE uint32_t tg_fe_rot(uint32_t b, uint32_t w)
{
    return tg_fe_pack(__smlad((int16x2_t)b, (int16x2_t)w, 1 << 14) >> 15,
                      __smlsdx((int16x2_t)w, (int16x2_t)b, 1 << 14) >> 15);
}
/* re^2 + im^2 (SMUAD) */
TG_FE_INLINE int32_t tg_fe_norm(uint32_t x) { return __smuad((int16x2_t)x, (int16x2_t)x); }
#else
TG_FE_INLINE uint32_t tg_fe_hadd(uint32_t a, uint32_t b)
{
    return tg_fe_pack((tg_fe_lo(a) + tg_fe_lo(b)) >> 1, (tg_fe_hi(a) + tg_fe_hi(b)) >> 1);
}
TG_FE_INLINE uint32_t tg_fe_hsub(uint32_t a, uint32_t b)
{
    return tg_fe_pack((tg_fe_lo(a) - tg_fe_lo(b)) >> 1, (tg_fe_hi(a) - tg_fe_hi(b)) >> 1);
}
TG_FE_INLINE uint32_t tg_fe_rot(uint32_t b, uint32_t w)
{
    const int32_t br = tg_fe_lo(b), bi = tg_fe_hi(b), c = tg_fe_lo(w), s = tg_fe_hi(w);
    /* |b| < 2^14.6 (autoscaled input, every stage halving): each sum stays below 2^31 */
    return tg_fe_pack((br * c + bi * s + (1 << 14)) >> 15, (bi * c - br * s + (1 << 14)) >> 15);
}
TG_FE_INLINE int32_t tg_fe_norm(uint32_t x) { return tg_fe_lo(x) * tg_fe_lo(x) + tg_fe_hi(x) * tg_fe_hi(x); }
#endif

/* x * 2^sh (sh >= 0) or x >> -sh (floor) */
TG_FE_INLINE int32_t tg_fe_scale(int32_t x, int32_t sh) { return sh >= 0 ? x * ((int32_t)1 << sh) : x >> -sh; }

/* The N/2-point complex FFT of the windowed frame v (N values, zero padded; even samples the real
 * parts, odd the imaginary), radix-2 decimation in time, each stage halving, into z (packed).
 * Stage 1 reads its inputs in bit-reversed order straight from v and applies the autoscale:
 * (a +- b) * 2^(shift-1).  Twiddle 1 (the first butterfly of each group) is exact. */
static void tg_fe_cfft(const tg_fe_config_t *cfg, const int32_t *v, int32_t shift, uint32_t *z)
{
    const uint32_t n = cfg->fft_size, m = n / 2u;
    const int32_t sh = shift - 1;
    uint32_t span, half, i, j, step, q;
    for (q = 0; q < m / 2u; q++) {
        const uint32_t p = 2u * cfg->bitrev[q]; /* bitrev[q]: the bit reversal of 2q (< N/4) */
        const int32_t ar = v[p], ai = v[p + 1u], br = v[p + m], bi = v[p + m + 1u];
        z[2u * q] = tg_fe_pack(tg_fe_scale(ar + br, sh), tg_fe_scale(ai + bi, sh));
        z[2u * q + 1u] = tg_fe_pack(tg_fe_scale(ar - br, sh), tg_fe_scale(ai - bi, sh));
    }
    /* stages span and 2 span fused (radix-2^2): each group's 4 values are loaded and stored once;
     * the arithmetic is the radix-2 stages' own, butterfly for butterfly */
    for (span = 4u; 2u * span <= m; span <<= 2) {
        half = span / 2u;
        step = n / span;
        {
            const uint32_t w3 = cfg->twiddle[n / 4u];
            for (i = 0; i < m; i += 2u * span) {
                const uint32_t a = z[i], b = z[i + half], c = z[i + span], d = z[i + span + half];
                const uint32_t a1 = tg_fe_hadd(a, b), b1 = tg_fe_hsub(a, b), c1 = tg_fe_hadd(c, d), d1 = tg_fe_hsub(c, d);
                const uint32_t t = tg_fe_rot(d1, w3);
                z[i] = tg_fe_hadd(a1, c1);
                z[i + span] = tg_fe_hsub(a1, c1);
                z[i + half] = tg_fe_hadd(b1, t);
                z[i + span + half] = tg_fe_hsub(b1, t);
            }
        }
        /* twiddles outer, groups inner: each twiddle is loaded once per stage pair */
        for (j = 1u; j < half; j++) {
            const uint32_t w1 = cfg->twiddle[j * step], w2 = cfg->twiddle[j * step / 2u],
                           w3 = cfg->twiddle[(j + half) * step / 2u];
            uint32_t *p;
            for (p = z + j; p < z + m; p += 2u * span) { /* one pointer: fewer registers live */
                const uint32_t a = p[0], b = tg_fe_rot(p[half], w1), c = p[span], d = tg_fe_rot(p[span + half], w1);
                const uint32_t a1 = tg_fe_hadd(a, b), b1 = tg_fe_hsub(a, b), c1 = tg_fe_hadd(c, d), d1 = tg_fe_hsub(c, d);
                const uint32_t t2 = tg_fe_rot(c1, w2), t3 = tg_fe_rot(d1, w3);
                p[0] = tg_fe_hadd(a1, t2);
                p[span] = tg_fe_hsub(a1, t2);
                p[half] = tg_fe_hadd(b1, t3);
                p[span + half] = tg_fe_hsub(b1, t3);
            }
        }
    }
    if (span <= m) { /* a last radix-2 stage when the count of stages after the first is odd */
        half = span / 2u;
        step = n / span;
        for (i = 0; i < m; i += span) {
            const uint32_t a = z[i], b = z[i + half];
            z[i] = tg_fe_hadd(a, b);
            z[i + half] = tg_fe_hsub(a, b);
        }
        for (j = 1u; j < half; j++) {
            const uint32_t w = cfg->twiddle[j * step];
            for (i = j; i < m; i += span) {
                const uint32_t a = z[i], t = tg_fe_rot(z[i + half], w);
                z[i] = tg_fe_hadd(a, t);
                z[i + half] = tg_fe_hsub(a, t);
            }
        }
    }
}

/* One bin of the split: X = (Fe + W Fo) / 2, Fe = (s1.re, sa.im), Fo = (s1.im, sb.re), where
 * s1 = (Z[k] + Z[M-k]) / 2, sa = (Z[k] - Z[M-k]) / 2, sb = (Z[M-k] - Z[k]) / 2 (halving). */
TG_FE_INLINE uint32_t tg_fe_split_bin(uint32_t s1, uint32_t sa, uint32_t sb, uint32_t w)
{
    return tg_fe_hadd(tg_fe_pack(tg_fe_lo(s1), tg_fe_hi(sa)), tg_fe_rot(tg_fe_pack(tg_fe_hi(s1), tg_fe_lo(sb)), w));
}

/* One frame -> n_bands log energies; exactly one of x16 / x32 is the frame. */
static int tg_fe_frame(const tg_fe_config_t *cfg, const int16_t *x16, const int32_t *x32, int32_t *log_out,
                       int32_t *scratch, size_t scratch_words, const tg_fe_taps_t *taps)
{
    const uint32_t n = cfg->fft_size, m = n / 2u, len = cfg->frame_length;
    int32_t *v = scratch; /* the windowed frame, then the power spectrum */
    uint32_t *z = (uint32_t *)(scratch + n);
    int32_t mx = 0, shift, x;
    uint32_t i, k, b;
    TG_FE_MARK(TG_FE_ST_OTHER);
    if (scratch_words < tg_fe_scratch_words(cfg)) return TG_FE_BAD_SIZE;
    /* window (Q15, rounded); the OR of the magnitudes has the bit length of the largest one */
    if (x16 != NULL) {
#if TG_FE_DSP
        for (i = 0; i + 1u < len; i += 2u) { /* two samples per SMLABB / SMLATT */
            uint32_t xs, ws;
            int32_t y;
            memcpy(&xs, x16 + i, sizeof xs);
            memcpy(&ws, cfg->window + i, sizeof ws);
            x = __smlabb((int16x2_t)xs, (int16x2_t)ws, 1 << 14) >> 15;
            y = __smlatt((int16x2_t)xs, (int16x2_t)ws, 1 << 14) >> 15;
            v[i] = x;
            v[i + 1u] = y;
            mx |= (x ^ (x >> 31)) - (x >> 31);
            mx |= (y ^ (y >> 31)) - (y >> 31);
        }
        for (; i < len; i++) {
#else
        for (i = 0; i < len; i++) {
#endif
            x = (x16[i] * cfg->window[i] + (1 << 14)) >> 15;
            v[i] = x;
            mx |= (x ^ (x >> 31)) - (x >> 31);
        }
    } else {
        for (i = 0; i < len; i++) {
            x = (x32[i] * cfg->window[i] + (1 << 14)) >> 15;
            v[i] = x;
            mx |= (x ^ (x >> 31)) - (x >> 31);
        }
    }
    for (i = len; i < n; i++) v[i] = 0;
    if (taps != NULL && taps->window != NULL)
        for (i = 0; i < len; i++) taps->window[i] = v[i];
    shift = mx > 0 ? TG_FE_AUTOSCALE_BITS - tg_fe_bit_length32((uint32_t)mx) : 0;
    if (taps != NULL && taps->shift != NULL) *taps->shift = shift;
    TG_FE_MARK(TG_FE_ST_WINDOW);
    tg_fe_cfft(cfg, v, shift, z);
    TG_FE_MARK(TG_FE_ST_FFT);
    /* split: X[k] = (Fe + W^k Fo) / 2 with Fe = (Z[k] + conj Z[M-k]) / 2, Fo = -i (Z[k] - conj Z[M-k]) / 2,
     * Z[M] = Z[0]; then the power re^2 + im^2 (< 2^30) into v */
    if (taps != NULL && taps->fft != NULL) {
        for (k = 0; k <= m; k++) {
            const uint32_t zk = z[k < m ? k : 0u], zm = z[k == 0u ? 0u : m - k];
            const uint32_t xk = tg_fe_split_bin(tg_fe_hadd(zk, zm), tg_fe_hsub(zk, zm), tg_fe_hsub(zm, zk),
                                                k < m ? cfg->twiddle[k] : tg_fe_pack(-32768, 0));
            v[k] = tg_fe_norm(xk);
            taps->fft[2u * k] = tg_fe_lo(xk);
            taps->fft[2u * k + 1u] = tg_fe_hi(xk);
        }
    } else {
        const uint32_t z0 = z[0], s0 = tg_fe_hadd(z0, z0), d0 = tg_fe_hsub(z0, z0);
        v[0] = tg_fe_norm(tg_fe_split_bin(s0, d0, d0, cfg->twiddle[0]));
        v[m] = tg_fe_norm(tg_fe_split_bin(s0, d0, d0, tg_fe_pack(-32768, 0)));
        for (k = 1u; k <= m / 2u; k++) { /* bins k and M-k share Z[k] and Z[M-k] */
            const uint32_t zk = z[k], zm = z[m - k];
            const uint32_t s1 = tg_fe_hadd(zk, zm), sa = tg_fe_hsub(zk, zm), sb = tg_fe_hsub(zm, zk);
            v[k] = tg_fe_norm(tg_fe_split_bin(s1, sa, sb, cfg->twiddle[k]));
            v[m - k] = tg_fe_norm(tg_fe_split_bin(s1, sb, sa, cfg->twiddle[m - k]));
        }
    }
    TG_FE_MARK(TG_FE_ST_POWER);
    for (b = 0; b < cfg->n_bands; b++) {
        const uint32_t a = cfg->band_start[b], cnt = cfg->band_len[b];
        const uint16_t *w = cfg->weights + cfg->band_offset[b];
        const uint32_t *p = (const uint32_t *)v + a;
        uint64_t acc = 0u;
        for (k = 0; k < cnt; k++) acc += (uint64_t)p[k] * w[k];
        if (taps != NULL && taps->filterbank != NULL) taps->filterbank[b] = acc;
        TG_FE_MARK(TG_FE_ST_FILTERBANK);
        log_out[b] = tg_fe_log2_q8(cfg, acc) - 2 * shift * (1 << TG_FE_LOG_FRAC_BITS);
        if (taps != NULL && taps->log != NULL) taps->log[b] = log_out[b];
        TG_FE_MARK(TG_FE_ST_LOG);
    }
    return TG_FE_OK;
}

int tg_fe_spectrum_frame(const tg_fe_config_t *cfg, const int32_t *frame, int32_t *log_out,
                         int32_t *scratch, size_t scratch_words, const tg_fe_taps_t *taps)
{
    return tg_fe_frame(cfg, NULL, frame, log_out, scratch, scratch_words, taps);
}

int tg_fe_features(const tg_fe_config_t *cfg, const int16_t *samples, size_t n, int32_t *features,
                   int32_t *scratch, size_t scratch_words)
{
    const uint32_t len = cfg->frame_length;
    uint32_t f, i, a;
    int32_t *frame = scratch + cfg->fft_size + cfg->fft_size / 2u + 1u;
    int rc;
    if (scratch_words < tg_fe_scratch_words(cfg)) return TG_FE_BAD_SIZE;
    if (cfg->kind == TG_FE_KIND_AUDIO) {
        if (n != cfg->window_samples) return TG_FE_BAD_SIZE;
        for (f = 0; f < cfg->n_frames; f++) {
            rc = tg_fe_frame(cfg, samples + (size_t)f * cfg->frame_step, NULL, features + (size_t)f * cfg->n_bands,
                             scratch, scratch_words, NULL);
            if (rc != TG_FE_OK) return rc;
        }
        return TG_FE_OK;
    }
    if (n != (size_t)cfg->window_samples * TG_FE_IMU_AXES) return TG_FE_BAD_SIZE;
    for (f = 0; f < cfg->n_frames; f++) {
        int32_t *row = features + (size_t)f * TG_FE_IMU_AXES * (TG_FE_IMU_STATS + cfg->n_bands);
        for (a = 0; a < TG_FE_IMU_AXES; a++) {
            const int16_t *src = samples + ((size_t)f * cfg->frame_step) * TG_FE_IMU_AXES + a;
            int32_t sum = 0, mn = 32767, mxv = -32768, mean, mad = 0, d;
            int32_t *out = row + a * (TG_FE_IMU_STATS + cfg->n_bands);
            for (i = 0; i < len; i++) {
                const int32_t x = src[(size_t)i * TG_FE_IMU_AXES];
                sum += x;
                if (x < mn) mn = x;
                if (x > mxv) mxv = x;
            }
            mean = sum / (int32_t)len; /* C division: toward zero, as the twin's _trunc_div */
            for (i = 0; i < len; i++) {
                d = src[(size_t)i * TG_FE_IMU_AXES] - mean;
                frame[i] = d;
                mad += d < 0 ? -d : d;
            }
            out[0] = mean;
            out[1] = mn;
            out[2] = mxv;
            out[3] = mad / (int32_t)len;
            rc = tg_fe_spectrum_frame(cfg, frame, out + TG_FE_IMU_STATS, scratch, scratch_words, NULL);
            if (rc != TG_FE_OK) return rc;
        }
    }
    return TG_FE_OK;
}

void tg_fe_requantize(const tg_fe_config_t *cfg, const int32_t *features, size_t count, int8_t *out)
{
    const int64_t round = (int64_t)1 << (cfg->rq_shift - 1);
    size_t i;
    for (i = 0; i < count; i++) {
        int64_t q = (((int64_t)features[i] * cfg->rq_multiplier + round) >> cfg->rq_shift) + cfg->rq_zero_point;
        if (q < -128) q = -128;
        if (q > 127) q = 127;
        out[i] = (int8_t)q;
    }
}
