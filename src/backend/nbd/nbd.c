/* NBD back end: a volume's data in an upstream NBD export, reached with
 * libnbd's asynchronous API.
 *
 * Many worker threads call the ops at once and each blocks until its own
 * command is done. A synchronous libnbd call would hold the handle's lock for
 * the whole round trip and serialise them, so instead every connection has a
 * poller thread that drives the handle's state machine (poll on the socket
 * plus an eventfd for wake-ups), and submitters queue commands with
 * nbd_aio_*() and sleep until the command's callbacks say it is over.
 *
 * Locking, per connection (struct nbd_conn):
 *   - c->lock protects h, gen, kill, stop and last_attempt_ns;
 *   - submitters call nbd_aio_*() on c->h only while holding c->lock, and
 *     only the poller closes a handle, after setting c->h to NULL under
 *     c->lock; so a handle is never used after it is closed, and the poller
 *     may use its own copy of h without the lock;
 *   - order: c->lock, then libnbd's handle lock, then a waiter's lock (the
 *     callbacks take the waiter's lock and run under the handle lock), so a
 *     waiter never takes c->lock while holding its own lock;
 *   - c->alock (after the handle lock) guards the asynchronous requests'
 *     lists: in flight (oldest first, for the timeout) and finished.
 *
 * Asynchronous reads and writes (pread_async, pwrite_async) have no
 * waiter: the command's free callback moves the request to its
 * connection's finished list, and the poller calls each finished one's
 * done after it let go of the handle, so done never runs under libnbd's
 * lock and never on the submitter's thread.
 *
 * Failure: when a connection dies every command on it completes with an
 * error; the next request for it reconnects (at most once a second). A
 * request that takes longer than the timeout tears its connection down, which
 * completes (fails) everything in flight on it, so nothing waits forever. */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#define NBD_DEFAULT_CONNS_MULTI 4
#define NBD_MAX_CONNS           16
#define NBD_DEFAULT_MAX_BLOCK   (32u << 20)
/* libnbd refuses reads/writes above 64 MiB; stay well inside it. */
#define NBD_CHUNK_CAP          (32u << 20)
#define NBD_DEFAULT_TIMEOUT_MS 60000
#define NBD_RECONNECT_NS       1000000000ull
#define NBD_EXTENTS_PER_ROUND  128
/* Runs of a read's reply kept apart (chunks out of order, with gaps
 * between them) before the read is failed: a real server sends few. */
#define NBD_COVER_MAX_RUNS 4096

struct nbd_be;

struct nbd_conn {
    struct nbd_be *nb;
    unsigned idx;
    pthread_mutex_t lock;
    struct nbd_handle *h; /* NULL while disconnected */
    uint64_t gen;         /* bumped whenever h is replaced or dropped */
    bool kill;            /* a request timed out: the poller drops h */
    bool stop;            /* backend closing: the poller exits */
    bool connecting;      /* a submitter is reconnecting (without c->lock held) */
    uint64_t last_attempt_ns;
    int efd; /* eventfd that wakes the poller */
    /* The handle the poller last armed poll() for (set under lock). A
     * submitter wakes the poller only if that is not the current handle or
     * libnbd has bytes left to send; otherwise the poller is already
     * waiting for the reply, and an eventfd round trip per request would
     * only cost CPU and latency. */
    struct nbd_handle *armed;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t alock;
    struct be_aio *inflight, *inflight_tail; /* submitted, oldest first */
    struct be_aio *finished;                 /* free callback ran, done not yet */
    atomic_uint busy; /* requests given this connection and not over (pick_conn) */
};

struct nbd_be {
    struct backend be; /* first: be.priv points back at us */
    char *export_name;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    uint32_t chunk; /* largest read/write/trim/zero sent as one command */
    bool readonly;
    bool can_flush, can_fua, can_trim, can_zero, can_fast_zero, can_extents, multi_conn;
    atomic_uint rr; /* round robin of blocking requests (run) */
    unsigned nconns;
    struct nbd_conn *conns;
};

/* One request (possibly split into several commands on one connection),
 * waited for on the submitter's stack. libnbd calls the free callback exactly
 * once per command, including when the command fails to be issued and when
 * the handle is closed under it, so `pending` counting free calls always
 * reaches zero. The completion callback, though, is NOT called for commands
 * still in flight when nbd_close() tears a live handle down (our timeout
 * path): such a command was freed without completing, and must count as
 * failed — never as a read that filled the buffer or a write that landed. */
struct nbd_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned pending;
    unsigned issued;       /* commands handed to libnbd */
    unsigned completed;    /* completion callbacks seen */
    int err;               /* first error, positive errno */
    struct be_cover cover; /* a read's: the parts of buf its replies filled */
};

/* Extents of one NBD_CMD_BLOCK_STATUS, clipped to the requested range. */
struct extent_batch {
    uint64_t end;
    unsigned n;
    struct {
        uint64_t off, len;
        uint32_t flags;
    } e[NBD_EXTENTS_PER_ROUND];
};

enum nbd_cmd_kind { CMD_READ, CMD_WRITE, CMD_FLUSH, CMD_TRIM, CMD_ZERO, CMD_BLOCK_STATUS };

struct nbd_req {
    enum nbd_cmd_kind kind;
    void *buf;
    uint32_t count;
    uint64_t offset;
    uint32_t nbd_flags; /* LIBNBD_CMD_FLAG_* */
    struct extent_batch *batch;
};

static pthread_once_t condattr_once = PTHREAD_ONCE_INIT;
static pthread_condattr_t condattr_mono;

static void condattr_init(void)
{
    pthread_condattr_init(&condattr_mono);
    pthread_condattr_setclock(&condattr_mono, CLOCK_MONOTONIC);
}

static struct nbd_be *to_nbd(struct backend *be)
{
    return be->priv;
}

/* Errors a server reports for the command itself pass through; anything
 * else (connection lost, shut down, protocol trouble) is an I/O error. */
static int map_nbd_errno(int e)
{
    switch (e) {
    case EPERM:
    case EIO:
    case ENOMEM:
    case EINVAL:
    case ENOSPC:
    case EOVERFLOW:
    case ENOTSUP:
    case EROFS:
        return -e;
    case EDQUOT:
    case EFBIG:
        return -ENOSPC;
    default:
        return -EIO;
    }
}

