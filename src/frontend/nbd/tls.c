/* GnuTLS transport and credentials for NBD STARTTLS. See tls.h. */
#include "frontend/nbd/tls.h"

#include <ctype.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

/* TLS 1.2 and 1.3 only; PSK key exchanges are not in NORMAL. */
#define PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define PRIO_PSK  "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* Plaintext gathered per gnutls_record_send(): one full TLS record, so a
 * reply header and its payload share records instead of a tiny record per
 * iovec entry. */
#define STAGE_SIZE 16384

#define PSK_MAX_USER 256
#define PSK_MAX_KEY  256 /* bytes */

struct psk_entry {
    char *user;
    unsigned char *key;
    size_t keylen;
};

struct nbd_tls {
    gnutls_certificate_credentials_t x509; /* NULL without --tls-certificates */
    gnutls_psk_server_credentials_t psk;   /* NULL without --tls-psk */
    gnutls_priority_t prio;
    bool verify_peer;
    struct psk_entry *users;
    size_t nusers;
};

/* One connection's TLS state; io->tls points here once upgraded. */
struct tls_conn {
    gnutls_session_t session;
    struct conn_io *io;
    const struct nbd_tls *tls;
    /* Last transport error seen by the pull (reader thread) and the push
     * (sending thread) callbacks, as -errno, to report instead of
     * GnuTLS's generic PULL/PUSH_ERROR. Separate: the threads differ. */
    int rerr, werr;
    bool up; /* handshake completed: bye() is worth sending */
    unsigned char *stage;
};

/* ---- credentials ---- */

static int path_join(char *buf, size_t len, const char *dir, const char *file)
{
    int n = snprintf(buf, len, "%s/%s", dir, file);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parse one "username:hexkey" line into e. */
static int psk_parse_line(char *line, struct psk_entry *e)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line || (size_t)(colon - line) > PSK_MAX_USER)
        return -EINVAL;
    *colon = '\0';
    const char *hex = colon + 1;
    size_t hl = strlen(hex);
    if (hl == 0 || hl % 2 != 0 || hl / 2 > PSK_MAX_KEY)
        return -EINVAL;
    _cleanup_free_ unsigned char *key = malloc(hl / 2);
    if (!key)
        return -ENOMEM;
    for (size_t i = 0; i < hl / 2; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    e->user = strdup(line);
    if (!e->user)
        return -ENOMEM;
    e->keylen = hl / 2;
    e->key = TAKE_PTR(key);
    return 0;
}

static int psk_load_file(struct nbd_tls *t, const char *path)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        log_error(nbd, "cannot open TLS PSK file %s: %s", path, strerror(e));
        return -e;
    }
    char line[PSK_MAX_USER + 2 * PSK_MAX_KEY + 8];
    unsigned lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t l = strlen(line);
        if (l == sizeof line - 1 && line[l - 1] != '\n') {
            log_error(nbd, "%s:%u: line too long", path, lineno);
            return -EINVAL;
        }
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            line[--l] = '\0';
        if (l == 0 || line[0] == '#')
            continue;
        struct psk_entry *n = realloc(t->users, (t->nusers + 1) * sizeof *n);
        if (!n)
            return -ENOMEM;
        t->users = n;
        int r = psk_parse_line(line, &t->users[t->nusers]);
        if (r < 0) {
            if (r == -EINVAL)
                log_error(nbd, "%s:%u: want username:hexkey (as psktool writes)", path, lineno);
            return r;
        }
        t->nusers++;
    }
    if (ferror(f)) {
        log_error(nbd, "cannot read TLS PSK file %s", path);
        return -EIO;
    }
    if (t->nusers == 0) {
        log_error(nbd, "TLS PSK file %s has no keys", path);
        return -EINVAL;
    }
    return 0;
}

static int psk_lookup(gnutls_session_t session, const char *username, gnutls_datum_t *key)
{
    const struct tls_conn *tc = gnutls_session_get_ptr(session);
    const struct nbd_tls *t = tc->tls;
    for (size_t i = 0; i < t->nusers; i++) {
        if (strcmp(t->users[i].user, username) != 0)
            continue;
        key->data = gnutls_malloc(t->users[i].keylen);
        if (!key->data)
            return -1;
        memcpy(key->data, t->users[i].key, t->users[i].keylen);
        key->size = (unsigned)t->users[i].keylen;
        return 0;
    }
    log_debug(nbd, "TLS: unknown PSK identity '%s'", username);
    return -1;
}

