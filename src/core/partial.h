/* Partial-block read misses. A read that covers only part of a block would
 * fetch the whole block to cache it: up to 8x the bytes asked for a
 * 512-byte read, and 1.5x for the unaligned 8 KiB reads of a database (the
 * tpcc trace read 1.43 array bytes per client byte that way, more than with
 * no cache). So an edge block that misses (neither in the store nor in a
 * tier) is read exactly, and not cached, unless its number is still in the
 * volume's table of recent exact reads: then it is fetched whole and
 * cached, so a small record read over and over still ends up in RAM. The
 * table is direct-mapped and lossy: a block pushed out by another costs one
 * more exact read, never wrong data. Read-ahead windows are fetched whole.
 *
 * bench/sim makes the same decision with the same table, so the simulator
 * stays the daemon. Thread-safety: relaxed atomics; two readers racing on
 * a slot at worst both read exactly, or both cache. */
#ifndef SHOAL_CORE_PARTIAL_H
#define SHOAL_CORE_PARTIAL_H

#include <stdbool.h>
#include <stdint.h>

#define PARTIAL_SEEN_BITS 10
#define PARTIAL_SEEN      (1u << PARTIAL_SEEN_BITS)

static inline unsigned partial_slot(uint64_t blk)
{
    return (unsigned)((blk * 0x9e3779b97f4a7c15ull) >> (64 - PARTIAL_SEEN_BITS));
}

/* Whether blk was read partly, and exactly, before (still in tab). */
static inline bool partial_seen(const uint64_t *tab, uint64_t blk)
{
    return __atomic_load_n(&tab[partial_slot(blk)], __ATOMIC_RELAXED) == blk + 1;
}

/* Note blk as read partly and exactly (after the read succeeded, so that
 * an attempt given up and run again is not counted twice). */
static inline void partial_note(uint64_t *tab, uint64_t blk)
{
    __atomic_store_n(&tab[partial_slot(blk)], blk + 1, __ATOMIC_RELAXED); /* 0: empty */
}

#endif
