/* The protocol-neutral request path (core/submit.h), driven the way a front
 * end drives it, over the in-memory fake back end (random content, so a
 * misplaced or stale block shows), once with the engine running requests on
 * the submitting thread (workers = 0) and once with a pool of 2 workers.
 * What it proves, by comparing bytes with the fake's data (not counters):
 *
 *  - reads: misses return exactly [offset, offset+length) (unaligned, 1 MiB,
 *    VOL_MAX_IO) gathered from io->iov; a second read is a hit (io->hit,
 *    the fake not asked) with the same bytes, for zero-copy hits of <= 4
 *    blocks (inline iovecs), of > 4 (the pooled array) and for hits too
 *    large for zero copy; small misses the back end has at hand are served
 *    on the submitting thread, everything that may block on a worker, and a
 *    stalled back end never blocks vol_submit (workers = 2);
 *  - writes, partial writes, ZERO, TRIM (compared with the fake, whose trim
 *    leaves 0xEE), FLUSH, EXTENTS (extent_fn covers the range in order
 *    before done), CACHE (warms: later reads hit without back end reads);
 *    the payload is never modified and is not used after end (it is
 *    poisoned and freed there);
 *  - errors come back through done as negative errnos: out of range, too
 *    long, no payload, unknown op, read-only volume (-EPERM), FAST_ZERO
 *    the back end cannot do (-ENOTSUP), back end read and write errors
 *    (nothing stale cached: later reads are right), a volume removed with
 *    force (-ESHUTDOWN; an in-flight request still completes once);
 *  - ordering: done exactly once, end exactly once and only after done
 *    returned AND vol_io_put was called, on one of those two threads; with
 *    vol_io_put inside done, later from the same thread, and later from
 *    another thread (several stashed requests put in reverse order); the
 *    core never touches io after end (io is poisoned and freed there, which
 *    ASan turns into a report); the cache update runs after done without
 *    waiting for vol_io_put;
 *  - pins: a zero-copy hit's iov stays valid and unchanged until vol_io_put
 *    while the cache is shrunk, the blocks are overwritten and the whole
 *    volume is read through a tiny cache; after put+end the store is
 *    consistent (store_check), later reads are right, and every slot of a
 *    64-block LRU cache holds content again (a pin kept past end would
 *    leave its slot dead);
 *  - with acceleration off, every request goes to the back end and still
 *    returns the right bytes;
 *  - concurrency: threads hammer disjoint ranges with random reads (batched,
 *    in flight together), writes, zeroes, trims and prefetches, putting
 *    sometimes in done, sometimes later, sometimes from a shared putter
 *    thread; every read is checked against a model and the fake's data is
 *    checked against the model at the end.
 *
 * Callbacks run on other threads, where cmocka cannot assert: they record
 * the first contract violation in the request's tracker, which the test
 * thread checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/bufpool.h"
#include "core/block.h"
#include "core/engine.h"
#include "core/fingerprint.h"
#include "core/store.h"
#include "core/submit.h"
#include "core/volume.h"
#include "core/volume_io.h"
#include "fake_be.h"

#define VOL_SIZE    (8u << 20)
#define CACHE_BYTES (96ull << 20)
#define WAIT_SEC    30

#define TMIN(a, b) ((a) < (b) ? (a) : (b))

static unsigned g_workers; /* the engine mode of the group being run */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the fake, with a non-blocking read and extents ---- */

static const struct backend_ops *base_ops; /* the fake's own */
static struct backend_ops wrap_ops;
/* pread_nowait: 0 = nothing at hand (-EAGAIN, like a page-cache miss),
 * 1 = everything at hand, 2 = reads starting in an even block at hand.
 * Atomic. */
static int g_nowait;
static unsigned g_nowait_calls; /* atomic */

static int w_pread_nowait(struct backend *be, void *buf, uint32_t n, uint64_t off)
{
    __atomic_add_fetch(&g_nowait_calls, 1, __ATOMIC_RELAXED);
    int m = __atomic_load_n(&g_nowait, __ATOMIC_RELAXED);
    if (m == 0 || (m == 2 && (off / BLOCK_SIZE) % 2))
        return -EAGAIN;
    return base_ops->pread(be, buf, n, off);
}

/* pread_async, in the group that has it (g_async): a completer thread
 * reads each queued read with the fake's own pread (which honours its
 * pause and failures) and calls done, in order, often before the submitter
 * has let go of the request. g_async_refuse: -EAGAIN, as a back end with
 * no live connection. */
static int g_async;
static int g_async_refuse;       /* atomic */
static unsigned g_async_calls;   /* atomic */
static unsigned g_async_served;  /* atomic: reads the completer answered */
static unsigned g_async_written; /* atomic: writes the completer answered */
struct aq_item {
    struct be_aio *a;
    struct backend *be;
    void *buf;
    uint32_t n, flags;
    uint64_t off;
    bool write;
};
#define AQ_MAX 1024
static pthread_mutex_t aq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t aq_cond = PTHREAD_COND_INITIALIZER;
static struct aq_item aq[AQ_MAX];
static unsigned aq_head, aq_tail;
static pthread_t aq_thread;
static pthread_t aq_tid; /* the completer's, for done_tid checks */

static void *aq_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&aq_lock);
        while (aq_head == aq_tail)
            pthread_cond_wait(&aq_cond, &aq_lock);
        struct aq_item it = aq[aq_head++ % AQ_MAX];
        pthread_mutex_unlock(&aq_lock);
        int r = it.write ? backend_pwrite(it.be, it.buf, it.n, it.off, it.flags)
                         : base_ops->pread(it.be, it.buf, it.n, it.off);
        __atomic_add_fetch(it.write ? &g_async_written : &g_async_served, 1, __ATOMIC_RELAXED);
        it.a->done(it.a, r);
    }
    return NULL;
}

static int aq_push(struct aq_item it)
{
    __atomic_add_fetch(&g_async_calls, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&g_async_refuse, __ATOMIC_RELAXED))
        return -EAGAIN;
    pthread_mutex_lock(&aq_lock);
    if (aq_tail - aq_head == AQ_MAX) {
        pthread_mutex_unlock(&aq_lock);
        return -EAGAIN;
    }
    aq[aq_tail++ % AQ_MAX] = it;
    pthread_cond_signal(&aq_cond);
    pthread_mutex_unlock(&aq_lock);
    return 0;
}

static int w_pwrite_async(struct backend *be, const void *buf, uint32_t n, uint64_t off,
                          uint32_t flags, struct be_aio *a)
{
    return aq_push((struct aq_item){
        .a = a, .be = be, .buf = (void *)buf, .n = n, .off = off, .flags = flags, .write = true});
}

static int w_pread_async(struct backend *be, void *buf, uint32_t n, uint64_t off, struct be_aio *a)
{
    return aq_push((struct aq_item){.a = a, .be = be, .buf = buf, .n = n, .off = off});
}

static void aq_start(void)
{
    assert_int_equal(pthread_create(&aq_thread, NULL, aq_main, NULL), 0);
    aq_tid = aq_thread;
    pthread_detach(aq_thread); /* blocked on its queue at exit */
}

/* Extents: alternating 64 KiB runs of data and zero holes. */
#define EXT_UNIT (64u * 1024)

static uint32_t ext_flags(uint64_t pos)
{
    return (pos / EXT_UNIT) % 2 ? BE_EXTENT_HOLE | BE_EXTENT_ZERO : 0;
}

static int w_extents(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                     void *opaque)
{
    (void)be;
    uint64_t pos = offset, end = offset + count;
    while (pos < end) {
        uint64_t n = TMIN(EXT_UNIT - pos % EXT_UNIT, end - pos);
        if (fn(opaque, pos, n, ext_flags(pos)))
            break;
        pos += n;
    }
    return 0;
}

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill_random(uint8_t *p, size_t n, uint64_t *seed)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t r = xs(seed);
        memcpy(p + i, &r, 8);
    }
    for (; i < n; i++)
        p[i] = (uint8_t)xs(seed);
}

/* A fake of random content (no two blocks alike); wrapped: with
 * pread_nowait and extents. */
static struct fake *new_fake(uint64_t size, uint64_t seed, bool wrap)
{
    struct fake *f = fake_new(size, 0);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345;
    fill_random(f->data, size, &s);
    if (wrap) {
        base_ops = f->be.ops;
        wrap_ops = *base_ops;
        wrap_ops.pread_nowait = g_async ? NULL : w_pread_nowait;
        wrap_ops.pread_async = g_async ? w_pread_async : NULL;
        wrap_ops.pwrite_async = g_async ? w_pwrite_async : NULL;
        wrap_ops.extents = w_extents;
        f->be.ops = &wrap_ops;
        f->be.caps |= BE_CAN_EXTENTS;
    }
    return f;
}

