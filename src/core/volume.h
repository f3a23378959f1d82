/* Volume internals shared by the core's own files: the registry (engine.c)
 * opens and drops volumes, volume_ctl.c is their lifecycle and live
 * control, prefetch.c the background prefetch, volume.c the data path and
 * submit.c the request path. Front ends use engine.h and submit.h;
 * management engine.h. */
#ifndef SHOAL_CORE_VOLUME_H
#define SHOAL_CORE_VOLUME_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "common/gate.h"
#include "common/histogram.h"
#include "core/engine.h"
#include "core/mrc.h"
#include "core/partial.h"
#include "core/ra_budget.h"
#include "core/stats_list.h"
#include "core/tier.h"
#include "core/vol_fence.h"

struct backend;
struct dir;
struct dir_budget;
struct store;
struct tier;
struct workq;
struct vol_req;
struct vol_scratch;

struct vol_counters {
#define X(name, kind, unit, help) uint64_t name;
    VOLUME_COUNTERS(X)
#undef X
};

#define VOL_RA_STREAMS 16

struct volume {
    char name[256];
    struct backend *be;
    struct dir *dir;
    struct store *store;
    uint64_t size;
    uint64_t nblocks;
    bool readonly;
    uint32_t ra_blocks;                  /* miss read-ahead window in blocks (0: off), power of 2 */
    uint64_t ra_streams[VOL_RA_STREAMS]; /* atomics: where recent misses ended (volume.c) */
    unsigned ra_next;                    /* atomic: the next stream slot to reuse */
    struct ra_budget ra_budget;          /* what read-ahead may still fetch (core/ra_budget.h) */
    struct volume_settings settings;     /* as opened (fixed) */
    uint64_t partial_seen[PARTIAL_SEEN]; /* atomics: recent exact partial reads (core/partial.h) */
    struct tier *const *tiers;           /* the engine's, asked by key after the store */
    unsigned ntiers;
    /* The cluster's shared map (core/vol_map.h): the tier that keeps it
     * (atomic; NULL: this volume takes no part) and the identity. */
    struct tier *map_tier;
    struct tier_map_id map_id;
    int fenced;          /* atomic: why writes are fenced (core/vol_fence.h), 0: they are not */
    int settled;         /* atomic: flushed under a move's fence (volume_settle) */
    struct workq *wq;    /* the engine's worker pool, or NULL: run on the caller */
    int enabled;         /* atomic: acceleration on */
    int defunct;         /* atomic: removed with force */
    unsigned refs;       /* atomic */
    unsigned conns;      /* atomic */
    struct volume *next; /* registry list, under engine->lock */

    /* The attached connections, kicked by a forced remove (engine.h). */
    pthread_mutex_t conn_lock;
    struct volume_conn *conn_list;

    /* The write gate: writes, trims, zeroes and copies hold it shared
     * while they change the back end and the directory (from before the
     * back end call to its answer); a COMPARE AND WRITE holds it exclusive
     * across its read, compare and write, which makes it atomic against
     * them all, from every front end. Exclusive holders are preferred, so
     * a stream of writes cannot starve it. Reads never take it. A shared
     * hold may end on another thread (an asynchronous write: common/gate.h). */
    struct gate gate;

    /* Miss-ratio curves (core/mrc.h): the volume's own, and the engine's
     * for the whole cache. Either may be NULL (no memory). */
    struct mrc *mrc, *gmrc;

    struct vol_counters c; /* relaxed atomics */
    struct histogram lat_read_hit, lat_read_miss, lat_write;

    /* Asynchronous prefetch (management). */
    pthread_mutex_t pf_lock;
    struct prefetch_status pf;
    pthread_t pf_thread;
    bool pf_joinable;
    int pf_stop; /* atomic: volume_free asks the prefetch thread to stop */
};

/* What a volume shares with the others (the engine's). */
struct vol_env {
    struct store *store;
    struct dir_budget *budget; /* remembered blocks, all volumes; may be NULL */
    struct tier *const *tiers;
    unsigned ntiers;
    struct workq *wq;
    /* Miss-ratio curves: the policy and cache size each volume's curve
     * simulates, and the whole cache's curve. */
    const struct evict_ops *policy;
    uint64_t cache_blocks;
    struct mrc *mrc;
};

/* Each volume's curve: at most this many entries in its largest small
 * cache (about 150 KiB of memory a volume). */
#define VOLUME_MRC_ENTRIES 2048

/* Open a volume over an already opened back end (takes ownership of be,
 * closing it on failure). volume_open opens cfg->backend first. The
 * volume starts with one reference. */
int volume_open_backend(const struct vol_env *env, const struct volume_config *cfg,
                        struct backend *be, struct volume **out);
int volume_open(const struct vol_env *env, const struct volume_config *cfg, struct volume **out);
/* vol_write for a caller that holds v->gate exclusive (compare_copy.c). */
int vol_write_gate_held(struct volume *v, struct vol_req *r, struct vol_scratch *s);

/* Register a volume over an opened back end (embedding, tests). */
int engine_add_volume_backend(struct engine *e, const struct volume_config *cfg,
                              struct backend *be);

/* Background prefetch (prefetch.c): stop it and wait for its thread; the
 * last reference's volume_free calls it before anything goes away. */
void volume_prefetch_stop(struct volume *v);

/* Whether the cache serves the volume now: acceleration on, and not fenced
 * for a lost lease (whose reads go to the back end, core/vol_fence.h). */
static inline bool vol_enabled(const struct volume *v)
{
    return __atomic_load_n(&v->enabled, __ATOMIC_ACQUIRE) &&
           !(__atomic_load_n(&v->fenced, __ATOMIC_ACQUIRE) & VOL_FENCE_LEASE);
}

static inline bool vol_readonly(const struct volume *v)
{
    return __atomic_load_n(&v->readonly, __ATOMIC_ACQUIRE); /* a fence sets it */
}

static inline bool vol_defunct(const struct volume *v)
{
    return __atomic_load_n(&v->defunct, __ATOMIC_ACQUIRE);
}

static inline struct workq *vol_workq(const struct volume *v)
{
    return v->wq;
}

/* Whether v's misses may go out through the back end's asynchronous read
 * (volume_io.h): it has pread_async, and no pread_nowait (which serves
 * page-cache hits on the spot instead). */
static inline bool vol_reads_async(const struct volume *v)
{
    return v->be->ops->pread_async && !v->be->ops->pread_nowait;
}

#endif
