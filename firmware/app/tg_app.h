/*
 * tg_app.h -- the tinygen validation firmware (serial protocol server).
 *
 * main() (or Arduino setup()/loop()) does:
 *     tg_hal_init(); tg_app_init(); for (;;) tg_app_poll();
 */
#ifndef TG_APP_H
#define TG_APP_H

#ifdef __cplusplus
extern "C" {
#endif

/* Initialise the runtime (tg_runtime_init) and the receiver. Call once,
 * after tg_hal_init(). */
void tg_app_init(void);

/* Handle the bytes that have arrived; answers complete frames. Never
 * blocks waiting for input; returns after at most TG_APP_POLL_BUDGET bytes. */
void tg_app_poll(void);

#ifdef __cplusplus
}
#endif

#endif /* TG_APP_H */