/* ---- what a read's reply filled (struct be_cover) */

static void cover_init(struct be_cover *c, uint64_t off, uint64_t want)
{
    memset(c, 0, sizeof(*c));
    c->off = off;
    c->want = want;
}

static void cover_free(struct be_cover *c)
{
    free(c->heap);
    c->heap = NULL;
    c->cap = 0;
}

/* [off, off + len) of the read's buffer was filled. A piece filled twice
 * (the protocol forbids overlapping chunks: one of them left a gap, or the
 * sum below would be wrong) or too many pieces make the read bad. */
static void cover_add(struct be_cover *c, uint64_t off, uint64_t len)
{
    if (len == 0 || c->bad)
        return;
    struct be_cover_run *r = c->cap ? c->heap : c->inl;
    uint64_t end = off + len;
    unsigned i = c->n; /* replies come in order: the search starts at the end */
    while (i > 0 && r[i - 1].off > off)
        i--;
    if ((i > 0 && r[i - 1].end > off) || (i < c->n && r[i].off < end)) {
        c->bad = true;
        return;
    }
    bool join_prev = i > 0 && r[i - 1].end == off;
    bool join_next = i < c->n && r[i].off == end;
    if (join_prev && join_next) {
        r[i - 1].end = r[i].end;
        memmove(&r[i], &r[i + 1], (c->n - i - 1) * sizeof(*r));
        c->n--;
    } else if (join_prev) {
        r[i - 1].end = end;
    } else if (join_next) {
        r[i].off = off;
    } else {
        unsigned room = c->cap ? c->cap : (unsigned)ARRAY_SIZE(c->inl);
        if (c->n == room) {
            struct be_cover_run *nr =
                room < NBD_COVER_MAX_RUNS ? malloc(4 * room * sizeof(*nr)) : NULL;
            if (!nr) {
                c->bad = true;
                return;
            }
            memcpy(nr, r, c->n * sizeof(*r));
            free(c->heap);
            c->heap = r = nr;
            c->cap = 4 * room;
        }
        memmove(&r[i + 1], &r[i], (c->n - i) * sizeof(*r));
        r[i].off = off;
        r[i].end = end;
        c->n++;
    }
    c->covered += len;
}

/* Runs are disjoint and lie inside the request (libnbd checks each chunk's
 * range), so their sum says whether all of it was filled. */
static bool cover_full(const struct be_cover *c)
{
    return !c->bad && c->covered == c->want;
}

static void log_cover(const struct nbd_be *nb, const struct be_cover *c)
{
    if (c->bad)
        log_error(backend,
                  "nbd: %s: reply to a read of %" PRIu64 " bytes at %" PRIu64
                  " filled part of it twice (overlapping chunks): failing the read",
                  nb->be.spec, c->want, c->off);
    else
        log_error(backend,
                  "nbd: %s: reply to a read of %" PRIu64 " bytes at %" PRIu64
                  " filled only %" PRIu64 " of them: failing the read",
                  nb->be.spec, c->want, c->off, c->covered);
}

/* A request given c by pick_conn is over. */
static void put_conn(struct nbd_conn *c)
{
    atomic_fetch_sub_explicit(&c->busy, 1, memory_order_relaxed);
}

static void wake_poller(struct nbd_conn *c)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: a wake-up is pending. */
    if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_error(backend, "nbd: eventfd write: %m");
}

/* ---- callbacks (run with libnbd's handle lock held, usually on the poller) */

static int on_complete(void *user_data, int *error)
{
    struct nbd_wait *w = user_data;
    LOCK_GUARD(&w->lock);
    w->completed++;
    if (*error && !w->err)
        w->err = *error;
    return 1; /* retire the command now; nobody calls nbd_aio_command_completed */
}

/* A chunk of a blocking read's reply (runs under the handle lock, as do
 * the request's other callbacks: all its commands share one connection). */
static int on_read_chunk(void *user_data, const void *subbuf, size_t count, uint64_t offset,
                         unsigned status, int *error)
{
    (void)subbuf;
    struct nbd_wait *w = user_data;
    if (status != LIBNBD_READ_DATA && status != LIBNBD_READ_HOLE)
        return 0; /* an error chunk fills nothing and fails the command itself */
    LOCK_GUARD(&w->lock);
    cover_add(&w->cover, offset, count);
    if (!w->cover.bad)
        return 0;
    *error = EIO;
    return -1;
}

static void on_free(void *user_data)
{
    struct nbd_wait *w = user_data;
    pthread_mutex_lock(&w->lock);
    if (--w->pending == 0)
        pthread_cond_signal(&w->cond);
    /* After this unlock the submitter may return: w is gone. */
    pthread_mutex_unlock(&w->lock);
}

static int on_async_complete(void *user_data, int *error)
{
    struct be_aio *a = user_data;
    /* Only this callback writes completed and err (under the handle
     * lock); the poller reads them after the last reference went
     * (pending: acquire-release), so no lock of our own is needed. */
    a->completed++;
    if (*error && !a->err)
        a->err = *error;
    if (a->cover.want && (a->cover.bad || (!*error && !cover_full(&a->cover)))) {
        log_cover(((struct nbd_conn *)a->owner)->nb, &a->cover);
        if (!a->err)
            a->err = EIO;
    }
    return 1;
}

/* A chunk of an asynchronous read's reply (under the handle lock, like
 * on_async_complete, which runs after it). */
static int on_async_read_chunk(void *user_data, const void *subbuf, size_t count, uint64_t offset,
                               unsigned status, int *error)
{
    (void)subbuf;
    struct be_aio *a = user_data;
    if (status != LIBNBD_READ_DATA && status != LIBNBD_READ_HOLE)
        return 0;
    cover_add(&a->cover, offset, count);
    if (!a->cover.bad)
        return 0;
    *error = EIO;
    return -1;
}

static void aio_unlink_locked(struct nbd_conn *c, struct be_aio *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        c->inflight = a->next;
    if (a->next)
        a->next->prev = a->prev;
    else
        c->inflight_tail = a->prev;
    a->next = a->prev = NULL;
}

