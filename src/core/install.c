/* See install.h. */
#include "core/install.h"

#include "common/stats.h"
#include "common/util.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/fingerprint.h"
#include "core/store.h"
#include "core/tier.h"
#include "core/vol_map.h"
#include "core/volume.h"
#include "core/vol_mrc.h"

/* Returns dir_install's answer (DIR_REFUSED when not stored either). */
static int install(struct volume *v, uint64_t blk, const uint8_t *data, const struct fpkey *fp,
                   struct dir_tickets *tk, unsigned heat, bool ahead)
{
    struct store_ref ref;
    int sr = ahead ? store_get_or_insert_ahead(v->store, fp, data, &ref)
                   : store_get_or_insert_heat(v->store, fp, data, heat, &ref);
    if (sr < 0)
        return DIR_REFUSED; /* no room or too many references: stays a miss */
    int r = dir_install(v->dir, blk, tk, dir_val(ref));
    if (r == DIR_REFUSED)
        STAT_ADD(v->c.insert_races, 1);
    if (r != DIR_HELD)
        store_unref(v->store, ref);
    return r;
}

void vol_install_keyed(struct volume *v, uint64_t blk, const uint8_t *data, const struct fpkey *fp,
                       struct dir_tickets *tk)
{
    install(v, blk, data, fp, tk, 0, false);
    /* The curves after the install: the next request may want the block. */
    vol_mrc_note(v, (uint32_t)fpkey_hash64(fp), MRC_READ);
    vol_mrc_reads(v, 1, false);
}

/* The part after the hash (data is not all zeros). */
static void install_hashed(struct volume *v, uint64_t blk, const uint8_t *data,
                           const struct fp *full, struct dir_tickets *tk, unsigned flags,
                           unsigned heat)
{
    struct fpkey fp = fpkey_of(full);
    /* The map learns only what the race rule let in: content fetched
     * before a change (an invalidate) must not be published as current. */
    if (install(v, blk, data, &fp, tk, heat, flags & INSTALL_AHEAD) != DIR_REFUSED &&
        (flags & INSTALL_TIERS))
        vol_map_publish(v, blk, &fp);
    vol_mrc_note(v, (uint32_t)fpkey_hash64(&fp), flags & INSTALL_READ ? MRC_READ : MRC_WRITE);
    if (flags & INSTALL_READ)
        vol_mrc_reads(v, 1, false);
    if (flags & INSTALL_TIERS)
        for (unsigned t = 0; t < v->ntiers; t++)
            tier_put(v->tiers[t], &fp, data);
}

static void install_zero(struct volume *v, uint64_t blk, struct dir_tickets *tk, unsigned flags)
{
    if (flags & INSTALL_READ)
        vol_mrc_zero_reads(v, 1);
    if (dir_install(v->dir, blk, tk, DIR_ZERO) == DIR_REFUSED)
        STAT_ADD(v->c.insert_races, 1);
    else if (flags & INSTALL_TIERS)
        vol_map_publish(v, blk, vol_map_zero_key());
}

static void install_one(struct volume *v, uint64_t blk, const uint8_t *data, struct dir_tickets *tk,
                        unsigned flags, unsigned heat)
{
    if (buf_is_zero(data, BLOCK_SIZE)) {
        install_zero(v, blk, tk, flags);
        return;
    }
    struct fp full;
    if (fp_compute(data, &full) == 0)
        install_hashed(v, blk, data, &full, tk, flags, heat);
}

void vol_install_flush(struct volume *v, struct vol_installs *in, struct dir_tickets *tk)
{
    if (!in->held)
        return;
    in->held = false;
    install_one(v, in->blk, in->data, tk, in->flags, in->heat);
}

void vol_install_add(struct volume *v, struct vol_installs *in, uint64_t blk, const uint8_t *data,
                     struct dir_tickets *tk, unsigned flags, unsigned heat)
{
    if (buf_is_zero(data, BLOCK_SIZE)) {
        vol_install_flush(v, in, tk); /* in order: the held one first */
        install_zero(v, blk, tk, flags);
        return;
    }
    if (!in->held) {
        *in = (struct vol_installs){
            .blk = blk, .data = data, .flags = flags, .heat = heat, .held = true};
        return;
    }
    in->held = false;
    struct fp fa, fb;
    if (fp_compute2(in->data, data, &fa, &fb) < 0)
        return;
    install_hashed(v, in->blk, in->data, &fa, tk, in->flags, in->heat);
    install_hashed(v, blk, data, &fb, tk, flags, heat);
}
