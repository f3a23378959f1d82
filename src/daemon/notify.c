/* The sd_notify protocol through libsystemd; see notify.h. */
#include "daemon/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "common/log.h"

/* "STATE\nSTATUS=text": one datagram, so the manager sees both at once. */
static void send_state(const char *state, const char *fmt, va_list ap)
{
    char status[512];
    vsnprintf(status, sizeof status, fmt, ap);
    int r = sd_notifyf(0, "%s\nSTATUS=%s", state, status);
    if (r < 0)
        log_warn(main, "cannot notify the service manager (%s): %s", state, strerror(-r));
}

void notify_ready(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_state("READY=1", fmt, ap);
    va_end(ap);
}

void notify_reloading(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_state("RELOADING=1", fmt, ap);
    va_end(ap);
}

void notify_stopping(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_state("STOPPING=1", fmt, ap);
    va_end(ap);
}

int notify_wait_signal(const sigset_t *sigs, int *sig)
{
    uint64_t usec = 0;
    /* > 0 only when $WATCHDOG_USEC is set (and $WATCHDOG_PID, if set, is
     * us); asked each time, as it is cheap and the loop is idle. */
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) {
        int r = sigwait(sigs, sig);
        return r ? -r : 0;
    }
    /* Half the interval, as sd_watchdog_enabled(3) advises: a ping that
     * is late by a scheduling hiccup still arrives in time. */
    uint64_t half = usec / 2;
    struct timespec ts = {.tv_sec = (time_t)(half / 1000000),
                          .tv_nsec = (long)(half % 1000000) * 1000};
    for (;;) {
        sd_notify(0, "WATCHDOG=1");
        int s = sigtimedwait(sigs, NULL, &ts);
        if (s > 0) {
            *sig = s;
            return 0;
        }
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
    }
}
