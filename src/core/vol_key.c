/* Reads by key: a miss whose content's key the directory remembers is
 * looked for in the local store first (another volume may have brought the
 * same content back) and then in the tiers, in order, before the back end.
 * See vol_key.h. */
#include "core/vol_key.h"

#include <errno.h>
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

/* The keys of the request's first TIER_BATCH_MAX missed blocks: the
 * directory's remembered ones, then, for a volume in the cluster's map
 * (vol_map.h), the map's for those the directory has none of (one lookup
 * for the span of them). Into s->bkeys where s->haskey; s->mapfound marks
 * the map's. Returns -EAGAIN when nowait and the map would be asked. */
static int gather_keys(struct volume *v, struct vol_scratch *s, uint64_t first, uint32_t lim,
                       bool nowait)
{
    memset(s->haskey, 0, sizeof s->haskey);
    memset(s->mapfound, 0, sizeof s->mapfound);
    struct tier *mt = __atomic_load_n(&v->map_tier, __ATOMIC_ACQUIRE);
    uint32_t lo = UINT32_MAX, hi = 0;
    for (uint32_t i = 0; i < lim; i++) {
        if (!bitmap_test(s->todo, todo_pos(s, first, i)))
            continue;
        if (bitmap_test(s->keyed, i) && dir_remembered_key(v->dir, first + i, &s->tk, &s->bkeys[i]))
            bitmap_set(s->haskey, i);
        else if (mt) {
            lo = MIN(lo, i);
            hi = i;
        }
    }
    if (lo == UINT32_MAX)
        return 0;
    if (nowait)
        return -EAGAIN; /* the map may take the tier's timeout */
    struct tier_map_id id = v->map_id;
    uint64_t found[TIER_BATCH_MAX / 64];
    struct fpkey *keys = s->tkeys; /* free until ask_tiers */
    if (tier_map_lookup(mt, &id, first + lo, hi - lo + 1, keys, found) <= 0)
        return 0;
    for (uint32_t i = lo; i <= hi; i++) {
        if (!bitmap_test(found, i - lo) || bitmap_test(s->haskey, i) ||
            !bitmap_test(s->todo, todo_pos(s, first, i)))
            continue;
        s->bkeys[i] = keys[i - lo];
        bitmap_set(s->haskey, i);
        bitmap_set(s->mapfound, i);
    }
    return 0;
}

int vol_key_resolve(struct volume *v, struct vol_scratch *s, uint8_t *buf, uint64_t first,
                    uint32_t nb, bool nowait, uint64_t *key_blocks, uint64_t *tier_blocks)
{
    s->nkeyed = 0;
    *key_blocks = *tier_blocks = 0;
    uint32_t lim = MIN(nb, (uint32_t)TIER_BATCH_MAX);
    int ret = gather_keys(v, s, first, lim, nowait);
    if (ret < 0)
        return ret;
    const struct fpkey *zero = vol_map_zero_key();
    unsigned tier_from = TIER_BATCH_MAX; /* first kd[] entry left for the tiers */
    for (uint32_t i = 0; i < nb && s->nkeyed < TIER_BATCH_MAX; i++) {
        if (!bitmap_test(s->todo, todo_pos(s, first, i)))
            continue;
        struct fpkey fp;
        if (i < lim) {
            if (!bitmap_test(s->haskey, i))
                continue;
            fp = s->bkeys[i];
        } else if (!bitmap_test(s->keyed, i) || !dir_remembered_key(v->dir, first + i, &s->tk, &fp))
            continue;
        if (bitmap_test(s->mapfound, i) && fpkey_equal(&fp, zero)) {
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
                vol_mrc_reads(v, 1);
                bitmap_clear(s->todo, todo_pos(s, first, i));
                (*key_blocks)++;
                continue;
            }
            store_unref(v->store, ref); /* evicted in between */
        }
        if (v->ntiers == 0)
            continue;
        if (nowait) {
            /* A tier may take its timeout: not on the reader's thread. */
            release_found(v, s);
            return -EAGAIN;
        }
        /* The tiers are asked from the first candidate on (kd[] mixes
         * both kinds after it). */
        if (tier_from == TIER_BATCH_MAX)
            tier_from = s->nkeyed;
        s->kd[s->nkeyed++] = (struct vol_keyed){.pos = i, .ref = 0, .fp = fp};
    }
    if (tier_from == TIER_BATCH_MAX)
        return 0;
    /* Local finds may follow tier candidates in kd[]: keep them in place,
     * ask the tiers for the ref-less ones, then drop the ones not found. */
    *tier_blocks += ask_tiers(v, s, buf, first, tier_from);
    unsigned w = 0;
    for (unsigned k = 0; k < s->nkeyed; k++) {
        struct vol_keyed *kd = &s->kd[k];
        if (kd->ref || !bitmap_test(s->todo, todo_pos(s, first, kd->pos)))
            s->kd[w++] = *kd;
    }
    s->nkeyed = w;
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
