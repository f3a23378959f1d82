/* A thread's scratch for the data path (core-internal: volume.c and
 * vol_key.c): the race tickets and per-block bookkeeping of one request,
 * too large to live in the request. Every thread that runs requests owns
 * one (submit.c keeps it per thread) and reuses it; vol_req_update releases
 * it for the next request (volume_io.h). */
#ifndef SHOAL_CORE_SCRATCH_H
#define SHOAL_CORE_SCRATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/util.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/tier.h"
#include "core/volume_io.h"

/* Largest span a read or write may cover: VOL_MAX_IO plus the two partial
 * blocks at its ends. The per-block bookkeeping (todo[]) is sized for it;
 * trims and zeroes longer than that take the range path (change_range in
 * volume.c), which needs no per-block state. */
#define SPAN_BLOCKS_MAX ((VOL_MAX_IO >> BLOCK_SHIFT) + 2)
#define PREFETCH_CHUNK  (1u << 20)
#define BITMAP_WORDS(n) DIV_ROUND_UP((n), 64)

/* A block a read got by its key (vol_key.c): from the local store (a
 * reference taken, to install) or from a tier (data in the request buffer,
 * verified against the key). */
struct vol_keyed {
    uint32_t pos;    /* block index in the request */
    uint64_t ref;    /* store reference (dir_val) held, or 0: from a tier */
    struct fpkey fp; /* its key */
};

struct vol_scratch {
    struct dir_tickets tk;
    uint64_t todo[BITMAP_WORDS(SPAN_BLOCKS_MAX)];  /* blocks to fetch / install in finish */
    uint64_t keyed[BITMAP_WORDS(SPAN_BLOCKS_MAX)]; /* misses the directory knows a key for */
    /* A write's blocks: what their old contents' policy counted
     * (store_unref_heat at begin), handed to the new contents in finish. */
    uint8_t heat[SPAN_BLOCKS_MAX];
    uint8_t tail[BLOCK_SIZE]; /* zero-padded last block */
    /* A read's edge blocks read exactly, not cached (core/partial.h):
     * its first block (head) and its last (tail), when partly covered and
     * missed. Never with read-ahead. */
    bool exact_head, exact_tail;
    /* Read-ahead (see ra_plan): when set, todo is relative to ra_first
     * and finish installs from ra_buf instead of the request buffer. The
     * window's buffer comes from the buffer pool for one read (ra_plan to
     * finish_read): kept per scratch, it stayed with every thread that
     * ever read ahead, uncounted (a soak's RSS grew by 1 MiB a thread). */
    bool ra_active;
    /* An asynchronous miss (volume_io.h): fetch_defer makes
     * the fetch only note its one range here, which vol_read then starts
     * with the back end's pread_async; this scratch stays the read's until
     * its update. */
    bool fetch_defer;
    uint8_t *af_dst;
    uint64_t af_off;
    uint32_t af_len;
    void *ra_buf; /* ra_nb blocks */
    uint64_t ra_first;
    uint32_t ra_nb;
    uint32_t ra_paid;  /* neighbours paid from the budget, back if not fetched */
    unsigned ra_class; /* the window size class that paid (core/ra_budget.h) */
    /* Blocks served by key, installed in finish (vol_key.c): kd_small,
     * or, once a read longer than TIER_BATCH_MAX blocks had keys, room
     * for SPAN_BLOCKS_MAX allocated then (kd_cap). */
    unsigned nkeyed, kd_cap;
    struct vol_keyed *kd;
    struct vol_keyed kd_small[TIER_BATCH_MAX];
    /* One tier lookup's batch. */
    struct tier_req treq;
    struct fpkey tkeys[TIER_BATCH_MAX];
    uint8_t *tbufs[TIER_BATCH_MAX];
    uint32_t tkd[TIER_BATCH_MAX]; /* index in kd[] of each batch entry */
    /* Keys of the request's first TIER_BATCH_MAX blocks, from the
     * directory or the cluster's map (vol_key.c), valid where `haskey`. */
    struct fpkey bkeys[TIER_BATCH_MAX];
    uint64_t haskey[TIER_BATCH_MAX / 64];
    uint64_t mapfound[TIER_BATCH_MAX / 64];
    /* A copy (vol_copy): the source blocks' directory values, by block of
     * the write, so finish can share the source's content instead of
     * hashing the data again (allocated on first use). */
    bool copy_active;
    uint64_t *copy_vals;
};

static inline void bits_clear(uint64_t *m, uint32_t n)
{
    memset(m, 0, BITMAP_WORDS(n) * sizeof(uint64_t));
}

/* todo index of request block i (read-ahead makes todo window-relative). */
static inline uint32_t todo_pos(const struct vol_scratch *s, uint64_t first, uint32_t i)
{
    return s->ra_active ? (uint32_t)(first - s->ra_first) + i : i;
}

#endif
