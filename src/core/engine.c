/* The engine: the shared content store, the tiers, the worker pool, the
 * maintenance thread and the volume registry (name -> volume), and the
 * cache-wide snapshot. Volumes themselves are volume_ctl.c's. See engine.h
 * for lock rules. */
#include "core/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/bufpool.h"
#include "common/busy_poll.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/dir_share.h"
#include "core/evict.h"
#include "core/store.h"
#include "core/tier.h"
#include "core/volume.h"
#include "core/volume_io.h"
#include "core/vol_move.h"

struct engine {
    struct store *store;
    struct dir_budget budget; /* remembered blocks, all volumes */
    struct tier **tiers;      /* owned; asked in order after the store */
    unsigned ntiers;
    struct workq *wq; /* owned; NULL: requests run on the submitting thread */
    const struct evict_ops *policy;
    struct mrc *mrc; /* the whole cache's miss-ratio curve; NULL without memory */
    pthread_rwlock_t lock;
    struct volume *head; /* registry in insertion order */
    unsigned count;

    /* Maintenance thread: purges directory cells whose content was evicted. */
    pthread_t maint;
    bool maint_running;
    pthread_mutex_t maint_lock;
    pthread_cond_t maint_cond;
    bool stopping;
    bool told; /* a shard's eviction log is half new since the last purge */
};

#define MAINT_PERIOD_MS 100 /* a check is one pass over the shard locks */
#define MAINT_BUSY_MS   10  /* while the cache turns over fast */

static int purge_volume(struct volume *v, void *opaque)
{
    (void)opaque;
    dir_purge(v->dir);
    return 0;
}

/* The store says a shard's log is half overwritten (store_set_evict_notify):
 * purge now, not at the next tick. */
static void maint_tell(void *arg)
{
    struct engine *e = arg;
    LOCK_GUARD(&e->maint_lock);
    e->told = true;
    pthread_cond_signal(&e->maint_cond);
}

/* Evicted contents leave stale cells in directories. The purge turns them
 * into remembered blocks while the store's eviction log still knows their
 * keys, and drops the rest; so it runs once half the log's records (or a
 * thirty-second of the cache, if less) were evicted since the last pass,
 * checking every 10 ms instead of 100 while evictions come that fast, and
 * at once when the store tells that a shard's log is half new (a scan
 * through a small cache overwrites a log in about a millisecond): a block
 * whose key is forgotten can no longer be asked of a tier (the cluster's
 * memcached) and goes back to the back end. */
static void *maint_main(void *arg)
{
    struct engine *e = arg;
    uint64_t last_evictions = 0;
    bool busy = false;
    pthread_mutex_lock(&e->maint_lock);
    while (!e->stopping) {
        if (!e->told) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)(busy ? MAINT_BUSY_MS : MAINT_PERIOD_MS) * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&e->maint_cond, &e->maint_lock, &ts);
        }
        if (e->stopping)
            break;
        bool told = e->told;
        e->told = false;
        pthread_mutex_unlock(&e->maint_lock);
        struct store_stats ss;
        store_get_stats(e->store, &ss);
        uint64_t every = MAX(MIN(ss.capacity_blocks / 32, store_evlog_records(e->store) / 2), 1);
        busy = told || ss.evictions - last_evictions >= every;
        if (busy) {
            last_evictions = ss.evictions;
            engine_for_each_volume(e, purge_volume, NULL);
        }
        pthread_mutex_lock(&e->maint_lock);
    }
    pthread_mutex_unlock(&e->maint_lock);
    return NULL;
}

/* ---- engine ---- */

