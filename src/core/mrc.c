/* Miss-ratio curves by miniature simulation (see mrc.h). */
#include "core/mrc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/evict.h"
#include "core/store.h"

const unsigned mrc_eighths[MRC_POINTS] = {1, 2, 4, 6, 8, 12, 16, 32};

/* Sampling at most 1 in 4: a sampled access takes the mutex and touches
 * every small cache (about half a microsecond), which a hit path must not
 * pay on every block; at 1 in 16 a small cache's curve swung by 0.04 from
 * one run to the next on a skewed workload (whether its hottest contents
 * were sampled). */
#define RATE_MAX (1.0 / 4)
/* A small cache below this many entries says little (its policy's queues
 * are a handful of entries); its size is raised, and the point shows the
 * size it really simulates. */
#define MINI_MIN 16

/* One small cache: entries with the store's layout (the policies work on
 * them as they do on the store's), chained in buckets by key. */
struct mini {
    uint32_t cap, used;
    struct store_entry *e;
    uint32_t *bucket;
    uint32_t bmask;
    void *pstate;
    uint64_t reads, misses;
};

struct mrc {
    struct mrc_public pub; /* first: mrc_sampled reads it */
    pthread_mutex_t lock;
    const struct evict_ops *policy;
    uint32_t max_entries;
    uint64_t cache_blocks;
    double rate;
    uint64_t zero_reads;  /* atomic */
    uint64_t all_reads;   /* atomic: reads of stored content, sampled or not */
    uint64_t real_misses; /* atomic: those of them the real cache fetched */
    struct mini mini[MRC_POINTS];
    size_t bytes;
    /* The last hist_cap sampled accesses, a ring (hist_next: the next to
     * write, hist_len: how many are kept). A resize replays them into the
     * new small caches: the real cache keeps its contents across a resize,
     * and small caches started empty counted misses it never had, which
     * the pinning (mrc_get) turned into a curve too optimistic at every
     * size until they had filled. */
    uint32_t *hist_key;
    uint8_t *hist_kind; /* enum mrc_access */
    uint32_t hist_cap, hist_len, hist_next;
};

static void mini_free(const struct evict_ops *policy, struct mini *c)
{
    if (c->pstate) {
        policy->fini(c->pstate);
        free(c->pstate);
    }
    free(c->e);
    free(c->bucket);
    memset(c, 0, sizeof *c);
}

static int mini_init(const struct evict_ops *policy, struct mini *c, uint32_t cap, size_t *bytes)
{
    memset(c, 0, sizeof *c);
    uint32_t nb = 16;
    while (nb < cap)
        nb <<= 1;
    c->cap = cap;
    c->bmask = nb - 1;
    /* malloc and memset, not calloc: every page is touched now, so the
     * curve's memory is resident from the start and does not show up later
     * as RSS creeping up while the small caches fill. */
    c->e = malloc((size_t)cap * sizeof *c->e);
    c->bucket = malloc((size_t)nb * sizeof *c->bucket);
    if (c->e)
        memset(c->e, 0, (size_t)cap * sizeof *c->e);
    c->pstate = calloc(1, policy->state_size ? policy->state_size : 1);
    if (!c->e || !c->bucket || !c->pstate)
        goto fail;
    for (uint32_t i = 0; i <= c->bmask; i++)
        c->bucket[i] = STORE_NONE;
    if (policy->init(c->pstate, c->e, cap, cap) < 0)
        goto fail;
    *bytes += (size_t)cap * sizeof *c->e + (size_t)nb * sizeof *c->bucket + policy->state_size +
              policy->metadata_bytes_locked(c->pstate);
    return 0;
fail:
    free(c->pstate);
    c->pstate = NULL;
    mini_free(policy, c);
    return -ENOMEM;
}

static uint32_t mini_find(const struct mini *c, uint32_t key)
{
    for (uint32_t i = c->bucket[mrc_mix(key) & c->bmask]; i != STORE_NONE; i = c->e[i].hnext)
        if (c->e[i].key == key)
            return i;
    return STORE_NONE;
}

static void mini_unlink(struct mini *c, uint32_t idx)
{
    uint32_t *p = &c->bucket[mrc_mix(c->e[idx].key) & c->bmask];
    while (*p != idx)
        p = &c->e[*p].hnext;
    *p = c->e[idx].hnext;
}

