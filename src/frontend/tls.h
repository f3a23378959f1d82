/* TLS transport for any front end: run a GnuTLS server handshake on a
 * connection and switch its conn_io to the TLS transport (ops->name "tls"),
 * which the protocol then uses unchanged for the rest of the connection.
 * When to start it is the protocol's business (NBD: right after it
 * acknowledged STARTTLS, see nbd/server.c); the credentials come from
 * tls_creds.h.
 *
 * Threads and locks: a TLS transport follows conn_io's rules: one thread
 * receives (the connection's reader), senders are serialised by the front
 * end; GnuTLS allows one sender and one receiver on a session at once.
 * Renegotiation is refused (the connection is closed). Closing sends
 * close_notify without waiting for a client that stopped reading. */
#ifndef SHOAL_FRONTEND_TLS_H
#define SHOAL_FRONTEND_TLS_H

#include "frontend/conn_io.h"

struct tls_creds;

/* Run the TLS server handshake on io's fd, each wait bounded by io's
 * budget (and the whole handshake by io->timeout_ms), and switch io to the
 * TLS transport. 0, or -errno with io left as it was (the caller closes
 * it). */
int tls_server_start(struct conn_io *io, const struct tls_creds *creds);

#endif
