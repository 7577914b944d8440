/*
 * tg_hal_arduino.cpp -- tg_hal.h on the Arduino framework (ESP32, Nano 33 BLE).
 *
 * Serial is the USB/UART port the board enumerates as. Ticks are CPU cycles, so the host
 * reports cycles and, at the board's clock, microseconds:
 *   Arduino mbed (Cortex-M4): the DWT cycle counter, switched on through CoreDebug DEMCR.TRCENA
 *                             and DWT CTRL.CYCCNTENA; the rate is CMSIS SystemCoreClock.
 *   ESP32 (Xtensa):           the CCOUNT special register through ESP.getCycleCount(); the rate is
 *                             ESP.getCpuFreqMHz(). setup()/loop() run on one core, whose counter
 *                             this is.
 *   anything else, or a Cortex-M without a cycle counter: micros() at 1 MHz.
 */
#include <Arduino.h>

#if defined(ARDUINO_ARCH_MBED)
#include "cmsis.h"
#endif

#include "tg_hal.h"

#ifndef TG_BAUD
#define TG_BAUD 115200
#endif

// How long a write may make no progress before the rest of the frame is dropped. The Nano's
// USBSerial::write returns 0 while no host has the port open; without a bound the firmware would
// spin there forever. The host side re-sends a request whose reply it did not get.
#ifndef TG_HAL_WRITE_STALL_MS
#define TG_HAL_WRITE_STALL_MS 50u
#endif

namespace {
bool g_cycles = false;
// Set after a write timed out; later writes then give up at once instead of waiting again, until
// one goes through.
bool g_stalled = false;

#if defined(ARDUINO_ARCH_MBED) && defined(DWT) && defined(CoreDebug)
bool start_cycle_counter() {
  CoreDebug->DEMCR |= CoreDebug_DEMCR_TRCENA_Msk;
  if ((DWT->CTRL & DWT_CTRL_NOCYCCNT_Msk) != 0u) return false;  // implemented without CYCCNT
  DWT->CYCCNT = 0u;
  DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
  const uint32_t before = DWT->CYCCNT;
  for (volatile int i = 0; i < 16; ++i) {
  }
  return DWT->CYCCNT != before;
}
uint32_t cycles() { return DWT->CYCCNT; }
uint32_t cycles_hz() { return SystemCoreClock; }
#elif defined(ARDUINO_ARCH_ESP32)
bool start_cycle_counter() { return true; }
uint32_t cycles() { return ESP.getCycleCount(); }
uint32_t cycles_hz() { return ESP.getCpuFreqMHz() * 1000000u; }
#else
bool start_cycle_counter() { return false; }
uint32_t cycles() { return 0u; }
uint32_t cycles_hz() { return 0u; }
#endif
}  // namespace

extern "C" void tg_hal_init(void) {
  g_cycles = start_cycle_counter() && cycles_hz() != 0u;
  Serial.begin(TG_BAUD);
  // Native-USB boards (Nano 33 BLE) need the host to open the port; do not
  // wait forever so the firmware still runs without a host.
  const unsigned long start = millis();
  while (!Serial && millis() - start < 3000) {
  }
}

extern "C" int tg_hal_getc(void) { return Serial.available() > 0 ? Serial.read() : -1; }

extern "C" void tg_hal_write(const uint8_t *p, uint32_t n) {
  unsigned long last_progress = millis();
  while (n > 0) {
    const size_t sent = Serial.write(p, n);
    if (sent == 0) {
      if (g_stalled || millis() - last_progress >= TG_HAL_WRITE_STALL_MS) {
        g_stalled = true;
        return;  // nobody is reading: drop the rest rather than block
      }
      continue;
    }
    g_stalled = false;
    last_progress = millis();
    p += sent;
    n -= (uint32_t)sent;
  }
  Serial.flush();
}

extern "C" uint32_t tg_hal_ticks(void) { return g_cycles ? cycles() : (uint32_t)micros(); }

extern "C" uint32_t tg_hal_ticks_hz(void) { return g_cycles ? cycles_hz() : 1000000u; }
