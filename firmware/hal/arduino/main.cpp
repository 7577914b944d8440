// main.cpp -- the validation firmware's Arduino entry points (ESP32, Nano 33 BLE): the HAL, then
// tg_app, which answers the host's requests over Serial. Copied into a project's src/ as it is.
#include <Arduino.h>

#include "tg_app.h"
#include "tg_hal.h"

void setup() {
  tg_hal_init();
  tg_app_init();  // initialises the runtime; reports failures over Serial
}

void loop() { tg_app_poll(); }
