/* See memcached_stats.h. */
#include "cluster/memcached_stats.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#define SLAB_CLASSES 64 /* memcached's MAX_NUMBER_OF_SLAB_CLASSES */

static uint64_t now_ms(void)
{
    return now_ns() / 1000000u;
}

/* ---- counts from the lookup threads ---- */

void mc_stats_count(struct mc_ring *r, const struct mc_conn *c, const unsigned *keys,
                    const unsigned *hits, uint64_t rtt_ns)
{
    LOCK_GUARD(&r->lock);
    if (c->layout != r->layout)
        return; /* c's indices name other servers now */
    for (unsigned i = 0; i < c->nlive; i++) {
        if (!keys[i])
            continue;
        struct mc_server *s = &r->srv[c->ring_idx[i]];
        s->lookups++;
        s->keys += keys[i];
        s->hits += hits[i];
        hist_record(&s->rtt, rtt_ns);
    }
}

/* ---- the servers' own stats ---- */

struct poll_entry {
    char name[272];
    bool ok;
    uint64_t at_ms;
    char err[128];
    uint64_t curr_items, bytes, limit, evictions, chunk_bytes, malloced;
};

struct mc_poll {
    struct mc_ring *ring;
    pthread_t thread;
    pthread_mutex_t lock; /* guards the table; stop is written under it (atomic) */
    pthread_cond_t cond;
    bool stop;
    unsigned n;
    struct poll_entry e[MC_RING_MAX_SERVERS];
    struct poll_entry fresh[MC_RING_MAX_SERVERS]; /* the poll thread's own */
};

/* One reply's lines, gathered by the callbacks. */
struct acc {
    struct poll_entry *e;
    uint64_t chunk[SLAB_CLASSES], used[SLAB_CLASSES];
};

static uint64_t value_u64(const char *v, size_t len)
{
    char buf[32];
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return strtoull(buf, NULL, 10);
}

static bool key_is(const char *k, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(k, want, len) == 0;
}

static memcached_return_t on_general(const memcached_instance_st *in, const char *k, size_t klen,
                                     const char *v, size_t vlen, void *ctx)
{
    (void)in;
    struct poll_entry *e = ((struct acc *)ctx)->e;
    if (key_is(k, klen, "curr_items"))
        e->curr_items = value_u64(v, vlen);
    else if (key_is(k, klen, "bytes"))
        e->bytes = value_u64(v, vlen);
    else if (key_is(k, klen, "limit_maxbytes"))
        e->limit = value_u64(v, vlen);
    else if (key_is(k, klen, "evictions"))
        e->evictions = value_u64(v, vlen);
    return MEMCACHED_SUCCESS;
}

/* "N:chunk_size", "N:used_chunks" per slab class N; "total_malloced". */
static memcached_return_t on_slabs(const memcached_instance_st *in, const char *k, size_t klen,
                                   const char *v, size_t vlen, void *ctx)
{
    (void)in;
    struct acc *a = ctx;
    if (key_is(k, klen, "total_malloced")) {
        a->e->malloced = value_u64(v, vlen);
        return MEMCACHED_SUCCESS;
    }
    const char *colon = memchr(k, ':', klen);
    if (!colon)
        return MEMCACHED_SUCCESS;
    uint64_t cls = value_u64(k, (size_t)(colon - k));
    size_t rest = klen - (size_t)(colon + 1 - k);
    if (cls >= SLAB_CLASSES)
        return MEMCACHED_SUCCESS;
    if (key_is(colon + 1, rest, "chunk_size"))
        a->chunk[cls] = value_u64(v, vlen);
    else if (key_is(colon + 1, rest, "used_chunks"))
        a->used[cls] = value_u64(v, vlen);
    return MEMCACHED_SUCCESS;
}

