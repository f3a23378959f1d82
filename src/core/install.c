/* See install.h. */
#include "core/install.h"

#include "common/stats.h"
#include "common/util.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/fingerprint.h"
#include "core/store.h"
#include "core/tier.h"
#include "core/volume.h"
#include "core/vol_mrc.h"

static void install(struct volume *v, uint64_t blk, const uint8_t *data, const struct fpkey *fp,
                    struct dir_tickets *tk)
{
    struct store_ref ref;
    if (store_get_or_insert_key(v->store, fp, data, &ref) < 0)
        return; /* no room or too many references: stays a miss */
    int r = dir_install(v->dir, blk, tk, dir_val(ref));
    if (r == DIR_REFUSED)
        STAT_ADD(v->c.insert_races, 1);
    if (r != DIR_HELD)
        store_unref(v->store, ref);
}

void vol_install_keyed(struct volume *v, uint64_t blk, const uint8_t *data, const struct fpkey *fp,
                       struct dir_tickets *tk)
{
    install(v, blk, data, fp, tk);
    /* The curves after the install: the next request may want the block. */
    vol_mrc_note(v, (uint32_t)fpkey_hash64(fp), MRC_READ);
    vol_mrc_reads(v, 1);
}

void vol_install(struct volume *v, uint64_t blk, const uint8_t *data, struct dir_tickets *tk,
                 unsigned flags)
{
    if (buf_is_zero(data, BLOCK_SIZE)) {
        if (flags & INSTALL_READ)
            vol_mrc_zero_reads(v, 1);
        if (dir_install(v->dir, blk, tk, DIR_ZERO) == DIR_REFUSED)
            STAT_ADD(v->c.insert_races, 1);
        return;
    }
    struct fp full;
    if (fp_compute(data, &full) < 0)
        return;
    struct fpkey fp = fpkey_of(&full);
    install(v, blk, data, &fp, tk);
    vol_mrc_note(v, (uint32_t)fpkey_hash64(&fp), flags & INSTALL_READ ? MRC_READ : MRC_WRITE);
    if (flags & INSTALL_READ)
        vol_mrc_reads(v, 1);
    if (flags & INSTALL_TIERS)
        for (unsigned t = 0; t < v->ntiers; t++)
            tier_put(v->tiers[t], &fp, data);
}
