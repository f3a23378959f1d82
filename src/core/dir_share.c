/* Blocks a dependent directory shares with its base: see dir.h, SHARING,
 * for the model and the lock rules, dir_internal.h for the layout. */
#include <errno.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "core/dir_cells.h"
#include "core/dir_share.h"

#define MIN_SCELLS 4u

static void shared_add(struct dir *d, int64_t n, int64_t zeros)
{
    __atomic_fetch_add(&d->shared_total, (uint64_t)n, __ATOMIC_RELAXED);
    if (zeros)
        __atomic_fetch_add(&d->shared_zeros, (uint64_t)zeros, __ATOMIC_RELAXED);
}

/* Unshare the group's k-th block. */
static void unset(struct dir *d, struct dir_scell *c, uint32_t k)
{
    int64_t zero = c->mask >> (SCELL_ZEROS + k) & 1;
    c->mask &= ~(1u << k | 1u << (SCELL_ZEROS + k));
    shared_add(d, -1, -zero);
}

static void sbytes_add(struct dir *d, int64_t n)
{
    __atomic_fetch_add(&d->stable_bytes, (uint64_t)n, __ATOMIC_RELAXED);
}

/* Rebuild t into n cells, keeping the groups with a bit left. */
static int srebuild(struct dir *d, struct stable *t, uint32_t n)
{
    struct dir_scell *nc = calloc(n, sizeof *nc);
    if (!nc)
        return -ENOMEM;
    uint32_t kept = 0;
    for (uint32_t i = 0; t->cells && i < t->size; i++)
        if (t->cells[i].key && (t->cells[i].mask & SCELL_BITS)) {
            oa_place(nc, n, sizeof *nc, &t->cells[i]);
            kept++;
        }
    free(t->cells);
    sbytes_add(d, ((int64_t)n - (int64_t)t->size) * (int64_t)sizeof *nc);
    t->cells = nc;
    t->size = n;
    t->count = kept;
    return 0;
}

static void sdrop(struct dir *d, struct stable *t)
{
    if (!t->cells)
        return;
    int64_t bits = 0, zeros = 0;
    for (uint32_t i = 0; i < t->size; i++)
        if (t->cells[i].key) {
            bits += __builtin_popcount(t->cells[i].mask & SCELL_BITS);
            zeros += __builtin_popcount(t->cells[i].mask >> SCELL_ZEROS);
        }
    shared_add(d, -bits, -zeros);
    sbytes_add(d, -(int64_t)t->size * (int64_t)sizeof *t->cells);
    free(t->cells);
    t->cells = NULL;
    t->count = t->size = 0;
}

/* Grown at 90% to 80%: 8 bytes a group, probed only when a block of the
 * dependent has no cell of its own. */
static uint32_t sfit(uint32_t n)
{
    uint64_t size = (uint64_t)n * 5 / 4 + 1;
    return size < MIN_SCELLS ? MIN_SCELLS : (uint32_t)MIN(size, UINT32_MAX);
}

bool share_test_locked(struct dir *d, uint32_t si, uint64_t blk)
{
    struct stable *t = &d->stables[si];
    struct dir_scell *c = oa_find(t->cells, t->size, sizeof *t->cells, gkey_of(d, blk));
    return c && (c->mask >> (blk & ((1u << DIR_GROUP_SHIFT) - 1)) & 1);
}

bool share_set_locked(struct dir *d, uint32_t si, uint64_t blk, bool zero)
{
    struct stable *t = &d->stables[si];
    uint32_t gk = gkey_of(d, blk);
    uint32_t k = (uint32_t)(blk & ((1u << DIR_GROUP_SHIFT) - 1));
    uint32_t bits = 1u << k | (zero ? 1u << (SCELL_ZEROS + k) : 0);
    struct dir_scell *c = oa_find(t->cells, t->size, sizeof *t->cells, gk);
    if (c) {
        if (c->mask >> k & 1)
            unset(d, c, k);
        c->mask |= bits;
        shared_add(d, 1, zero);
        return true;
    }
    if ((uint64_t)(t->count + 1) * 10 > (uint64_t)t->size * 9 &&
        srebuild(d, t, sfit(t->count + 1)) < 0)
        return false;
    struct dir_scell nc = {.key = gk, .mask = bits};
    oa_place(t->cells, t->size, sizeof *t->cells, &nc);
    t->count++;
    shared_add(d, 1, zero);
    return true;
}

/* Clear, in group cell c, the bits of blocks in [first, end); true if the
 * group has none left. */
static bool clear_bits(struct dir *d, uint32_t si, struct dir_scell *c, uint64_t first,
                       uint64_t end)
{
    uint64_t g0 = gfirst_of(d, c->key, si);
    for (uint32_t k = 0; k < (1u << DIR_GROUP_SHIFT); k++)
        if ((c->mask >> k & 1) && g0 + k >= first && g0 + k < end)
            unset(d, c, k);
    return (c->mask & SCELL_BITS) == 0;
}