/* The request's last reference went: hand it to the poller. */
static void aio_finish(struct nbd_conn *c, struct be_aio *a)
{
    {
        LOCK_GUARD(&c->alock);
        aio_unlink_locked(c, a);
        a->next = c->finished;
        c->finished = a;
    }
    if (!c->thread_started || !pthread_equal(pthread_self(), c->thread))
        wake_poller(c);
}

static void on_async_free(void *user_data)
{
    struct be_aio *a = user_data;
    if (__atomic_sub_fetch(&a->pending, 1, __ATOMIC_ACQ_REL) == 0)
        aio_finish(a->owner, a);
}

static int on_extents(void *user_data, const char *metacontext, uint64_t offset, uint32_t *entries,
                      size_t nr_entries, int *error)
{
    struct extent_batch *b = user_data;
    if (*error || strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
        return 0;
    uint64_t pos = offset;
    for (size_t i = 0; i + 1 < nr_entries; i += 2) {
        if (b->n == NBD_EXTENTS_PER_ROUND || pos >= b->end || entries[i] == 0)
            break;
        uint64_t len = MIN((uint64_t)entries[i], b->end - pos);
        b->e[b->n].off = pos;
        b->e[b->n].len = len;
        b->e[b->n].flags = entries[i + 1] & (BE_EXTENT_HOLE | BE_EXTENT_ZERO);
        b->n++;
        pos += len;
    }
    return 0;
}

/* ---- connecting */

/* Connect a fresh handle, giving up after the connect timeout (a TCP peer
 * that vanished, or a server that accepts and never answers, could
 * otherwise stall the handshake for minutes). */
static int connect_handle(struct nbd_be *nb, struct nbd_handle **out)
{
    struct nbd_handle *h = nbd_create();
    if (!h)
        return -ENOMEM;
    int err = 0;
    /* Ask for allocation info up front: it can only be negotiated before
     * the export is opened. Skip zeroing read buffers: a failed read is
     * reported as an error and its buffer never leaves the daemon. */
    if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
        nbd_set_pread_initialize(h, false) < 0 || nbd_aio_connect_uri(h, nb->be.spec) < 0) {
        err = nbd_get_errno();
        goto fail;
    }
    uint64_t deadline = now_ns() + nb->connect_timeout_ms * 1000000ull;
    while (!nbd_aio_is_ready(h)) {
        if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
            err = nbd_get_errno();
            goto fail;
        }
        uint64_t now = now_ns();
        if (now >= deadline) {
            err = ETIMEDOUT;
            /* Say which half hung: reaching the server, or its handshake. */
            const char *st = nbd_connection_state(h);
            bool reached = st && strncmp(st, "CONNECT", 7) != 0;
            backend_set_open_error(
                reached ? "connected, but no NBD handshake within %.1f s (server hung, or not an "
                          "NBD server?)"
                        : "no connection within %.1f s",
                (double)nb->connect_timeout_ms / 1000.0);
            goto fail_reported;
        }
        unsigned dir = nbd_aio_get_direction(h);
        struct pollfd pfd = {.fd = nbd_aio_get_fd(h)};
        if (dir & LIBNBD_AIO_DIRECTION_READ)
            pfd.events |= POLLIN;
        if (dir & LIBNBD_AIO_DIRECTION_WRITE)
            pfd.events |= POLLOUT;
        int ms = (int)MIN((deadline - now) / 1000000ull + 1, 1000ull);
        int n = poll(&pfd, 1, ms);
        if (n < 0 && errno != EINTR) {
            err = errno;
            goto fail;
        }
        if (n <= 0)
            continue;
        int r = 0;
        if ((pfd.revents & POLLOUT) ||
            ((pfd.revents & (POLLHUP | POLLERR)) && (dir & LIBNBD_AIO_DIRECTION_WRITE)))
            r = nbd_aio_notify_write(h);
        if (r == 0 && ((pfd.revents & POLLIN) ||
                       ((pfd.revents & (POLLHUP | POLLERR)) && (dir & LIBNBD_AIO_DIRECTION_READ))))
            r = nbd_aio_notify_read(h);
        if (r < 0) {
            err = nbd_get_errno();
            goto fail;
        }
    }
    *out = h;
    return 0;

fail:
    backend_set_open_error("%s", nbd_get_error());
fail_reported:
    /* At open the caller reports it; later it is a reconnect worth a log. */
    if (nb->be.size)
        log_error(backend, "nbd: connect %s: %s", nb->be.spec, backend_open_error());
    nbd_close(h);
    return -(err ? err : EIO);
}

/* Make sure c has a live handle. Caller holds c->lock; it is dropped while
 * connecting (which can take up to the request timeout), and requests that
 * find a reconnect in progress do not queue behind it. -ENOTCONN: c has no
 * usable handle now (nothing was sent; run tries another connection). */
static int ensure_connected_locked(struct nbd_be *nb, struct nbd_conn *c, bool may_connect)
{
    if (c->h)
        return c->kill ? -ENOTCONN : 0; /* being torn down: do not queue behind it */
    uint64_t now = now_ns();
    if (!may_connect || c->connecting || now - c->last_attempt_ns < NBD_RECONNECT_NS)
        return -ENOTCONN;
    c->last_attempt_ns = now;
    c->connecting = true;
    pthread_mutex_unlock(&c->lock);
    struct nbd_handle *h;
    int r = connect_handle(nb, &h);
    int64_t size = r == 0 ? nbd_get_size(h) : -1;
    pthread_mutex_lock(&c->lock);
    c->connecting = false;
    if (r < 0)
        return -ENOTCONN;
    if (size < 0 || (uint64_t)size != nb->be.size || c->stop || c->h) {
        if (!c->stop && !c->h)
            log_error(backend, "nbd: %s changed size on reconnect (%" PRId64 " != %" PRIu64 ")",
                      nb->be.spec, size, nb->be.size);
        nbd_close(h);
        return c->h && !c->kill ? 0 : -ENOTCONN;
    }
    log_info(backend, "nbd: %s: connection %u re-established", nb->be.spec, c->idx);
    c->h = h;
    c->gen++;
    return 0;
}

