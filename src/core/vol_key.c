/* Reads by key: a miss whose content's key the directory remembers is
 * looked for in the local store first (another volume may have brought the
 * same content back) and then in the tiers, in order, before the back end.
 * See vol_key.h. */
#include "core/vol_key.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/stats.h"
#include "core/dir.h"
#include "core/install.h"
#include "core/scratch.h"
#include "core/store.h"
#include "core/tier.h"
#include "core/vol_map.h"
#include "core/volume.h"
#include "core/vol_mrc.h"

/* Drop what a resolve found (no install). */
static void release_found(struct volume *v, struct vol_scratch *s)
{
    for (unsigned k = 0; k < s->nkeyed; k++)
        if (s->kd[k].ref)
            store_unref(v->store, dir_ref(s->kd[k].ref));
    s->nkeyed = 0;
}

/* Ask the tiers, in order, for the entries kd[from..] (all from a tier:
 * ref 0). Found ones are marked by setting their pos' todo bit off; returns
 * how many were found. */
static unsigned ask_tiers(struct volume *v, struct vol_scratch *s, uint8_t *buf, uint64_t first,
                          unsigned from)
{
    unsigned found = 0;
    for (unsigned t = 0; t < v->ntiers; t++) {
        unsigned n = 0;
        for (unsigned k = from; k < s->nkeyed; k++) {
            struct vol_keyed *kd = &s->kd[k];
            if (!bitmap_test(s->todo, todo_pos(s, first, kd->pos)))
                continue; /* found in an earlier tier */
            s->tkeys[n] = kd->fp;
            s->tbufs[n] = buf + (size_t)kd->pos * BLOCK_SIZE;
            s->tkd[n++] = k;
        }
        if (n == 0)
            break;
        s->treq.keys = s->tkeys;
        s->treq.bufs = s->tbufs;
        s->treq.n = n;
        if (tier_lookup(v->tiers[t], &s->treq) <= 0)
            continue;
        for (unsigned j = 0; j < n; j++) {
            if (!tier_req_found(&s->treq, j))
                continue;
            bitmap_clear(s->todo, todo_pos(s, first, s->kd[s->tkd[j]].pos));
            found++;
        }
    }
    return found;
}

/* The keys of the request's missed blocks [b0, b0+lim) (lim <=
 * TIER_BATCH_MAX): the directory's remembered ones, then, for a volume in
 * the cluster's map (vol_map.h), the map's for those the directory has
 * none of (one lookup for the span of them). Into s->bkeys[i - b0] where
 * s->haskey; s->mapfound marks the map's. Returns -EAGAIN when nowait and
 * the map would be asked. */
static int gather_keys(struct volume *v, struct vol_scratch *s, uint64_t first, uint32_t b0,
                       uint32_t lim, bool nowait)
{
    memset(s->haskey, 0, sizeof s->haskey);
    memset(s->mapfound, 0, sizeof s->mapfound);
    struct tier *mt = __atomic_load_n(&v->map_tier, __ATOMIC_ACQUIRE);
    uint32_t lo = UINT32_MAX, hi = 0;
    for (uint32_t j = 0; j < lim; j++) {
        uint32_t i = b0 + j;
        if (!bitmap_test(s->todo, todo_pos(s, first, i)))
            continue;
        if (bitmap_test(s->keyed, i) && dir_remembered_key(v->dir, first + i, &s->tk, &s->bkeys[j]))
            bitmap_set(s->haskey, j);
        else if (mt) {
            lo = MIN(lo, j);
            hi = j;
        }
    }
    if (lo == UINT32_MAX)
        return 0;
    if (nowait)
        return -EAGAIN; /* the map may take the tier's timeout */
    struct tier_map_id id = v->map_id;
    uint64_t found[TIER_BATCH_MAX / 64];
    struct fpkey *keys = s->tkeys; /* free until ask_tiers */
    if (tier_map_lookup(mt, &id, first + b0 + lo, hi - lo + 1, keys, found) <= 0)
        return 0;
    for (uint32_t j = lo; j <= hi; j++) {
        if (!bitmap_test(found, j - lo) || bitmap_test(s->haskey, j) ||
            !bitmap_test(s->todo, todo_pos(s, first, b0 + j)))
            continue;
        s->bkeys[j] = keys[j - lo];
        bitmap_set(s->haskey, j);
        bitmap_set(s->mapfound, j);
    }
    return 0;
}

/* Room in kd[] for a read of nb blocks: a long read gets the large array
 * (once per thread); without memory, blocks past kd_cap go to the back
 * end. */
static void kd_reserve(struct vol_scratch *s, uint32_t nb)
{
    if (nb <= s->kd_cap || s->kd != s->kd_small)
        return;
    struct vol_keyed *big = calloc(SPAN_BLOCKS_MAX, sizeof *big);
    if (!big)
        return;
    s->kd = big;
    s->kd_cap = SPAN_BLOCKS_MAX;
}

/* One batch of at most TIER_BATCH_MAX blocks from b0: its keys, the local
 * store, then the tiers. */
