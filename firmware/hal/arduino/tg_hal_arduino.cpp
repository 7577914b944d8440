/*
 * tg_hal_arduino.cpp -- tg_hal.h on the Arduino framework (ESP32, Nano 33 BLE).
 *
 * Serial is the USB/UART port the board enumerates as; ticks are micros().
 */
#include <Arduino.h>

#include "tg_hal.h"

#ifndef TG_BAUD
#define TG_BAUD 115200
#endif

extern "C" void tg_hal_init(void) {
  Serial.begin(TG_BAUD);
  // Native-USB boards (Nano 33 BLE) need the host to open the port; do not
  // wait forever so the firmware still runs without a host.
  const unsigned long start = millis();
  while (!Serial && millis() - start < 3000) {
  }
}

extern "C" int tg_hal_getc(void) { return Serial.available() > 0 ? Serial.read() : -1; }

extern "C" void tg_hal_write(const uint8_t *p, uint32_t n) {
  while (n > 0) {
    size_t sent = Serial.write(p, n);
    p += sent;
    n -= (uint32_t)sent;
  }
  Serial.flush();
}

extern "C" uint32_t tg_hal_ticks(void) { return (uint32_t)micros(); }

extern "C" uint32_t tg_hal_ticks_hz(void) { return 1000000u; }