/* ---- the poller */

/* Call done for every finished asynchronous request (no lock held); then
 * the poll timeout for the oldest one still in flight, in ms, and whether
 * it is already late. With none in flight, the request timeout: a request
 * started while the poller sleeps does not wake it (that would cost a
 * wake-up per request), and its deadline lies beyond that sleep's end. */
static int aio_run_finished(struct nbd_conn *c, bool *late)
{
    struct be_aio *list;
    uint64_t deadline = 0;
    {
        LOCK_GUARD(&c->alock);
        list = c->finished;
        c->finished = NULL;
    }
    while (list) {
        struct be_aio *a = list;
        list = a->next;
        a->next = NULL;
        /* A command freed without its completion callback (the handle was
         * closed under it) never filled the buffer. */
        int st = a->completed < a->issued ? -EIO : a->err ? map_nbd_errno(a->err) : 0;
        cover_free(&a->cover);
        put_conn(c);
        a->done(a, st);
    }
    {
        LOCK_GUARD(&c->alock);
        if (c->inflight)
            deadline = c->inflight->deadline_ns;
    }
    *late = false;
    if (!deadline)
        return (int)MIN(c->nb->timeout_ms, (uint64_t)INT32_MAX);
    uint64_t now = now_ns();
    if (now >= deadline) {
        *late = true;
        return 0;
    }
    return (int)MIN((deadline - now) / 1000000 + 1, (uint64_t)INT32_MAX);
}