static int x509_load(struct nbd_tls *t, const char *dir, bool verify_peer)
{
    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], crl[PATH_MAX];
    if (path_join(cert, sizeof cert, dir, "server-cert.pem") < 0 ||
        path_join(key, sizeof key, dir, "server-key.pem") < 0 ||
        path_join(ca, sizeof ca, dir, "ca-cert.pem") < 0 ||
        path_join(crl, sizeof crl, dir, "ca-crl.pem") < 0) {
        log_error(nbd, "TLS certificate directory name too long: %s", dir);
        return -ENAMETOOLONG;
    }
    const char *need[] = {cert, key};
    for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
        if (access(need[i], R_OK) < 0) {
            int e = errno;
            log_error(nbd, "TLS: cannot read %s: %s", need[i], strerror(e));
            return -e;
        }
    }
    bool have_ca = access(ca, R_OK) == 0;
    if (verify_peer && !have_ca) {
        log_error(nbd, "TLS: verifying clients needs %s", ca);
        return -ENOENT;
    }

    int g = gnutls_certificate_allocate_credentials(&t->x509);
    if (g < 0) {
        t->x509 = NULL;
        return -ENOMEM;
    }
    if (have_ca) {
        g = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
        if (g <= 0) {
            log_error(nbd, "TLS: %s: %s", ca, g < 0 ? gnutls_strerror(g) : "no certificate");
            return -EINVAL;
        }
        if (access(crl, R_OK) == 0) {
            g = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM);
            if (g < 0) {
                log_error(nbd, "TLS: %s: %s", crl, gnutls_strerror(g));
                return -EINVAL;
            }
        }
    }
    g = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
    if (g < 0) {
        log_error(nbd, "TLS: %s / %s: %s", cert, key, gnutls_strerror(g));
        return -EINVAL;
    }
    /* DHE in TLS 1.2 uses the RFC 7919 group of this strength. */
    gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
    return 0;
}

void nbd_tls_free(struct nbd_tls *t)
{
    if (!t)
        return;
    if (t->x509)
        gnutls_certificate_free_credentials(t->x509);
    if (t->psk)
        gnutls_psk_free_server_credentials(t->psk);
    if (t->prio)
        gnutls_priority_deinit(t->prio);
    for (size_t i = 0; i < t->nusers; i++) {
        free(t->users[i].user);
        if (t->users[i].key)
            explicit_bzero(t->users[i].key, t->users[i].keylen);
        free(t->users[i].key);
    }
    free(t->users);
    free(t);
}

static void nbd_tls_freep(struct nbd_tls **t)
{
    nbd_tls_free(*t);
}

int nbd_tls_load(const struct nbd_tls_config *cfg, struct nbd_tls **out)
{
    if (!cfg->certificates_dir && !cfg->psk_file) {
        log_error(nbd, "TLS needs --tls-certificates DIR or --tls-psk FILE");
        return -EINVAL;
    }
    __attribute__((cleanup(nbd_tls_freep))) struct nbd_tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->verify_peer = cfg->verify_peer;
    int r;
    if (cfg->certificates_dir) {
        r = x509_load(t, cfg->certificates_dir, cfg->verify_peer);
        if (r < 0)
            return r;
    }
    if (cfg->psk_file) {
        r = psk_load_file(t, cfg->psk_file);
        if (r < 0)
            return r;
        if (gnutls_psk_allocate_server_credentials(&t->psk) < 0) {
            t->psk = NULL;
            return -ENOMEM;
        }
        gnutls_psk_set_server_credentials_function(t->psk, psk_lookup);
    }
    const char *err = NULL;
    int g = gnutls_priority_init(&t->prio, t->psk ? PRIO_PSK : PRIO_X509, &err);
    if (g < 0) {
        t->prio = NULL;
        log_error(nbd, "TLS priority string rejected at '%s': %s", err ? err : "?",
                  gnutls_strerror(g));
        return -EINVAL;
    }
    log_info(nbd, "TLS enabled:%s%s%s", t->x509 ? " x509" : "",
             t->x509 && t->verify_peer ? " (clients verified)" : "", t->psk ? " psk" : "");
    *out = TAKE_PTR(t);
    return 0;
}

/* ---- transport callbacks (GnuTLS <-> socket) ---- */

/* Wait until fd is readable. ms < 0: forever. 1 ready, 0 timeout, -errno. */
static int wait_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, ms);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return -errno;
    }
}

/* A failed callback returns -1 with errno set; GnuTLS reads errno (per
 * thread) to tell EAGAIN/EINTR from a real error. */
