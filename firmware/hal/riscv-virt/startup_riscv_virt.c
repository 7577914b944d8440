/*
 * startup_riscv_virt.c -- reset code for QEMU's RISC-V virt machine (RV32,
 * machine mode, no firmware: -bios none).
 *
 * QEMU's reset stub jumps to 0x80000000, where riscv_virt.ld puts _start.
 * _start sets gp and sp before any C runs (compiled code may address small
 * data through gp, and there is no stack yet), points mtvec at a trap that
 * stops, and parks every hart but hart 0 (virt may be started with -smp N).
 * tg_rv_reset_c then copies .data, zeroes .bss, runs constructors and main().
 */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;
extern uint32_t _tg_stack_paint_start;

/* Every word of the stack window never used keeps this value; `tinygen bench` reads the
 * window through QEMU's monitor and takes the lowest changed word as the high-water mark
 * (tinygen/device/guest_memory.py STACK_PAINT). */
#define TG_STACK_PAINT 0x5A5AA5A5u
typedef void (*tg_rv_ctor_t)(void);
extern const tg_rv_ctor_t __init_array_start[], __init_array_end[];

int main(void);
void _start(void);
void tg_rv_trap(void);
void tg_rv_reset_c(void);

#ifdef __cplusplus
}
#endif

__attribute__((naked, noreturn, section(".text.tg_start"))) void _start(void)
{
    __asm__ volatile(
        ".option push           \n"
        ".option norelax        \n" /* gp itself must not be addressed through gp */
        "la gp, __global_pointer$\n"
        ".option pop            \n"
        "la sp, _estack         \n"
        "la t0, tg_rv_trap      \n"
        "csrw mtvec, t0         \n"
        "csrr t0, mhartid       \n"
        "bnez t0, 1f            \n"
        "j tg_rv_reset_c        \n"
        "1: wfi                 \n"
        "j 1b                   \n");
}

/* An unexpected trap (illegal instruction, misaligned or bad access, an
 * ecall/ebreak): stop here; mcause and mepc say which and where. The host
 * notices the board stopped answering. mtvec's direct mode needs 4-byte
 * alignment, which -march=...c does not give a function by itself. */
__attribute__((naked, noreturn, aligned(4))) void tg_rv_trap(void)
{
    __asm__ volatile("1: j 1b");
}

__attribute__((noreturn, used)) void tg_rv_reset_c(void)
{
    const uint32_t *src = &_sidata;
    uint32_t *dst = &_sdata;
    const tg_rv_ctor_t *ctor;

    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; ++dst) {
        *dst = 0u;
    }
    {
        /* Up to a little below this frame: what lies above is in use now. */
        uint32_t *top = (uint32_t *)__builtin_frame_address(0) - 16;
        for (dst = &_tg_stack_paint_start; dst < top; ++dst) {
            *dst = TG_STACK_PAINT;
        }
    }
    for (ctor = __init_array_start; ctor < __init_array_end; ++ctor) {
        (*ctor)();
    }
    (void)main();
    for (;;) {
        __asm__ volatile("wfi");
    }
}
