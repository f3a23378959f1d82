/* The cache's unit: fixed 4 KiB blocks. Every layer that splits I/O into
 * cache blocks uses these constants and helpers, never its own copies. */
#ifndef SHOAL_CORE_BLOCK_H
#define SHOAL_CORE_BLOCK_H

#include <stdint.h>

#define BLOCK_SHIFT 12
#define BLOCK_SIZE  (1u << BLOCK_SHIFT)
#define BLOCK_MASK  ((uint64_t)BLOCK_SIZE - 1)

static inline uint64_t block_of(uint64_t off)
{
    return off >> BLOCK_SHIFT;
}
static inline uint64_t block_start(uint64_t blk)
{
    return blk << BLOCK_SHIFT;
}

#endif
