/* See mc_ring.h. */
#include "cluster/mc_ring.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/mc_alloc.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* splitmix64's finalizer: a full-avalanche mix of 64 bits. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t score(const struct mc_server *s, uint32_t bucket)
{
    return mix64(s->name_hash ^ ((uint64_t)bucket + 1) * 0x9e3779b97f4a7c15ull);
}

/* Why a server is refused: logged, or (why != NULL) said in why, for a
 * caller that names where the server came from (an etcd key). */
#define REFUSE(...)                                                                                \
    do {                                                                                           \
        if (why)                                                                                   \
            snprintf(why, whylen, __VA_ARGS__);                                                    \
        else                                                                                       \
            log_error(cluster, "memcached: " __VA_ARGS__);                                         \
        return -EINVAL;                                                                            \
    } while (0)

static int parse_one(const char *item, size_t len, struct mc_server *s, char *why, size_t whylen)
{
    char buf[300];
    if (len == 0 || len >= sizeof buf)
        REFUSE("bad server \"%.*s\" (want HOST[:PORT])", (int)MIN(len, 200), item);
    memcpy(buf, item, len);
    buf[len] = '\0';
    /* A name server or getaddrinfo never returns a host with a control
     * byte or a space; such a name (an etcd key is any bytes) would only
     * break the log line that shows it. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] <= ' ' || buf[i] == 0x7f)
            REFUSE("bad server name (a control byte or space in it)");
    char *host = buf, *port = NULL;
    if (buf[0] == '[') {
        char *end = strchr(buf, ']');
        if (!end || end == buf + 1 || (end[1] != '\0' && end[1] != ':'))
            REFUSE("bad server \"%s\" (want [ADDR]:PORT)", buf);
        *end = '\0';
        host = buf + 1;
        port = end[1] == ':' ? end + 2 : NULL;
    } else {
        char *colon = strchr(buf, ':');
        if (colon && strchr(colon + 1, ':'))
            REFUSE("bad server \"%s\" (write an IPv6 address as [ADDR]:PORT)", buf);
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    if (!*host || strlen(host) >= sizeof s->host)
        REFUSE("bad server \"%.*s\" (empty or long host)", (int)len, item);
    unsigned long p = MC_DEFAULT_PORT;
    if (port) {
        char *end;
        errno = 0;
        p = strtoul(port, &end, 10);
        if (!*port || *end || errno || p == 0 || p > 65535)
            REFUSE("bad port in \"%.*s\" (1..65535)", (int)len, item);
    }
    snprintf(s->host, sizeof s->host, "%s", host);
    s->port = (uint16_t)p;
    if (strchr(host, ':'))
        snprintf(s->name, sizeof s->name, "[%s]:%u", host, s->port);
    else
        snprintf(s->name, sizeof s->name, "%s:%u", host, s->port);
    s->name_hash = fnv1a64(s->name);
    return 0;
}

static void recompute_due_locked(struct mc_ring *r);

/* Parse a list into srv[] (MC_RING_MAX_SERVERS of them); *n: how many.
 * Why it is refused is logged, or said in why (REFUSE). */
static int parse_list(const char *servers, struct mc_server *srv, unsigned *n, char *why,
                      size_t whylen)
{
    *n = 0;
    for (const char *s = servers; *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (*n == MC_RING_MAX_SERVERS)
            REFUSE("more than %d servers", MC_RING_MAX_SERVERS);
        struct mc_server *one = &srv[*n];
        memset(one, 0, sizeof *one);
        int ret = parse_one(s, len, one, why, whylen);
        if (ret < 0)
            return ret;
        for (unsigned i = 0; i < *n; i++)
            if (strcmp(srv[i].name, one->name) == 0)
                REFUSE("server %s listed twice", one->name);
        (*n)++;
        s += len;
        if (*s == ',' && !*++s)
            REFUSE("trailing comma in the server list");
    }
    return 0;
}

int mc_ring_check_list(const char *servers, char *why, size_t whylen)
{
    if (!servers[0]) {
        snprintf(why, whylen, "no servers given (want HOST:PORT[,HOST:PORT...])");
        return -EINVAL;
    }
    struct mc_server *srv = calloc(MC_RING_MAX_SERVERS, sizeof *srv);
    if (!srv) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    unsigned n;
    int ret = parse_list(servers, srv, &n, why, whylen);
    free(srv);
    return ret;
}

int mc_ring_init(struct mc_ring *r, const char *servers, const struct mc_ring_params *p)
{
    memset(r, 0, sizeof *r);
    r->p = *p;
    if ((!servers || !*servers) && !p->allow_empty) {
        log_error(cluster, "memcached: no servers given (want HOST:PORT[,HOST:PORT...])");
        return -EINVAL;
    }
    int ret = parse_list(servers ? servers : "", r->srv, &r->n, NULL, 0);
    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < r->n; i++)
        r->srv[i].backoff_ms = p->retry_ms;
    pthread_mutex_init(&r->lock, NULL);
    r->inited = true;
    r->gen = 1;
    return 0;
}

