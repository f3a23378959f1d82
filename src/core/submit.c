/* The request path (submit.h): where a request runs, and the two-sided
 * completion that lets the reply go out before the cache update. */
#include "core/submit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/bufpool.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "core/volume.h"

#define ZC_ARRAY_BYTES (VOL_ZC_MAX_BLOCKS * (sizeof(struct iovec) + sizeof(uint32_t)))
/* Trims and zeroes longer than the data path's 32-bit lengths go in steps
 * of this size (each one a range operation: see change_range in volume.c). */
#define CHANGE_STEP (1ull << 30)

/* ---- the thread's scratch ---- */

/* Every thread that runs requests (pool workers, front end threads that
 * serve hits and small misses) has one scratch, made on first use and
 * freed when the thread exits. The cache update runs on the thread that
 * ran the request, right after done, so one per thread is enough; except
 * that an asynchronous miss takes its thread's scratch along (volume_io.h)
 * and the thread takes another from a small pool, to which the miss gives
 * its own back once updated: in a steady state nothing is allocated. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

#define SCRATCH_POOL_MAX 64
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vol_scratch *pool[SCRATCH_POOL_MAX];
static unsigned pool_n;

static struct vol_scratch *scratch_get(void)
{
    {
        LOCK_GUARD(&pool_lock);
        if (pool_n)
            return pool[--pool_n];
    }
    return vol_scratch_new();
}

static void scratch_put(struct vol_scratch *s)
{
    {
        LOCK_GUARD(&pool_lock);
        if (pool_n < SCRATCH_POOL_MAX) {
            pool[pool_n++] = s;
            return;
        }
    }
    vol_scratch_free(s);
}

static void scratch_destructor(void *p)
{
    scratch_put(p);
}

static void scratch_key_init(void)
{
    if (pthread_key_create(&scratch_key, scratch_destructor) != 0)
        abort();
}

static struct vol_scratch *thread_scratch(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    struct vol_scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = scratch_get();
        if (s && pthread_setspecific(scratch_key, s) != 0) {
            scratch_put(s);
            s = NULL;
        }
    }
    return s;
}

/* ---- completion ---- */

static void release(struct vol_io *io)
{
    vol_req_release(io->v, &io->priv.vr); /* unpins a zero-copy hit */
    if (io->priv.buf)
        bufpool_put(io->priv.buf, io->priv.buflen);
    if (io->priv.zc_array)
        bufpool_put(io->priv.zc_array, ZC_ARRAY_BYTES);
    io->priv.buf = NULL;
    io->priv.zc_array = NULL;
    io->end(io);
}

static void put_ref(struct vol_io *io)
{
    if (__atomic_sub_fetch(&io->priv.refs, 1, __ATOMIC_ACQ_REL) == 0)
        release(io);
}

void vol_io_put(struct vol_io *io)
{
    /* The client's latency ends here, whatever the cache update still does. */
    io->priv.vr.reply_ns = now_ns();
    put_ref(io);
}

/* done and the cache update with this thread's scratch (the update first
 * for a small read: submit.h), then done's side lets go. io stays valid
 * throughout: done's side holds a reference. */
static void complete(struct vol_io *io)
{
    io->hit = io->op == VOL_IO_READ && io->status == 0 && io->priv.vr.hit;
    bool first = io->length <= VOL_UPDATE_FIRST_MAX && io->op != VOL_IO_WRITE;
    if (first)
        vol_req_update(io->v, &io->priv.vr);
    io->done(io);
    if (!first)
        vol_req_update(io->v, &io->priv.vr);
    put_ref(io);
}

static void fail(struct vol_io *io, int err)
{
    io->status = err;
    complete(io);
}

/* A copied read's data: the requested bytes of the span buffer. */
static void read_result(struct vol_io *io)
{
    if (io->status == 0 && io->length) {
        io->priv.one =
            (struct iovec){(uint8_t *)io->priv.buf + (io->offset & BLOCK_MASK), (size_t)io->length};
        io->iov = &io->priv.one;
        io->niov = 1;
    }
}

/* ---- running ---- */

/* The span buffer a read is fetched into (waiting for the pool's budget if
 * wait). 0 or -ENOMEM. */
static int read_buffer(struct vol_io *io, bool wait)
{
    size_t len = vol_read_span(io->offset, io->length);
    void *p = wait ? bufpool_get(len) : bufpool_try_get(len);
    if (!p)
        return -ENOMEM;
    io->priv.buf = p;
    io->priv.buflen = len;
    io->priv.vr.buf = p;
    return 0;
}

typedef int (*change_fn)(struct volume *v, struct vol_req *r, struct vol_scratch *s);

