/* NBD server: listeners, accept threads, per-connection threads and the glue
 * between the handshake and the engine's volumes. See server.h. */
#include "frontend/nbd/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"
#include "core/engine.h"
#include "core/volume_io.h"
#include "frontend/nbd/allow.h"
#include "frontend/nbd/proto.h"
#include "frontend/nbd/tls.h"
#include "frontend/nbd/transmit.h"

#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define DEFAULT_MAX_CONNECTIONS      1024
#define DEFAULT_WORKERS              32
#define CONN_STACK                   (256 * 1024)
#define STOP_GRACE_S                 5 /* for in-flight replies at shutdown */

struct listener {
    int fd;
    char *unix_path; /* unlinked at stop */
    pthread_t thread;
    struct nbd_server *srv;
};

struct conn_entry {
    int fd;
    struct conn_entry *prev, *next;
};

struct nbd_server {
    struct engine *engine;
    struct nbd_config ncfg;
    unsigned max_connections;
    struct workq *wq;
    struct nbd_transmit_ctx tctx;
    int stopping;           /* atomic */
    struct nbd_tls *tls;    /* credentials when ncfg.tls != NBD_TLS_OFF */
    struct nbd_allow allow; /* --allow; empty: every client */

    struct listener *listeners;
    unsigned nlisteners;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct conn_entry *conns;
    unsigned nconns;
    uint64_t refused;
};

/* ---- exports: the handshake's view of the engine ---- */

static void fill_info(struct nbd_server *s, struct volume *v, struct nbd_export_info *info)
{
    struct backend *be = volume_backend(v);
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
                 NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN |
                 NBD_FLAG_SEND_FAST_ZERO;
    /* Every connection shares the one cache and writes go through before
     * they are acknowledged, so FLUSH/FUA are visible across connections:
     * CAN_MULTI_CONN holds. */
    if (volume_readonly(v) || s->ncfg.readonly)
        f |= NBD_FLAG_READ_ONLY;
    info->size = volume_size(v);
    info->tflags = f;
    info->min_block = be->min_block > 1 ? be->min_block : 1;
    info->pref_block = MAX(NBD_PREFERRED_BLOCK, info->min_block);
    info->max_block = NBD_MAX_PAYLOAD;
    info->description = NULL;
}

static int exp_get(void *opaque, const char *name, struct nbd_export_info *info, void **handle)
{
    struct nbd_server *s = opaque;
    struct volume *v = engine_get_volume(s->engine, name);
    if (!v)
        return -ENOENT;
    fill_info(s, v, info);
    if (handle)
        *handle = v;
    else
        volume_put(v);
    return 0;
}

static void exp_put(void *opaque, void *handle)
{
    (void)opaque;
    volume_put(handle);
}

struct list_ctx {
    int (*emit)(void *ctx, const char *name, const char *desc);
    void *ctx;
};

static int list_one(struct volume *v, void *opaque)
{
    struct list_ctx *l = opaque;
    char desc[256];
    volume_describe_backend(v, desc, sizeof desc);
    return l->emit(l->ctx, volume_name(v), desc);
}

static int exp_list(void *opaque, int (*emit)(void *ctx, const char *name, const char *desc),
                    void *ctx)
{
    struct nbd_server *s = opaque;
    struct list_ctx l = {emit, ctx};
    return engine_for_each_volume(s->engine, list_one, &l);
}

/* ---- connections ---- */

static void conn_track_locked(struct nbd_server *s, struct conn_entry *ce)
{
    ce->prev = NULL;
    ce->next = s->conns;
    if (s->conns)
        s->conns->prev = ce;
    s->conns = ce;
    s->nconns++;
}

static void conn_track(struct nbd_server *s, struct conn_entry *ce)
{
    LOCK_GUARD(&s->lock);
    conn_track_locked(s, ce);
}

static void conn_untrack(struct nbd_server *s, struct conn_entry *ce)
{
    LOCK_GUARD(&s->lock);
    if (ce->prev)
        ce->prev->next = ce->next;
    else
        s->conns = ce->next;
    if (ce->next)
        ce->next->prev = ce->prev;
    s->nconns--;
    pthread_cond_broadcast(&s->cond);
}

static bool stopping(struct nbd_server *s)
{
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
}