static void *poller_main(void *arg)
{
    struct nbd_conn *c = arg;
    unsigned hup_spins = 0;
    for (;;) {
        struct nbd_handle *h, *drop = NULL;
        bool timed_out = false, late;
        int wait_ms = aio_run_finished(c, &late);
        pthread_mutex_lock(&c->lock);
        if (late && c->h && !c->kill) {
            log_error(backend, "nbd: %s: request timed out after %" PRIu64 " ms", c->nb->be.spec,
                      c->nb->timeout_ms);
            c->kill = true;
        }
        if (c->stop) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        h = c->h;
        if (h && (c->kill || nbd_aio_is_dead(h) || nbd_aio_is_closed(h))) {
            drop = h;
            timed_out = c->kill;
            c->h = NULL;
            c->kill = false;
            c->gen++;
        }
        c->armed = drop ? NULL : h;
        pthread_mutex_unlock(&c->lock);

        if (drop) {
            if (timed_out)
                log_error(backend, "nbd: %s: connection %u timed out, dropping it", c->nb->be.spec,
                          c->idx);
            else
                log_warn(backend, "nbd: %s: connection %u lost", c->nb->be.spec, c->idx);
            /* Fails whatever is still in flight (their free callbacks run). */
            nbd_close(drop);
            hup_spins = 0;
            continue;
        }

        struct pollfd pfd[2] = {{.fd = c->efd, .events = POLLIN}};
        nfds_t n = 1;
        unsigned dir = 0;
        if (h) {
            dir = nbd_aio_get_direction(h);
            pfd[1].fd = nbd_aio_get_fd(h);
            if (dir & LIBNBD_AIO_DIRECTION_READ)
                pfd[1].events |= POLLIN;
            if (dir & LIBNBD_AIO_DIRECTION_WRITE)
                pfd[1].events |= POLLOUT;
            n = 2;
        }
        if (poll(pfd, n, wait_ms) < 0) {
            if (errno != EINTR)
                log_error(backend, "nbd: poll: %m");
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            if (read(c->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_error(backend, "nbd: eventfd read: %m");
        }
        if (n < 2 || !pfd[1].revents)
            continue;
        short ev = pfd[1].revents;
        bool bad = ev & (POLLHUP | POLLERR | POLLNVAL);
        int r = 0;
        if ((ev & POLLOUT) || (bad && (dir & LIBNBD_AIO_DIRECTION_WRITE)))
            r = nbd_aio_notify_write(h);
        if (r == 0 && ((ev & POLLIN) || (bad && (dir & LIBNBD_AIO_DIRECTION_READ))))
            r = nbd_aio_notify_read(h);
        if (r < 0)
            log_debug(backend, "nbd: connection %u: %s", c->idx, nbd_get_error());
        /* A socket in error that libnbd does not turn into "dead" would make
         * poll spin: give it a few rounds, then drop the connection. */
        hup_spins = bad ? hup_spins + 1 : 0;
        if (hup_spins > 100) {
            LOCK_GUARD(&c->lock);
            if (c->h == h)
                c->kill = true;
        }
    }
    return NULL;
}

/* ---- submitting */

static int64_t issue(struct nbd_handle *h, const struct nbd_req *rq, void *buf, uint32_t count,
                     uint64_t offset, struct nbd_wait *w)
{
    nbd_completion_callback cb = {.callback = on_complete, .user_data = w, .free = on_free};
    switch (rq->kind) {
    case CMD_READ: {
        nbd_chunk_callback ccb = {.callback = on_read_chunk, .user_data = w};
        return nbd_aio_pread_structured(h, buf, count, offset, ccb, cb, rq->nbd_flags);
    }
    case CMD_WRITE:
        return nbd_aio_pwrite(h, buf, count, offset, cb, rq->nbd_flags);
    case CMD_FLUSH:
        return nbd_aio_flush(h, cb, rq->nbd_flags);
    case CMD_TRIM:
        return nbd_aio_trim(h, count, offset, cb, rq->nbd_flags);
    case CMD_ZERO:
        return nbd_aio_zero(h, count, offset, cb, rq->nbd_flags);
    case CMD_BLOCK_STATUS: {
        nbd_extent_callback ecb = {.callback = on_extents, .user_data = rq->batch};
        return nbd_aio_block_status(h, count, offset, ecb, cb, rq->nbd_flags);
    }
    }
    return -1;
}

/* Queue all commands of rq on c (splitting big ranges); a command that
 * cannot be queued records its error in w and stops the rest. Caller holds
 * c->lock and has a handle. -ENOTCONN: the handle died before the first
 * command went out (nothing was sent: another connection may take it). */
static int submit_locked(struct nbd_be *nb, struct nbd_conn *c, const struct nbd_req *rq,
                         struct nbd_wait *w)
{
    bool splittable = rq->kind != CMD_FLUSH && rq->kind != CMD_BLOCK_STATUS;
    uint32_t left = rq->count;
    uint64_t off = rq->offset;
    uint8_t *p = rq->buf;
    do {
        uint32_t n = splittable ? MIN(left, nb->chunk) : left;
        pthread_mutex_lock(&w->lock);
        w->pending++;
        pthread_mutex_unlock(&w->lock);
        int64_t cookie = issue(c->h, rq, p, n, off, w);
        if (cookie >= 0) {
            LOCK_GUARD(&w->lock);
            w->issued++;
        }
        if (cookie < 0) {
            /* libnbd already ran on_free for it. A handle that died since
             * we looked refuses with EINVAL ("wrong state"): that is the
             * lost connection, not a bad request. */
            int e = nbd_get_errno();
            bool dead = !nbd_aio_is_ready(c->h) && !nbd_aio_is_processing(c->h);
            log_debug(backend, "nbd: %s: cannot queue command: %s", nb->be.spec, nbd_get_error());
            LOCK_GUARD(&w->lock);
            if (dead && w->issued == 0)
                return -ENOTCONN;
            if (!w->err)
                w->err = dead ? EIO : e ? e : EIO;
            break;
        }
        left -= n;
        off += n;
        if (p)
            p += n;
    } while (left > 0);
    return 0;
}

/* Ask the poller to drop the handle the request went out on (if it is still
 * the current one); closing it fails every command on it, ours included. */
static void abort_conn(struct nbd_conn *c, uint64_t gen)
{
    {
        LOCK_GUARD(&c->lock);
        if (c->gen == gen && c->h)
            c->kill = true;
    }
    wake_poller(c);
}

static int run_on_conn(struct nbd_be *nb, struct nbd_conn *c, const struct nbd_req *rq,
                       bool may_connect)
{
    if (rq->count == 0 && rq->kind != CMD_FLUSH)
        return 0; /* libnbd rejects empty commands; there is nothing to do */
    struct nbd_wait w = {.pending = 0, .err = 0};
    cover_init(&w.cover, rq->offset, rq->kind == CMD_READ ? rq->count : 0);
    pthread_once(&condattr_once, condattr_init);
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, &condattr_mono);

    int r = 0;
    uint64_t gen = 0;
    bool wake = true;
    {
        LOCK_GUARD(&c->lock);
        r = ensure_connected_locked(nb, c, may_connect);
        if (r == 0) {
            gen = c->gen;
            r = submit_locked(nb, c, rq, &w);
            wake = c->armed != c->h || c->h == NULL ||
                   (nbd_aio_get_direction(c->h) & LIBNBD_AIO_DIRECTION_WRITE);
        }
    }
    if (r == 0) {
        if (wake)
            wake_poller(c);
        struct timespec deadline;
        deadline_after_ms(nb->timeout_ms, &deadline);
        bool timed_out = false;
        pthread_mutex_lock(&w.lock);
        while (w.pending > 0) {
            if (timed_out) {
                pthread_cond_wait(&w.cond, &w.lock);
                continue;
            }
            if (pthread_cond_timedwait(&w.cond, &w.lock, &deadline) == ETIMEDOUT && w.pending > 0) {
                timed_out = true;
                /* Not under w.lock: c->lock comes first in the lock order. */
                pthread_mutex_unlock(&w.lock);
                log_error(backend, "nbd: %s: request timed out after %" PRIu64 " ms", nb->be.spec,
                          nb->timeout_ms);
                abort_conn(c, gen);
                pthread_mutex_lock(&w.lock);
            }
        }
        bool incomplete = w.completed < w.issued;
        pthread_mutex_unlock(&w.lock);
        if (timed_out || incomplete)
            r = -EIO; /* some command never completed: its data is not there */
        else if (w.err)
            r = map_nbd_errno(w.err);
        /* A read the server called done must have filled buf exactly once;
         * else part of it holds whatever was there before. */
        if (rq->kind == CMD_READ && !timed_out && !incomplete &&
            (w.cover.bad || (!w.err && !cover_full(&w.cover)))) {
            log_cover(nb, &w.cover);
            r = -EIO;
        }
    }
    cover_free(&w.cover);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return r;
}

/* For an asynchronous command: the least busy connection, the first of
 * equals (put_conn above when the request is over). A light load stays on
 * one connection, so one poller and one server thread are woken and stay
 * warm, where round robin woke a different pair for every request; a heavy
 * load spreads over all. The counts are hints read without a lock: a race
 * only makes a pick less even. A connection that is down refuses the
 * command (aio_start), which a worker then runs blocking: */
static struct nbd_conn *pick_conn(struct nbd_be *nb)
{
    struct nbd_conn *best = &nb->conns[0];
    unsigned low = atomic_load_explicit(&best->busy, memory_order_relaxed);
    for (unsigned i = 1; i < nb->nconns && low > 0; i++) {
        unsigned b = atomic_load_explicit(&nb->conns[i].busy, memory_order_relaxed);
        if (b < low) {
            best = &nb->conns[i];
            low = b;
        }
    }
    atomic_fetch_add_explicit(&best->busy, 1, memory_order_relaxed);
    return best;
}

/* blocking requests take the connections in turn, so each one that is
 * down is reconnected (run_on_conn) by the next requests, not only the
 * first (the least busy one's) again and again. */
static struct nbd_conn *pick_conn_rr(struct nbd_be *nb)
{
    unsigned i = atomic_fetch_add_explicit(&nb->rr, 1, memory_order_relaxed);
    struct nbd_conn *c = &nb->conns[i % nb->nconns];
    atomic_fetch_add_explicit(&c->busy, 1, memory_order_relaxed);
    return c;
}

static int run(struct nbd_be *nb, const struct nbd_req *rq)
{
    struct nbd_conn *c = pick_conn_rr(nb);
    int r = run_on_conn(nb, c, rq, true);
    put_conn(c);
    /* c is down and could not be brought back just now (a reconnect in
     * progress or tried less than a second ago): the others that are up
     * take the request, so one lost connection of several does not fail
     * requests while the rest work. They are not reconnected here: a dead
     * upstream would cost a connect timeout per connection. */
    for (unsigned k = 1; r == -ENOTCONN && k < nb->nconns; k++) {
        struct nbd_conn *o = &nb->conns[(c->idx + k) % nb->nconns];
        atomic_fetch_add_explicit(&o->busy, 1, memory_order_relaxed);
        r = run_on_conn(nb, o, rq, false);
        put_conn(o);
    }
    return r == -ENOTCONN ? -EIO : r;
}

/* ---- ops */

static int nbd_be_flush(struct backend *be)
{
    struct nbd_be *nb = to_nbd(be);
    if (!nb->can_flush)
        return 0;
    struct nbd_req rq = {.kind = CMD_FLUSH};
    if (nb->multi_conn || nb->nconns == 1)
        return run(nb, &rq);
    /* Without multi-conn a flush only covers its own connection's writes. */
    int err = 0;
    for (unsigned i = 0; i < nb->nconns; i++) {
        int r = run_on_conn(nb, &nb->conns[i], &rq, true);
        if (r < 0 && !err)
            err = r == -ENOTCONN ? -EIO : r;
    }
    return err;
}

/* FUA goes on the wire when the server has it; otherwise (a caller that did
 * not go through backend_pwrite) the command is followed by a flush. */
static int run_fua(struct nbd_be *nb, struct nbd_req *rq, uint32_t flags)
{
    bool emulate = (flags & BE_FUA) && !nb->can_fua;
    if ((flags & BE_FUA) && nb->can_fua)
        rq->nbd_flags |= LIBNBD_CMD_FLAG_FUA;
    int r = run(nb, rq);
    if (r == 0 && emulate)
        r = nbd_be_flush(&nb->be);
    return r;
}

static int nbd_be_pread(struct backend *be, void *buf, uint32_t count, uint64_t offset)
{
    struct nbd_req rq = {.kind = CMD_READ, .buf = buf, .count = count, .offset = offset};
    return run(to_nbd(be), &rq);
}

/* Start one command of an asynchronous read or write (pread_async,
 * pwrite_async in backend.h). */
static int aio_start(struct nbd_be *nb, bool write, void *buf, uint32_t count, uint64_t offset,
                     uint32_t nbd_flags, struct be_aio *a)
{
    if (count == 0 || count > nb->chunk)
        return -EAGAIN; /* one command each; the rest wait on a worker */
    struct nbd_conn *c = pick_conn(nb);
    /* Two references: the command's (its free callback) and ours until
     * the bookkeeping below is done, so the request cannot finish under us. */
    a->owner = c;
    a->next = a->prev = NULL;
    a->issued = a->completed = 0;
    a->err = 0;
    cover_init(&a->cover, offset, write ? 0 : count);
    __atomic_store_n(&a->pending, 2, __ATOMIC_RELAXED);
    bool wake;
    {
        LOCK_GUARD(&c->lock);
        if (!c->h || c->kill || c->connecting) {
            put_conn(c);
            return -EAGAIN; /* (re)connecting blocks: a worker's job */
        }
        a->deadline_ns = now_ns() + nb->timeout_ms * 1000000;
        {
            LOCK_GUARD(&c->alock);
            a->prev = c->inflight_tail;
            if (c->inflight_tail)
                c->inflight_tail->next = a;
            else
                c->inflight = a;
            c->inflight_tail = a;
        }
        nbd_completion_callback cb = {
            .callback = on_async_complete, .user_data = a, .free = on_async_free};
        nbd_chunk_callback ccb = {.callback = on_async_read_chunk, .user_data = a};
        int64_t cookie =
            write ? nbd_aio_pwrite(c->h, buf, count, offset, cb, nbd_flags)
                  : nbd_aio_pread_structured(c->h, buf, count, offset, ccb, cb, nbd_flags);
        if (cookie < 0) {
            /* libnbd ran the free callback already: one reference left. */
            log_debug(backend, "nbd: %s: cannot queue command: %s", nb->be.spec, nbd_get_error());
            {
                LOCK_GUARD(&c->alock);
                aio_unlink_locked(c, a);
            }
            put_conn(c);
            return -EAGAIN;
        }
        a->issued = 1;
        wake = c->armed != c->h || (nbd_aio_get_direction(c->h) & LIBNBD_AIO_DIRECTION_WRITE);
    }
    if (wake)
        wake_poller(c);
    on_async_free(a); /* our reference */
    return 0;
}

static int nbd_be_pread_async(struct backend *be, void *buf, uint32_t count, uint64_t offset,
                              struct be_aio *a)
{
    return aio_start(to_nbd(be), false, buf, count, offset, 0, a);
}

static int nbd_be_pwrite_async(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                               uint32_t flags, struct be_aio *a)
{
    struct nbd_be *nb = to_nbd(be);
    if (nb->readonly || ((flags & BE_FUA) && !nb->can_fua))
        return -EAGAIN; /* the refusal, or FUA as write + flush: on a worker */
    return aio_start(nb, true, (void *)buf, count, offset,
                     (flags & BE_FUA) ? LIBNBD_CMD_FLAG_FUA : 0, a);
}

static int nbd_be_pwrite(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                         uint32_t flags)
{
    struct nbd_be *nb = to_nbd(be);
    if (nb->readonly)
        return -EPERM;
    struct nbd_req rq = {.kind = CMD_WRITE, .buf = (void *)buf, .count = count, .offset = offset};
    return run_fua(nb, &rq, flags);
}

static int nbd_be_trim(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct nbd_be *nb = to_nbd(be);
    if (nb->readonly)
        return -EPERM;
    if (!nb->can_trim)
        return 0; /* advisory */
    struct nbd_req rq = {.kind = CMD_TRIM, .count = count, .offset = offset};
    return run_fua(nb, &rq, flags);
}

static int nbd_be_zero(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct nbd_be *nb = to_nbd(be);
    if (nb->readonly)
        return -EPERM;
    if ((flags & BE_FAST_ZERO) && !nb->can_fast_zero)
        return -ENOTSUP;
    if (!nb->can_zero)
        return -EOPNOTSUPP; /* backend_zero writes the zeros instead */
    struct nbd_req rq = {.kind = CMD_ZERO, .count = count, .offset = offset};
    if (flags & BE_NO_HOLE)
        rq.nbd_flags |= LIBNBD_CMD_FLAG_NO_HOLE;
    if (flags & BE_FAST_ZERO)
        rq.nbd_flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
    /* A refused FAST_ZERO comes back as ENOTSUP, which map_nbd_errno keeps. */
    return run_fua(nb, &rq, flags);
}

static int nbd_be_extents(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                          void *opaque)
{
    struct nbd_be *nb = to_nbd(be);
    if (!nb->can_extents) {
        fn(opaque, offset, count, 0);
        return 0;
    }
    uint64_t pos = offset, end = offset + count;
    struct extent_batch batch;
    while (pos < end) {
        batch.end = end;
        batch.n = 0;
        struct nbd_req rq = {.kind = CMD_BLOCK_STATUS,
                             .count = (uint32_t)(end - pos),
                             .offset = pos,
                             .batch = &batch};
        int r = run(nb, &rq);
        if (r < 0)
            return r;
        if (batch.n == 0)
            return -EIO; /* the server described nothing: do not loop forever */
        for (unsigned i = 0; i < batch.n; i++)
            if (fn(opaque, batch.e[i].off, batch.e[i].len, batch.e[i].flags))
                return 0;
        pos = batch.e[batch.n - 1].off + batch.e[batch.n - 1].len;
    }
    return 0;
}

static void nbd_be_describe(struct backend *be, char *buf, size_t len)
{
    struct nbd_be *nb = to_nbd(be);
    char sz[32];
    snprintf(buf, len, "nbd %s (upstream export '%s', %s)", be->spec,
             nb->export_name ? nb->export_name : "", format_size(be->size, sz, sizeof(sz)));
}

static void nbd_be_close(struct backend *be)
{
    if (!be)
        return;
    struct nbd_be *nb = to_nbd(be);
    for (unsigned i = 0; nb->conns && i < nb->nconns; i++) {
        struct nbd_conn *c = &nb->conns[i];
        if (c->thread_started) {
            pthread_mutex_lock(&c->lock);
            c->stop = true;
            pthread_mutex_unlock(&c->lock);
            wake_poller(c);
            pthread_join(c->thread, NULL);
        }
        if (c->h) {
            /* Polite but non-blocking: queue NBD_CMD_DISC, then hang up
             * (nbd_shutdown would wait for a server that may be gone). */
            if (nbd_aio_is_ready(c->h))
                nbd_aio_disconnect(c->h, 0);
            nbd_close(c->h);
        }
        if (c->efd >= 0)
            close(c->efd);
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->alock);
    }
    free(nb->conns);
    free(nb->export_name);
    free(be->spec);
    free(nb);
}