int engine_create(const struct engine_config *cfg, struct engine **out)
{
    const struct evict_ops *pol = evict_find(cfg->policy);
    if (!pol) {
        log_error(core, "unknown eviction policy '%s'", cfg->policy);
        return -EINVAL;
    }
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    pthread_rwlock_init(&e->lock, NULL);
    e->policy = pol;
    /* The whole cache's curve; without memory for it the engine runs
     * without one. */
    if (mrc_create(pol, cfg->cache_bytes / BLOCK_SIZE, ENGINE_MRC_ENTRIES, &e->mrc) < 0)
        e->mrc = NULL;
    /* Reserve address space for growing the cache live up to physical RAM
     * (MAP_NORESERVE: costs nothing until used). */
    uint64_t phys = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t max = MAX(cfg->cache_bytes, phys);
    int r = store_create(cfg->cache_bytes, max, pol, &e->store);
    if (r < 0) {
        pthread_rwlock_destroy(&e->lock);
        free(e);
        return r;
    }
    dir_budget_init(&e->budget, cfg->remember_blocks
                                    ? cfg->remember_blocks
                                    : ENGINE_REMEMBER_PER_BLOCK * (cfg->cache_bytes / BLOCK_SIZE));
    /* Nothing to remember: evictions need not hash their victims. */
    store_set_eviction_log(e->store, e->budget.max > 0);
    /* With a tier, a forgotten key costs a back end read instead of a tier
     * hit: the purge follows the evictions however fast they come. Without
     * one the 10 ms tick is enough (a purge per half log cost a fast scan
     * through an 8 MiB cache 8% of its speed). */
    if (e->budget.max > 0 && cfg->ntiers)
        store_set_evict_notify(e->store, maint_tell, e);
    if (cfg->workers) {
        struct workq_config wc = {
            .threads = cfg->workers,
            .max_threads = cfg->max_workers,
            .name = "worker",
        };
        r = workq_create(&wc, &e->wq);
        if (r < 0) {
            store_destroy(e->store);
            pthread_rwlock_destroy(&e->lock);
            free(e);
            return r;
        }
    }
    if (cfg->ntiers) {
        e->tiers = calloc(cfg->ntiers, sizeof *e->tiers);
        if (!e->tiers) {
            workq_destroy(e->wq);
            store_destroy(e->store);
            pthread_rwlock_destroy(&e->lock);
            free(e);
            return -ENOMEM;
        }
        memcpy(e->tiers, cfg->tiers, cfg->ntiers * sizeof *e->tiers);
        e->ntiers = cfg->ntiers;
    }
    pthread_mutex_init(&e->maint_lock, NULL);
    pthread_cond_init(&e->maint_cond, NULL);
    if (pthread_create(&e->maint, NULL, maint_main, e) == 0)
        e->maint_running = true;
    *out = e;
    return 0;
}

void engine_destroy(struct engine *e)
{
    if (!e)
        return;
    /* Queued requests finish (front ends stopped first, so none come). */
    if (e->wq)
        workq_destroy(e->wq);
    if (e->maint_running) {
        pthread_mutex_lock(&e->maint_lock);
        e->stopping = true;
        pthread_cond_signal(&e->maint_cond);
        pthread_mutex_unlock(&e->maint_lock);
        pthread_join(e->maint, NULL);
    }
    pthread_mutex_destroy(&e->maint_lock);
    pthread_cond_destroy(&e->maint_cond);
    struct volume *v = e->head;
    while (v) {
        struct volume *next = v->next;
        volume_put(v);
        v = next;
    }
    for (unsigned i = 0; i < e->ntiers; i++)
        tier_close(e->tiers[i]);
    free(e->tiers);
    store_destroy(e->store);
    mrc_destroy(e->mrc);
    pthread_rwlock_destroy(&e->lock);
    free(e);
}

struct store *engine_store(struct engine *e)
{
    return e->store;
}

static struct volume *find_locked(struct engine *e, const char *name)
{
    if (!name[0])
        return e->head;
    for (struct volume *v = e->head; v; v = v->next)
        if (strcmp(v->name, name) == 0)
            return v;
    return NULL;
}

static int add_opened(struct engine *e, struct volume *v)
{
    /* The log line is made while v is still ours: once it is in the list
     * and the lock is dropped, a concurrent remove may free it. */
    char desc[512], line[1024];
    volume_describe_backend(v, desc, sizeof desc);
    snprintf(line, sizeof line, "volume %s: %s, %llu bytes%s%s", v->name, desc,
             (unsigned long long)v->size, v->readonly ? ", read-only" : "",
             v->enabled ? "" : ", pass-through");
    pthread_rwlock_wrlock(&e->lock);
    if (find_locked(e, v->name)) {
        pthread_rwlock_unlock(&e->lock);
        volume_put(v);
        return -EEXIST;
    }
    /* Clones of one gold image have its size: share the directory with
     * the first volume of the same size (dir.h, SHARING; blocks are shared
     * only where their content is found equal, so an unrelated volume of
     * that size just shares nothing). Not yet visible: no I/O on v. */
    for (struct volume *b = e->head; b; b = b->next)
        if (dir_share(v->dir, b->dir) == 0) {
            log_debug(core, "volume %s: directory shares blocks with %s", v->name, b->name);
            break;
        }
    struct volume **pp = &e->head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = v;
    e->count++;
    pthread_rwlock_unlock(&e->lock);
    log_info(core, "%s", line);
    return 0;
}

static void volume_env(struct engine *e, struct vol_env *env)
{
    *env = (struct vol_env){
        .store = e->store,
        .budget = &e->budget,
        .tiers = e->tiers,
        .ntiers = e->ntiers,
        .wq = e->wq,
        .policy = e->policy,
        .cache_blocks = store_capacity_bytes(e->store) / BLOCK_SIZE,
        .mrc = e->mrc,
    };
}

