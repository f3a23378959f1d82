/* See memcached_map.h. */
#include "cluster/memcached_map.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cluster/mc_alloc.h"
#include "cluster/mc_ring.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/stats.h"
#include "common/util.h"

#define MC_MAP_CONNS  16 /* lookups at once */
#define LOOKUP_CHUNKS (TIER_BATCH_MAX / MC_MAP_CHUNK + 1)
#define PUT_CHUNKS    64   /* chunks one round of the put thread changes */
#define PUT_BATCH     4096 /* entries one round takes at most */

struct map_entry {
    struct tier_map_id id;
    uint64_t blk;
    struct fpkey key;
};

struct lconn {
    pthread_mutex_t lock;
    struct mc_conn conn;
    /* The result outlives handles (rebuilt after failures): its own root.
     * Both allocate through alloc, which only counts (mc_alloc.h): a
     * chunk's value is read into res, whose buffer grows once. */
    memcached_st *res_root;
    memcached_result_st res;
    struct mc_alloc alloc;
};

/* A chunk the put thread is changing: its new entries, then the merge. */
struct pchunk {
    struct tier_map_id id;
    uint64_t chunk;
    struct mc_map_chunk add;
    char key[MC_MAP_KEY_MAX + 1];
    size_t klen;
};

struct mc_map {
    struct mc_ring *ring;
    uint32_t timeout_ms;
    uint8_t secret[MC_MAP_SECRET]; /* written once, before ready is set */
    int ready;                     /* atomic */
    struct lconn lk[MC_MAP_CONNS];
    /* the put ring */
    pthread_mutex_t plock;
    pthread_cond_t pcond, pdone;
    struct map_entry *q;
    unsigned cap, head, count;
    uint64_t enqueued, done;
    bool stop;
    pthread_t thread;
    bool started;
    struct lconn put; /* the put thread's (its lock unused) */
    struct pchunk pc[PUT_CHUNKS];
    struct mc_map_stats st;
};

/* ---- encoding ---- */

size_t mc_map_key(const struct tier_map_id *id, uint64_t chunk, char out[MC_MAP_KEY_MAX + 1])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "m1:", 3);
    for (unsigned i = 0; i < TIER_MAP_ID_SIZE; i++) {
        out[3 + 2 * i] = hex[id->b[i] >> 4];
        out[4 + 2 * i] = hex[id->b[i] & 15];
    }
    int n =
        snprintf(out + 3 + 2 * TIER_MAP_ID_SIZE, MC_MAP_KEY_MAX + 1 - (3 + 2 * TIER_MAP_ID_SIZE),
                 ":%llx", (unsigned long long)chunk);
    return 3 + 2 * TIER_MAP_ID_SIZE + (size_t)n;
}

/* The MAC of a value's body under its key; false if it could not be
 * computed (OpenSSL out of memory): then nothing may be accepted. */
static bool mac_of(const char *key, size_t klen, const uint8_t *body,
                   const uint8_t secret[MC_MAP_SECRET], uint8_t mac[MC_MAP_MAC_LEN])
{
    uint8_t msg[MC_MAP_KEY_MAX + MC_MAP_VALUE_LEN];
    size_t n = MIN(klen, (size_t)MC_MAP_KEY_MAX);
    memcpy(msg, key, n);
    memcpy(msg + n, body, MC_MAP_VALUE_LEN - MC_MAP_MAC_LEN);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    bool ok = HMAC(EVP_sha256(), secret, MC_MAP_SECRET, msg, n + MC_MAP_VALUE_LEN - MC_MAP_MAC_LEN,
                   md, &mdlen) != NULL;
    if (!ok)
        memset(md, 0, sizeof md);
    memcpy(mac, md, MC_MAP_MAC_LEN);
    return ok;
}

void mc_map_encode(const struct mc_map_chunk *c, const char *key, size_t klen,
                   const uint8_t secret[MC_MAP_SECRET], uint8_t out[MC_MAP_VALUE_LEN])
{
    for (unsigned i = 0; i < 8; i++)
        out[i] = (uint8_t)(c->present >> (8 * i));
    for (unsigned i = 0; i < MC_MAP_CHUNK; i++) {
        uint8_t *p = out + 8 + (size_t)i * FPKEY_SIZE;
        if (c->present >> i & 1)
            memcpy(p, c->keys[i].b, FPKEY_SIZE);
        else
            memset(p, 0, FPKEY_SIZE);
    }
    mac_of(key, klen, out, secret, out + MC_MAP_VALUE_LEN - MC_MAP_MAC_LEN);
}