static bool nbd_be_probe(const char *spec)
{
    static const char *const schemes[] = {"nbd://",       "nbds://",      "nbd+unix://",
                                          "nbds+unix://", "nbd+vsock://", "nbds+vsock://"};
    for (size_t i = 0; i < ARRAY_SIZE(schemes); i++)
        if (strncmp(spec, schemes[i], strlen(schemes[i])) == 0)
            return true;
    return false;
}

/* ---- --backing-dir for unix sockets */

static int hexdigit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* %XX-decode n bytes of a URI query part into a NUL-terminated copy, as
 * libnbd does before it uses a key or a value. */
static char *uri_unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1), *w = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexdigit((unsigned char)s[i + 1])) >= 0 &&
            (l = hexdigit((unsigned char)s[i + 2])) >= 0) {
            *w++ = (char)(h << 4 | l);
            i += 2;
        } else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    return out;
}

static bool path_beneath(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 1 && dir[0] == '/')
        return path[0] == '/' && path[1] != '\0';
    return strncmp(path, dir, n) == 0 && path[n] == '/' && path[n + 1] != '\0';
}

/* One socket= value: its realpath must lie beneath a --backing-dir. */
static int check_socket(const struct backend_params *p, const char *sock)
{
    _cleanup_free_ char *real = realpath(sock, NULL);
    if (!real) {
        int e = errno;
        backend_set_open_error("unix socket %s: %s", sock, strerror(e));
        return -e;
    }
    for (const char *const *d = p->backing_dirs; *d; d++)
        if (path_beneath(*d, real))
            return 0;
    backend_set_open_error("refused by --backing-dir: unix socket %s (%s) is not beneath any of "
                           "the backing directories",
                           sock, real);
    return -EPERM;
}

