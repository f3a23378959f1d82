/* Fault back end (tests only): a layer over another back end that adds
 * latency and fails requests at random, to exercise error paths and timing
 * in the volume layer and the NBD front end without real broken hardware.
 * Since ackfirst and noflush below lie about writes, it is compiled only
 * with meson -Dfault_backend=true (scripts/build, scripts/fuzz and CI set
 * it); other builds have absent.c in its place, which refuses fault: specs.
 *
 * Spec: "fault:OPTIONS:INNER_SPEC", OPTIONS a comma list of
 *   rdelay=DUR, wdelay=DUR   delay reads / writes (write, flush, trim, zero);
 *                            DUR is "5ms", "200us", "1s", "300ns" (bare = s)
 *   rerror=P, werror=P       fail a read / write with probability P in 0..1
 *   error=EIO|ENOSPC|EPERM   the error returned (default EIO)
 *   seed=N                   random seed (default 1)
 *   file=PATH                fail only while PATH exists, so a test can switch
 *                            errors on and off (delays always apply)
 *   ackfirst=DUR|never       LIE about writes, for negative controls of the
 *                            crash tests: every write, zero and trim is
 *                            acknowledged at once and applied DUR later by a
 *                            background thread, in order ("never": dropped);
 *                            FUA and FLUSH are acknowledged without waiting
 *                            for them. Reads do not see queued writes. On a
 *                            clean close the queue is applied; a kill -9
 *                            loses it, which a crash checker must notice.
 *   noflush=1                LIE about durability only: FLUSH is acknowledged
 *                            without being passed on and FUA is dropped from
 *                            writes, zeroes and trims (which are done at
 *                            once): a back end with a volatile cache loses
 *                            them in a crash (the other negative control).
 * The inner spec may itself contain colons (nbd URIs do); OPTIONS cannot. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#define FAULT_PREFIX "fault:"

/* ackfirst: a change acknowledged but not yet applied. Test-only, so a
 * malloc per queued write is fine here (the data path rule is for shoald's
 * own code). */
enum lie_kind { LIE_WRITE, LIE_ZERO, LIE_TRIM };
struct lie {
    struct lie *next;
    enum lie_kind kind;
    uint32_t count, flags;
    uint64_t offset;
    uint64_t due_ns;
    uint8_t data[]; /* LIE_WRITE: count bytes */
};

#define LIE_QUEUE_MAX (256ull << 20) /* queued bytes before writers wait */

struct fault_be {
    struct backend be; /* first: be.priv points back at us */
    uint64_t rdelay_ns, wdelay_ns;
    double rerror, werror;
    int error; /* positive errno */
    uint64_t seed;
    char *file;
    char *options; /* for describe */

    /* ackfirst */
    bool noflush;    /* noflush=1 */
    bool lie;        /* ackfirst given */
    bool lie_never;  /* ackfirst=never: drop instead of applying */
    uint64_t lie_ns; /* how long after the acknowledgement to apply */
    pthread_t applier;
    bool applier_running;
    pthread_mutex_t lie_lock; /* the queue, its byte count, stopping */
    pthread_cond_t lie_cond;  /* queue changed, or stop */
    struct lie *head, *tail;
    uint64_t queued_bytes;
    bool stopping;
};

static const struct {
    const char *name;
    int value;
} error_names[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC},   {"EPERM", EPERM},         {"EINVAL", EINVAL},
    {"ENOMEM", ENOMEM}, {"ENOTSUP", ENOTSUP}, {"ETIMEDOUT", ETIMEDOUT}, {"EROFS", EROFS},
};

static struct fault_be *to_fault(struct backend *be)
{
    return be->priv;
}

/* ---- random numbers: one state per thread, so no lock on the data path */

static atomic_uint next_thread_no;
static __thread unsigned thread_no;
static __thread const struct fault_be *rng_owner;
static __thread uint64_t rng_state;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rand01(const struct fault_be *f)
{
    if (rng_owner != f) {
        if (!thread_no)
            thread_no = atomic_fetch_add(&next_thread_no, 1) + 1;
        rng_owner = f;
        rng_state = f->seed + thread_no;
    }
    return (double)(splitmix64(&rng_state) >> 11) * 0x1.0p-53;
}