int mc_ring_check(const char *server, char *name, size_t namelen)
{
    return mc_ring_check_why(server, name, namelen, NULL, 0);
}

int mc_ring_check_why(const char *server, char *name, size_t namelen, char *why, size_t whylen)
{
    struct mc_server s = {0};
    if (strchr(server, ',')) {
        if (why)
            snprintf(why, whylen, "a comma in a server's name");
        return -EINVAL;
    }
    int ret = parse_one(server, strlen(server), &s, why, whylen);
    if (ret == 0 && name)
        snprintf(name, namelen, "%s", s.name);
    return ret;
}

int mc_ring_set(struct mc_ring *r, const char *servers)
{
    _cleanup_free_ struct mc_server *next = calloc(MC_RING_MAX_SERVERS, sizeof *next);
    if (!next)
        return -ENOMEM;
    unsigned n;
    int ret = parse_list(servers ? servers : "", next, &n, NULL, 0);
    if (ret < 0)
        return ret;
    LOCK_GUARD(&r->lock);
    bool same = n == r->n;
    for (unsigned i = 0; i < n; i++) {
        next[i].backoff_ms = r->p.retry_ms;
        /* A server that stays keeps its health. */
        for (unsigned j = 0; j < r->n; j++) {
            if (strcmp(r->srv[j].name, next[i].name) == 0) {
                next[i] = r->srv[j];
                same = same && i == j;
                break;
            }
            if (j == r->n - 1)
                same = false;
        }
    }
    if (same)
        return 0;
    memcpy(r->srv, next, n * sizeof *next);
    r->n = n;
    __atomic_fetch_add(&r->layout, 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&r->gen, 1, __ATOMIC_RELEASE);
    recompute_due_locked(r);
    log_info(cluster, "memcached: %u server(s) now: %s", n, *servers ? servers : "(none)");
    return 0;
}

int mc_ring_names(struct mc_ring *r, char *buf, size_t len)
{
    LOCK_GUARD(&r->lock);
    size_t o = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < r->n; i++) {
        int w = snprintf(buf + o, len - o, "%s%s", i ? "," : "", r->srv[i].name);
        if (w < 0 || (size_t)w >= len - o)
            return -ENOSPC;
        o += (size_t)w;
    }
    return (int)r->n;
}

void mc_ring_destroy(struct mc_ring *r)
{
    if (r->inited)
        pthread_mutex_destroy(&r->lock);
}

unsigned mc_ring_live(struct mc_ring *r)
{
    LOCK_GUARD(&r->lock);
    unsigned live = 0;
    for (unsigned i = 0; i < r->n; i++)
        live += !r->srv[i].ejected;
    return live;
}

static void recompute_due_locked(struct mc_ring *r)
{
    uint64_t due = 0;
    for (unsigned i = 0; i < r->n; i++)
        if (r->srv[i].ejected && (!due || r->srv[i].dead_until < due))
            due = r->srv[i].dead_until;
    __atomic_store_n(&r->next_due_ms, due, __ATOMIC_RELEASE);
}

/* Ejected servers whose back-off passed come back on probation: one more
 * failure ejects them again, for twice as long. */
static void revive_due(struct mc_ring *r)
{
    uint64_t due = __atomic_load_n(&r->next_due_ms, __ATOMIC_ACQUIRE);
    if (!due || now_ms() < due)
        return;
    LOCK_GUARD(&r->lock);
    uint64_t now = now_ms();
    bool changed = false;
    for (unsigned i = 0; i < r->n; i++) {
        struct mc_server *s = &r->srv[i];
        if (!s->ejected || s->dead_until > now)
            continue;
        s->ejected = false;
        /* On probation: the next failure, or short timeout, ejects again. */
        s->fails = r->p.failure_limit - 1;
        s->timeouts = r->p.failure_limit * MC_SHORT_TIMEOUT_FACTOR - 1;
        changed = true;
        __atomic_fetch_add(&r->revivals, 1, __ATOMIC_RELAXED);
        log_info(cluster, "memcached: retrying %s", s->name);
    }
    if (changed)
        __atomic_fetch_add(&r->gen, 1, __ATOMIC_RELEASE);
    recompute_due_locked(r);
}

