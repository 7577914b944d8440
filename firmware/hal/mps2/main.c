/*
 * main.c -- entry point for tinygen firmware on QEMU's MPS2 machines.
 * Reset_Handler (startup_mps2.c) calls main() after .data/.bss set-up.
 */
#include "tg_app.h"
#include "tg_hal.h"

int main(void)
{
    tg_hal_init();
    tg_app_init();
    for (;;) {
        tg_app_poll();
    }
}
