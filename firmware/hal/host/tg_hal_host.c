/*
 * tg_hal_host.c -- tg_hal.h on Linux, for tests: the firmware compiled
 * natively talks over a pseudo-terminal it opens itself.
 *
 * tg_hal_init() opens a pty pair, puts it in raw mode, keeps the slave side
 * open (so the link survives the host closing and reopening the port, like a
 * UART) and prints one line on stdout:
 *
 *     TG_PTY /dev/pts/N
 *
 * The host then opens /dev/pts/N like any serial port (pyserial). Ticks are
 * microseconds of CLOCK_MONOTONIC. Writes that cannot be delivered within a
 * second (nobody reading) are dropped, as on a UART.
 *
 * Host-only extras (used by main.c): tg_hal_host_idle(), tg_hal_host_path().
 */
#define _XOPEN_SOURCE 600

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "tg_hal.h"

int tg_hal_host_idle(int timeout_ms, int watch_stdin);
const char *tg_hal_host_path(void);

static int master_fd = -1;
static int slave_fd = -1;
static char slave_path[128];
static uint8_t in_buf[4096];
static size_t in_len;
static size_t in_pos;

static void die(const char *what)
{
    fprintf(stderr, "tg_hal_host: %s: %s\n", what, strerror(errno));
    exit(2);
}

void tg_hal_init(void)
{
    struct termios t;
    const char *name;
    int flags;

    master_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_fd < 0) {
        die("posix_openpt");
    }
    if (grantpt(master_fd) != 0 || unlockpt(master_fd) != 0) {
        die("grantpt/unlockpt");
    }
    name = ptsname(master_fd);
    if (name == NULL || strlen(name) >= sizeof slave_path) {
        die("ptsname");
    }
    strcpy(slave_path, name);
    slave_fd = open(slave_path, O_RDWR | O_NOCTTY);
    if (slave_fd < 0) {
        die("open pty slave");
    }
    if (tcgetattr(slave_fd, &t) != 0) {
        die("tcgetattr");
    }
    /* raw mode (what cfmakeraw does, spelled out in POSIX terms) */
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    t.c_cflag |= CS8 | CREAD | CLOCAL;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(slave_fd, TCSANOW, &t) != 0) {
        die("tcsetattr");
    }
    flags = fcntl(master_fd, F_GETFL);
    if (flags < 0 || fcntl(master_fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        die("fcntl O_NONBLOCK");
    }
    printf("TG_PTY %s\n", slave_path);
    fflush(stdout);
}

const char *tg_hal_host_path(void)
{
    return slave_path;
}

static void fill(void)
{
    ssize_t n;
    if (in_pos < in_len) {
        return;
    }
    in_pos = in_len = 0;
    n = read(master_fd, in_buf, sizeof in_buf);
    if (n > 0) {
        in_len = (size_t)n;
    }
}

int tg_hal_getc(void)
{
    fill();
    if (in_pos >= in_len) {
        return -1;
    }
    return in_buf[in_pos++];
}

void tg_hal_write(const uint8_t *p, uint32_t n)
{
    while (n > 0u) {
        ssize_t w = write(master_fd, p, n);
        if (w > 0) {
            p += w;
            n -= (uint32_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf;
            pf.fd = master_fd;
            pf.events = POLLOUT;
            pf.revents = 0;
            if (poll(&pf, 1, 1000) > 0) {
                continue;
            }
        }
        return; /* nobody is reading: drop, like a UART */
    }
}

uint32_t tg_hal_ticks(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

uint32_t tg_hal_ticks_hz(void)
{
    return 1000000u;
}

/* Wait up to timeout_ms for input (returns at once if bytes are buffered).
 * Returns 1 when stdin is watched and has reached end of file, else 0. */
int tg_hal_host_idle(int timeout_ms, int watch_stdin)
{
    struct pollfd pf[2];
    int n = 1;
    if (in_pos < in_len) {
        return 0;
    }
    pf[0].fd = master_fd;
    pf[0].events = POLLIN;
    pf[0].revents = 0;
    if (watch_stdin) {
        pf[1].fd = STDIN_FILENO;
        pf[1].events = POLLIN;
        pf[1].revents = 0;
        n = 2;
    }
    if (poll(pf, (nfds_t)n, timeout_ms) > 0 && watch_stdin && pf[1].revents != 0) {
        char c[64];
        ssize_t r = read(STDIN_FILENO, c, sizeof c);
        if (r <= 0) {
            return 1;
        }
    }
    return 0;
}