static void read_one(const char *host, uint16_t port, struct poll_entry *e)
{
    struct acc a = {.e = e};
    memcached_st *mc = memcached_create(NULL);
    if (!mc) {
        snprintf(e->err, sizeof e->err, "out of memory");
        return;
    }
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, MC_POLL_TIMEOUT_MS);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, MC_POLL_TIMEOUT_MS);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, MC_POLL_TIMEOUT_MS * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, MC_POLL_TIMEOUT_MS * 1000);
    memcached_return_t rc = memcached_server_add(mc, host, port);
    if (!memcached_failed(rc))
        rc = memcached_stat_execute(mc, NULL, on_general, &a);
    if (!memcached_failed(rc))
        rc = memcached_stat_execute(mc, "slabs", on_slabs, &a);
    if (memcached_failed(rc)) {
        snprintf(e->err, sizeof e->err, "%s", memcached_strerror(mc, rc));
    } else {
        e->ok = true;
        for (unsigned i = 0; i < SLAB_CLASSES; i++)
            e->chunk_bytes += a.chunk[i] * a.used[i];
    }
    memcached_free(mc);
}

/* Sleep up to ms unless stopped; true when stopped. */
static bool poll_wait(struct mc_poll *p, uint64_t ms)
{
    struct timespec until;
    deadline_after_ms(ms, &until);
    LOCK_GUARD(&p->lock);
    while (!p->stop)
        if (pthread_cond_timedwait(&p->cond, &p->lock, &until) == ETIMEDOUT)
            break;
    return p->stop;
}

static void *poll_main(void *arg)
{
    struct mc_poll *p = arg;
    struct mc_ring *r = p->ring;
    char host[MC_RING_MAX_SERVERS][256];
    uint16_t port[MC_RING_MAX_SERVERS];
    do {
        unsigned n;
        {
            LOCK_GUARD(&r->lock);
            n = r->n;
            for (unsigned i = 0; i < n; i++) {
                memset(&p->fresh[i], 0, sizeof p->fresh[i]);
                snprintf(p->fresh[i].name, sizeof p->fresh[i].name, "%s", r->srv[i].name);
                snprintf(host[i], sizeof host[i], "%s", r->srv[i].host);
                port[i] = r->srv[i].port;
            }
        }
        /* Up to MC_POLL_TIMEOUT_MS per server out of reach: stop between
         * them, not after all. */
        for (unsigned i = 0; i < n && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE); i++) {
            read_one(host[i], port[i], &p->fresh[i]);
            p->fresh[i].at_ms = now_ms();
        }
        LOCK_GUARD(&p->lock);
        memcpy(p->e, p->fresh, n * sizeof *p->e);
        p->n = n;
    } while (!poll_wait(p, MC_POLL_PERIOD_MS));
    return NULL;
}

int mc_poll_start(struct mc_ring *r, struct mc_poll **out)
{
    struct mc_poll *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->ring = r;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    int ret = -pthread_create(&p->thread, NULL, poll_main, p);
    if (ret < 0) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p);
        return ret;
    }
    *out = p;
    return 0;
}

