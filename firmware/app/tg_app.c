/*
 * tg_app.c -- tinygen validation firmware: a serial protocol server that
 * answers HELLO / INFER / PING / GET_STATS / RESET_STATS / LAYERS / PROFILE requests
 * (and INFER_RAW / FE_TAPS with a front end).
 * Portable C99; static buffers only; the board is reached only through
 * tg_hal.h and the model only through tg_runtime.h.
 *
 * The protocol (frame layout, opcodes, status codes, HELLO layout) is defined
 * in tinygen/common/protocol.py and reaches this file as the generated tg_protocol.h.
 *
 * Macros required from tg_model_info.h (generated per model):
 *   TG_MODEL_HASH_BYTES   {0x.., ...}  first 8 bytes of the model's sha256
 *   TG_INPUT_RANK         1..5
 *   TG_INPUT_DIMS         {d0, d1, ...} exactly TG_INPUT_RANK positive ints
 *   TG_INPUT_BYTES        product of the dims * element size (int8: 1)
 *   TG_INPUT_SCALE        float literal, e.g. 0.00392156886f
 *   TG_INPUT_ZERO_POINT   int, e.g. (-128)
 *   TG_OUTPUT_RANK, TG_OUTPUT_DIMS, TG_OUTPUT_BYTES, TG_OUTPUT_SCALE,
 *   TG_OUTPUT_ZERO_POINT  the same for the output tensor
 * Optional:
 *   TG_INPUT_DTYPE, TG_OUTPUT_DTYPE  TG_DTYPE_* (default TG_DTYPE_INT8)
 *   TG_APP_POLL_BUDGET    bytes handled per tg_app_poll() call (default 256)
 *   TG_HAS_FRONTEND, TG_FE_RAW_SAMPLES  optional: the project has a front end (raw int16
 *                         samples -> the model's int8 input, tinygen_model_features_raw of
 *                         the tinygen_model library); INFER_RAW is answered only then
 *   TG_FE_TAP_FRAME_LENGTH, TG_FE_TAP_FFT_SIZE, TG_FE_TAP_BANDS, TG_FE_TAP_SCRATCH_WORDS  optional,
 *                         with a front end: FE_TAPS (one frame's stages, verify --layers) is answered
 * (tinygen.protocol.render_model_info_header() writes exactly these.)
 *
 * RAM: rx buffer of TG_FRAME_OVERHEAD + max(TG_INPUT_BYTES, TG_MIN_RX_PAYLOAD,
 * 2 * TG_FE_RAW_SAMPLES with a front end) bytes (COBS is decoded on the fly), tx buffer of TG_FRAME_OVERHEAD +
 * max(TG_HELLO_BYTES, TG_STREAM_END_BYTES + TG_OUTPUT_BYTES + 4, stats) bytes
 * (COBS is encoded while sending), and a stream buffer of TG_FRAME_OVERHEAD +
 * TG_LAYER_CHUNK_BYTES + TG_STREAM_CHUNK_BYTES for LAYERS / PROFILE: per-op
 * tensors leave in chunks of that size from inside the runtime's op hook, so
 * nothing but the arena ever holds a whole intermediate tensor.
 */
#include <stdint.h>
#include <string.h>

#include "tg_protocol.h"
#include "tg_model_info.h"
#include "tg_hal.h"
#include "tg_runtime.h"
#include "tg_app.h"
#include "tg_app_config.h" /* checks of the generated headers, buffer sizes */

/* ---- state ---------------------------------------------------------------- */

/* Unions only to give the byte buffers 4-byte alignment (tensor data starts
 * at offset TG_HEADER_BYTES = 8). */
static union {
    uint64_t align; /* FE_TAPS puts u64 filter-bank sums at the payload (offset 8) */
    uint8_t b[TG_APP_RX_MAX];
} rx;
static union {
    uint32_t align;
    uint8_t b[TG_APP_TX_MAX];
} tx;

/* LAYERS / PROFILE frames are built here, not in tx: tx holds the output
 * tensor the runtime is writing while the op hook streams. */
static union {
    uint32_t align;
    uint8_t b[TG_APP_SX_MAX];
} sx;
static struct {
    uint32_t seq;
    uint8_t opcode;
    uint32_t ops;     /* hook calls this invoke */
    uint32_t frames;  /* FLAG_MORE frames sent */
    uint32_t records; /* PROFILE records waiting in sx */
    uint32_t mark;    /* PROFILE: ticks when the last op ended (or the invoke began) */
} stream;

