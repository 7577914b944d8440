/*
 * tg_hal_mps2.c -- tg_hal.h for QEMU's MPS2/MPS3 machines: mps2-an385/an386/
 * an500 (Cortex-M3/M4/M7), mps2-an505 (Cortex-M33, -DTG_MPS2_AN505) and
 * mps3-an547 (Cortex-M55, -DTG_MPS3_AN547), and microbit (nRF51, Cortex-M0,
 * -DTG_NRF51: its UART is Nordic's, not the CMSDK one, see below); the board manifest
 * passes the define.
 *
 * Serial: CMSDK APB UART0 (QEMU connects it to the first -serial device) at
 *         0x40004000; on the TrustZone boards at its Secure alias, 0x50200000
 *         (AN505) or 0x59303000 (AN547), since the firmware runs Secure.
 *         Polled, no interrupts.
 * Ticks:  the Cortex-M SysTick timer clocked from the processor clock
 *         (CLKSOURCE = 1). On QEMU's boards that clock is the board's SYSCLK:
 *         25 MHz (AN385/386/500), 20 MHz (AN505), 32 MHz (AN547), which
 *         tg_hal_ticks_hz() returns. SysTick is a 24-bit
 *         down counter; SysTick_Handler counts wraps to extend it to 32 bits.
 *         (QEMU's mps2 has no DWT cycle counter: do not read DWT->CYCCNT.)
 *
 * Ticks -> instructions: run QEMU with "-icount shift=0". Then every guest
 * instruction advances virtual time by exactly 2^0 = 1 ns, and one tick is
 * 1e9 / SYSCLK ns, so
 *
 *     instructions = ticks * 40       (25 MHz; 50 at 20 MHz, 31.25 at 32 MHz)
 *
 * and a tick count is a deterministic function of the code executed, with
 * a resolution of one tick. (Without -icount, ticks follow the host's
 * wall clock and mean nothing about the guest's work.)
 *
 * Determinism across boots: bytes arrive on the UART at host-chosen moments,
 * so the phase of the 40-instruction tick grid relative to the instruction
 * stream would differ from run to run, and a measurement could come out one
 * tick different. To remove that, every time tg_hal_getc() returns a byte
 * and every time tg_hal_write() returns, the HAL re-starts SysTick's current
 * period at that instruction ("re-anchors" the grid) and corrects its
 * software count so that tg_hal_ticks() stays monotonic (it may lose less
 * than one tick per re-anchor; each re-anchor busy-waits for one tick, about
 * 40 instructions). Code that runs between such a call and the next one
 * therefore reads the same tick values on every boot.
 */
#include <stdint.h>

#include "tg_hal.h"

/* ---- registers ---------------------------------------------------------- */

#define TG_REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* CMSDK APB UART0 (ARM DDI 0479, CMSDK technical reference) */
#if defined(TG_MPS2_AN505)
#define TG_UART0_BASE 0x50200000u
#elif defined(TG_MPS3_AN547)
#define TG_UART0_BASE 0x59303000u
#else
#define TG_UART0_BASE 0x40004000u
#endif
#define TG_UART_DATA TG_REG32(TG_UART0_BASE + 0x00u)
#define TG_UART_STATE TG_REG32(TG_UART0_BASE + 0x04u)
#define TG_UART_CTRL TG_REG32(TG_UART0_BASE + 0x08u)
#define TG_UART_INTSTATUS TG_REG32(TG_UART0_BASE + 0x0Cu) /* write: clear */
#define TG_UART_BAUDDIV TG_REG32(TG_UART0_BASE + 0x10u)

#define TG_UART_STATE_TXFULL (1u << 0)
#define TG_UART_STATE_RXFULL (1u << 1)
#define TG_UART_STATE_TXOVR (1u << 2)
#define TG_UART_STATE_RXOVR (1u << 3)
#define TG_UART_CTRL_TXEN (1u << 0)
#define TG_UART_CTRL_RXEN (1u << 1)

/* SysTick (ARMv7-M ARM, B3.3) */
#define TG_SYST_CSR TG_REG32(0xE000E010u)
#define TG_SYST_RVR TG_REG32(0xE000E014u)
#define TG_SYST_CVR TG_REG32(0xE000E018u)
#define TG_SYST_CSR_ENABLE (1u << 0)
#define TG_SYST_CSR_TICKINT (1u << 1)
#define TG_SYST_CSR_CLKSOURCE (1u << 2)

