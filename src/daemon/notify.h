/* Tell a service manager how shoald is doing (the sd_notify protocol):
 * READY=1 once every listener and volume is up, STATUS= lines, STOPPING=1
 * on shutdown, and WATCHDOG=1 pings while shoald waits for signals.
 *
 * notify.c speaks it through libsystemd; notify_none.c, chosen by meson
 * when libsystemd is absent (-Dsystemd=disabled), does nothing but wait.
 * Without $NOTIFY_SOCKET (not started by systemd with Type=notify) every
 * call is a no-op too. Call from the main thread only. */
#ifndef SHOAL_DAEMON_NOTIFY_H
#define SHOAL_DAEMON_NOTIFY_H

#include <signal.h>

/* READY=1 and STATUS= the formatted text. */
void notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 and STATUS= the formatted text (then notify_ready again). */
void notify_reloading(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* STOPPING=1 and STATUS= the formatted text. */
void notify_stopping(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wait for one of the (blocked) signals in sigs, like sigwait(). When the
 * manager asked for a watchdog ($WATCHDOG_USEC), ping it at half that
 * interval meanwhile, so a hung main loop gets shoald restarted. Returns 0
 * with *sig set, or a negative errno. */
int notify_wait_signal(const sigset_t *sigs, int *sig);

#endif