static uint32_t rx_len;     /* decoded bytes in rx.b */
static uint8_t rx_code;     /* code byte of the current COBS block; 0: none yet */
static uint8_t rx_left;     /* data bytes still due in the current block */
static uint8_t rx_any;      /* non-delimiter bytes seen since the last delimiter */
static uint8_t rx_overflow; /* frame too long: discarding up to the delimiter */

static uint8_t init_status = TG_STATUS_INTERNAL; /* until tg_app_init ran */
static uint32_t stats[TG_STATS_COUNT];
static uint32_t crc_nibble[16];

static const uint8_t model_hash[TG_MODEL_HASH_LEN] = TG_MODEL_HASH_BYTES;
static const uint32_t input_dims[TG_INPUT_RANK] = TG_INPUT_DIMS;
static const uint32_t output_dims[TG_OUTPUT_RANK] = TG_OUTPUT_DIMS;

/* ---- little helpers --------------------------------------------------------- */

static void wr16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)((v >> 24) & 0xFFu);
}

static void wrf32(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    wr32(p, v);
}

static uint32_t rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void crc_setup(void)
{
    uint32_t n;
    for (n = 0; n < 16u; n++) {
        uint32_t c = n;
        int k;
        for (k = 0; k < 4; k++) {
            c = (c & 1u) ? ((c >> 1) ^ TG_CRC32_POLY) : (c >> 1);
        }
        crc_nibble[n] = c;
    }
}

static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    uint32_t c = TG_CRC32_INIT;
    uint32_t i;
    for (i = 0; i < n; i++) {
        c ^= p[i];
        c = (c >> 4) ^ crc_nibble[c & 15u];
        c = (c >> 4) ^ crc_nibble[c & 15u];
    }
    return c ^ TG_CRC32_XOROUT;
}

static void put_bytes(const uint8_t *p, uint32_t n)
{
    if (n > 0u) {
        tg_hal_write(p, n);
    }
}

static void put_str(const char *s)
{
    put_bytes((const uint8_t *)s, (uint32_t)strlen(s));
}

static void put_uint(uint32_t v)
{
    char buf[11];
    uint32_t i = sizeof buf;
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u && i > 0u);
    put_bytes((const uint8_t *)buf + i, (uint32_t)(sizeof buf - i));
}

static void put_delimiter(void)
{
    static const uint8_t zero = TG_FRAME_DELIMITER;
    put_bytes(&zero, 1);
}

/* One human-readable line between frames: "tinygen: <what> (status N: NAME)\n" 0x00 */
static void print_status_line(const char *what, int status)
{
    put_str("tinygen: ");
    put_str(what);
    put_str(" (status ");
    put_uint((uint32_t)status);
    put_str(": ");
    put_str(tg_status_name(status));
    put_str(")\n");
    put_delimiter();
}

/* ---- sending ---------------------------------------------------------------- */

/* COBS-encode p[0..n) straight to the HAL, then the delimiter (canonical
 * COBS, as tinygen.protocol.cobs_encode). */
static void send_cobs(const uint8_t *p, uint32_t n)
{
    uint32_t i = 0;
    for (;;) {
        uint32_t run = 0;
        uint8_t code;
        while (i + run < n && run < 254u && p[i + run] != 0u) {
            run++;
        }
        code = (uint8_t)(run + 1u);
        put_bytes(&code, 1);
        put_bytes(p + i, run);
        i += run;
        if (run == 254u) {
            if (i >= n) {
                break;
            }
            continue;
        }
        if (i >= n) {
            break;
        }
        i++; /* the zero this block stands for */
    }
    put_delimiter();
}

/* Finish the frame in buf (payload already at buf + TG_HEADER_BYTES) and send
 * it. cap is the size of buf. */
