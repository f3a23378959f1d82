/* Volume internals shared by the core's own files (engine.c, volume.c,
 * volume_ctl.c). Front ends and management use engine.h and volume_io.h. */
#ifndef SHOAL_CORE_VOLUME_H
#define SHOAL_CORE_VOLUME_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/histogram.h"
#include "core/engine.h"
#include "core/stats_list.h"

struct dir;
struct store;
struct backend;

struct vol_counters {
#define X(name, kind, unit, help) uint64_t name;
    VOLUME_COUNTERS(X)
#undef X
};

struct volume {
    char name[256];
    struct engine *engine;
    struct backend *be;
    struct dir *dir;
    struct store *store;
    uint64_t size;
    uint64_t nblocks;
    bool readonly;
    uint32_t ra_blocks;        /* miss read-ahead window in blocks (0: off), power of 2 */
    struct tier *const *tiers; /* the engine's, asked by key after the store */
    unsigned ntiers;
    int enabled;         /* atomic: acceleration on */
    int defunct;         /* atomic: removed with force */
    unsigned refs;       /* atomic */
    unsigned conns;      /* atomic */
    struct volume *next; /* registry list, under engine->lock */

    struct vol_counters c; /* relaxed atomics */
    struct histogram lat_read_hit, lat_read_miss, lat_write;

    /* Asynchronous prefetch (management). */
    pthread_mutex_t pf_lock;
    struct prefetch_status pf;
    pthread_t pf_thread;
    bool pf_joinable;
    int pf_stop; /* atomic: volume_free asks the prefetch thread to stop */
};

/* Open a volume over an already opened back end (takes ownership of be,
 * closing it on failure). volume_open opens cfg->backend first. */
int volume_open_backend(struct engine *e, struct store *st, const struct volume_config *cfg,
                        struct backend *be, struct volume **out);
int volume_open(struct engine *e, struct store *st, const struct volume_config *cfg,
                struct volume **out);
/* Register a volume over an opened back end (embedding, tests). */
int engine_add_volume_backend(struct engine *e, const struct volume_config *cfg,
                              struct backend *be);
/* Called when the last reference goes. */
void volume_free(struct volume *v);

#endif
