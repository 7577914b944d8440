// main.cpp -- the example on an Arduino board: run at boot and every 5 s after, so a serial
// monitor opened late still sees a full run.
#include <Arduino.h>

#include "tg_hal.h"
#include "tinygen_example.h"

void setup() {
  tg_hal_init();  // Serial at the board's speed (waits up to 3 s for USB), the cycle counter
  tinygen_example_run();
}

void loop() {
  delay(5000);
  tinygen_example_run();
}