/* SCB */
#define TG_SCB_ICSR TG_REG32(0xE000ED04u)
#define TG_SCB_ICSR_PENDSTSET (1u << 26)
#define TG_SCB_ICSR_PENDSTCLR (1u << 25)
#define TG_SCB_SHPR3 TG_REG32(0xE000ED20u)

/* ---- constants ---------------------------------------------------------- */

/* QEMU's SYSCLK per board (hw/arm/mps2.c, hw/arm/mps2-tz.c); checked under
 * -icount shift=0 by timing a loop of known length. */
#if defined(TG_NRF51)
#define TG_MPS2_SYSCLK_HZ 16000000u
#elif defined(TG_MPS2_AN505)
#define TG_MPS2_SYSCLK_HZ 20000000u
#elif defined(TG_MPS3_AN547)
#define TG_MPS2_SYSCLK_HZ 32000000u
#else
#define TG_MPS2_SYSCLK_HZ 25000000u
#endif
#define TG_MPS2_BAUD 115200u

/* Full 24-bit period: one wrap every 2^24 ticks (0.67 s at 25 MHz). */
#define TG_SYST_RELOAD 0x00FFFFFFu
#define TG_SYST_PERIOD_SHIFT 24u

/* ---- tick counter ------------------------------------------------------- */

/* Completed SysTick periods; written by SysTick_Handler only. */
static volatile uint32_t tg_systick_wraps;
/* Correction added by re-anchoring; written with interrupts masked. */
static volatile uint32_t tg_systick_base;

void SysTick_Handler(void);
void SysTick_Handler(void)
{
    tg_systick_wraps = tg_systick_wraps + 1u;
}

static inline uint32_t tg_irq_save(void)
{
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
    return primask;
}

static inline void tg_irq_restore(uint32_t primask)
{
    __asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
}

/*
 * SysTick counts CVR = RELOAD, RELOAD-1, ..., 1, 0, RELOAD, ... (RELOAD + 1
 * ticks a period) and pends its exception on the 1 -> 0 step. So a period
 * "starts" at CVR == 0, and the ticks elapsed in it are 0 at CVR == 0 and
 * RELOAD + 1 - CVR otherwise.
 */
static inline uint32_t tg_systick_elapsed(uint32_t cvr)
{
    return cvr == 0u ? 0u : (TG_SYST_RELOAD + 1u) - cvr;
}

uint32_t tg_hal_ticks(void)
{
    uint32_t wraps, base, cvr, pend1, pend2;
    /* Retry if the handler ran in between; with interrupts masked by the
     * caller, a wrap that is pended but not yet counted is added here. */
    do {
        wraps = tg_systick_wraps;
        base = tg_systick_base;
        pend1 = TG_SCB_ICSR & TG_SCB_ICSR_PENDSTSET;
        cvr = TG_SYST_CVR;
        pend2 = TG_SCB_ICSR & TG_SCB_ICSR_PENDSTSET;
    } while (wraps != tg_systick_wraps || base != tg_systick_base || pend1 != pend2);
    if (pend1) {
        wraps += 1u;
    }
    return base + (wraps << TG_SYST_PERIOD_SHIFT) + tg_systick_elapsed(cvr);
}

uint32_t tg_hal_ticks_hz(void)
{
    return TG_MPS2_SYSCLK_HZ;
}

/*
 * Restart the current SysTick period at this instruction (see the header
 * comment). Writing SYST_CVR clears it to 0 without pending the exception;
 * the timer reloads RELOAD one tick later. We wait for that reload, then set
 * tg_systick_base so that tg_hal_ticks() reads exactly one more than just
 * before the write.
 */
static void tg_ticks_reanchor(void)
{
    uint32_t primask = tg_irq_save();
    uint32_t cvr, before;

    for (;;) {
        if (TG_SCB_ICSR & TG_SCB_ICSR_PENDSTSET) {
            /* count a wrap that happened while masked, by hand */
            TG_SCB_ICSR = TG_SCB_ICSR_PENDSTCLR;
            tg_systick_wraps = tg_systick_wraps + 1u;
        }
        cvr = TG_SYST_CVR;
        if ((TG_SCB_ICSR & TG_SCB_ICSR_PENDSTSET) == 0u) {
            break;
        }
    }
    before = tg_systick_base + (tg_systick_wraps << TG_SYST_PERIOD_SHIFT) +
             tg_systick_elapsed(cvr);

    TG_SYST_CVR = 0u;
    while (TG_SYST_CVR == 0u) {
    }
    /* now tg_systick_elapsed(CVR) == 1 */
    tg_systick_base = before - (tg_systick_wraps << TG_SYST_PERIOD_SHIFT);
    tg_irq_restore(primask);
}

