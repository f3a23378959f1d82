/* Byte transport under an NBD connection: a plain socket now, a GnuTLS
 * session after STARTTLS. The handshake and the transmission code only talk
 * to this, so TLS and the fuzz harness (a socketpair) plug in underneath.
 *
 * Lock rules: reads happen on the connection's reader thread only; writes
 * from any thread must hold the connection's send lock (see transmit.h). */
#ifndef SHOAL_FRONTEND_NBD_CONN_IO_H
#define SHOAL_FRONTEND_NBD_CONN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/util.h"

struct conn_io;

struct conn_io_ops {
    const char *name; /* "plain", "tls" */
    /* recv up to len bytes: >0 bytes, 0 on orderly EOF, -errno on error. */
    ssize_t (*recv)(struct conn_io *io, void *buf, size_t len);
    /* send all of iov (blocking): 0 or -errno. */
    int (*sendv)(struct conn_io *io, const struct iovec *iov, int iovcnt);
    /* bytes already decrypted/buffered and readable without blocking. */
    size_t (*pending)(struct conn_io *io);
    void (*close)(struct conn_io *io);
};

struct conn_io {
    const struct conn_io_ops *ops;
    int fd;
    void *tls;            /* TLS session when ops is the TLS transport */
    int timeout_ms;       /* recv timeout while waiting for data; <=0: none */
    uint64_t deadline_ns; /* CLOCK_MONOTONIC end of the whole phase (handshake); 0: none */
};

/* How long the next wait for data may take, in ms: the per-wait timeout
 * capped by the deadline; 0 = unbounded; -1 = the deadline has passed. */
static inline int conn_io_wait_budget(const struct conn_io *io)
{
    int tmo = io->timeout_ms > 0 ? io->timeout_ms : 0;
    if (!io->deadline_ns)
        return tmo;
    uint64_t now = now_ns();
    if (now >= io->deadline_ns)
        return -1;
    uint64_t left = (io->deadline_ns - now + 999999u) / 1000000u;
    if (left > INT32_MAX)
        left = INT32_MAX;
    return (tmo == 0 || (int)left < tmo) ? (int)left : tmo;
}

/* Plain socket transport on fd (the io does not own fd until close()). */
void conn_io_init_plain(struct conn_io *io, int fd);

/* Read exactly len bytes: 0, -ECONNRESET on EOF (even mid-message),
 * -ETIMEDOUT after timeout_ms without data, or -errno. */
int conn_io_read_full(struct conn_io *io, void *buf, size_t len);
/* Write exactly len bytes. */
int conn_io_write_full(struct conn_io *io, const void *buf, size_t len);
int conn_io_writev_full(struct conn_io *io, const struct iovec *iov, int iovcnt);
/* Read and discard len bytes (used to skip payloads we refuse). */
int conn_io_discard(struct conn_io *io, size_t len);

#endif