static unsigned fake_preads(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    unsigned n = f->preads;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static unsigned fake_pwrites(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    unsigned n = f->pwrites;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static void fake_set_fail(struct fake *f, int reads, int writes)
{
    pthread_mutex_lock(&f->lock);
    f->fail_reads = reads;
    f->fail_writes = writes;
    pthread_mutex_unlock(&f->lock);
}

/* A copy of the fake's bytes (taken under its lock: workers write it). */
static uint8_t *fake_copy(struct fake *f, uint64_t off, uint64_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    pthread_mutex_lock(&f->lock);
    memcpy(p, f->data + off, len);
    pthread_mutex_unlock(&f->lock);
    return p;
}

/* ---- fixture ---- */

struct fix {
    struct engine *e;
    struct volume *v;
    struct fake *f;
    unsigned workers;
};

static struct volume *add_vol(struct engine *e, const char *name, struct fake *f, bool ro)
{
    struct volume_config cfg = {.name = name, .readonly = ro};
    assert_int_equal(engine_add_volume_backend(e, &cfg, &f->be), 0);
    struct volume *v = engine_get_volume(e, name);
    assert_non_null(v);
    return v;
}

static int setup(void **state)
{
    struct fix *x = calloc(1, sizeof *x);
    x->workers = g_workers;
    struct engine_config ec = {.cache_bytes = CACHE_BYTES, .workers = g_workers};
    assert_int_equal(engine_create(&ec, &x->e), 0);
    x->f = new_fake(VOL_SIZE, 1, true);
    x->v = add_vol(x->e, "vol", x->f, false);
    __atomic_store_n(&g_nowait, 0, __ATOMIC_RELAXED);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fix *x = *state;
    /* A failed test may have left a back end read stalled: let it go, or
     * the worker pool never drains. */
    fake_release(x->f);
    fake_set_fail(x->f, 0, 0);
    if (x->v)
        volume_put(x->v);
    engine_destroy(x->e);
    free(x);
    return 0;
}

/* ---- one request, tracked ---- */

enum put_mode {
    PUT_IN_DONE, /* vol_io_put from inside done */
    PUT_LATER,   /* the test thread puts after done returned */
    PUT_OTHER,   /* another thread puts after done returned */
    PUT_MANUAL,  /* the test decides */
};

struct call {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum put_mode mode;
    enum vol_io_op op;
    uint64_t off, len;
    struct vol_io *io;    /* until end */
    uint8_t *payload;     /* given to the core; poisoned and freed in end */
    uint8_t *payload_ref; /* what it held at submit */
    uint64_t plen;        /* payload bytes: len, or 2 x len for COMPARE_WRITE */
    uint64_t miscompare;  /* COMPARE_WRITE's, from done */
    pthread_t submit_tid, done_tid, put_tid, end_tid;
    bool has_put_tid;
    int submitting; /* atomic: vol_submit has not returned */
    int done_calls, end_calls;
    bool done_returned, put_called, ended;
    bool done_in_submit; /* done ran inside vol_submit on its thread */
    int status;
    bool hit;
    uint8_t *data; /* READ: the reply's bytes gathered in done */
    char bad[200]; /* the first violation seen */
};

static void note_bad(struct call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_bad(struct call *c, const char *fmt, ...)
{
    if (c->bad[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->bad, sizeof c->bad, fmt, ap);
    va_end(ap);
}

/* The reply's iovecs must cover exactly len bytes; copy them into out. */
static bool gather(const struct vol_io *io, uint64_t len, uint8_t *out, char *why, size_t whylen)
{
    uint64_t got = 0;
    if (len && (!io->iov || io->niov == 0)) {
        snprintf(why, whylen, "no iovecs for a %llu-byte read", (unsigned long long)len);
        return false;
    }
    for (unsigned i = 0; i < io->niov; i++) {
        if (io->iov[i].iov_len > len - got) {
            snprintf(why, whylen, "iovecs exceed the length (%llu)", (unsigned long long)len);
            return false;
        }
        if (io->iov[i].iov_len && !io->iov[i].iov_base) {
            snprintf(why, whylen, "NULL iov_base");
            return false;
        }
        memcpy(out + got, io->iov[i].iov_base, io->iov[i].iov_len);
        got += io->iov[i].iov_len;
    }
    if (got != len) {
        snprintf(why, whylen, "iovecs cover %llu of %llu bytes", (unsigned long long)got,
                 (unsigned long long)len);
        return false;
    }
    return true;
}

/* Is the reply (still) what done saw? Under c->lock. */
static void recheck_reply(struct call *c, const char *when)
{
    if (c->op != VOL_IO_READ || c->status != 0 || !c->io)
        return;
    uint8_t *tmp = malloc(c->len ? c->len : 1);
    char why[120] = "";
    if (!gather(c->io, c->len, tmp, why, sizeof why))
        note_bad(c, "%s: %s", when, why);
    else if (memcmp(tmp, c->data, c->len) != 0)
        note_bad(c, "%s: the reply's bytes changed before vol_io_put", when);
    free(tmp);
}

static void on_done(struct vol_io *io)
{
    struct call *c = io->opaque;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&c->lock);
    c->done_calls++;
    if (c->done_calls != 1)
        note_bad(c, "done called %d times", c->done_calls);
    if (c->end_calls)
        note_bad(c, "done after end");
    c->done_tid = self;
    c->done_in_submit =
        __atomic_load_n(&c->submitting, __ATOMIC_ACQUIRE) && pthread_equal(self, c->submit_tid);
    c->status = io->status;
    c->hit = io->hit;
    c->miscompare = io->miscompare;
    if (io->status > 0)
        note_bad(c, "positive status %d", io->status);
    if (c->op == VOL_IO_READ && io->status == 0) {
        char why[120] = "";
        if (!gather(io, c->len, c->data, why, sizeof why))
            note_bad(c, "done: %s", why);
    }
    bool put_here = c->mode == PUT_IN_DONE;
    if (put_here) {
        c->put_called = true;
        c->put_tid = self;
        c->has_put_tid = true;
    }
    pthread_mutex_unlock(&c->lock);
    if (put_here) {
        vol_io_put(io);
        /* io may not be touched any more by us; end must still be pending. */
        pthread_mutex_lock(&c->lock);
        if (c->end_calls)
            note_bad(c, "end ran inside vol_io_put called from done, before done returned");
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_lock(&c->lock);
    c->done_returned = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void on_end(struct vol_io *io)
{
    struct call *c = io->opaque;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&c->lock);
    c->end_calls++;
    if (c->end_calls != 1)
        note_bad(c, "end called %d times", c->end_calls);
    if (!c->done_returned)
        note_bad(c, "end before done returned");
    if (!c->put_called)
        note_bad(c, "end before vol_io_put");
    c->end_tid = self;
    if (!pthread_equal(self, c->done_tid) && !(c->has_put_tid && pthread_equal(self, c->put_tid)))
        note_bad(c, "end on a thread that neither ran done nor called vol_io_put");
    if (c->payload && memcmp(c->payload, c->payload_ref, c->plen) != 0)
        note_bad(c, "the core modified the write payload");
    uint8_t *payload = c->payload;
    c->payload = NULL;
    c->io = NULL;
    pthread_mutex_unlock(&c->lock);
    /* The core promised not to use io or the payload again: poison both. */
    if (payload) {
        memset(payload, 0xD7, c->plen);
        free(payload);
    }
    memset(io, 0x5A, sizeof *io);
    free(io);
    pthread_mutex_lock(&c->lock);
    c->ended = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static struct call *call_new(struct volume *v, enum vol_io_op op, uint64_t off, uint64_t len,
                             enum put_mode mode)
{
    struct call *c = calloc(1, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->mode = mode;
    c->op = op;
    c->off = off;
    c->len = len;
    if (op == VOL_IO_READ && len <= VOL_MAX_IO)
        c->data = malloc(len ? len : 1);
    struct vol_io *io = calloc(1, sizeof *io);
    /* Junk where the result goes: vol_submit must reset it. */
    io->status = 4242;
    io->hit = true;
    io->iov = (const struct iovec *)(uintptr_t)0x10;
    io->niov = 77;
    memset(&io->priv, 0xA5, sizeof io->priv);
    io->v = v;
    io->op = op;
    io->offset = off;
    io->length = len;
    io->done = on_done;
    io->end = on_end;
    io->opaque = c;
    c->io = io;
    return c;
}

static void call_payload(struct call *c, const void *src)
{
    c->plen = c->op == VOL_IO_COMPARE_WRITE ? 2 * c->len : c->len;
    c->payload = malloc(c->plen ? c->plen : 1);
    c->payload_ref = malloc(c->plen ? c->plen : 1);
    memcpy(c->payload, src, c->plen);
    memcpy(c->payload_ref, src, c->plen);
    c->io->payload = c->payload;
}

static void call_submit(struct call *c)
{
    c->submit_tid = pthread_self();
    __atomic_store_n(&c->submitting, 1, __ATOMIC_RELEASE);
    vol_submit(c->io);
    __atomic_store_n(&c->submitting, 0, __ATOMIC_RELEASE);
}

/* Wait for done to return (or end); false after WAIT_SEC. */
static bool call_wait(struct call *c, bool want_end)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_SEC;
    pthread_mutex_lock(&c->lock);
    while (!(want_end ? c->ended : c->done_returned))
        if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
            break;
    bool ok = want_end ? c->ended : c->done_returned;
    pthread_mutex_unlock(&c->lock);
    return ok;
}

/* The front end's vol_io_put, after checking the reply is still intact. */
static void call_put(struct call *c)
{
    pthread_mutex_lock(&c->lock);
    struct vol_io *io = c->io;
    bool ok = c->done_returned && !c->put_called && io;
    if (!ok)
        note_bad(c, "test bug: put before done or twice");
    if (c->end_calls)
        note_bad(c, "end before vol_io_put");
    recheck_reply(c, "at vol_io_put");
    c->put_called = true;
    c->put_tid = pthread_self();
    c->has_put_tid = true;
    pthread_mutex_unlock(&c->lock);
    if (ok)
        vol_io_put(io);
}

static void *putter_one(void *arg)
{
    call_put(arg);
    return NULL;
}

struct put_list {
    struct call **c;
    unsigned n;
};

static void *putter_reverse(void *arg)
{
    struct put_list *pl = arg;
    for (unsigned i = pl->n; i-- > 0;)
        call_put(pl->c[i]);
    return NULL;
}

static void call_free(struct call *c)
{
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->data);
    free(c->payload_ref);
    free(c);
}

/* After done returned and before vol_io_put: end must not come, whatever
 * the core still does (the cache update on a worker). */
static void assert_not_ended(struct call *c, unsigned ms)
{
    sleep_ms(ms);
    pthread_mutex_lock(&c->lock);
    int ends = c->end_calls;
    pthread_mutex_unlock(&c->lock);
    if (ends)
        fail_msg("end called before vol_io_put");
}

static void assert_call_ok(struct call *c)
{
    if (c->bad[0])
        fail_msg("contract violation (op %d, off %llu, len %llu): %s", c->op,
                 (unsigned long long)c->off, (unsigned long long)c->len, c->bad);
    assert_int_equal(c->done_calls, 1);
    assert_int_equal(c->end_calls, 1);
}

/* Submit and drive to end according to mode (not PUT_MANUAL). */
static struct call *call_run(struct call *c)
{
    call_submit(c);
    switch (c->mode) {
    case PUT_IN_DONE:
        break;
    case PUT_LATER:
        assert_true(call_wait(c, false));
        assert_not_ended(c, 5);
        call_put(c);
        break;
    case PUT_OTHER: {
        assert_true(call_wait(c, false));
        assert_not_ended(c, 20);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, putter_one, c), 0);
        pthread_join(t, NULL);
        break;
    }
    case PUT_MANUAL:
        fail_msg("call_run with PUT_MANUAL");
    }
    if (!call_wait(c, true))
        fail_msg("request (op %d) never ended", c->op);
    assert_call_ok(c);
    return c;
}

static struct call *run_io(struct volume *v, enum vol_io_op op, uint64_t off, uint64_t len,
                           const void *payload, uint32_t flags, enum put_mode mode)
{
    struct call *c = call_new(v, op, off, len, mode);
    if (payload)
        call_payload(c, payload);
    c->io->flags = flags;
    return call_run(c);
}

/* A request that must fail with err, refused on the submitting thread. */
static void expect_refused(struct volume *v, enum vol_io_op op, uint64_t off, uint64_t len,
                           const void *payload, int err)
{
    struct call *c = run_io(v, op, off, len, payload, 0, PUT_IN_DONE);
    if (c->status != err)
        fail_msg("op %d off %llu len %llu: status %d, want %d", op, (unsigned long long)off,
                 (unsigned long long)len, c->status, err);
    assert_true(c->done_in_submit); /* refusals: done at once, on this thread */
    call_free(c);
}

/* Read [off, off+len) and compare with the fake; returns io->hit. */
static bool read_check(struct volume *v, struct fake *f, uint64_t off, uint64_t len,
                       enum put_mode mode)
{
    struct call *c = run_io(v, VOL_IO_READ, off, len, NULL, 0, mode);
    if (c->status != 0)
        fail_msg("read off %llu len %llu: status %d", (unsigned long long)off,
                 (unsigned long long)len, c->status);
    uint8_t *want = fake_copy(f, off, len);
    if (memcmp(c->data, want, len) != 0) {
        uint64_t i = 0;
        while (c->data[i] == want[i])
            i++;
        fail_msg("read off %llu len %llu (%s): byte %llu differs from the back end",
                 (unsigned long long)off, (unsigned long long)len, c->hit ? "hit" : "miss",
                 (unsigned long long)i);
    }
    free(want);
    bool hit = c->hit;
    call_free(c);
    return hit;
}

static void write_ok(struct volume *v, uint64_t off, uint64_t len, const void *data,
                     enum put_mode mode)
{
    struct call *c = run_io(v, VOL_IO_WRITE, off, len, data, 0, mode);
    assert_int_equal(c->status, 0);
    call_free(c);
}

/* ---- 1. reads ---- */

struct range {
    uint64_t off, len;
};

/* Miss, then hit with the same bytes and no back end read. */
/* Whether a read of r covers part of a block at either end (the volume's
 * size is whole blocks). */
static bool partial_edge(struct range r)
{
    return r.off % BLOCK_SIZE || (r.off + r.len) % BLOCK_SIZE;
}

/* Read a range until it is a hit. A partly read block is read exactly at
 * its first miss and fetched whole and cached at its second
 * (core/partial.h), so that can take two misses. */
static void warm(struct volume *v, struct fake *f, uint64_t off, uint64_t len)
{
    for (int i = 0; i < 3; i++)
        if (read_check(v, f, off, len, PUT_IN_DONE))
            return;
    fail_msg("off %llu len %llu is not cached after three reads", (unsigned long long)off,
             (unsigned long long)len);
}

static void miss_then_hit(struct fix *x, struct range r, enum put_mode m1, enum put_mode m2)
{
    unsigned p0 = fake_preads(x->f);
    assert_false(read_check(x->v, x->f, r.off, r.len, m1));
    assert_true(fake_preads(x->f) > p0);
    if (partial_edge(r)) {
        /* Its partly read edges were read exactly: fetched whole now. */
        p0 = fake_preads(x->f);
        assert_false(read_check(x->v, x->f, r.off, r.len, m2));
        assert_true(fake_preads(x->f) > p0);
    }
    unsigned p1 = fake_preads(x->f);
    if (!read_check(x->v, x->f, r.off, r.len, m2))
        fail_msg("second read of off %llu len %llu is not a hit", (unsigned long long)r.off,
                 (unsigned long long)r.len);
    assert_int_equal(fake_preads(x->f), p1);
}

static void test_read_miss_then_hit(void **state)
{
    struct fix *x = *state;
    const struct range rs[] = {
        {1000, 9000},                                        /* 3 blocks: inline iovecs */
        {3 * BLOCK_SIZE + 17, 6 * BLOCK_SIZE},               /* 7 blocks: pooled array */
        {20 * BLOCK_SIZE, BLOCK_SIZE},                       /* one whole block */
        {30 * BLOCK_SIZE + 4095, 2},                         /* straddles two blocks */
        {40 * BLOCK_SIZE + 1, 4 * BLOCK_SIZE - 2},           /* 4 blocks: the inline limit */
        {1u << 20, 1u << 20},                                /* 256 blocks: zero-copy max */
        {(3u << 20) + 100, 1u << 20},                        /* 257 blocks: copied hit */
        {VOL_SIZE - 1, 1},                                   /* the last byte */
        {VOL_SIZE - 3 * BLOCK_SIZE - 5, 3 * BLOCK_SIZE + 5}, /* to the end */
    };
    const enum put_mode modes[] = {PUT_IN_DONE, PUT_LATER, PUT_OTHER};
    for (unsigned i = 0; i < sizeof rs / sizeof rs[0]; i++)
        miss_then_hit(x, rs[i], modes[i % 3], modes[(i + 1) % 3]);

    /* A hit's done runs at once on the submitting thread, both modes. */
    struct call *c = run_io(x->v, VOL_IO_READ, 1000, 9000, NULL, 0, PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    assert_true(c->hit);
    assert_true(c->done_in_submit);
    call_free(c);

    /* A miss the back end does not have at hand: on a worker when there
     * are workers (with pread_async: on the back end's thread, or here if
     * its answer came before vol_submit let go), else right here. */
    c = run_io(x->v, VOL_IO_READ, 5u << 20, 5000, NULL, 0, PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    assert_false(c->hit);
    if (x->workers && g_async)
        assert_true(pthread_equal(c->done_tid, aq_tid) ||
                    pthread_equal(c->done_tid, c->submit_tid));
    else if (x->workers)
        assert_false(pthread_equal(c->done_tid, c->submit_tid));
    else
        assert_true(c->done_in_submit);
    call_free(c);

    /* Length 0: status 0, done and end once. */
    c = run_io(x->v, VOL_IO_READ, 4096, 0, NULL, 0, PUT_LATER);
    assert_int_equal(c->status, 0);
    call_free(c);
}

/* VOL_MAX_IO: miss, then a hit too large for zero copy (still io->hit). */
static void test_read_max_io(void **state)
{
    struct fix *x = *state;
    const uint64_t size = VOL_MAX_IO + (64u << 10);
    struct fake *f = new_fake(size, 2, false);
    struct volume *v = add_vol(x->e, "big", f, false);
    assert_false(read_check(v, f, 1000, VOL_MAX_IO, PUT_IN_DONE));
    assert_false(read_check(v, f, 1000, VOL_MAX_IO, PUT_LATER)); /* its edges, whole */
    unsigned p = fake_preads(f);
    assert_true(read_check(v, f, 1000, VOL_MAX_IO, PUT_OTHER));
    assert_int_equal(fake_preads(f), p);
    /* Longer than VOL_MAX_IO though within the volume: refused at once. */
    expect_refused(v, VOL_IO_READ, 0, VOL_MAX_IO + 1, NULL, -EINVAL);
    {
        uint8_t *big = calloc(1, VOL_MAX_IO + 1);
        expect_refused(v, VOL_IO_WRITE, 0, VOL_MAX_IO + 1, big, -EINVAL);
        free(big);
    }
    assert_int_equal(fake_pwrites(f), 0);
    /* A 1 MiB read inside it: a zero-copy hit now. */
    assert_true(read_check(v, f, 7u << 20, 1u << 20, PUT_LATER));
    assert_int_equal(fake_preads(f), p);
    volume_put(v);
}

/* Small misses the back end has at hand run on the submitting thread;
 * larger ones, and ones it does not have at hand, go to a worker. */
static void test_inline_miss(void **state)
{
    struct fix *x = *state;
    if (g_async)
        skip(); /* no pread_nowait: test_async_miss */
    __atomic_store_n(&g_nowait, 1, __ATOMIC_RELAXED);
    unsigned n0 = __atomic_load_n(&g_nowait_calls, __ATOMIC_RELAXED);
    struct call *c = run_io(x->v, VOL_IO_READ, 1000, 9000, NULL, 0, PUT_OTHER);
    assert_int_equal(c->status, 0);
    assert_false(c->hit);
    assert_true(c->done_in_submit);
    assert_true(__atomic_load_n(&g_nowait_calls, __ATOMIC_RELAXED) > n0);
    uint8_t *want = fake_copy(x->f, 1000, 9000);
    assert_memory_equal(c->data, want, 9000);
    free(want);
    call_free(c);
    /* Its cache update ran: a hit now, once the two edge blocks it read
     * exactly are fetched whole (core/partial.h). */
    assert_false(read_check(x->v, x->f, 1000, 9000, PUT_IN_DONE));
    unsigned p = fake_preads(x->f);
    assert_true(read_check(x->v, x->f, 1000, 9000, PUT_IN_DONE));
    assert_int_equal(fake_preads(x->f), p);

    /* Exactly VOL_INLINE_MISS_MAX, unaligned: still inline. */
    c = run_io(x->v, VOL_IO_READ, (1u << 20) + 7, VOL_INLINE_MISS_MAX, NULL, 0, PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    assert_true(c->done_in_submit);
    want = fake_copy(x->f, (1u << 20) + 7, VOL_INLINE_MISS_MAX);
    assert_memory_equal(c->data, want, VOL_INLINE_MISS_MAX);
    free(want);
    call_free(c);

    /* Larger than VOL_INLINE_MISS_MAX: a worker's, when there are any. */
    c = run_io(x->v, VOL_IO_READ, 2u << 20, VOL_INLINE_MISS_MAX + 1, NULL, 0, PUT_LATER);
    assert_int_equal(c->status, 0);
    if (x->workers)
        assert_false(pthread_equal(c->done_tid, c->submit_tid));
    want = fake_copy(x->f, 2u << 20, VOL_INLINE_MISS_MAX + 1);
    assert_memory_equal(c->data, want, VOL_INLINE_MISS_MAX + 1);
    free(want);
    call_free(c);

    /* Some blocks cached, the rest not at hand: the NOWAIT attempt gives
     * up after using the cached ones, a worker reads it all. */
    __atomic_store_n(&g_nowait, 2, __ATOMIC_RELAXED);
    assert_false(read_check(x->v, x->f, (3u << 20) + 2 * BLOCK_SIZE, BLOCK_SIZE, PUT_IN_DONE));
    c = run_io(x->v, VOL_IO_READ, (3u << 20) + BLOCK_SIZE + 10, 5 * BLOCK_SIZE, NULL, 0,
               PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    if (x->workers)
        assert_false(pthread_equal(c->done_tid, c->submit_tid));
    want = fake_copy(x->f, (3u << 20) + BLOCK_SIZE + 10, 5 * BLOCK_SIZE);
    assert_memory_equal(c->data, want, 5 * BLOCK_SIZE);
    free(want);
    call_free(c);
    /* Its partly read edges were read exactly; the next read caches them. */
    assert_false(read_check(x->v, x->f, (3u << 20) + BLOCK_SIZE + 10, 5 * BLOCK_SIZE, PUT_OTHER));
    assert_true(read_check(x->v, x->f, (3u << 20) + BLOCK_SIZE + 10, 5 * BLOCK_SIZE, PUT_OTHER));

    /* An error of the non-blocking read comes back through done. */
    __atomic_store_n(&g_nowait, 1, __ATOMIC_RELAXED);
    fake_set_fail(x->f, 1, 0);
    c = run_io(x->v, VOL_IO_READ, 4u << 20, 3000, NULL, 0, PUT_LATER);
    assert_true(c->status < 0);
    call_free(c);
    fake_set_fail(x->f, 0, 0);
    assert_false(read_check(x->v, x->f, 4u << 20, 3000, PUT_IN_DONE));
    __atomic_store_n(&g_nowait, 0, __ATOMIC_RELAXED);
}

/* Misses through pread_async: answered on the back end's thread, the
 * cache updated there, byte for byte the back end's; what cannot go that
 * way (two ranges, a refusal) goes to a worker; errors come back; a write
 * while the read is on the wire is not undone by the read's install. */
static void test_async_miss(void **state)
{
    struct fix *x = *state;
    if (!g_async)
        skip();
    unsigned n0 = __atomic_load_n(&g_async_served, __ATOMIC_RELAXED);
    struct call *c = run_io(x->v, VOL_IO_READ, 5 * BLOCK_SIZE, 3 * BLOCK_SIZE, NULL, 0, PUT_OTHER);
    assert_int_equal(c->status, 0);
    assert_false(c->hit);
    assert_true(__atomic_load_n(&g_async_served, __ATOMIC_RELAXED) == n0 + 1);
    /* done ran on the completer, or on the submitter if the answer came
     * before vol_submit let go: never on a worker. */
    assert_true(pthread_equal(c->done_tid, aq_tid) || pthread_equal(c->done_tid, c->submit_tid));
    uint8_t *want = fake_copy(x->f, 5 * BLOCK_SIZE, 3 * BLOCK_SIZE);
    assert_memory_equal(c->data, want, 3 * BLOCK_SIZE);
    free(want);
    call_free(c);
    unsigned p = fake_preads(x->f);
    assert_true(read_check(x->v, x->f, 5 * BLOCK_SIZE, 3 * BLOCK_SIZE, PUT_IN_DONE));
    assert_int_equal(fake_preads(x->f), p);

    /* Unaligned, partly cached: the missing blocks are one range. */
    assert_true(read_check(x->v, x->f, 5 * BLOCK_SIZE, 2 * BLOCK_SIZE, PUT_IN_DONE));
    n0 = __atomic_load_n(&g_async_served, __ATOMIC_RELAXED);
    assert_false(read_check(x->v, x->f, 6 * BLOCK_SIZE + 100, 5 * BLOCK_SIZE, PUT_LATER));
    assert_int_equal(__atomic_load_n(&g_async_served, __ATOMIC_RELAXED), n0 + 1);

    /* Longer than an inline miss, up to VOL_ASYNC_MISS_MAX: asynchronous
     * too; one byte more: a worker's. */
    n0 = __atomic_load_n(&g_async_served, __ATOMIC_RELAXED);
    assert_false(read_check(x->v, x->f, 1u << 20, VOL_ASYNC_MISS_MAX, PUT_OTHER));
    assert_int_equal(__atomic_load_n(&g_async_served, __ATOMIC_RELAXED), n0 + 1);
    assert_false(read_check(x->v, x->f, 3u << 20, VOL_ASYNC_MISS_MAX + 1, PUT_OTHER));
    assert_int_equal(__atomic_load_n(&g_async_served, __ATOMIC_RELAXED), n0 + 1);

    /* Two ranges (a cached block between): a worker reads them. */
    assert_true(read_check(x->v, x->f, 21 * BLOCK_SIZE, BLOCK_SIZE, PUT_IN_DONE) == false);
    n0 = __atomic_load_n(&g_async_served, __ATOMIC_RELAXED);
    c = run_io(x->v, VOL_IO_READ, 20 * BLOCK_SIZE, 3 * BLOCK_SIZE, NULL, 0, PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    assert_int_equal(__atomic_load_n(&g_async_served, __ATOMIC_RELAXED), n0);
    assert_false(pthread_equal(c->done_tid, c->submit_tid));
    want = fake_copy(x->f, 20 * BLOCK_SIZE, 3 * BLOCK_SIZE);
    assert_memory_equal(c->data, want, 3 * BLOCK_SIZE);
    free(want);
    call_free(c);

    /* Refused (no connection): a worker's, and right. */
    __atomic_store_n(&g_async_refuse, 1, __ATOMIC_RELAXED);
    assert_false(read_check(x->v, x->f, 40 * BLOCK_SIZE, BLOCK_SIZE, PUT_OTHER));
    __atomic_store_n(&g_async_refuse, 0, __ATOMIC_RELAXED);
    assert_true(read_check(x->v, x->f, 40 * BLOCK_SIZE, BLOCK_SIZE, PUT_OTHER));

    /* An error comes back through done; nothing is cached. */
    fake_set_fail(x->f, 1, 0);
    c = run_io(x->v, VOL_IO_READ, 50 * BLOCK_SIZE, 2000, NULL, 0, PUT_LATER);
    assert_int_equal(c->status, -EIO);
    call_free(c);
    fake_set_fail(x->f, 0, 0);
    assert_false(read_check(x->v, x->f, 50 * BLOCK_SIZE, 2000, PUT_IN_DONE));

    /* A write lands while the read's answer (the old bytes) is on the
     * wire: the read may return the old bytes, but must not cache them. */
    fake_pause(x->f, 60 * BLOCK_SIZE);
    struct call *slow = call_new(x->v, VOL_IO_READ, 60 * BLOCK_SIZE, BLOCK_SIZE, PUT_LATER);
    call_submit(slow);
    fake_wait_paused(x->f);
    uint8_t nw[BLOCK_SIZE];
    memset(nw, 0x6B, sizeof nw);
    /* (On a worker: the one completer thread is held by the paused read.) */
    __atomic_store_n(&g_async_refuse, 1, __ATOMIC_RELAXED);
    write_ok(x->v, 60 * BLOCK_SIZE, BLOCK_SIZE, nw, PUT_IN_DONE);
    __atomic_store_n(&g_async_refuse, 0, __ATOMIC_RELAXED);
    fake_release(x->f);
    assert_true(call_wait(slow, false));
    call_put(slow);
    assert_true(call_wait(slow, true));
    assert_call_ok(slow);
    assert_int_equal(slow->status, 0);
    call_free(slow);
    c = run_io(x->v, VOL_IO_READ, 60 * BLOCK_SIZE, BLOCK_SIZE, NULL, 0, PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    assert_memory_equal(c->data, nw, BLOCK_SIZE);
    call_free(c);

    /* Writes go out with pwrite_async: on the back end's thread (or here),
     * in the back end when done runs, and cached (a hit after). */
    unsigned w0 = __atomic_load_n(&g_async_written, __ATOMIC_RELAXED);
    uint8_t *pat = malloc(8 * BLOCK_SIZE + 300);
    memset(pat, 0x3C, 8 * BLOCK_SIZE + 300);
    pat[17] = 1;
    c = run_io(x->v, VOL_IO_WRITE, 70 * BLOCK_SIZE + 100, 8 * BLOCK_SIZE + 300, pat, 0, PUT_OTHER);
    assert_int_equal(c->status, 0);
    assert_true(pthread_equal(c->done_tid, aq_tid) || pthread_equal(c->done_tid, c->submit_tid));
    call_free(c);
    assert_int_equal(__atomic_load_n(&g_async_written, __ATOMIC_RELAXED), w0 + 1);
    uint8_t *got = fake_copy(x->f, 70 * BLOCK_SIZE + 100, 8 * BLOCK_SIZE + 300);
    assert_memory_equal(got, pat, 8 * BLOCK_SIZE + 300);
    free(got);
    unsigned p0 = fake_preads(x->f);
    assert_true(read_check(x->v, x->f, 71 * BLOCK_SIZE, 7 * BLOCK_SIZE, PUT_IN_DONE));
    assert_int_equal(fake_preads(x->f), p0);
    /* A failed write: the error, and nothing of it cached. */
    fake_set_fail(x->f, 0, 1);
    c = run_io(x->v, VOL_IO_WRITE, 71 * BLOCK_SIZE, BLOCK_SIZE, nw, 0, PUT_LATER);
    assert_int_equal(c->status, -EIO);
    call_free(c);
    fake_set_fail(x->f, 0, 0);
    assert_false(read_check(x->v, x->f, 71 * BLOCK_SIZE, BLOCK_SIZE, PUT_IN_DONE));
    /* Refused by the back end (no connection): a worker writes it. */
    __atomic_store_n(&g_async_refuse, 1, __ATOMIC_RELAXED);
    w0 = __atomic_load_n(&g_async_written, __ATOMIC_RELAXED);
    write_ok(x->v, 72 * BLOCK_SIZE, BLOCK_SIZE, nw, PUT_IN_DONE);
    __atomic_store_n(&g_async_refuse, 0, __ATOMIC_RELAXED);
    assert_int_equal(__atomic_load_n(&g_async_written, __ATOMIC_RELAXED), w0);
    got = fake_copy(x->f, 72 * BLOCK_SIZE, BLOCK_SIZE);
    assert_memory_equal(got, nw, BLOCK_SIZE);
    free(got);
    assert_true(read_check(x->v, x->f, 72 * BLOCK_SIZE, BLOCK_SIZE, PUT_IN_DONE)); /* cached */
    free(pat);
}

/* workers = 2: a stalled back end read holds a worker, never vol_submit;
 * hits keep being answered meanwhile. */
struct submitter {
    struct call *c;
    int returned; /* atomic */
};

static void *submitter_main(void *arg)
{
    struct submitter *sb = arg;
    call_submit(sb->c);
    __atomic_store_n(&sb->returned, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_submit_never_waits(void **state)
{
    struct fix *x = *state;
    if (!x->workers)
        skip();
    assert_false(read_check(x->v, x->f, 0, 8192, PUT_IN_DONE)); /* warm */
    fake_pause(x->f, (2u << 20) + BLOCK_SIZE);
    struct call *slow = call_new(x->v, VOL_IO_READ, 2u << 20, 3 * BLOCK_SIZE, PUT_LATER);
    /* Submitted from a helper thread, so that a vol_submit that does wait
     * fails the test instead of hanging it. */
    struct submitter sb = {.c = slow};
    pthread_t st;
    assert_int_equal(pthread_create(&st, NULL, submitter_main, &sb), 0);
    fake_wait_paused(x->f);
    bool returned = false;
    for (int i = 0; i < 2000 && !returned; i++) {
        returned = __atomic_load_n(&sb.returned, __ATOMIC_ACQUIRE);
        if (!returned)
            sleep_ms(1);
    }
    pthread_mutex_lock(&slow->lock);
    int dc = slow->done_calls;
    pthread_mutex_unlock(&slow->lock);
    if (!returned) {
        fake_release(x->f);
        pthread_join(st, NULL);
        fail_msg("vol_submit waited for a stalled back end read");
    }
    pthread_join(st, NULL);
    /* A hit, meanwhile (its checks fail only after the release). */
    struct call *c = call_new(x->v, VOL_IO_READ, 0, 8192, PUT_IN_DONE);
    call_submit(c);
    bool ended = call_wait(c, true);
    fake_release(x->f);
    assert_int_equal(dc, 0);
    assert_true(ended);
    assert_call_ok(c);
    assert_int_equal(c->status, 0);
    assert_true(c->hit);
    assert_true(c->done_in_submit);
    uint8_t *want = fake_copy(x->f, 0, 8192);
    assert_memory_equal(c->data, want, 8192);
    free(want);
    call_free(c);
    assert_true(call_wait(slow, false));
    call_put(slow);
    assert_true(call_wait(slow, true));
    assert_call_ok(slow);
    assert_int_equal(slow->status, 0);
    want = fake_copy(x->f, 2u << 20, 3 * BLOCK_SIZE);
    assert_memory_equal(slow->data, want, 3 * BLOCK_SIZE);
    free(want);
    call_free(slow);
}

/* ---- 2. writes, trims, zeroes, flush, extents, cache ---- */

static void test_write_read_back(void **state)
{
    struct fix *x = *state;
    uint64_t seed = 99;
    uint8_t *pat = malloc(1u << 20);
    fill_random(pat, 1u << 20, &seed);

    /* Unaligned, partial blocks at both ends, over cold blocks. */
    write_ok(x->v, 5000, 20000, pat, PUT_IN_DONE);
    uint8_t *got = fake_copy(x->f, 5000, 20000);
    assert_memory_equal(got, pat, 20000);
    free(got);
    assert_false(read_check(x->v, x->f, 0, 8 * BLOCK_SIZE, PUT_LATER));
    assert_true(read_check(x->v, x->f, 5000, 20000, PUT_OTHER));

    /* Partial writes over cached blocks: the cache must follow. */
    write_ok(x->v, BLOCK_SIZE - 50, 100, pat + 100000, PUT_LATER);
    write_ok(x->v, 3 * BLOCK_SIZE + 1, 1, pat + 200000, PUT_OTHER);
    got = fake_copy(x->f, BLOCK_SIZE - 50, 100);
    assert_memory_equal(got, pat + 100000, 100);
    free(got);
    read_check(x->v, x->f, 0, 8 * BLOCK_SIZE, PUT_IN_DONE);
    read_check(x->v, x->f, 0, 8 * BLOCK_SIZE, PUT_OTHER);

    /* Whole blocks: installed after done from the payload, so the read
     * back is a hit (the payload is poisoned at end: an install after end
     * would cache 0xD7s). */
    for (int m = 0; m < 3; m++) {
        uint64_t off = (1u << 20) + (uint64_t)m * (256u << 10);
        write_ok(x->v, off, 64u << 10, pat + m * 4096, (enum put_mode)m);
        unsigned p = fake_preads(x->f);
        assert_true(read_check(x->v, x->f, off, 64u << 10, PUT_IN_DONE));
        assert_int_equal(fake_preads(x->f), p);
        got = fake_copy(x->f, off, 64u << 10);
        assert_memory_equal(got, pat + m * 4096, 64u << 10);
        free(got);
    }

    /* A 1 MiB write with FUA, then read back. */
    struct call *c = run_io(x->v, VOL_IO_WRITE, (4u << 20) + 3, 1u << 20, pat, VOL_FUA, PUT_OTHER);
    assert_int_equal(c->status, 0);
    call_free(c);
    c = run_io(x->v, VOL_IO_READ, (4u << 20) + 3, 1u << 20, NULL, 0, PUT_LATER);
    assert_int_equal(c->status, 0);
    assert_memory_equal(c->data, pat, 1u << 20);
    call_free(c);
    read_check(x->v, x->f, 4u << 20, 2u << 20, PUT_IN_DONE);
    /* A zero-length write changes nothing. */
    unsigned w = fake_pwrites(x->f);
    write_ok(x->v, 4096, 0, pat, PUT_IN_DONE);
    assert_int_equal(fake_pwrites(x->f), w);
    free(pat);
}

static void test_trim_zero(void **state)
{
    struct fix *x = *state;
    const uint64_t span = 32 * BLOCK_SIZE;
    read_check(x->v, x->f, 0, span, PUT_IN_DONE); /* warm */

    /* ZERO, unaligned: reads back zeros, the fake holds zeros, the
     * neighbours are untouched. */
    struct call *c =
        run_io(x->v, VOL_IO_ZERO, BLOCK_SIZE + 100, 3 * BLOCK_SIZE, NULL, 0, PUT_LATER);
    assert_int_equal(c->status, 0);
    call_free(c);
    c = run_io(x->v, VOL_IO_READ, BLOCK_SIZE + 100, 3 * BLOCK_SIZE, NULL, 0, PUT_OTHER);
    assert_int_equal(c->status, 0);
    for (uint64_t i = 0; i < 3 * BLOCK_SIZE; i++)
        if (c->data[i])
            fail_msg("byte %llu of the zeroed range reads %#x", (unsigned long long)i, c->data[i]);
    call_free(c);
    read_check(x->v, x->f, 0, span, PUT_IN_DONE);

    /* ZERO of whole blocks: a hit afterwards (known zero blocks). */
    c = run_io(x->v, VOL_IO_ZERO, 8 * BLOCK_SIZE, 4 * BLOCK_SIZE, NULL, 0, PUT_OTHER);
    assert_int_equal(c->status, 0);
    call_free(c);
    unsigned p = fake_preads(x->f);
    assert_true(read_check(x->v, x->f, 8 * BLOCK_SIZE, 4 * BLOCK_SIZE, PUT_LATER));
    assert_int_equal(fake_preads(x->f), p);

    /* TRIM: the fake leaves 0xEE; reads must show what the back end holds,
     * not the old cached data and not assumed zeros. */
    c = run_io(x->v, VOL_IO_TRIM, 16 * BLOCK_SIZE + 10, 2 * BLOCK_SIZE, NULL, 0, PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    call_free(c);
    c = run_io(x->v, VOL_IO_READ, 16 * BLOCK_SIZE + 10, 2 * BLOCK_SIZE, NULL, 0, PUT_LATER);
    assert_int_equal(c->status, 0);
    for (uint64_t i = 0; i < 2 * BLOCK_SIZE; i++)
        if (c->data[i] != 0xEE)
            fail_msg("byte %llu of the trimmed range reads %#x", (unsigned long long)i, c->data[i]);
    call_free(c);
    read_check(x->v, x->f, 0, span, PUT_OTHER);
    read_check(x->v, x->f, 0, span, PUT_IN_DONE);

    /* The whole volume in one trim and one zero. */
    c = run_io(x->v, VOL_IO_TRIM, 0, VOL_SIZE, NULL, 0, PUT_OTHER);
    assert_int_equal(c->status, 0);
    call_free(c);
    read_check(x->v, x->f, 0, 1u << 20, PUT_IN_DONE);
    c = run_io(x->v, VOL_IO_ZERO, 0, VOL_SIZE, NULL, 0, PUT_LATER);
    assert_int_equal(c->status, 0);
    call_free(c);
    read_check(x->v, x->f, 0, 1u << 20, PUT_IN_DONE);
    uint8_t *all = fake_copy(x->f, 0, VOL_SIZE);
    for (uint64_t i = 0; i < VOL_SIZE; i++)
        if (all[i])
            fail_msg("byte %llu not zero after zeroing the volume", (unsigned long long)i);
    free(all);

    /* FAST_ZERO the back end cannot do cheaply: -ENOTSUP through done. */
    c = run_io(x->v, VOL_IO_ZERO, 0, BLOCK_SIZE, NULL, VOL_FAST_ZERO, PUT_IN_DONE);
    assert_int_equal(c->status, -ENOTSUP);
    call_free(c);
}

struct ext_seen {
    struct call *c;
    uint64_t next;
    unsigned calls;
    uint64_t bad_off;
    uint32_t bad_flags;
    bool bad, after_done;
    pthread_t tid;
};

static int on_extent(void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
    struct ext_seen *s = opaque;
    s->tid = pthread_self();
    pthread_mutex_lock(&s->c->lock);
    if (s->c->done_calls)
        s->after_done = true;
    pthread_mutex_unlock(&s->c->lock);
    if (offset != s->next || length == 0 || flags != ext_flags(offset)) {
        s->bad = true;
        s->bad_off = offset;
        s->bad_flags = flags;
    }
    s->next = offset + length;
    s->calls++;
    return 0;
}

static void test_flush_extents_cache(void **state)
{
    struct fix *x = *state;
    struct call *c = run_io(x->v, VOL_IO_FLUSH, 0, 0, NULL, 0, PUT_OTHER);
    assert_int_equal(c->status, 0);
    call_free(c);

    /* EXTENTS: consecutive, in order from the offset, covering the range,
     * all before done. */
    struct ext_seen es = {.next = 100000};
    c = call_new(x->v, VOL_IO_EXTENTS, 100000, 300000, PUT_LATER);
    es.c = c;
    c->io->extent_fn = on_extent;
    c->io->extent_opaque = &es;
    call_run(c);
    assert_int_equal(c->status, 0);
    assert_false(es.bad);
    assert_false(es.after_done);
    assert_true(es.calls >= 5); /* 100000..400000 crosses 5 of the 64 KiB runs */
    assert_true(es.next >= 400000);
    assert_true(pthread_equal(es.tid, c->done_tid)); /* on the thread that ran it */
    call_free(c);
    /* EXTENTS without extent_fn: -EINVAL. */
    expect_refused(x->v, VOL_IO_EXTENTS, 0, 4096, NULL, -EINVAL);

    /* CACHE warms the range: the read afterwards is a hit, no new reads. */
    const uint64_t off = (3u << 20) + 77, len = 512u << 10;
    c = run_io(x->v, VOL_IO_CACHE, off, len, NULL, 0, PUT_OTHER);
    assert_int_equal(c->status, 0);
    call_free(c);
    unsigned p = fake_preads(x->f);
    assert_true(p > 0);
    assert_true(read_check(x->v, x->f, off, len, PUT_LATER));
    assert_true(read_check(x->v, x->f, off + 1000, 3000, PUT_IN_DONE));
    assert_int_equal(fake_preads(x->f), p);
}

/* Acceleration off: every request goes to the back end and still returns
 * the right bytes; back on, the cache serves again, and an out-of-band
 * change followed by an invalidate is seen. */
static void test_disabled_passthrough(void **state)
{
    struct fix *x = *state;
    read_check(x->v, x->f, 0, 16 * BLOCK_SIZE, PUT_IN_DONE);
    assert_int_equal(volume_set_enabled(x->v, false), 0);
    for (int m = 0; m < 3; m++) {
        unsigned p = fake_preads(x->f);
        assert_false(read_check(x->v, x->f, 1000 + m, 9000, (enum put_mode)m));
        assert_true(fake_preads(x->f) > p);
    }
    uint64_t seed = 3;
    uint8_t pat[3 * BLOCK_SIZE];
    fill_random(pat, sizeof pat, &seed);
    write_ok(x->v, BLOCK_SIZE + 7, sizeof pat, pat, PUT_OTHER);
    assert_false(read_check(x->v, x->f, 0, 16 * BLOCK_SIZE, PUT_LATER));
    struct call *c = run_io(x->v, VOL_IO_CACHE, 0, 1u << 20, NULL, 0, PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    call_free(c);
    assert_int_equal(volume_set_enabled(x->v, true), 0);
    assert_false(read_check(x->v, x->f, 0, 16 * BLOCK_SIZE, PUT_IN_DONE));
    assert_true(read_check(x->v, x->f, 0, 16 * BLOCK_SIZE, PUT_OTHER));
    pthread_mutex_lock(&x->f->lock);
    memset(x->f->data + 2 * BLOCK_SIZE, 0x99, BLOCK_SIZE);
    pthread_mutex_unlock(&x->f->lock);
    assert_int_equal(volume_invalidate(x->v, 2 * BLOCK_SIZE, BLOCK_SIZE), 0);
    assert_false(read_check(x->v, x->f, 0, 16 * BLOCK_SIZE, PUT_LATER));
}

/* ---- 3. errors ---- */

static void test_errors(void **state)
{
    struct fix *x = *state;
    static uint8_t buf[2 * BLOCK_SIZE];
    memset(buf, 0x11, sizeof buf);
    unsigned w0 = fake_pwrites(x->f);
    expect_refused(x->v, VOL_IO_READ, VOL_SIZE - 100, 200, NULL, -EINVAL);
    expect_refused(x->v, VOL_IO_WRITE, VOL_SIZE - 100, 200, buf, -EINVAL);
    expect_refused(x->v, VOL_IO_READ, VOL_SIZE + BLOCK_SIZE, 1, NULL, -EINVAL);
    expect_refused(x->v, VOL_IO_READ, UINT64_MAX - 10, 100, NULL, -EINVAL);
    expect_refused(x->v, VOL_IO_WRITE, UINT64_MAX - 10, 100, buf, -EINVAL);
    expect_refused(x->v, VOL_IO_TRIM, VOL_SIZE - 10, 100, NULL, -EINVAL);
    expect_refused(x->v, VOL_IO_ZERO, VOL_SIZE, BLOCK_SIZE, NULL, -EINVAL);
    expect_refused(x->v, VOL_IO_CACHE, VOL_SIZE, BLOCK_SIZE, NULL, -EINVAL);
    /* Longer than VOL_MAX_IO (refused before anything is read or copied). */
    expect_refused(x->v, VOL_IO_READ, 0, VOL_MAX_IO + 1, NULL, -EINVAL);
    {
        struct call *c = call_new(x->v, VOL_IO_WRITE, 0, VOL_MAX_IO + 1, PUT_IN_DONE);
        c->io->payload = buf; /* never read: refused on the length */
        call_run(c);
        assert_int_equal(c->status, -EINVAL);
        call_free(c);
    }
    /* A write without a payload; an op that does not exist. */
    expect_refused(x->v, VOL_IO_WRITE, 0, 100, NULL, -EINVAL);
    expect_refused(x->v, (enum vol_io_op)99, 0, 100, NULL, -EINVAL);
    assert_int_equal(fake_pwrites(x->f), w0);

    /* A back end read error: a negative status, nothing cached; the next
     * read returns the right bytes. */
    for (int m = 0; m < 3; m++) {
        uint64_t off = (uint64_t)(m + 1) << 20;
        fake_set_fail(x->f, 1, 0);
        struct call *c = run_io(x->v, VOL_IO_READ, off + 1000, 9000, NULL, 0, (enum put_mode)m);
        assert_true(c->status < 0);
        call_free(c);
        c = run_io(x->v, VOL_IO_READ, off, 200000, NULL, 0, (enum put_mode)m);
        assert_true(c->status < 0);
        call_free(c);
        fake_set_fail(x->f, 0, 0);
        assert_false(read_check(x->v, x->f, off + 1000, 9000, (enum put_mode)((m + 1) % 3)));
        assert_false(read_check(x->v, x->f, off + 1000, 9000, PUT_IN_DONE)); /* edges */
        assert_true(read_check(x->v, x->f, off + 1000, 9000, PUT_IN_DONE));
        read_check(x->v, x->f, off, 200000, PUT_IN_DONE);
    }

    /* A back end write error: negative, and reads still match the fake
     * (a cached block the write covered must not survive as if written,
     * nor the payload appear). */
    read_check(x->v, x->f, 5u << 20, 4 * BLOCK_SIZE, PUT_IN_DONE);
    fake_set_fail(x->f, 0, 1);
    struct call *c = run_io(x->v, VOL_IO_WRITE, 5u << 20, 2 * BLOCK_SIZE, buf, 0, PUT_OTHER);
    assert_true(c->status < 0);
    call_free(c);
    fake_set_fail(x->f, 0, 0);
    read_check(x->v, x->f, 5u << 20, 4 * BLOCK_SIZE, PUT_IN_DONE);
}

static void test_readonly(void **state)
{
    struct fix *x = *state;
    struct fake *f = new_fake(1u << 20, 3, false);
    struct volume *v = add_vol(x->e, "ro", f, true);
    uint8_t buf[BLOCK_SIZE];
    memset(buf, 0x22, sizeof buf);
    for (int m = 0; m < 3; m++) {
        struct call *c = run_io(v, VOL_IO_WRITE, 0, sizeof buf, buf, 0, (enum put_mode)m);
        assert_int_equal(c->status, -EPERM);
        call_free(c);
    }
    struct call *c = run_io(v, VOL_IO_TRIM, 0, BLOCK_SIZE, NULL, 0, PUT_LATER);
    assert_int_equal(c->status, -EPERM);
    call_free(c);
    c = run_io(v, VOL_IO_ZERO, 0, BLOCK_SIZE, NULL, 0, PUT_OTHER);
    assert_int_equal(c->status, -EPERM);
    call_free(c);
    assert_int_equal(fake_pwrites(f), 0);
    assert_false(read_check(v, f, 0, 3 * BLOCK_SIZE, PUT_IN_DONE));
    assert_true(read_check(v, f, 0, 3 * BLOCK_SIZE, PUT_IN_DONE));
    c = run_io(v, VOL_IO_FLUSH, 0, 0, NULL, 0, PUT_IN_DONE);
    assert_int_equal(c->status, 0);
    call_free(c);
    volume_put(v);
}

/* A connection's kick (engine.h): counts its calls. */
static void count_kick(void *opaque)
{
    __atomic_fetch_add((int *)opaque, 1, __ATOMIC_RELEASE);
}

/* A connection that ends once kicked, as a front end's does. */
struct kicked_conn {
    struct volume *v;
    struct volume_conn vc;
    int kicks;
};

static void *detach_when_kicked(void *opaque)
{
    struct kicked_conn *k = opaque;
    while (!__atomic_load_n(&k->kicks, __ATOMIC_ACQUIRE))
        sleep_ms(1);
    volume_conn_detach(k->v, &k->vc);
    return NULL;
}

static void test_removed_with_force(void **state)
{
    struct fix *x = *state;
    uint8_t buf[BLOCK_SIZE];
    memset(buf, 0x33, sizeof buf);
    read_check(x->v, x->f, 0, 3 * BLOCK_SIZE, PUT_IN_DONE); /* cached */

    /* With workers: a read stalled in the back end while the volume goes. */
    struct call *slow = NULL;
    if (x->workers) {
        fake_pause(x->f, 1u << 20);
        slow = call_new(x->v, VOL_IO_READ, 1u << 20, 2 * BLOCK_SIZE, PUT_OTHER);
        struct submitter sb = {.c = slow};
        pthread_t st;
        assert_int_equal(pthread_create(&st, NULL, submitter_main, &sb), 0);
        fake_wait_paused(x->f);
        for (int i = 0; i < 2000 && !__atomic_load_n(&sb.returned, __ATOMIC_ACQUIRE); i++)
            sleep_ms(1);
        if (!__atomic_load_n(&sb.returned, __ATOMIC_ACQUIRE)) {
            fake_release(x->f);
            pthread_join(st, NULL);
            fail_msg("vol_submit waited for a stalled back end read");
        }
        pthread_join(st, NULL);
    }
    struct kicked_conn k = {.v = x->v};
    k.vc = (struct volume_conn){.kick = count_kick, .opaque = &k.kicks};
    volume_conn_attach(x->v, &k.vc);
    pthread_t kt;
    assert_int_equal(pthread_create(&kt, NULL, detach_when_kicked, &k), 0);
    assert_int_equal(engine_remove_volume(x->e, "vol", false), -EBUSY);
    assert_int_equal(__atomic_load_n(&k.kicks, __ATOMIC_ACQUIRE), 0);
    assert_int_equal(engine_remove_volume(x->e, "vol", true), 0);
    assert_true(volume_defunct(x->v));
    /* An idle client is told at once, not at its next request, and the
     * remove returns once it is gone; one that attaches after the remove
     * (its handshake raced it) is told at once too. */
    assert_int_equal(__atomic_load_n(&k.kicks, __ATOMIC_ACQUIRE), 1);
    assert_int_equal(volume_connections(x->v), 0);
    pthread_join(kt, NULL);
    int late_kicks = 0;
    struct volume_conn late = {.kick = count_kick, .opaque = &late_kicks};
    volume_conn_attach(x->v, &late);
    assert_int_equal(late_kicks, 1);
    volume_conn_detach(x->v, &late);
    expect_refused(x->v, VOL_IO_READ, 0, 3 * BLOCK_SIZE, NULL, -ESHUTDOWN); /* even a hit */
    expect_refused(x->v, VOL_IO_READ, 2u << 20, 100, NULL, -ESHUTDOWN);
    expect_refused(x->v, VOL_IO_WRITE, 0, sizeof buf, buf, -ESHUTDOWN);
    expect_refused(x->v, VOL_IO_TRIM, 0, sizeof buf, NULL, -ESHUTDOWN);
    expect_refused(x->v, VOL_IO_ZERO, 0, sizeof buf, NULL, -ESHUTDOWN);
    expect_refused(x->v, VOL_IO_FLUSH, 0, 0, NULL, -ESHUTDOWN);
    expect_refused(x->v, VOL_IO_CACHE, 0, sizeof buf, NULL, -ESHUTDOWN);
    if (slow) {
        /* The in-flight read completes once, right or with an error. */
        fake_release(x->f);
        assert_true(call_wait(slow, false));
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, putter_one, slow), 0);
        pthread_join(t, NULL);
        assert_true(call_wait(slow, true));
        assert_call_ok(slow);
        if (slow->status == 0) {
            uint8_t *want = fake_copy(x->f, 1u << 20, 2 * BLOCK_SIZE);
            assert_memory_equal(slow->data, want, 2 * BLOCK_SIZE);
            free(want);
        } else {
            assert_true(slow->status < 0);
        }
        call_free(slow);
    }
    assert_int_equal(fake_pwrites(x->f), 0);
    assert_int_equal(k.kicks, 1);
}

/* ---- 4. ordering and pins ---- */

/* Several requests of every kind stashed after done, then put in reverse
 * order from another thread: no end before its put. */
static void test_deferred_put_other_thread(void **state)
{
    struct fix *x = *state;
    uint64_t seed = 7;
    uint8_t *pat = malloc(64u << 10);
    fill_random(pat, 64u << 10, &seed);
    read_check(x->v, x->f, 0, 64u << 10, PUT_IN_DONE); /* hits below */
    read_check(x->v, x->f, 1u << 20, 1u << 20, PUT_IN_DONE);
    enum { N = 9 };
    struct call *cs[N];
    cs[0] = call_new(x->v, VOL_IO_READ, 100, 3000, PUT_MANUAL);              /* small hit */
    cs[1] = call_new(x->v, VOL_IO_READ, 10, 9 * BLOCK_SIZE, PUT_MANUAL);     /* pooled hit */
    cs[2] = call_new(x->v, VOL_IO_READ, 1u << 20, 1u << 20, PUT_MANUAL);     /* 256-block hit */
    cs[3] = call_new(x->v, VOL_IO_READ, (3u << 20) + 5, 9000, PUT_MANUAL);   /* small miss */
    cs[4] = call_new(x->v, VOL_IO_READ, (4u << 20) + 5, 300000, PUT_MANUAL); /* big miss */
    cs[5] = call_new(x->v, VOL_IO_WRITE, 6u << 20, 64u << 10, PUT_MANUAL);
    call_payload(cs[5], pat);
    cs[6] = call_new(x->v, VOL_IO_ZERO, (7u << 20) + 3, 10000, PUT_MANUAL);
    cs[7] = call_new(x->v, VOL_IO_READ, VOL_SIZE, 10, PUT_MANUAL); /* refused */
    cs[8] = call_new(x->v, VOL_IO_FLUSH, 0, 0, PUT_MANUAL);
    for (int i = 0; i < N; i++) {
        call_submit(cs[i]);
        assert_true(call_wait(cs[i], false));
    }
    sleep_ms(30); /* whatever the core still does after done, it is done now */
    /* More misses of the same sizes meanwhile: had the core given the
     * stashed replies' buffers back before vol_io_put, these would reuse
     * and overwrite them. */
    read_check(x->v, x->f, (5u << 20) + 5, 9000, PUT_IN_DONE);
    read_check(x->v, x->f, (5u << 20) + 20000, 300000, PUT_OTHER);
    read_check(x->v, x->f, (2u << 20) + 7, 9000, PUT_LATER);
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&cs[i]->lock);
        int ends = cs[i]->end_calls;
        recheck_reply(cs[i], "after the others completed");
        pthread_mutex_unlock(&cs[i]->lock);
        if (ends)
            fail_msg("request %d ended before vol_io_put", i);
    }
    struct put_list pl = {cs, N};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, putter_reverse, &pl), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) {
        assert_true(call_wait(cs[i], true));
        assert_call_ok(cs[i]);
        struct call *c = cs[i];
        if (i == 7) {
            assert_int_equal(c->status, -EINVAL);
        } else {
            assert_int_equal(c->status, 0);
        }
        if (c->op == VOL_IO_READ && c->status == 0) {
            uint8_t *want = fake_copy(x->f, c->off, c->len);
            assert_memory_equal(c->data, want, c->len);
            free(want);
            assert_int_equal(c->hit, i < 3);
        }
    }
    uint8_t *got = fake_copy(x->f, 6u << 20, 64u << 10);
    assert_memory_equal(got, pat, 64u << 10);
    free(got);
    read_check(x->v, x->f, 6u << 20, 2u << 20, PUT_IN_DONE);
    for (int i = 0; i < N; i++)
        call_free(cs[i]);
    free(pat);
}

/* The cache update runs after done without waiting for vol_io_put: while
 * a miss is not yet put, the same range already reads as a hit (checked
 * with the back end failing every read, so only a hit can succeed). */
static void test_update_before_put(void **state)
{
    struct fix *x = *state;
    const uint64_t off = 2u << 20, len = 17 * BLOCK_SIZE; /* whole blocks: cached at once */
    struct call *c = call_new(x->v, VOL_IO_READ, off, len, PUT_MANUAL);
    call_submit(c);
    assert_true(call_wait(c, false));
    assert_int_equal(c->status, 0);
    assert_false(c->hit);
    fake_set_fail(x->f, 1, 0);
    bool hit = false;
    for (int i = 0; i < 500 && !hit; i++) {
        struct call *h = run_io(x->v, VOL_IO_READ, off, len, NULL, 0, PUT_IN_DONE);
        if (h->status == 0) {
            assert_true(h->hit);
            assert_memory_equal(h->data, c->data, len);
            hit = true;
        }
        call_free(h);
        if (!hit)
            sleep_ms(10);
    }
    fake_set_fail(x->f, 0, 0);
    assert_true(hit);
    pthread_mutex_lock(&c->lock);
    int ends = c->end_calls;
    pthread_mutex_unlock(&c->lock);
    assert_int_equal(ends, 0);
    call_put(c);
    assert_true(call_wait(c, true));
    assert_call_ok(c);
    uint8_t *want = fake_copy(x->f, off, len);
    assert_memory_equal(c->data, want, len);
    free(want);
    call_free(c);
}

/* Zero-copy hits not yet put keep their bytes while the cache shrinks to
 * 16 blocks, their blocks are overwritten and the whole volume streams
 * through; after put+end the store is consistent and reads are right. */
static void test_pins_hold_until_put(void **state)
{
    struct fix *x = *state;
    const struct range rs[] = {
        {3 * BLOCK_SIZE + 17, 6 * BLOCK_SIZE},  /* pooled iovec array */
        {100 * BLOCK_SIZE + 5, 2 * BLOCK_SIZE}, /* inline iovecs */
        {1u << 20, 1u << 20},                   /* 256 blocks */
    };
    enum { N = 3 };
    struct call *cs[N];
    struct iovec *saved[N];
    unsigned nsaved[N];
    for (int i = 0; i < N; i++) {
        warm(x->v, x->f, rs[i].off, rs[i].len);
        cs[i] = call_new(x->v, VOL_IO_READ, rs[i].off, rs[i].len, PUT_MANUAL);
        call_submit(cs[i]);
        assert_true(call_wait(cs[i], false));
        assert_int_equal(cs[i]->status, 0);
        assert_true(cs[i]->hit);
        assert_true(cs[i]->done_in_submit);
        uint8_t *want = fake_copy(x->f, rs[i].off, rs[i].len);
        assert_memory_equal(cs[i]->data, want, rs[i].len);
        free(want);
        nsaved[i] = cs[i]->io->niov;
        saved[i] = malloc(nsaved[i] * sizeof(struct iovec));
        memcpy(saved[i], cs[i]->io->iov, nsaved[i] * sizeof(struct iovec));
    }
    assert_int_equal(engine_resize_cache(x->e, 16 * BLOCK_SIZE), 0);
    /* Overwrite the pinned blocks: their contents die while pinned. */
    uint64_t seed = 5;
    uint8_t *pat = malloc(1u << 20);
    for (int i = 0; i < N; i++) {
        fill_random(pat, rs[i].len, &seed);
        write_ok(x->v, rs[i].off, rs[i].len, pat, PUT_IN_DONE);
    }
    /* Stream everything through the tiny cache. */
    for (uint64_t off = 0; off < VOL_SIZE; off += 256u << 10)
        read_check(x->v, x->f, off, 256u << 10, (enum put_mode)((off >> 18) % 3));
    assert_int_equal(engine_resize_cache(x->e, 64 * BLOCK_SIZE), 0);
    for (uint64_t off = 4321; off + (1u << 20) <= VOL_SIZE; off += 1u << 20)
        read_check(x->v, x->f, off, 1u << 20, PUT_IN_DONE);
    for (int i = 0; i < N; i++) {
        struct call *c = cs[i];
        pthread_mutex_lock(&c->lock);
        bool same = c->io->niov == nsaved[i] &&
                    memcmp(c->io->iov, saved[i], nsaved[i] * sizeof(struct iovec)) == 0;
        recheck_reply(c, "after evictions");
        pthread_mutex_unlock(&c->lock);
        assert_true(same);
        if (c->bad[0])
            fail_msg("pinned hit %d: %s", i, c->bad);
    }
    struct put_list pl = {cs, N};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, putter_reverse, &pl), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) {
        assert_true(call_wait(cs[i], true));
        assert_call_ok(cs[i]);
        call_free(cs[i]);
        free(saved[i]);
    }
    assert_int_equal(store_check(engine_store(x->e)), 0);
    for (int i = 0; i < N; i++)
        read_check(x->v, x->f, rs[i].off, rs[i].len, PUT_OTHER);
    assert_int_equal(engine_resize_cache(x->e, CACHE_BYTES), 0);
    for (int i = 0; i < N; i++) {
        read_check(x->v, x->f, rs[i].off, rs[i].len, PUT_IN_DONE);
        assert_true(read_check(x->v, x->f, rs[i].off, rs[i].len, PUT_LATER));
    }
    assert_int_equal(store_check(engine_store(x->e)), 0);
    free(pat);
}

/* put+end gives the pins back: with an LRU cache of 64 blocks (one shard),
 * pinned hits whose contents die while pinned (overwritten) keep their
 * slots until vol_io_put; afterwards all 64 slots hold content again, so
 * 64 fresh blocks read twice are all hits. A pin kept after end would
 * leave its slot dead and unusable: the second pass would miss. */
static void test_pins_released_at_end(void **state)
{
    struct fix *x = *state;
    const uint64_t slots = 64;
    struct engine *e;
    struct engine_config ec = {
        .cache_bytes = slots * BLOCK_SIZE, .policy = "lru", .workers = x->workers};
    assert_int_equal(engine_create(&ec, &e), 0);
    struct fake *f = new_fake(1u << 20, 4, false);
    struct volume *v = add_vol(e, "small", f, false);
    const struct range rs[] = {
        {0, 12 * BLOCK_SIZE},                  /* pooled iovec array */
        {20 * BLOCK_SIZE + 1, 3 * BLOCK_SIZE}, /* inline iovecs */
    };
    enum { N = 2 };
    struct call *cs[N];
    for (int i = 0; i < N; i++) {
        warm(v, f, rs[i].off, rs[i].len);
        cs[i] = call_new(v, VOL_IO_READ, rs[i].off, rs[i].len, PUT_MANUAL);
        call_submit(cs[i]);
        assert_true(call_wait(cs[i], false));
        assert_int_equal(cs[i]->status, 0);
        assert_true(cs[i]->hit);
    }
    /* Overwrite them: the pinned contents die, their slots wait for the
     * last unpin. */
    uint64_t seed = 77;
    uint8_t pat[24 * BLOCK_SIZE];
    fill_random(pat, sizeof pat, &seed);
    write_ok(v, 0, sizeof pat, pat, PUT_IN_DONE);
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&cs[i]->lock);
        recheck_reply(cs[i], "after the overwrite");
        pthread_mutex_unlock(&cs[i]->lock);
    }
    struct put_list pl = {cs, N};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, putter_reverse, &pl), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) {
        assert_true(call_wait(cs[i], true));
        assert_call_ok(cs[i]);
        call_free(cs[i]);
    }
    assert_int_equal(store_check(engine_store(e)), 0);
    /* Every slot usable again. */
    const uint64_t off = 128 * BLOCK_SIZE, len = slots * BLOCK_SIZE;
    assert_false(read_check(v, f, off, len, PUT_IN_DONE));
    unsigned p = fake_preads(f);
    assert_true(read_check(v, f, off, len, PUT_OTHER));
    assert_int_equal(fake_preads(f), p);
    read_check(v, f, 0, sizeof pat, PUT_LATER);
    volume_put(v);
    engine_destroy(e);
}

