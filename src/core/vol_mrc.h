/* The data path's notes to the miss-ratio curves (core/mrc.h): a volume's
 * own curve and the whole cache's, both on the volume (v->mrc, v->gmrc).
 * Core-internal: volume.c's hit paths, install.c and vol_key.c call these;
 * each is a test or two when the content is not sampled. */
#ifndef SHOAL_CORE_VOL_MRC_H
#define SHOAL_CORE_VOL_MRC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/mrc.h"
#include "core/volume.h"

/* Reads of stored content, every one (hit paths count per request), and
 * whether the cache served them (hits) or they were fetched (misses,
 * counted as they are installed). */
static inline void vol_mrc_reads(struct volume *v, uint64_t blocks, bool hit)
{
    if (!blocks)
        return;
    if (v->mrc)
        mrc_reads(v->mrc, blocks, hit);
    if (v->gmrc)
        mrc_reads(v->gmrc, blocks, hit);
}

/* An access to stored content with this key (mrc.h), for both curves
 * (the caller counts the read itself with vol_mrc_reads). */
static inline void vol_mrc_note(struct volume *v, uint32_t key, enum mrc_access kind)
{
    if (v->mrc && mrc_sampled(v->mrc, key))
        mrc_access(v->mrc, key, kind);
    if (v->gmrc && mrc_sampled(v->gmrc, key))
        mrc_access(v->gmrc, key, kind);
}

static inline void vol_mrc_zero_reads(struct volume *v, uint64_t blocks)
{
    if (!blocks)
        return;
    if (v->mrc)
        mrc_zero_reads(v->mrc, blocks);
    if (v->gmrc)
        mrc_zero_reads(v->gmrc, blocks);
}

#endif