int mc_map_decode(const void *val, size_t len, const char *key, size_t klen,
                  const uint8_t secret[MC_MAP_SECRET], struct mc_map_chunk *out)
{
    if (len != MC_MAP_VALUE_LEN)
        return -EINVAL;
    const uint8_t *v = val;
    uint8_t mac[MC_MAP_MAC_LEN];
    if (!mac_of(key, klen, v, secret, mac))
        return -ENOMEM;
    if (CRYPTO_memcmp(mac, v + MC_MAP_VALUE_LEN - MC_MAP_MAC_LEN, MC_MAP_MAC_LEN) != 0)
        return -EBADMSG;
    out->present = 0;
    for (unsigned i = 0; i < 8; i++)
        out->present |= (uint64_t)v[i] << (8 * i);
    for (unsigned i = 0; i < MC_MAP_CHUNK; i++) {
        if (out->present >> i & 1)
            memcpy(out->keys[i].b, v + 8 + (size_t)i * FPKEY_SIZE, FPKEY_SIZE);
        else
            memset(out->keys[i].b, 0, FPKEY_SIZE);
    }
    return 0;
}

/* ---- lookups ---- */

static void count_bad(struct mc_map *m, int err)
{
    if (err == -EBADMSG)
        STAT_ADD(m->st.forged, 1);
    else
        STAT_ADD(m->st.bad_values, 1);
}

static int conn_ready(struct mc_map *m, struct lconn *l, uint32_t poll_ms)
{
    int r = mc_conn_refresh(m->ring, &l->conn);
    if (r < 0)
        return r;
    /* The read path waits at most the tier's timeout: the handle's own
     * waits are cut to it (the ring builds handles for the I/O timeout). */
    memcached_behavior_set(l->conn.mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, poll_ms);
    return 0;
}

/* The chunk number of a key this lookup asked for, or -1. */
static int which(char keys[][MC_MAP_KEY_MAX + 1], const size_t *lens, unsigned n, const char *k,
                 size_t klen)
{
    for (unsigned i = 0; i < n; i++)
        if (lens[i] == klen && !memcmp(keys[i], k, klen))
            return (int)i;
    return -1;
}

int mc_map_lookup(struct mc_map *m, const struct tier_map_id *id, uint64_t first, unsigned n,
                  struct fpkey *keys, uint64_t *found)
{
    if (!mc_map_ready(m))
        return 0;
    struct lconn *l = NULL;
    for (unsigned i = 0; i < MC_MAP_CONNS && !l; i++)
        if (pthread_mutex_trylock(&m->lk[i].lock) == 0)
            l = &m->lk[i];
    if (!l) {
        STAT_ADD(m->st.busy, 1);
        return -EBUSY;
    }
    uint64_t c0 = first / MC_MAP_CHUNK, c1 = (first + n - 1) / MC_MAP_CHUNK;
    unsigned nc = (unsigned)(c1 - c0 + 1);
    char kbuf[LOOKUP_CHUNKS][MC_MAP_KEY_MAX + 1];
    const char *kp[LOOKUP_CHUNKS];
    size_t kl[LOOKUP_CHUNKS];
    for (unsigned i = 0; i < nc; i++) {
        kl[i] = mc_map_key(id, c0 + i, kbuf[i]);
        kp[i] = kbuf[i];
    }
    int got = 0;
    int r = conn_ready(m, l, m->timeout_ms);
    if (r < 0) {
        pthread_mutex_unlock(&l->lock);
        return r == -ENOENT ? 0 : r; /* no live server: a miss */
    }
    memcached_st *mc = l->conn.mc;
    memcached_return_t rc = memcached_mget(mc, kp, kl, nc);
    if (memcached_failed(rc) && rc != MEMCACHED_SOME_ERRORS) {
        mc_conn_report(m->ring, &l->conn, kp, kl, nc);
        pthread_mutex_unlock(&l->lock);
        return -EIO;
    }
    memcached_return_t frc;
    while (memcached_fetch_result(mc, &l->res, &frc)) {
        int ci = which(kbuf, kl, nc, memcached_result_key_value(&l->res),
                       memcached_result_key_length(&l->res));
        struct mc_map_chunk c;
        if (ci < 0)
            continue;
        int dr = mc_map_decode(memcached_result_value(&l->res), memcached_result_length(&l->res),
                               kbuf[ci], kl[ci], m->secret, &c);
        if (dr < 0) {
            count_bad(m, dr);
            continue;
        }
        for (unsigned b = 0; b < MC_MAP_CHUNK; b++) {
            uint64_t blk = (c0 + (unsigned)ci) * MC_MAP_CHUNK + b;
            if (!(c.present >> b & 1) || blk < first || blk >= first + n)
                continue;
            keys[blk - first] = c.keys[b];
            bitmap_set(found, (uint32_t)(blk - first));
            got++;
        }
    }
    mc_conn_report(m->ring, &l->conn, kp, kl, nc);
    pthread_mutex_unlock(&l->lock);
    return got;
}

