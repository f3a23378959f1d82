/* Per-volume directory implementation; see dir.h for the model, the race
 * rule and the lock rules. */
#include "core/dir.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "core/dir_cells.h"
#include "core/store.h"

#define MIN_CELLS 8u
/* Remembered tables start smaller: their cells are twice the size, and a
 * stripe remembers a few blocks long before it remembers many. */
#define MIN_RCELLS 4u

static void account(struct dir *d, const struct dir_cell *c, int sign)
{
    __atomic_fetch_add(&d->cells_total, (uint64_t)(int64_t)sign, __ATOMIC_RELAXED);
    if (cell_val(c) == DIR_ZERO)
        __atomic_fetch_add(&d->zeros_total, (uint64_t)(int64_t)sign, __ATOMIC_RELAXED);
}

static void remove_cell_locked(struct dir *d, struct stripe *s, struct dir_cell *c)
{
    account(d, c, -1);
    s->count--;
    oa_remove(s->cells, s->size, sizeof *s->cells, (uint32_t)(c - s->cells));
}

static void place_locked(struct stripe *s, const struct dir_cell *c)
{
    oa_place(s->cells, s->size, sizeof *s->cells, c);
}

/* Rebuild into a table of `n` cells, dropping stale cells on the way
 * unless keep_stale (they may still become remembered blocks: only
 * remember_stale, which asked the store, decides to drop one then). */
