/* NBD handshake (fixed newstyle option haggling): everything from the
 * server's greeting until the connection enters transmission or ends.
 *
 * The handshake knows nothing about volumes: it asks the daemon for exports
 * through `struct nbd_exports` callbacks, and reports the negotiated result.
 * It runs on the connection's own thread with blocking I/O through conn_io,
 * bounded by the io's timeout and deadline. Memory is one NBD_MAX_OPTION_LEN
 * buffer for the whole handshake: a longer option is read and thrown away
 * (up to 1 MiB, answered NBD_REP_ERR_TOO_BIG) or ends the connection. */
#ifndef SHOAL_FRONTEND_NBD_HANDSHAKE_H
#define SHOAL_FRONTEND_NBD_HANDSHAKE_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/conn_io.h"
#include "frontend/nbd/proto.h"

/* What the server tells a client about one export. */
struct nbd_export_info {
    uint64_t size;
    uint16_t tflags;    /* transmission flags, without NBD_FLAG_SEND_DF (added when
                           structured replies are negotiated) */
    uint32_t min_block; /* block size constraints */
    uint32_t pref_block;
    uint32_t max_block;
    const char *description; /* may be NULL */
};

struct nbd_exports {
    void *opaque;
    /* Look an export up by name ("" = the default export). On success fill
     * *info and, if handle != NULL, return a reference in *handle that the
     * caller later releases with put(). Returns 0 or -ENOENT. */
    int (*get)(void *opaque, const char *name, struct nbd_export_info *info, void **handle);
    void (*put)(void *opaque, void *handle);
    /* Call emit(name, description) for every export; stop if emit returns
     * non-zero and return that value. */
    int (*list)(void *opaque, int (*emit)(void *ctx, const char *name, const char *desc),
                void *ctx);
};

enum nbd_tls_mode {
    NBD_TLS_OFF = 0, /* STARTTLS refused with NBD_REP_ERR_POLICY */
    NBD_TLS_ON,      /* offered, optional */
    NBD_TLS_REQUIRE, /* every option but STARTTLS/ABORT gets NBD_REP_ERR_TLS_REQD
                        (EXPORT_NAME, which has no error reply, closes) */
};

struct nbd_handshake_cfg {
    enum nbd_tls_mode tls;
    /* Upgrade io to TLS after NBD_REP_ACK to STARTTLS was sent. 0 or -errno
     * (the connection is then closed). NULL when tls == NBD_TLS_OFF. */
    int (*starttls)(struct conn_io *io, void *opaque);
    void *starttls_opaque;
    /* Refuse new options with NBD_REP_ERR_SHUTDOWN (checked per option;
     * EXPORT_NAME closes instead). */
    const int *shutting_down; /* read atomically */
};

struct nbd_handshake_result {
    void *handle; /* export reference from exports->get() */
    char name[NBD_MAX_NAME_BUF];
    struct nbd_export_info info;
    uint16_t tflags;      /* as sent to the client (DF included if structured) */
    bool structured;      /* NBD_OPT_STRUCTURED_REPLY acknowledged */
    bool base_allocation; /* base:allocation selected for this export */
    bool no_zeroes;
    bool tls_active;
};

/* Run the handshake. Returns:
 *   0              transmission begins; res filled, res->handle referenced
 *   -ECONNABORTED  the client ended the session politely (NBD_OPT_ABORT, or
 *                  EOF before its flags or between options)
 *   other -errno   protocol violation or I/O error; close the connection */
int nbd_handshake(struct conn_io *io, const struct nbd_exports *exports,
                  const struct nbd_handshake_cfg *cfg, struct nbd_handshake_result *res);

#endif