void share_clear_locked(struct dir *d, uint32_t si, uint64_t first, uint64_t end)
{
    struct stable *t = &d->stables[si];
    if (!t->cells || first >= end)
        return;
    if (end - first <= 64) {
        /* A few blocks (a write): visit their groups. */
        for (uint64_t b = first; b < end; b++) {
            if (dir_si(d, b) != si)
                continue;
            struct dir_scell *c = oa_find(t->cells, t->size, sizeof *t->cells, gkey_of(d, b));
            if (c && clear_bits(d, si, c, b, b + 1)) {
                oa_remove(t->cells, t->size, sizeof *t->cells, (uint32_t)(c - t->cells));
                t->count--;
            }
        }
        return;
    }
    /* A range: clear in place, then rebuild without the empty groups
     * (dropping the whole table is the fallback: unsharing is always
     * safe, it only costs misses). */
    for (uint32_t i = 0; i < t->size; i++)
        if (t->cells[i].key)
            (void)clear_bits(d, si, &t->cells[i], first, end);
    if (srebuild(d, t, sfit(t->count)) < 0)
        sdrop(d, t);
    else if (t->count == 0)
        sdrop(d, t);
}

void share_clear_deps_locked(struct dir *b, uint32_t si, uint64_t first, uint64_t end)
{
    if (__atomic_load_n(&b->ndeps, __ATOMIC_ACQUIRE) == 0)
        return;
    pthread_rwlock_rdlock(&b->deps_lock);
    for (unsigned i = 0; i < b->ndeps; i++)
        share_clear_locked(b->deps[i], si, first, end);
    pthread_rwlock_unlock(&b->deps_lock);
}

void share_purge(struct dir *d)
{
    struct dir *b = d->base;
    for (uint32_t si = 0; si < d->nstripes; si++) {
        struct stripe *bs = &b->stripes[si];
        LOCK_GUARD(&bs->lock);
        struct stable *t = &d->stables[si];
        if (!t->cells)
            continue;
        uint32_t groups = 0;
        for (uint32_t i = 0; i < t->size; i++) {
            struct dir_scell *c = &t->cells[i];
            if (!c->key)
                continue;
            uint64_t g0 = gfirst_of(d, c->key, si);
            for (uint32_t k = 0; k < (1u << DIR_GROUP_SHIFT); k++) {
                if (!(c->mask >> k & 1))
                    continue;
                uint32_t key = key_of(b, g0 + k);
                if (!find_locked(bs, key) && !rfind_locked(b, si, key))
                    unset(d, c, k);
            }
            groups += (c->mask & SCELL_BITS) != 0;
        }
        if (groups == 0)
            sdrop(d, t);
        else if (groups != t->count || t->size > sfit(groups) * 2)
            (void)srebuild(d, t, sfit(groups));
    }
}

int dir_share(struct dir *d, struct dir *base)
{
    if (d == base || d->base || d->ndeps || base->base || d->nblocks != base->nblocks ||
        d->nstripes != base->nstripes)
        return -EINVAL;
    struct stable *st = calloc(d->nstripes, sizeof *st);
    if (!st)
        return -ENOMEM;
    pthread_rwlock_wrlock(&base->deps_lock);
    int r = 0;
    if (base->ndeps == base->deps_cap) {
        unsigned cap = base->deps_cap ? base->deps_cap * 2 : 4;
        struct dir **nd = realloc(base->deps, cap * sizeof *nd);
        if (nd) {
            base->deps = nd;
            base->deps_cap = cap;
        } else {
            r = -ENOMEM;
        }
    }
    if (r == 0) {
        d->stables = st;
        d->base = base;
        sbytes_add(d, (int64_t)d->nstripes * (int64_t)sizeof *st);
        __atomic_fetch_add(&base->users, 1, __ATOMIC_RELAXED);
        base->deps[base->ndeps] = d;
        __atomic_store_n(&base->ndeps, base->ndeps + 1, __ATOMIC_RELEASE);
    }
    pthread_rwlock_unlock(&base->deps_lock);
    if (r < 0)
        free(st);
    return r;
}

void share_detach(struct dir *d)
{
    struct dir *b = d->base;
    pthread_rwlock_wrlock(&b->deps_lock);
    for (unsigned i = 0; i < b->ndeps; i++)
        if (b->deps[i] == d) {
            b->deps[i] = b->deps[b->ndeps - 1];
            __atomic_store_n(&b->ndeps, b->ndeps - 1, __ATOMIC_RELEASE);
            break;
        }
    pthread_rwlock_unlock(&b->deps_lock);
    /* No base operation reaches d's tables now. */
    for (uint32_t si = 0; si < d->nstripes; si++)
        sdrop(d, &d->stables[si]);
    free(d->stables);
    d->stables = NULL;
    d->base = NULL;
    dir_release(b);
}

void share_clear_all_deps(struct dir *b)
{
    for (uint32_t si = 0; si < b->nstripes; si++) {
        LOCK_GUARD(&b->stripes[si].lock);
        pthread_rwlock_rdlock(&b->deps_lock);
        for (unsigned i = 0; i < b->ndeps; i++)
            sdrop(b->deps[i], &b->deps[i]->stables[si]);
        pthread_rwlock_unlock(&b->deps_lock);
    }
}

void dir_release(struct dir *d)
{
    if (__atomic_sub_fetch(&d->users, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (uint32_t i = 0; i < d->nstripes; i++)
        pthread_mutex_destroy(&d->stripes[i].lock);
    free(rtables_get(d));
    free(d->deps);
    pthread_rwlock_destroy(&d->deps_lock);
    pthread_mutex_destroy(&d->rt_lock);
    free(d);
}