static int rebuild_locked(struct dir *d, struct stripe *s, uint32_t n, bool keep_stale)
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
        if (!keep_stale && stale_locked(d, &old[i])) {
            account(d, &old[i], -1);
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

/* A table for n cells at 70% load: room to grow to the 85% limit (about
 * 1.2x) before the next rebuild, so rebuilds stay amortised O(1). */
static uint32_t fit_size(uint32_t n)
{
    uint64_t size = ((uint64_t)n * 10 + 6) / 7;
    return size < MIN_CELLS ? MIN_CELLS : (uint32_t)MIN(size, UINT32_MAX);
}

/* Make room for one more cell: grow at 85% load, after dropping stale
 * cells. Remembering, a few stale cells (up to a quarter of the table) are
 * kept for remember_stale (dir_purge, after every thirty-second of the
 * cache evicted), which asks the store for their keys: dropped here, they
 * could not become remembered blocks. More than that means the purge is
 * behind and the eviction log has likely forgotten them. Cells are 12
 * bytes in one array, so the longer linear probes of a fuller table stay
 * within a few cache lines; the load range (50-85%) keeps the directory's
 * share of the per-block metadata near 16 bytes. */
static int reserve_locked(struct dir *d, struct stripe *s)
{
    if (!s->cells)
        return rebuild_locked(d, s, MIN_CELLS, false);
    uint32_t size = s->size;
    if ((uint64_t)(s->count + 1) * 20 <= (uint64_t)size * 17)
        return 0;
    uint32_t live = count_live_locked(d, s);
    bool keep_stale = d->budget != NULL && (s->count - live) * 4 <= s->count;
    return rebuild_locked(d, s, fit_size((keep_stale ? s->count : live) + 1), keep_stale);
}

static void maybe_shrink_locked(struct dir *d, struct stripe *s)
{
    if (!s->cells)
        return;
    uint32_t size = s->size;
    if (size > 64 && s->count * 8 < size)
        (void)rebuild_locked(d, s, size / 2, d->budget != NULL);
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

/* ---- remembered cells ---- */

void dir_budget_init(struct dir_budget *b, uint64_t max_blocks)
{
    b->max = max_blocks;
    b->used = 0;
}

static bool budget_take(struct dir_budget *b)
{
    if (!b)
        return false;
    uint64_t u = __atomic_load_n(&b->used, __ATOMIC_RELAXED);
    do {
        if (u >= b->max)
            return false;
    } while (!__atomic_compare_exchange_n(&b->used, &u, u + 1, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return true;
}

static void budget_give(struct dir_budget *b, uint64_t n)
{
    if (b && n)
        __atomic_fetch_sub(&b->used, n, __ATOMIC_RELAXED);
}

/* The stripe's remembered table (allocating the array on first use when
 * create), or NULL. */
static struct rtable *rtable_of(struct dir *d, uint32_t si, bool create)
{
    struct rtable *rt = rtables_get(d);
    if (!rt && create) {
        LOCK_GUARD(&d->rt_lock);
        rt = d->rtables;
        if (!rt) {
            rt = calloc(d->nstripes, sizeof *rt);
            if (!rt)
                return NULL;
            __atomic_fetch_add(&d->rtable_bytes, d->nstripes * sizeof *rt, __ATOMIC_RELAXED);
            __atomic_store_n(&d->rtables, rt, __ATOMIC_RELEASE);
        }
    }
    return rt ? &rt[si] : NULL;
}

static void rremove_locked(struct dir *d, struct rtable *t, struct dir_rcell *c)
{
    oa_remove(t->cells, t->size, sizeof *t->cells, (uint32_t)(c - t->cells));
    t->count--;
    __atomic_fetch_sub(&d->rcells_total, 1, __ATOMIC_RELAXED);
    budget_give(d->budget, 1);
}

/* Forget blk's remembered key, if any; its key in *forgot (may be NULL). */
static bool rclear_locked(struct dir *d, uint32_t si, uint32_t key, struct fpkey *forgot)
{
    struct dir_rcell *c = rfind_locked(d, si, key);
    if (!c)
        return false;
    if (forgot)
        *forgot = c->fp;
    rremove_locked(d, rtable_of(d, si, false), c);
    return true;
}

/* Drop a whole remembered table (budget full: make room, oldest stripes'
 * first in rotation). */
static void rdrop_all_locked(struct dir *d, struct rtable *t)
{
    if (!t || !t->cells)
        return;
    __atomic_fetch_sub(&d->rcells_total, t->count, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&d->rtable_bytes, (uint64_t)t->size * sizeof *t->cells, __ATOMIC_RELAXED);
    budget_give(d->budget, t->count);
    free(t->cells);
    t->cells = NULL;
    t->count = t->size = 0;
}

static int rrebuild_locked(struct dir *d, struct rtable *t, uint32_t n)
{
    struct dir_rcell *nc = calloc(n, sizeof *nc);
    if (!nc)
        return -ENOMEM;
    for (uint32_t i = 0; t->cells && i < t->size; i++)
        if (t->cells[i].key)
            oa_place(nc, n, sizeof *nc, &t->cells[i]);
    free(t->cells);
    __atomic_fetch_add(&d->rtable_bytes, ((uint64_t)n - t->size) * sizeof *nc, __ATOMIC_RELAXED);
    t->cells = nc;
    t->size = n;
    return 0;
}

/* Remember blk's content key (the caller found no local cell for it). The
 * remembered table runs much fuller than the local one (grows at 95%, to
 * 87%): its cells are twice as big, and only misses probe it, which then
 * wait for a tier or the back end anyway, so a longer probe costs nothing
 * that shows. */
static void rremember_locked(struct dir *d, uint32_t si, uint32_t key, const struct fpkey *fp)
{
    struct rtable *t = rtable_of(d, si, true);
    if (!t)
        return;
    struct dir_rcell *c = rfind_locked(d, si, key);
    if (c) {
        c->fp = *fp;
        return;
    }
    if (!budget_take(d->budget))
        return;
    if (!t->cells || (uint64_t)(t->count + 1) * 20 > (uint64_t)t->size * 19) {
        uint64_t n = MAX((uint64_t)(t->count + 1) * 8 / 7 + 1, MIN_RCELLS);
        if (rrebuild_locked(d, t, (uint32_t)MIN(n, UINT32_MAX)) < 0) {
            budget_give(d->budget, 1);
            return;
        }
    }
    struct dir_rcell nc = {.key = key, .fp = *fp};
    oa_place(t->cells, t->size, sizeof *t->cells, &nc);
    t->count++;
    __atomic_fetch_add(&d->rcells_total, 1, __ATOMIC_RELAXED);
}

/* ---- public API ---- */

/* Stripes: one per 64 blocks (256 KiB) of volume, 16 to DIR_STRIPES. A
 * stripe is 64 bytes, so a small volume's fixed cost stays near one byte
 * a block, and a large one still spreads its locks over DIR_STRIPES. */
static uint32_t stripes_for(uint64_t nblocks)
{
    uint32_t n = 16;
    while (n < DIR_STRIPES && (uint64_t)n * 64 < nblocks)
        n *= 2;
    return n;
}

int dir_create(struct store *st, uint64_t nblocks, struct dir_budget *budget, struct dir **out)
{
    if (nblocks > DIR_MAX_BLOCKS)
        return -EFBIG;
    uint32_t ns = stripes_for(nblocks);
    size_t bytes = sizeof(struct dir) + (size_t)ns * sizeof(struct stripe);
    struct dir *d = aligned_alloc(64, bytes);
    if (!d)
        return -ENOMEM;
    memset(d, 0, bytes);
    d->store = st;
    d->budget = budget;
    d->nblocks = nblocks;
    d->nstripes = ns;
    d->sshift = (uint32_t)__builtin_ctz(ns);
    d->users = 1;
    pthread_mutex_init(&d->rt_lock, NULL);
    pthread_rwlock_init(&d->deps_lock, NULL);
    for (uint32_t i = 0; i < ns; i++)
        pthread_mutex_init(&d->stripes[i].lock, NULL);
    *out = d;
    return 0;
}

void dir_destroy(struct dir *d)
{
    if (!d)
        return;
    if (d->base)
        share_detach(d);
    /* A base's dependents may still read its stripes: empty each one under
     * its lock, drop the references with no lock held (lock rules). */
    for (uint32_t si = 0; si < d->nstripes; si++) {
        struct stripe *s = &d->stripes[si];
        struct dir_cell *cells;
        uint32_t size;
        {
            LOCK_GUARD(&s->lock);
            cells = s->cells;
            size = s->size;
            s->cells = NULL;
            s->size = s->count = 0;
            struct rtable *rt = rtables_get(d);
            if (rt)
                rdrop_all_locked(d, &rt[si]);
        }
        for (uint32_t j = 0; j < size; j++) {
            uint64_t v = cell_val(&cells[j]);
            if (cells[j].key && dir_val_is_ref(v))
                store_unref(d->store, dir_ref(v));
        }
        free(cells);
    }
    share_clear_all_deps(d);
    dir_release(d);
}

/* A dependent's block with no cell of its own: the base's value if the
 * block is shared (DIR_REMEMBERED if the base only remembers its key),
 * else 0. Takes the base's stripe lock: the caller may hold its own. */
static __attribute__((noinline)) uint64_t base_lookup(struct dir *d, uint32_t si, uint64_t blk,
                                                      uint32_t key)
{
    struct dir *b = d->base;
    struct stripe *bs = &b->stripes[si];
    LOCK_GUARD(&bs->lock);
    if (!share_test_locked(d, si, blk))
        return 0;
    struct dir_cell *c = find_locked(bs, key);
    if (c)
        return cell_val(c);
    return rfind_locked(b, si, key) ? DIR_REMEMBERED : 0;
}

/* The value dir_lookup reports for blk: its local cell, else DIR_REMEMBERED
 * if its key is remembered, else what the base has for it when shared,
 * else 0. */
static inline __attribute__((always_inline)) uint64_t lookup_locked(struct dir *d, struct stripe *s,
                                                                    uint32_t si, uint64_t blk)
{
    uint32_t key = key_of(d, blk);
    struct dir_cell *c = find_locked(s, key);
    if (c)
        return cell_val(c);
    if (rfind_locked(d, si, key))
        return DIR_REMEMBERED;
    return d->base ? base_lookup(d, si, blk, key) : 0;
}

uint64_t dir_lookup(struct dir *d, uint64_t blk)
{
    uint32_t si = dir_si(d, blk);
    struct stripe *s = &d->stripes[si];
    LOCK_GUARD(&s->lock);
    return lookup_locked(d, s, si, blk);
}

void dir_lookup_range(struct dir *d, uint64_t first, uint32_t n, uint64_t *out)
{
    const uint64_t gmask = (1u << DIR_GROUP_SHIFT) - 1;
    for (uint32_t i = 0; i < n;) {
        uint64_t blk = first + i;
        uint32_t run = (uint32_t)MIN((uint64_t)(n - i), gmask + 1 - (blk & gmask));
        uint32_t si = dir_si(d, blk);
        struct stripe *s = &d->stripes[si];
        LOCK_GUARD(&s->lock);
        for (uint32_t k = 0; k < run; k++)
            out[i + k] = lookup_locked(d, s, si, blk + k);
        i += run;
    }
}

/* A dependent's block with no cell of its own, under its stripe lock: if
 * shared, the key the base remembers for it (a stale base cell is left to
 * the base's own miss or purge: then the back end answers). */
static bool base_key(struct dir *d, uint32_t si, uint64_t blk, uint32_t key, struct fpkey *fp)
{
    struct dir *b = d->base;
    LOCK_GUARD(&b->stripes[si].lock);
    if (!share_test_locked(d, si, blk))
        return false;
    struct dir_rcell *rc = rfind_locked(b, si, key);
    if (rc)
        *fp = rc->fp;
    return rc != NULL;
}

bool dir_remembered_key(struct dir *d, uint64_t blk, const struct dir_tickets *tk, struct fpkey *fp)
{
    uint32_t si = dir_si(d, blk);
    struct stripe *s = &d->stripes[si];
    uint32_t key = key_of(d, blk);
    if (!bitmap_test(tk->touched, si) || bitmap_test(tk->dirty, si))
        return false;
    uint64_t stale;
    {
        LOCK_GUARD(&s->lock);
        if (!stripe_unchanged(s, tk->t[si], key))
            return false; /* changed since the ticket: the back end decides */
        struct dir_rcell *rc = rfind_locked(d, si, key);
        if (rc) {
            *fp = rc->fp;
            return true;
        }
        struct dir_cell *c = find_locked(s, key);
        if (!c && d->base)
            return base_key(d, si, blk, key, fp);
        if (!c || !stale_locked(d, c))
            return false; /* nothing known (or live again) */
        stale = cell_val(c);
    }
    /* The content was evicted: ask the store's eviction log for its key
     * (not under the stripe lock: see the lock rules), then turn the cell
     * into a remembered one, or drop it if the key is forgotten, unless
     * something changed meanwhile. */
    bool known = store_evicted_key(d->store, dir_ref(stale), fp);
    LOCK_GUARD(&s->lock);
    struct dir_cell *c = find_locked(s, key);
    if (c && cell_val(c) == stale) {
        remove_cell_locked(d, s, c);
        if (known)
            rremember_locked(d, si, key, fp);
    }
    return known && stripe_unchanged(s, tk->t[si], key);
}

void dir_remember(struct dir *d, uint64_t blk, const struct fpkey *fp)
{
    uint32_t si = dir_si(d, blk);
    struct stripe *s = &d->stripes[si];
    uint32_t key = key_of(d, blk);
    LOCK_GUARD(&s->lock);
    if (!find_locked(s, key))
        rremember_locked(d, si, key, fp);
}

void dir_tickets_reset(struct dir_tickets *tk)
{
    memset(tk->touched, 0, sizeof tk->touched);
    memset(tk->dirty, 0, sizeof tk->dirty);
}

void dir_read_ticket(struct dir *d, uint64_t blk, struct dir_tickets *tk)
{
    uint32_t si = dir_si(d, blk);
    struct stripe *s = &d->stripes[si];
    LOCK_GUARD(&s->lock);
    /* A read's later ticket is taken before any fetch starts, so a change
     * between two of its tickets is harmless: just keep the newest. */
    tk->t[si] = s->seq;
    bitmap_set(tk->touched, si);
}

/* Blocks [first, end) of stripe si changed (write, trim, zero,
 * invalidate; the caller holds d's stripe lock): a dependent's stop being
 * shared, and a base's stop being shared by every dependent. */
static void unshare_locked(struct dir *d, uint32_t si, uint64_t first, uint64_t end)
{
    if (d->base) {
        LOCK_GUARD(&d->base->stripes[si].lock);
        share_clear_locked(d, si, first, end);
    }
    share_clear_deps_locked(d, si, first, end);
}

uint64_t dir_write_begin(struct dir *d, uint64_t blk, struct dir_tickets *tk, struct fpkey *forgot,
                         bool *forgotten)
{
    uint32_t si = dir_si(d, blk);
    struct stripe *s = &d->stripes[si];
    LOCK_GUARD(&s->lock);
    uint64_t old = clear_locked(d, s, key_of(d, blk));
    bool f = rclear_locked(d, si, key_of(d, blk), forgot);
    if (forgotten)
        *forgotten = f;
    unshare_locked(d, si, blk, blk + 1);
    if (bitmap_test(tk->touched, si) && tk->t[si] != s->seq)
        bitmap_set(tk->dirty, si);
    stripe_bump(s, key_of(d, blk));
    tk->t[si] = s->seq;
    bitmap_set(tk->touched, si);
    return old;
}

uint64_t dir_write_end(struct dir *d, uint64_t blk, struct dir_tickets *tk, bool *clean)
{
    uint32_t si = dir_si(d, blk);
    struct stripe *s = &d->stripes[si];
    LOCK_GUARD(&s->lock);
    bool ok = bitmap_test(tk->touched, si) && !bitmap_test(tk->dirty, si) && tk->t[si] == s->seq;
    uint64_t old = clear_locked(d, s, key_of(d, blk));
    rclear_locked(d, si, key_of(d, blk), NULL);
    unshare_locked(d, si, blk, blk + 1);
    stripe_bump(s, key_of(d, blk));
    if (ok)
        tk->t[si] = s->seq;
    else
        bitmap_set(tk->dirty, si);
    if (clean)
        *clean = ok;
    maybe_shrink_locked(d, s);
    return old;
}

/* A dependent installing val for blk (its stripe lock held, tickets
 * checked): DIR_SHARED if the base holds the very same value live (the
 * block then shares the base's cell), DIR_REFUSED if blk is already
 * shared with a live base cell, else DIR_HELD: the caller installs a cell
 * of its own (and blk is no longer shared). */
static int share_install(struct dir *d, uint32_t si, uint64_t blk, uint32_t key, uint64_t val)
{
    struct dir *b = d->base;
    LOCK_GUARD(&b->stripes[si].lock);
    struct dir_cell *bc = find_locked(&b->stripes[si], key);
    bool live = bc && !stale_locked(b, bc);
    if (live && share_test_locked(d, si, blk))
        return DIR_REFUSED; /* cached through the base meanwhile */
    if (live && cell_val(bc) == val && share_set_locked(d, si, blk, val == DIR_ZERO))
        return DIR_SHARED;
    share_clear_locked(d, si, blk, blk + 1);
    return DIR_HELD;
}

int dir_install(struct dir *d, uint64_t blk, struct dir_tickets *tk, uint64_t val)
{
    uint32_t si = dir_si(d, blk);
    struct stripe *s = &d->stripes[si];
    if (!bitmap_test(tk->touched, si) || bitmap_test(tk->dirty, si))
        return DIR_REFUSED;
    LOCK_GUARD(&s->lock);
    uint32_t key = key_of(d, blk);
    if (!stripe_unchanged(s, tk->t[si], key))
        return DIR_REFUSED;
    struct dir_cell *c = find_locked(s, key);
    if (c) {
        if (!stale_locked(d, c))
            return DIR_REFUSED; /* someone installed the same block meanwhile: keep it */
        remove_cell_locked(d, s, c);
    }
    if (d->base) {
        int r = share_install(d, si, blk, key, val);
        if (r != DIR_HELD) {
            if (r == DIR_SHARED)
                rclear_locked(d, si, key, NULL);
            return r;
        }
    }
    if (reserve_locked(d, s) < 0)
        return DIR_REFUSED;
    struct dir_cell nc = {.key = key, .idx = (uint32_t)val, .gen = (uint32_t)(val >> 32)};
    place_locked(s, &nc);
    s->count++;
    account(d, &nc, +1);
    rclear_locked(d, si, key, NULL); /* held locally again */
    return DIR_HELD;
}

/* Forget the remembered keys of blocks [first, end) in stripe si: rebuild
 * the table without them (forgetting everything is the fallback). */
static void rclear_range_locked(struct dir *d, uint32_t si, uint64_t first, uint64_t end)
{
    struct rtable *t = rtable_of(d, si, false);
    if (!t || !t->cells)
        return;
    struct dir_rcell *nc = calloc(t->size, sizeof *nc);
    if (!nc) {
        rdrop_all_locked(d, t);
        return;
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < t->size; i++) {
        uint32_t k = t->cells[i].key;
        if (!k)
            continue;
        uint64_t b = blk_of(d, k, si);
        if (b >= first && b < end)
            continue;
        oa_place(nc, t->size, sizeof *nc, &t->cells[i]);
        kept++;
    }
    uint32_t gone = t->count - kept;
    __atomic_fetch_sub(&d->rcells_total, gone, __ATOMIC_RELAXED);
    budget_give(d->budget, gone);
    free(t->cells);
    t->cells = nc;
    t->count = kept;
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

    if (n <= (uint64_t)d->nstripes << DIR_GROUP_SHIFT) {
        /* Small range: visit the blocks. */
        for (uint64_t b = first; b < end; b++) {
            struct stripe *s = &d->stripes[dir_si(d, b)];
            uint64_t old;
            {
                LOCK_GUARD(&s->lock);
                old = clear_locked(d, s, key_of(d, b));
                rclear_locked(d, dir_si(d, b), key_of(d, b), NULL);
                unshare_locked(d, dir_si(d, b), b, b + 1);
                stripe_bump(s, key_of(d, b));
            }
            if (dir_val_is_ref(old))
                store_unref(d->store, dir_ref(old));
        }
        return;
    }
    /* Large range: walk every stripe's table once. */
    for (uint32_t si = 0; si < d->nstripes; si++) {
        struct stripe *s = &d->stripes[si];
        uint64_t drop[DROP_BATCH];
        unsigned ndrop;
        bool again;
        do {
            ndrop = 0;
            again = false;
            {
                LOCK_GUARD(&s->lock);
                stripe_bump(s, RECENT_ALL);
                for (uint32_t i = 0; s->cells && i < s->size;) {
                    struct dir_cell *c = &s->cells[i];
                    uint64_t b = c->key ? blk_of(d, c->key, si) : UINT64_MAX;
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
                if (!again) {
                    maybe_shrink_locked(d, s);
                    rclear_range_locked(d, si, first, end);
                    unshare_locked(d, si, first, end);
                }
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
                    uint64_t b = blk_of(d, c->key, si);
                    if (b >= first && b < end)
                        again = true;
                }
            }
        }
        if (again)
            si--; /* redo this stripe */
    }
}

/* Stale cells converted per lock hold: the store is asked for their keys
 * with the stripe lock released (lock rules). */
#define REMEMBER_BATCH 64

/* Turn stale cells of stripe si whose content's key the store's eviction
 * log still holds into remembered cells, and drop those it does not. Best
 * effort: a cell the scan skips (moved by a removal) waits for the next
 * purge. */
static void remember_stale(struct dir *d, uint32_t si)
{
    struct stripe *s = &d->stripes[si];
    uint32_t pos = 0;
    for (;;) {
        uint32_t keys[REMEMBER_BATCH];
        uint64_t vals[REMEMBER_BATCH];
        struct fpkey fps[REMEMBER_BATCH];
        unsigned n = 0;
        {
            LOCK_GUARD(&s->lock);
            for (; pos < s->size && n < REMEMBER_BATCH; pos++) {
                struct dir_cell *c = &s->cells[pos];
                if (c->key && stale_locked(d, c)) {
                    keys[n] = c->key;
                    vals[n++] = cell_val(c);
                }
            }
        }
        if (n == 0)
            return;
        bool known[REMEMBER_BATCH];
        for (unsigned i = 0; i < n; i++)
            known[i] = store_evicted_key(d->store, dir_ref(vals[i]), &fps[i]);
        {
            LOCK_GUARD(&s->lock);
            for (unsigned i = 0; i < n; i++) {
                struct dir_cell *c = find_locked(s, keys[i]);
                if (!c || cell_val(c) != vals[i])
                    continue;
                remove_cell_locked(d, s, c);
                if (known[i])
                    rremember_locked(d, si, keys[i], &fps[i]);
            }
        }
        if (n < REMEMBER_BATCH)
            return;
    }
}

void dir_purge(struct dir *d)
{
    if (d->budget) {
        /* A full budget makes room for what was evicted since (its stale
         * cells, about to be remembered): forget whole stripes' remembered
         * blocks, in rotation, until they fit. So the remembered blocks
         * are about the budget's worth of the latest evicted, the likeliest
         * to be read (from a tier) or rewritten (handing their heat on)
         * again, however often the purge runs. One stripe per purge kept
         * the blocks evicted first and forgot most of those evicted since
         * (a 10 ms purge of a 1 MiB cache remembered 16 of ~100). The
         * count of stale cells is a pass over every cell: skipped while
         * even all the cells would fit. */
        uint64_t need = 0;
        if (__atomic_load_n(&d->budget->used, __ATOMIC_RELAXED) +
                __atomic_load_n(&d->cells_total, __ATOMIC_RELAXED) >
            d->budget->max)
            for (uint32_t si = 0; si < d->nstripes; si++) {
                struct stripe *s = &d->stripes[si];
                LOCK_GUARD(&s->lock);
                need += s->count - count_live_locked(d, s);
            }
        for (uint32_t k = 0;
             k < d->nstripes && rtables_get(d) &&
             __atomic_load_n(&d->budget->used, __ATOMIC_RELAXED) + need > d->budget->max;
             k++) {
            uint32_t si = d->purge_cursor++ % d->nstripes;
            LOCK_GUARD(&d->stripes[si].lock);
            rdrop_all_locked(d, rtable_of(d, si, false));
        }
        for (uint32_t si = 0; si < d->nstripes; si++)
            remember_stale(d, si);
    }
    /* Remembering, stale cells are left to remember_stale (above, or the
     * next purge): one that went stale since it looked may still be
     * remembered. Otherwise they are dropped here. */
    bool keep_stale = d->budget != NULL;
    for (uint32_t si = 0; si < d->nstripes; si++) {
        struct stripe *s = &d->stripes[si];
        LOCK_GUARD(&s->lock);
        if (!s->cells)
            continue;
        uint32_t live = keep_stale ? s->count : count_live_locked(d, s);
        /* Rebuild to drop stale cells, or a table too big for what it
         * holds (under about 56% full: a table grown while evictions left
         * stale cells in it would otherwise keep 12-byte cells at under
         * half load, and the metadata per block would depend on the
         * eviction policy's pattern); otherwise leave it. */
        if (live == s->count && s->size <= fit_size(live) + fit_size(live) / 4)
            continue;
        if (live == 0) {
            /* Drop the whole table. */
            for (uint32_t i = 0; i < s->size; i++)
                if (s->cells[i].key)
                    account(d, &s->cells[i], -1);
            __atomic_fetch_sub(&d->table_bytes, (uint64_t)s->size * sizeof *s->cells,
                               __ATOMIC_RELAXED);
            free(s->cells);
            s->cells = NULL;
            s->size = 0;
            s->count = 0;
            continue;
        }
        (void)rebuild_locked(d, s, fit_size(live), keep_stale);
    }
    if (d->base)
        share_purge(d);
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
    return sizeof *d + (uint64_t)d->nstripes * sizeof(struct stripe) +
           __atomic_load_n(&d->table_bytes, __ATOMIC_RELAXED) +
           __atomic_load_n(&d->stable_bytes, __ATOMIC_RELAXED) +
           (uint64_t)d->deps_cap * sizeof *d->deps;
}

uint64_t dir_shared(struct dir *d)
{
    return __atomic_load_n(&d->shared_total, __ATOMIC_RELAXED);
}

uint64_t dir_shared_zeros(struct dir *d)
{
    return __atomic_load_n(&d->shared_zeros, __ATOMIC_RELAXED);
}

uint64_t dir_remembered(struct dir *d)
{
    return __atomic_load_n(&d->rcells_total, __ATOMIC_RELAXED);
}

uint64_t dir_remembered_bytes(struct dir *d)
{
    return __atomic_load_n(&d->rtable_bytes, __ATOMIC_RELAXED);
}
