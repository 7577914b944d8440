/*
 * tg_tflm_platform.cc -- the platform functions a TFLM source tree expects,
 * for bare-metal tinygen firmware (tinygen-mps2 / QEMU mps2-an386).
 *
 * A TFLM tree in Arduino-library layout implements these in files that need
 * the Arduino core (tensorflow/lite/micro/system_setup.cpp: DebugLog and
 * InitializeTarget on Serial; micro_time.cpp: ticks from the Arduino
 * peripherals). The tinygen-mps2 builder leaves those files out and tinygen
 * copies this file into src/ of TFLM projects for the emulated board:
 *
 *   DebugLog             text goes to the UART as lines "....\n" followed by a
 *                        0x00 byte, the way the validation app prints status
 *                        lines: the host protocol (tinygen.serial_link) sees a
 *                        frame delimiter, recognises the text and keeps it as
 *                        a log line instead of taking it for a corrupt frame.
 *                        TFLM only logs on errors (AllocateTensors failing,
 *                        a missing op), so nothing is written in normal runs.
 *   InitializeTarget     nothing to do: tg_hal_init() set the board up.
 *   ticks_per_second,    tg_hal_ticks_hz() / tg_hal_ticks() (SysTick).
 *   GetCurrentTimeTicks
 *
 * TFLM trees before mid-2023 declare `void DebugLog(const char *s)`; later
 * ones `void DebugLog(const char *format, va_list args)` plus
 * DebugVsnprintf(). The builder defines TG_TFLM_DEBUG_LOG_VA_LIST when the
 * tree's debug_log.h has the second form.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#if defined(TG_TFLM_DEBUG_LOG_VA_LIST)
#include <stdio.h>
#endif

#include "tensorflow/lite/micro/debug_log.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tg_hal.h"

namespace {

/* One line of log text; longer lines are split. */
constexpr uint32_t kLineMax = 120u;
char g_line[kLineMax];
uint32_t g_line_len = 0u;

void flush_line(void)
{
    static const uint8_t kEnd[2] = {'\n', 0x00u};
    if (g_line_len == 0u) {
        return;
    }
    tg_hal_write(reinterpret_cast<const uint8_t *>(g_line), g_line_len);
    tg_hal_write(kEnd, 2u);
    g_line_len = 0u;
}

void log_text(const char *s)
{
    if (s == nullptr) {
        return;
    }
    for (; *s != '\0'; ++s) {
        const char c = *s;
        if (c == '\n') {
            flush_line();
            continue;
        }
        if (c == '\r') {
            continue;
        }
        /* printable ASCII and tabs only, so the host always sees text */
        g_line[g_line_len++] = (c == '\t' || (c >= 0x20 && c < 0x7f)) ? c : '?';
        if (g_line_len == kLineMax) {
            flush_line();
        }
    }
}

}  // namespace

#if defined(TG_TFLM_DEBUG_LOG_VA_LIST)

extern "C" int DebugVsnprintf(char *buffer, size_t buf_size, const char *format, va_list vlist)
{
    return vsnprintf(buffer, buf_size, format, vlist);
}

extern "C" void DebugLog(const char *format, va_list args)
{
    char buffer[kLineMax];
    (void)vsnprintf(buffer, sizeof buffer, format, args);
    log_text(buffer);
}

#else

extern "C" void DebugLog(const char *s)
{
    log_text(s);
}

#endif

namespace tflite {

void InitializeTarget() {}

uint32_t ticks_per_second()
{
    return tg_hal_ticks_hz();
}

uint32_t GetCurrentTimeTicks()
{
    return tg_hal_ticks();
}

}  // namespace tflite
