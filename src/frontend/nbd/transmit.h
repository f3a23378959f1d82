/* NBD transmission phase for one connection: the request loop, request
 * validation, and replies. Requests go to the core (core/submit.h), which
 * decides where they run; this file only parses, validates and encodes.
 *
 * Threads and locks of a connection:
 *   - the connection's reader thread parses requests and submits them; the
 *     core answers RAM hits, and small misses the back end can answer
 *     without blocking, on this thread (req_done): hits' replies are
 *     batched into one writev per burst of input, a miss's batch is sent at
 *     once;
 *   - everything that may block on the back end (or a tier) runs on the
 *     engine's worker pool. A worker never waits for the client: if the send
 *     lock is free it sends what the socket takes at once (non-blocking),
 *     and hands the rest, or the whole reply, to the connection's sender
 *     thread;
 *   - the sender thread sends queued replies, blocking while the client
 *     does not read, for at most the I/O timeout (then the connection is
 *     dropped);
 *   - conn->send_lock serialises replies on the socket; a reply a worker
 *     left half sent (conn->partial) is finished by the next holder before
 *     anything else, so replies never interleave;
 *   - conn->lock + cond guard the request slots, the in-flight count (at
 *     most NBD_MAX_INFLIGHT) and the bytes in flight (the budget); the
 *     reader waits for both before it reads the next request, which pushes
 *     back on a client that pipelines too deep or stops reading replies:
 *     it stalls itself, never the worker pool or other clients;
 *   - the reader waits for a write's payload at most the I/O timeout per
 *     wait (its buffer is the shared pool's); for the next request, as
 *     long as the client likes;
 *   - conn->out_cond wakes the sender for the queue under conn->lock.
 * Replies may go out in any order (NBD allows it). Once a reply is out,
 * complete() gives the request back to the core (vol_io_put); the core's
 * end callback frees the slot. */
#ifndef SHOAL_FRONTEND_NBD_TRANSMIT_H
#define SHOAL_FRONTEND_NBD_TRANSMIT_H

#include "frontend/conn_io.h"
#include "frontend/nbd/handshake.h"

struct volume;

#define NBD_MAX_INFLIGHT 128
/* How long a client may take no reply data, or send no data in the middle
 * of a write's payload, before it is dropped. */
#define NBD_IO_TIMEOUT_MS 60000

struct nbd_transmit_ctx {
    const int *stopping; /* server shutting down; read atomically */
    int io_timeout_ms;   /* 0: NBD_IO_TIMEOUT_MS */
    size_t conn_budget;  /* bytes in flight per connection; 0: a share of the buffer pool */
};

/* Serve requests until the client disconnects, the connection fails, or
 * the server stops. Takes over the caller's reference to v and its
 * volume_conn_attach, and gives both back before it returns, or as soon as
 * v is removed with force (after the requests in flight are answered): the
 * connection then stays, and its requests are answered without the volume
 * (a flush succeeds if the removal settled it, core/vol_fence.h; all else
 * fails with ESHUTDOWN). Returns 0 on a clean end (NBD_CMD_DISC or EOF
 * between requests) or a negative errno. */
int nbd_transmit(const struct nbd_transmit_ctx *ctx, struct conn_io *io, struct volume *v,
                 const struct nbd_handshake_result *hs);

/* errno (positive) -> NBD wire error value. */
uint32_t nbd_errno_to_wire(int err);

#endif
