/* Directory internals shared by dir.c (a volume's own cells) and
 * dir_share.c (blocks shared with a base volume): the layout, inline table
 * helpers, and what dir.c calls in dir_share.c. dir.c calls dir_share.c,
 * never the reverse (dir_share.c uses only what is defined here). See
 * dir.h for the model and the lock rules. */
#ifndef SHOAL_CORE_DIR_CELLS_H
#define SHOAL_CORE_DIR_CELLS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/dir_val.h"
#include "core/store.h"

struct dir_budget;

struct dir_cell {
    uint32_t key; /* 0 = empty */
    uint32_t idx;
    uint32_t gen;
};

/* A remembered block: its content's key, kept after the content left the
 * local store (24 bytes; see dir.h). */
struct dir_rcell {
    uint32_t key; /* 0 = empty */
    struct fpkey fp;
};

/* A group of a dependent directory whose blocks hold what the base's same
 * blocks hold: bit k of mask is the group's k-th block, bit 8+k says that
 * block is all zeros (counted apart, like DIR_ZERO cells). 8 bytes for 8
 * blocks, against 12 a block for cells of its own. */
struct dir_scell {
    uint32_t key; /* group key; 0 = empty */
    uint32_t mask;
};
#define SCELL_BITS  0xffu
#define SCELL_ZEROS 8

struct stripe {
    pthread_mutex_t lock;
    uint32_t seq;
    uint32_t count;
    uint32_t size;   /* cells in the table (0 when cells == NULL) */
    uint32_t recent; /* the latest changes: see stripe_bump */
    struct dir_cell *cells;
} __attribute__((aligned(64)));

/* Which blocks the latest changes of a stripe touched, so an install can
 * tell a change of its own block from a neighbour's (dir.h, the race
 * rule): `recent` is (tag << 8 | run): the last `run` bumps of seq all
 * changed blocks whose key has this 24-bit tag. A tag shared by two keys
 * only makes an install look raced (refused), never the reverse; run 0
 * (a range change, or more than 255 in a row) says nothing. */
#define RECENT_ALL 0u

static inline void stripe_bump(struct stripe *s, uint32_t key)
{
    uint32_t tag = key & 0xffffffu, run = s->recent & 0xffu;
    if (key == RECENT_ALL)
        s->recent = 0;
    else if (run && run < 0xffu && (s->recent >> 8) == tag)
        s->recent++;
    else
        s->recent = tag << 8 | 1u;
    s->seq++;
}

/* Did nothing change the block with this key since ticket? (Only the
 * latest run of changes is known: older ones count as changes.) */
static inline bool stripe_unchanged(const struct stripe *s, uint32_t ticket, uint32_t key)
{
    uint32_t since = s->seq - ticket;
    return since == 0 || (since <= (s->recent & 0xffu) && (s->recent >> 8) != (key & 0xffffffu));
}

/* A stripe's remembered table, under the stripe's lock. Kept apart from the
 * stripe (allocated with the first remembered block), so a directory that
 * never remembers pays 8 bytes for them. */
struct rtable {
    uint32_t count;
    uint32_t size;
    struct dir_rcell *cells;
};

/* A dependent's shared groups in one stripe. Guarded by the BASE's lock of
 * the same stripe (see dir.h, SHARING). */
struct stable {
    uint32_t count;
    uint32_t size;
    struct dir_scell *cells;
};

struct dir {
    struct store *store;
    struct dir_budget *budget;
    uint64_t nblocks;
    uint32_t nstripes;      /* a power of two, <= DIR_STRIPES */
    uint32_t sshift;        /* log2(nstripes) */
    uint64_t cells_total;   /* atomic */
    uint64_t zeros_total;   /* atomic */
    uint64_t table_bytes;   /* atomic, with the stripes */
    uint64_t rcells_total;  /* atomic */
    uint64_t rtable_bytes;  /* atomic, with the rtables array */
    struct rtable *rtables; /* nstripes, or NULL; set once under rt_lock */
    pthread_mutex_t rt_lock;
    uint32_t purge_cursor; /* next stripe whose remembered table a full budget drops */

    /* Sharing (dir_share.c). A dependent: base is set once by dir_share,
     * before the directory sees any I/O; stables[] is guarded by the
     * base's stripe locks. A base: deps[] is guarded by deps_lock, taken
     * (read) inside a stripe lock to walk it, (write) alone to change it;
     * ndeps is also read atomically to skip the lock when 0 (a dependent
     * being added has no shared block yet). */
    struct dir *base;
    struct stable *stables; /* nstripes, when base != NULL */
    uint64_t shared_total;  /* atomic: blocks shared with the base */
    uint64_t shared_zeros;  /* atomic: the all-zero ones among them */
    uint64_t stable_bytes;  /* atomic, with the stables array */
    pthread_rwlock_t deps_lock;
    struct dir **deps;
    unsigned ndeps, deps_cap;
    uint32_t users; /* atomic: 1 (its volume) + dependents; freed at 0 */

    struct stripe stripes[]; /* nstripes */
};

/* ---- keys ----
 * A block belongs to stripe (blk >> DIR_GROUP_SHIFT) & (nstripes - 1);
 * within it, its key is the rest of the block number, plus one (0 marks an
 * empty cell). A group's key is the same without the block's low bits. */

static inline uint32_t dir_si(const struct dir *d, uint64_t blk)
{
    return (uint32_t)((blk >> DIR_GROUP_SHIFT) & (d->nstripes - 1));
}

static inline uint32_t key_of(const struct dir *d, uint64_t blk)
{
    uint64_t g = blk >> DIR_GROUP_SHIFT;
    return (
        uint32_t)((((g >> d->sshift) << DIR_GROUP_SHIFT) | (blk & ((1u << DIR_GROUP_SHIFT) - 1))) +
                  1);
}