/* The live server of srv[0 .. n-1] with the highest score for bucket b
 * (ties: the lower index, the same on every node listing the same
 * servers). */
static int owner_of(const struct mc_server *srv, unsigned n, uint32_t b)
{
    int best = -1;
    uint64_t best_score = 0;
    for (unsigned i = 0; i < n; i++) {
        if (srv[i].ejected)
            continue;
        uint64_t sc = score(&srv[i], b);
        if (best < 0 || sc > best_score) {
            best = (int)i;
            best_score = sc;
        }
    }
    return best;
}

static int owner_locked(const struct mc_ring *r, uint32_t b)
{
    return owner_of(r->srv, r->n, b);
}

void mc_ring_buckets(const struct mc_server *srv, unsigned n, unsigned *counts)
{
    memset(counts, 0, n * sizeof *counts);
    for (uint32_t b = 0; b < MC_RING_BUCKETS; b++) {
        int i = owner_of(srv, n, b);
        if (i >= 0)
            counts[i]++;
    }
}

int mc_ring_bucket_owner(struct mc_ring *r, uint32_t bucket, char *name, size_t namelen)
{
    LOCK_GUARD(&r->lock);
    int i = owner_locked(r, bucket & (MC_RING_BUCKETS - 1));
    if (name)
        snprintf(name, namelen, "%s", i < 0 ? "" : r->srv[i].name);
    return i;
}

int mc_ring_server_of(struct mc_ring *r, const char *key, size_t len)
{
    uint32_t h = memcached_generate_hash_value(key, len, MEMCACHED_HASH_MD5);
    LOCK_GUARD(&r->lock);
    return owner_locked(r, h & (MC_RING_BUCKETS - 1));
}

void mc_conn_drop(struct mc_conn *c)
{
    if (c->mc)
        memcached_free(c->mc);
    c->mc = NULL;
    c->gen = 0;
}

static int set_behaviors(memcached_st *mc, const struct mc_ring_params *p, bool noreply)
{
    int64_t io = p->io_timeout_ms;
    const struct {
        memcached_behavior_t b;
        uint64_t v;
    } set[] = {
        {MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1},
        {MEMCACHED_BEHAVIOR_NO_BLOCK, 1},
        {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1},
        {MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_MD5},
        {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, (uint64_t)io},
        {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t)io},
        {MEMCACHED_BEHAVIOR_SND_TIMEOUT, (uint64_t)io * 1000},
        {MEMCACHED_BEHAVIOR_RCV_TIMEOUT, (uint64_t)io * 1000},
        /* The ring above handles failures for all threads; libmemcached's
         * own ejection would move keys per handle. */
        {MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0},
        {MEMCACHED_BEHAVIOR_NOREPLY, noreply},
    };
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
        memcached_return_t rc = memcached_behavior_set(mc, set[i].b, set[i].v);
        if (memcached_failed(rc)) {
            log_error(cluster, "memcached: behavior %d: %s", (int)set[i].b,
                      memcached_strerror(mc, rc));
            return -EINVAL;
        }
    }
    return 0;
}

static int build(struct mc_ring *r, struct mc_conn *c)
{
    mc_conn_drop(c);
    _cleanup_free_ uint32_t *map = malloc(MC_RING_BUCKETS * sizeof *map);
    memcached_st *mc = memcached_create(NULL);
    if (!map || !mc) {
        if (mc)
            memcached_free(mc);
        return -ENOMEM;
    }
    int ret = c->alloc ? mc_alloc_attach(c->alloc, mc) : 0;
    if (ret == 0)
        ret = set_behaviors(mc, &r->p, c->noreply);
    uint8_t mc_index[MC_RING_MAX_SERVERS];
    unsigned nlive = 0;
    uint64_t gen;
    {
        LOCK_GUARD(&r->lock);
        gen = __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE);
        c->layout = r->layout;
        for (unsigned i = 0; i < r->n && ret == 0; i++) {
            if (r->srv[i].ejected)
                continue;
            memcached_return_t rc = memcached_server_add(mc, r->srv[i].host, r->srv[i].port);
            if (memcached_failed(rc)) {
                log_error(cluster, "memcached: add %s: %s", r->srv[i].name,
                          memcached_strerror(mc, rc));
                ret = -EINVAL;
                break;
            }
            mc_index[i] = (uint8_t)nlive;
            c->ring_idx[nlive++] = (uint8_t)i;
        }
        for (uint32_t b = 0; b < MC_RING_BUCKETS && ret == 0 && nlive; b++)
            map[b] = mc_index[owner_locked(r, b)];
    }
    if (ret == 0 && nlive == 0) {
        memcached_free(mc);
        c->gen = gen; /* nothing to build until the live set changes */
        return -ENOENT;
    }
    if (ret == 0 && memcached_failed(memcached_bucket_set(mc, map, NULL, MC_RING_BUCKETS, 0)))
        ret = -ENOMEM;
    if (ret < 0) {
        memcached_free(mc);
        return ret;
    }
    c->mc = mc;
    c->gen = gen;
    c->nlive = nlive;
    return 0;
}