/* ---- puts ---- */

void mc_map_put(struct mc_map *m, const struct tier_map_id *id, uint64_t blk,
                const struct fpkey *key)
{
    if (!mc_map_ready(m))
        return;
    LOCK_GUARD(&m->plock);
    if (m->stop || m->count == m->cap) {
        STAT_ADD(m->st.put_drops, 1);
        return;
    }
    struct map_entry *e = &m->q[(m->head + m->count) % m->cap];
    e->id = *id;
    e->blk = blk;
    e->key = *key;
    m->count++;
    m->enqueued++;
    if (m->count == 1)
        pthread_cond_signal(&m->pcond);
}

/* Take queued entries into pc[] (at most PUT_CHUNKS chunks): how many
 * chunks; *taken: entries consumed. Called with plock held. */
static unsigned gather_locked(struct mc_map *m, unsigned *taken)
{
    unsigned npc = 0, t = 0;
    while (m->count && t < PUT_BATCH) {
        const struct map_entry *e = &m->q[m->head];
        uint64_t chunk = e->blk / MC_MAP_CHUNK;
        unsigned j = 0;
        while (j < npc && (m->pc[j].chunk != chunk || memcmp(&m->pc[j].id, &e->id, sizeof e->id)))
            j++;
        if (j == npc) {
            if (npc == PUT_CHUNKS)
                break;
            struct pchunk *p = &m->pc[npc++];
            p->id = e->id;
            p->chunk = chunk;
            p->add.present = 0;
            p->klen = mc_map_key(&e->id, chunk, p->key);
        }
        unsigned b = (unsigned)(e->blk % MC_MAP_CHUNK);
        m->pc[j].add.present |= UINT64_C(1) << b;
        m->pc[j].add.keys[b] = e->key;
        m->head = (m->head + 1) % m->cap;
        m->count--;
        t++;
    }
    *taken = t;
    return npc;
}

/* Read the chunks, add the new entries, write back those that changed. */
static void send_chunks(struct mc_map *m, unsigned npc)
{
    struct lconn *l = &m->put;
    if (conn_ready(m, l, m->ring->p.io_timeout_ms) < 0)
        return;
    const char *kp[PUT_CHUNKS];
    size_t kl[PUT_CHUNKS];
    struct mc_map_chunk old[PUT_CHUNKS];
    for (unsigned j = 0; j < npc; j++) {
        kp[j] = m->pc[j].key;
        kl[j] = m->pc[j].klen;
        old[j].present = 0;
    }
    memcached_st *mc = l->conn.mc;
    memcached_return_t rc = memcached_mget(mc, kp, kl, npc);
    if (!memcached_failed(rc) || rc == MEMCACHED_SOME_ERRORS) {
        memcached_return_t frc;
        while (memcached_fetch_result(mc, &l->res, &frc)) {
            const char *k = memcached_result_key_value(&l->res);
            size_t klen = memcached_result_key_length(&l->res);
            for (unsigned j = 0; j < npc; j++) {
                if (kl[j] != klen || memcmp(kp[j], k, klen))
                    continue;
                int dr =
                    mc_map_decode(memcached_result_value(&l->res), memcached_result_length(&l->res),
                                  kp[j], kl[j], m->secret, &old[j]);
                if (dr < 0) {
                    count_bad(m, dr);
                    old[j].present = 0;
                }
                break;
            }
        }
    }
    if (mc_conn_report(m->ring, &l->conn, kp, kl, npc) || !l->conn.mc)
        return; /* a server failed: these entries are lost (hints only) */
    for (unsigned j = 0; j < npc; j++) {
        struct mc_map_chunk *o = &old[j];
        const struct mc_map_chunk *a = &m->pc[j].add;
        bool changed = false;
        for (unsigned b = 0; b < MC_MAP_CHUNK; b++) {
            if (!(a->present >> b & 1))
                continue;
            if ((o->present >> b & 1) && fpkey_equal(&o->keys[b], &a->keys[b]))
                continue;
            o->present |= UINT64_C(1) << b;
            o->keys[b] = a->keys[b];
            changed = true;
        }
        if (!changed)
            continue;
        uint8_t val[MC_MAP_VALUE_LEN];
        mc_map_encode(o, kp[j], kl[j], m->secret, val);
        rc = memcached_set(mc, kp[j], kl[j], (const char *)val, sizeof val, 0, 0);
        if (!memcached_failed(rc))
            STAT_ADD(m->st.sets, 1);
    }
    mc_conn_report(m->ring, &l->conn, kp, kl, npc);
}

