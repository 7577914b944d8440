/*
 * startup_mps2.c -- vector table and reset code for QEMU's MPS2/MPS3 machines
 * (mps2-an385 / mps2-an386 / mps2-an500 / mps2-an505 / mps3-an547: Cortex-M3 /
 * M4 / M7 / M33 / M55; the TrustZone cores stay in the Secure state they reset in).
 *
 * Reset_Handler: enable the FPU (if the build uses one; on the M55 the same
 * CPACR bits enable MVE) before any C code can touch a floating-point
 * register, copy .data from its load image, zero .bss, paint the stack
 * window, run C/C++ static constructors, then call main().
 */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Linker script symbols (mps2.ld). */
extern uint32_t _estack;
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;
extern uint32_t _tg_stack_paint_start;

/* Every word of the stack window that was never used still holds this; the
 * host finds the stack high-water mark as the lowest word that does not
 * (tinygen/device/stack_probe.py). */
#define TG_STACK_PAINT 0x5A5AA5A5u

int main(void);
void __libc_init_array(void);

void Reset_Handler(void);
void tg_mps2_reset_c(void);
void Default_Handler(void);

/* Weak aliases: any handler can be overridden by a strong definition. */
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void TG_IRQ_Handler(void) __attribute__((weak, alias("Default_Handler")));

#ifdef __cplusplus
}
#endif

#define TG_MPS2_NUM_IRQ 32u

typedef void (*tg_vector_t)(void);

/* 16 system exception slots + 32 external interrupts (QEMU's mps2 NVIC has
 * num-irq = 32). Slot 0 is the initial main stack pointer. */
__attribute__((section(".isr_vector"), used))
const tg_vector_t tg_mps2_vectors[16u + TG_MPS2_NUM_IRQ] = {
    (tg_vector_t)(uintptr_t)&_estack,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
    /* external interrupts 0..31 */
    TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler,
    TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler,
    TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler,
    TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler,
    TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler,
    TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler,
    TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler,
    TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler, TG_IRQ_Handler,
};

/*
 * First code after reset. Naked and in assembly so that nothing can use a
 * floating-point register before CPACR grants access to CP10/CP11 (with
 * -mfloat-abi=hard the compiler may use s/d registers anywhere).
 */
__attribute__((naked, noreturn)) void Reset_Handler(void)
{
    __asm__ volatile(
#if defined(__ARM_FP)
        "ldr r0, =0xE000ED88        \n" /* SCB->CPACR */
        "ldr r1, [r0]               \n"
        "orr r1, r1, #(0xF << 20)   \n" /* CP10, CP11: full access */
        "str r1, [r0]               \n"
        "dsb                        \n"
        "isb                        \n"
#endif
        "b tg_mps2_reset_c          \n"
        ".ltorg                     \n");
}

/* Runs with the FPU already enabled; the stack is set by the hardware from
 * vector slot 0. */
__attribute__((noreturn, used)) void tg_mps2_reset_c(void)
{
    const uint32_t *src = &_sidata;
    uint32_t *dst = &_sdata;
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

    __libc_init_array(); /* C++ constructors, __attribute__((constructor)) */
    (void)main();
    for (;;) {
        __asm__ volatile("wfi");
    }
}

void Default_Handler(void)
{
    /* An unexpected exception or fault: stop here (a debugger shows which
     * one in IPSR). The host side notices the board stopped answering. */
    for (;;) {
    }
}
