/* The engine: the shared content store and the volume registry; volume
 * lifecycle, live control and stat snapshots. See engine.h for lock rules. */
#include "core/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/evict.h"
#include "core/store.h"
#include "core/tier.h"
#include "core/volume.h"
#include "core/volume_io.h"

struct engine {
    struct store *store;
    struct dir_budget budget; /* remembered blocks, all volumes */
    struct tier **tiers;      /* owned; asked in order after the store */
    unsigned ntiers;
    pthread_rwlock_t lock;
    struct volume *head; /* registry in insertion order */
    unsigned count;

    /* Maintenance thread: purges directory cells whose content was evicted. */
    pthread_t maint;
    bool maint_running;
    pthread_mutex_t maint_lock;
    pthread_cond_t maint_cond;
    bool stopping;
};

#define MAINT_PERIOD_MS 100 /* a check is one pass over the shard locks */

static int purge_volume(struct volume *v, void *opaque)
{
    (void)opaque;
    dir_purge(v->dir);
    return 0;
}

/* Evicted contents leave stale cells in directories. The purge turns them
 * into remembered blocks while the store's eviction log (a sixteenth of the
 * cache's turnover) still knows their keys, and drops the rest; so it runs
 * once a thirty-second of the cache has been evicted since the last pass. */
static void *maint_main(void *arg)
{
    struct engine *e = arg;
    uint64_t last_evictions = 0;
    pthread_mutex_lock(&e->maint_lock);
    while (!e->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)MAINT_PERIOD_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&e->maint_cond, &e->maint_lock, &ts);
        if (e->stopping)
            break;
        pthread_mutex_unlock(&e->maint_lock);
        struct store_stats ss;
        store_get_stats(e->store, &ss);
        if (ss.evictions - last_evictions >= MAX(ss.capacity_blocks / 32, 1)) {
            last_evictions = ss.evictions;
            engine_for_each_volume(e, purge_volume, NULL);
        }
        pthread_mutex_lock(&e->maint_lock);
    }
    pthread_mutex_unlock(&e->maint_lock);
    return NULL;
}

/* ---- descriptor tables, generated from the one list ---- */

const struct stat_desc volume_stat_descs[] = {
#define X(n, k, u, h) {#n, k, u, h, offsetof(struct volume_snapshot, n)},
    VOLUME_COUNTERS(X) VOLUME_GAUGES(X) VOLUME_RATIOS(X)
#undef X
};
const unsigned volume_stat_count = ARRAY_SIZE(volume_stat_descs);

