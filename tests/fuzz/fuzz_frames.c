/*
 * libFuzzer harness for the validation firmware's frame parser (tg_app.c):
 * COBS decoding on the fly, the receive buffer limit, CRC, header checks and
 * dispatch, exactly as compiled for a board, fed through tg_hal_getc().
 *
 * Besides the sanitizers, every reply is checked against an independent
 * model of the documented behaviour (DEVELOPERS.md, "Protocol: what the
 * firmware does"): each non-empty chunk between 0x00 delimiters gets exactly
 * one well-formed reply frame with the status, seq, flags and payload the
 * documented order of checks gives, and GET_STATS matches counters kept here.
 * A mismatch aborts, which libFuzzer reports as a crash with the input.
 *
 * Modes (compile time):
 *   default            the input is raw wire bytes (COBS chunks and 0x00s)
 *   -DTG_FUZZ_SEALED   the input is one decoded frame without its CRC; the
 *                      harness appends the right CRC and COBS-encodes it, so
 *                      the fuzzer reaches the checks behind the CRC
 *
 * Built with the real tg_app.c and tests/fixtures/protocol/test_runtime.c
 * (output = saturate(2 * input - 1)) by tests/fuzz/fuzz_build.py.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_protocol.h"
#include "tg_model_info.h"
#include "tg_hal.h"
#include "tg_app.h"

#define RX_PAYLOAD_MAX ((TG_INPUT_BYTES) > TG_MIN_RX_PAYLOAD ? (TG_INPUT_BYTES) : TG_MIN_RX_PAYLOAD)
#define RX_MAX (TG_FRAME_OVERHEAD + RX_PAYLOAD_MAX)
#define OUT_CAP (1u << 16)

/* ---- the HAL: bytes in from the fuzzer, bytes out to a buffer ---------------- */

static const uint8_t *in_p;
static size_t in_n, in_pos;
static uint8_t out_buf[OUT_CAP];
static size_t out_len;
static uint32_t ticks;

void tg_hal_init(void) {}

int tg_hal_getc(void)
{
    return in_pos < in_n ? in_p[in_pos++] : -1;
}

static void fail(const char *what, unsigned long a, unsigned long b)
{
    fprintf(stderr, "fuzz_frames: %s (%lu vs %lu)\n", what, a, b);
    abort();
}

void tg_hal_write(const uint8_t *p, uint32_t n)
{
    if (n > OUT_CAP - out_len) {
        fail("the firmware wrote more than any reply can hold", (unsigned long)(out_len + n), OUT_CAP);
    }
    memcpy(out_buf + out_len, p, n);
    out_len += n;
}

/* One tick per reading: every INFER takes exactly one tick. */
uint32_t tg_hal_ticks(void) { return ticks++; }
uint32_t tg_hal_ticks_hz(void) { return 1000u; }

/* ---- an independent reference ---------------------------------------------- */

static uint32_t ref_crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        c ^= p[i];
        for (k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        }
    }
    return ~c;
}

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return le16(p) | (le16(p + 2) << 16); }

static uint32_t stats[TG_STATS_COUNT];

/* Decode one COBS chunk as the firmware must: blocks store data, every block
 * after a block shorter than 0xFF first stands for a zero. Returns the number
 * of bytes the frame decodes to, counting beyond cap (stored up to cap);
 * *cut: the last block ends before its code byte said. */
static size_t ref_cobs_decode(const uint8_t *c, size_t n, uint8_t *dst, size_t cap, int *cut)
{
    size_t i = 0, len = 0;
    int prev = 0;
    *cut = 0;
    while (i < n) {
        uint8_t code = c[i++];
        size_t want = (size_t)code - 1u, have = n - i < want ? n - i : want;
        size_t k;
        if (prev != 0 && prev != 0xFF) {
            if (len < cap) dst[len] = 0;
            len++;
        }
        for (k = 0; k < have; k++, len++) {
            if (len < cap) dst[len] = c[i + k];
        }
        i += have;
        *cut = have < want;
        prev = code;
    }
    return len;
}

static size_t ref_cobs_encode(const uint8_t *p, size_t n, uint8_t *dst)
{
    size_t o = 0, code_at = 0, i;
    uint8_t code = 1;
    dst[o++] = 0;
    for (i = 0; i < n; i++) {
        if (p[i] == 0) {
            dst[code_at] = code;
            code_at = o++;
            code = 1;
            continue;
        }
        dst[o++] = p[i];
        if (++code == 0xFF) {
            dst[code_at] = code;
            code = 1;
            if (i + 1 < n) {
                code_at = o++;
            } else {
                return o; /* canonical: no empty block after a final 0xFF block */
            }
        }
    }
    dst[code_at] = code;
    return o;
}

/* What the firmware must answer to one chunk (reference model). */
struct expect {
    uint8_t opcode, status, flags;
    uint32_t seq;
    int payload; /* -1: not checked here */
};