static inline uint64_t blk_of(const struct dir *d, uint32_t key, uint32_t stripe)
{
    uint64_t k = key - 1;
    uint64_t g = ((k >> DIR_GROUP_SHIFT) << d->sshift) | stripe;
    return (g << DIR_GROUP_SHIFT) | (k & ((1u << DIR_GROUP_SHIFT) - 1));
}

static inline uint32_t gkey_of(const struct dir *d, uint64_t blk)
{
    return (uint32_t)((blk >> DIR_GROUP_SHIFT >> d->sshift) + 1);
}

static inline uint64_t gfirst_of(const struct dir *d, uint32_t gkey, uint32_t stripe)
{
    return ((((uint64_t)gkey - 1) << d->sshift) | stripe) << DIR_GROUP_SHIFT;
}

/* Any table size works (no power of two needed, so tables grow by about
 * 1.4x rather than 2x and waste less): multiply-shift maps the mixed key
 * onto [0, size). */
static inline uint32_t home(uint32_t key, uint32_t size)
{
    return (uint32_t)(((uint64_t)(key * 2654435761u) * size) >> 32);
}

static inline uint32_t next_slot(uint32_t i, uint32_t size)
{
    return i + 1 == size ? 0 : i + 1;
}

static inline uint64_t cell_val(const struct dir_cell *c)
{
    return ((uint64_t)c->gen << 32) | c->idx;
}

static inline bool stale_locked(struct dir *d, const struct dir_cell *c)
{
    uint64_t v = cell_val(c);
    return v != DIR_ZERO && !store_ref_live(d->store, dir_ref(v));
}

/* ---- open addressing with linear probing ----
 *
 * Every table (local cells, remembered cells, shared groups) uses the same
 * code: cells of csize bytes whose first 4 bytes are the key (0 = empty).
 * The helpers are inline and called with constant sizes, so each table
 * gets its own specialised copy. */

static inline uint32_t *oa_key(void *cells, size_t csize, uint32_t i)
{
    return (uint32_t *)((char *)cells + (size_t)i * csize);
}

static inline void *oa_find(void *cells, uint32_t size, size_t csize, uint32_t key)
{
    if (!cells)
        return NULL;
    for (uint32_t i = home(key, size);; i = next_slot(i, size)) {
        uint32_t *k = oa_key(cells, csize, i);
        if (*k == key)
            return k;
        if (*k == 0)
            return NULL;
    }
}

/* Backward-shift deletion of cell i keeps probe chains intact without
 * tombstones. */
static inline void oa_remove(void *cells, uint32_t size, size_t csize, uint32_t i)
{
    for (;;) {
        *oa_key(cells, csize, i) = 0;
        uint32_t j = i;
        for (;;) {
            j = next_slot(j, size);
            uint32_t kj = *oa_key(cells, csize, j);
            if (kj == 0)
                return;
            uint32_t h = home(kj, size);
            /* Move j back to i if its home is not in (i, j] cyclically. */
            if (i <= j ? (h <= i || h > j) : (h <= i && h > j))
                break;
        }
        memcpy(oa_key(cells, csize, i), oa_key(cells, csize, j), csize);
        i = j;
    }
}

static inline void oa_place(void *cells, uint32_t size, size_t csize, const void *cell)
{
    uint32_t key = *(const uint32_t *)cell;
    for (uint32_t i = home(key, size);; i = next_slot(i, size)) {
        if (*oa_key(cells, csize, i) == 0) {
            memcpy(oa_key(cells, csize, i), cell, csize);
            return;
        }
    }
}

static inline struct dir_cell *find_locked(struct stripe *s, uint32_t key)
{
    return oa_find(s->cells, s->size, sizeof *s->cells, key);
}

static inline struct rtable *rtables_get(struct dir *d)
{
    return __atomic_load_n(&d->rtables, __ATOMIC_ACQUIRE);
}

static inline struct dir_rcell *rfind_locked(struct dir *d, uint32_t si, uint32_t key)
{
    struct rtable *rt = rtables_get(d);
    return rt ? oa_find(rt[si].cells, rt[si].size, sizeof *rt[si].cells, key) : NULL;
}

/* ---- sharing (dir_share.c) ----
 * `_locked`: the caller holds the base's lock of stripe si (for a base's
 * own calls, that is its own stripe lock). */

/* Is blk of dependent d shared with its base? */
bool share_test_locked(struct dir *d, uint32_t si, uint64_t blk);
/* Mark blk shared, holding zeros or not (false: no memory; the caller
 * keeps a cell of its own). */
bool share_set_locked(struct dir *d, uint32_t si, uint64_t blk, bool zero);
/* Unshare blocks [first, end) of stripe si of dependent d. */
void share_clear_locked(struct dir *d, uint32_t si, uint64_t first, uint64_t end);
/* The same for every dependent of base b (b's blocks changed; takes
 * deps_lock). */
void share_clear_deps_locked(struct dir *b, uint32_t si, uint64_t first, uint64_t end);
/* Dependent d: unshare blocks whose base knows nothing of them any more
 * (no cell, no remembered key), so shared groups stay bounded by what the
 * base caches and remembers; shrink the tables. */
void share_purge(struct dir *d);
/* Dependent d is going away: leave the base. */
void share_detach(struct dir *d);
/* Base b is going away with dependents left: unshare everything (each
 * of its stripe locks is taken here in turn). */
void share_clear_all_deps(struct dir *b);
/* Free d once its last user is gone (its volume, its dependents). */
void dir_release(struct dir *d);

#endif
