/* NBD transmission phase; see transmit.h for threads and lock rules. */
#include "frontend/nbd/transmit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/bufpool.h"
#include "common/busy_poll.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "core/submit.h"
#include "frontend/nbd/proto.h"

#define RBUF_SIZE (64u * 1024)
#define BATCH_MAX 32
/* A batch is flushed once its replies carry this much data: beyond it,
 * holding replies back only adds latency. */
#define BATCH_BYTES (256u * 1024)
/* iovecs gathered per writev when flushing a batch. */
#define FLUSH_IOV   1024
#define MAX_EXTENTS 1024
/* Oversized write payloads up to this size are read and dropped so the
 * stream stays in sync and the client gets EINVAL; larger ones end the
 * connection (nobody legitimate sends them). */
#define DISCARD_MAX (64u << 20)
/* The sender builds and sends replies and gives their requests back to the
 * core (unpinning, freeing buffers); it never hashes. */
#define SENDER_STACK (256u * 1024)
/* How often a reader waiting for its client checks that its volume is
 * still there. */
#define IDLE_SLICE_MS 1000

struct nbd_conn;
struct nbd_req;

struct extent_acc {
    struct nbd_req *r;
    uint64_t end;  /* of the request */
    uint64_t next; /* next offset expected */
    uint32_t max;
};

struct nbd_req {
    struct vol_io io;
    struct nbd_conn *c;
    uint64_t handle;
    uint64_t offset;
    uint32_t length;
    uint16_t cmd;
    uint16_t flags;
    uint32_t err; /* NBD wire error, 0 = success */
    void *buf;    /* write payload, or block status descriptors */
    size_t buflen;
    uint32_t nextents; /* block status descriptors in buf */
    struct extent_acc acc;
    bool submitted; /* handed to the core: it calls end when done with it */
    uint8_t hdr[NBD_STRUCTURED_REPLY_SIZE + 8 + 6 + 64];
    size_t charge; /* bytes counted against the connection's budget */
    struct nbd_req *next;
};

struct nbd_conn {
    const struct nbd_transmit_ctx *ctx;
    struct conn_io *io;
    struct volume *v; /* NULL once the volume was given back (let_go) */
    struct volume_conn vc;
    const struct nbd_handshake_result *hs;

    /* Lock order: send_lock before lock. */
    pthread_mutex_t send_lock;
    /* Under send_lock: a worker's reply the socket took only part of; it
     * must be finished before anything else goes out. */
    struct nbd_req *partial;
    size_t partial_sent;

    pthread_mutex_t lock;
    pthread_cond_t cond;     /* a slot or budget was freed */
    pthread_cond_t out_cond; /* work for the sender */
    unsigned inflight;
    size_t held;   /* bytes charged by in-flight requests */
    size_t budget; /* most bytes in flight before the reader stops reading */
    struct nbd_req *free;
    struct nbd_req *outq_head, *outq_tail; /* replies for the sender */
    bool out_kick;                         /* a partial reply waits */
    bool sender_stop;
    pthread_t sender;
    bool broken; /* a send failed: the connection is going down */

    uint8_t *rbuf;
    size_t rstart, rend;
    struct busy_poll poll; /* the reader's, for the wait for the next request */
    int timed_fd;          /* the socket, when IDLE_SLICE_MS is its SO_RCVTIMEO; else -1 */
    pthread_t reader;      /* the thread running nbd_transmit */

    struct nbd_req *batch_head, *batch_tail;
    unsigned batch_n;
    size_t batch_bytes;

    struct nbd_req reqs[NBD_MAX_INFLIGHT];
};

