/* Byte transport under a client connection of any front end: a plain
 * socket, or a GnuTLS session once the protocol upgraded it (tls.h). A
 * front end's protocol code only talks to this, so TLS and the fuzz
 * harnesses (a socketpair) plug in underneath. The listener (listener.h)
 * creates one per accepted connection.
 *
 * Time limits: every wait for the peer is bounded. A wait to receive lasts
 * at most timeout_ms (0: no limit, for idle clients in transmission); a
 * wait to send lasts at most send_timeout_ms (0: timeout_ms), so a client
 * that stops reading cannot hold a thread forever; and with deadline_ns set
 * (a login or handshake phase) no wait of either kind goes past it, so a
 * client cannot stretch a phase by trickling bytes or by never reading our
 * replies.
 *
 * Lock rules: reads happen on the connection's reader thread only; writes
 * from any thread must be serialised by the front end (NBD: the
 * connection's send lock, see nbd/transmit.h). */
#ifndef SHOAL_FRONTEND_CONN_IO_H
#define SHOAL_FRONTEND_CONN_IO_H

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
    /* send all of iov (blocking, within the send budget): 0 or -errno
     * (-ETIMEDOUT when the peer did not take the data in time). */
    int (*sendv)(struct conn_io *io, const struct iovec *iov, int iovcnt);
    /* Optional: send what the socket takes now, without waiting: bytes sent
     * (possibly 0 or a part), or -errno. Transports that cannot resume a
     * partial send (TLS records) leave it NULL. */
    ssize_t (*try_sendv)(struct conn_io *io, const struct iovec *iov, int iovcnt);
    /* Optional: recv what is there now, without waiting: >0 bytes, 0 on
     * EOF, -EAGAIN when nothing is, or -errno. Transports without it are
     * not busy polled. */
    ssize_t (*try_recv)(struct conn_io *io, void *buf, size_t len);
    /* bytes already decrypted/buffered and readable without blocking. */
    size_t (*pending)(struct conn_io *io);
    void (*close)(struct conn_io *io);
};

struct conn_io {
    const struct conn_io_ops *ops;
    int fd;
    void *tls;            /* TLS session when ops is the TLS transport */
    int timeout_ms;       /* recv timeout while waiting for data; <=0: none */
    int send_timeout_ms;  /* send timeout while the peer takes no data; <=0: timeout_ms */
    uint64_t deadline_ns; /* CLOCK_MONOTONIC end of the whole phase (handshake); 0: none */
};

/* How long a wait may take, in ms: the per-wait timeout tmo_ms capped by
 * the deadline; 0 = unbounded; -1 = the deadline has passed. */
static inline int conn_io_budget(const struct conn_io *io, int tmo_ms)
{
    int tmo = tmo_ms > 0 ? tmo_ms : 0;
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

/* The budget of the next wait for data to receive. */
static inline int conn_io_wait_budget(const struct conn_io *io)
{
    return conn_io_budget(io, io->timeout_ms);
}

/* The budget of the next wait for the peer to take data we send. */
static inline int conn_io_send_budget(const struct conn_io *io)
{
    return conn_io_budget(io, io->send_timeout_ms > 0 ? io->send_timeout_ms : io->timeout_ms);
}

/* Wait until fd is ready for `events` (POLLIN/POLLOUT) for at most ms
 * milliseconds (0: forever). 0 when ready (or on error/hangup: the next
 * recv/send reports it), -ETIMEDOUT, or -errno. Shared by the transports. */
int conn_io_wait_fd(int fd, short events, int ms);

/* Plain socket transport on fd (the io does not own fd until close()). */
void conn_io_init_plain(struct conn_io *io, int fd);

struct busy_poll;
/* recv as ops->recv, busy polling first (common/busy_poll.h) where the
 * transport can: for a reader about to wait for a client's next request.
 * timed_fd >= 0: io's socket with its receive timeout in SO_RCVTIMEO, so
 * the wait after the poll is one blocking recv on it (-ETIMEDOUT when the
 * timeout passes) instead of the transport's poll + recv. */
ssize_t conn_io_recv_polled(struct conn_io *io, struct busy_poll *bp, void *buf, size_t len,
                            int timed_fd);

/* Read exactly len bytes: 0, -ECONNRESET on EOF (even mid-message),
 * -ETIMEDOUT after timeout_ms without data, or -errno. */
int conn_io_read_full(struct conn_io *io, void *buf, size_t len);
/* Write exactly len bytes. */
int conn_io_write_full(struct conn_io *io, const void *buf, size_t len);
int conn_io_writev_full(struct conn_io *io, const struct iovec *iov, int iovcnt);
/* Drop the first `skip` bytes of iov[0..*iovcnt) in place (to resume a
 * partial send): entries fully covered go, the next one is trimmed. */
void conn_io_iov_advance(struct iovec *iov, int *iovcnt, size_t skip);
/* Read and discard len bytes (used to skip payloads we refuse). */
int conn_io_discard(struct conn_io *io, size_t len);

#endif