static bool name_taken(struct engine *e, const char *name)
{
    pthread_rwlock_rdlock(&e->lock);
    bool exists = find_locked(e, name) != NULL;
    pthread_rwlock_unlock(&e->lock);
    return exists;
}

int engine_add_volume(struct engine *e, const struct volume_config *cfg)
{
    if (!volume_name_valid(cfg->name))
        return -EINVAL;
    if (name_taken(e, cfg->name))
        return -EEXIST;
    /* Open outside the lock: an upstream NBD connect can take a while. */
    struct vol_env env;
    volume_env(e, &env);
    struct volume *v;
    int r = volume_open(&env, cfg, &v);
    if (r < 0)
        return r;
    if (cfg->import_map) {
        /* Before anyone can reach it: the seeded keys take no tickets. */
        uint64_t n = 0;
        if (volume_map_import(v, cfg->import_map, &n) == 0)
            log_info(core, "volume %s: %" PRIu64 " block keys loaded from the cluster's map",
                     cfg->name, n);
    }
    return add_opened(e, v);
}

int engine_add_volume_backend(struct engine *e, const struct volume_config *cfg, struct backend *be)
{
    if (!volume_name_valid(cfg->name) || name_taken(e, cfg->name)) {
        backend_close(be);
        return !volume_name_valid(cfg->name) ? -EINVAL : -EEXIST;
    }
    struct vol_env env;
    volume_env(e, &env);
    struct volume *v;
    int r = volume_open_backend(&env, cfg, be, &v);
    if (r < 0)
        return r;
    return add_opened(e, v);
}

/* How long a forced remove waits for the connections it ended. */
#define REMOVE_DRAIN_MS 5000

int engine_remove_volume(struct engine *e, const char *name, bool force)
{
    pthread_rwlock_wrlock(&e->lock);
    struct volume **pp = &e->head;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    struct volume *v = *pp;
    if (!v || !name[0]) {
        pthread_rwlock_unlock(&e->lock);
        return -ENOENT;
    }
    if (volume_connections(v) > 0 && !force) {
        pthread_rwlock_unlock(&e->lock);
        return -EBUSY;
    }
    *pp = v->next;
    v->next = NULL;
    e->count--;
    __atomic_store_n(&v->defunct, 1, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&e->lock);
    /* Clients waiting for their next request would otherwise keep the
     * volume, its back end and the image's lock until they send one. Give
     * the kicked connections a moment to end, so that the image is free
     * when this returns (a re-add of the same file must not find it
     * exported still); one stuck in a slow back end call ends on its own. */
    volume_conn_kick_all(v);
    for (unsigned ms = 0; ms < REMOVE_DRAIN_MS && volume_connections(v) > 0; ms++)
        usleep(1000);
    log_info(core, "volume %s removed%s", v->name, force ? " (forced)" : "");
    volume_put(v); /* the registry's reference; connections hold their own */
    return 0;
}

struct volume *engine_get_volume(struct engine *e, const char *name)
{
    pthread_rwlock_rdlock(&e->lock);
    struct volume *v = find_locked(e, name);
    if (v)
        volume_get(v);
    pthread_rwlock_unlock(&e->lock);
    return v;
}

int engine_for_each_volume(struct engine *e, int (*fn)(struct volume *v, void *opaque),
                           void *opaque)
{
    /* Snapshot the list with references so fn runs without the lock. */
    pthread_rwlock_rdlock(&e->lock);
    unsigned n = e->count, k = 0;
    struct volume **vs = calloc(n ? n : 1, sizeof *vs);
    if (!vs) {
        pthread_rwlock_unlock(&e->lock);
        return -ENOMEM;
    }
    for (struct volume *v = e->head; v && k < n; v = v->next) {
        volume_get(v);
        vs[k++] = v;
    }
    pthread_rwlock_unlock(&e->lock);
    int r = 0;
    for (unsigned i = 0; i < k; i++) {
        if (r == 0)
            r = fn(vs[i], opaque);
        volume_put(vs[i]);
    }
    free(vs);
    return r;
}

unsigned engine_volume_count(struct engine *e)
{
    pthread_rwlock_rdlock(&e->lock);
    unsigned n = e->count;
    pthread_rwlock_unlock(&e->lock);
    return n;
}

static int resize_volume_mrc(struct volume *v, void *opaque)
{
    if (v->mrc)
        (void)mrc_resize(v->mrc, *(const uint64_t *)opaque);
    return 0;
}

uint64_t engine_cache_max_bytes(struct engine *e)
{
    return store_max_bytes(e->store);
}