static void send_frame(uint8_t *buf, uint32_t cap, uint8_t opcode, uint32_t seq, uint8_t status,
                       uint8_t flags, uint32_t len)
{
    uint32_t crc;
    if (len > TG_MAX_PAYLOAD || (uint32_t)TG_FRAME_OVERHEAD + len > cap) {
        /* cannot happen with the buffer sizes above; never write past buf */
        buf = tx.b;
        status = TG_STATUS_INTERNAL;
        len = 0;
    }
    buf[TG_HDR_OFF_VERSION] = TG_PROTOCOL_VERSION;
    buf[TG_HDR_OFF_OPCODE] = (uint8_t)((opcode & 0x7Fu) | TG_REPLY_FLAG);
    wr16(buf + TG_HDR_OFF_SEQ, seq);
    buf[TG_HDR_OFF_STATUS] = status;
    buf[TG_HDR_OFF_FLAGS] = flags;
    wr16(buf + TG_HDR_OFF_LENGTH, len);
    crc = crc32(buf, TG_HEADER_BYTES + len);
    wr32(buf + TG_HEADER_BYTES + len, crc);
    send_cobs(buf, TG_FRAME_OVERHEAD + len);
}

static void reply(uint8_t opcode, uint32_t seq, uint8_t status, uint32_t len)
{
    send_frame(tx.b, sizeof tx.b, opcode, seq, status, 0, len);
}

/* Reply to a frame that could not be validated: seq/opcode are best effort. */
static void reply_unverified(uint8_t status)
{
    uint32_t seq = rx_len >= 4u ? rd16(rx.b + TG_HDR_OFF_SEQ) : 0u;
    uint8_t op = rx_len >= 2u ? (uint8_t)(rx.b[TG_HDR_OFF_OPCODE] & 0x7Fu) : 0u;
    send_frame(tx.b, sizeof tx.b, op, seq, status, TG_FLAG_SEQ_UNTRUSTED, 0);
}

/* ---- requests ----------------------------------------------------------------- */

static void do_hello(uint32_t seq)
{
    uint8_t *p = tx.b + TG_HEADER_BYTES;
    const char *name = tg_runtime_name();
    uint32_t i;

    if (init_status != TG_STATUS_OK) {
        print_status_line("runtime init failed", init_status);
    }
    memset(p, 0, TG_HELLO_BYTES);
    p[TG_HELLO_OFF_PROTOCOL_VERSION] = TG_PROTOCOL_VERSION;
    p[TG_HELLO_OFF_INIT_STATUS] = init_status;
    p[TG_HELLO_OFF_INPUT_DTYPE] = (uint8_t)(TG_INPUT_DTYPE);
    p[TG_HELLO_OFF_OUTPUT_DTYPE] = (uint8_t)(TG_OUTPUT_DTYPE);
    p[TG_HELLO_OFF_INPUT_RANK] = (uint8_t)(TG_INPUT_RANK);
    p[TG_HELLO_OFF_OUTPUT_RANK] = (uint8_t)(TG_OUTPUT_RANK);
    for (i = 0; name != NULL && i < TG_RUNTIME_NAME_BYTES && name[i] != '\0'; i++) {
        p[TG_HELLO_OFF_RUNTIME_NAME + i] = (uint8_t)name[i];
    }
    memcpy(p + TG_HELLO_OFF_MODEL_HASH, model_hash, TG_MODEL_HASH_LEN);
    for (i = 0; i < (uint32_t)(TG_INPUT_RANK); i++) {
        wr32(p + TG_HELLO_OFF_INPUT_DIMS + 4u * i, input_dims[i]);
    }
    for (i = 0; i < (uint32_t)(TG_OUTPUT_RANK); i++) {
        wr32(p + TG_HELLO_OFF_OUTPUT_DIMS + 4u * i, output_dims[i]);
    }
    wrf32(p + TG_HELLO_OFF_INPUT_SCALE, (float)(TG_INPUT_SCALE));
    wr32(p + TG_HELLO_OFF_INPUT_ZERO_POINT, (uint32_t)(int32_t)(TG_INPUT_ZERO_POINT));
    wrf32(p + TG_HELLO_OFF_OUTPUT_SCALE, (float)(TG_OUTPUT_SCALE));
    wr32(p + TG_HELLO_OFF_OUTPUT_ZERO_POINT, (uint32_t)(int32_t)(TG_OUTPUT_ZERO_POINT));
    wr32(p + TG_HELLO_OFF_INPUT_BYTES, (uint32_t)(TG_INPUT_BYTES));
    wr32(p + TG_HELLO_OFF_OUTPUT_BYTES, (uint32_t)(TG_OUTPUT_BYTES));
    wr32(p + TG_HELLO_OFF_ARENA_BYTES, tg_runtime_arena_bytes());
    wr32(p + TG_HELLO_OFF_TICK_HZ, tg_hal_ticks_hz());
    wr32(p + TG_HELLO_OFF_MAX_FRAME, (uint32_t)TG_APP_RX_MAX);
    reply(TG_OP_HELLO, seq, TG_STATUS_OK, TG_HELLO_BYTES);
}

