/* Tiers: places other than the local store that may hold a content, asked
 * by key (160 bits of its SHA-256, fingerprint.h) when a read misses RAM and
 * the directory remembers the block's key. Each kind is one `struct
 * tier_ops` (the cluster's memcached tier, the test tier); the engine keeps
 * them in order and the read path asks them after the local store (tier 0)
 * and before the back end.
 *
 * The miss path, per request (core/volume.c):
 *   local store by key -> tiers in order, one batched lookup each -> back end
 * and after the reply, what came from the back end is offered to every tier
 * (put).
 *
 * Contract of a tier (what the core relies on):
 *   - lookup is asynchronous: it may answer from its own threads. For each
 *     key it holds it calls tier_req_deliver (copying the block), then
 *     tier_req_done exactly once, unless cancelled first;
 *   - cancel: the core stopped waiting (the tier's timeout passed). When
 *     cancel returns, the tier never touches that request again;
 *   - a tier may lie or rot: every delivered block is checked against its
 *     key before use (a mismatch counts as corrupt and is a miss), so a
 *     tier can cost time, never correctness;
 *   - put and forget are best effort and must not block the caller for
 *     long (queue, or drop);
 *   - every op may run on many threads at once.
 *
 * Lock rules: tier_req.lock guards the request's results and state; a tier
 * takes it (through tier_req_deliver/done) and may hold its own locks while
 * doing so, so the core never calls a tier op while holding a request's
 * lock. */
#ifndef SHOAL_CORE_TIER_H
#define SHOAL_CORE_TIER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "core/block.h"
#include "core/fingerprint.h"

/* Keys per lookup (a request's remembered blocks beyond this go to the back
 * end). */
#define TIER_BATCH_MAX 256

struct tier;

/* One batched lookup. Lives in a worker's scratch and is reused. */
struct tier_req {
    /* set by the caller before tier_lookup */
    const struct fpkey *keys;
    uint8_t *const *bufs; /* n buffers of BLOCK_SIZE: the tier writes them */
    unsigned n;
    /* results: under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t found[TIER_BATCH_MAX / 64];
    int status;
    bool done;
    bool open;        /* accepting deliveries (false once done or cancelled) */
    unsigned corrupt; /* deliveries that did not match their key */
    /* the delivering thread's: the index of a block delivered but waiting
     * to be checked together with the next one, or -1 */
    int held;
};

void tier_req_init(struct tier_req *r);
void tier_req_destroy(struct tier_req *r);

/* Tier side: key i was found; its BLOCK_SIZE bytes are copied into bufs[i]
 * and checked there against the key, and i is marked found only if they
 * match (bufs[i] of a key not found may hold anything). The check (a
 * SHA-256) runs on the delivering thread as blocks arrive, outside the
 * request's lock, so it overlaps the network's delivery of the next ones
 * instead of adding up after the last (a 32-key batch spent ~85 us
 * checking after its multi-get); blocks are checked in pairs
 * (fpkey_verify2: two cost little more than one), so one waits in its
 * buffer for the next delivery or done. One request's deliveries and done
 * come from one thread at a time. */
void tier_req_deliver(struct tier_req *r, unsigned i, const void *block);
/* Tier side: the lookup is over (status 0, or a negative errno). */
void tier_req_done(struct tier_req *r, int status);

static inline bool tier_req_found(const struct tier_req *r, unsigned i)
{
    return bitmap_test(r->found, i);
}

/* The cluster's shared map of read-only volumes: block -> content key,
 * under the volume's cluster identity (core/vol_map.h), so that a node that
 * never read a gold image still finds its blocks in the tier by key. An
 * entry is a hint: the block it leads to is verified against the key like
 * any other, so a wrong or stale entry costs a lookup, never data. */
#define TIER_MAP_ID_SIZE 16
struct tier_map_id {
    uint8_t b[TIER_MAP_ID_SIZE];
};

struct tier_ops {
    const char *name;
    void (*lookup)(struct tier *t, struct tier_req *r);
    void (*cancel)(struct tier *t, struct tier_req *r);
    void (*put)(struct tier *t, const struct fpkey *key, const void *block);
    void (*forget)(struct tier *t, const struct fpkey *key);
    void (*close)(struct tier *t);
    /* Optional (NULL: the tier keeps no map). map_lookup: the keys of
     * blocks [first, first+n) (n <= TIER_BATCH_MAX) of the volume `id`
     * that the map knows, into keys[i] with bit i of found[] set; waits at
     * most the tier's timeout_ms, on the caller's thread. Returns how many
     * were found, or a negative errno (none). map_put: record that block
     * blk holds content `key`; queued, never blocks, may be dropped. */
    int (*map_lookup)(struct tier *t, const struct tier_map_id *id, uint64_t first, unsigned n,
                      struct fpkey *keys, uint64_t *found);
    void (*map_put)(struct tier *t, const struct tier_map_id *id, uint64_t blk,
                    const struct fpkey *key);
    /* Optional: false while the map cannot be used yet (the memcached
     * tier waits for the cluster's secret); NULL: always ready. */
    bool (*map_ready)(struct tier *t);
    /* Optional: wait until the puts and map puts queued before the call
     * were sent: 0 or -ETIMEDOUT (a volume handed to another node). */
    int (*flush)(struct tier *t, uint32_t timeout_ms);
};

/* Per-tier counters (relaxed atomics). */
struct tier_counters {
    uint64_t lookups;  /* batched lookups */
    uint64_t keys;     /* keys asked for */
    uint64_t hits;     /* blocks delivered and verified */
    uint64_t corrupt;  /* blocks delivered that did not match their key */
    uint64_t timeouts; /* lookups given up after timeout_ms */
    uint64_t errors;   /* lookups that failed */
    uint64_t puts;
    uint64_t map_lookups; /* map lookups (one per request at most) */
    uint64_t map_hits;    /* block keys the map gave */
    uint64_t map_puts;    /* block keys offered to the map */
};

struct tier {
    const struct tier_ops *ops;
    void *priv;
    char name[32];
    uint32_t timeout_ms; /* longest the read path waits for one lookup */
    struct tier_counters c;
};

/* Look r->keys up in t, waiting at most t->timeout_ms; then check every
 * delivered block against its key (clearing the found bit of a corrupt
 * one). Returns the number of usable blocks (tier_req_found), or -ETIMEDOUT
 * / a negative errno with none. Never a client error: callers treat
 * anything but a found block as a miss. */
int tier_lookup(struct tier *t, struct tier_req *r);

/* Offer content to a tier (after the reply). */
void tier_put(struct tier *t, const struct fpkey *key, const void *block);

void tier_close(struct tier *t);

/* The map ops through the counters; tier_map_lookup returns -ENOTSUP for a
 * tier without a map. */
static inline bool tier_has_map(struct tier *t)
{
    return t->ops->map_lookup && (!t->ops->map_ready || t->ops->map_ready(t));
}
int tier_map_lookup(struct tier *t, const struct tier_map_id *id, uint64_t first, unsigned n,
                    struct fpkey *keys, uint64_t *found);
void tier_map_put(struct tier *t, const struct tier_map_id *id, uint64_t blk,
                  const struct fpkey *key);

#endif