/* With --backing-dir, an nbd+unix:// (or nbds+unix://) back end may only
 * use sockets beneath the backing directories: a socket is a way into
 * whatever serves it. Every socket= parameter is checked (whichever one
 * libnbd picks). TCP and vsock back ends are not local paths and pass. */
static int check_unix_socket(const struct backend_params *p)
{
    if (!p->backing_dirs ||
        (strncmp(p->spec, "nbd+unix://", 11) != 0 && strncmp(p->spec, "nbds+unix://", 12) != 0))
        return 0;
    const char *q = strchr(p->spec, '?');
    bool found = false;
    while (q && *q && *q != '#') {
        q++;
        size_t n = strcspn(q, "&;#");
        const char *eq = memchr(q, '=', n);
        _cleanup_free_ char *key = uri_unescape(q, eq ? (size_t)(eq - q) : n);
        if (!key)
            return -ENOMEM;
        if (eq && strcmp(key, "socket") == 0) {
            _cleanup_free_ char *val = uri_unescape(eq + 1, n - (size_t)(eq + 1 - q));
            if (!val)
                return -ENOMEM;
            int r = check_socket(p, val);
            if (r < 0)
                return r;
            found = true;
        }
        q += n;
    }
    if (!found) {
        backend_set_open_error("refused by --backing-dir: %s names no socket= path to check",
                               p->spec);
        return -EPERM;
    }
    return 0;
}

static uint64_t timeout_from_env(void)
{
    const char *s = getenv("SHOAL_NBD_TIMEOUT_MS");
    if (s && *s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (*end == '\0' && v > 0)
            return v;
        log_warn(backend, "nbd: ignoring bad SHOAL_NBD_TIMEOUT_MS '%s'", s);
    }
    return NBD_DEFAULT_TIMEOUT_MS;
}

