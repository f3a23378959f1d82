/* Miss-ratio curves: what the hit ratio would be with more or less RAM.
 *
 * Miniature simulation (Waldspurger et al., USENIX ATC 2017) over spatially
 * sampled content keys (SHARDS): a content whose key hashes below the
 * threshold is sampled, at rate R; every access to a sampled content is
 * replayed through MRC_POINTS small caches, each run by the real eviction
 * policy (evict.h) with R x (a multiple of the cache size) entries. Each
 * small cache's read miss ratio estimates the whole cache's at that size.
 * Keyed by content, not by block address, so dedup counts: two volumes
 * reading one content share its hits, as the store does.
 *
 * What counts: reads of stored content (hits and misses) and inserts by
 * writes (they take room; they are not reads). Zero blocks cost nothing in
 * the cache and always hit; they are counted apart and mixed back in.
 * The curve is pinned at the cache's own size: the real cache's misses
 * over the same reads (mrc_reads) set the x1 point, the others keep their
 * distance from it (mrc_get says why).
 *
 * Cost: one hash test per block accessed; a sampled one (1 in 1/R) takes
 * the curve's mutex and touches each small cache. Memory is fixed at
 * creation: the rate is chosen so the largest small cache has at most
 * max_entries entries (fixed-size SHARDS), and reported (mrc_bytes).
 *
 * Lock rules: every function takes the curve's own mutex except
 * mrc_sampled (lock-free, reads the threshold fixed at create/resize). */
#ifndef SHOAL_CORE_MRC_H
#define SHOAL_CORE_MRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evict_ops;
struct mrc;

/* Cache sizes simulated, as multiples of the current cache, in eighths. */
#define MRC_POINTS 8
extern const unsigned mrc_eighths[MRC_POINTS]; /* 1/8 1/4 1/2 3/4 1 3/2 2 4 */
#define MRC_X1 4 /* the point at the cache's own size (mrc_eighths[MRC_X1] == 8) */

enum mrc_access { MRC_READ, MRC_WRITE };

/* cache_blocks: the cache's size now, in blocks. max_entries bounds the
 * largest small cache (the memory). 0 or -ENOMEM / -EINVAL. */
int mrc_create(const struct evict_ops *policy, uint64_t cache_blocks, uint32_t max_entries,
               struct mrc **out);
void mrc_destroy(struct mrc *m);
/* The cache was resized: new small caches around the new size, warmed by
 * the last sampled accesses (2 x max_entries of them, kept for this), and
 * the counts start over. It holds the curve's mutex throughout, so sampled
 * accesses wait (about 9 ms for the whole cache's curve on the development
 * VM, under 1 ms for a volume's): an admin's resize, not an I/O path. */
int mrc_resize(struct mrc *m, uint64_t cache_blocks);

/* True when the content with this key (the low 32 bits of fpkey_hash64,
 * what store entries keep) is sampled. */
static inline bool mrc_sampled(const struct mrc *m, uint32_t key);

/* An access to a sampled content (call only when mrc_sampled). */
void mrc_access(struct mrc *m, uint32_t key, enum mrc_access kind);
/* Reads of all-zero blocks (every one, not sampled): always hits. */
void mrc_zero_reads(struct mrc *m, uint64_t blocks);
/* Reads of stored content, every one, sampled or not, and whether the
 * real cache served them (hit) or fetched them: what the sampled reads
 * stand for, and where the curve is pinned at the cache's own size (see
 * mrc_get). */
void mrc_reads(struct mrc *m, uint64_t blocks, bool hit);

struct mrc_point {
    uint64_t cache_blocks; /* the size simulated */
    double hit_ratio;      /* predicted share of read blocks served from RAM */
};
struct mrc_curve {
    struct mrc_point p[MRC_POINTS];
    uint64_t sampled_reads; /* how much the estimate rests on */
    double rate;            /* R */
    size_t bytes;           /* memory of the curve */
};
void mrc_get(struct mrc *m, struct mrc_curve *out);
size_t mrc_memory(struct mrc *m);

/* ---- inline ---- */
struct mrc_public {
    uint32_t threshold; /* sampled when mix(key) < threshold */
};

static inline uint32_t mrc_mix(uint32_t key)
{
    /* Store keys are already hash bits, but a multiply keeps sampling
     * independent of the store's shard and bucket choice (low bits). */
    return (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32);
}

static inline bool mrc_sampled(const struct mrc *m, uint32_t key)
{
    const struct mrc_public *p = (const struct mrc_public *)m;
    return mrc_mix(key) < __atomic_load_n(&p->threshold, __ATOMIC_RELAXED);
}

#endif
