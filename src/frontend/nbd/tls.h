/* NBD over TLS (GnuTLS): the server's credentials, loaded once when the
 * server starts, and the STARTTLS upgrade that swaps a connection's plain
 * conn_io for a TLS transport (ops->name "tls") for the rest of the
 * handshake and the whole transmission phase.
 *
 * Credentials are spelt as qemu-nbd and nbdkit spell them:
 *   - x509: a directory with server-cert.pem and server-key.pem, and
 *     optionally ca-cert.pem (+ ca-crl.pem). Client certificates are asked
 *     for and verified against ca-cert.pem only with verify_peer
 *     (nbdkit's --tls-verify-peer); without it any client may connect.
 *   - PSK: a file of "username:hexkey" lines, as written by psktool(1).
 * Both may be given; the client picks. Only TLS 1.2 and 1.3 are offered.
 *
 * Threads and locks: the credentials are read-only after loading and shared
 * by all connections. A TLS transport follows conn_io's rules: one thread
 * receives (the connection's reader), senders are serialised by the
 * connection's send lock; GnuTLS allows one sender and one receiver on a
 * session at once. Renegotiation is refused (the connection is closed). */
#ifndef SHOAL_FRONTEND_NBD_TLS_H
#define SHOAL_FRONTEND_NBD_TLS_H

#include <stdbool.h>

#include "frontend/nbd/conn_io.h"

struct nbd_tls;

struct nbd_tls_config {
    const char *certificates_dir; /* NULL: no x509 */
    const char *psk_file;         /* NULL: no PSK */
    bool verify_peer;             /* x509: require and verify a client certificate */
};

/* Load and check the credentials. Logs what is wrong (missing file, bad
 * key, malformed PSK line) and returns -errno: -EINVAL when neither x509
 * nor PSK is configured or a file is invalid, -ENOENT when one is missing. */
int nbd_tls_load(const struct nbd_tls_config *cfg, struct nbd_tls **out);
void nbd_tls_free(struct nbd_tls *t);

/* The handshake's STARTTLS callback (opaque is the struct nbd_tls): run the
 * TLS handshake on io's fd, bounded by io->timeout_ms per wait, and switch
 * io to the TLS transport. 0, or -errno with io left as it was (the caller
 * closes it). */
int nbd_tls_starttls(struct conn_io *io, void *opaque);

#endif
