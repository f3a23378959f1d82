/* NBD transmission phase for one connection: the request loop, request
 * validation, the RAM hit fast path, hand-off to workers, and replies.
 *
 * Threads and locks of a connection:
 *   - the connection's reader thread parses requests and answers RAM hits
 *     itself, batching their replies into one writev per burst of input;
 *   - everything that may touch the back end runs on the shared worker
 *     pool; a worker sends its own reply;
 *   - conn->send_lock serialises whole replies on the socket (a reply is
 *     one writev under the lock, so replies never interleave);
 *   - conn->lock + cond guard the request slots and the in-flight count
 *     (at most NBD_MAX_INFLIGHT per connection; the reader waits for a free
 *     slot, which pushes back on a client that pipelines too deep).
 * Replies may go out in any order (NBD allows it); a request's cache update
 * (vol_req_finish) runs after its reply is on the wire. */
#ifndef SHOAL_FRONTEND_NBD_TRANSMIT_H
#define SHOAL_FRONTEND_NBD_TRANSMIT_H

#include "frontend/nbd/conn_io.h"
#include "frontend/nbd/handshake.h"

struct volume;
struct workq;

#define NBD_MAX_INFLIGHT 128

struct nbd_transmit_ctx {
    struct workq *wq;
    const int *stopping; /* server shutting down; read atomically */
};

/* Serve requests until the client disconnects, the connection fails, or
 * the server stops. Waits for this connection's in-flight requests before
 * returning. Returns 0 on a clean end (NBD_CMD_DISC or EOF between
 * requests) or a negative errno. */
int nbd_transmit(const struct nbd_transmit_ctx *ctx, struct conn_io *io, struct volume *v,
                 const struct nbd_handshake_result *hs);

/* errno (positive) -> NBD wire error value. */
uint32_t nbd_errno_to_wire(int err);

#endif