/* Read the export's properties from the first connection. */
static int learn_export(struct nbd_be *nb, struct nbd_handle *h, const struct backend_params *p)
{
    int64_t size = nbd_get_size(h);
    if (size < 0) {
        backend_set_open_error("%s", nbd_get_error());
        return -EIO;
    }
    nb->be.size = (uint64_t)size;
    nb->readonly = p->readonly || nbd_is_read_only(h) == 1;
    nb->can_flush = nbd_can_flush(h) == 1;
    nb->can_fua = nbd_can_fua(h) == 1;
    nb->can_trim = nbd_can_trim(h) == 1;
    nb->can_zero = nbd_can_zero(h) == 1;
    nb->can_fast_zero = nbd_can_fast_zero(h) == 1;
    nb->can_extents = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    nb->multi_conn = nbd_can_multi_conn(h) == 1;
    nb->export_name = nbd_get_export_name(h);

    int64_t minb = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    int64_t maxb = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    uint32_t min_block = minb > 0 ? (uint32_t)minb : 1;
    uint64_t chunk = maxb > 0 ? (uint64_t)maxb : NBD_DEFAULT_MAX_BLOCK;
    chunk = MIN(chunk, NBD_CHUNK_CAP);
    chunk -= chunk % min_block; /* split pieces stay aligned */
    nb->chunk = chunk ? (uint32_t)chunk : min_block;
    nb->be.min_block = min_block;

    uint32_t caps = BE_REMOTE;
    if (nb->readonly) {
        caps |= BE_READONLY;
    } else {
        caps |= nb->can_fua ? BE_CAN_FUA : 0;
        caps |= nb->can_trim ? BE_CAN_TRIM : 0;
        caps |= nb->can_zero ? BE_CAN_ZERO : 0;
        caps |= nb->can_zero && nb->can_fast_zero ? BE_CAN_FAST_ZERO : 0;
    }
    caps |= nb->can_flush ? BE_CAN_FLUSH : 0;
    caps |= nb->can_extents ? BE_CAN_EXTENTS : 0;
    caps |= nb->multi_conn ? BE_CAN_MULTI_CONN : 0;
    nb->be.caps = caps;

    unsigned k = p->conns ? p->conns : (nb->multi_conn ? NBD_DEFAULT_CONNS_MULTI : 1);
    if (k > NBD_MAX_CONNS)
        k = NBD_MAX_CONNS;
    if (k > 1 && !nb->multi_conn)
        log_warn(backend,
                 "nbd: %s does not advertise multi-conn; using %u connections anyway "
                 "(flushes go to all of them)",
                 nb->be.spec, k);
    nb->nconns = k;
    return 0;
}

static int nbd_be_open(const struct backend_params *p, struct backend **out)
{
    int cr = check_unix_socket(p);
    if (cr < 0)
        return cr;
    struct nbd_be *nb = calloc(1, sizeof(*nb));
    if (!nb)
        return -ENOMEM;
    nb->be.ops = &backend_nbd_ops;
    nb->be.priv = nb;
    nb->be.spec = strdup(p->spec);
    nb->timeout_ms = timeout_from_env();
    nb->connect_timeout_ms =
        p->connect_timeout_ms ? p->connect_timeout_ms : backend_connect_timeout();
    if (!nb->be.spec) {
        free(nb);
        return -ENOMEM;
    }

    struct nbd_handle *h0 = NULL;
    int r = connect_handle(nb, &h0);
    if (r < 0) {
        nbd_be_close(&nb->be);
        return r;
    }
    r = learn_export(nb, h0, p);
    if (r == 0) {
        nb->conns = calloc(nb->nconns, sizeof(*nb->conns));
        if (!nb->conns)
            r = -ENOMEM;
    }
    if (r < 0) {
        nbd_close(h0);
        nbd_be_close(&nb->be);
        return r;
    }
    uint64_t now = now_ns();
    for (unsigned i = 0; i < nb->nconns; i++) {
        struct nbd_conn *c = &nb->conns[i];
        c->nb = nb;
        c->idx = i;
        c->efd = -1;
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->alock, NULL);
        c->last_attempt_ns = now;
    }
    nb->conns[0].h = h0;
    for (unsigned i = 0; i < nb->nconns && r == 0; i++) {
        struct nbd_conn *c = &nb->conns[i];
        if (!c->h)
            r = connect_handle(nb, &c->h);
        /* Every connection must see the export the first one learnt (as a
         * reconnect must): a server that answers another size on another
         * connection is serving something else. */
        int64_t sz = r == 0 ? nbd_get_size(c->h) : 0;
        if (r == 0 && (sz < 0 || (uint64_t)sz != nb->be.size)) {
            backend_set_open_error("%s answered %" PRId64 " bytes on connection %u, %" PRIu64
                                   " on the first",
                                   nb->be.spec, sz, i + 1, nb->be.size);
            r = -EIO;
        }
        if (r == 0) {
            c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (c->efd < 0)
                r = -errno;
        }
        if (r == 0) {
            r = -pthread_create(&c->thread, NULL, poller_main, c);
            c->thread_started = r == 0;
        }
    }
    if (r < 0) {
        nbd_be_close(&nb->be);
        return r;
    }
    log_info(backend, "nbd: %s: %" PRIu64 " bytes, %u connection(s), caps 0x%x, block %u..%u",
             nb->be.spec, nb->be.size, nb->nconns, nb->be.caps, nb->be.min_block, nb->chunk);
    *out = &nb->be;
    return 0;
}

const struct backend_ops backend_nbd_ops = {
    .name = "nbd",
    .probe = nbd_be_probe,
    .open = nbd_be_open,
    .close = nbd_be_close,
    .pread = nbd_be_pread,
    .pread_async = nbd_be_pread_async,
    .pwrite_async = nbd_be_pwrite_async,
    .pwrite = nbd_be_pwrite,
    .flush = nbd_be_flush,
    .trim = nbd_be_trim,
    .zero = nbd_be_zero,
    .extents = nbd_be_extents,
    .describe = nbd_be_describe,
};