int engine_resize_cache(struct engine *e, uint64_t bytes)
{
    int r = store_resize(e->store, bytes);
    if (r < 0)
        return r;
    /* The curves simulate sizes around the cache's: start them over. */
    uint64_t blocks = store_capacity_bytes(e->store) / BLOCK_SIZE;
    if (e->mrc)
        (void)mrc_resize(e->mrc, blocks);
    engine_for_each_volume(e, resize_volume_mrc, &blocks);
    return 0;
}

void engine_mrc(struct engine *e, struct mrc_curve *out)
{
    if (e->mrc)
        mrc_get(e->mrc, out);
    else
        memset(out, 0, sizeof *out);
}

void volume_mrc(struct volume *v, struct mrc_curve *out)
{
    if (v->mrc)
        mrc_get(v->mrc, out);
    else
        memset(out, 0, sizeof *out);
}

struct meta_acc {
    uint64_t dir_bytes;
    uint64_t zero_blocks;
    uint64_t remembered, remembered_bytes;
    uint64_t shared;
    uint64_t mrc_bytes;
};

static int add_volume_meta(struct volume *v, void *opaque)
{
    struct meta_acc *m = opaque;
    m->dir_bytes += dir_metadata_bytes(v->dir);
    m->mrc_bytes += v->mrc ? mrc_memory(v->mrc) : 0;
    m->zero_blocks += dir_zero_cells(v->dir);
    m->remembered += dir_remembered(v->dir);
    m->remembered_bytes += dir_remembered_bytes(v->dir);
    m->shared += dir_shared(v->dir) - dir_shared_zeros(v->dir);
    m->zero_blocks += dir_shared_zeros(v->dir);
    return 0;
}

void cache_snapshot(struct engine *e, struct cache_snapshot *out)
{
    struct store_stats ss;
    struct meta_acc m = {0};
    store_get_stats(e->store, &ss);
    engine_for_each_volume(e, add_volume_meta, &m);
    memset(out, 0, sizeof *out);
    out->capacity_bytes = ss.capacity_blocks * BLOCK_SIZE;
    out->used_bytes = ss.unique_blocks * BLOCK_SIZE;
    out->unique_blocks = ss.unique_blocks;
    /* A block a clone shares with its base holds no reference of its own
     * (dir.h, SHARING) but is one more volume block mapped all the same. */
    uint64_t logical = ss.logical_blocks + m.shared;
    out->logical_blocks = logical;
    out->zero_blocks = m.zero_blocks;
    out->logical_bytes = (logical + m.zero_blocks) * BLOCK_SIZE;
    uint64_t local_meta = ss.metadata_bytes + m.dir_bytes + sizeof *e;
    out->metadata_bytes = local_meta + m.remembered_bytes;
    out->directory_remembered_blocks = m.remembered;
    out->remembered_limit_blocks = e->budget.max;
    out->remembered_metadata_bytes = m.remembered_bytes;
    out->mrc_bytes = m.mrc_bytes + (e->mrc ? mrc_memory(e->mrc) : 0);
    out->io_buffer_bytes = bufpool_bytes();
    out->heap_bytes = heap_in_use_bytes();
    struct busy_poll_stats bp;
    busy_poll_stats(&bp);
    out->busy_poll_caught = bp.caught;
    out->busy_poll_missed = bp.missed;
    out->busy_poll_cpu_seconds = (double)bp.spin_ns / 1e9;
    for (unsigned i = 0; i < e->ntiers; i++) {
        const struct tier_counters *c = &e->tiers[i]->c;
        out->tier_lookups += STAT_LOAD(c->lookups);
        out->tier_hits += STAT_LOAD(c->hits);
        out->tier_corrupt += STAT_LOAD(c->corrupt);
        out->tier_timeouts += STAT_LOAD(c->timeouts);
        out->tier_errors += STAT_LOAD(c->errors);
        out->tier_puts += STAT_LOAD(c->puts);
        out->map_lookups += STAT_LOAD(c->map_lookups);
        out->map_hits += STAT_LOAD(c->map_hits);
        out->map_puts += STAT_LOAD(c->map_puts);
    }
    out->evictions = ss.evictions;
    out->inserts = ss.inserts;
    out->dedup_hits = ss.dedup_hits;
    out->insert_failures = ss.insert_failures;
    out->dedup_ratio = stat_ratio(logical, ss.unique_blocks);
    out->metadata_bytes_per_block = stat_ratio(local_meta, ss.unique_blocks);
    out->remembered_bytes_per_block = stat_ratio(m.remembered_bytes, m.remembered);
    out->fill_ratio = stat_ratio(out->used_bytes, out->capacity_bytes);
}
