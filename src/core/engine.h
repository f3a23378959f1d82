/* The engine: one content store shared by all volumes, the tiers, the
 * worker pool, and the registry of volumes (name -> volume). Front ends find volumes here;
 * management adds, removes, enables, disables, invalidates and resizes through here.
 *
 * Lock rules: the registry is guarded by engine->lock (a rwlock: lookups take
 * it shared, add/remove exclusive). Volumes are refcounted: a lookup returns
 * a reference the caller drops with volume_put(); a removed volume stays
 * alive until its last connection drops it. No I/O path takes engine->lock. */
#ifndef SHOAL_CORE_ENGINE_H
#define SHOAL_CORE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "common/histogram.h"
#include "common/stats.h"
#include "core/mrc.h"
#include "core/stats_list.h"

struct engine;
struct volume;
struct store;

struct tier;
struct tier_map_id;

struct engine_config {
    uint64_t cache_bytes; /* --cache-size */
    const char *policy;   /* eviction policy name (NULL: evict_find's default) */
    /* Blocks whose content left RAM that the directories may remember by
     * key, all volumes together (0: ENGINE_REMEMBER_PER_BLOCK per cache
     * block; each costs about 32 bytes). */
    uint64_t remember_blocks;
    /* Tiers asked by key after the local store, in order (the engine takes
     * ownership and closes them). */
    struct tier *const *tiers;
    unsigned ntiers;
    /* The worker pool for requests that may block on a back end or a tier
     * (core/submit.h): started with `workers` threads, growing up to
     * max_workers (0: 8 x workers) while requests queue. 0 workers: every
     * request runs on the thread that submits it (tests, embedding). */
    unsigned workers, max_workers;
};

#define ENGINE_REMEMBER_PER_BLOCK 4

int engine_create(const struct engine_config *cfg, struct engine **out);
void engine_destroy(struct engine *e); /* all volumes must be removed or unreferenced */

struct store *engine_store(struct engine *e);

/* Volume configuration (command line NAME=BACKING, config [volume NAME], API). */
struct volume_config {
    const char *name;
    struct backend_params backend;
    bool readonly; /* export read-only */
    bool disabled; /* start in pass-through */
    /* Miss read-ahead in bytes (see volume.h): 0 = the default for the back
     * end (VOL_READAHEAD_REMOTE over the network, off for local files and
     * devices), -1 = off. */
    int32_t readahead;
    /* A volume handed over by another node (core/vol_move.h): its
     * directory's keys, published under this map identity, are loaded as
     * remembered blocks before the volume is registered. NULL: none. */
    const struct tier_map_id *import_map;
};

#define VOL_READAHEAD_REMOTE (64 * 1024)
#define VOL_READAHEAD_MAX    (256 * 1024)

/* Validate a volume name: 1..255 bytes of [A-Za-z0-9._-], not starting with '.'. */
bool volume_name_valid(const char *name);

/* Open the back end and register. -EEXIST if the name is taken, -EINVAL for a
 * bad name, or the back end's error. */
int engine_add_volume(struct engine *e, const struct volume_config *cfg);
/* Unregister. -ENOENT; -EBUSY when clients are connected and !force (with
 * force, connected clients get ESHUTDOWN on further requests and are dropped). */
int engine_remove_volume(struct engine *e, const char *name, bool force);

/* Reference to a volume by name ("" = the first volume added), or NULL. */
struct volume *engine_get_volume(struct engine *e, const char *name);
void volume_get(struct volume *v);
void volume_put(struct volume *v);

/* Call fn for each registered volume (holding a reference during the call,
 * not the registry lock). Stops when fn returns non-zero and returns it. */
int engine_for_each_volume(struct engine *e, int (*fn)(struct volume *v, void *opaque),
                           void *opaque);
unsigned engine_volume_count(struct engine *e);

/* Live control. A size under one block or over
 * engine_cache_max_bytes() is -EINVAL. */
int engine_resize_cache(struct engine *e, uint64_t bytes);
/* The most the cache can grow to live: the machine's RAM (or the size it
 * was started with, if larger). */
uint64_t engine_cache_max_bytes(struct engine *e);

/* Miss-ratio curves (core/mrc.h): the whole cache's and one volume's
 * (zeroed when there is none). */
#define ENGINE_MRC_ENTRIES 32768 /* the whole cache's curve: about 2.6 MiB */
void engine_mrc(struct engine *e, struct mrc_curve *out);
void volume_mrc(struct volume *v, struct mrc_curve *out);

/* ---- volume accessors ---- */
const char *volume_name(const struct volume *v);
uint64_t volume_size(const struct volume *v);
bool volume_readonly(const struct volume *v);
bool volume_enabled(const struct volume *v);
/* Block size constraints for front ends to advertise and enforce: min is
 * the smallest I/O unit the back end accepts (1: any), preferred the size
 * that spares read-modify-write (the cache block, or the back end's I/O
 * unit if larger: backend_io_align), max the largest read or write
 * (VOL_MAX_IO). */
