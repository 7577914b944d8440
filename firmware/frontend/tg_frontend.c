/* tinygen feature front end (see tg_frontend.h).  Each step is written exactly as its twin in
 * tinygen/intake/frontend.py; change both or neither (tests/test_frontend.py compares them bit
 * for bit on the host, Cortex-M4 and RV32). */
#include "tg_frontend.h"

#define TG_FE_AUTOSCALE_BITS 14
#define TG_FE_LOG_FRAC_BITS 8

size_t tg_fe_scratch_words(const tg_fe_config_t *cfg)
{
    /* complex FFT re/im (N/2 each) + the power spectrum (N/2+1) + one frame (imu: mean-removed) */
    return (size_t)cfg->fft_size + (size_t)cfg->fft_size / 2u + 1u + cfg->frame_length;
}

size_t tg_fe_feature_count(const tg_fe_config_t *cfg)
{
    size_t per = cfg->kind == TG_FE_KIND_AUDIO ? cfg->n_bands
                                               : (size_t)TG_FE_IMU_AXES * (TG_FE_IMU_STATS + cfg->n_bands);
    return (size_t)cfg->n_frames * per;
}

static int32_t tg_fe_bit_length(uint64_t v)
{
    int32_t n = 0, step;
    for (step = 32; step > 0; step >>= 1) { /* binary search: 6 steps instead of up to 64 */
        if (v >= ((uint64_t)1 << step)) {
            v >>= step;
            n += step;
        }
    }
    return n + (v != 0u);
}

/* log2(e + 1) in Q8: integer part from the bit length, 8 fraction bits by repeated squaring. */
static int32_t tg_fe_log2_q8(uint64_t e)
{
    uint64_t v = e + 1u, mant;
    int32_t ip = tg_fe_bit_length(v) - 1, bit, frac = 0;
    mant = ip <= 30 ? v << (30 - ip) : v >> (ip - 30);
    for (bit = TG_FE_LOG_FRAC_BITS - 1; bit >= 0; bit--) {
        mant = (mant * mant) >> 30;
        if (mant >= ((uint64_t)1 << 31)) {
            mant >>= 1;
            frac |= (int32_t)1 << bit;
        }
    }
    return ip * (1 << TG_FE_LOG_FRAC_BITS) + frac;
}

/* In-place N/2-point complex FFT (bit-reversed load done by the caller), each stage halving. */
static void tg_fe_cfft(const tg_fe_config_t *cfg, int32_t *re, int32_t *im)
{
    const uint32_t n = cfg->fft_size, m = n / 2u;
    uint32_t len, half, i, j, step;
    for (len = 2u; len <= m; len <<= 1) {
        half = len / 2u;
        step = n / len;
        /* twiddle outer, blocks inner: each twiddle is loaded once per stage */
        for (j = 0; j < half; j++) {
            const int32_t c = cfg->cos_t[j * step], s = cfg->sin_t[j * step];
            for (i = j; i < m; i += len) {
                const int32_t br = re[i + half], bi = im[i + half], xr = re[i], xi = im[i];
                /* |b| < 2^14.6 (autoscaled input): each product sum stays below 2^31 */
                const int32_t tr = (br * c + bi * s + (1 << 14)) >> 15;
                const int32_t ti = (bi * c - br * s + (1 << 14)) >> 15;
                re[i] = (xr + tr) >> 1;
                im[i] = (xi + ti) >> 1;
                re[i + half] = (xr - tr) >> 1;
                im[i + half] = (xi - ti) >> 1;
            }
        }
    }
}

int tg_fe_spectrum_frame(const tg_fe_config_t *cfg, const int32_t *frame, int32_t *log_out,
                         int32_t *scratch, size_t scratch_words, const tg_fe_taps_t *taps)
{
    const uint32_t n = cfg->fft_size, m = n / 2u, len = cfg->frame_length;
    int32_t *re = scratch, *im = scratch + m, *power = scratch + n;
    int32_t mx = 0, shift, v;
    uint32_t i, k, b;
    if (scratch_words < tg_fe_scratch_words(cfg)) return TG_FE_BAD_SIZE;
    /* window (Q15, rounded) and the frame's largest magnitude */
    for (i = 0; i < len; i++) {
        v = (frame[i] * cfg->window[i] + (1 << 14)) >> 15;
        power[i] = v; /* power[] is free until the spectrum: hold the windowed frame there */
        if (v < 0) v = -v;
        if (v > mx) mx = v;
        if (taps != NULL && taps->window != NULL) taps->window[i] = power[i];
    }
    shift = mx > 0 ? TG_FE_AUTOSCALE_BITS - tg_fe_bit_length((uint64_t)mx) : 0;
    if (taps != NULL && taps->shift != NULL) *taps->shift = shift;
    /* load even/odd samples as re/im in bit-reversed order, scaled; zero padding past len */
    for (k = 0; k < m; k++) {
        const uint32_t src = cfg->bitrev[k];
        int32_t e = 2u * src < len ? power[2u * src] : 0, o = 2u * src + 1u < len ? power[2u * src + 1u] : 0;
        if (shift >= 0) {
            e *= (int32_t)1 << shift;
            o *= (int32_t)1 << shift;
        } else {
            e >>= -shift;
            o >>= -shift;
        }
        re[k] = e;
        im[k] = o;
    }
    tg_fe_cfft(cfg, re, im);
    /* split: X[k] = (Fe + W^k Fo) / 2, with Z[M] = Z[0] */
    for (k = 0; k <= m; k++) {
        const uint32_t kk = k < m ? k : 0u, mk = k == 0u ? 0u : m - k;
        const int32_t fe_r = (re[kk] + re[mk]) >> 1, fe_i = (im[kk] - im[mk]) >> 1;
        const int32_t fo_r = (im[kk] + im[mk]) >> 1, fo_i = (re[mk] - re[kk]) >> 1;
        const int32_t c = k < m ? cfg->cos_t[k] : -32768, s = k < m ? cfg->sin_t[k] : 0;
        const int32_t tr = (fo_r * c + fo_i * s + (1 << 14)) >> 15;
        const int32_t ti = (fo_i * c - fo_r * s + (1 << 14)) >> 15;
        const int32_t xr = (fe_r + tr) >> 1, xi = (fe_i + ti) >> 1;
        power[k] = xr * xr + xi * xi;
        if (taps != NULL && taps->fft != NULL) {
            taps->fft[2u * k] = xr;
            taps->fft[2u * k + 1u] = xi;
        }
    }
    for (b = 0; b < cfg->n_bands; b++) {
        const uint32_t a = cfg->band_start[b], cnt = cfg->band_len[b];
        const uint16_t *w = cfg->weights + cfg->band_offset[b];
        uint64_t acc = 0u;
        for (k = 0; k < cnt; k++) acc += (uint64_t)(uint32_t)power[a + k] * w[k];
        if (taps != NULL && taps->filterbank != NULL) taps->filterbank[b] = acc;
        log_out[b] = tg_fe_log2_q8(acc) - 2 * shift * (1 << TG_FE_LOG_FRAC_BITS);
        if (taps != NULL && taps->log != NULL) taps->log[b] = log_out[b];
    }
    return TG_FE_OK;
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
            const int16_t *src = samples + (size_t)f * cfg->frame_step;
            for (i = 0; i < len; i++) frame[i] = src[i];
            rc = tg_fe_spectrum_frame(cfg, frame, features + (size_t)f * cfg->n_bands, scratch, scratch_words,
                                      NULL);
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