/* ---- serial ------------------------------------------------------------- */

#if defined(TG_NRF51)
/* nRF51 UART0 (nRF51 Series Reference Manual, UART): tasks, events, RXD/TXD. QEMU's model
 * keeps a small RX FIFO and raises EVENTS_RXDRDY again while bytes remain. */
#define TG_NRF_UART 0x40002000u
#define TG_NRF_STARTRX TG_REG32(TG_NRF_UART + 0x000u)
#define TG_NRF_STARTTX TG_REG32(TG_NRF_UART + 0x008u)
#define TG_NRF_RXDRDY TG_REG32(TG_NRF_UART + 0x108u)
#define TG_NRF_TXDRDY TG_REG32(TG_NRF_UART + 0x11Cu)
#define TG_NRF_ENABLE TG_REG32(TG_NRF_UART + 0x500u)
#define TG_NRF_RXD TG_REG32(TG_NRF_UART + 0x518u)
#define TG_NRF_TXD TG_REG32(TG_NRF_UART + 0x51Cu)
#define TG_NRF_BAUDRATE TG_REG32(TG_NRF_UART + 0x524u)

static void tg_uart_init(void)
{
    TG_NRF_ENABLE = 4u;             /* UART */
    TG_NRF_BAUDRATE = 0x01D7E000u;  /* 115200 (QEMU does not pace the bytes) */
    TG_NRF_RXDRDY = 0u;
    TG_NRF_STARTTX = 1u;
    TG_NRF_STARTRX = 1u;
}

static int tg_uart_getc(void)
{
    if (TG_NRF_RXDRDY == 0u) {
        return -1;
    }
    TG_NRF_RXDRDY = 0u;
    return (int)(TG_NRF_RXD & 0xFFu);
}

static void tg_uart_putc(uint8_t c)
{
    TG_NRF_TXDRDY = 0u;
    TG_NRF_TXD = c;
    while (TG_NRF_TXDRDY == 0u) {
    }
}
#else
static void tg_uart_init(void)
{
    /* UART0: 115200 8N1 nominal (QEMU does not pace the bytes). */
    TG_UART_CTRL = 0u;
    TG_UART_BAUDDIV = TG_MPS2_SYSCLK_HZ / TG_MPS2_BAUD; /* 173..277 (>= 16) */
    TG_UART_STATE = TG_UART_STATE_TXOVR | TG_UART_STATE_RXOVR; /* clear */
    TG_UART_INTSTATUS = 0xFu;
    TG_UART_CTRL = TG_UART_CTRL_TXEN | TG_UART_CTRL_RXEN;
}

static int tg_uart_getc(void)
{
    if ((TG_UART_STATE & TG_UART_STATE_RXFULL) == 0u) {
        return -1;
    }
    return (int)(TG_UART_DATA & 0xFFu);
}

static void tg_uart_putc(uint8_t c)
{
    while (TG_UART_STATE & TG_UART_STATE_TXFULL) {
    }
    TG_UART_DATA = c;
}
#endif

void tg_hal_init(void)
{
    tg_uart_init();

    /* SysTick: processor clock, full period, wrap interrupt at the lowest
     * priority. */
    TG_SYST_CSR = 0u;
    tg_systick_wraps = 0u;
    tg_systick_base = 0u;
    TG_SCB_SHPR3 = (TG_SCB_SHPR3 & 0x00FFFFFFu) | 0xFF000000u;
    TG_SYST_RVR = TG_SYST_RELOAD;
    TG_SYST_CVR = 0u;
    TG_SCB_ICSR = TG_SCB_ICSR_PENDSTCLR;
    TG_SYST_CSR = TG_SYST_CSR_CLKSOURCE | TG_SYST_CSR_TICKINT | TG_SYST_CSR_ENABLE;
    /* The first reload happens one tick after enabling; start from there. */
    while (TG_SYST_CVR == 0u) {
    }
    __asm__ volatile("cpsie i" ::: "memory");
}

int tg_hal_getc(void)
{
    int c = tg_uart_getc();
    if (c >= 0) {
        tg_ticks_reanchor();
    }
    return c;
}

void tg_hal_write(const uint8_t *p, uint32_t n)
{
    uint32_t i;
    if (p == 0) {
        return;
    }
    for (i = 0; i < n; ++i) {
        tg_uart_putc(p[i]);
    }
    tg_ticks_reanchor();
}
