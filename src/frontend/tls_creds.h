/* TLS server credentials (GnuTLS) for any front end: loaded once when the
 * front end starts, then shared read-only by all its connections (tls.h
 * runs the sessions).
 *
 * Spelt as qemu-nbd and nbdkit spell them:
 *   - x509: a directory with server-cert.pem and server-key.pem, and
 *     optionally ca-cert.pem (+ ca-crl.pem). Client certificates are asked
 *     for and verified against ca-cert.pem only with verify_peer
 *     (nbdkit's --tls-verify-peer); without it any client may connect.
 *   - PSK: a file of "username:hexkey" lines, as written by psktool(1);
 *     blank lines and lines starting with '#' are skipped.
 * Both may be given; the client picks. Only TLS 1.2 and 1.3 are offered.
 *
 * Threads and locks: none after loading; the credentials never change. */
#ifndef SHOAL_FRONTEND_TLS_CREDS_H
#define SHOAL_FRONTEND_TLS_CREDS_H

#include <gnutls/gnutls.h>
#include <stdbool.h>

struct tls_creds;

struct tls_creds_config {
    const char *certificates_dir; /* NULL: no x509 */
    const char *psk_file;         /* NULL: no PSK */
    bool verify_peer;             /* x509: require and verify a client certificate */
};

/* Load and check the credentials. Logs what is wrong (missing file, bad
 * key, malformed PSK line) and returns -errno: -EINVAL when neither x509
 * nor PSK is configured or a file is invalid, -ENOENT when one is missing. */
int tls_creds_load(const struct tls_creds_config *cfg, struct tls_creds **out);
void tls_creds_free(struct tls_creds *c);

/* Give a new server session these credentials: priorities, x509 and/or
 * PSK, client certificate verification. Uses the session's user pointer
 * (gnutls_session_set_ptr) for the PSK lookup. 0 or a GnuTLS error. */
int tls_creds_apply(const struct tls_creds *c, gnutls_session_t session);

#endif
