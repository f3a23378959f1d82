/* No service manager support (built without libsystemd): readiness is
 * the pipe a daemonizing shoald writes, nothing more. See notify.h. */
#include "daemon/notify.h"

void notify_ready(const char *fmt, ...)
{
    (void)fmt;
}

void notify_reloading(const char *fmt, ...)
{
    (void)fmt;
}

void notify_stopping(const char *fmt, ...)
{
    (void)fmt;
}

int notify_wait_signal(const sigset_t *sigs, int *sig)
{
    int r = sigwait(sigs, sig);
    return r ? -r : 0;
}