/* Serve a connection already counted in s->conns; untracks it at the end. */
static void serve_tracked(struct nbd_server *s, struct conn_entry *ce)
{
    int fd = ce->fd;
    struct conn_io io;
    conn_io_init_plain(&io, fd);
    /* The whole handshake must finish in time, not just each wait: a client
     * trickling a byte at a time must not hold a slot forever. */
    io.timeout_ms = s->ncfg.handshake_timeout_ms;
    io.deadline_ns = now_ns() + (uint64_t)s->ncfg.handshake_timeout_ms * 1000000u;

    struct nbd_exports exports = {
        .opaque = s,
        .get = exp_get,
        .put = exp_put,
        .list = exp_list,
    };
    struct nbd_handshake_cfg hcfg = {
        .tls = s->tls ? s->ncfg.tls : NBD_TLS_OFF,
        .starttls = s->tls ? nbd_tls_starttls : NULL,
        .starttls_opaque = s->tls,
        .shutting_down = &s->stopping,
    };
    struct nbd_handshake_result *hs = calloc(1, sizeof *hs);
    int r = hs ? nbd_handshake(&io, &exports, &hcfg, hs) : -ENOMEM;
    if (r == 0) {
        struct volume *v = hs->handle;
        log_debug(nbd, "client attached to '%s' (structured=%d, base:allocation=%d)",
                  volume_name(v), hs->structured, hs->base_allocation);
        volume_conn_attach(v);
        io.timeout_ms = 0; /* idle clients may stay connected */
        io.deadline_ns = 0;
        r = nbd_transmit(&s->tctx, &io, v, hs);
        volume_conn_detach(v);
        if (r < 0 && r != -ECONNRESET && r != -EPIPE)
            log_debug(nbd, "connection to '%s' ended: %s", volume_name(v), strerror(-r));
        volume_put(v);
    } else if (r != -ECONNABORTED) {
        log_debug(nbd, "handshake failed: %s", strerror(-r));
    }
    free(hs);
    conn_untrack(s, ce);
    io.ops->close(&io);
}

void nbd_serve_connection(struct nbd_server *s, int fd)
{
    struct conn_entry ce = {.fd = fd};
    conn_track(s, &ce);
    serve_tracked(s, &ce);
}

struct conn_start {
    struct nbd_server *srv;
    struct conn_entry ce;
};

static void *conn_main(void *arg)
{
    struct conn_start *cs = arg;
    serve_tracked(cs->srv, &cs->ce);
    free(cs);
    return NULL;
}

static void spawn_connection(struct nbd_server *s, int fd)
{
    struct conn_start *cs = malloc(sizeof *cs);
    if (!cs) {
        close(fd);
        return;
    }
    cs->srv = s;
    cs->ce = (struct conn_entry){.fd = fd};
    {
        /* Count the connection before its thread exists, so a burst of
         * clients cannot overshoot the limit. */
        LOCK_GUARD(&s->lock);
        if (s->nconns >= s->max_connections) {
            s->refused++;
            if (s->refused % 1000 == 1)
                log_warn(nbd, "connection limit (%u) reached: refusing clients",
                         s->max_connections);
            free(cs);
            close(fd);
            return;
        }
        conn_track_locked(s, &cs->ce);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, CONN_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int r = pthread_create(&t, &attr, conn_main, cs);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        log_warn(nbd, "cannot start a connection thread: %s", strerror(r));
        conn_untrack(s, &cs->ce);
        free(cs);
        close(fd);
    }
}

static void *accept_main(void *arg)
{
    struct listener *l = arg;
    struct nbd_server *s = l->srv;
    while (!stopping(s)) {
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &peerlen, SOCK_CLOEXEC);
        if (fd < 0) {
            if (stopping(s))
                break;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn(nbd, "accept: %s (backing off)", strerror(errno));
                usleep(100 * 1000);
                continue;
            }
            if (errno == EINVAL || errno == EBADF)
                break; /* listener shut down */
            log_warn(nbd, "accept: %s", strerror(errno));
            continue;
        }
        /* Access list first: a refused client gets no byte, not even the
         * greeting. */
        if (!nbd_allow_match(&s->allow, (struct sockaddr *)&peer, peerlen)) {
            if (log_enabled(nbd, LOG_LVL_DEBUG)) {
                char who[INET6_ADDRSTRLEN + 8];
                nbd_allow_format_peer((struct sockaddr *)&peer, peerlen, who, sizeof who);
                log_debug(nbd, "client %s not in --allow list: closed", who);
            }
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on unix */
        spawn_connection(s, fd);
    }
    return NULL;
}