static void do_infer(uint32_t seq, uint32_t len)
{
    uint8_t *out = tx.b + TG_HEADER_BYTES;
    uint32_t t0, elapsed;
    int r;

    if (init_status != TG_STATUS_OK) {
        stats[TG_STAT_REJECTED]++;
        reply(TG_OP_INFER, seq, init_status, 0);
        return;
    }
    if (len != (uint32_t)(TG_INPUT_BYTES)) {
        stats[TG_STAT_REJECTED]++;
        reply(TG_OP_INFER, seq, TG_STATUS_BAD_LENGTH, 0);
        return;
    }
    t0 = tg_hal_ticks();
    r = tg_runtime_invoke((const int8_t *)(const void *)(rx.b + TG_HEADER_BYTES), (int8_t *)(void *)out);
    elapsed = tg_hal_ticks() - t0;
    if (r != 0) {
        stats[TG_STAT_INVOKE_FAILURES]++;
        wr32(out, (uint32_t)(int32_t)r);
        reply(TG_OP_INFER, seq, TG_STATUS_INVOKE_FAILED, 4);
        return;
    }
    stats[TG_STAT_INFERS]++;
    if (elapsed > stats[TG_STAT_MAX_TICKS]) {
        stats[TG_STAT_MAX_TICKS] = elapsed;
    }
    wr32(out + (TG_OUTPUT_BYTES), elapsed);
    reply(TG_OP_INFER, seq, TG_STATUS_OK, (uint32_t)(TG_OUTPUT_BYTES) + TG_INFER_TICKS_BYTES);
}

#if defined(TG_HAS_FRONTEND) && TG_HAS_FRONTEND
/* Raw samples -> the front end -> the model: the reply is the model input the front end made,
 * the output, the model's ticks and the front end's ticks. */
static void do_infer_raw(uint32_t seq, uint32_t len)
{
    uint8_t *feat = tx.b + TG_HEADER_BYTES;
    uint8_t *out = feat + (TG_INPUT_BYTES);
    uint32_t t0, t1, t2;
    int r;

    if (init_status != TG_STATUS_OK) {
        stats[TG_STAT_REJECTED]++;
        reply(TG_OP_INFER_RAW, seq, init_status, 0);
        return;
    }
    if (len != (uint32_t)TG_APP_RAW_BYTES) {
        stats[TG_STAT_REJECTED]++;
        reply(TG_OP_INFER_RAW, seq, TG_STATUS_BAD_LENGTH, 0);
        return;
    }
    t0 = tg_hal_ticks();
    r = tinygen_model_features_raw((const int16_t *)(const void *)(rx.b + TG_HEADER_BYTES),
                                   (size_t)(TG_FE_RAW_SAMPLES), (int8_t *)(void *)feat, (size_t)(TG_INPUT_BYTES));
    t1 = tg_hal_ticks();
    if (r == 0) {
        r = tg_runtime_invoke((const int8_t *)(const void *)feat, (int8_t *)(void *)out);
    }
    t2 = tg_hal_ticks();
    if (r != 0) {
        stats[TG_STAT_INVOKE_FAILURES]++;
        wr32(tx.b + TG_HEADER_BYTES, (uint32_t)(int32_t)r);
        reply(TG_OP_INFER_RAW, seq, TG_STATUS_INVOKE_FAILED, 4);
        return;
    }
    stats[TG_STAT_INFERS]++;
    if (t2 - t1 > stats[TG_STAT_MAX_TICKS]) {
        stats[TG_STAT_MAX_TICKS] = t2 - t1;
    }
    wr32(out + (TG_OUTPUT_BYTES), t2 - t1);
    wr32(out + (TG_OUTPUT_BYTES) + 4u, t1 - t0);
    reply(TG_OP_INFER_RAW, seq, TG_STATUS_OK, (uint32_t)TG_APP_RAW_REPLY);
}
#endif

#if TG_APP_FE_TAPS
#include "tg_frontend_config.h" /* tg_fe_config: the project's front end (lib/tinygen_model) */
/* One frame (int32 LE, as tg_fe_spectrum_frame takes it) -> its stages, for verify --layers. Computed in
 * rx: the frame moves past the reply's words, the scratch follows it; the reply is sent from rx. */