static int resolve_batch(struct volume *v, struct vol_scratch *s, uint8_t *buf, uint64_t first,
                         uint32_t b0, uint32_t lim, bool nowait, uint64_t *key_blocks,
                         uint64_t *tier_blocks)
{
    int ret = gather_keys(v, s, first, b0, lim, nowait);
    if (ret < 0)
        return ret;
    const struct fpkey *zero = vol_map_zero_key();
    unsigned batch_from = s->nkeyed;
    unsigned tier_from = UINT32_MAX; /* first kd[] entry left for the tiers */
    for (uint32_t j = 0; j < lim && s->nkeyed < s->kd_cap; j++) {
        uint32_t i = b0 + j;
        if (!bitmap_test(s->todo, todo_pos(s, first, i)) || !bitmap_test(s->haskey, j))
            continue;
        struct fpkey fp = s->bkeys[j];
        if (bitmap_test(s->mapfound, j) && fpkey_equal(&fp, zero)) {
            /* The map says zeros: the key is the zero block's hash, so the
             * content is known without asking anyone (installed as the
             * zero constant in finish). */
            memset(buf + (size_t)i * BLOCK_SIZE, 0, BLOCK_SIZE);
            s->kd[s->nkeyed++] = (struct vol_keyed){.pos = i, .ref = 0, .fp = fp};
            bitmap_clear(s->todo, todo_pos(s, first, i));
            (*tier_blocks)++;
            continue;
        }
        struct store_ref ref;
        if (store_find(v->store, &fp, &ref) == 0) {
            if (store_read(v->store, ref, buf + (size_t)i * BLOCK_SIZE, 0, BLOCK_SIZE) == 0) {
                s->kd[s->nkeyed++] = (struct vol_keyed){.pos = i, .ref = dir_val(ref), .fp = fp};
                vol_mrc_note(v, (uint32_t)fpkey_hash64(&fp), MRC_READ);
                vol_mrc_reads(v, 1, true);
                bitmap_clear(s->todo, todo_pos(s, first, i));
                (*key_blocks)++;
                continue;
            }
            store_unref(v->store, ref); /* evicted in between */
        }
        if (v->ntiers == 0)
            continue;
        if (nowait)
            return -EAGAIN; /* a tier may take its timeout: not on the reader's thread */
        if (tier_from == UINT32_MAX)
            tier_from = s->nkeyed;
        s->kd[s->nkeyed++] = (struct vol_keyed){.pos = i, .ref = 0, .fp = fp};
    }
    if (tier_from == UINT32_MAX)
        return 0;
    /* Local finds may follow tier candidates in kd[]: keep them in place,
     * ask the tiers for the ref-less ones, then drop the ones not found. */
    *tier_blocks += ask_tiers(v, s, buf, first, tier_from);
    unsigned w = batch_from;
    for (unsigned k = batch_from; k < s->nkeyed; k++) {
        struct vol_keyed *kd = &s->kd[k];
        if (kd->ref || !bitmap_test(s->todo, todo_pos(s, first, kd->pos)))
            s->kd[w++] = *kd;
    }
    s->nkeyed = w;
    return 0;
}

int vol_key_resolve(struct volume *v, struct vol_scratch *s, uint8_t *buf, uint64_t first,
                    uint32_t nb, bool nowait, uint64_t *key_blocks, uint64_t *tier_blocks)
{
    s->nkeyed = 0;
    *key_blocks = *tier_blocks = 0;
    kd_reserve(s, nb);
    for (uint32_t b0 = 0; b0 < nb && s->nkeyed < s->kd_cap; b0 += TIER_BATCH_MAX) {
        int ret = resolve_batch(v, s, buf, first, b0, MIN(nb - b0, (uint32_t)TIER_BATCH_MAX),
                                nowait, key_blocks, tier_blocks);
        if (ret < 0) {
            release_found(v, s); /* nowait: the worker starts over */
            return ret;
        }
    }
    return 0;
}

void vol_key_finish(struct volume *v, struct vol_scratch *s, const uint8_t *buf, uint64_t first,
                    bool install)
{
    for (unsigned k = 0; k < s->nkeyed; k++) {
        struct vol_keyed *kd = &s->kd[k];
        uint64_t blk = first + kd->pos;
        if (kd->ref) {
            int r = install ? dir_install(v->dir, blk, &s->tk, kd->ref) : DIR_REFUSED;
            if (r == DIR_HELD)
                continue;
            if (install && r == DIR_REFUSED)
                STAT_ADD(v->c.insert_races, 1);
            store_unref(v->store, dir_ref(kd->ref));
            continue;
        }
        if (!install)
            continue;
        if (fpkey_equal(&kd->fp, vol_map_zero_key())) {
            if (dir_install(v->dir, blk, &s->tk, DIR_ZERO) == DIR_REFUSED)
                STAT_ADD(v->c.insert_races, 1);
            continue;
        }
        vol_install_keyed(v, blk, buf + (size_t)kd->pos * BLOCK_SIZE, &kd->fp, &s->tk);
    }
    s->nkeyed = 0;
}