static void *put_main(void *arg)
{
    struct mc_map *m = arg;
    pthread_mutex_lock(&m->plock);
    for (;;) {
        while (!m->stop && m->count == 0)
            pthread_cond_wait(&m->pcond, &m->plock);
        if (m->stop)
            break;
        unsigned taken;
        unsigned npc = gather_locked(m, &taken);
        /* The producers write only free slots, and pc[] is this thread's. */
        pthread_mutex_unlock(&m->plock);
        send_chunks(m, npc);
        pthread_mutex_lock(&m->plock);
        m->done += taken;
        pthread_cond_broadcast(&m->pdone);
    }
    pthread_mutex_unlock(&m->plock);
    return NULL;
}

int mc_map_flush(struct mc_map *m, uint32_t timeout_ms)
{
    struct timespec until;
    deadline_after_ms(timeout_ms, &until);
    LOCK_GUARD(&m->plock);
    uint64_t target = m->enqueued;
    while (m->done < target)
        if (pthread_cond_timedwait(&m->pdone, &m->plock, &until) == ETIMEDOUT)
            return m->done < target ? -ETIMEDOUT : 0;
    return 0;
}

void mc_map_get_stats(struct mc_map *m, struct mc_map_stats *out)
{
    out->busy = STAT_LOAD(m->st.busy);
    out->put_drops = STAT_LOAD(m->st.put_drops);
    out->sets = STAT_LOAD(m->st.sets);
    out->bad_values = STAT_LOAD(m->st.bad_values);
    out->forged = STAT_LOAD(m->st.forged);
}

void mc_map_set_secret(struct mc_map *m, const uint8_t *secret)
{
    if (mc_map_ready(m))
        return; /* one secret per run: lookups read it without a lock */
    memcpy(m->secret, secret, MC_MAP_SECRET);
    __atomic_store_n(&m->ready, 1, __ATOMIC_RELEASE);
}

bool mc_map_ready(struct mc_map *m)
{
    return __atomic_load_n(&m->ready, __ATOMIC_ACQUIRE);
}

/* ---- life cycle ---- */

static int lconn_init(struct lconn *l, uint64_t *allocs)
{
    pthread_mutex_init(&l->lock, NULL);
    l->conn.short_waits = true; /* conn_ready cuts its waits */
    mc_alloc_init(&l->alloc, NULL, allocs);
    l->conn.alloc = &l->alloc;
    l->res_root = memcached_create(NULL);
    if (!l->res_root || mc_alloc_attach(&l->alloc, l->res_root) < 0 ||
        !memcached_result_create(l->res_root, &l->res)) {
        if (l->res_root)
            memcached_free(l->res_root);
        l->res_root = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void lconn_fini(struct lconn *l)
{
    mc_conn_drop(&l->conn);
    if (l->res_root) {
        memcached_result_free(&l->res);
        memcached_free(l->res_root);
    }
    pthread_mutex_destroy(&l->lock);
}

void mc_map_close(struct mc_map *m)
{
    if (!m)
        return;
    {
        LOCK_GUARD(&m->plock);
        m->stop = true;
        pthread_cond_broadcast(&m->pcond);
    }
    if (m->started)
        pthread_join(m->thread, NULL);
    for (unsigned i = 0; i < MC_MAP_CONNS; i++)
        lconn_fini(&m->lk[i]);
    lconn_fini(&m->put);
    free(m->q);
    pthread_mutex_destroy(&m->plock);
    pthread_cond_destroy(&m->pcond);
    pthread_cond_destroy(&m->pdone);
    free(m);
}

int mc_map_open(struct mc_ring *ring, uint32_t timeout_ms, unsigned queue, uint64_t *allocs,
                struct mc_map **out)
{
    struct mc_map *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->ring = ring;
    m->timeout_ms = timeout_ms;
    m->cap = queue ? queue : MC_MAP_QUEUE;
    pthread_mutex_init(&m->plock, NULL);
    pthread_cond_init(&m->pcond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->pdone, &ca);
    pthread_condattr_destroy(&ca);
    int r = 0;
    for (unsigned i = 0; i < MC_MAP_CONNS; i++)
        if (lconn_init(&m->lk[i], allocs) < 0)
            r = -ENOMEM;
    if (lconn_init(&m->put, allocs) < 0)
        r = -ENOMEM;
    m->q = calloc(m->cap, sizeof *m->q);
    if (!m->q)
        r = -ENOMEM;
    if (r == 0) {
        r = -pthread_create(&m->thread, NULL, put_main, m);
        m->started = r == 0;
    }
    if (r < 0) {
        mc_map_close(m);
        return r;
    }
    *out = m;
    return 0;
}