static void do_fe_taps(uint32_t seq, uint32_t len)
{
    int32_t *p = (int32_t *)(void *)(rx.b + TG_HEADER_BYTES), *frame = p + TG_APP_FE_TAPS_REPLY_WORDS;
    tg_fe_taps_t taps;
    int r;
    if (len != (uint32_t)(TG_FE_TAP_FRAME_LENGTH) * 4u) {
        stats[TG_STAT_REJECTED]++;
        reply(TG_OP_FE_TAPS, seq, TG_STATUS_BAD_LENGTH, 0);
        return;
    }
    memmove(frame, p, (size_t)len);
    taps.filterbank = (uint64_t *)(void *)p;
    taps.log = NULL; /* log_out below is the reply's log words */
    taps.window = p + 3u * (TG_FE_TAP_BANDS);
    taps.shift = taps.window + (TG_FE_TAP_FRAME_LENGTH);
    taps.fft = taps.shift + 1;
    r = tg_fe_spectrum_frame(&tg_fe_config, frame, p + 2u * (TG_FE_TAP_BANDS), frame + (TG_FE_TAP_FRAME_LENGTH),
                             (size_t)(TG_FE_TAP_SCRATCH_WORDS), &taps);
    wr32(tx.b + TG_HEADER_BYTES, (uint32_t)(int32_t)r);
    if (r != 0) reply(TG_OP_FE_TAPS, seq, TG_STATUS_INVOKE_FAILED, 4);
    else send_frame(rx.b, sizeof rx.b, TG_OP_FE_TAPS, seq, TG_STATUS_OK, 0, 4u * (TG_APP_FE_TAPS_REPLY_WORDS));
}
#endif

/* ---- per-op streams (LAYERS, PROFILE) ----------------------------------------- */

static void stream_send(uint32_t len)
{
    send_frame(sx.b, sizeof sx.b, stream.opcode, stream.seq, TG_STATUS_OK, TG_FLAG_MORE, len);
    stream.frames++;
}

static void layers_hook(void *ctx, uint32_t op, const void *output, uint32_t bytes)
{
    const uint8_t *src = (const uint8_t *)output;
    uint8_t *p = sx.b + TG_HEADER_BYTES;
    uint32_t off = 0, n;
    (void)ctx;
    stream.ops++;
    do {
        n = bytes - off;
        if (n > (uint32_t)TG_STREAM_CHUNK_BYTES) {
            n = TG_STREAM_CHUNK_BYTES;
        }
        if (src == NULL) {
            n = 0;
        }
        wr32(p, op);
        wr32(p + 4, src == NULL ? 0u : bytes);
        wr32(p + 8, off);
        if (n > 0u) {
            memcpy(p + TG_LAYER_CHUNK_BYTES, src + off, n);
        }
        stream_send(TG_LAYER_CHUNK_BYTES + n);
        off += n;
    } while (n > 0u && off < bytes);
}

static void profile_flush(void)
{
    if (stream.records > 0u) {
        stream_send(stream.records * TG_PROFILE_RECORD_BYTES);
        stream.records = 0;
    }
}

static void profile_hook(void *ctx, uint32_t op, const void *output, uint32_t bytes)
{
    uint32_t now = tg_hal_ticks();
    uint8_t *p = sx.b + TG_HEADER_BYTES + stream.records * TG_PROFILE_RECORD_BYTES;
    (void)ctx;
    (void)output;
    (void)bytes;
    wr32(p, op);
    wr32(p + 4, now - stream.mark);
    stream.ops++;
    stream.records++;
    if (stream.records * TG_PROFILE_RECORD_BYTES >= (uint32_t)TG_STREAM_CHUNK_BYTES) {
        profile_flush();
    }
    /* the time spent sending is not the next op's */
    stream.mark = tg_hal_ticks();
}

/* One inference with the op hook on; FLAG_MORE frames go out while it runs, then the final reply:
 * STREAM_END (ops, frames) + output + ticks of the whole invoke (streaming included). */