static bool should_fail(const struct fault_be *f, double p)
{
    if (p <= 0)
        return false;
    if (f->file && access(f->file, F_OK) != 0)
        return false;
    return p >= 1 || rand01(f) < p;
}

static void delay(uint64_t ns)
{
    if (!ns)
        return;
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---- ackfirst: acknowledge now, apply later (or never) */

static int lie_apply(struct fault_be *f, const struct lie *l)
{
    struct backend *next = f->be.next;
    switch (l->kind) {
    case LIE_WRITE:
        return backend_pwrite(next, l->data, l->count, l->offset, l->flags);
    case LIE_ZERO:
        return backend_zero(next, l->count, l->offset, l->flags);
    case LIE_TRIM:
        return backend_trim(next, l->count, l->offset, l->flags);
    }
    return -EINVAL;
}

static void *lie_applier(void *arg)
{
    struct fault_be *f = arg;
    pthread_mutex_lock(&f->lie_lock);
    for (;;) {
        struct lie *l = f->head;
        if (!l) {
            if (f->stopping)
                break;
            pthread_cond_wait(&f->lie_cond, &f->lie_lock);
            continue;
        }
        uint64_t now = now_ns();
        if (!f->stopping && now < l->due_ns) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t wait = l->due_ns - now;
            uint64_t ns = (uint64_t)ts.tv_nsec + wait % 1000000000ull;
            ts.tv_sec += (time_t)(wait / 1000000000ull + ns / 1000000000ull);
            ts.tv_nsec = (long)(ns % 1000000000ull);
            pthread_cond_timedwait(&f->lie_cond, &f->lie_lock, &ts);
            continue;
        }
        f->head = l->next;
        if (!f->head)
            f->tail = NULL;
        pthread_mutex_unlock(&f->lie_lock);
        int r = lie_apply(f, l);
        if (r < 0)
            log_warn(backend, "fault: ackfirst: a write acknowledged earlier failed: %s",
                     strerror(-r));
        pthread_mutex_lock(&f->lie_lock);
        f->queued_bytes -= l->kind == LIE_WRITE ? l->count : 0;
        free(l);
        pthread_cond_broadcast(&f->lie_cond);
    }
    pthread_mutex_unlock(&f->lie_lock);
    return NULL;
}

/* Queue a change (or drop it, with ackfirst=never); 0 = "acknowledged". */
static int lie_queue(struct fault_be *f, enum lie_kind kind, const void *buf, uint32_t count,
                     uint64_t offset, uint32_t flags)
{
    if (f->lie_never)
        return 0;
    size_t extra = kind == LIE_WRITE ? count : 0;
    struct lie *l = malloc(sizeof(*l) + extra);
    if (!l)
        return -ENOMEM;
    *l = (struct lie){.kind = kind, .count = count, .flags = flags, .offset = offset};
    if (extra)
        memcpy(l->data, buf, extra);
    LOCK_GUARD(&f->lie_lock);
    while (f->queued_bytes + extra > LIE_QUEUE_MAX && f->head && !f->stopping)
        pthread_cond_wait(&f->lie_cond, &f->lie_lock);
    l->due_ns = now_ns() + f->lie_ns;
    if (f->tail)
        f->tail->next = l;
    else
        f->head = l;
    f->tail = l;
    f->queued_bytes += extra;
    pthread_cond_broadcast(&f->lie_cond);
    return 0;
}

static int lie_start(struct fault_be *f)
{
    if (f->lie_never)
        return 0;
    int r = pthread_create(&f->applier, NULL, lie_applier, f);
    if (r != 0)
        return -r;
    f->applier_running = true;
    return 0;
}

/* Clean close: apply what is queued, then stop the thread. */
static void lie_stop(struct fault_be *f)
{
    if (!f->applier_running)
        return;
    pthread_mutex_lock(&f->lie_lock);
    f->stopping = true;
    pthread_cond_broadcast(&f->lie_cond);
    pthread_mutex_unlock(&f->lie_lock);
    pthread_join(f->applier, NULL);
    f->applier_running = false;
}

/* ---- ops */

static int fault_read_side(struct fault_be *f)
{
    delay(f->rdelay_ns);
    return should_fail(f, f->rerror) ? -f->error : 0;
}

