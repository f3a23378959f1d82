/* Per-volume directory implementation; see dir.h for the model, the race
 * rule and the lock rules. */
#include "core/dir.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "core/store.h"

#define MIN_CELLS 8u

struct dir_cell {
    uint32_t key; /* 0 = empty */
    uint32_t idx;
    uint32_t gen;
};

struct stripe {
    pthread_mutex_t lock;
    uint32_t seq;
    uint32_t count;
    uint32_t size; /* cells in the table (0 when cells == NULL) */
    uint32_t zeros;
    struct dir_cell *cells;
} __attribute__((aligned(64)));

struct dir {
    struct store *store;
    uint64_t nblocks;
    uint64_t cells_total; /* atomic */
    uint64_t zeros_total; /* atomic */
    uint64_t table_bytes; /* atomic */
    struct stripe stripes[DIR_STRIPES];
};

/* ---- keys ---- */

static inline uint32_t key_of(uint64_t blk)
{
    uint64_t g = blk >> DIR_GROUP_SHIFT;
    return (uint32_t)((((g >> 10) << DIR_GROUP_SHIFT) | (blk & ((1u << DIR_GROUP_SHIFT) - 1))) + 1);
}

static inline uint64_t blk_of(uint32_t key, uint32_t stripe)
{
    uint64_t k = key - 1;
    uint64_t g = ((k >> DIR_GROUP_SHIFT) << 10) | stripe;
    return (g << DIR_GROUP_SHIFT) | (k & ((1u << DIR_GROUP_SHIFT) - 1));
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

/* ---- open addressing with linear probing ---- */

static struct dir_cell *find_locked(struct stripe *s, uint32_t key)
{
    if (!s->cells)
        return NULL;
    for (uint32_t i = home(key, s->size);; i = next_slot(i, s->size)) {
        struct dir_cell *c = &s->cells[i];
        if (c->key == key)
            return c;
        if (c->key == 0)
            return NULL;
    }
}

static void account(struct dir *d, struct stripe *s, const struct dir_cell *c, int sign)
{
    __atomic_fetch_add(&d->cells_total, (uint64_t)(int64_t)sign, __ATOMIC_RELAXED);
    if (cell_val(c) == DIR_ZERO) {
        s->zeros += (uint32_t)sign;
        __atomic_fetch_add(&d->zeros_total, (uint64_t)(int64_t)sign, __ATOMIC_RELAXED);
    }
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void remove_cell_locked(struct dir *d, struct stripe *s, struct dir_cell *c)
{
    account(d, s, c, -1);
    s->count--;
    uint32_t i = (uint32_t)(c - s->cells);
    for (;;) {
        s->cells[i].key = 0;
        uint32_t j = i;
        for (;;) {
            j = next_slot(j, s->size);
            if (s->cells[j].key == 0)
                return;
            uint32_t h = home(s->cells[j].key, s->size);
            /* Move j back to i if its home is not in (i, j] cyclically. */
            if (i <= j ? (h <= i || h > j) : (h <= i && h > j))
                break;
        }
        s->cells[i] = s->cells[j];
        i = j;
    }
}

static void place_locked(struct stripe *s, const struct dir_cell *c)
{
    for (uint32_t i = home(c->key, s->size);; i = next_slot(i, s->size)) {
        if (s->cells[i].key == 0) {
            s->cells[i] = *c;
            return;
        }
    }
}

/* Rebuild into a table of `n` cells, dropping stale cells on the way. */
static int rebuild_locked(struct dir *d, struct stripe *s, uint32_t n)
{
    struct dir_cell *nc = calloc(n, sizeof *nc);
    if (!nc)
        return -ENOMEM;
    struct dir_cell *old = s->cells;
    uint32_t old_n = old ? s->size : 0;
    s->cells = nc;
    s->size = n;
    s->count = 0;
    for (uint32_t i = 0; i < old_n; i++) {
        if (old[i].key == 0)
            continue;
        if (stale_locked(d, &old[i])) {
            account(d, s, &old[i], -1);
            continue;
        }
        place_locked(s, &old[i]);
        s->count++;
    }
    free(old);
    __atomic_fetch_add(&d->table_bytes, ((uint64_t)n - old_n) * sizeof *nc, __ATOMIC_RELAXED);
    return 0;
}

static uint32_t count_live_locked(struct dir *d, struct stripe *s)
{
    uint32_t live = 0;
    for (uint32_t i = 0; s->cells && i < s->size; i++)
        if (s->cells[i].key && !stale_locked(d, &s->cells[i]))
            live++;
    return live;
}

/* A table for n cells at 60% load: room to grow to the 85% limit (about
 * 1.4x) before the next rebuild, so rebuilds stay amortised O(1). */
static uint32_t fit_size(uint32_t n)
{
    uint64_t size = ((uint64_t)n * 10 + 5) / 6;
    return size < MIN_CELLS ? MIN_CELLS : (uint32_t)MIN(size, UINT32_MAX);
}

/* Make room for one more cell: grow at 85% load, after dropping stale
 * cells. Cells are 12 bytes in one array, so the longer linear probes of a
 * fuller table stay within a few cache lines; the load range (40-85%) keeps
 * the directory's share of the per-block metadata near 20 bytes. */
static int reserve_locked(struct dir *d, struct stripe *s)
{
    if (!s->cells)
        return rebuild_locked(d, s, MIN_CELLS);
    uint32_t size = s->size;
    if ((uint64_t)(s->count + 1) * 20 <= (uint64_t)size * 17)
        return 0;
    uint32_t live = count_live_locked(d, s);
    return rebuild_locked(d, s, fit_size(live + 1));
}

static void maybe_shrink_locked(struct dir *d, struct stripe *s)
{
    if (!s->cells)
        return;
    uint32_t size = s->size;
    if (size > 64 && s->count * 8 < size)
        (void)rebuild_locked(d, s, size / 2);
}

/* Remove blk's cell; return its value (0 if none). */
static uint64_t clear_locked(struct dir *d, struct stripe *s, uint32_t key)
{
    struct dir_cell *c = find_locked(s, key);
    if (!c)
        return 0;
    uint64_t v = cell_val(c);
    remove_cell_locked(d, s, c);
    return v;
}

/* ---- public API ---- */

int dir_create(struct store *st, uint64_t nblocks, struct dir **out)
{
    if (nblocks > DIR_MAX_BLOCKS)
        return -EFBIG;
    struct dir *d = aligned_alloc(64, sizeof *d);
    if (!d)
        return -ENOMEM;
    memset(d, 0, sizeof *d);
    d->store = st;
    d->nblocks = nblocks;
    for (uint32_t i = 0; i < DIR_STRIPES; i++)
        pthread_mutex_init(&d->stripes[i].lock, NULL);
    *out = d;
    return 0;
}

void dir_destroy(struct dir *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < DIR_STRIPES; i++) {
        struct stripe *s = &d->stripes[i];
        for (uint32_t j = 0; s->cells && j < s->size; j++) {
            uint64_t v = cell_val(&s->cells[j]);
            if (s->cells[j].key && dir_val_is_ref(v))
                store_unref(d->store, dir_ref(v));
        }
        free(s->cells);
        pthread_mutex_destroy(&s->lock);
    }
    free(d);
}

uint64_t dir_lookup(struct dir *d, uint64_t blk)
{
    struct stripe *s = &d->stripes[dir_stripe_of(blk)];
    LOCK_GUARD(&s->lock);
    struct dir_cell *c = find_locked(s, key_of(blk));
    return c ? cell_val(c) : 0;
}

void dir_lookup_range(struct dir *d, uint64_t first, uint32_t n, uint64_t *out)
{
    const uint64_t gmask = (1u << DIR_GROUP_SHIFT) - 1;
    for (uint32_t i = 0; i < n;) {
        uint64_t blk = first + i;
        uint32_t run = (uint32_t)MIN((uint64_t)(n - i), gmask + 1 - (blk & gmask));
        struct stripe *s = &d->stripes[dir_stripe_of(blk)];
        LOCK_GUARD(&s->lock);
        for (uint32_t k = 0; k < run; k++) {
            struct dir_cell *c = find_locked(s, key_of(blk + k));
            out[i + k] = c ? cell_val(c) : 0;
        }
        i += run;
    }
}

void dir_drop_stale(struct dir *d, uint64_t blk, uint64_t val)
{
    struct stripe *s = &d->stripes[dir_stripe_of(blk)];
    LOCK_GUARD(&s->lock);
    struct dir_cell *c = find_locked(s, key_of(blk));
    if (c && cell_val(c) == val)
        remove_cell_locked(d, s, c);
}

void dir_tickets_reset(struct dir_tickets *tk)
{
    memset(tk->touched, 0, sizeof tk->touched);
    memset(tk->dirty, 0, sizeof tk->dirty);
}

static inline bool bit_test(const uint64_t *m, uint32_t i)
{
    return (m[i / 64] >> (i % 64)) & 1;
}
static inline void bit_set(uint64_t *m, uint32_t i)
{
    m[i / 64] |= 1ull << (i % 64);
}

void dir_read_ticket(struct dir *d, uint64_t blk, struct dir_tickets *tk)
{
    uint32_t si = dir_stripe_of(blk);
    struct stripe *s = &d->stripes[si];
    LOCK_GUARD(&s->lock);
    /* A read's later ticket is taken before any fetch starts, so a change
     * between two of its tickets is harmless: just keep the newest. */
    tk->t[si] = s->seq;
    bit_set(tk->touched, si);
}

uint64_t dir_write_begin(struct dir *d, uint64_t blk, struct dir_tickets *tk)
{
    uint32_t si = dir_stripe_of(blk);
    struct stripe *s = &d->stripes[si];
    LOCK_GUARD(&s->lock);
    uint64_t old = clear_locked(d, s, key_of(blk));
    if (bit_test(tk->touched, si) && tk->t[si] != s->seq)
        bit_set(tk->dirty, si);
    s->seq++;
    tk->t[si] = s->seq;
    bit_set(tk->touched, si);
    return old;
}

uint64_t dir_write_end(struct dir *d, uint64_t blk, struct dir_tickets *tk, bool *clean)
{
    uint32_t si = dir_stripe_of(blk);
    struct stripe *s = &d->stripes[si];
    LOCK_GUARD(&s->lock);
    bool ok = bit_test(tk->touched, si) && !bit_test(tk->dirty, si) && tk->t[si] == s->seq;
    uint64_t old = clear_locked(d, s, key_of(blk));
    s->seq++;
    if (ok)
        tk->t[si] = s->seq;
    else
        bit_set(tk->dirty, si);
    if (clean)
        *clean = ok;
    maybe_shrink_locked(d, s);
    return old;
}

bool dir_install(struct dir *d, uint64_t blk, struct dir_tickets *tk, uint64_t val)
{
    uint32_t si = dir_stripe_of(blk);
    struct stripe *s = &d->stripes[si];
    if (!bit_test(tk->touched, si) || bit_test(tk->dirty, si))
        return false;
    LOCK_GUARD(&s->lock);
    if (tk->t[si] != s->seq)
        return false;
    uint32_t key = key_of(blk);
    struct dir_cell *c = find_locked(s, key);
    if (c) {
        if (!stale_locked(d, c))
            return false; /* someone installed the same block meanwhile: keep it */
        remove_cell_locked(d, s, c);
    }
    if (reserve_locked(d, s) < 0)
        return false;
    struct dir_cell nc = {.key = key, .idx = (uint32_t)val, .gen = (uint32_t)(val >> 32)};
    place_locked(s, &nc);
    s->count++;
    account(d, s, &nc, +1);
    return true;
}

/* Small batch of references to drop once the stripe lock is released. */
#define DROP_BATCH 64

void dir_invalidate(struct dir *d, uint64_t first, uint64_t n)
{
    if (n == 0 || first >= d->nblocks)
        return;
    if (n > d->nblocks - first)
        n = d->nblocks - first;
    uint64_t end = first + n;

    if (n <= (uint64_t)DIR_STRIPES << DIR_GROUP_SHIFT) {
        /* Small range: visit the blocks. */
        for (uint64_t b = first; b < end; b++) {
            struct stripe *s = &d->stripes[dir_stripe_of(b)];
            uint64_t old;
            {
                LOCK_GUARD(&s->lock);
                old = clear_locked(d, s, key_of(b));
                s->seq++;
            }
            if (dir_val_is_ref(old))
                store_unref(d->store, dir_ref(old));
        }
        return;
    }
    /* Large range: walk every stripe's table once. */
    for (uint32_t si = 0; si < DIR_STRIPES; si++) {
        struct stripe *s = &d->stripes[si];
        uint64_t drop[DROP_BATCH];
        unsigned ndrop;
        bool again;
        do {
            ndrop = 0;
            again = false;
            {
                LOCK_GUARD(&s->lock);
                s->seq++;
                for (uint32_t i = 0; s->cells && i < s->size;) {
                    struct dir_cell *c = &s->cells[i];
                    uint64_t b = c->key ? blk_of(c->key, si) : UINT64_MAX;
                    if (c->key == 0 || b < first || b >= end) {
                        i++;
                        continue;
                    }
                    if (ndrop == DROP_BATCH) {
                        again = true;
                        break;
                    }
                    uint64_t v = cell_val(c);
                    if (dir_val_is_ref(v))
                        drop[ndrop++] = v;
                    /* Backward shift may pull a later cell into slot i:
                     * look at i again. Cells wrapped from the table's start
                     * are revisited on the next pass if needed. */
                    remove_cell_locked(d, s, c);
                }
                if (!again)
                    maybe_shrink_locked(d, s);
            }
            for (unsigned k = 0; k < ndrop; k++)
                store_unref(d->store, dir_ref(drop[k]));
        } while (again);
        /* A cell moved from index 0.. to the end by a wrapped shift could be
         * skipped once; a final check pass catches it. */
        {
            LOCK_GUARD(&s->lock);
            for (uint32_t i = 0; s->cells && i < s->size; i++) {
                struct dir_cell *c = &s->cells[i];
                if (c->key) {
                    uint64_t b = blk_of(c->key, si);
                    if (b >= first && b < end)
                        again = true;
                }
            }
        }
        if (again)
            si--; /* redo this stripe */
    }
}

void dir_purge(struct dir *d)
{
    for (uint32_t si = 0; si < DIR_STRIPES; si++) {
        struct stripe *s = &d->stripes[si];
        LOCK_GUARD(&s->lock);
        if (!s->cells)
            continue;
        uint32_t live = count_live_locked(d, s);
        /* Rebuild to drop stale cells, or a table far too big for what
         * it holds; otherwise leave it. */
        if (live == s->count && s->size <= 2 * fit_size(live))
            continue;
        if (live == 0) {
            /* Drop the whole table. */
            for (uint32_t i = 0; i < s->size; i++)
                if (s->cells[i].key)
                    account(d, s, &s->cells[i], -1);
            __atomic_fetch_sub(&d->table_bytes, (uint64_t)s->size * sizeof *s->cells,
                               __ATOMIC_RELAXED);
            free(s->cells);
            s->cells = NULL;
            s->size = 0;
            s->count = 0;
            continue;
        }
        (void)rebuild_locked(d, s, fit_size(live));
    }
}

uint64_t dir_cells(struct dir *d)
{
    return __atomic_load_n(&d->cells_total, __ATOMIC_RELAXED);
}

uint64_t dir_zero_cells(struct dir *d)
{
    return __atomic_load_n(&d->zeros_total, __ATOMIC_RELAXED);
}

uint64_t dir_metadata_bytes(struct dir *d)
{
    return sizeof *d + __atomic_load_n(&d->table_bytes, __ATOMIC_RELAXED);
}