static void do_stream(uint8_t opcode, uint32_t seq, uint32_t len)
{
    uint8_t *p = tx.b + TG_HEADER_BYTES;
    uint8_t *out = p + TG_STREAM_END_BYTES;
    uint32_t t0, elapsed;
    int r;

    if (init_status != TG_STATUS_OK) {
        stats[TG_STAT_REJECTED]++;
        reply(opcode, seq, init_status, 0);
        return;
    }
    if (len != (uint32_t)(TG_INPUT_BYTES)) {
        stats[TG_STAT_REJECTED]++;
        reply(opcode, seq, TG_STATUS_BAD_LENGTH, 0);
        return;
    }
    memset(&stream, 0, sizeof stream);
    stream.seq = seq;
    stream.opcode = opcode;
    if (tg_runtime_set_op_hook(opcode == TG_OP_LAYERS ? layers_hook : profile_hook, NULL) != 0) {
        stats[TG_STAT_REJECTED]++;
        reply(opcode, seq, TG_STATUS_NO_OP_HOOK, 0);
        return;
    }
    t0 = tg_hal_ticks();
    stream.mark = t0;
    r = tg_runtime_invoke((const int8_t *)(const void *)(rx.b + TG_HEADER_BYTES), (int8_t *)(void *)out);
    elapsed = tg_hal_ticks() - t0;
    (void)tg_runtime_set_op_hook(NULL, NULL);
    profile_flush();
    if (r != 0) {
        stats[TG_STAT_INVOKE_FAILURES]++;
        wr32(p, (uint32_t)(int32_t)r);
        reply(opcode, seq, TG_STATUS_INVOKE_FAILED, 4);
        return;
    }
    wr32(p, stream.ops);
    wr32(p + 4, stream.frames);
    wr32(out + (TG_OUTPUT_BYTES), elapsed);
    reply(opcode, seq, TG_STATUS_OK, TG_STREAM_END_BYTES + (uint32_t)(TG_OUTPUT_BYTES) + TG_INFER_TICKS_BYTES);
}

static void handle_frame(void)
{
    uint32_t seq, len, i;
    uint8_t op;

    if (rx_len < (uint32_t)TG_FRAME_OVERHEAD) {
        stats[TG_STAT_BAD_FRAME]++;
        reply_unverified(TG_STATUS_BAD_FRAME);
        return;
    }
    if (crc32(rx.b, rx_len - TG_CRC_BYTES) != rd32(rx.b + rx_len - TG_CRC_BYTES)) {
        stats[TG_STAT_BAD_CRC]++;
        reply_unverified(TG_STATUS_BAD_CRC);
        return;
    }
    seq = rd16(rx.b + TG_HDR_OFF_SEQ);
    op = rx.b[TG_HDR_OFF_OPCODE];
    len = rd16(rx.b + TG_HDR_OFF_LENGTH);
    if (rx.b[TG_HDR_OFF_VERSION] != TG_PROTOCOL_VERSION) {
        stats[TG_STAT_REJECTED]++;
        tx.b[TG_HEADER_BYTES] = TG_PROTOCOL_VERSION;
        reply((uint8_t)(op & 0x7Fu), seq, TG_STATUS_BAD_VERSION, 1);
        return;
    }
    if ((op & TG_REPLY_FLAG) != 0u || len != rx_len - TG_FRAME_OVERHEAD) {
        stats[TG_STAT_BAD_FRAME]++;
        reply((uint8_t)(op & 0x7Fu), seq, TG_STATUS_BAD_FRAME, 0);
        return;
    }
    switch (op) {
    case TG_OP_HELLO:
        if (len != 0u) {
            break;
        }
        do_hello(seq);
        return;
    case TG_OP_INFER:
        do_infer(seq, len);
        return;
#if defined(TG_HAS_FRONTEND) && TG_HAS_FRONTEND
    case TG_OP_INFER_RAW:
        do_infer_raw(seq, len);
        return;
#endif
#if TG_APP_FE_TAPS
    case TG_OP_FE_TAPS:
        do_fe_taps(seq, len);
        return;
#endif
    case TG_OP_LAYERS:
    case TG_OP_PROFILE:
        do_stream(op, seq, len);
        return;
    case TG_OP_PING:
        /* echo in place: rx.b holds header + payload and has room for the crc */
        send_frame(rx.b, sizeof rx.b, TG_OP_PING, seq, TG_STATUS_OK, 0, len);
        return;
    case TG_OP_GET_STATS:
        if (len != 0u) {
            break;
        }
        for (i = 0; i < TG_STATS_COUNT; i++) {
            wr32(tx.b + TG_HEADER_BYTES + 4u * i, stats[i]);
        }
        reply(TG_OP_GET_STATS, seq, TG_STATUS_OK, 4u * TG_STATS_COUNT);
        return;
    case TG_OP_RESET_STATS:
        if (len != 0u) {
            break;
        }
        memset(stats, 0, sizeof stats);
        reply(TG_OP_RESET_STATS, seq, TG_STATUS_OK, 0);
        return;
    default:
        stats[TG_STAT_REJECTED]++;
        reply(op, seq, TG_STATUS_UNKNOWN_OPCODE, 0);
        return;
    }
    /* known opcode, wrong payload length */
    stats[TG_STAT_REJECTED]++;
    reply(op, seq, TG_STATUS_BAD_LENGTH, 0);
}

