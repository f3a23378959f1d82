/* W-TinyLFU eviction with a SIEVE main queue (after Einziger, Friedman and
 * Manes, "TinyLFU", ACM ToS 2017, and Zhang et al., NSDI'24): shoal's
 * default.
 *
 * New contents enter a small FIFO window (1% of the shard). When the window
 * is full its oldest entry is a candidate for the main queue, and the main
 * queue's SIEVE victim is its rival: the one a count-min sketch says was
 * used more often recently wins, the other is evicted, and a tie keeps the
 * incumbent. So a one-pass scan, whose blocks are seen once, never displaces
 * anything in main, and a loop or a boot storm larger than the cache keeps a
 * fixed part of itself instead of cycling everything out (LRU, SIEVE and ARC
 * miss every block of a loop 1.25x the cache).
 *
 * The sketch counts every insert and hit of a content's key, also of keys
 * long evicted (it is the ghost: a block that comes back has a count), and
 * halves all counts every 10 x capacity events so old popularity fades. A
 * content several directory cells map (dedup: clones reading one gold image)
 * is worth more: its reference count beyond the first is added to its count.
 *
 * A hit costs a sketch update and a visited bit (no list move). Memory: 8
 * bytes of sketch per block of shard capacity (16 four-bit counters a word),
 * allocated at init and at a resize, never per I/O. Per entry: the list
 * links and 2 policy bits. */
#include "core/evict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define IN_MAIN 0x1u
#define VISITED 0x2u

/* Halve the counts after this many events per block of capacity. */
#define SAMPLE_FACTOR 10u
/* The dedup bonus is at most this (a counter's range is 0..15). */
#define SHARED_BONUS_MAX 8u

struct wtlfu {
    struct store_entry *e;
    struct evict_list win, main;
    uint32_t capacity, win_target;
    uint32_t hand; /* main's SIEVE hand; STORE_NONE: from the oldest */
    uint64_t *sketch;
    uint32_t smask; /* words - 1 */
    uint32_t samples, sample_max;
};

/* ---- count-min sketch: 4 four-bit counters per key in 4 words ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Word and nibble of counter j of key k. */
static void slot_of(const struct wtlfu *w, uint64_t h, unsigned j, uint32_t *word, unsigned *shift)
{
    uint32_t lo = (uint32_t)h, hi = (uint32_t)(h >> 32) | 1;
    *word = (lo + j * hi) & w->smask;
    *shift = (unsigned)((h >> (40 + j * 4)) & 15u) * 4u;
}

static unsigned sketch_freq(const struct wtlfu *w, uint32_t key)
{
    if (!w->sketch)
        return 0;
    uint64_t h = mix64(key);
    unsigned f = 15;
    for (unsigned j = 0; j < 4; j++) {
        uint32_t word;
        unsigned sh;
        slot_of(w, h, j, &word, &sh);
        unsigned c = (unsigned)(w->sketch[word] >> sh) & 15u;
        if (c < f)
            f = c;
    }
    return f;
}

static void sketch_halve(struct wtlfu *w)
{
    for (uint32_t i = 0; i <= w->smask; i++)
        w->sketch[i] = (w->sketch[i] >> 1) & 0x7777777777777777ull;
    w->samples /= 2;
}

/* Conservative update: only the counters at the minimum grow, which keeps
 * a key's estimate from being inflated by its neighbours' traffic. */
static void sketch_inc(struct wtlfu *w, uint32_t key)
{
    if (!w->sketch)
        return;
    uint64_t h = mix64(key);
    unsigned f = sketch_freq(w, key);
    if (f < 15) {
        for (unsigned j = 0; j < 4; j++) {
            uint32_t word;
            unsigned sh;
            slot_of(w, h, j, &word, &sh);
            if (((w->sketch[word] >> sh) & 15u) == f)
                w->sketch[word] += 1ull << sh;
        }
    }
    if (++w->samples >= w->sample_max)
        sketch_halve(w);
}

static int sketch_alloc(struct wtlfu *w, uint32_t capacity)
{
    uint32_t n = (uint32_t)round_up_pow2_u64(capacity < 16 ? 16 : capacity);
    uint64_t *t = calloc(n, sizeof *t);
    if (!t)
        return -ENOMEM;
    free(w->sketch);
    w->sketch = t;
    w->smask = n - 1;
    w->samples = 0;
    return 0;
}

/* ---- the policy ---- */

static void set_capacity(struct wtlfu *w, uint32_t capacity)
{
    w->capacity = capacity;
    w->win_target = capacity / 100 ? capacity / 100 : 1;
    uint64_t m = (uint64_t)capacity * SAMPLE_FACTOR;
    w->sample_max = m > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)(m ? m : SAMPLE_FACTOR);
}

static int wt_init(void *st, struct store_entry *entries, uint32_t capacity, uint32_t max)
{
    struct wtlfu *w = st;
    (void)max;
    memset(w, 0, sizeof *w);
    w->e = entries;
    evict_list_init(&w->win);
    evict_list_init(&w->main);
    w->hand = STORE_NONE;
    set_capacity(w, capacity);
    return sketch_alloc(w, capacity);
}