static struct expect expect_for(const uint8_t *f, size_t n, int cut)
{
    struct expect e;
    uint32_t len;
    uint8_t op;
    int bad_len = 0;

    stats[TG_STAT_FRAMES]++;
    e.seq = n >= 4 ? le16(f + 2) : 0;
    e.opcode = n >= 2 ? (uint8_t)(f[1] & 0x7Fu) : 0;
    e.flags = TG_FLAG_SEQ_UNTRUSTED;
    e.payload = 0;
    if (n > RX_MAX) {
        stats[TG_STAT_TOO_LONG]++;
        e.status = TG_STATUS_TOO_LONG;
        return e;
    }
    if (cut || n < TG_FRAME_OVERHEAD) {
        stats[TG_STAT_BAD_FRAME]++;
        e.status = TG_STATUS_BAD_FRAME;
        return e;
    }
    if (ref_crc32(f, n - 4) != le32(f + n - 4)) {
        stats[TG_STAT_BAD_CRC]++;
        e.status = TG_STATUS_BAD_CRC;
        return e;
    }
    e.flags = 0;
    op = f[1];
    len = le16(f + 6);
    if (f[0] != TG_PROTOCOL_VERSION) {
        stats[TG_STAT_REJECTED]++;
        e.status = TG_STATUS_BAD_VERSION;
        e.payload = 1;
        return e;
    }
    if ((op & 0x80u) != 0u || len != n - TG_FRAME_OVERHEAD) {
        stats[TG_STAT_BAD_FRAME]++;
        e.status = TG_STATUS_BAD_FRAME;
        return e;
    }
    e.status = TG_STATUS_OK;
    e.payload = -1;
    switch (op) {
    case TG_OP_HELLO:
        bad_len = len != 0u;
        e.payload = TG_HELLO_BYTES;
        break;
    case TG_OP_INFER:
        bad_len = len != (uint32_t)(TG_INPUT_BYTES);
        if (!bad_len) {
            stats[TG_STAT_INFERS]++;
            stats[TG_STAT_MAX_TICKS] = 1;
        }
        break;
    case TG_OP_LAYERS:
    case TG_OP_PROFILE:
        /* test_runtime.c has no per-op access: one NO_OP_HOOK reply, no stream */
        bad_len = len != (uint32_t)(TG_INPUT_BYTES);
        if (!bad_len) {
            stats[TG_STAT_REJECTED]++;
            e.status = TG_STATUS_NO_OP_HOOK;
            e.payload = 0;
        }
        break;
    case TG_OP_PING:
        break; /* any length that fits the receive buffer */
    case TG_OP_GET_STATS:
        bad_len = len != 0u;
        break;
    case TG_OP_RESET_STATS:
        bad_len = len != 0u;
        e.payload = 0;
        break;
    default:
        stats[TG_STAT_REJECTED]++;
        e.status = TG_STATUS_UNKNOWN_OPCODE;
        e.payload = 0;
        return e;
    }
    if (bad_len) {
        stats[TG_STAT_REJECTED]++;
        e.status = TG_STATUS_BAD_LENGTH;
        e.payload = 0;
    }
    return e;
}

