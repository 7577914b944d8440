/*
 * main.c -- entry point for tinygen firmware on QEMU's RISC-V virt machine.
 * tg_rv_reset_c (startup_riscv_virt.c) calls main() after .data/.bss set-up.
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