const struct stat_desc cache_stat_descs[] = {
#define X(n, k, u, h) {#n, k, u, h, offsetof(struct cache_snapshot, n)},
    CACHE_GAUGES(X) CACHE_RATIOS(X)
#undef X
};
const unsigned cache_stat_count = ARRAY_SIZE(cache_stat_descs);

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
    if (cfg->ntiers) {
        e->tiers = calloc(cfg->ntiers, sizeof *e->tiers);
        if (!e->tiers) {
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
    pthread_rwlock_destroy(&e->lock);
    free(e);
}

struct store *engine_store(struct engine *e)
{
    return e->store;
}

bool volume_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 255 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int volume_open_backend(struct engine *e, struct store *st, const struct volume_config *cfg,
                        struct backend *be, struct volume **out)
{
    struct volume *v = calloc(1, sizeof *v);
    if (!v) {
        backend_close(be);
        return -ENOMEM;
    }
    snprintf(v->name, sizeof v->name, "%s", cfg->name);
    v->engine = e;
    v->store = st;
    v->refs = 1;
    v->enabled = !cfg->disabled;
    pthread_mutex_init(&v->pf_lock, NULL);
    v->be = be;
    v->size = be->size;
    v->nblocks = DIV_ROUND_UP(v->size, BLOCK_SIZE);
    v->readonly = cfg->readonly || (be->caps & BE_READONLY);
    int64_t ra = cfg->readahead < 0    ? 0
                 : cfg->readahead == 0 ? ((be->caps & BE_REMOTE) ? VOL_READAHEAD_REMOTE : 0)
                                       : cfg->readahead;
    ra = MIN(ra, (int64_t)VOL_READAHEAD_MAX);
    /* Whole blocks, a power of two so windows align. */
    v->ra_blocks = ra >= BLOCK_SIZE ? 1u << (31 - __builtin_clz((uint32_t)(ra / BLOCK_SIZE))) : 0;
    v->tiers = e ? e->tiers : NULL;
    v->ntiers = e ? e->ntiers : 0;
    int r = dir_create(st, v->nblocks, e ? &e->budget : NULL, &v->dir);
    if (r < 0) {
        log_error(core, "volume %s: too large (%llu bytes)", cfg->name,
                  (unsigned long long)v->size);
        volume_free(v);
        return r;
    }
    *out = v;
    return 0;
}

int volume_open(struct engine *e, struct store *st, const struct volume_config *cfg,
                struct volume **out)
{
    struct backend_params bp = cfg->backend;
    bp.readonly = bp.readonly || cfg->readonly;
    struct backend *be;
    int r = backend_open(&bp, &be);
    if (r < 0) {
        /* The caller reports it (one line on the command line, a JSON error
         * through the API). */
        log_debug(core, "volume %s: cannot open back end '%s': %s", cfg->name, bp.spec,
                  strerror(-r));
        return r;
    }
    return volume_open_backend(e, st, cfg, be, out);
}

void volume_free(struct volume *v)
{
    if (!v)
        return;
    /* The prefetch thread uses the volume without a reference of its own:
     * stop it before anything it touches goes away. */
    __atomic_store_n(&v->pf_stop, 1, __ATOMIC_RELEASE);
    if (v->pf_joinable)
        pthread_join(v->pf_thread, NULL);
    dir_destroy(v->dir);
    if (v->be)
        backend_close(v->be);
    pthread_mutex_destroy(&v->pf_lock);
    free(v);
}

void volume_get(struct volume *v)
{
    __atomic_fetch_add(&v->refs, 1, __ATOMIC_RELAXED);
}

void volume_put(struct volume *v)
{
    if (v && __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) == 0)
        volume_free(v);
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
    pthread_rwlock_wrlock(&e->lock);
    if (find_locked(e, v->name)) {
        pthread_rwlock_unlock(&e->lock);
        volume_put(v);
        return -EEXIST;
    }
    struct volume **pp = &e->head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = v;
    e->count++;
    pthread_rwlock_unlock(&e->lock);
    char desc[512];
    volume_describe_backend(v, desc, sizeof desc);
    log_info(core, "volume %s: %s, %llu bytes%s%s", v->name, desc, (unsigned long long)v->size,
             v->readonly ? ", read-only" : "", v->enabled ? "" : ", pass-through");
    return 0;
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
    struct volume *v;
    int r = volume_open(e, e->store, cfg, &v);
    if (r < 0)
        return r;
    return add_opened(e, v);
}

int engine_add_volume_backend(struct engine *e, const struct volume_config *cfg, struct backend *be)
{
    if (!volume_name_valid(cfg->name) || name_taken(e, cfg->name)) {
        backend_close(be);
        return !volume_name_valid(cfg->name) ? -EINVAL : -EEXIST;
    }
    struct volume *v;
    int r = volume_open_backend(e, e->store, cfg, be, &v);
    if (r < 0)
        return r;
    return add_opened(e, v);
}

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

int engine_resize_cache(struct engine *e, uint64_t bytes)
{
    return store_resize(e->store, bytes);
}

/* ---- accessors and control ---- */

