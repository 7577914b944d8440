// predict.c -- example program calling the model through tinygen_model.h only.
//
// For the model it uses nothing but the library's public header. For the board it uses
// tinygen's HAL (tg_hal.h: a serial port and a counter), standing in for your own board code.
// It runs the inputs of tinygen_example_vectors.h (reference vectors, or the sine recipe's sweep) and prints one
// line per input:
//   pred <i>: <int8 outputs> | <float outputs>[ -> <label of the largest output>]
// then "cycles <n>" (tinygen_model_last_cycles of the last one) and "done <count>".
#include <stddef.h>
#include <stdint.h>

#include "tg_hal.h"
#include "tinygen_example_vectors.h"
#include "tinygen_model.h"
#include "tinygen_example.h"

// The library measures inferences with this counter (its own weak definition returns 0).
uint32_t tinygen_model_ticks(void) { return tg_hal_ticks(); }

static void put(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0') n++;
    tg_hal_write((const uint8_t *)s, (uint32_t)n);
}

static void put_int(int32_t v)
{
    char buf[12];
    int i = (int)sizeof buf - 1;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u != 0u);
    if (v < 0) buf[--i] = '-';
    put(&buf[i]);
}

// Six decimals without printf's float support (newlib-nano leaves it out).
static void put_float(float x)
{
    if (x < 0.0f) {
        put("-");
        x = -x;
    }
    if (!(x < 1e9f)) {
        put("big");
        return;
    }
    uint32_t whole = (uint32_t)x;
    uint32_t frac = (uint32_t)((x - (float)whole) * 1e6f + 0.5f);
    if (frac >= 1000000u) {
        whole += 1u;
        frac -= 1000000u;
    }
    put_int((int32_t)whole);
    put(".");
    for (uint32_t d = 100000u; d != 0u; d /= 10u) {
        char c[2] = {(char)('0' + (frac / d) % 10u), '\0'};
        put(c);
    }
}

void tinygen_example_run(void)
{
    static float out[TINYGEN_MODEL_OUTPUT_COUNT];
    static int8_t out_q[TINYGEN_MODEL_OUTPUT_COUNT];
    int st = tinygen_model_init();
    put("tinygen_model example: runtime ");
    put(tinygen_model_runtime_name());
    put(", init ");
    put(tinygen_model_status_name(st));
    put("\n");
    if (st != TINYGEN_MODEL_OK) return;
    for (int i = 0; i < TINYGEN_EXAMPLE_COUNT; i++) {
        st = tinygen_model_predict_float(tinygen_example_inputs[i], TINYGEN_MODEL_INPUT_COUNT, out,
                                         TINYGEN_MODEL_OUTPUT_COUNT);
        put("pred ");
        put_int(i);
        if (st != TINYGEN_MODEL_OK) {
            put(": error ");
            put(tinygen_model_status_name(st));
            put("\n");
            continue;
        }
        put(":");
        // the int8 the model produced, recovered exactly from the dequantized float
        for (int j = 0; j < TINYGEN_MODEL_OUTPUT_COUNT; j++) {
            float q = out[j] / TINYGEN_MODEL_OUTPUT_SCALE + (float)TINYGEN_MODEL_OUTPUT_ZERO_POINT;
            out_q[j] = (int8_t)(q < 0.0f ? q - 0.5f : q + 0.5f);
            put(" ");
            put_int(out_q[j]);
        }
        put(" |");
        int top = 0;
        for (int j = 0; j < TINYGEN_MODEL_OUTPUT_COUNT; j++) {
            put(" ");
            put_float(out[j]);
            if (out[j] > out[top]) top = j;
        }
        if (tinygen_model_class_label(top) != NULL) {  // a classifier whose labels are known
            put(" -> ");
            put(tinygen_model_class_label(top));
        }
        put("\n");
    }
    put("cycles ");
    put_int((int32_t)tinygen_model_last_cycles());
    put("\ndone ");
    put_int(TINYGEN_EXAMPLE_COUNT);
    put("\n");
}