/* ---- listeners ---- */

/* Why starting failed: into the caller's buffer when it gave one, else the log. */
__attribute__((format(printf, 2, 3))) static void start_error(const struct frontend_config *cfg,
                                                              const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cfg->err && cfg->errlen)
        snprintf(cfg->err, cfg->errlen, "%s", msg);
    else
        log_error(nbd, "%s", msg);
}

static int listen_unix(const struct frontend_config *cfg, const char *path, struct listener *l)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        start_error(cfg, "unix socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        start_error(cfg, "cannot listen on unix:%s: %s", path, strerror(e));
        return -e;
    }
    /* A stale socket from a previous run would make bind fail. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    /* Connecting needs write permission on the socket: owner and group
     * only, whatever the umask, so other local users cannot reach the
     * volumes (set before listen(), so nobody connects in between). Give
     * qemu access through the daemon's group. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(path, 0660) < 0 ||
        listen(fd, SOMAXCONN) < 0) {
        int e = errno;
        start_error(cfg, "cannot listen on unix:%s: %s", path, strerror(e));
        return -e;
    }
    l->fd = TAKE_FD(fd);
    l->unix_path = strdup(path);
    log_info(nbd, "listening on unix:%s", path);
    return 0;
}

int nbd_parse_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (!rb || (rb[1] != ':' && rb[1] != '\0'))
            return -EINVAL;
        size_t n = (size_t)(rb - spec - 1);
        if (n == 0 || n >= hostlen)
            return -EINVAL;
        memcpy(host, spec + 1, n);
        host[n] = '\0';
        colon = rb[1] ? rb + 1 : NULL;
    } else {
        colon = strrchr(spec, ':');
        if (colon && strchr(spec, ':') != colon)
            return -EINVAL; /* bare IPv6 needs brackets */
        size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
        bool all_digits = !colon && n > 0 && strspn(spec, "0123456789") == n;
        if (all_digits) {
            n = 0; /* just a port */
            colon = spec - 1;
        }
        if (n >= hostlen)
            return -EINVAL;
        memcpy(host, spec, n);
        host[n] = '\0';
    }
    const char *p = colon ? colon + 1 : "10809";
    size_t pl = strlen(p);
    if (pl == 0 || pl > 5 || pl >= portlen || strspn(p, "0123456789") != pl || atoi(p) > 65535)
        return -EINVAL;
    memcpy(port, p, pl + 1);
    return 0;
}

static int listen_tcp(const struct frontend_config *cfg, const char *spec, struct listener *l)
{
    char host[256], port[16];
    if (nbd_parse_hostport(spec, host, sizeof host, port, sizeof port) < 0) {
        start_error(cfg, "invalid listen address '%s' (want ADDR:PORT, [IPv6]:PORT or unix:PATH)",
                    spec);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (g != 0) {
        start_error(cfg, "cannot resolve listen address '%s': %s", spec, gai_strerror(g));
        return -EINVAL;
    }
    int err = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        _cleanup_close_ int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
            err = -errno;
            continue;
        }
        l->fd = TAKE_FD(fd);
        err = 0;
        break;
    }
    freeaddrinfo(res);
    if (err < 0)
        start_error(cfg, "cannot listen on %s: %s", spec, strerror(-err));
    else
        log_info(nbd, "listening on %s", spec);
    return err;
}

/* ---- lifecycle ---- */

static void *scratch_new(void)
{
    return vol_scratch_new();
}

static void scratch_free(void *p)
{
    vol_scratch_free(p);
}

