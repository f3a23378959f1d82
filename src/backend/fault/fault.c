/* Fault back end (tests only): a layer over another back end that adds
 * latency and fails requests at random, to exercise error paths and timing
 * in the volume layer and the NBD front end without real broken hardware.
 *
 * Spec: "fault:OPTIONS:INNER_SPEC", OPTIONS a comma list of
 *   rdelay=DUR, wdelay=DUR   delay reads / writes (write, flush, trim, zero);
 *                            DUR is "5ms", "200us", "1s", "300ns" (bare = s)
 *   rerror=P, werror=P       fail a read / write with probability P in 0..1
 *   error=EIO|ENOSPC|EPERM   the error returned (default EIO)
 *   seed=N                   random seed (default 1)
 *   file=PATH                fail only while PATH exists, so a test can switch
 *                            errors on and off (delays always apply)
 * The inner spec may itself contain colons (nbd URIs do); OPTIONS cannot. */
#include <errno.h>
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

struct fault_be {
    struct backend be; /* first: be.priv points back at us */
    uint64_t rdelay_ns, wdelay_ns;
    double rerror, werror;
    int error; /* positive errno */
    uint64_t seed;
    char *file;
    char *options; /* for describe */
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
    int r = fault_write_side(to_fault(be));
    if (r < 0)
        return r;
    return backend_pwrite(be->next, buf, count, offset, flags);
}

static int fault_flush(struct backend *be)
{
    int r = fault_write_side(to_fault(be));
    if (r < 0)
        return r;
    return be->next->ops->flush(be->next);
}

static int fault_trim(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    int r = fault_write_side(to_fault(be));
    if (r < 0)
        return r;
    return backend_trim(be->next, count, offset, flags);
}

static int fault_zero(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    int r = fault_write_side(to_fault(be));
    if (r < 0)
        return r;
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
    if (r < 0) {
        f->be.next = NULL;
        fault_close(&f->be);
        return r;
    }
    struct backend *next = f->be.next;
    f->be.size = next->size;
    f->be.caps = next->caps;
    f->be.min_block = next->min_block;
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
