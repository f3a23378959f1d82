/* See vol_move.h. */
#include "core/vol_move.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/fingerprint.h"
#include "core/store.h"
#include "core/vol_map.h"
#include "core/volume.h"

/* Puts queued between two waits: the tier's put queue (16 MiB by
 * default) must not overflow and drop them. */
#define EXPORT_BATCH 1024
#define EXPORT_RANGE 64
#define IMPORT_TRIES 3

int vol_move_identity(const char *name, uint64_t gen, struct tier_map_id *out)
{
    char g[32];
    snprintf(g, sizeof g, "%016" PRIx64, gen);
    return vol_map_identity(name, 0, "move", g, out);
}

static struct tier *map_tier_of(struct volume *v)
{
    for (unsigned i = 0; i < v->ntiers; i++)
        if (tier_has_map(v->tiers[i]))
            return v->tiers[i];
    return NULL;
}

static int flush_tiers(struct volume *v, uint32_t timeout_ms)
{
    for (unsigned i = 0; i < v->ntiers; i++) {
        struct tier *t = v->tiers[i];
        int r = t->ops->flush ? t->ops->flush(t, timeout_ms) : 0;
        if (r < 0)
            return r;
    }
    return 0;
}

/* The key of a live block, and its content offered to the tiers (a
 * written block never went there). False when it went stale meanwhile. */
static bool live_key(struct volume *v, uint64_t val, struct fpkey *fp)
{
    const uint8_t *p;
    if (store_pin(v->store, dir_ref(val), &p) < 0)
        return false;
    struct fp full;
    int r = fp_compute(p, &full);
    if (r == 0) {
        *fp = fpkey_of(&full);
        for (unsigned i = 0; i < v->ntiers; i++)
            tier_put(v->tiers[i], fp, p);
    }
    store_unpin(v->store, (uint32_t)val);
    return r == 0;
}

int volume_map_export(struct volume *v, const struct tier_map_id *id, uint32_t timeout_ms,
                      uint64_t *blocks)
{
    struct tier *mt = map_tier_of(v);
    *blocks = 0;
    if (!mt)
        return -ENOTSUP;
    /* What is queued already (a cold pass's puts can fill the queue) goes
     * first: else the export's own puts find the queue full and are
     * dropped, and the new owner reads those blocks from the back end. */
    int fr = flush_tiers(v, timeout_ms);
    if (fr < 0)
        return fr;
    uint64_t since = 0;
    for (uint64_t b0 = 0; b0 < v->nblocks; b0 += EXPORT_RANGE) {
        uint32_t n = (uint32_t)MIN((uint64_t)EXPORT_RANGE, v->nblocks - b0);
        uint64_t vals[EXPORT_RANGE];
        dir_lookup_range(v->dir, b0, n, vals);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t blk = b0 + i;
            struct fpkey fp;
            bool have = false;
            if (vals[i] == DIR_ZERO) {
                fp = *vol_map_zero_key();
                have = true;
            } else if (dir_val_is_ref(vals[i])) {
                have = live_key(v, vals[i], &fp);
            }
            if (!have && vals[i]) {
                /* Remembered, or evicted with its key still known. */
                struct dir_tickets tk;
                dir_tickets_reset(&tk);
                dir_read_ticket(v->dir, blk, &tk);
                have = dir_remembered_key(v->dir, blk, &tk, &fp);
            }
            if (!have)
                continue;
            tier_map_put(mt, id, blk, &fp);
            (*blocks)++;
            if (++since == EXPORT_BATCH) {
                since = 0;
                int r = flush_tiers(v, timeout_ms);
                if (r < 0)
                    return r;
            }
        }
    }
    return flush_tiers(v, timeout_ms);
}

int volume_map_import(struct volume *v, const struct tier_map_id *id, uint64_t *blocks)
{
    struct tier *mt = map_tier_of(v);
    *blocks = 0;
    if (!mt)
        return -ENOTSUP;
    const struct fpkey *zero = vol_map_zero_key();
    struct fpkey keys[TIER_BATCH_MAX];
    uint64_t found[TIER_BATCH_MAX / 64];
    for (uint64_t b0 = 0; b0 < v->nblocks; b0 += TIER_BATCH_MAX) {
        unsigned n = (unsigned)MIN((uint64_t)TIER_BATCH_MAX, v->nblocks - b0);
        /* A batch that failed (a timeout under load) is asked again before
         * its blocks are left to the back end. */
        int r = -EAGAIN;
        for (int tries = 0; r < 0 && tries < IMPORT_TRIES; tries++)
            r = tier_map_lookup(mt, id, b0, n, keys, found);
        if (r <= 0)
            continue;
        for (unsigned i = 0; i < n; i++) {
            if (!bitmap_test(found, i))
                continue;
            if (fpkey_equal(&keys[i], zero)) {
                struct dir_tickets tk;
                dir_tickets_reset(&tk);
                dir_read_ticket(v->dir, b0 + i, &tk);
                dir_install(v->dir, b0 + i, &tk, DIR_ZERO);
            } else {
                dir_remember(v->dir, b0 + i, &keys[i]);
            }
            (*blocks)++;
        }
    }
    return 0;
}