/* A trim or zero of any length; beyond 32 bits in steps. */
static int change_any(struct vol_io *io, struct vol_scratch *s, change_fn fn)
{
    struct vol_req *r = &io->priv.vr;
    uint64_t off = io->offset, left = io->length;
    while (left > UINT32_MAX) {
        r->offset = off;
        r->length = (uint32_t)CHANGE_STEP;
        int ret = fn(io->v, r, s);
        vol_req_finish(io->v, r);
        if (ret < 0)
            return ret;
        off += CHANGE_STEP;
        left -= CHANGE_STEP;
    }
    r->offset = off;
    r->length = (uint32_t)left;
    return fn(io->v, r, s);
}

static int run(struct vol_io *io, struct vol_scratch *s)
{
    struct volume *v = io->v;
    struct vol_req *r = &io->priv.vr;
    switch (io->op) {
    case VOL_IO_READ:
        r->flags &= ~VOL_NOWAIT;
        return vol_read(v, r, s);
    case VOL_IO_WRITE:
        return vol_write(v, r, s);
    case VOL_IO_TRIM:
        return change_any(io, s, vol_trim);
    case VOL_IO_ZERO:
        return change_any(io, s, vol_zero);
    case VOL_IO_FLUSH:
        return vol_flush(v);
    case VOL_IO_CACHE:
        return vol_prefetch(v, io->offset, MIN(io->length, (uint64_t)VOL_CACHE_MAX), s);
    case VOL_IO_EXTENTS:
        return vol_extents(v, io->offset, (uint32_t)MIN(io->length, (uint64_t)UINT32_MAX),
                           io->extent_fn, io->extent_opaque);
    case VOL_IO_COMPARE_WRITE:
        return vol_compare_write(v, r, s, &io->miscompare);
    case VOL_IO_COPY:
        return vol_copy(v, r, s, io->src, io->src_offset, &io->priv.buf, &io->priv.buflen);
    }
    return -EINVAL;
}

static void work_fn(struct work *w)
{
    struct vol_io *io = container_of(w, struct vol_io, priv.work);
    struct vol_scratch *s = thread_scratch();
    if (io->op == VOL_IO_READ && !io->priv.buf && read_buffer(io, true) < 0) {
        io->status = -ENOMEM;
        complete(io);
        return;
    }
    io->status = s ? run(io, s) : -ENOMEM;
    if (io->op == VOL_IO_READ)
        read_result(io);
    complete(io);
}

/* The hit path: pin the blocks and describe the reply in the cache's
 * memory. */
static int try_zero_copy(struct vol_io *io)
{
    uint64_t nb = vol_read_span(io->offset, io->length) / BLOCK_SIZE;
    if (nb == 0 || nb > VOL_ZC_MAX_BLOCKS)
        return -EAGAIN;
    struct iovec *iov = io->priv.iov_inline;
    uint32_t *pins = io->priv.pins_inline;
    if (nb > VOL_IO_INLINE_IOV) {
        io->priv.zc_array = bufpool_try_get(ZC_ARRAY_BYTES);
        if (!io->priv.zc_array)
            return -EAGAIN;
        iov = io->priv.zc_array;
        pins = (uint32_t *)((uint8_t *)io->priv.zc_array + VOL_ZC_MAX_BLOCKS * sizeof *iov);
    }
    unsigned niov = 0;
    if (vol_read_zc(io->v, &io->priv.vr, iov, pins, &niov) == 0) {
        io->iov = iov;
        io->niov = niov;
        return 0;
    }
    if (io->priv.zc_array) {
        bufpool_put(io->priv.zc_array, ZC_ARRAY_BYTES);
        io->priv.zc_array = NULL;
    }
    return -EAGAIN;
}

/* The back end answered an asynchronous miss or write: the request ends as
 * on a worker, on this thread (the back end's, or the submitter's if the
 * answer came first), with the scratch it took along. */
static void aio_finish(struct vol_io *io)
{
    struct vol_scratch *s = io->priv.scratch;
    if (io->op == VOL_IO_READ) {
        io->status = vol_read_fetched(io->v, &io->priv.vr, io->priv.aio_status);
        read_result(io);
    } else {
        io->status = vol_write_answered(io->v, &io->priv.vr, io->priv.aio_status);
    }
    complete(io); /* io may be gone after this */
    scratch_put(s);
}

static void aio_put(struct vol_io *io)
{
    if (__atomic_sub_fetch(&io->priv.aio_refs, 1, __ATOMIC_ACQ_REL) == 0)
        aio_finish(io);
}

static void aio_done(struct be_aio *a, int status)
{
    struct vol_io *io = container_of(a, struct vol_io, priv.aio);
    io->priv.aio_status = status;
    aio_put(io);
}

/* Before an attempt: the back end's request and the two references. */
static void aio_arm(struct vol_io *io)
{
    io->priv.aio.done = aio_done;
    io->priv.aio_refs = 2;
    io->priv.vr.aio = &io->priv.aio;
}

