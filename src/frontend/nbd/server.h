/* NBD front end: plugs the NBD handshake (handshake.c) and transmission
 * phase (transmit.c) into the generic listener (frontend/listener.h) as its
 * per-connection handler, and answers the handshake's questions about
 * exports from the engine's volumes.
 *
 * Threads: the listener's (accept threads, one thread per connection that
 * runs the handshake, then the request loop); a sender thread per
 * connection (transmit.c); back end work runs on the engine's worker pool
 * (core/submit.h).
 *
 * Lock rules: the server is read-only once started; a connection's locks
 * are described in transmit.h. */
#ifndef SHOAL_FRONTEND_NBD_SERVER_H
#define SHOAL_FRONTEND_NBD_SERVER_H

#include "frontend/frontend.h"
#include "frontend/nbd/options.h"

struct nbd_server;

/* cfg->opts is a struct nbd_options (NULL: the defaults of
 * nbd_options_init, without listeners). */
int nbd_server_start(struct engine *e, const struct frontend_config *cfg, struct nbd_server **out);
void nbd_server_stop(struct nbd_server *s);
unsigned nbd_server_connections(struct nbd_server *s);

/* Serve one already-connected fd on the calling thread until it ends (the
 * fuzz harnesses, with one end of a socketpair). Takes ownership of fd. */
void nbd_serve_connection(struct nbd_server *s, int fd);

#endif
