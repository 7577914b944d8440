/*
 * main.c -- the validation firmware as a Linux program (tests, debugging).
 *
 *     cc -std=c99 -Ifirmware/hal -Ifirmware/app -I<dir with tg_protocol.h and
 *        tg_model_info.h> firmware/app/tg_app.c firmware/hal/host/tg_hal_host.c \
 *        firmware/hal/host/main.c runtime.c
 *     ./a.out [--exit-on-stdin-eof]
 *
 * Prints "TG_PTY /dev/pts/N" and serves the protocol on that pty until
 * SIGTERM/SIGINT (or end of stdin with --exit-on-stdin-eof); exits 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <string.h>

#include "tg_hal.h"
#include "tg_app.h"

int tg_hal_host_idle(int timeout_ms, int watch_stdin);

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    int watch_stdin = argc > 1 && strcmp(argv[1], "--exit-on-stdin-eof") == 0;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    tg_hal_init();
    tg_app_init();
    while (!stop_requested) {
        if (tg_hal_host_idle(20, watch_stdin)) {
            break;
        }
        tg_app_poll();
    }
    return 0;
}
