/* TLS transport: a GnuTLS server session under a conn_io. See tls.h. */
#include "frontend/tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "frontend/tls_creds.h"

/* Plaintext gathered per gnutls_record_send(): one full TLS record, so a
 * reply header and its payload share records instead of a tiny record per
 * iovec entry. */
#define STAGE_SIZE 16384

/* One connection's TLS state; io->tls points here once upgraded. */
struct tls_conn {
    gnutls_session_t session;
    struct conn_io *io;
    /* Last transport error seen by the pull (reader thread) and the push
     * (sending thread) callbacks, as -errno, to report instead of
     * GnuTLS's generic PULL/PUSH_ERROR. Separate: the threads differ. */
    int rerr, werr;
    bool up; /* handshake completed: bye() is worth sending */
    /* Set by tls_try_recv around its gnutls_record_recv (reader thread):
     * the pull takes what the socket holds and never waits. */
    bool no_wait;
    unsigned char *stage;
};

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
    if (tc->no_wait) {
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return cb_fail(&tc->rerr, errno);
        return n; /* -1 with EAGAIN/EINTR: GnuTLS keeps a partial record */
    }
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

/* What a failed gnutls_record_recv (n < 0, not AGAIN) means to the reader:
 * 0 (end of stream) or -errno. */
static ssize_t recv_failed(struct tls_conn *tc, ssize_t n)
{
    switch (n) {
    case GNUTLS_E_PREMATURE_TERMINATION:
        /* The socket ended without close_notify: many clients just
         * close, and shutdown(SHUT_RD) at server stop looks the same. */
        return 0;
    case GNUTLS_E_REHANDSHAKE:
        /* Answering would need a send from the reader thread while a
         * worker may be sending: refuse renegotiation by closing. */
        log_debug(tls, "TLS: client asked for renegotiation, closing");
        return -EPROTO;
    default:
        if (tc->rerr == 0)
            log_debug(tls, "TLS receive: %s", gnutls_strerror((int)n));
        return gnutls_to_errno(n, tc->rerr);
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
        if (n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED)
            return recv_failed(tc, n);
    }
}

/* For busy polling: the application data that is there now. The pull
 * does not wait, so a record still arriving, or one that carries no data
 * (a key update, a ticket), is -EAGAIN: GnuTLS keeps what it read of it
 * and the next call (this or tls_recv) goes on from there. */
static ssize_t tls_try_recv(struct conn_io *io, void *buf, size_t len)
{
    struct tls_conn *tc = io->tls;
    if (len == 0)
        return 0;
    if (gnutls_record_check_pending(tc->session) == 0) {
        char c;
        ssize_t n = recv(io->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return -EAGAIN; /* the common case, without entering GnuTLS */
    }
    tc->no_wait = true;
    tc->rerr = 0;
    ssize_t n = gnutls_record_recv(tc->session, buf, len);
    tc->no_wait = false;
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
        return -EAGAIN;
    return n < 0 ? recv_failed(tc, n) : n;
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
                log_debug(tls, "TLS send: %s", gnutls_strerror((int)n));
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
    .try_recv = tls_try_recv,
    .pending = tls_pending,
    .close = tls_close,
};

/* ---- starting a session ---- */

static void log_session(struct tls_conn *tc)
{
    if (!log_enabled(tls, LOG_LVL_DEBUG))
        return;
    char *desc = gnutls_session_get_desc(tc->session);
    const char *user = NULL;
    if (gnutls_auth_get_type(tc->session) == GNUTLS_CRD_PSK)
        user = gnutls_psk_server_get_username(tc->session);
    log_debug(tls, "TLS session %s%s%s", desc ? desc : "?", user ? ", PSK identity " : "",
              user ? user : "");
    gnutls_free(desc);
}

int tls_server_start(struct conn_io *io, const struct tls_creds *creds)
{
    if (!creds || io->tls)
        return -EINVAL;
    __attribute__((cleanup(tls_conn_freep))) struct tls_conn *tc = calloc(1, sizeof *tc);
    if (!tc)
        return -ENOMEM;
    tc->io = io;
    tc->stage = malloc(STAGE_SIZE);
    if (!tc->stage)
        return -ENOMEM;
    if (gnutls_init(&tc->session, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) < 0) {
        tc->session = NULL;
        return -ENOMEM;
    }
    gnutls_session_t s = tc->session;
    int g = tls_creds_apply(creds, s);
    if (g < 0) {
        log_warn(tls, "TLS session setup: %s", gnutls_strerror(g));
        return -EINVAL;
    }
    gnutls_transport_set_ptr(s, tc);
    gnutls_transport_set_pull_function(s, tls_pull);
    gnutls_transport_set_pull_timeout_function(s, tls_pull_timeout);
    gnutls_transport_set_vec_push_function(s, tls_vec_push);
    /* The whole TLS handshake counts against the protocol's handshake
     * timeout, so a client trickling bytes cannot hold the connection. */
    if (io->timeout_ms > 0)
        gnutls_handshake_set_timeout(s, (unsigned)io->timeout_ms);

    do {
        tc->rerr = tc->werr = 0;
        g = gnutls_handshake(s);
    } while (g < 0 && !gnutls_error_is_fatal(g));
    if (g < 0) {
        int err = tc->rerr ? tc->rerr : tc->werr;
        log_debug(tls, "TLS handshake failed: %s%s%s", gnutls_strerror(g), err ? ": " : "",
                  err ? strerror(-err) : "");
        return gnutls_to_errno(g, err);
    }
    tc->up = true;
    log_session(tc);
    io->tls = TAKE_PTR(tc);
    io->ops = &tls_ops;
    return 0;
}
