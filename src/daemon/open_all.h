/* Start-up volumes opened side by side: each back end reached through a
 * URI (an NBD upstream) is opened on a worker thread (at most
 * OPEN_ALL_THREADS at a time), so N hung upstreams cost one connect
 * timeout rather than N; files and devices open meanwhile, in order, on
 * the caller's thread (their image locks then refuse the same volume
 * every time); then the volumes are registered
 * one by one in the given order, so the first is still the default export
 * and the engine's log lines and listings keep the config's order. */
#ifndef SHOAL_DAEMON_OPEN_ALL_H
#define SHOAL_DAEMON_OPEN_ALL_H

#include <stddef.h>

#include "core/engine.h"

#define OPEN_ALL_THREADS 16

struct open_job {
    struct volume_config cfg; /* in */
    int err;                  /* out: 0 or the -errno of the open or registration */
    char why[1024];           /* out: the back end's words (backend_open_error) */
};

/* Open and register every job. 0, or the error of the first job (in
 * order) that failed, *failed its index: then no volume of the list is
 * registered and every back end opened is closed again. */
int open_all(struct engine *e, struct open_job *jobs, size_t n, size_t *failed);

#endif