const char *volume_name(const struct volume *v)
{
    return v->name;
}
uint64_t volume_size(const struct volume *v)
{
    return v->size;
}
bool volume_readonly(const struct volume *v)
{
    return v->readonly;
}
bool volume_enabled(const struct volume *v)
{
    return __atomic_load_n(&v->enabled, __ATOMIC_ACQUIRE);
}
struct backend *volume_backend(const struct volume *v)
{
    return v->be;
}
void volume_block_limits(const struct volume *v, struct vol_block_limits *out)
{
    out->min = v->be->min_block > 1 ? v->be->min_block : 1;
    out->preferred = MAX(BLOCK_SIZE, out->min);
    out->max = VOL_MAX_IO;
}

void volume_describe_backend(const struct volume *v, char *buf, size_t len)
{
    if (v->be->ops->describe)
        v->be->ops->describe(v->be, buf, len);
    else
        snprintf(buf, len, "%s %s", v->be->ops->name, v->be->spec ? v->be->spec : "");
}

int volume_set_enabled(struct volume *v, bool on)
{
    int was = __atomic_exchange_n(&v->enabled, on ? 1 : 0, __ATOMIC_ACQ_REL);
    if (was && !on) {
        /* Reads that passed the enabled check before the store above took
         * tickets before this invalidate bumps them: they cannot install. */
        dir_invalidate(v->dir, 0, v->nblocks);
    }
    if (was != (int)on)
        log_info(core, "volume %s: acceleration %s", v->name, on ? "on" : "off (pass-through)");
    return 0;
}

int volume_invalidate(struct volume *v, uint64_t offset, uint64_t length)
{
    if (offset > v->size)
        return -EINVAL;
    if (length == 0 || length > v->size - offset)
        length = v->size - offset;
    if (length == 0)
        return 0;
    uint64_t first = block_of(offset);
    uint64_t last = block_of(offset + length - 1);
    dir_invalidate(v->dir, first, last - first + 1);
    log_info(core, "volume %s: invalidated [%llu, +%llu)", v->name, (unsigned long long)offset,
             (unsigned long long)length);
    return 0;
}

void volume_conn_attach(struct volume *v)
{
    __atomic_fetch_add(&v->conns, 1, __ATOMIC_RELAXED);
}
void volume_conn_detach(struct volume *v)
{
    __atomic_fetch_sub(&v->conns, 1, __ATOMIC_RELAXED);
}
unsigned volume_connections(const struct volume *v)
{
    return __atomic_load_n(&v->conns, __ATOMIC_RELAXED);
}
bool volume_defunct(const struct volume *v)
{
    return __atomic_load_n(&v->defunct, __ATOMIC_ACQUIRE);
}

/* ---- prefetch in the background ---- */

static void *prefetch_main(void *arg)
{
    struct volume *v = arg;
    struct vol_scratch *s = vol_scratch_new();
    uint64_t off, len;
    {
        LOCK_GUARD(&v->pf_lock);
        off = v->pf.offset;
        len = v->pf.length;
    }
    int err = s ? 0 : -ENOMEM;
    const uint64_t step = 16u << 20;
    for (uint64_t done = 0; err == 0 && done < len;) {
        uint64_t n = MIN(step, len - done);
        err = vol_prefetch(v, off + done, n, s);
        done += n;
        LOCK_GUARD(&v->pf_lock);
        v->pf.done_bytes = done;
    }
    vol_scratch_free(s);
    {
        LOCK_GUARD(&v->pf_lock);
        v->pf.running = false;
        v->pf.error = err;
    }
    log_info(core, "volume %s: prefetch %s", v->name, err ? strerror(-err) : "done");
    return NULL;
}

int volume_prefetch_start(struct volume *v, uint64_t offset, uint64_t length)
{
    if (offset > v->size)
        return -EINVAL;
    if (length == 0 || length > v->size - offset)
        length = v->size - offset;
    LOCK_GUARD(&v->pf_lock);
    if (v->pf.running)
        return -EBUSY;
    if (v->pf_joinable) {
        pthread_join(v->pf_thread, NULL);
        v->pf_joinable = false;
    }
    v->pf = (struct prefetch_status){.running = true, .offset = offset, .length = length};
    int r = pthread_create(&v->pf_thread, NULL, prefetch_main, v);
    if (r != 0) {
        v->pf.running = false;
        return -r;
    }
    v->pf_joinable = true;
    return 0;
}