static int fault_write_side(struct fault_be *f)
{
    delay(f->wdelay_ns);
    return should_fail(f, f->werror) ? -f->error : 0;
}

static int fault_pread(struct backend *be, void *buf, uint32_t count, uint64_t offset)
{
    int r = fault_read_side(to_fault(be));
    if (r < 0)
        return r;
    return be->next->ops->pread(be->next, buf, count, offset);
}

static int fault_pwrite(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                        uint32_t flags)
{
    struct fault_be *f = to_fault(be);
    int r = fault_write_side(f);
    if (r < 0)
        return r;
    if (f->lie)
        return lie_queue(f, LIE_WRITE, buf, count, offset, flags);
    if (f->noflush)
        flags &= ~BE_FUA;
    return backend_pwrite(be->next, buf, count, offset, flags);
}

static int fault_flush(struct backend *be)
{
    struct fault_be *f = to_fault(be);
    int r = fault_write_side(f);
    if (r < 0)
        return r;
    if (f->lie || f->noflush)
        return 0; /* the lie: nothing is made durable */
    return be->next->ops->flush(be->next);
}

static int fault_trim(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct fault_be *f = to_fault(be);
    int r = fault_write_side(f);
    if (r < 0)
        return r;
    if (f->lie)
        return lie_queue(f, LIE_TRIM, NULL, count, offset, flags);
    if (f->noflush)
        flags &= ~BE_FUA;
    return backend_trim(be->next, count, offset, flags);
}

static int fault_zero(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct fault_be *f = to_fault(be);
    int r = fault_write_side(f);
    if (r < 0)
        return r;
    if (f->lie && !(flags & BE_FAST_ZERO)) /* a fast zero's refusal stays honest */
        return lie_queue(f, LIE_ZERO, NULL, count, offset, flags);
    if (f->noflush)
        flags &= ~BE_FUA;
    return backend_zero(be->next, count, offset, flags);
}

static int fault_extents(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                         void *opaque)
{
    return backend_extents(be->next, count, offset, fn, opaque);
}

static void fault_describe(struct backend *be, char *buf, size_t len)
{
    struct fault_be *f = to_fault(be);
    char inner[256];
    if (be->next->ops->describe)
        be->next->ops->describe(be->next, inner, sizeof(inner));
    else
        snprintf(inner, sizeof(inner), "%s %s", be->next->ops->name, be->next->spec);
    snprintf(buf, len, "fault(%s) over %s", f->options, inner);
}

static void fault_close(struct backend *be)
{
    if (!be)
        return;
    struct fault_be *f = to_fault(be);
    lie_stop(f);
    for (struct lie *l = f->head, *n; l; l = n) {
        n = l->next;
        free(l);
    }
    pthread_cond_destroy(&f->lie_cond);
    pthread_mutex_destroy(&f->lie_lock);
    backend_close(be->next);
    free(f->file);
    free(f->options);
    free(be->spec);
    free(f);
}

/* ---- spec parsing */

/* "5ms", "200us", "300ns", "1.5s", "2" (seconds). */
static int parse_delay(const char *s, uint64_t *ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return -EINVAL;
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1e9;
    else if (strcmp(end, "ms") == 0)
        mult = 1e6;
    else if (strcmp(end, "us") == 0)
        mult = 1e3;
    else if (strcmp(end, "ns") == 0)
        mult = 1;
    else
        return -EINVAL;
    if (v * mult > 3600e9)
        return -ERANGE; /* an hour per request is surely a typo */
    *ns = (uint64_t)(v * mult);
    return 0;
}

static int parse_prob(const char *s, double *p)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= 0 && v <= 1))
        return -EINVAL;
    *p = v;
    return 0;
}

