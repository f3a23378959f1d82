/* Volumes: open and free, references, accessors, live control
 * (acceleration on/off, invalidation), connection accounting and stat
 * snapshots. See engine.h for the contracts and volume.h for the struct. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/vol_map.h"
#include "core/volume.h"
#include "core/volume_io.h"

/* Whether a volume takes part in the cluster's shared map: read-only, and
 * not fenced for a move (a fenced volume is read-only only for now: its
 * blocks changed under this node's eyes, not an image's). */
static bool map_shared(const struct volume *v)
{
    return vol_readonly(v) && !__atomic_load_n(&v->fenced, __ATOMIC_ACQUIRE);
}

static void volume_free(struct volume *v);

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

int volume_open_backend(const struct vol_env *env, const struct volume_config *cfg,
                        struct backend *be, struct volume **out)
{
    struct volume *v = calloc(1, sizeof *v);
    if (!v) {
        backend_close(be);
        return -ENOMEM;
    }
    snprintf(v->name, sizeof v->name, "%s", cfg->name);
    v->store = env->store;
    v->refs = 1;
    v->enabled = !cfg->disabled;
    pthread_mutex_init(&v->pf_lock, NULL);
    pthread_mutex_init(&v->conn_lock, NULL);
    gate_init(&v->gate);
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
    ra_budget_reset(&v->ra_budget, v->ra_blocks);
    v->settings = (struct volume_settings){
        .readahead = cfg->readahead,
        .readahead_bytes = v->ra_blocks * BLOCK_SIZE,
        .direct = cfg->backend.direct,
        .conns = cfg->backend.conns,
        .connect_timeout_ms = cfg->backend.connect_timeout_ms,
    };
    v->tiers = env->tiers;
    v->ntiers = env->ntiers;
    v->wq = env->wq;
    v->gmrc = env->mrc;
    vol_map_setup(v, map_shared(v));
    /* Without memory for its curve a volume still serves: no curve. */
    if (env->policy && mrc_create(env->policy, env->cache_blocks, VOLUME_MRC_ENTRIES, &v->mrc) < 0)
        v->mrc = NULL;
    int r = dir_create(env->store, v->nblocks, env->budget, &v->dir);
    if (r < 0) {
        log_error(core, "volume %s: too large (%llu bytes)", cfg->name,
                  (unsigned long long)v->size);
        volume_free(v);
        return r;
    }
    *out = v;
    return 0;
}

int volume_open(const struct vol_env *env, const struct volume_config *cfg, struct volume **out)
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
    return volume_open_backend(env, cfg, be, out);
}

static void volume_free(struct volume *v)
{
    if (!v)
        return;
    /* The prefetch thread uses the volume without a reference of its own:
     * stop it before anything it touches goes away. */
    volume_prefetch_stop(v);
    dir_destroy(v->dir);
    mrc_destroy(v->mrc);
    if (v->be)
        backend_close(v->be);
    pthread_mutex_destroy(&v->pf_lock);
    pthread_mutex_destroy(&v->conn_lock);
    gate_destroy(&v->gate);
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
    return vol_readonly(v);
}
bool volume_enabled(const struct volume *v)
{
    return __atomic_load_n(&v->enabled, __ATOMIC_ACQUIRE); /* the setting */
}
void volume_block_limits(const struct volume *v, struct vol_block_limits *out)
{
    out->min = v->be->min_block > 1 ? v->be->min_block : 1;
    out->preferred = MAX(BLOCK_SIZE, backend_io_align(v->be));
    out->max = VOL_MAX_IO;
}

const char *volume_backing_spec(const struct volume *v)
{
    return v->be->spec ? v->be->spec : "";
}

void volume_get_settings(const struct volume *v, struct volume_settings *out)
{
    *out = v->settings;
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
    /* An out-of-band change of a read-only image gave it a new mtime: its
     * map entries are under a new identity from now on. */
    vol_map_setup(v, map_shared(v));
    log_info(core, "volume %s: invalidated [%llu, +%llu)", v->name, (unsigned long long)offset,
             (unsigned long long)length);
    return 0;
}

void volume_conn_attach(struct volume *v, struct volume_conn *c)
{
    __atomic_fetch_add(&v->conns, 1, __ATOMIC_RELAXED);
    LOCK_GUARD(&v->conn_lock);
    c->next = v->conn_list;
    v->conn_list = c;
    /* The remover sets defunct before it walks the list under this lock:
     * a connection attached too late to be walked sees it here. */
    if (vol_defunct(v) && c->kick)
        c->kick(c->opaque);
}
void volume_conn_detach(struct volume *v, struct volume_conn *c)
{
    {
        LOCK_GUARD(&v->conn_lock);
        struct volume_conn **pp = &v->conn_list;
        while (*pp && *pp != c)
            pp = &(*pp)->next;
        if (*pp)
            *pp = c->next;
    }
    __atomic_fetch_sub(&v->conns, 1, __ATOMIC_RELAXED);
}
void volume_conn_kick_all(struct volume *v)
{
    LOCK_GUARD(&v->conn_lock);
    for (struct volume_conn *c = v->conn_list; c; c = c->next)
        if (c->kick)
            c->kick(c->opaque);
}
unsigned volume_connections(const struct volume *v)
{
    return __atomic_load_n(&v->conns, __ATOMIC_RELAXED);
}
bool volume_defunct(const struct volume *v)
{
    return vol_defunct(v);
}

void volume_count_error(struct volume *v)
{
    STAT_ADD(v->c.errors, 1);
}

/* ---- snapshots ---- */

void volume_snapshot(struct volume *v, struct volume_snapshot *out)
{
    memset(out, 0, sizeof *out);
#define X(n, k, u, h) out->n = STAT_LOAD(v->c.n);
    VOLUME_COUNTERS(X)
#undef X
    out->size_bytes = v->size;
    out->connections = volume_connections(v);
    out->enabled = volume_enabled(v);
    out->cached_blocks = dir_cells(v->dir) + dir_shared(v->dir);
    out->zero_blocks = dir_zero_cells(v->dir) + dir_shared_zeros(v->dir);
    out->remembered_blocks = dir_remembered(v->dir);
    out->hit_ratio = stat_ratio(out->read_hit_bytes, out->read_bytes);
    /* Signed: read-ahead can fetch more from the array than clients asked
     * for, and then the cache adds array traffic; that must show. */
    out->offload_ratio =
        out->read_bytes ? 1.0 - stat_ratio(out->backend_read_bytes, out->read_bytes) : 0;
    hist_snapshot(&v->lat_read_hit, &out->lat_read_hit);
    hist_snapshot(&v->lat_read_miss, &out->lat_read_miss);
    hist_snapshot(&v->lat_write, &out->lat_write);
}
