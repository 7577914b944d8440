/*
 * tg_hal.h -- the board interface every tinygen firmware is written against.
 *
 * One implementation per board family lives in firmware/hal/<hal>/
 * (arduino | mps2). The validation app (tg_app.c) only ever talks to the
 * board through these five functions.
 */
#ifndef TG_HAL_H
#define TG_HAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bring up the serial port and the tick counter. Call once, first. */
void tg_hal_init(void);

/* One received byte (0..255), or -1 when no byte is waiting. Never blocks. */
int tg_hal_getc(void);

/* Send n bytes from p; returns once all are queued, or drops the rest when the
 * port takes nothing for a bounded time (no host reading): never blocks forever. */
void tg_hal_write(const uint8_t *p, uint32_t n);

/* Free-running tick counter; wraps modulo 2^32. Subtract two readings
 * (unsigned) to get an elapsed count. */
uint32_t tg_hal_ticks(void);

/* Rate of tg_hal_ticks() in ticks per second. */
uint32_t tg_hal_ticks_hz(void);

#ifdef __cplusplus
}
#endif

#endif /* TG_HAL_H */
