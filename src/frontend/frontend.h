/* Front ends speak a wire protocol to clients and turn requests into volume
 * ops (core/volume_io.h). One `struct frontend_ops` per protocol; the daemon
 * starts each configured front end with the engine and stops it at exit.
 * NBD is the first; iSCSI and NFS come later behind the same ops. */
#ifndef SHOAL_FRONTEND_FRONTEND_H
#define SHOAL_FRONTEND_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>

struct engine;

/* Settings every front end understands; protocol-specific ones live in the
 * front end's own config struct, pointed to by `proto`. */
struct frontend_config {
    const char *const *listen; /* "ADDR:PORT", "[v6]:PORT" or "unix:PATH" */
    unsigned nlisten;
    unsigned max_connections;
    unsigned workers; /* threads for back end work */
    const void *proto;
    /* Optional: when start fails, one line saying what failed (e.g. which
     * address could not be bound) goes here instead of to the log, so the
     * daemon can exit with a single message. */
    char *err;
    size_t errlen;
};

struct frontend_ops {
    const char *name;
    int (*start)(struct engine *e, const struct frontend_config *cfg, void **state);
    /* Stop accepting, end connections (in-flight requests finish), free. */
    void (*stop)(void *state);
    /* Live connection count, for stats. */
    unsigned (*connections)(void *state);
};

extern const struct frontend_ops frontend_nbd_ops;

#endif