void volume_prefetch_status(struct volume *v, struct prefetch_status *out)
{
    LOCK_GUARD(&v->pf_lock);
    *out = v->pf;
}

/* ---- snapshots ---- */

static double ratio(uint64_t num, uint64_t den)
{
    return den ? (double)num / (double)den : 0.0;
}

void volume_snapshot(struct volume *v, struct volume_snapshot *out)
{
    memset(out, 0, sizeof *out);
#define X(n, k, u, h) out->n = STAT_LOAD(v->c.n);
    VOLUME_COUNTERS(X)
#undef X
    out->size_bytes = v->size;
    out->connections = volume_connections(v);
    out->enabled = volume_enabled(v);
    out->cached_blocks = dir_cells(v->dir);
    out->zero_blocks = dir_zero_cells(v->dir);
    out->remembered_blocks = dir_remembered(v->dir);
    out->hit_ratio = ratio(out->read_hit_bytes, out->read_bytes);
    /* Signed: read-ahead can fetch more from the array than clients asked
     * for, and then the cache adds array traffic; that must show. */
    out->offload_ratio =
        out->read_bytes ? 1.0 - ratio(out->backend_read_bytes, out->read_bytes) : 0;
    hist_snapshot(&v->lat_read_hit, &out->lat_read_hit);
    hist_snapshot(&v->lat_read_miss, &out->lat_read_miss);
    hist_snapshot(&v->lat_write, &out->lat_write);
}

struct meta_acc {
    uint64_t dir_bytes;
    uint64_t zero_blocks;
    uint64_t remembered, remembered_bytes;
};

static int add_volume_meta(struct volume *v, void *opaque)
{
    struct meta_acc *m = opaque;
    m->dir_bytes += dir_metadata_bytes(v->dir);
    m->zero_blocks += dir_zero_cells(v->dir);
    m->remembered += dir_remembered(v->dir);
    m->remembered_bytes += dir_remembered_bytes(v->dir);
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
    out->logical_blocks = ss.logical_blocks;
    out->zero_blocks = m.zero_blocks;
    out->logical_bytes = (ss.logical_blocks + m.zero_blocks) * BLOCK_SIZE;
    uint64_t local_meta = ss.metadata_bytes + m.dir_bytes + sizeof *e;
    out->metadata_bytes = local_meta + m.remembered_bytes;
    out->directory_remembered_blocks = m.remembered;
    out->remembered_limit_blocks = e->budget.max;
    out->remembered_metadata_bytes = m.remembered_bytes;
    for (unsigned i = 0; i < e->ntiers; i++) {
        const struct tier_counters *c = &e->tiers[i]->c;
        out->tier_lookups += STAT_LOAD(c->lookups);
        out->tier_hits += STAT_LOAD(c->hits);
        out->tier_corrupt += STAT_LOAD(c->corrupt);
        out->tier_timeouts += STAT_LOAD(c->timeouts);
        out->tier_errors += STAT_LOAD(c->errors);
        out->tier_puts += STAT_LOAD(c->puts);
    }
    out->evictions = ss.evictions;
    out->inserts = ss.inserts;
    out->dedup_hits = ss.dedup_hits;
    out->insert_failures = ss.insert_failures;
    out->dedup_ratio = ratio(ss.logical_blocks, ss.unique_blocks);
    out->metadata_bytes_per_block = ratio(local_meta, ss.unique_blocks);
    out->remembered_bytes_per_block = ratio(m.remembered_bytes, m.remembered);
    out->fill_ratio = ratio(out->used_bytes, out->capacity_bytes);
}