static void mini_insert(const struct evict_ops *policy, struct mini *c, uint32_t key)
{
    uint32_t idx;
    if (c->used < c->cap) {
        idx = c->used++;
    } else {
        idx = policy->evict_locked(c->pstate);
        if (idx == STORE_NONE)
            return;
        mini_unlink(c, idx);
    }
    struct store_entry *e = &c->e[idx];
    e->key = key;
    e->refs = 1; /* held, as a store entry a directory maps */
    uint32_t *b = &c->bucket[mrc_mix(key) & c->bmask];
    e->hnext = *b;
    *b = idx;
    policy->insert_locked(c->pstate, idx);
}

static void mini_access(const struct evict_ops *policy, struct mini *c, uint32_t key,
                        enum mrc_access kind)
{
    uint32_t idx = mini_find(c, key);
    if (kind == MRC_READ) {
        c->reads++;
        if (idx != STORE_NONE) {
            policy->hit_locked(c->pstate, idx);
            return;
        }
        c->misses++;
    } else if (idx != STORE_NONE) {
        return; /* a write of held content: a reference, no use */
    }
    mini_insert(policy, c, key);
}

static void minis_free(struct mrc *m)
{
    for (unsigned i = 0; i < MRC_POINTS; i++)
        mini_free(m->policy, &m->mini[i]);
    m->bytes = sizeof *m + (size_t)m->hist_cap * (sizeof *m->hist_key + sizeof *m->hist_kind);
}

/* One sampled access through every small cache. */
static void minis_access(struct mrc *m, uint32_t key, enum mrc_access kind)
{
    for (unsigned i = 0; i < MRC_POINTS; i++)
        mini_access(m->policy, &m->mini[i], key, kind);
}

static void hist_add(struct mrc *m, uint32_t key, enum mrc_access kind)
{
    m->hist_key[m->hist_next] = key;
    m->hist_kind[m->hist_next] = (uint8_t)kind;
    m->hist_next = m->hist_next + 1 == m->hist_cap ? 0 : m->hist_next + 1;
    if (m->hist_len < m->hist_cap)
        m->hist_len++;
}

/* After minis_build: the kept accesses still sampled at the new rate go
 * through the new small caches, oldest first, and stay in the ring (the
 * others go: later accesses to their contents are no longer recorded);
 * then the counts start from zero, as the real cache's do. */
static void hist_replay(struct mrc *m)
{
    uint32_t n = m->hist_len, first = (m->hist_next + m->hist_cap - n) % m->hist_cap;
    uint32_t *keys = malloc((size_t)n * sizeof *keys + 1);
    uint8_t *kinds = malloc((size_t)n + 1);
    uint32_t kept = 0;
    if (keys && kinds) {
        for (uint32_t j = 0; j < n; j++) {
            uint32_t i = (first + j) % m->hist_cap;
            if (!mrc_sampled(m, m->hist_key[i]))
                continue;
            keys[kept] = m->hist_key[i];
            kinds[kept++] = m->hist_kind[i];
        }
        memcpy(m->hist_key, keys, (size_t)kept * sizeof *keys);
        memcpy(m->hist_kind, kinds, kept);
    } /* else: no room to sort them out, so the curve starts cold */
    free(keys);
    free(kinds);
    m->hist_len = kept;
    m->hist_next = kept % m->hist_cap;
    for (uint32_t j = 0; j < kept; j++)
        minis_access(m, m->hist_key[j], (enum mrc_access)m->hist_kind[j]);
    for (unsigned i = 0; i < MRC_POINTS; i++)
        m->mini[i].reads = m->mini[i].misses = 0;
}

/* Sizes and rate for cache_blocks, under the lock (or before sharing). */
static int minis_build(struct mrc *m, uint64_t cache_blocks)
{
    minis_free(m);
    uint64_t largest = cache_blocks * mrc_eighths[MRC_POINTS - 1] / 8;
    double rate = largest ? (double)m->max_entries / (double)largest : RATE_MAX;
    if (rate > RATE_MAX)
        rate = RATE_MAX;
    m->cache_blocks = cache_blocks;
    m->rate = rate;
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        double want = (double)cache_blocks * mrc_eighths[i] / 8 * rate + 0.5;
        uint32_t cap = want < MINI_MIN ? MINI_MIN : (uint32_t)want;
        if (mini_init(m->policy, &m->mini[i], cap, &m->bytes) < 0) {
            minis_free(m);
            return -ENOMEM;
        }
    }
    __atomic_store_n(&m->zero_reads, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&m->all_reads, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&m->real_misses, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&m->pub.threshold, (uint32_t)(rate * 4294967296.0), __ATOMIC_RELAXED);
    return 0;
}