uint32_t nbd_errno_to_wire(int err)
{
    switch (err) {
    case 0:
        return 0;
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

static const char *wire_error_text(uint32_t e)
{
    switch (e) {
    case NBD_EPERM:
        return "operation not permitted";
    case NBD_ENOMEM:
        return "out of memory";
    case NBD_EINVAL:
        return "invalid request";
    case NBD_ENOSPC:
        return "no space (request beyond the end of the export?)";
    case NBD_EOVERFLOW:
        return "value too large";
    case NBD_ENOTSUP:
        return "operation not supported";
    case NBD_ESHUTDOWN:
        return "server is shutting down";
    default:
        return "input/output error";
    }
}

/* ---- request slots ---- */

static struct nbd_req *req_get(struct nbd_conn *c)
{
    LOCK_GUARD(&c->lock);
    while (!c->free)
        pthread_cond_wait(&c->cond, &c->lock);
    struct nbd_req *r = c->free;
    c->free = r->next;
    c->inflight++;
    r->next = NULL;
    r->buf = NULL;
    r->buflen = 0;
    r->err = 0;
    r->nextents = 0;
    r->submitted = false;
    return r;
}

static void req_release(struct nbd_req *r)
{
    struct nbd_conn *c = r->c;
    if (r->buf)
        bufpool_put(r->buf, r->buflen);
    r->buf = NULL;
    LOCK_GUARD(&c->lock);
    c->held -= r->charge;
    r->charge = 0;
    r->next = c->free;
    c->free = r;
    c->inflight--;
    pthread_cond_broadcast(&c->cond);
}

static bool have_free_slot(struct nbd_conn *c)
{
    LOCK_GUARD(&c->lock);
    return c->free != NULL;
}

/* A request may start when it fits the budget, or when nothing else is in
 * flight (so one request of the largest size always can). */
static bool budget_fits_locked(const struct nbd_conn *c, size_t bytes)
{
    return c->held == 0 || c->held + bytes <= c->budget;
}

/* ---- replies ---- */

/* Iovecs a reply needs at most. */
static unsigned reply_iovs(const struct nbd_req *r)
{
    return 1 + (r->io.niov > 1 ? r->io.niov : 1);
}

/* Append the read payload (the core's iovecs: into the cache for a RAM
 * hit, else its buffer). */
static int read_payload(struct nbd_req *r, struct iovec *iov)
{
    memcpy(iov, r->io.iov, r->io.niov * sizeof *iov);
    return (int)r->io.niov;
}

/* Build the reply for r into r->hdr and iov (at most reply_iovs(r) entries). */
static int build_reply(struct nbd_req *r, struct iovec *iov)
{
    struct nbd_conn *c = r->c;
    uint8_t *h = r->hdr;
    bool structured = c->hs->structured;

    if (!structured) {
        put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
        put_be32(h + 4, r->err);
        put_be64(h + 8, r->handle);
        iov[0] = (struct iovec){h, NBD_SIMPLE_REPLY_SIZE};
        if (r->cmd == NBD_CMD_READ && r->err == 0 && r->length)
            return 1 + read_payload(r, iov + 1);
        return 1;
    }

    put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
    put_be16(h + 4, NBD_REPLY_FLAG_DONE);
    put_be64(h + 8, r->handle);
    if (r->err) {
        const char *msg = wire_error_text(r->err);
        uint16_t mlen = (uint16_t)strlen(msg);
        put_be16(h + 6, NBD_REPLY_TYPE_ERROR);
        put_be32(h + 16, 6u + mlen);
        put_be32(h + 20, r->err);
        put_be16(h + 24, mlen);
        memcpy(h + 26, msg, mlen);
        iov[0] = (struct iovec){h, 26u + mlen};
        return 1;
    }
    switch (r->cmd) {
    case NBD_CMD_READ:
        if (r->length == 0)
            break;
        put_be16(h + 6, NBD_REPLY_TYPE_OFFSET_DATA);
        put_be32(h + 16, 8u + r->length);
        put_be64(h + 20, r->offset);
        iov[0] = (struct iovec){h, 28};
        return 1 + read_payload(r, iov + 1);
    case NBD_CMD_BLOCK_STATUS:
        put_be16(h + 6, NBD_REPLY_TYPE_BLOCK_STATUS);
        put_be32(h + 16, 4u + 8u * r->nextents);
        put_be32(h + 20, NBD_BASE_ALLOCATION_ID);
        iov[0] = (struct iovec){h, 24};
        iov[1] = (struct iovec){r->buf, 8u * r->nextents};
        return 2;
    default:
        break;
    }
    put_be16(h + 6, NBD_REPLY_TYPE_NONE);
    put_be32(h + 16, 0);
    iov[0] = (struct iovec){h, NBD_STRUCTURED_REPLY_SIZE};
    return 1;
}

static void mark_broken(struct nbd_conn *c, int err)
{
    if (!__atomic_exchange_n(&c->broken, true, __ATOMIC_ACQ_REL)) {
        if (err == -ETIMEDOUT)
            log_info(nbd, "client took no reply data for %.1f s: dropping the connection",
                     c->io->send_timeout_ms / 1000.0);
        else
            log_debug(nbd, "connection broken while sending: %s", strerror(-err));
        /* Wake the reader so the connection winds down. */
        shutdown(c->io->fd, SHUT_RDWR);
    }
}

static void send_iov_locked(struct nbd_conn *c, struct iovec *iov, int n)
{
    if (__atomic_load_n(&c->broken, __ATOMIC_ACQUIRE))
        return;
    int r = conn_io_writev_full(c->io, iov, n);
    if (r < 0)
        mark_broken(c, r);
}

/* The reply is out (or dropped): a submitted request goes back to the
 * core, which ends it (req_end) once it is done with it too. */
static void complete(struct nbd_req *r)
{
    if (r->err)
        volume_count_error(r->c->v);
    if (r->submitted)
        vol_io_put(&r->io);
    else
        req_release(r);
}

/* Send the rest of a reply the non-blocking path left half sent. Returns
 * the request (for the caller to complete once send_lock is released), or
 * NULL if there was none. */
static struct nbd_req *finish_partial_locked(struct nbd_conn *c)
{
    struct nbd_req *r = c->partial;
    if (!r)
        return NULL;
    struct iovec iov[2];
    int n = build_reply(r, iov);
    conn_io_iov_advance(iov, &n, c->partial_sent);
    send_iov_locked(c, iov, n);
    c->partial = NULL;
    c->partial_sent = 0;
    return r;
}

/* Send the replies of a list in order, gathering up to FLUSH_IOV iovecs per
 * writev (after any half-sent reply), then complete them. Blocks while the
 * client does not read, up to the send timeout. */
static void send_list(struct nbd_conn *c, struct nbd_req *list)
{
    struct iovec iov[FLUSH_IOV];
    int n = 0;
    struct nbd_req *done;
    {
        LOCK_GUARD(&c->send_lock);
        done = finish_partial_locked(c);
        for (struct nbd_req *r = list; r; r = r->next) {
            if (n + (int)reply_iovs(r) > FLUSH_IOV) {
                send_iov_locked(c, iov, n);
                n = 0;
            }
            n += build_reply(r, iov + n);
        }
        if (n)
            send_iov_locked(c, iov, n);
    }
    if (done)
        complete(done);
    while (list) {
        struct nbd_req *next = list->next;
        complete(list);
        list = next;
    }
}

/* Hand a reply to the connection's sender thread. */
static void queue_for_sender(struct nbd_req *r)
{
    struct nbd_conn *c = r->c;
    LOCK_GUARD(&c->lock);
    r->next = NULL;
    if (c->outq_tail)
        c->outq_tail->next = r;
    else
        c->outq_head = r;
    c->outq_tail = r;
    pthread_cond_signal(&c->out_cond);
}

/* A worker's reply. A worker never waits for the client: it sends what the
 * socket takes at once, if nobody else is sending, and leaves the rest (or
 * the whole reply) to the connection's sender thread. So a client that does
 * not read its replies holds only its own requests and its own threads,
 * never the shared worker pool. */
static void reply_from_worker(struct nbd_req *r)
{
    struct nbd_conn *c = r->c;
    if (c->io->ops->try_sendv && pthread_mutex_trylock(&c->send_lock) == 0) {
        if (!c->partial) {
            if (!__atomic_load_n(&c->broken, __ATOMIC_ACQUIRE)) {
                struct iovec iov[2];
                int n = build_reply(r, iov);
                size_t total = 0;
                for (int i = 0; i < n; i++)
                    total += iov[i].iov_len;
                ssize_t w = c->io->ops->try_sendv(c->io, iov, n);
                if (w < 0) {
                    mark_broken(c, (int)w);
                } else if ((size_t)w < total) {
                    /* Still under send_lock: nobody may complete r yet.
                     * Once it is released, r may be completed by the
                     * sender: wake it first (lock order: send_lock, then
                     * lock). */
                    c->partial = r;
                    c->partial_sent = (size_t)w;
                    {
                        LOCK_GUARD(&c->lock);
                        c->out_kick = true;
                        pthread_cond_signal(&c->out_cond);
                    }
                    pthread_mutex_unlock(&c->send_lock);
                    return;
                }
            }
            pthread_mutex_unlock(&c->send_lock);
            complete(r);
            return;
        }
        pthread_mutex_unlock(&c->send_lock);
    }
    queue_for_sender(r);
}

static void *sender_main(void *arg)
{
    struct nbd_conn *c = arg;
    for (;;) {
        struct nbd_req *list;
        {
            LOCK_GUARD(&c->lock);
            while (!c->outq_head && !c->out_kick && !c->sender_stop)
                pthread_cond_wait(&c->out_cond, &c->lock);
            if (!c->outq_head && !c->out_kick)
                return NULL; /* stopping, nothing left */
            list = c->outq_head;
            c->outq_head = c->outq_tail = NULL;
            c->out_kick = false;
        }
        send_list(c, list);
    }
}

/* Queue a reply for the reader's next flush (hits and early errors). */
static void reply_later(struct nbd_req *r)
{
    struct nbd_conn *c = r->c;
    r->next = NULL;
    if (c->batch_tail)
        c->batch_tail->next = r;
    else
        c->batch_head = r;
    c->batch_tail = r;
    c->batch_n++;
    if (r->cmd == NBD_CMD_READ && !r->err)
        c->batch_bytes += r->length;
}

static void flush_batch(struct nbd_conn *c)
{
    if (!c->batch_head)
        return;
    struct nbd_req *list = c->batch_head;
    c->batch_head = c->batch_tail = NULL;
    c->batch_n = 0;
    c->batch_bytes = 0;
    send_list(c, list);
}

/* ---- block status ---- */

static int add_extent(void *opaque, uint64_t off, uint64_t len, uint32_t flags)
{
    struct extent_acc *a = opaque;
    struct nbd_req *r = a->r;
    uint8_t *d = r->buf;
    if (off != a->next || len == 0)
        return 1; /* not contiguous: stop, report what we have */
    if (off + len > a->end)
        len = a->end - off;
    uint32_t st = 0;
    if (flags & VOL_EXTENT_HOLE)
        st |= NBD_STATE_HOLE;
    if (flags & VOL_EXTENT_ZERO)
        st |= NBD_STATE_ZERO;
    while (len > 0) {
        uint32_t piece = len > 0xfffff000u ? 0xfffff000u : (uint32_t)len;
        if (r->nextents > 0 && get_be32(d + 8 * (r->nextents - 1) + 4) == st &&
            (uint64_t)get_be32(d + 8 * (r->nextents - 1)) + piece <= 0xfffff000u) {
            uint8_t *last = d + 8 * (r->nextents - 1);
            put_be32(last, get_be32(last) + piece);
        } else {
            if (r->nextents == a->max)
                return 1;
            put_be32(d + 8 * r->nextents, piece);
            put_be32(d + 8 * r->nextents + 4, st);
            r->nextents++;
        }
        len -= piece;
        a->next += piece;
    }
    return a->next >= a->end;
}

/* Set up a block status request: the descriptor buffer and the
 * accumulator the core's extent walk fills (on a worker). */
static int block_status_setup(struct nbd_req *r)
{
    r->buflen = 8u * MAX_EXTENTS;
    r->buf = bufpool_get(r->buflen);
    if (!r->buf)
        return -ENOMEM;
    r->acc = (struct extent_acc){
        .r = r,
        .end = r->offset + r->length,
        .next = r->offset,
        .max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS,
    };
    r->io.extent_fn = add_extent;
    r->io.extent_opaque = &r->acc;
    return 0;
}

/* ---- completion (core/submit.h) ---- */

/* The core has the result: reply. On the reader thread (RAM hits, small
 * misses served at once, refusals) the reply joins the batch, and a miss's
 * batch goes out now, before the core hashes what it fetched; on a worker,
 * the worker's reply path. */
static void req_done(struct vol_io *io)
{
    struct nbd_req *r = container_of(io, struct nbd_req, io);
    r->err = nbd_errno_to_wire(-io->status);
    if (io->status == 0 && r->cmd == NBD_CMD_BLOCK_STATUS && r->nextents == 0) {
        /* Nothing reported: "allocated, contents unknown" is always true. */
        put_be32(r->buf, r->length);
        put_be32((uint8_t *)r->buf + 4, 0);
        r->nextents = 1;
    }
    struct nbd_conn *c = r->c;
    if (pthread_equal(pthread_self(), c->reader)) {
        reply_later(r);
        if (!io->hit)
            flush_batch(c);
    } else {
        reply_from_worker(r);
    }
}

/* The core is done with the request: the slot is free again. */
static void req_end(struct vol_io *io)
{
    req_release(container_of(io, struct nbd_req, io));
}

/* ---- request validation ---- */

static uint16_t allowed_flags(uint16_t cmd, bool structured)
{
    switch (cmd) {
    case NBD_CMD_READ:
        return NBD_CMD_FLAG_FUA | (structured ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
        return NBD_CMD_FLAG_FUA;
    case NBD_CMD_WRITE_ZEROES:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
    default:
        return 0;
    }
}

/* Validate a parsed request; 0 or a positive errno for the reply. */
static int validate(struct nbd_conn *c, const struct nbd_req *r)
{
    struct volume *v = c->v;
    const struct nbd_handshake_result *hs = c->hs;
    switch (r->cmd) {
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
    case NBD_CMD_WRITE_ZEROES:
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!hs->base_allocation)
            return EINVAL;
        break;
    default:
        return EINVAL;
    }
    if (r->flags & ~allowed_flags(r->cmd, hs->structured))
        return EINVAL;
    if (r->cmd == NBD_CMD_FLUSH)
        return (r->offset || r->length) ? EINVAL : 0;
    if ((r->cmd == NBD_CMD_READ || r->cmd == NBD_CMD_WRITE) && r->length > NBD_MAX_PAYLOAD)
        return EINVAL;
    if (r->cmd == NBD_CMD_BLOCK_STATUS && r->length == 0)
        return EINVAL;
    bool writes =
        r->cmd == NBD_CMD_WRITE || r->cmd == NBD_CMD_TRIM || r->cmd == NBD_CMD_WRITE_ZEROES;
    if (writes && (hs->tflags & NBD_FLAG_READ_ONLY))
        return EPERM;
    int past_end = (r->cmd == NBD_CMD_WRITE || r->cmd == NBD_CMD_WRITE_ZEROES) ? -ENOSPC : -EINVAL;
    int ret = vol_check_range(v, r->offset, r->length, past_end);
    if (ret < 0)
        return -ret == EOVERFLOW ? EINVAL : -ret;
    uint32_t align = hs->info.min_block;
    if (align > 1 && ((r->offset | r->length) & (align - 1)) &&
        r->offset + r->length != volume_size(v))
        return EINVAL;
    if ((r->flags & NBD_CMD_FLAG_FAST_ZERO) && !(hs->tflags & NBD_FLAG_SEND_FAST_ZERO))
        return EINVAL;
    return 0;
}

static enum vol_io_op io_op(uint16_t cmd)
{
    switch (cmd) {
    case NBD_CMD_READ:
        return VOL_IO_READ;
    case NBD_CMD_WRITE:
        return VOL_IO_WRITE;
    case NBD_CMD_TRIM:
        return VOL_IO_TRIM;
    case NBD_CMD_WRITE_ZEROES:
        return VOL_IO_ZERO;
    case NBD_CMD_FLUSH:
        return VOL_IO_FLUSH;
    case NBD_CMD_CACHE:
        return VOL_IO_CACHE;
    default: /* validate() let nothing else through */
        return VOL_IO_EXTENTS;
    }
}

static uint32_t vol_flags(uint16_t f)
{
    uint32_t vf = 0;
    if (f & NBD_CMD_FLAG_FUA)
        vf |= VOL_FUA;
    if (f & NBD_CMD_FLAG_NO_HOLE)
        vf |= VOL_NO_HOLE;
    if (f & NBD_CMD_FLAG_FAST_ZERO)
        vf |= VOL_FAST_ZERO;
    return vf;
}

/* ---- input ---- */

static void compact(struct nbd_conn *c)
{
    if (c->rstart == c->rend) {
        c->rstart = c->rend = 0;
    } else if (c->rstart > 0) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }
}

/* Read at least `need` buffered bytes. 0, 1 on EOF at a message boundary,
 * 2 when the volume was removed with force while it waited, or -errno.
 * Flushes pending replies before it may block. */
static int fill(struct nbd_conn *c, size_t need)
{
    while (c->rend - c->rstart < need) {
        compact(c);
        flush_batch(c);
        /* Idle clients may stay, but the wait is cut in slices: a volume
         * removed with force meanwhile is let go (its back end and the
         * image's lock with it) even if the client sends nothing. On a
         * plain socket the slice is its SO_RCVTIMEO (one recv a wait, no
         * poll before it); else the transport's timeout, which only this
         * thread uses (the sender's waits use send_timeout_ms). */
        if (c->timed_fd < 0)
            c->io->timeout_ms = IDLE_SLICE_MS;
        ssize_t n = conn_io_recv_polled(c->io, &c->poll, c->rbuf + c->rend, RBUF_SIZE - c->rend,
                                        c->timed_fd);
        c->io->timeout_ms = 0;
        if (n == -ETIMEDOUT) {
            if (c->v && volume_defunct(c->v))
                return 2;
            continue;
        }
        if (n == 0)
            return c->rend == c->rstart ? 1 : -ECONNRESET;
        if (n < 0)
            return (int)n;
        c->rend += (size_t)n;
    }
    return 0;
}

/* The next request header, parsed into r's header fields and taken from
 * the buffer: fill's results, or -EPROTO for a bad magic. */
static int next_header(struct nbd_conn *c, struct nbd_req *r)
{
    int f = fill(c, NBD_REQUEST_SIZE);
    if (f != 0)
        return f;
    const uint8_t *h = c->rbuf + c->rstart;
    if (get_be32(h) != NBD_REQUEST_MAGIC) {
        log_warn(nbd, "bad request magic 0x%08x: closing", get_be32(h));
        return -EPROTO;
    }
    r->flags = get_be16(h + 4);
    r->cmd = get_be16(h + 6);
    r->handle = get_be64(h + 8);
    r->offset = get_be64(h + 16);
    r->length = get_be32(h + 24);
    c->rstart += NBD_REQUEST_SIZE;
    return 0;
}

/* Move `len` payload bytes into dst (NULL: discard), using what is buffered
 * first and reading the rest straight from the socket. */
static int take_payload(struct nbd_conn *c, uint8_t *dst, size_t len)
{
    size_t have = MIN(len, c->rend - c->rstart);
    if (dst)
        memcpy(dst, c->rbuf + c->rstart, have);
    c->rstart += have;
    len -= have;
    if (len == 0)
        return 0;
    flush_batch(c);
    /* A write's buffer comes from the pool every connection shares (and
     * waits there when it is used up): a client that stops in the middle of
     * its payload must not hold it forever, or a few such clients would
     * stall every other client's writes and read misses. Like one that
     * stops reading its replies, it is dropped after the I/O timeout.
     * Between requests it may stay idle (timeout_ms is 0 there). */
    c->io->timeout_ms = c->io->send_timeout_ms;
    int r = dst ? conn_io_read_full(c->io, dst + have, len) : conn_io_discard(c->io, len);
    c->io->timeout_ms = 0;
    if (r == -ETIMEDOUT)
        log_info(nbd, "client sent no payload data for %.1f s: dropping the connection",
                 c->io->send_timeout_ms / 1000.0);
    return r;
}

/* Bytes a request holds while in flight: its buffers (for a read, the
 * core's span buffer), or for a RAM hit the cache slots its reply pins. */
static size_t request_bytes(const struct nbd_req *r)
{
    switch (r->cmd) {
    case NBD_CMD_READ:
        return (size_t)vol_read_span(r->offset, r->length);
    case NBD_CMD_WRITE:
        return r->length;
    case NBD_CMD_BLOCK_STATUS:
        return 8u * MAX_EXTENTS;
    default:
        return 0;
    }
}

/* Count r against the connection's budget, waiting (and so reading no more
 * requests) while the client's earlier replies hold too much: a client that
 * does not read its replies stops itself, not the server. */
static void charge(struct nbd_conn *c, struct nbd_req *r)
{
    size_t bytes = request_bytes(r);
    if (bytes == 0)
        return;
    bool fits;
    {
        LOCK_GUARD(&c->lock);
        fits = budget_fits_locked(c, bytes);
    }
    if (!fits)
        flush_batch(c); /* our own batch may hold what we wait for */
    LOCK_GUARD(&c->lock);
    while (!budget_fits_locked(c, bytes))
        pthread_cond_wait(&c->cond, &c->lock);
    c->held += bytes;
    r->charge = bytes;
}

static void wait_idle(struct nbd_conn *c)
{
    LOCK_GUARD(&c->lock);
    while (c->inflight > 0)
        pthread_cond_wait(&c->cond, &c->lock);
}

/* The answer to a request for a volume removed with force: a flush
 * succeeds when the removal settled the volume (a move flushed its back
 * end under the write fence, so every write this client was told of is on
 * stable storage); everything else fails. A live migration's source QEMU
 * flushes before it hands over, and fails the migration if that flush
 * fails. */
static int gone_errno(uint16_t cmd, bool settled)
{
    return cmd == NBD_CMD_FLUSH && settled ? 0 : ESHUTDOWN;
}

/* After the volume went (and was given back): answer each request with
 * gone_errno, on this thread, until the client disconnects. The client
 * keeps its connection, so it does not reconnect to an export that is no
 * longer here (and fail for good). */
static int serve_gone(struct nbd_conn *c, bool settled)
{
    for (;;) {
        struct nbd_req r = {.c = c};
        int f = next_header(c, &r);
        if (f != 0)
            return f > 0 ? 0 : f;
        if (r.cmd == NBD_CMD_DISC)
            return 0;
        if (r.cmd == NBD_CMD_WRITE) {
            if (r.length > DISCARD_MAX)
                return -EPROTO;
            int ret = take_payload(c, NULL, r.length);
            if (ret < 0)
                return ret;
        }
        r.err = nbd_errno_to_wire(gone_errno(r.cmd, settled));
        struct iovec iov[2];
        int n = build_reply(&r, iov);
        int ret = conn_io_writev_full(c->io, iov, n);
        if (ret < 0)
            return ret;
    }
}

/* Handle one request whose header was just parsed. Returns 0 to go on, 1 to
 * end the connection cleanly (DISC), or -errno to drop it. */
static int handle_request(struct nbd_conn *c, struct nbd_req *r)
{
    int err = validate(c, r);
    /* Answered here, never submitted: a volume removed with force. */
    bool gone = !err && volume_defunct(c->v);
    if (gone)
        err = gone_errno(r->cmd, volume_settled(c->v));
    if (!err && c->ctx->stopping && __atomic_load_n(c->ctx->stopping, __ATOMIC_ACQUIRE))
        err = ESHUTDOWN;

    if (!err)
        charge(c, r);
    if (r->cmd == NBD_CMD_WRITE) {
        if (err) {
            if (r->length > DISCARD_MAX) {
                log_warn(nbd, "write payload of %u bytes refused: closing", r->length);
                return -EPROTO;
            }
            int ret = take_payload(c, NULL, r->length);
            if (ret < 0)
                return ret;
        } else {
            r->buflen = r->length ? r->length : 1;
            r->buf = bufpool_get(r->buflen);
            if (!r->buf)
                return -ENOMEM;
            int ret = take_payload(c, r->buf, r->length);
            if (ret < 0)
                return ret;
        }
    }
    if (err || gone) {
        r->err = nbd_errno_to_wire(err);
        reply_later(r);
        return 0;
    }

    r->io = (struct vol_io){
        .v = c->v,
        .op = io_op(r->cmd),
        .flags = vol_flags(r->flags),
        .offset = r->offset,
        .length = r->length,
        .payload = r->cmd == NBD_CMD_WRITE ? r->buf : NULL,
        .done = req_done,
        .end = req_end,
    };
    if (r->cmd == NBD_CMD_BLOCK_STATUS && block_status_setup(r) < 0)
        return -ENOMEM;
    r->submitted = true;
    vol_submit(&r->io);
    return 0;
}

/* Give the volume back: its connection count and the caller's reference
 * (the last one frees it, its back end and the image's lock). */
static void let_go(struct nbd_conn *c)
{
    volume_conn_detach(c->v, &c->vc);
    volume_put(c->v);
    c->v = NULL;
}

/* Budget per connection: a share of the I/O buffer pool, so a few clients
 * that stop reading cannot take all of it; never below one largest
 * request (which may always run alone anyway). */
static size_t conn_budget(const struct nbd_transmit_ctx *ctx)
{
    if (ctx->conn_budget)
        return ctx->conn_budget;
    uint64_t b = bufpool_limit() / 16;
    return (size_t)MIN(MAX(b, (uint64_t)8 << 20), (uint64_t)256 << 20);
}

int nbd_transmit(const struct nbd_transmit_ctx *ctx, struct conn_io *io, struct volume *v,
                 const struct nbd_handshake_result *hs)
{
    struct nbd_conn *c = calloc(1, sizeof *c);
    if (c)
        c->rbuf = malloc(RBUF_SIZE);
    if (!c || !c->rbuf) {
        free(c);
        volume_put(v);
        return -ENOMEM;
    }
    /* No kick (engine.h): a forced removal does not end the connection;
     * the reader notices it within IDLE_SLICE_MS and lets the volume go. */
    volume_conn_attach(v, &c->vc);
    c->timed_fd = -1;
    struct timeval tv = {.tv_sec = IDLE_SLICE_MS / 1000, .tv_usec = IDLE_SLICE_MS % 1000 * 1000};
    if (!io->tls && setsockopt(io->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0)
        c->timed_fd = io->fd;
    c->ctx = ctx;
    c->io = io;
    c->v = v;
    c->hs = hs;
    c->reader = pthread_self();
    c->budget = conn_budget(ctx);
    /* The send wait's limit, and the receive wait's in a payload. */
    io->send_timeout_ms = ctx->io_timeout_ms > 0 ? ctx->io_timeout_ms : NBD_IO_TIMEOUT_MS;
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_cond_init(&c->out_cond, NULL);
    for (int i = NBD_MAX_INFLIGHT - 1; i >= 0; i--) {
        c->reqs[i].c = c;
        c->reqs[i].next = c->free;
        c->free = &c->reqs[i];
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SENDER_STACK);
    int ret = -pthread_create(&c->sender, &attr, sender_main, c);
    pthread_attr_destroy(&attr);
    if (ret < 0) {
        log_warn(nbd, "cannot start a sender thread: %s", strerror(-ret));
        let_go(c);
        pthread_cond_destroy(&c->out_cond);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->send_lock);
        free(c->rbuf);
        free(c);
        return ret;
    }

    bool gone = false; /* the volume was removed with force */
    for (;;) {
        if (__atomic_load_n(&c->broken, __ATOMIC_ACQUIRE)) {
            ret = -EPIPE;
            break;
        }
        struct nbd_req hdr;
        int f = next_header(c, &hdr);
        if (f == 2) {
            gone = true;
            break;
        }
        if (f != 0) {
            ret = f > 0 ? 0 : f;
            break;
        }
        if (hdr.cmd == NBD_CMD_DISC) {
            log_debug(nbd, "client disconnect");
            break;
        }
        if (!have_free_slot(c))
            flush_batch(c); /* our own batch may hold the slots we wait for */
        struct nbd_req *r = req_get(c);
        r->handle = hdr.handle;
        r->cmd = hdr.cmd;
        r->flags = hdr.flags;
        r->offset = hdr.offset;
        r->length = hdr.length;
        int hr = handle_request(c, r);
        if (hr < 0) {
            req_release(r);
            ret = hr;
            break;
        }
        /* A volume removed with force (moved to another node, say): let
         * it go once what was sent is answered, so its back end (the
         * image's lock) goes with it; the connection stays (serve_gone). */
        if (volume_defunct(c->v)) {
            gone = true;
            break;
        }
        if (c->batch_n >= BATCH_MAX || c->batch_bytes >= BATCH_BYTES)
            flush_batch(c);
    }
    flush_batch(c);
    wait_idle(c); /* the sender sends (or drops, if broken) what is queued */
    {
        LOCK_GUARD(&c->lock);
        c->sender_stop = true;
        pthread_cond_signal(&c->out_cond);
    }
    pthread_join(c->sender, NULL);
    bool settled = gone && volume_settled(v);
    let_go(c);
    if (gone && ret == 0) {
        log_debug(nbd, "export '%s' is gone: answering its client without it (flushes %s)",
                  hs->name, settled ? "succeed" : "fail");
        ret = serve_gone(c, settled);
    }
    pthread_mutex_destroy(&c->send_lock);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    pthread_cond_destroy(&c->out_cond);
    free(c->rbuf);
    free(c);
    return ret;
}