void mc_poll_stop(struct mc_poll *p)
{
    if (!p)
        return;
    {
        LOCK_GUARD(&p->lock);
        __atomic_store_n(&p->stop, true, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&p->cond);
    }
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

/* ---- the snapshot ---- */

/* From a copy of the ring's list (srv, all n of them; the first `fill`
 * into out). */
static void fill_ring(const struct mc_server *srv, unsigned n, struct mc_server_snap *out,
                      unsigned fill)
{
    unsigned buckets[MC_RING_MAX_SERVERS];
    mc_ring_buckets(srv, n, buckets);
    uint64_t now = now_ms();
    for (unsigned i = 0; i < fill; i++) {
        const struct mc_server *s = &srv[i];
        struct mc_server_snap *o = &out[i];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", s->name);
        o->state = s->ejected ? MC_STATE_EJECTED : s->fails ? MC_STATE_PROBATION : MC_STATE_LIVE;
        o->failures = s->fails;
        o->retry_in_seconds =
            s->ejected && s->dead_until > now ? (double)(s->dead_until - now) / 1e3 : 0;
        o->ejections = s->ejections;
        o->lookups = s->lookups;
        o->lookup_keys = s->keys;
        o->lookup_hits = s->hits;
        o->ring_buckets = buckets[i];
        o->ring_share = (double)buckets[i] / MC_RING_BUCKETS;
        struct histogram_snap h;
        hist_snapshot(&s->rtt, &h);
        o->latency_mean_seconds = h.count ? (double)h.sum_ns / (double)h.count / 1e9 : 0;
        o->latency_p50_seconds = hist_quantile_us(&h, 0.50) / 1e6;
        o->latency_p99_seconds = hist_quantile_us(&h, 0.99) / 1e6;
    }
}

/* Chunk space the items leave unused. */
static uint64_t slab_waste(uint64_t bytes, uint64_t chunk_bytes)
{
    return chunk_bytes > bytes ? chunk_bytes - bytes : 0;
}

/* The per-block memory figures of a server or of the tier. */
static void slab_ratios(uint64_t bytes, uint64_t chunk_bytes, uint64_t items, double *waste_ratio,
                        double *bytes_per_item, double *chunk_bytes_per_item)
{
    *waste_ratio = stat_ratio(slab_waste(bytes, chunk_bytes), chunk_bytes);
    *bytes_per_item = stat_ratio(bytes, items);
    *chunk_bytes_per_item = stat_ratio(chunk_bytes, items);
}

static void fill_polled(struct mc_poll *p, struct mc_server_snap *out, unsigned n)
{
    uint64_t now = now_ms();
    LOCK_GUARD(&p->lock);
    for (unsigned i = 0; i < n; i++) {
        struct mc_server_snap *o = &out[i];
        const struct poll_entry *e = NULL;
        for (unsigned k = 0; k < p->n && !e; k++)
            if (!strcmp(p->e[k].name, o->name))
                e = &p->e[k];
        if (!e) {
            snprintf(o->stats_error, sizeof o->stats_error, "not read yet");
            continue;
        }
        o->stats_age_seconds = (double)(now - e->at_ms) / 1e3;
        if (!e->ok) {
            snprintf(o->stats_error, sizeof o->stats_error, "%s", e->err);
            continue;
        }
        o->stats_ok = 1;
        o->curr_items = e->curr_items;
        o->bytes = e->bytes;
        o->limit_maxbytes = e->limit;
        o->evictions = e->evictions;
        o->slab_chunk_bytes = e->chunk_bytes;
        o->slab_malloced_bytes = e->malloced;
        o->slab_waste_bytes = slab_waste(e->bytes, e->chunk_bytes);
        slab_ratios(e->bytes, e->chunk_bytes, e->curr_items, &o->slab_waste_ratio,
                    &o->bytes_per_item, &o->chunk_bytes_per_item);
    }
}

int mc_stats_servers(struct mc_ring *r, struct mc_poll *p, struct mc_server_snap *out, unsigned max)
{
    _cleanup_free_ struct mc_server *srv = malloc(MC_RING_MAX_SERVERS * sizeof *srv);
    if (!srv)
        return -ENOMEM;
    unsigned all;
    {
        LOCK_GUARD(&r->lock);
        all = r->n;
        memcpy(srv, r->srv, all * sizeof *srv);
    }
    unsigned n = all < max ? all : max;
    fill_ring(srv, all, out, n);
    uint64_t hits = 0;
    for (unsigned i = 0; i < n; i++)
        hits += out[i].lookup_hits;
    for (unsigned i = 0; i < n; i++) {
        out[i].hit_share = stat_ratio(out[i].lookup_hits, hits);
        out[i].hit_ratio = stat_ratio(out[i].lookup_hits, out[i].lookup_keys);
    }
    if (p)
        fill_polled(p, out, n);
    return (int)n;
}

void mc_stats_tier(const struct tier_memcached_stats *st, const struct mc_server_snap *s,
                   unsigned n, struct mc_tier_snap *out)
{
    memset(out, 0, sizeof *out);
#define X(name, kind, unit, help) out->name = st->name;
    MC_TIER_OWN(X)
#undef X
    for (unsigned i = 0; i < n; i++) {
        if (!s[i].stats_ok)
            continue;
        out->curr_items += s[i].curr_items;
        out->bytes += s[i].bytes;
        out->slab_chunk_bytes += s[i].slab_chunk_bytes;
    }
    slab_ratios(out->bytes, out->slab_chunk_bytes, out->curr_items, &out->slab_waste_ratio,
                &out->bytes_per_item, &out->chunk_bytes_per_item);
}
