/* Read-ahead's budget: read-ahead must pay for itself in back end bytes.
 * A window's neighbours cost back end bytes that only pay off if clients
 * read them; a stream's last window is partly wasted, and a cache that
 * evicts a neighbour before its read wastes it whole (the fiu-mail trace:
 * 0.6% more back end bytes with read-ahead than without, before this).
 *
 * So every block read ahead is paid from a credit when it is fetched and
 * paid back, with a bonus of RA_BONUS (1/64 block), when a read hits it. A
 * window the credit cannot pay for is not read. So that a volume whose
 * credit ran out can start again, a miss that continues a sequential
 * stream far enough to read ahead (one a window could have saved) earns
 * RA_SEQ_BONUS (1/1024 block). The blocks read ahead and never read are
 * thus bounded, whatever the workload, by the initial credit plus 1/64
 * block per block that was of use plus 1/1024 per sequential miss: on
 * streams that stop just after they qualify, 0.1% of the client's bytes.
 *
 * Each window size (4 blocks, 8, ... up to the volume's read-ahead) has a
 * credit of its own, capped at RA_CREDIT_WINDOWS of its windows, and a
 * stream whose window size cannot pay falls back to the largest smaller
 * one that can: streams that stop after a few blocks make the large
 * windows back off but keep the small ones. A credit that is full spills
 * over into the next larger size, so trust is earned from the smallest
 * window up: a volume starts with one 4-block window's credit only (a
 * random workload wastes at most that), and a long stream reaches the
 * largest window once smaller ones paid off. A long good phase cannot pay
 * for a long bad one (the caps).
 *
 * Which blocks are still unread: a direct-mapped table of recent
 * read-ahead blocks (number + 1, and the window size that paid; 0 empty).
 * An entry pushed out by another one, or a block evicted before its read
 * (the read misses and drops the entry), is never paid back: counted as
 * wasted, the safe side.
 *
 * Thread-safety: relaxed atomics. Two readers racing on a credit may both
 * spend it (the overdraft is at most one window per reader; credits are
 * signed); only the reader that clears an entry pays it back. */
#ifndef SHOAL_CORE_RA_BUDGET_H
#define SHOAL_CORE_RA_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#define RA_PENDING_BITS 10
#define RA_PENDING      (1u << RA_PENDING_BITS)

/* Window sizes: 4 << class blocks, up to VOL_READAHEAD_MAX (64 blocks). */
#define RA_CLASSES    5
#define RA_MIN_WINDOW 4u
/* Credits count 1/RA_UNIT blocks. */
#define RA_UNIT           1024
#define RA_BONUS          (RA_UNIT / 64)
#define RA_SEQ_BONUS      (RA_UNIT / 1024)
#define RA_CREDIT_WINDOWS 4

#define RA_BLK_MASK    ((UINT64_C(1) << 56) - 1)
#define RA_CLASS_SHIFT 56

struct ra_budget {
    int64_t credit[RA_CLASSES];   /* atomics, in 1/RA_UNIT blocks */
    uint64_t pending[RA_PENDING]; /* atomics: blocks read ahead, not read yet */
};

static inline unsigned ra_pending_slot(uint64_t blk)
{
    return (unsigned)((blk * 0x9e3779b97f4a7c15ull) >> (64 - RA_PENDING_BITS));
}

/* The window of size class c for a volume whose largest is ra_blocks. */
static inline uint32_t ra_class_window(uint32_t ra_blocks, unsigned c)
{
    uint32_t w = RA_MIN_WINDOW << c;
    return w < ra_blocks ? w : ra_blocks;
}

/* The largest class a volume uses: the one whose window is ra_blocks. */
static inline unsigned ra_top_class(uint32_t ra_blocks)
{
    unsigned c = 0;
    while (c + 1 < RA_CLASSES && (RA_MIN_WINDOW << c) < ra_blocks)
        c++;
    return c;
}

/* What a volume starts with: one smallest window's credit. */
static inline void ra_budget_reset(struct ra_budget *b, uint32_t ra_blocks)
{
    for (unsigned c = 0; c < RA_CLASSES; c++)
        __atomic_store_n(&b->credit[c], c ? 0 : (int64_t)ra_class_window(ra_blocks, 0) * RA_UNIT,
                         __ATOMIC_RELAXED);
}

/* Credit class c with units; what its cap leaves spills into the next. */
static inline void ra_credit_add(struct ra_budget *b, uint32_t ra_blocks, unsigned c, int64_t units)
{
    unsigned top = ra_top_class(ra_blocks);
    for (; c <= top && units > 0; c++) {
        int64_t cap = (int64_t)ra_class_window(ra_blocks, c) * RA_CREDIT_WINDOWS * RA_UNIT;
        int64_t cur = __atomic_load_n(&b->credit[c], __ATOMIC_RELAXED), n;
        do {
            n = cur + units < cap ? cur + units : cap;
        } while (n > cur && !__atomic_compare_exchange_n(&b->credit[c], &cur, n, true,
                                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED));
        units -= n > cur ? n - cur : 0;
    }
}

/* Whether class c's credit pays for `extra` neighbours; if so they are paid. */
static inline bool ra_credit_spend(struct ra_budget *b, unsigned c, uint32_t extra)
{
    int64_t cost = (int64_t)extra * RA_UNIT;
    if (__atomic_load_n(&b->credit[c], __ATOMIC_RELAXED) < cost)
        return false;
    __atomic_fetch_sub(&b->credit[c], cost, __ATOMIC_RELAXED);
    return true;
}

/* blk was read ahead in a window of class c (after the fetch succeeded). */
static inline void ra_pending_note(struct ra_budget *b, uint64_t blk, unsigned c)
{
    __atomic_store_n(&b->pending[ra_pending_slot(blk)], (blk + 1) | ((uint64_t)c << RA_CLASS_SHIFT),
                     __ATOMIC_RELAXED);
}

/* Clear blk's entry if it is still there: whether this caller cleared it,
 * and its entry in *e. */
static inline bool ra_pending_take(struct ra_budget *b, uint64_t blk, uint64_t *e)
{
    uint64_t *p = &b->pending[ra_pending_slot(blk)];
    *e = __atomic_load_n(p, __ATOMIC_RELAXED);
    return (*e & RA_BLK_MASK) == blk + 1 &&
           __atomic_compare_exchange_n(p, e, 0, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* A read found blk in RAM: if it was read ahead and not read since, it
 * paid off, and its class is paid back. Returns whether it did. */
static inline bool ra_pending_hit(struct ra_budget *b, uint32_t ra_blocks, uint64_t blk)
{
    uint64_t e;
    if (!ra_pending_take(b, blk, &e))
        return false;
    ra_credit_add(b, ra_blocks, (unsigned)(e >> RA_CLASS_SHIFT), RA_UNIT + RA_BONUS);
    return true;
}

/* A read missed blk: if it was read ahead, it left RAM unread (wasted). */
static inline void ra_pending_miss(struct ra_budget *b, uint64_t blk)
{
    uint64_t e;
    (void)ra_pending_take(b, blk, &e);
}

#endif
