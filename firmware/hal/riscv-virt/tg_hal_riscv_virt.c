/*
 * tg_hal_riscv_virt.c -- tg_hal.h for QEMU's RISC-V virt machine (RV32).
 *
 * Serial: the NS16550A UART at 0x10000000 (QEMU connects it to the first
 *         -serial device). Polled, FIFOs on, no interrupts.
 * Ticks:  minstret, the retired-instruction counter, read with csrr (the
 *         low 32 bits; tg_hal_ticks() wraps modulo 2^32 as tg_hal.h allows).
 *
 * QEMU derives minstret from its instruction counter only under -icount;
 * without it the CSR follows the host's clock. With "-icount shift=0" each
 * guest instruction is 1 ns of virtual time and minstret counts exactly the
 * instructions executed, so
 *
 *     instructions = ticks          (instructions_per_tick 1)
 *     tg_hal_ticks_hz() = 10^9      (virtual time: one instruction per ns)
 *
 * Unlike a timer with a coarser grid (the MPS2 HAL's 25 MHz SysTick) the
 * count needs no re-anchoring to the moment a byte arrives: the code between
 * two reads retires the same instructions on every boot. The figure is the
 * emulator's, not a real chip's: no caches, no pipeline, every instruction
 * counts one.
 */
#include <stdint.h>

#include "tg_hal.h"

#define TG_REG8(addr) (*(volatile uint8_t *)(uintptr_t)(addr))

/* NS16550A, registers one byte apart (QEMU hw/riscv/virt.c: reg-shift 0) */
#define TG_UART_BASE 0x10000000u
#define TG_UART_RBR TG_REG8(TG_UART_BASE + 0u) /* read, DLAB = 0 */
#define TG_UART_THR TG_REG8(TG_UART_BASE + 0u) /* write, DLAB = 0 */
#define TG_UART_DLL TG_REG8(TG_UART_BASE + 0u) /* DLAB = 1 */
#define TG_UART_IER TG_REG8(TG_UART_BASE + 1u)
#define TG_UART_DLM TG_REG8(TG_UART_BASE + 1u) /* DLAB = 1 */
#define TG_UART_FCR TG_REG8(TG_UART_BASE + 2u)
#define TG_UART_LCR TG_REG8(TG_UART_BASE + 3u)
#define TG_UART_MCR TG_REG8(TG_UART_BASE + 4u)
#define TG_UART_LSR TG_REG8(TG_UART_BASE + 5u)

#define TG_LSR_DR (1u << 0)   /* a received byte is waiting */
#define TG_LSR_THRE (1u << 5) /* the transmit holding register/FIFO has room */

/* The UART's input clock on virt is 3.6864 MHz; QEMU does not pace bytes by
 * the divisor, but a real-looking setting keeps the line at 115200 8N1. */
#define TG_UART_CLOCK_HZ 3686400u
#define TG_UART_BAUD 115200u

/* A byte leaves the transmit register at once in QEMU; the bound only keeps
 * tg_hal_write() from hanging (tg_hal.h: never block forever). */
#define TG_UART_TX_SPIN 1000000u

#define TG_RV_TICKS_HZ 1000000000u

void tg_hal_init(void)
{
    uint32_t divisor = TG_UART_CLOCK_HZ / (16u * TG_UART_BAUD);

    TG_UART_IER = 0u;
    TG_UART_LCR = 0x80u; /* DLAB: divisor latch */
    TG_UART_DLL = (uint8_t)(divisor & 0xFFu);
    TG_UART_DLM = (uint8_t)(divisor >> 8);
    TG_UART_LCR = 0x03u; /* 8 data bits, no parity, 1 stop bit */
    TG_UART_FCR = 0x07u; /* enable and clear both FIFOs */
    TG_UART_MCR = 0x03u; /* DTR, RTS */
}

int tg_hal_getc(void)
{
    if ((TG_UART_LSR & TG_LSR_DR) == 0u) {
        return -1;
    }
    return (int)TG_UART_RBR;
}

void tg_hal_write(const uint8_t *p, uint32_t n)
{
    uint32_t i, spin;
    if (p == 0) {
        return;
    }
    for (i = 0; i < n; ++i) {
        for (spin = 0; (TG_UART_LSR & TG_LSR_THRE) == 0u; ++spin) {
            if (spin >= TG_UART_TX_SPIN) {
                return;
            }
        }
        TG_UART_THR = p[i];
    }
}

uint32_t tg_hal_ticks(void)
{
    uint32_t n;
    __asm__ volatile("csrr %0, minstret" : "=r"(n));
    return n;
}

uint32_t tg_hal_ticks_hz(void)
{
    return TG_RV_TICKS_HZ;
}