static int parse_error(const char *s, int *e)
{
    for (size_t i = 0; i < ARRAY_SIZE(error_names); i++) {
        if (strcasecmp(s, error_names[i].name) == 0) {
            *e = error_names[i].value;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_option(struct fault_be *f, char *opt)
{
    char *eq = strchr(opt, '=');
    if (!eq)
        return -EINVAL;
    *eq = '\0';
    const char *key = opt, *val = eq + 1;
    if (strcmp(key, "rdelay") == 0)
        return parse_delay(val, &f->rdelay_ns);
    if (strcmp(key, "wdelay") == 0)
        return parse_delay(val, &f->wdelay_ns);
    if (strcmp(key, "rerror") == 0)
        return parse_prob(val, &f->rerror);
    if (strcmp(key, "werror") == 0)
        return parse_prob(val, &f->werror);
    if (strcmp(key, "error") == 0)
        return parse_error(val, &f->error);
    if (strcmp(key, "seed") == 0) {
        char *end;
        errno = 0;
        f->seed = strtoull(val, &end, 0);
        return (end == val || *end || errno) ? -EINVAL : 0;
    }
    if (strcmp(key, "ackfirst") == 0) {
        f->lie = true;
        f->lie_never = strcmp(val, "never") == 0;
        return f->lie_never ? 0 : parse_delay(val, &f->lie_ns);
    }
    if (strcmp(key, "noflush") == 0) {
        if (strcmp(val, "1") != 0 && strcmp(val, "0") != 0)
            return -EINVAL;
        f->noflush = val[0] == '1';
        return 0;
    }
    if (strcmp(key, "file") == 0) {
        if (!*val)
            return -EINVAL;
        free(f->file);
        f->file = strdup(val);
        return f->file ? 0 : -ENOMEM;
    }
    return -EINVAL;
}

static int parse_options(struct fault_be *f, const char *opts)
{
    _cleanup_free_ char *copy = strdup(opts);
    if (!copy)
        return -ENOMEM;
    char *save = NULL;
    for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        _cleanup_free_ char *orig = strdup(opt);
        int r = parse_option(f, opt);
        if (r < 0) {
            log_error(backend, "fault: bad option '%s'", orig ? orig : opt);
            return r;
        }
    }
    return 0;
}

static bool fault_probe(const char *spec)
{
    return strncmp(spec, FAULT_PREFIX, strlen(FAULT_PREFIX)) == 0;
}

static int fault_open(const struct backend_params *p, struct backend **out)
{
    const char *opts = p->spec + strlen(FAULT_PREFIX);
    const char *colon = strchr(opts, ':');
    if (!colon || !colon[1]) {
        log_error(backend, "fault: spec must be fault:OPTIONS:INNER_SPEC, got '%s'", p->spec);
        return -EINVAL;
    }
    struct fault_be *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->be.ops = &backend_fault_ops;
    f->be.priv = f;
    pthread_mutex_init(&f->lie_lock, NULL);
    pthread_cond_init(&f->lie_cond, NULL);
    f->error = EIO;
    f->seed = 1;
    f->options = strndup(opts, (size_t)(colon - opts));
    f->be.spec = strdup(p->spec);
    int r = (f->options && f->be.spec) ? parse_options(f, f->options) : -ENOMEM;
    if (r == 0) {
        struct backend_params inner = *p;
        inner.spec = colon + 1;
        r = backend_open(&inner, &f->be.next);
    }
    if (r == 0 && f->noflush)
        log_warn(backend,
                 "fault(%s): FLUSH and FUA are dropped (noflush: a negative control for"
                 " crash tests; never use it for data)",
                 f->options);
    if (r == 0 && f->lie) {
        log_warn(backend,
                 "fault(%s): writes are acknowledged before they are done (ackfirst:"
                 " a negative control for crash tests; never use it for data)",
                 f->options);
        r = lie_start(f);
    }
    if (r < 0) {
        fault_close(&f->be); /* be.next: NULL unless opened (backend_open clears it) */
        return r;
    }
    struct backend *next = f->be.next;
    f->be.size = next->size;
    f->be.caps = next->caps;
    f->be.min_block = next->min_block;
    f->be.io_align = next->io_align;
    *out = &f->be;
    return 0;
}

const struct backend_ops backend_fault_ops = {
    .name = "fault",
    .probe = fault_probe,
    .open = fault_open,
    .close = fault_close,
    .pread = fault_pread,
    .pwrite = fault_pwrite,
    .flush = fault_flush,
    .trim = fault_trim,
    .zero = fault_zero,
    .extents = fault_extents,
    .describe = fault_describe,
};