static ssize_t cb_fail(int *slot, int err)
{
    *slot = -err;
    errno = err;
    return -1;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    struct tls_conn *tc = p;
    int fd = tc->io->fd;
    for (;;) {
        int tmo = conn_io_wait_budget(tc->io);
        if (tmo < 0)
            return cb_fail(&tc->rerr, ETIMEDOUT);
        if (tmo > 0) {
            int r = wait_readable(fd, tmo);
            if (r == 0)
                return cb_fail(&tc->rerr, ETIMEDOUT);
            if (r < 0)
                return cb_fail(&tc->rerr, -r);
        }
        ssize_t n = recv(fd, buf, len, tmo > 0 ? MSG_DONTWAIT : 0);
        if (n >= 0)
            return n;
        if (errno == EINTR || (tmo > 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
            continue;
        return cb_fail(&tc->rerr, errno);
    }
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
    struct tls_conn *tc = p;
    int r = wait_readable(tc->io->fd, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)MIN(ms, INT_MAX));
    if (r < 0) {
        errno = -r;
        return -1;
    }
    return r;
}

/* Sends wait for the peer at most the connection's send budget (the
 * handshake's deadline, or the send timeout in transmission): a client that
 * stops reading gets -ETIMEDOUT, not a thread blocked forever. */
static ssize_t tls_vec_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt)
{
    struct tls_conn *tc = p;
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    for (;;) {
        /* MSG_NOSIGNAL: a vanished client is -EPIPE, not SIGPIPE. */
        ssize_t n = sendmsg(tc->io->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return cb_fail(&tc->werr, errno);
        int tmo = conn_io_send_budget(tc->io);
        int r = tmo < 0 ? -ETIMEDOUT : conn_io_wait_fd(tc->io->fd, POLLOUT, tmo);
        if (r < 0)
            return cb_fail(&tc->werr, -r);
    }
}

/* ---- conn_io ops ---- */

static int gnutls_to_errno(ssize_t g, int transport_err)
{
    if (transport_err < 0)
        return transport_err;
    switch (g) {
    case GNUTLS_E_TIMEDOUT:
        return -ETIMEDOUT;
    case GNUTLS_E_MEMORY_ERROR:
        return -ENOMEM;
    case GNUTLS_E_PUSH_ERROR:
    case GNUTLS_E_PULL_ERROR:
        return -EIO;
    default:
        return -EPROTO;
    }
}

static ssize_t tls_recv(struct conn_io *io, void *buf, size_t len)
{
    struct tls_conn *tc = io->tls;
    if (len == 0)
        return 0;
    int tmo = conn_io_wait_budget(io);
    if (tmo < 0)
        return -ETIMEDOUT;
    if (tmo > 0 && gnutls_record_check_pending(tc->session) == 0) {
        int r = wait_readable(io->fd, tmo);
        if (r == 0)
            return -ETIMEDOUT;
        if (r < 0)
            return r;
    }
    for (;;) {
        tc->rerr = 0;
        ssize_t n = gnutls_record_recv(tc->session, buf, len);
        if (n >= 0)
            return n;
        switch (n) {
        case GNUTLS_E_AGAIN:
        case GNUTLS_E_INTERRUPTED:
            continue;
        case GNUTLS_E_PREMATURE_TERMINATION:
            /* The socket ended without close_notify: many clients just
             * close, and shutdown(SHUT_RD) at server stop looks the same. */
            return 0;
        case GNUTLS_E_REHANDSHAKE:
            /* Answering would need a send from the reader thread while a
             * worker may be sending: refuse renegotiation by closing. */
            log_debug(nbd, "TLS: client asked for renegotiation, closing");
            return -EPROTO;
        default:
            if (tc->rerr == 0)
                log_debug(nbd, "TLS receive: %s", gnutls_strerror((int)n));
            return gnutls_to_errno(n, tc->rerr);
        }
    }
}

static int send_all(struct tls_conn *tc, const unsigned char *p, size_t len)
{
    while (len > 0) {
        tc->werr = 0;
        ssize_t n = gnutls_record_send(tc->session, p, len);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            continue; /* same arguments again, as GnuTLS requires */
        if (n < 0) {
            if (tc->werr == 0)
                log_debug(nbd, "TLS send: %s", gnutls_strerror((int)n));
            return gnutls_to_errno(n, tc->werr);
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int tls_sendv(struct conn_io *io, const struct iovec *iov, int iovcnt)
{
    struct tls_conn *tc = io->tls;
    size_t staged = 0;
    for (int i = 0; i < iovcnt; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        while (len > 0) {
            if (staged == 0 && len >= STAGE_SIZE) {
                /* Big payloads (cache slots, read buffers) go straight
                 * to GnuTLS, which cuts them into full records. */
                int r = send_all(tc, p, len);
                if (r < 0)
                    return r;
                break;
            }
            size_t n = MIN(len, STAGE_SIZE - staged);
            memcpy(tc->stage + staged, p, n);
            staged += n;
            p += n;
            len -= n;
            if (staged == STAGE_SIZE) {
                int r = send_all(tc, tc->stage, staged);
                if (r < 0)
                    return r;
                staged = 0;
            }
        }
    }
    return staged ? send_all(tc, tc->stage, staged) : 0;
}

static size_t tls_pending(struct conn_io *io)
{
    struct tls_conn *tc = io->tls;
    return gnutls_record_check_pending(tc->session);
}

static void tls_conn_free(struct tls_conn *tc)
{
    if (!tc)
        return;
    if (tc->session)
        gnutls_deinit(tc->session);
    free(tc->stage);
    free(tc);
}

static void tls_conn_freep(struct tls_conn **tc)
{
    tls_conn_free(*tc);
}

static void tls_close(struct conn_io *io)
{
    struct tls_conn *tc = io->tls;
    if (tc && tc->up && io->fd >= 0) {
        /* close_notify, best effort: never wait for a client that stopped
         * reading. A deadline already past makes the push give up at once
         * when the socket buffer is full. */
        io->deadline_ns = now_ns();
        gnutls_bye(tc->session, GNUTLS_SHUT_WR);
    }
    tls_conn_free(tc);
    io->tls = NULL;
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
}

static const struct conn_io_ops tls_ops = {
    .name = "tls",
    .recv = tls_recv,
    .sendv = tls_sendv,
    .pending = tls_pending,
    .close = tls_close,
};

/* ---- STARTTLS ---- */

static void log_session(struct tls_conn *tc)
{
    if (!log_enabled(nbd, LOG_LVL_DEBUG))
        return;
    char *desc = gnutls_session_get_desc(tc->session);
    const char *user = NULL;
    if (gnutls_auth_get_type(tc->session) == GNUTLS_CRD_PSK)
        user = gnutls_psk_server_get_username(tc->session);
    log_debug(nbd, "TLS session %s%s%s", desc ? desc : "?", user ? ", PSK identity " : "",
              user ? user : "");
    gnutls_free(desc);
}

int nbd_tls_starttls(struct conn_io *io, void *opaque)
{
    const struct nbd_tls *t = opaque;
    if (!t || io->tls)
        return -EINVAL;
    __attribute__((cleanup(tls_conn_freep))) struct tls_conn *tc = calloc(1, sizeof *tc);
    if (!tc)
        return -ENOMEM;
    tc->io = io;
    tc->tls = t;
    tc->stage = malloc(STAGE_SIZE);
    if (!tc->stage)
        return -ENOMEM;
    if (gnutls_init(&tc->session, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) < 0) {
        tc->session = NULL;
        return -ENOMEM;
    }
    gnutls_session_t s = tc->session;
    int g = gnutls_priority_set(s, t->prio);
    if (g >= 0 && t->x509) {
        g = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
        if (t->verify_peer) {
            gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
            /* The handshake itself fails on an untrusted client. */
            gnutls_session_set_verify_cert(s, NULL, 0);
        }
    }
    if (g >= 0 && t->psk)
        g = gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
    if (g < 0) {
        log_warn(nbd, "TLS session setup: %s", gnutls_strerror(g));
        return -EINVAL;
    }
    gnutls_session_set_ptr(s, tc);
    gnutls_transport_set_ptr(s, tc);
    gnutls_transport_set_pull_function(s, tls_pull);
    gnutls_transport_set_pull_timeout_function(s, tls_pull_timeout);
    gnutls_transport_set_vec_push_function(s, tls_vec_push);
    /* The whole TLS handshake counts against the handshake timeout, so a
     * client trickling bytes cannot hold the connection. */
    if (io->timeout_ms > 0)
        gnutls_handshake_set_timeout(s, (unsigned)io->timeout_ms);

    do {
        tc->rerr = tc->werr = 0;
        g = gnutls_handshake(s);
    } while (g < 0 && !gnutls_error_is_fatal(g));
    if (g < 0) {
        int err = tc->rerr ? tc->rerr : tc->werr;
        log_debug(nbd, "TLS handshake failed: %s%s%s", gnutls_strerror(g), err ? ": " : "",
                  err ? strerror(-err) : "");
        return gnutls_to_errno(g, err);
    }
    tc->up = true;
    log_session(tc);
    io->tls = TAKE_PTR(tc);
    io->ops = &tls_ops;
    return 0;
}
