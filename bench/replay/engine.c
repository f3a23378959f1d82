/* shoal-replay's replay loop (see engine.h). Single-threaded: one libnbd
 * handle driven by ppoll() on its socket, so the next command's due time
 * (--timing) and the progress ticks can be waited for in the same call. */
#include "engine.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"

struct engine;

struct slot {
    struct engine *e;
    uint8_t *buf;
    uint64_t start_ns;
    uint32_t len;
    uint8_t op;
    bool busy;
};

struct engine {
    unsigned qd;
    struct slot *slots;
    unsigned *free_idx; /* stack of idle slots */
    unsigned nfree;
    uint64_t finished; /* completed, failed, dropped or skipped */
    struct replay_result *res;
    FILE *prog; /* --progress */
};

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_complete(void *user_data, int *error)
{
    struct slot *s = user_data;
    struct engine *e = s->e;
    if (!s->busy)
        return 1;
    uint64_t lat = now_ns() - s->start_ns;
    struct replay_result *res = e->res;
    if (*error) {
        res->errors++;
    } else {
        struct lat_set *l = &res->lat[s->op];
        l->ns[l->n++] = lat;
        res->ops++;
        if (s->op == TRACE_READ) {
            res->read_ops++;
            res->read_bytes += s->len;
        } else {
            res->write_ops++;
            res->write_bytes += s->len;
        }
    }
    s->busy = false;
    e->free_idx[e->nfree++] = (unsigned)(s - e->slots);
    e->finished++;
    return 1; /* retire the command */
}

static void fill_write(uint8_t *buf, uint32_t len, uint64_t seed, uint64_t off, uint64_t n)
{
    uint64_t x = seed ^ (off * 0x9e3779b97f4a7c15ull) ^ (n * 0xbf58476d1ce4e5b9ull);
    if (!x)
        x = 1;
    uint32_t i = 0;
    for (; i + 8 <= len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    for (; i < len; i++)
        buf[i] = (uint8_t)(x >> (8 * (i & 7)));
}

/* Fit a request to the export; false when it is dropped. */
static bool map_offset(const struct replay_opts *o, uint64_t size, uint64_t *off, uint32_t *len,
                       struct replay_result *res)
{
    if (*len > size)
        *len = (uint32_t)size;
    if (o->offsets == OFF_CLIP) {
        if (*off >= size) {
            res->dropped++;
            return false;
        }
        if (*off + *len > size) {
            *len = (uint32_t)(size - *off);
            res->clipped++;
        }
        return true;
    }
    *off %= size;
    if (*off + *len > size) {
        *off = size - *len;
        res->moved++;
    }
    return true;
}

static void progress_line(FILE *f, const struct replay_result *res)
{
    if (!f)
        return;
    fprintf(f, "%.3f %llu %llu %llu\n", wall_s(), (unsigned long long)res->read_bytes,
            (unsigned long long)res->write_bytes, (unsigned long long)res->ops);
    fflush(f);
}

static void engine_free(struct engine *e)
{
    /* Commands still in flight (a lost connection) point into the buffers
     * until the caller closes the handle: leak them rather than risk it. */
    if (e->slots && e->nfree == e->qd) {
        for (unsigned i = 0; i < e->qd; i++)
            free(e->slots[i].buf);
        free(e->slots);
    }
    free(e->free_idx);
    if (e->prog)
        fclose(e->prog);
}

static int engine_init(struct engine *e, unsigned qd, uint64_t buflen, const char *progress_path)
{
    e->qd = qd;
    e->slots = calloc(qd, sizeof *e->slots);
    e->free_idx = calloc(qd, sizeof *e->free_idx);
    if (!e->slots || !e->free_idx)
        return -ENOMEM;
    for (unsigned i = 0; i < qd; i++) {
        e->slots[i].e = e;
        e->slots[i].buf = malloc(buflen ? buflen : 1);
        if (!e->slots[i].buf)
            return -ENOMEM;
        e->free_idx[e->nfree++] = qd - 1 - i;
    }
    if (progress_path) {
        e->prog = fopen(progress_path, "a");
        if (!e->prog)
            return -errno;
    }
    return 0;
}

/* Issue record number `next` (of the repeated trace) in an idle slot. */
static int submit(struct engine *e, struct nbd_handle *h, uint64_t size, const struct trace_rec *r,
                  uint64_t next, const struct replay_opts *o)
{
    struct replay_result *res = e->res;
    if (r->op == TRACE_WRITE && o->reads_only) {
        res->skipped++;
        e->finished++;
        return 0;
    }
    uint64_t off = r->offset;
    uint32_t len = r->len;
    if (!map_offset(o, size, &off, &len, res)) {
        e->finished++;
        return 0;
    }
    unsigned si = e->free_idx[--e->nfree];
    struct slot *s = &e->slots[si];
    s->busy = true;
    s->op = r->op;
    s->len = len;
    if (r->op == TRACE_WRITE)
        fill_write(s->buf, len, o->seed, off, next);
    nbd_completion_callback cb = {.callback = on_complete, .user_data = s};
    s->start_ns = now_ns();
    int64_t c = r->op == TRACE_READ ? nbd_aio_pread(h, s->buf, len, off, cb, 0)
                                    : nbd_aio_pwrite(h, s->buf, len, off, cb, 0);
    if (c >= 0)
        return 0;
    fprintf(stderr, "shoal-replay: %s at %llu+%u: %s\n", r->op == TRACE_READ ? "read" : "write",
            (unsigned long long)off, len, nbd_get_error());
    if (s->busy) {
        s->busy = false;
        e->free_idx[e->nfree++] = si;
        res->errors++;
        e->finished++;
    }
    return nbd_aio_is_dead(h) || nbd_aio_is_closed(h) ? -ECONNRESET : 0;
}

/* Wait for the socket until `deadline` (monotonic ns) and run libnbd's
 * state machine on what happened. */
static int wait_io(struct nbd_handle *h, uint64_t deadline)
{
    uint64_t now = now_ns();
    struct timespec ts = {0, 0};
    if (deadline > now) {
        uint64_t d = deadline - now;
        ts.tv_sec = (time_t)(d / 1000000000ull);
        ts.tv_nsec = (long)(d % 1000000000ull);
    }
    struct pollfd pfd = {.fd = nbd_aio_get_fd(h)};
    unsigned dir = nbd_aio_get_direction(h);
    if (dir & LIBNBD_AIO_DIRECTION_READ)
        pfd.events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE)
        pfd.events |= POLLOUT;
    int pr = ppoll(&pfd, 1, &ts, NULL);
    if (pr < 0)
        return errno == EINTR ? 0 : -errno;
    if (pr == 0)
        return 0;
    bool dead = false;
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
        dead = nbd_aio_notify_read(h) < 0 && nbd_aio_is_dead(h);
    if (!dead && (pfd.revents & POLLOUT) && (nbd_aio_get_direction(h) & LIBNBD_AIO_DIRECTION_WRITE))
        dead = nbd_aio_notify_write(h) < 0 && nbd_aio_is_dead(h);
    if (dead) {
        fprintf(stderr, "shoal-replay: connection lost: %s\n", nbd_get_error());
        return -ECONNRESET;
    }
    return 0;
}