static void wt_fini(void *st)
{
    struct wtlfu *w = st;
    free(w->sketch);
    w->sketch = NULL;
}

static void wt_resize_locked(void *st, uint32_t capacity)
{
    struct wtlfu *w = st;
    set_capacity(w, capacity);
    /* A new sketch forgets the counts; keep the old one (a coarser hint)
     * if it is the same size or none can be had. */
    if (round_up_pow2_u64(capacity < 16 ? 16 : capacity) != (uint64_t)w->smask + 1)
        (void)sketch_alloc(w, capacity);
}

static void to_main(struct wtlfu *w, uint32_t idx)
{
    struct store_entry *en = &w->e[idx];
    evict_list_unlink(&w->win, w->e, idx);
    entry_set_pbits(en, IN_MAIN | (entry_pbits(en) & VISITED));
    evict_list_push_tail(&w->main, w->e, idx);
}

static void wt_insert_locked(void *st, uint32_t idx)
{
    struct wtlfu *w = st;
    entry_set_pbits(&w->e[idx], 0);
    sketch_inc(w, w->e[idx].key);
    evict_list_push_tail(&w->win, w->e, idx);
    /* Until main is full, the window's overflow goes there unopposed. */
    if (w->win.len > w->win_target && w->main.len + w->win_target < w->capacity)
        to_main(w, w->win.head);
}

static void wt_hit_locked(void *st, uint32_t idx)
{
    struct wtlfu *w = st;
    struct store_entry *en = &w->e[idx];
    sketch_inc(w, en->key);
    uint32_t b = entry_pbits(en);
    if (!(b & VISITED))
        entry_set_pbits(en, b | VISITED);
}

static void wt_remove_locked(void *st, uint32_t idx)
{
    struct wtlfu *w = st;
    if (entry_pbits(&w->e[idx]) & IN_MAIN) {
        if (w->hand == idx)
            w->hand = w->e[idx].next;
        evict_list_unlink(&w->main, w->e, idx);
    } else {
        evict_list_unlink(&w->win, w->e, idx);
    }
}

/* Main's SIEVE victim, left in place: the first unvisited entry from the
 * hand towards newer ones, clearing visited bits on the way. */
static uint32_t main_candidate(struct wtlfu *w)
{
    uint32_t idx = w->hand != STORE_NONE ? w->hand : w->main.head;
    for (;;) {
        struct store_entry *en = &w->e[idx];
        uint32_t b = entry_pbits(en);
        if (!(b & VISITED))
            break;
        entry_set_pbits(en, b & ~VISITED);
        idx = en->next != STORE_NONE ? en->next : w->main.head;
    }
    w->hand = idx;
    return idx;
}

/* An entry's worth: its recent uses, plus one per extra directory
 * reference (each cell mapping it will read it). */
static unsigned worth(const struct wtlfu *w, uint32_t idx)
{
    const struct store_entry *en = &w->e[idx];
    uint32_t refs = entry_refs(en);
    unsigned bonus = refs > 1 ? refs - 1 : 0;
    return sketch_freq(w, en->key) + (bonus < SHARED_BONUS_MAX ? bonus : SHARED_BONUS_MAX);
}

static uint32_t main_take(struct wtlfu *w, uint32_t idx)
{
    w->hand = w->e[idx].next;
    evict_list_unlink(&w->main, w->e, idx);
    return idx;
}

static uint32_t wt_evict_locked(void *st)
{
    struct wtlfu *w = st;
    if (w->win.len > 0 && (w->win.len >= w->win_target || w->main.len == 0)) {
        uint32_t c = w->win.head;
        if (w->main.len == 0) {
            evict_list_unlink(&w->win, w->e, c);
            return c;
        }
        uint32_t v = main_candidate(w);
        /* Without a sketch every count is 0: admit, as plain SIEVE would. */
        if (!w->sketch || worth(w, c) > worth(w, v)) {
            main_take(w, v);
            to_main(w, c);
            return v;
        }
        evict_list_unlink(&w->win, w->e, c);
        return c;
    }
    if (w->main.len == 0)
        return STORE_NONE;
    return main_take(w, main_candidate(w));
}

static size_t wt_metadata_bytes_locked(void *st)
{
    struct wtlfu *w = st;
    return sizeof *w + (w->sketch ? ((size_t)w->smask + 1) * sizeof(uint64_t) : 0);
}

const struct evict_ops evict_wtinylfu_ops = {
    .name = "wtinylfu",
    .state_size = sizeof(struct wtlfu),
    .init = wt_init,
    .fini = wt_fini,
    .resize_locked = wt_resize_locked,
    .insert_locked = wt_insert_locked,
    .hit_locked = wt_hit_locked,
    .remove_locked = wt_remove_locked,
    .evict_locked = wt_evict_locked,
    .metadata_bytes_locked = wt_metadata_bytes_locked,
};