/* ---- receiving ------------------------------------------------------------------ */

static void rx_reset(void)
{
    rx_len = 0;
    rx_code = 0;
    rx_left = 0;
    rx_any = 0;
    rx_overflow = 0;
}

static void rx_store(uint8_t b)
{
    if (rx_len >= (uint32_t)sizeof rx.b) {
        rx_overflow = 1; /* discard the rest of this frame */
        return;
    }
    rx.b[rx_len++] = b;
}

static void rx_end_of_frame(void)
{
    if (!rx_any) {
        return; /* empty frame: a resync marker, ignore */
    }
    stats[TG_STAT_FRAMES]++;
    if (rx_overflow) {
        stats[TG_STAT_TOO_LONG]++;
        reply_unverified(TG_STATUS_TOO_LONG);
    } else if (rx_left != 0u) {
        stats[TG_STAT_BAD_FRAME]++; /* COBS block cut short by the delimiter */
        reply_unverified(TG_STATUS_BAD_FRAME);
    } else {
        handle_frame();
    }
}

static void rx_byte(uint8_t b)
{
    if (b == TG_FRAME_DELIMITER) {
        rx_end_of_frame();
        rx_reset();
        return;
    }
    rx_any = 1;
    if (rx_overflow) {
        return;
    }
    if (rx_left == 0u) {
        /* a code byte; every block but the first after a non-0xFF block
         * stands for a zero in the data */
        if (rx_code != 0u && rx_code != 0xFFu) {
            rx_store(0);
        }
        rx_code = b;
        rx_left = (uint8_t)(b - 1u);
    } else {
        rx_store(b);
        rx_left--;
    }
}

/* ---- public ---------------------------------------------------------------------- */

static int check_model_info(void)
{
    uint32_t in_n = 1, out_n = 1, i;
    uint32_t in_size = ((TG_INPUT_DTYPE) == TG_DTYPE_INT16) ? 2u
                       : ((TG_INPUT_DTYPE) == TG_DTYPE_INT32 || (TG_INPUT_DTYPE) == TG_DTYPE_FLOAT32) ? 4u : 1u;
    uint32_t out_size = ((TG_OUTPUT_DTYPE) == TG_DTYPE_INT16) ? 2u
                        : ((TG_OUTPUT_DTYPE) == TG_DTYPE_INT32 || (TG_OUTPUT_DTYPE) == TG_DTYPE_FLOAT32) ? 4u : 1u;
    for (i = 0; i < (uint32_t)(TG_INPUT_RANK); i++) {
        in_n *= input_dims[i];
    }
    for (i = 0; i < (uint32_t)(TG_OUTPUT_RANK); i++) {
        out_n *= output_dims[i];
    }
    return in_n * in_size == (uint32_t)(TG_INPUT_BYTES) && out_n * out_size == (uint32_t)(TG_OUTPUT_BYTES);
}

void tg_app_init(void)
{
    int r;
    crc_setup();
    rx_reset();
    memset(stats, 0, sizeof stats);
    if (!check_model_info()) {
        init_status = TG_STATUS_MODEL_MISMATCH;
        print_status_line("tg_model_info.h dims do not match the byte counts", init_status);
        return;
    }
    r = tg_runtime_init();
    if (r == 0) {
        init_status = TG_STATUS_OK;
        return;
    }
    init_status = (r > 0 && r <= 255) ? (uint8_t)r : (uint8_t)TG_STATUS_RUNTIME_INIT_FAILED;
    print_status_line("runtime init failed", init_status);
}

void tg_app_poll(void)
{
    uint32_t budget;
    for (budget = 0; budget < (uint32_t)(TG_APP_POLL_BUDGET); budget++) {
        int c = tg_hal_getc();
        if (c < 0) {
            return;
        }
        rx_byte((uint8_t)c);
    }
}