int mc_conn_refresh(struct mc_ring *r, struct mc_conn *c)
{
    revive_due(r);
    if (c->gen == __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE))
        return c->mc ? 0 : -ENOENT;
    return build(r, c);
}

static bool conn_failure(memcached_return_t rc)
{
    switch (rc) {
    case MEMCACHED_FAILURE:
    case MEMCACHED_HOST_LOOKUP_FAILURE:
    case MEMCACHED_CONNECTION_FAILURE:
    case MEMCACHED_CONNECTION_BIND_FAILURE:
    case MEMCACHED_WRITE_FAILURE:
    case MEMCACHED_READ_FAILURE:
    case MEMCACHED_UNKNOWN_READ_FAILURE:
    case MEMCACHED_PROTOCOL_ERROR:
    case MEMCACHED_PARTIAL_READ:
    case MEMCACHED_ERRNO:
    case MEMCACHED_TIMEOUT:
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_IN_PROGRESS:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
    case MEMCACHED_ERROR: /* also socket() failed */
        return true;
    default:
        return false;
    }
}

static void fail_locked(struct mc_ring *r, struct mc_server *s, memcached_return_t rc,
                        memcached_st *mc, bool short_wait)
{
    if (s->ejected)
        return; /* another thread's handle, built before the ejection */
    if (short_wait && rc == MEMCACHED_TIMEOUT) {
        if (++s->timeouts < r->p.failure_limit * MC_SHORT_TIMEOUT_FACTOR)
            return;
        s->fails = s->timeouts;
    } else if (++s->fails < r->p.failure_limit) {
        return;
    }
    s->ejected = true;
    s->ejections++;
    s->dead_until = now_ms() + s->backoff_ms;
    log_warn(cluster, "memcached: %s ejected for %" PRIu32 " ms after %u failure(s) (%s)", s->name,
             s->backoff_ms, s->fails, memcached_strerror(mc, rc));
    uint64_t next = (uint64_t)s->backoff_ms * 2;
    s->backoff_ms = (uint32_t)(next > r->p.retry_max_ms ? r->p.retry_max_ms : next);
    __atomic_fetch_add(&r->ejections, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&r->gen, 1, __ATOMIC_RELEASE);
    recompute_due_locked(r);
}

unsigned mc_conn_report(struct mc_ring *r, struct mc_conn *c, const char *const *keys,
                        const size_t *lens, unsigned n)
{
    if (!c->mc)
        return 0;
    unsigned failed = 0;
    bool probation = false;
    {
        LOCK_GUARD(&r->lock);
        if (c->layout != r->layout) {
            /* The list changed under this handle: its indices mean other
             * servers now. Start again with the new list. */
            mc_conn_drop(c);
            return 0;
        }
        for (unsigned i = 0; i < c->nlive; i++) {
            const memcached_instance_st *in = memcached_server_instance_by_position(c->mc, i);
            memcached_return_t rc = memcached_server_error_return(in);
            struct mc_server *s = &r->srv[c->ring_idx[i]];
            if (conn_failure(rc)) {
                fail_locked(r, s, rc, c->mc, c->short_waits);
                failed++;
            } else if (s->fails || s->timeouts) {
                probation = true;
            }
        }
    }
    if (failed) {
        /* Errors stay on libmemcached's instances; a fresh handle keeps the
         * next report about the next operation only. */
        mc_conn_drop(c);
        return failed;
    }
    if (!probation)
        return 0;
    /* A server that answered one of these keys is well again. */
    bool answered[MC_RING_MAX_SERVERS] = {false};
    for (unsigned k = 0; k < n; k++) {
        uint32_t i = memcached_generate_hash(c->mc, keys[k], lens[k]);
        if (i < c->nlive)
            answered[i] = true;
    }
    LOCK_GUARD(&r->lock);
    if (c->layout != r->layout)
        return 0;
    for (unsigned i = 0; i < c->nlive; i++) {
        struct mc_server *s = &r->srv[c->ring_idx[i]];
        if (answered[i] && !s->ejected && (s->fails || s->timeouts)) {
            s->fails = s->timeouts = 0;
            s->backoff_ms = r->p.retry_ms;
        }
    }
    return 0;
}
