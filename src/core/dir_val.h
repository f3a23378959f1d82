/* Directory values: what a directory cell holds and dir_lookup answers (a
 * store reference, DIR_ZERO, DIR_REMEMBERED or 0), and the block grouping
 * every directory shares. See dir.h. */
#ifndef SHOAL_CORE_DIR_VAL_H
#define SHOAL_CORE_DIR_VAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/store.h"

#define DIR_STRIPES     1024u
#define DIR_GROUP_SHIFT 3
#define DIR_ZERO        UINT64_MAX
#define DIR_REMEMBERED  (UINT64_MAX - 1) /* dir_lookup: no local cell, key remembered */
/* 16 PiB volumes, less a group: the last block's key must stay below 2^32. */
#define DIR_MAX_BLOCKS ((UINT64_C(1) << 42) - 8)

static inline uint64_t dir_val(struct store_ref r)
{
    return ((uint64_t)r.gen << 32) | r.idx;
}
static inline struct store_ref dir_ref(uint64_t v)
{
    return (struct store_ref){(uint32_t)v, (uint32_t)(v >> 32)};
}
static inline bool dir_val_is_ref(uint64_t v)
{
    return v != 0 && v != DIR_ZERO && v != DIR_REMEMBERED;
}

#endif