int replay_run(struct nbd_handle *h, uint64_t export_size, const struct trace *t,
               const struct replay_opts *o, struct replay_result *res)
{
    memset(res, 0, sizeof *res);
    if (t->n == 0 || export_size == 0)
        return 0;
    unsigned qd = o->qd ? o->qd : 1;
    unsigned repeat = o->repeat ? o->repeat : 1;
    uint64_t total = t->n * repeat;
    double speed = o->speed > 0 ? o->speed : 1.0;
    uint64_t interval = (uint64_t)((o->progress_interval > 0 ? o->progress_interval : 0.5) * 1e9);
    uint64_t span = 0;
    for (uint64_t i = 0; i < t->n; i++)
        if (t->recs[i].ts_ns > span)
            span = t->recs[i].ts_ns;

    for (int op = 0; op < 2; op++) {
        res->lat[op].ns = malloc(total * sizeof(uint64_t));
        if (!res->lat[op].ns)
            return -ENOMEM;
    }
    __attribute__((cleanup(engine_free))) struct engine e = {.res = res};
    int ret =
        engine_init(&e, qd, t->max_len < export_size ? t->max_len : export_size, o->progress_path);
    if (ret < 0)
        return ret;

    /* --start-at: connected already; wait for the common start time. */
    for (double w; o->start_at > 0 && (w = o->start_at - wall_s()) > 0;) {
        struct timespec ts = {(time_t)w, (long)((w - (double)(time_t)w) * 1e9)};
        nanosleep(&ts, NULL);
    }
    uint64_t t0 = now_ns(), next_prog = t0 + interval, next = 0;
    res->start_unix = wall_s();
    progress_line(e.prog, res);
    while (ret == 0 && e.finished < total) {
        uint64_t now = now_ns(), deadline = next_prog;
        while (ret == 0 && e.nfree > 0 && next < total) {
            const struct trace_rec *r = &t->recs[next % t->n];
            if (o->timing) {
                double rel = (double)(next / t->n) * (double)(span + 1000000) + (double)r->ts_ns;
                uint64_t due = t0 + (uint64_t)(rel / speed);
                if (due > now) {
                    if (due < deadline)
                        deadline = due;
                    break;
                }
                if (now - due > 1000000)
                    res->late++;
            }
            ret = submit(&e, h, export_size, r, next, o);
            next++;
            now = now_ns();
        }
        if (ret == 0 && e.finished < total)
            ret = wait_io(h, deadline);
        if (now_ns() >= next_prog) {
            progress_line(e.prog, res);
            next_prog += interval;
        }
    }
    res->seconds = (double)(now_ns() - t0) / 1e9;
    res->end_unix = wall_s();
    progress_line(e.prog, res);
    lat_sort(&res->lat[0]);
    lat_sort(&res->lat[1]);
    return ret;
}

void replay_result_free(struct replay_result *res)
{
    for (int op = 0; op < 2; op++) {
        free(res->lat[op].ns);
        res->lat[op].ns = NULL;
        res->lat[op].n = 0;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void lat_sort(struct lat_set *l)
{
    if (l->n > 1)
        qsort(l->ns, l->n, sizeof *l->ns, cmp_u64);
}

double lat_pct_us(const struct lat_set *l, double p)
{
    if (!l->n)
        return 0;
    double rank = p / 100.0 * (double)l->n;
    uint64_t i = rank <= 1 ? 0 : (uint64_t)(rank + 0.999999) - 1;
    if (i >= l->n)
        i = l->n - 1;
    return (double)l->ns[i] / 1000.0;
}

double lat_mean_us(const struct lat_set *l)
{
    if (!l->n)
        return 0;
    long double sum = 0;
    for (uint64_t i = 0; i < l->n; i++)
        sum += l->ns[i];
    return (double)(sum / l->n) / 1000.0;
}