int nbd_server_start(struct engine *e, const struct frontend_config *cfg, struct nbd_server **out)
{
    struct nbd_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->engine = e;
    if (cfg->proto)
        s->ncfg = *(const struct nbd_config *)cfg->proto;
    if (s->ncfg.handshake_timeout_ms <= 0)
        s->ncfg.handshake_timeout_ms = DEFAULT_HANDSHAKE_TIMEOUT_MS;
    int r = nbd_allow_parse(s->ncfg.allow, s->ncfg.nallow, &s->allow);
    if (r < 0) {
        free(s);
        return r;
    }
    if (s->ncfg.tls != NBD_TLS_OFF) {
        struct nbd_tls_config tc = {
            .certificates_dir = s->ncfg.tls_certificates,
            .psk_file = s->ncfg.tls_psk,
            .verify_peer = s->ncfg.tls_verify_peer,
        };
        r = nbd_tls_load(&tc, &s->tls);
        if (r < 0) {
            nbd_allow_free(&s->allow);
            free(s);
            return r;
        }
    }
    s->max_connections = cfg->max_connections ? cfg->max_connections : DEFAULT_MAX_CONNECTIONS;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);

    struct workq_config wc = {
        .threads = cfg->workers ? cfg->workers : DEFAULT_WORKERS,
        .scratch_new = scratch_new,
        .scratch_free = scratch_free,
        .name = "nbd-io",
    };
    r = workq_create(&wc, &s->wq);
    if (r < 0) {
        nbd_tls_free(s->tls);
        nbd_allow_free(&s->allow);
        free(s);
        return r;
    }
    s->tctx.wq = s->wq;
    s->tctx.stopping = &s->stopping;

    s->listeners = calloc(cfg->nlisten ? cfg->nlisten : 1, sizeof *s->listeners);
    if (!s->listeners) {
        nbd_server_stop(s);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < cfg->nlisten; i++) {
        struct listener *l = &s->listeners[i];
        l->fd = -1;
        l->srv = s;
        const char *spec = cfg->listen[i];
        r = strncmp(spec, "unix:", 5) == 0 ? listen_unix(cfg, spec + 5, l)
                                           : listen_tcp(cfg, spec, l);
        if (r < 0) {
            nbd_server_stop(s);
            return r;
        }
        s->nlisteners = i + 1;
        r = pthread_create(&l->thread, NULL, accept_main, l);
        if (r != 0) {
            close(l->fd);
            l->fd = -1;
            nbd_server_stop(s);
            return -r;
        }
    }
    *out = s;
    return 0;
}

void nbd_server_stop(struct nbd_server *s)
{
    if (!s)
        return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < s->nlisteners; i++) {
        struct listener *l = &s->listeners[i];
        if (l->fd >= 0) {
            shutdown(l->fd, SHUT_RDWR);
            pthread_join(l->thread, NULL);
            close(l->fd);
        }
        if (l->unix_path) {
            unlink(l->unix_path);
            free(l->unix_path);
        }
    }
    /* End every connection: the reader sees EOF, finishes in-flight
     * requests (their replies are still sent) and exits. A client that
     * does not read its replies would hold that up until the send
     * timeout: after a grace period its sends are cut too. */
    {
        LOCK_GUARD(&s->lock);
        for (struct conn_entry *ce = s->conns; ce; ce = ce->next)
            shutdown(ce->fd, SHUT_RD);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += STOP_GRACE_S;
        while (s->nconns > 0) {
            if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT) {
                for (struct conn_entry *ce = s->conns; ce; ce = ce->next)
                    shutdown(ce->fd, SHUT_RDWR);
                while (s->nconns > 0)
                    pthread_cond_wait(&s->cond, &s->lock);
            }
        }
    }
    workq_destroy(s->wq);
    nbd_tls_free(s->tls);
    nbd_allow_free(&s->allow);
    free(s->listeners);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

unsigned nbd_server_connections(struct nbd_server *s)
{
    LOCK_GUARD(&s->lock);
    return s->nconns;
}

/* ---- frontend ops ---- */

static int fe_start(struct engine *e, const struct frontend_config *cfg, void **state)
{
    struct nbd_server *s;
    int r = nbd_server_start(e, cfg, &s);
    if (r == 0)
        *state = s;
    return r;
}

static void fe_stop(void *state)
{
    nbd_server_stop(state);
}

static unsigned fe_connections(void *state)
{
    return nbd_server_connections(state);
}

const struct frontend_ops frontend_nbd_ops = {
    .name = "nbd",
    .start = fe_start,
    .stop = fe_stop,
    .connections = fe_connections,
};
