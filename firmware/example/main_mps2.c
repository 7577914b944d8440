/* main.c -- the example on QEMU's MPS2 machines: run once, then idle (the host stops QEMU). */
#include "tg_hal.h"
#include "tinygen_example.h"

int main(void)
{
    tg_hal_init();
    tinygen_example_run();
    for (;;) {
    }
}
