/* Listening sockets, accept threads, connection threads and the graceful
 * stop, for every front end. See listener.h. */
#include "frontend/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "frontend/allow.h"
#include "frontend/netaddr.h"

#define CONN_STACK (256 * 1024)

struct listen_sock {
    int fd;
    char *unix_path; /* unlinked at stop */
    pthread_t thread;
    struct listener *l;
};

struct conn {
    struct listener_conn pub;
    /* The socket, for stop to shut down; under l->lock. -1 from the moment
     * the connection is being closed: once closed, the number may belong
     * to another file. */
    int fd;
    struct listener *l;
    struct conn *prev, *next;
};

struct listener {
    const char *proto;
    unsigned max_connections;
    const struct allow_list *allow;
    void (*serve)(void *opaque, struct listener_conn *c);
    void *opaque;
    int stopping; /* atomic */

    struct listen_sock *socks;
    unsigned nsocks;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct conn *conns;
    unsigned nconns;
    uint64_t refused;
};

static bool stopping(struct listener *l)
{
    return __atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE);
}

/* ---- connections ---- */

static void conn_track_locked(struct listener *l, struct conn *c)
{
    c->prev = NULL;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
}

static void conn_untrack(struct listener *l, struct conn *c)
{
    LOCK_GUARD(&l->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->nconns--;
    pthread_cond_broadcast(&l->cond);
}

/* Serve a connection already counted in l->conns; closes and untracks it.
 * It is closed before it is untracked, so when stop sees no connection
 * left, no transport is still sending (a TLS close_notify included). */
static void serve_tracked(struct listener *l, struct conn *c)
{
    conn_io_init_plain(&c->pub.io, c->fd);
    c->pub.stopping = &l->stopping;
    l->serve(l->opaque, &c->pub);
    {
        LOCK_GUARD(&l->lock);
        c->fd = -1;
    }
    c->pub.io.ops->close(&c->pub.io);
    conn_untrack(l, c);
}

void listener_serve_fd(struct listener *l, int fd)
{
    struct conn c = {.fd = fd, .l = l};
    {
        LOCK_GUARD(&l->lock);
        conn_track_locked(l, &c);
    }
    serve_tracked(l, &c);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    serve_tracked(c->l, c);
    free(c);
    return NULL;
}

static void spawn_connection(struct listener *l, int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->l = l;
    {
        /* Count the connection before its thread exists, so a burst of
         * clients cannot overshoot the limit. */
        LOCK_GUARD(&l->lock);
        if (l->nconns >= l->max_connections) {
            l->refused++;
            if (l->refused % 1000 == 1)
                log_warn(net, "%s connection limit (%u) reached: refusing clients", l->proto,
                         l->max_connections);
            free(c);
            close(fd);
            return;
        }
        conn_track_locked(l, c);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, CONN_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int r = pthread_create(&t, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        log_warn(net, "%s: cannot start a connection thread: %s", l->proto, strerror(r));
        conn_untrack(l, c);
        free(c);
        close(fd);
    }
}

static void *accept_main(void *arg)
{
    struct listen_sock *ls = arg;
    struct listener *l = ls->l;
    while (!stopping(l)) {
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof peer;
        int fd = accept4(ls->fd, (struct sockaddr *)&peer, &peerlen, SOCK_CLOEXEC);
        if (fd < 0) {
            if (stopping(l))
                break;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn(net, "%s accept: %s (backing off)", l->proto, strerror(errno));
                usleep(100 * 1000);
                continue;
            }
            if (errno == EINVAL || errno == EBADF)
                break; /* listener shut down */
            log_warn(net, "%s accept: %s", l->proto, strerror(errno));
            continue;
        }
        /* Access list first: a refused client gets no byte, not even the
         * greeting. */
        if (l->allow && !allow_match(l->allow, (struct sockaddr *)&peer, peerlen)) {
            if (log_enabled(net, LOG_LVL_DEBUG)) {
                char who[INET6_ADDRSTRLEN + 8];
                allow_format_peer((struct sockaddr *)&peer, peerlen, who, sizeof who);
                log_debug(net, "%s client %s not in the access list: closed", l->proto, who);
            }
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on unix */
        spawn_connection(l, fd);
    }
    return NULL;
}

/* ---- lifecycle ---- */

int listener_start(const struct listener_config *cfg, struct listener **out)
{
    struct listener *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->proto = cfg->proto ? cfg->proto : "?";
    l->max_connections =
        cfg->max_connections ? cfg->max_connections : LISTENER_DEFAULT_MAX_CONNECTIONS;
    l->allow = cfg->allow;
    l->serve = cfg->serve;
    l->opaque = cfg->opaque;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->socks = calloc(cfg->nlisten ? cfg->nlisten : 1, sizeof *l->socks);
    if (!l->socks) {
        listener_stop(l);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < cfg->nlisten; i++) {
        struct listen_sock *ls = &l->socks[i];
        ls->l = l;
        char msg[320];
        int r = netaddr_listen(cfg->listen[i], cfg->default_port, cfg->unix_perms, &ls->fd,
                               &ls->unix_path, msg, sizeof msg);
        l->nsocks = i + 1;
        if (r < 0) {
            if (cfg->err && cfg->errlen)
                snprintf(cfg->err, cfg->errlen, "%s", msg);
            else
                log_error(net, "%s", msg);
            listener_stop(l);
            return r;
        }
        log_info(net, "%s listening on %s", l->proto, cfg->listen[i]);
        r = pthread_create(&ls->thread, NULL, accept_main, ls);
        if (r != 0) {
            close(ls->fd);
            ls->fd = -1;
            listener_stop(l);
            return -r;
        }
    }
    *out = l;
    return 0;
}

void listener_stop(struct listener *l)
{
    if (!l)
        return;
    __atomic_store_n(&l->stopping, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < l->nsocks; i++) {
        struct listen_sock *ls = &l->socks[i];
        if (ls->fd >= 0) {
            shutdown(ls->fd, SHUT_RDWR);
            pthread_join(ls->thread, NULL);
            close(ls->fd);
        }
        if (ls->unix_path) {
            /* After --user the directory may not be ours to change: the
             * next start finds the socket stale and replaces it. */
            if (unlink(ls->unix_path) < 0 && errno != ENOENT)
                log_warn(net, "cannot remove unix:%s: %s", ls->unix_path, strerror(errno));
            free(ls->unix_path);
        }
    }
    /* End every connection: the handler sees EOF, finishes in-flight
     * requests (their replies are still sent) and returns. A client that
     * does not read its replies would hold that up until the protocol's
     * send timeout: after a grace period its sends are cut too. */
    {
        LOCK_GUARD(&l->lock);
        for (struct conn *c = l->conns; c; c = c->next)
            if (c->fd >= 0)
                shutdown(c->fd, SHUT_RD);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += LISTENER_STOP_GRACE_S;
        while (l->nconns > 0) {
            if (pthread_cond_timedwait(&l->cond, &l->lock, &until) == ETIMEDOUT) {
                for (struct conn *c = l->conns; c; c = c->next)
                    if (c->fd >= 0)
                        shutdown(c->fd, SHUT_RDWR);
                while (l->nconns > 0)
                    pthread_cond_wait(&l->cond, &l->lock);
            }
        }
    }
    free(l->socks);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(l);
}

unsigned listener_connections(struct listener *l)
{
    LOCK_GUARD(&l->lock);
    return l->nconns;
}