struct vol_block_limits {
    uint32_t min, preferred, max;
};
void volume_block_limits(const struct volume *v, struct vol_block_limits *out);
/* The back end's spec as given (a path or URI): what a node that takes
 * the volume over opens. */
const char *volume_backing_spec(const struct volume *v);
/* Human description of the back end ("file /var/lib/x.img", "nbd nbd://h/e"). */
void volume_describe_backend(const struct volume *v, char *buf, size_t len);
/* The settings the volume was opened with beyond its name and back end
 * spec, as a node that takes it over applies them (daemon/move.c) and the
 * API shows them; readahead_bytes is the window in use (0: off). */
struct volume_settings {
    int32_t readahead; /* as configured: 0 the back end's default, -1 off, else bytes */
    uint32_t readahead_bytes;
    bool direct;
    unsigned conns;
    uint32_t connect_timeout_ms;
};
void volume_get_settings(const struct volume *v, struct volume_settings *out);

/* Acceleration on/off. Disabling drops the volume's cached blocks and
 * serves every request from the back end; clients stay connected. */
int volume_set_enabled(struct volume *v, bool on);
/* Forget cached blocks in [offset, offset+length) (length 0 = to the end),
 * after an out-of-band change to the back end. Safe against in-flight reads:
 * a read that fetched old data before the invalidate will not cache it. */
int volume_invalidate(struct volume *v, uint64_t offset, uint64_t length);

/* Prefetch progress (shared by NBD_CMD_CACHE and the management prefetch). */
struct prefetch_status {
    bool running;
    uint64_t offset, length; /* range being prefetched */
    uint64_t done_bytes;
    int error; /* last error (negative errno) or 0; -ECANCELED: the volume was
                * disabled while it ran, so nothing (more) was cached */
};
/* Start an asynchronous prefetch of a range into RAM; -EBUSY if one runs. */
int volume_prefetch_start(struct volume *v, uint64_t offset, uint64_t length);
void volume_prefetch_status(struct volume *v, struct prefetch_status *out);

/* Connection accounting (front ends call these). A connection registers
 * how to make it let the volume go: when the volume is removed with force,
 * kick(opaque) is called (on the remover's thread, under the volume's
 * connection lock, so it must only poke, e.g. shutdown(fd, SHUT_RD)) and
 * the connection detaches once what it was sent is answered, even if its
 * client sends nothing more: an idle client must not keep a removed volume
 * and its image open. An attach after the removal is kicked at once. kick
 * may be NULL for a connection that notices the removal by itself soon
 * enough (the NBD front end's reader checks once a second, and keeps its
 * client connected, frontend/nbd/transmit.h). */
struct volume_conn {
    void (*kick)(void *opaque);
    void *opaque;
    struct volume_conn *next; /* the volume's list */
};
void volume_conn_attach(struct volume *v, struct volume_conn *c);
void volume_conn_detach(struct volume *v, struct volume_conn *c);
/* Kick every attached connection (engine_remove_volume with force). */
void volume_conn_kick_all(struct volume *v);
unsigned volume_connections(const struct volume *v);
/* True once the volume was removed with force: front ends stop serving it. */
bool volume_defunct(const struct volume *v);
/* Whether a move flushed v's back end under its write fence
 * (volume_settle, core/vol_fence.h) and no write ran since: a client of the
 * old side (a live migration's source QEMU) may then be told that its
 * flushes succeeded after the volume is gone. */
bool volume_settled(const struct volume *v);
/* Count an error reply against the volume (protocol-level refusals too). */
void volume_count_error(struct volume *v);

/* ---- statistics: snapshots rendered by mgmt from the lists ---- */
/* clang-format off: the X-macro lists end without ';', which it misreads */
struct volume_snapshot {
#define X(name, kind, unit, help) uint64_t name;
    VOLUME_COUNTERS(X)
    VOLUME_GAUGES(X)
#undef X
#define X(name, kind, unit, help) double name;
    VOLUME_RATIOS(X)
#undef X
    struct histogram_snap lat_read_hit, lat_read_miss, lat_write;
};
/* clang-format on */

struct cache_snapshot {
#define X(name, kind, unit, help) uint64_t name;
    CACHE_GAUGES(X)
#undef X
#define X(name, kind, unit, help) double name;
    CACHE_SECONDS(X) CACHE_RATIOS(X)
#undef X
};

void volume_snapshot(struct volume *v, struct volume_snapshot *out);
void cache_snapshot(struct engine *e, struct cache_snapshot *out);

/* Descriptor tables generated from the lists (for renderers). */
extern const struct stat_desc volume_stat_descs[];
extern const unsigned volume_stat_count;
extern const struct stat_desc cache_stat_descs[];
extern const unsigned cache_stat_count;

#endif