/* The back end's request is out (vol_xxx returned -EINPROGRESS): the
 * scratch s is the request's now, this thread takes another; then the
 * submitter's reference goes. */
static void aio_started(struct vol_io *io, struct vol_scratch *s)
{
    io->priv.scratch = s;
    pthread_setspecific(scratch_key, NULL);
    aio_put(io);
}

/* A write sent from here with pwrite_async (1), or -EAGAIN: a worker's. */
static int try_async_write(struct vol_io *io)
{
    struct vol_scratch *s = thread_scratch();
    if (!s)
        return -EAGAIN;
    aio_arm(io);
    int ret = vol_write_async(io->v, &io->priv.vr, s);
    io->priv.vr.aio = NULL;
    if (ret != -EINPROGRESS)
        return -EAGAIN;
    aio_started(io, s);
    return 1;
}

/* A small miss served here: the back end has it at hand (0, served), or
 * reads it asynchronously (1: the read finishes it), or -EAGAIN: it goes
 * to a worker. */
static int try_inline_miss(struct vol_io *io)
{
    struct vol_scratch *s = thread_scratch();
    if (!s)
        return -EAGAIN;
    struct vol_req *r = &io->priv.vr;
    r->flags |= VOL_NOWAIT;
    if (vol_workq(io->v))
        aio_arm(io);
    int ret = vol_read(io->v, r, s);
    r->flags &= ~VOL_NOWAIT;
    r->aio = NULL;
    if (ret == -EINPROGRESS) {
        aio_started(io, s);
        return 1;
    }
    if (ret == -EAGAIN)
        return ret;
    io->status = ret;
    read_result(io);
    return 0;
}

static int check(const struct vol_io *io)
{
    struct volume *v = io->v;
    if (vol_defunct(v))
        return -ESHUTDOWN;
    switch (io->op) {
    case VOL_IO_READ:
    case VOL_IO_WRITE:
        if (io->length > VOL_MAX_IO || (io->op == VOL_IO_WRITE && io->length && !io->payload))
            return -EINVAL;
        break;
    case VOL_IO_EXTENTS:
        if (!io->extent_fn)
            return -EINVAL;
        break;
    case VOL_IO_TRIM:
    case VOL_IO_ZERO:
    case VOL_IO_CACHE:
        break;
    case VOL_IO_FLUSH:
        return 0;
    case VOL_IO_COMPARE_WRITE:
        if (io->length > VOL_MAX_IO / 2 || (io->length && !io->payload))
            return -EINVAL;
        break;
    case VOL_IO_COPY:
        if (!io->src || io->length > VOL_MAX_IO)
            return -EINVAL;
        if (vol_defunct(io->src))
            return -ESHUTDOWN;
        if (vol_check_range(io->src, io->src_offset, io->length, -EINVAL) < 0)
            return -EINVAL;
        break;
    default:
        return -EINVAL;
    }
    return vol_check_range(v, io->offset, io->length, -EINVAL) < 0 ? -EINVAL : 0;
}

void vol_submit(struct vol_io *io)
{
    io->status = 0;
    io->iov = NULL;
    io->niov = 0;
    io->hit = false;
    memset(&io->priv, 0, sizeof io->priv);
    io->priv.refs = 2;
    io->priv.work.fn = work_fn;

    struct vol_req *r = &io->priv.vr;
    r->offset = io->offset;
    r->length = (uint32_t)MIN(io->length, (uint64_t)UINT32_MAX);
    r->flags = io->flags & (VOL_FUA | VOL_NO_HOLE | VOL_FAST_ZERO);
    r->buf = io->payload;
    r->start_ns = now_ns();

    int err = check(io);
    if (err < 0) {
        fail(io, err);
        return;
    }
    if (io->op == VOL_IO_READ) {
        if (io->length == 0 || try_zero_copy(io) == 0) {
            complete(io);
            return;
        }
        /* The submitting thread may hold replies only it will send, so
         * it never waits for buffers: a worker does. */
        bool may_wait = !vol_workq(io->v);
        if (read_buffer(io, may_wait) < 0 && may_wait) {
            fail(io, -ENOMEM);
            return;
        }
        if (io->priv.buf && (io->length <= VOL_INLINE_MISS_MAX ||
                             (io->length <= VOL_ASYNC_MISS_MAX && vol_reads_async(io->v)))) {
            int ret = try_inline_miss(io);
            if (ret == 0)
                complete(io);
            if (ret >= 0)
                return;
        }
    }
    struct workq *wq = vol_workq(io->v);
    if (wq && io->op == VOL_IO_WRITE && io->length <= VOL_ASYNC_MISS_MAX &&
        io->v->be->ops->pwrite_async && try_async_write(io) == 1)
        return;
    if (wq)
        workq_submit(wq, &io->priv.work);
    else
        work_fn(&io->priv.work);
}
