/* tinygen feature front end: raw int16 samples -> the model's int8 input, in fixed point.
 *
 * The same stage as tinygen/intake/frontend.py (its bit-exact twin): frames, a Q15 window,
 * automatic input scaling, a real FFT (N/2-point radix-2 complex FFT on packed int16 pairs +
 * split, each stage halving, so the result is DFT/N; the Cortex-M DSP extension's SHADD16 /
 * SMLAD / SMLSDX / SMUAD where the compiler has it, portable C computing the same bits elsewhere),
 * the power spectrum, a filter bank with Q12 weights and 64-bit accumulators, log2 in Q8 (bit
 * length + a 256-entry table); for the imu kind also per-axis mean/min/max/mean absolute
 * deviation.  Tables come from tinygen (tg_frontend_config.c, generated): the board computes no
 * transcendental.  C99, no allocation: the caller gives the scratch (tg_fe_scratch_words).
 * Right shifts of negative values are arithmetic (as every compiler tinygen targets does).
 */
#ifndef TG_FRONTEND_H
#define TG_FRONTEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TG_FE_ABI 2
#define TG_FE_KIND_AUDIO 0
#define TG_FE_KIND_IMU 1
#define TG_FE_IMU_AXES 3
#define TG_FE_IMU_STATS 4

typedef struct {
    uint8_t kind;              /* TG_FE_KIND_* */
    uint16_t frame_length;
    uint16_t frame_step;
    uint16_t fft_size;         /* power of two, 16..1024 */
    uint16_t n_frames;
    uint16_t n_bands;
    uint32_t window_samples;   /* per axis */
    const int16_t *window;     /* frame_length, Q15 */
    const uint32_t *twiddle;   /* fft_size/2: Q15 cos(2 pi k / N) | Q15 sin(2 pi k / N) << 16 */
    const uint16_t *bitrev;    /* fft_size/4: the bit reversal of 2q over log2(fft_size/2) bits */
    const uint8_t *log_lut;    /* 256: round(256 log2(1 + i / 256)) */
    const uint16_t *band_start, *band_len, *band_offset; /* n_bands */
    const uint16_t *weights;   /* Q12 */
    int32_t rq_multiplier;     /* features -> int8: zp + ((v * mult + 2^(shift-1)) >> shift) */
    int32_t rq_shift;
    int32_t rq_zero_point;
} tg_fe_config_t;

/* What one frame's stages produced (for tests and --layers); any pointer may be NULL. */
typedef struct {
    int32_t *window;           /* frame_length: windowed (imu: mean-removed) samples */
    int32_t *shift;            /* 1: the autoscale shift */
    int32_t *fft;              /* 2*(fft_size/2+1): re, im interleaved */
    uint64_t *filterbank;      /* n_bands */
    int32_t *log;              /* n_bands: log2 Q8 minus 2*shift*256 */
} tg_fe_taps_t;

/* int32 words of scratch tg_fe_features / tg_fe_run need. */
size_t tg_fe_scratch_words(const tg_fe_config_t *cfg);
/* int32 features per inference (n_frames * features per frame). */
size_t tg_fe_feature_count(const tg_fe_config_t *cfg);

/* One frame (frame_length int32 values, already mean-removed for imu) -> n_bands log energies. */
int tg_fe_spectrum_frame(const tg_fe_config_t *cfg, const int32_t *frame, int32_t *log_out,
                         int32_t *scratch, size_t scratch_words, const tg_fe_taps_t *taps);

/* samples (n = window_samples * channels, interleaved for imu) -> int32 features in feature units. */
int tg_fe_features(const tg_fe_config_t *cfg, const int16_t *samples, size_t n, int32_t *features,
                   int32_t *scratch, size_t scratch_words);

/* int32 features -> the model's int8 input. */
void tg_fe_requantize(const tg_fe_config_t *cfg, const int32_t *features, size_t count, int8_t *out);

/* Returns 0, or -1 on a wrong n / scratch size. */
#define TG_FE_OK 0
#define TG_FE_BAD_SIZE (-1)

#ifdef __cplusplus
}
#endif

#endif /* TG_FRONTEND_H */
