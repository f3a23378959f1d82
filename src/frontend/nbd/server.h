/* NBD server: listeners, accept, one thread per connection (handshake, then
 * the request loop in transmit.c), and the shared worker pool that runs
 * everything that may block on a back end.
 *
 * Threads: one accept thread per listener; one reader thread per client
 * connection; `workers` worker threads shared by all connections.
 *
 * Lock rules: srv->lock guards the connection list and counters. A
 * connection's own locks are described in transmit.h. */
#ifndef SHOAL_FRONTEND_NBD_SERVER_H
#define SHOAL_FRONTEND_NBD_SERVER_H

#include "frontend/frontend.h"
#include "frontend/nbd/handshake.h"

/* NBD-specific settings (frontend_config.proto). */
struct nbd_config {
    int handshake_timeout_ms; /* default 10 s */
    bool readonly;            /* export every volume read-only */
    enum nbd_tls_mode tls;
    const char *tls_certificates; /* directory with ca-cert.pem, server-cert.pem, server-key.pem */
    const char *tls_psk;          /* PSK file (username:hexkey lines) */
    bool tls_verify_peer;         /* x509: require a client certificate signed by ca-cert.pem */
    const char *const *allow;     /* client addresses allowed (see allow.h; none: all) */
    unsigned nallow;
};

struct nbd_server;

int nbd_server_start(struct engine *e, const struct frontend_config *cfg, struct nbd_server **out);
void nbd_server_stop(struct nbd_server *s);
unsigned nbd_server_connections(struct nbd_server *s);

/* Split a TCP listen address "host:port", "[v6]:port", ":port" or "port"
 * (default port 10809). 0 or -EINVAL. */
int nbd_parse_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen);

/* Serve one already-accepted connection on the calling thread until it ends
 * (used by the accept loop's threads, and by the fuzz harness with one end
 * of a socketpair). Takes ownership of fd. */
void nbd_serve_connection(struct nbd_server *s, int fd);

#endif
