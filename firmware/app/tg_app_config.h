/*
 * tg_app_config.h -- internal to tg_app.c: the compile-time checks of the
 * generated headers (tg_protocol.h, tg_model_info.h) and the buffer sizes the
 * validation firmware derives from them. Included by tg_app.c only, after those
 * headers; see tg_app.c for the macros tg_model_info.h must define.
 */
#ifndef TG_APP_CONFIG_H
#define TG_APP_CONFIG_H

#if TG_PROTOCOL_VERSION != 1
#error "tg_app.c implements protocol version 1; tg_protocol.h is for another version"
#endif
#if TG_HEADER_BYTES != 8 || TG_CRC_BYTES != 4
#error "tg_protocol.h frame layout does not match tg_app.c"
#endif
#if !defined(TG_MODEL_HASH_BYTES) || !defined(TG_INPUT_RANK) || !defined(TG_INPUT_DIMS) || \
    !defined(TG_INPUT_BYTES) || !defined(TG_INPUT_SCALE) || !defined(TG_INPUT_ZERO_POINT) || \
    !defined(TG_OUTPUT_RANK) || !defined(TG_OUTPUT_DIMS) || !defined(TG_OUTPUT_BYTES) || \
    !defined(TG_OUTPUT_SCALE) || !defined(TG_OUTPUT_ZERO_POINT)
#error "tg_model_info.h lacks a required macro (see the list at the top of tg_app.c)"
#endif
#if TG_INPUT_RANK < 1 || TG_INPUT_RANK > TG_MAX_RANK || TG_OUTPUT_RANK < 1 || TG_OUTPUT_RANK > TG_MAX_RANK
#error "TG_INPUT_RANK / TG_OUTPUT_RANK must be 1..5"
#endif
#if (TG_INPUT_BYTES) < 1 || (TG_OUTPUT_BYTES) < 1 || (TG_INPUT_BYTES) > 65535 || \
    (TG_OUTPUT_BYTES) + TG_INFER_TICKS_BYTES + TG_STREAM_END_BYTES > 65535
#error "TG_INPUT_BYTES / TG_OUTPUT_BYTES out of range (1..65523)"
#endif
#if TG_STREAM_CHUNK_BYTES < TG_PROFILE_RECORD_BYTES || TG_STREAM_CHUNK_BYTES % TG_PROFILE_RECORD_BYTES != 0
#error "TG_STREAM_CHUNK_BYTES must hold whole profile records"
#endif

#ifndef TG_INPUT_DTYPE
#define TG_INPUT_DTYPE TG_DTYPE_INT8
#endif
#ifndef TG_OUTPUT_DTYPE
#define TG_OUTPUT_DTYPE TG_DTYPE_INT8
#endif
#ifndef TG_APP_POLL_BUDGET
#define TG_APP_POLL_BUDGET 256
#endif

#define TG_APP_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(TG_HAS_FRONTEND) && TG_HAS_FRONTEND
#include "tinygen_model.h"
#if !TINYGEN_MODEL_HAS_FRONTEND || TINYGEN_MODEL_RAW_SAMPLES != TG_FE_RAW_SAMPLES
#error "tinygen_model.h and tg_model_info.h describe different front ends"
#endif
/* INFER_RAW: int16 samples in (little-endian on the wire, as every target tinygen builds for);
 * the reply holds the model input, the output and two tick counts. */
#define TG_APP_RAW_BYTES ((TG_FE_RAW_SAMPLES) * TG_INFER_RAW_SAMPLE_BYTES)
#define TG_APP_RAW_REPLY ((TG_INPUT_BYTES) + (TG_OUTPUT_BYTES) + TG_INFER_RAW_TICKS_BYTES)
#if TG_APP_RAW_BYTES > 65535 || TG_APP_RAW_REPLY > 65535
#error "the front end's samples or the INFER_RAW reply do not fit one frame"
#endif
/* FE_TAPS (verify --layers): one frame's stages, computed inside the receive buffer: the reply's words
 * (filterbank 2 x bands, log, window, shift, fft 2 x (N/2+1)), then the frame, then the scratch.
 * tinygen.codegen.protocol_header.fe_taps_buffer_bytes is this size (HELLO's max_frame). */
#if defined(TG_FE_TAP_FRAME_LENGTH)
#define TG_APP_FE_TAPS 1
#define TG_APP_FE_TAPS_REPLY_WORDS \
    (3u * (TG_FE_TAP_BANDS) + (TG_FE_TAP_FRAME_LENGTH) + 1u + 2u * ((TG_FE_TAP_FFT_SIZE) / 2u + 1u))
#define TG_APP_FE_TAPS_BYTES \
    (4u * (TG_APP_FE_TAPS_REPLY_WORDS + (TG_FE_TAP_FRAME_LENGTH) + (TG_FE_TAP_SCRATCH_WORDS)))
#if TG_APP_FE_TAPS_BYTES > 65535
#error "the front end's FE_TAPS reply does not fit one frame"
#endif
#endif
#else
#define TG_APP_RAW_BYTES 0
#define TG_APP_RAW_REPLY 0
#endif
#ifndef TG_APP_FE_TAPS
#define TG_APP_FE_TAPS 0
#define TG_APP_FE_TAPS_BYTES 0
#endif

/* Largest request payload accepted (INFER input, INFER_RAW samples, FE_TAPS' work; PING up to this too). */
#define TG_APP_RX_PAYLOAD_MAX \
    TG_APP_MAX(TG_APP_MAX((TG_INPUT_BYTES), TG_MIN_RX_PAYLOAD), TG_APP_MAX(TG_APP_RAW_BYTES, TG_APP_FE_TAPS_BYTES))
/* Largest decoded request frame: reported in HELLO as max_frame. */
#define TG_APP_RX_MAX (TG_FRAME_OVERHEAD + TG_APP_RX_PAYLOAD_MAX)
#define TG_APP_TX_PAYLOAD_MAX                                                   \
    TG_APP_MAX(TG_APP_MAX(TG_HELLO_BYTES, TG_STREAM_END_BYTES + (TG_OUTPUT_BYTES) + TG_INFER_TICKS_BYTES), \
               TG_APP_MAX(TG_APP_MAX(TG_STATS_COUNT * 4, 4), TG_APP_RAW_REPLY))
#define TG_APP_TX_MAX (TG_FRAME_OVERHEAD + TG_APP_TX_PAYLOAD_MAX)
#define TG_APP_SX_MAX (TG_FRAME_OVERHEAD + TG_LAYER_CHUNK_BYTES + TG_STREAM_CHUNK_BYTES)

typedef char tg_app_float_is_32_bits[(sizeof(float) == 4) ? 1 : -1];

#endif /* TG_APP_CONFIG_H */