int mrc_create(const struct evict_ops *policy, uint64_t cache_blocks, uint32_t max_entries,
               struct mrc **out)
{
    if (!policy || max_entries < MINI_MIN)
        return -EINVAL;
    struct mrc *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    m->policy = policy;
    m->max_entries = max_entries;
    /* Twice the largest small cache's entries: enough to fill the x1 one
     * again (a quarter of the largest) several times over. */
    m->hist_cap = 2 * max_entries;
    m->hist_key = malloc((size_t)m->hist_cap * sizeof *m->hist_key);
    m->hist_kind = malloc(m->hist_cap);
    int r = m->hist_key && m->hist_kind ? minis_build(m, cache_blocks) : -ENOMEM;
    if (r < 0) {
        free(m->hist_key);
        free(m->hist_kind);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return r;
    }
    *out = m;
    return 0;
}

void mrc_destroy(struct mrc *m)
{
    if (!m)
        return;
    minis_free(m);
    free(m->hist_key);
    free(m->hist_kind);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int mrc_resize(struct mrc *m, uint64_t cache_blocks)
{
    pthread_mutex_lock(&m->lock);
    int r = minis_build(m, cache_blocks);
    if (r == 0)
        hist_replay(m);
    pthread_mutex_unlock(&m->lock);
    return r;
}

void mrc_access(struct mrc *m, uint32_t key, enum mrc_access kind)
{
    pthread_mutex_lock(&m->lock);
    /* A resize may have lowered the threshold since the caller tested. */
    if (m->mini[0].e && mrc_sampled(m, key)) {
        minis_access(m, key, kind);
        hist_add(m, key, kind);
    }
    pthread_mutex_unlock(&m->lock);
}

void mrc_zero_reads(struct mrc *m, uint64_t blocks)
{
    __atomic_fetch_add(&m->zero_reads, blocks, __ATOMIC_RELAXED);
}

void mrc_reads(struct mrc *m, uint64_t blocks, bool hit)
{
    __atomic_fetch_add(&m->all_reads, blocks, __ATOMIC_RELAXED);
    if (!hit) /* misses, not hits: the hit path pays no second add */
        __atomic_fetch_add(&m->real_misses, blocks, __ATOMIC_RELAXED);
}

size_t mrc_memory(struct mrc *m)
{
    pthread_mutex_lock(&m->lock);
    size_t b = m->bytes;
    pthread_mutex_unlock(&m->lock);
    return b;
}

void mrc_get(struct mrc *m, struct mrc_curve *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->lock);
    out->rate = m->rate;
    out->bytes = m->bytes;
    out->sampled_reads = m->mini[0].reads;
    /* Zero reads are counted whole and always hit. Misses are divided by
     * the sampled reads expected from all reads at this rate, not by the
     * sampled reads seen (SHARDS-adj): whether a few very hot contents
     * fall in the sample swings the count of sampled reads, and those
     * extra or missing reads are hits at every size. */
    double counted = (double)__atomic_load_n(&m->all_reads, __ATOMIC_RELAXED);
    double stored = counted;
    if (stored == 0 && m->rate > 0) /* a caller that counts sampled reads only */
        stored = (double)m->mini[0].reads / m->rate;
    double zero = (double)__atomic_load_n(&m->zero_reads, __ATOMIC_RELAXED);
    double zfrac = stored + zero > 0 ? zero / (stored + zero) : 0;
    double expect = stored * m->rate;
    double miss[MRC_POINTS];
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        const struct mini *c = &m->mini[i];
        double base = expect >= 1 ? expect : (double)c->reads;
        miss[i] = base > 0 ? (double)c->misses / base : 1.0;
    }
    /* Pinned at the cache's own size: the sample's error (which contents
     * fell in it, a very hot one or not) moves every point the same way,
     * while the real cache's miss ratio at that size is known (counted
     * over the same reads, since the curve started). Each point keeps its
     * distance from the x1 point. That also carries what the simulation
     * leaves out (read-ahead's hits, installs lost to races) to the other
     * sizes. */
    double real_misses = (double)__atomic_load_n(&m->real_misses, __ATOMIC_RELAXED);
    double shift = 0;
    if (counted > 0)
        shift = real_misses / stored - miss[MRC_X1];
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        const struct mini *c = &m->mini[i];
        /* The size it really simulates (MINI_MIN may have raised it). */
        out->p[i].cache_blocks = m->rate > 0 ? (uint64_t)((double)c->cap / m->rate + 0.5) : 0;
        double mi = miss[i] + shift;
        mi = mi < 0 ? 0 : mi > 1.0 ? 1.0 : mi;
        out->p[i].hit_ratio = c->reads || zero > 0 ? 1.0 - (1.0 - zfrac) * mi : 0.0;
    }
    pthread_mutex_unlock(&m->lock);
}