/* Check the bytes the firmware wrote for one chunk: exactly one frame. */
static void check_reply(const uint8_t *req, size_t req_n, struct expect e)
{
    static uint8_t dec[OUT_CAP], enc[OUT_CAP + OUT_CAP / 254 + 2];
    size_t n, plen, i;
    int cut;
    uint8_t op;

    if (out_len < 2 || out_buf[out_len - 1] != 0) {
        fail("reply missing or not ended by 0x00", (unsigned long)out_len, 0);
    }
    if (memchr(out_buf, 0, out_len - 1) != NULL) {
        fail("more than one reply chunk for one request chunk", (unsigned long)out_len, 0);
    }
    n = ref_cobs_decode(out_buf, out_len - 1, dec, sizeof dec, &cut);
    if (cut || n < TG_FRAME_OVERHEAD || n > sizeof dec) {
        fail("reply is not a COBS frame", (unsigned long)n, (unsigned long)cut);
    }
    if (ref_cobs_encode(dec, n, enc) != out_len - 1 || memcmp(enc, out_buf, out_len - 1) != 0) {
        fail("reply is not canonical COBS", (unsigned long)n, 0);
    }
    if (ref_crc32(dec, n - 4) != le32(dec + n - 4)) {
        fail("reply CRC", ref_crc32(dec, n - 4), le32(dec + n - 4));
    }
    plen = le16(dec + 6);
    op = dec[1];
    if (dec[0] != TG_PROTOCOL_VERSION || plen != n - TG_FRAME_OVERHEAD || (op & 0x80u) == 0u) {
        fail("reply header", dec[0], (unsigned long)plen);
    }
    if ((op & 0x7Fu) != e.opcode) fail("reply opcode", op & 0x7Fu, e.opcode);
    if (dec[4] != e.status) fail("reply status", dec[4], e.status);
    if (dec[5] != e.flags) fail("reply flags", dec[5], e.flags);
    if (le16(dec + 2) != e.seq) fail("reply seq", le16(dec + 2), e.seq);
    if (e.payload >= 0 && plen != (size_t)e.payload) fail("reply payload length", (unsigned long)plen, (unsigned long)e.payload);
    if (e.status == TG_STATUS_BAD_VERSION && dec[8] != TG_PROTOCOL_VERSION) fail("BAD_VERSION payload", dec[8], 1);
    if (e.status != TG_STATUS_OK) {
        return;
    }
    switch (e.opcode) {
    case TG_OP_HELLO:
        if (dec[8 + TG_HELLO_OFF_INIT_STATUS] != 0 || le32(dec + 8 + TG_HELLO_OFF_MAX_FRAME) != RX_MAX) {
            fail("HELLO fields", le32(dec + 8 + TG_HELLO_OFF_MAX_FRAME), RX_MAX);
        }
        break;
    case TG_OP_INFER:
        if (plen != (size_t)(TG_OUTPUT_BYTES) + 4u || le32(dec + 8 + TG_OUTPUT_BYTES) != 1u) {
            fail("INFER reply length / ticks", (unsigned long)plen, TG_OUTPUT_BYTES + 4u);
        }
        for (i = 0; i < (size_t)(TG_INPUT_BYTES); i++) {
            int v = 2 * (int)(int8_t)req[8 + i] - 1;
            v = v < -128 ? -128 : (v > 127 ? 127 : v);
            if ((int8_t)dec[8 + i] != v) fail("INFER output", dec[8 + i], (unsigned long)(v & 0xFF));
        }
        break;
    case TG_OP_PING:
        if (plen != req_n - TG_FRAME_OVERHEAD || memcmp(dec + 8, req + 8, plen) != 0) {
            fail("PING echo", (unsigned long)plen, (unsigned long)(req_n - TG_FRAME_OVERHEAD));
        }
        break;
    case TG_OP_GET_STATS:
        if (plen != 4u * TG_STATS_COUNT) fail("GET_STATS length", (unsigned long)plen, 4u * TG_STATS_COUNT);
        for (i = 0; i < TG_STATS_COUNT; i++) {
            if (le32(dec + 8 + 4 * i) != stats[i]) fail("GET_STATS counter", le32(dec + 8 + 4 * i), stats[i]);
        }
        break;
    case TG_OP_RESET_STATS:
        memset(stats, 0, sizeof stats);
        break;
    default:
        break;
    }
}

/* ---- driving the firmware ------------------------------------------------------ */

static void feed(const uint8_t *p, size_t n)
{
    in_p = p;
    in_n = n;
    in_pos = 0;
    while (in_pos < in_n) {
        tg_app_poll();
    }
}

/* Send one chunk (no 0x00 inside) and its delimiter; check the answer. */
static void one_chunk(const uint8_t *c, size_t n)
{
    static uint8_t dec[RX_MAX + 1];
    static const uint8_t zero = 0;
    int cut;
    size_t len;
    struct expect e;

    out_len = 0;
    feed(c, n);
    if (out_len != 0) {
        fail("the firmware answered before the delimiter", (unsigned long)out_len, 0);
    }
    feed(&zero, 1);
    if (n == 0) {
        if (out_len != 0) fail("reply to an empty frame", (unsigned long)out_len, 0);
        return;
    }
    len = ref_cobs_decode(c, n, dec, sizeof dec, &cut);
    e = expect_for(dec, len, cut);
    check_reply(dec, len > RX_MAX ? RX_MAX : len, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_app_init();
    memset(stats, 0, sizeof stats);
    ticks = 0;
#ifdef TG_FUZZ_SEALED
    {
        static uint8_t raw[RX_MAX + 16];
        static uint8_t enc[2 * (RX_MAX + 16)];
        size_t n = size > RX_MAX + 8 ? RX_MAX + 8 : size;
        uint32_t crc;
        memcpy(raw, data, n);
        crc = ref_crc32(raw, n);
        raw[n] = (uint8_t)crc;
        raw[n + 1] = (uint8_t)(crc >> 8);
        raw[n + 2] = (uint8_t)(crc >> 16);
        raw[n + 3] = (uint8_t)(crc >> 24);
        one_chunk(enc, ref_cobs_encode(raw, n + 4, enc));
    }
#else
    {
        size_t start = 0, i;
        for (i = 0; i <= size; i++) {
            if (i == size || data[i] == 0) {
                one_chunk(data + start, i - start);
                start = i + 1;
            }
        }
    }
#endif
    return 0;
}