/* ---- 5. concurrency ---- */

#define NTHREADS   4
#define REGION     (1536u << 10) /* each thread's, block-aligned and disjoint */
#define MAX_OP_LEN (128u << 10)

struct putq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct call *items[64];
    unsigned n;
    bool stop;
};

static void *putq_main(void *arg)
{
    struct putq *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->n == 0 && !q->stop)
            pthread_cond_wait(&q->cond, &q->lock);
        if (q->n == 0)
            break;
        struct call *c = q->items[--q->n];
        pthread_mutex_unlock(&q->lock);
        call_put(c);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static void putq_push(struct putq *q, struct call *c)
{
    pthread_mutex_lock(&q->lock);
    while (q->n == sizeof q->items / sizeof q->items[0]) {
        pthread_mutex_unlock(&q->lock);
        sleep_ms(1);
        pthread_mutex_lock(&q->lock);
    }
    q->items[q->n++] = c;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

struct hammer {
    struct fix *x;
    struct putq *q;
    unsigned id, ops;
    uint64_t base;
    uint8_t *model; /* what the region must read as */
    uint64_t seed;
    unsigned reads, hits;
    char err[256];
};

#define HFAIL(h, ...)                                                                              \
    do {                                                                                           \
        if (!(h)->err[0])                                                                          \
            snprintf((h)->err, sizeof(h)->err, __VA_ARGS__);                                       \
        return false;                                                                              \
    } while (0)

static enum put_mode pick_mode(struct hammer *h)
{
    return (enum put_mode)(xs(&h->seed) % 3);
}

/* Drive a submitted call to its end by its mode, from this thread. */
static bool h_finish(struct hammer *h, struct call *c)
{
    if (!call_wait(c, false))
        HFAIL(h, "done never came (op %d)", c->op);
    if (c->mode == PUT_LATER)
        call_put(c);
    else if (c->mode == PUT_OTHER)
        putq_push(h->q, c);
    if (!call_wait(c, true))
        HFAIL(h, "end never came (op %d)", c->op);
    if (c->bad[0])
        HFAIL(h, "op %d off %llu len %llu: %s", c->op, (unsigned long long)c->off,
              (unsigned long long)c->len, c->bad);
    if (c->done_calls != 1 || c->end_calls != 1)
        HFAIL(h, "done %d times, end %d times", c->done_calls, c->end_calls);
    return true;
}

static void h_range(struct hammer *h, uint64_t *off, uint64_t *len)
{
    uint64_t l = 1 + xs(&h->seed) % MAX_OP_LEN;
    if (xs(&h->seed) % 4 == 0)
        l = (1 + xs(&h->seed) % 8) * BLOCK_SIZE; /* whole blocks sometimes */
    uint64_t o = xs(&h->seed) % (REGION - l + 1);
    if (xs(&h->seed) % 4 == 0)
        o &= ~BLOCK_MASK;
    *off = o;
    *len = l;
}

static bool h_reads(struct hammer *h)
{
    struct call *cs[4];
    unsigned n = 1 + xs(&h->seed) % 4;
    for (unsigned i = 0; i < n; i++) {
        uint64_t o, l;
        h_range(h, &o, &l);
        cs[i] = call_new(h->x->v, VOL_IO_READ, h->base + o, l, pick_mode(h));
        call_submit(cs[i]);
    }
    bool ok = true;
    for (unsigned i = 0; i < n; i++) {
        struct call *c = cs[i];
        if (ok && !h_finish(h, c))
            ok = false;
        if (ok && c->status != 0) {
            snprintf(h->err, sizeof h->err, "read status %d", c->status);
            ok = false;
        }
        if (ok && memcmp(c->data, h->model + (c->off - h->base), c->len) != 0) {
            snprintf(h->err, sizeof h->err, "read off %llu len %llu (%s) differs from the model",
                     (unsigned long long)c->off, (unsigned long long)c->len,
                     c->hit ? "hit" : "miss");
            ok = false;
        }
        if (!ok) {
            /* Still see every request through to its end before leaving. */
            for (unsigned j = i; j < n; j++) {
                call_wait(cs[j], false);
                if (cs[j]->mode != PUT_IN_DONE && !cs[j]->put_called)
                    call_put(cs[j]);
                call_wait(cs[j], true);
            }
            for (unsigned j = i; j < n; j++)
                call_free(cs[j]);
            return false;
        }
        h->reads++;
        h->hits += c->hit;
        call_free(c);
    }
    return true;
}

static bool h_change(struct hammer *h, enum vol_io_op op)
{
    uint64_t o, l;
    h_range(h, &o, &l);
    struct call *c = call_new(h->x->v, op, h->base + o, l, pick_mode(h));
    uint8_t *pat = NULL;
    if (op == VOL_IO_WRITE) {
        pat = malloc(l);
        fill_random(pat, l, &h->seed);
        call_payload(c, pat);
    }
    call_submit(c);
    bool ok = h_finish(h, c);
    if (ok && c->status != 0) {
        snprintf(h->err, sizeof h->err, "op %d status %d", op, c->status);
        ok = false;
    }
    if (ok) {
        if (op == VOL_IO_WRITE)
            memcpy(h->model + o, pat, l);
        else if (op == VOL_IO_ZERO)
            memset(h->model + o, 0, l);
        else if (op == VOL_IO_TRIM)
            memset(h->model + o, 0xEE, l); /* the fake's garbage */
    }
    free(pat);
    call_free(c);
    return ok;
}

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (unsigned i = 0; i < h->ops && !h->err[0]; i++) {
        unsigned r = xs(&h->seed) % 100;
        bool ok;
        if (r < 55)
            ok = h_reads(h);
        else if (r < 85)
            ok = h_change(h, VOL_IO_WRITE);
        else if (r < 92)
            ok = h_change(h, VOL_IO_ZERO);
        else if (r < 97)
            ok = h_change(h, VOL_IO_TRIM);
        else
            ok = h_change(h, VOL_IO_CACHE);
        if (!ok)
            break;
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    struct fix *x = *state;
    __atomic_store_n(&g_nowait, 2, __ATOMIC_RELAXED); /* some small misses inline */
    struct putq q = {.n = 0};
    pthread_mutex_init(&q.lock, NULL);
    pthread_cond_init(&q.cond, NULL);
    pthread_t qt;
    assert_int_equal(pthread_create(&qt, NULL, putq_main, &q), 0);
    struct hammer hs[NTHREADS];
    pthread_t ts[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++) {
        hs[i] = (struct hammer){.x = x,
                                .q = &q,
                                .id = i,
                                .ops = 250,
                                .base = (uint64_t)i * (2u << 20),
                                .seed = 1000 + i};
        hs[i].model = fake_copy(x->f, hs[i].base, REGION);
        assert_int_equal(pthread_create(&ts[i], NULL, hammer_main, &hs[i]), 0);
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(ts[i], NULL);
    pthread_mutex_lock(&q.lock);
    q.stop = true;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.lock);
    pthread_join(qt, NULL);
    pthread_mutex_destroy(&q.lock);
    pthread_cond_destroy(&q.cond);
    __atomic_store_n(&g_nowait, 0, __ATOMIC_RELAXED);
    unsigned reads = 0, hits = 0;
    for (unsigned i = 0; i < NTHREADS; i++) {
        if (hs[i].err[0])
            fail_msg("thread %u: %s", i, hs[i].err);
        reads += hs[i].reads;
        hits += hs[i].hits;
    }
    assert_true(reads > 0 && hits > 0 && hits < reads); /* both kinds happened */
    for (unsigned i = 0; i < NTHREADS; i++) {
        uint8_t *fd = fake_copy(x->f, hs[i].base, REGION);
        if (memcmp(fd, hs[i].model, REGION) != 0)
            fail_msg("thread %u: the back end's data differs from the model", i);
        free(fd);
        read_check(x->v, x->f, hs[i].base, REGION, PUT_IN_DONE);
        free(hs[i].model);
    }
    assert_int_equal(store_check(engine_store(x->e)), 0);
}

/* ---- 6. compare-and-write and copy ---- */

/* COMPARE_WRITE of [off, +len): expect, then data. Returns the call. */
static struct call *caw(struct volume *v, uint64_t off, uint64_t len, const uint8_t *expect,
                        const uint8_t *data, enum put_mode mode)
{
    uint8_t *p = malloc(2 * len);
    memcpy(p, expect, len);
    memcpy(p + len, data, len);
    struct call *c = run_io(v, VOL_IO_COMPARE_WRITE, off, len, p, 0, mode);
    free(p);
    return c;
}

static void test_compare_write(void **state)
{
    struct fix *x = *state;
    const uint64_t off = 3 * BLOCK_SIZE + 512, len = 2 * BLOCK_SIZE;
    uint64_t seed = 77;
    uint8_t *now = fake_copy(x->f, off, len), *new1 = malloc(len), *wrong = malloc(len);
    fill_random(new1, len, &seed);
    /* Cached first, so a stale cache would show. */
    read_check(x->v, x->f, off - 512, len + 1024, PUT_IN_DONE);

    /* A match writes the back end and the cache follows. */
    struct call *c = caw(x->v, off, len, now, new1, PUT_LATER);
    assert_int_equal(c->status, 0);
    call_free(c);
    uint8_t *be = fake_copy(x->f, off, len);
    assert_memory_equal(be, new1, len);
    free(be);
    read_check(x->v, x->f, off - 512, len + 1024, PUT_IN_DONE);

    /* A mismatch at byte 5000 writes nothing and says where. */
    memcpy(wrong, new1, len);
    wrong[5000] ^= 0x40;
    c = caw(x->v, off, len, wrong, now, PUT_IN_DONE);
    assert_int_equal(c->status, -EILSEQ);
    assert_int_equal(c->miscompare, 5000);
    call_free(c);
    be = fake_copy(x->f, off, len);
    assert_memory_equal(be, new1, len);
    free(be);
    read_check(x->v, x->f, off, len, PUT_OTHER);

    /* Refusals: too long, beyond the end, no payload. */
    uint8_t *big = calloc(1, VOL_MAX_IO + 2 * BLOCK_SIZE);
    expect_refused(x->v, VOL_IO_COMPARE_WRITE, 0, VOL_MAX_IO / 2 + BLOCK_SIZE, big, -EINVAL);
    expect_refused(x->v, VOL_IO_COMPARE_WRITE, VOL_SIZE - BLOCK_SIZE, 2 * BLOCK_SIZE, big, -EINVAL);
    expect_refused(x->v, VOL_IO_COMPARE_WRITE, 0, BLOCK_SIZE, NULL, -EINVAL);
    free(big);
    free(now);
    free(new1);
    free(wrong);
}

static void test_compare_write_readonly(void **state)
{
    struct fix *x = *state;
    struct fake *f = new_fake(VOL_SIZE, 9, false);
    struct volume *ro = add_vol(x->e, "ro", f, true);
    uint8_t *now = fake_copy(f, 0, BLOCK_SIZE);
    struct call *c = caw(ro, 0, BLOCK_SIZE, now, now, PUT_IN_DONE);
    assert_int_equal(c->status, -EPERM);
    call_free(c);
    assert_int_equal(fake_pwrites(f), 0);
    free(now);
    volume_put(ro);
    assert_int_equal(engine_remove_volume(x->e, "ro", false), 0);
}

/* Threads add one to a counter with compare-and-write; with plain writes
 * of other bytes of the same block in between. Any non-atomic window
 * loses an increment (two compares pass on the same old value). */
#define CAW_THREADS 4
#define CAW_INCS    60
struct caw_thread {
    struct volume *v;
    unsigned id;
    unsigned retries;
    char err[120];
};

static void *caw_main(void *arg)
{
    struct caw_thread *t = arg;
    uint64_t seed = 500 + t->id;
    for (unsigned done = 0; done < CAW_INCS && !t->err[0];) {
        /* The counter lives in the first 8 bytes of block 7; each thread
         * also owns 16 bytes further in that block for plain writes. */
        struct call *r = run_io(t->v, VOL_IO_READ, 7 * BLOCK_SIZE, 8, NULL, 0, PUT_IN_DONE);
        uint64_t val;
        memcpy(&val, r->data, 8);
        call_free(r);
        uint64_t nv = val + 1;
        struct call *c =
            caw(t->v, 7 * BLOCK_SIZE, 8, (const uint8_t *)&val, (const uint8_t *)&nv, PUT_IN_DONE);
        int st = c->status;
        call_free(c);
        if (st == 0)
            done++;
        else if (st == -EILSEQ)
            t->retries++;
        else
            snprintf(t->err, sizeof t->err, "status %d", st);
        uint8_t pat[16];
        fill_random(pat, sizeof pat, &seed);
        write_ok(t->v, 7 * BLOCK_SIZE + 64 + 16 * t->id, 16, pat, PUT_IN_DONE);
    }
    return NULL;
}

static void test_compare_write_atomic(void **state)
{
    struct fix *x = *state;
    uint64_t zero = 0;
    write_ok(x->v, 7 * BLOCK_SIZE, 8, &zero, PUT_IN_DONE);
    struct caw_thread ts[CAW_THREADS];
    pthread_t tid[CAW_THREADS];
    for (unsigned i = 0; i < CAW_THREADS; i++) {
        ts[i] = (struct caw_thread){.v = x->v, .id = i};
        assert_int_equal(pthread_create(&tid[i], NULL, caw_main, &ts[i]), 0);
    }
    for (unsigned i = 0; i < CAW_THREADS; i++) {
        pthread_join(tid[i], NULL);
        if (ts[i].err[0])
            fail_msg("thread %u: %s", i, ts[i].err);
    }
    uint8_t *be = fake_copy(x->f, 7 * BLOCK_SIZE, 8);
    uint64_t val;
    memcpy(&val, be, 8);
    free(be);
    assert_int_equal(val, (uint64_t)CAW_THREADS * CAW_INCS);
    read_check(x->v, x->f, 7 * BLOCK_SIZE, BLOCK_SIZE, PUT_IN_DONE);
}

static void copy_ok(struct volume *dst, uint64_t doff, struct volume *src, uint64_t soff,
                    uint64_t len)
{
    struct call *c = call_new(dst, VOL_IO_COPY, doff, len, PUT_LATER);
    c->io->src = src;
    c->io->src_offset = soff;
    call_run(c);
    assert_int_equal(c->status, 0);
    call_free(c);
}

static void test_copy(void **state)
{
    struct fix *x = *state;
    struct fake *f2 = new_fake(VOL_SIZE, 5, false);
    struct volume *v2 = add_vol(x->e, "dst", f2, false);
    /* Aligned alike, the source cached: the copy shares its contents
     * (no second hash), and reads of the copy are hits with its bytes. */
    read_check(x->v, x->f, 0, 64 * BLOCK_SIZE, PUT_IN_DONE);
    copy_ok(v2, 100 * BLOCK_SIZE, x->v, 8 * BLOCK_SIZE, 32 * BLOCK_SIZE);
    struct volume_snapshot vs;
    volume_snapshot(v2, &vs);
    assert_int_equal(vs.copy_shared_blocks, 32);
    assert_true(read_check(v2, f2, 100 * BLOCK_SIZE, 32 * BLOCK_SIZE, PUT_IN_DONE));
    /* Between volumes, unaligned, the source partly cached. */
    const uint64_t len = 100 * BLOCK_SIZE + 1536;
    copy_ok(v2, 10 * BLOCK_SIZE + 512, x->v, 40 * BLOCK_SIZE + 1024, len);
    uint8_t *a = fake_copy(x->f, 40 * BLOCK_SIZE + 1024, len);
    uint8_t *b = fake_copy(f2, 10 * BLOCK_SIZE + 512, len);
    assert_memory_equal(a, b, len);
    free(b);
    read_check(v2, f2, 10 * BLOCK_SIZE, len + 1024, PUT_IN_DONE);
    /* Within one volume. */
    copy_ok(x->v, 300 * BLOCK_SIZE, x->v, 40 * BLOCK_SIZE + 1024, len);
    b = fake_copy(x->f, 300 * BLOCK_SIZE, len);
    assert_memory_equal(a, b, len);
    free(a);
    free(b);
    read_check(x->v, x->f, 300 * BLOCK_SIZE, len, PUT_OTHER);
    /* Refusals: source range beyond its end, no source, too long. */
    struct call *c = call_new(v2, VOL_IO_COPY, 0, 2 * BLOCK_SIZE, PUT_IN_DONE);
    c->io->src = x->v;
    c->io->src_offset = VOL_SIZE - BLOCK_SIZE;
    call_run(c);
    assert_int_equal(c->status, -EINVAL);
    call_free(c);
    expect_refused(v2, VOL_IO_COPY, 0, BLOCK_SIZE, NULL, -EINVAL);
    volume_put(v2);
    assert_int_equal(engine_remove_volume(x->e, "dst", false), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_read_miss_then_hit),
        T(test_read_max_io),
        T(test_inline_miss),
        T(test_async_miss),
        T(test_submit_never_waits),
        T(test_write_read_back),
        T(test_trim_zero),
        T(test_flush_extents_cache),
        T(test_disabled_passthrough),
        T(test_errors),
        T(test_readonly),
        T(test_removed_with_force),
        T(test_deferred_put_other_thread),
        T(test_update_before_put),
        T(test_pins_hold_until_put),
        T(test_pins_released_at_end),
        T(test_concurrency),
        T(test_compare_write),
        T(test_compare_write_readonly),
        T(test_compare_write_atomic),
        T(test_copy),
    };
    g_workers = 0;
    int r = cmocka_run_group_tests_name("submit, workers=0", tests, NULL, NULL);
    g_workers = 2;
    r |= cmocka_run_group_tests_name("submit, workers=2", tests, NULL, NULL);
    /* Misses through the back end's asynchronous read (no pread_nowait). */
    g_async = 1;
    aq_start();
    r |= cmocka_run_group_tests_name("submit, workers=2, pread_async", tests, NULL, NULL);
    bufpool_drain();
    return r;
}
