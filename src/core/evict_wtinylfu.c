/* W-TinyLFU eviction with a SIEVE main queue and an adaptive window (after
 * Einziger, Friedman and Manes, "TinyLFU", ACM ToS 2017, and Zhang et al.,
 * NSDI'24). The default policy (evict.h says why; bench/README.md, "Policy
 * simulator", has the figures).
 *
 * New contents enter a window, a CLOCK queue (a hit sets a bit; a marked
 * entry at the head goes round once more). When the window is full its
 * oldest unmarked entry is a candidate for the main queue, and main's SIEVE
 * victim is its rival: the candidate gets in only if a count-min sketch says
 * it was used more than once more often than the victim; the loser is
 * evicted. So a one-pass scan, whose blocks are seen once, never displaces
 * anything in main, and a loop or a boot storm larger than the cache keeps a
 * fixed part of itself instead of cycling everything through (LRU, SIEVE and
 * ARC miss every block of a loop 1.25x the cache; the margin of one keeps
 * the sketch's noise from swapping blocks of equal worth).
 *
 * Room in a full main that a removal left (a rewrite drops the block's
 * old content, wherever it was) goes only to a candidate used more often
 * than main's victim, which stays (nothing is displaced, so no margin);
 * a loser waits in the window, over its size, and is the next eviction's
 * candidate. Filled unopposed, as while main first fills, each rewrite of
 * a block held in main let the next cold block in, ahead of the rewritten
 * one (daemon-sim's 20% write mix at 10% of its working set: 0.699, 0.011
 * behind S3-FIFO; now 0.665). At most HOLE_WAIT candidates wait; letting
 * 8, or a slice's worth, wait drove the window up on vdi (0.01 to 0.07
 * worse).
 *
 * The window's size adapts (1% to 99% of the shard): two ghost slices
 * remember the keys of the last capacity/32 candidates refused and of the
 * last capacity/32 main victims. A refused key that comes back means a
 * larger window would have kept it: the window grows; a main victim that
 * comes back shrinks it. A move is 4 blocks after a verdict the other way;
 * while verdicts agree, a grow is a block longer than the last (up to 16)
 * and a shrink twice as long (up to 16), so the window crosses the shard
 * in fewer verdicts when the traffic changes (the moving hot set: 0.009
 * behind LRU with steps of 4, now 0.006; vdi 0.008 behind SIEVE, now
 * 0.004). It comes down faster than it goes up: growing as fast (doubling,
 * or 4 blocks more a step) cost vdi 0.007 to 0.009 and zipf 0.004.
 * A move is also at least a share of the side it enlarges: 1/16 of the
 * window for a grow, 1/96 of main for a shrink. The side the verdicts
 * have made large then grows in fewer of them, and a verdict the other
 * way takes little from it: the moving hot set climbed from 1% to 99% in
 * 16000 inserts a shard, missing 0.0026 more than with the window fixed
 * at 99% (8000 with these shares and 1/64 of main), and vdi's small
 * window comes back down from a stray grow sooner (4096 blocks: shift
 * 0.3289 -> 0.3270, LRU 0.3231; vdi 0.2123 -> 0.2104; at 6144, where
 * vdi's best window is about 20%, vdi 0.0659 -> 0.0698, S3-FIFO 0.0631).
 * Unlike the plain steps, the shares grow with the shard (shift at 262144
 * blocks, 64 shards: 0.3232 -> 0.2974, LRU 0.2842). The shares without
 * the lengthening did not climb (1/16 and 1/64: shift 0.3294); a grow of
 * 1/8 of the window ran vdi's window away (0.29, also against 1/128 of
 * main), and 1/16 with no share for a shrink cost vdi 0.022.
 * Recency-bound traffic (a block written, then read back soon; a hot set
 * that moves) drives the window up to plain CLOCK; frequency-bound traffic
 * and loops keep it small. The slices are short so that a loop's returns
 * (after more than a window's worth of refusals) do not count.
 *
 * The sketch counts every insert and hit of a content's key, also of keys
 * long evicted (a block that comes back has a count), and halves all counts
 * every 10 x capacity events so old popularity fades. A content several
 * directory cells map (dedup: clones reading one gold image) is worth more:
 * its references beyond the first count as uses. A rewritten block's new
 * content starts from the old content's count plus one for the write
 * (inherit_locked): counted by content alone, every write of a hot block
 * restarted it at one, and a write mix whose blocks are written and then
 * read back lost 0.05 to 0.12 of miss ratio to LRU, SIEVE and ARC.
 *
 * A hit costs a sketch update and a bit (no list move). Memory: a word of
 * 16 four-bit counters per two blocks held (at least 256 words), doubled
 * as the shard fills (so a cache partly filled does not pay for its
 * capacity): 4 to 8 bytes per block held (8 just after a doubling, 4 in a
 * full shard of more than 512 blocks), and, from the
 * first eviction on, at most 0.5 bytes of ghost slices per block of
 * capacity; allocated at init, at a resize, at the first eviction and at
 * the few insertions that double the sketch, never otherwise. (A word per block,
 * as Caffeine sizes it, missed less on the small write mixes, by up to
 * 0.02, but put the metadata per cached block over its 64-byte budget.)
 * Per entry: the list links and 2 policy bits. */
#include "core/evict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define IN_MAIN 0x1u
#define VISITED 0x2u

/* Halve the counts after this many events per block of capacity. */
#define SAMPLE_FACTOR 10u
/* A candidate needs more than the victim's count plus this. */
#define ADMIT_MARGIN 1u
/* The dedup bonus is at most this (a counter's range is 0..15). */
#define SHARED_BONUS_MAX 8u
/* Ghost slices: capacity / SLICE_DIV keys each; the window moves by
 * WIN_STEP blocks at a ghost hit after one the other way, by up to
 * WIN_STEP_MAX while they agree. */
#define SLICE_DIV 32u
/* Sketch: one 64-bit word (16 counters) per BLOCKS_PER_WORD blocks held,
 * at least SKETCH_MIN_WORDS a shard. With half a word per block, halving
 * every 10x rather than 20x capacity events keeps the counters from
 * saturating (measured: bench/README.md, "Policy simulator"). A small
 * cache sees many more keys than it holds between halvings (a scan brings
 * up to 10x capacity), so 16 words, once the minimum, let collisions
 * decide: daemon-sim's mixes at 1% of their working set (36 blocks) missed
 * 0.9655 (20% writes; S3-FIFO 0.9605) and 0.9696 (59%); with 256 words
 * (2 KiB a shard: nothing for a cache of any size) 0.9586 and 0.9642, and
 * 0.005 less at 10% (362 blocks). */
#define BLOCKS_PER_WORD 2u
/* Sketch increments applied together (sketch_note). */
#define SKETCH_PEND      32u
#define SKETCH_MIN_WORDS 256u
#define WIN_STEP         4u
#define WIN_STEP_MAX     16u
/* ... and by at least 1/WIN_GROW_SHARE of the window when it grows,
 * 1/WIN_SHRINK_SHARE of main when it shrinks (the header says why). */
#define WIN_GROW_SHARE   16u
#define WIN_SHRINK_SHARE 96u
/* Candidates that may wait in the window for a hole in main (above). */
#define HOLE_WAIT 4u

struct gslot {
    uint32_t tag, seq;
};

struct wtlfu {
    struct store_entry *e;
    struct evict_list win, main;
    uint32_t capacity, win_target;
    uint32_t hand; /* main's SIEVE hand; STORE_NONE: from the oldest */
    uint64_t *sketch;
    uint32_t smask; /* words - 1 */
    /* Increments not yet applied, oldest first (sketch_note). */
    uint64_t pend[SKETCH_PEND];
    uint32_t npend;
    uint32_t samples, sample_max;
    /* Ghost slices of refused candidates (gw) and main victims (gm): a
     * direct-mapped table each; a slot counts while fewer than `slice`
     * keys were put after it. */
    struct gslot *gw, *gm;
    bool evicted; /* the slices exist only after the first eviction */
    uint32_t gmask, slice, wseq, mseq;
    uint32_t step; /* the window's last move, in blocks */
    int lean;      /* its direction: 1 grew, -1 shrank, 0 none yet */
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

/* Word and nibble of counter j of the key hashed to h. A key's four
 * counters share one 64-byte line of SKETCH_LINE words (counter j in any
 * of its words, by 3 bits of h each): a hit costs one cache miss on a
 * large sketch, not four (a 1 MiB read hit is 256 keys). Lines
 * are picked by the low bits, so in a table twice as wide a key's line is
 * the same one or the one the old width further on (sketch_grow). */
#define SKETCH_LINE 8u
static void slot_of(const struct wtlfu *w, uint64_t h, unsigned j, uint32_t *word, unsigned *shift)
{
    uint32_t line = (uint32_t)h & (w->smask / SKETCH_LINE);
    *word = line * SKETCH_LINE + ((uint32_t)(h >> (32 + 3 * j)) & (SKETCH_LINE - 1));
    *shift = (unsigned)((h >> (44 + j * 4)) & 15u) * 4u;
}

/* Counter j of the key hashed to h, and where it is. */
static unsigned counter(const struct wtlfu *w, uint64_t h, unsigned j, uint32_t *word,
                        unsigned *shift)
{
    slot_of(w, h, j, word, shift);
    return (unsigned)(w->sketch[*word] >> *shift) & 15u;
}

static void sketch_flush(struct wtlfu *w);

static unsigned sketch_freq(struct wtlfu *w, uint32_t key)
{
    if (!w->sketch)
        return 0;
    sketch_flush(w);
    uint64_t h = mix64(key);
    unsigned f = 15;
    for (unsigned j = 0; j < 4; j++) {
        uint32_t word;
        unsigned sh, c = counter(w, h, j, &word, &sh);
        if (c < f)
            f = c;
    }
    return f;
}

/* O(sketch words), once per SAMPLE_FACTOR x capacity events. */
static void sketch_halve(struct wtlfu *w)
{
    for (uint32_t i = 0; i <= w->smask; i++)
        w->sketch[i] = (w->sketch[i] >> 1) & 0x7777777777777777ull;
    w->samples /= 2;
}

/* Conservative update: only the counters at the minimum grow, which keeps
 * a key's estimate from being inflated by its neighbours' traffic. */
static void sketch_inc(struct wtlfu *w, uint64_t h)
{
    /* One read of the four counters, in one line (slot_of). */
    uint32_t word[4];
    unsigned sh[4], c[4], f = 15;
    for (unsigned j = 0; j < 4; j++) {
        c[j] = counter(w, h, j, &word[j], &sh[j]);
        if (c[j] < f)
            f = c[j];
    }
    if (f < 15)
        for (unsigned j = 0; j < 4; j++)
            if (c[j] == f && ((w->sketch[word[j]] >> sh[j]) & 15u) == f)
                w->sketch[word[j]] += 1ull << sh[j];
    if (++w->samples >= w->sample_max)
        sketch_halve(w);
}

/* Every hit and insert counts, under the shard lock, and on a large
 * sketch each count is a cache miss: made at once, the misses of a 1 MiB
 * read's 256 blocks follow one another. So a count only asks for its line
 * here, and waits in pend[] until the store's batch of hits is over
 * (flush_locked), SKETCH_PEND are due, or the sketch is read, grown or
 * replaced; by then the lines are in. Applied in order before any read,
 * the counts are exactly those of increments made at once (the halving
 * included: it happens at the same increment). */
static void sketch_note(struct wtlfu *w, uint32_t key)
{
    if (!w->sketch)
        return;
    uint64_t h = mix64(key);
    uint32_t word;
    unsigned shift;
    slot_of(w, h, 0, &word, &shift);
    __builtin_prefetch(&w->sketch[word], 1);
    w->pend[w->npend++] = h;
    if (w->npend == SKETCH_PEND)
        sketch_flush(w);
}

static void sketch_flush(struct wtlfu *w)
{
    uint32_t n = w->npend;
    w->npend = 0;
    for (uint32_t i = 0; i < n; i++)
        sketch_inc(w, w->pend[i]);
}

/* Raise the key's counters to at least f (a rewritten block's count). */
static void sketch_raise(struct wtlfu *w, uint32_t key, unsigned f)
{
    if (!w->sketch)
        return;
    sketch_flush(w);
    f = f < 15 ? f : 15;
    uint64_t h = mix64(key);
    for (unsigned j = 0; j < 4; j++) {
        uint32_t word;
        unsigned sh, c = counter(w, h, j, &word, &sh);
        if (c < f)
            w->sketch[word] += (uint64_t)(f - c) << sh;
    }
}

/* The most words a shard of this capacity gets: one per BLOCKS_PER_WORD
 * blocks, a power of two (slot_of masks). */
static uint32_t sketch_max_words(uint32_t capacity)
{
    uint64_t n = round_up_pow2_u64(DIV_ROUND_UP((uint64_t)capacity, BLOCKS_PER_WORD));
    return (uint32_t)(n < SKETCH_MIN_WORDS ? SKETCH_MIN_WORDS : n);
}

/* Line-aligned (slot_of): n is a power of two of at least SKETCH_MIN_WORDS. */
static uint64_t *sketch_table(uint32_t n)
{
    _Static_assert(SKETCH_MIN_WORDS % SKETCH_LINE == 0, "whole lines");
    return aligned_alloc(SKETCH_LINE * sizeof(uint64_t), (size_t)n * sizeof(uint64_t));
}

static int sketch_alloc(struct wtlfu *w, uint32_t n)
{
    uint64_t *t = sketch_table(n);
    if (!t)
        return -ENOMEM;
    memset(t, 0, (size_t)n * sizeof *t);
    free(w->sketch);
    w->sketch = t;
    w->smask = n - 1;
    w->samples = 0;
    w->npend = 0; /* a new sketch forgets the counts, these too */
    return 0;
}

/* Twice the words, every key's estimate unchanged: a key's counters in
 * the wider table are at the same index plus or minus the old width, and
 * both halves start as copies of the old table. Called on an insert when
 * the shard holds more than BLOCKS_PER_WORD blocks a word (a few times in
 * a shard's life, so an empty cache does not pay for its capacity);
 * without memory the sketch stays as it is. */
static void sketch_grow(struct wtlfu *w)
{
    sketch_flush(w); /* into the old width, copied to both halves */
    uint32_t n = w->smask + 1;
    uint64_t *t = sketch_table(2 * n);
    if (!t)
        return;
    memcpy(t, w->sketch, n * sizeof *t);
    memcpy(t + n, w->sketch, n * sizeof *t);
    free(w->sketch);
    w->sketch = t;
    w->smask = 2 * n - 1;
}

/* ---- ghost slices ---- */

static uint32_t ghash(uint32_t key)
{
    return (uint32_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> 32);
}

static void ghost_put(struct wtlfu *w, struct gslot *g, uint32_t *seq, uint32_t key)
{
    if (g)
        g[ghash(key) & w->gmask] = (struct gslot){key, ++*seq};
}

/* Test and forget. A tag collision only moves the window by a step. */
static bool ghost_take(struct wtlfu *w, struct gslot *g, uint32_t seq, uint32_t key)
{
    if (!g)
        return false;
    struct gslot *s = &g[ghash(key) & w->gmask];
    if (s->tag != key || seq - s->seq >= w->slice)
        return false;
    s->tag = 0;
    s->seq = seq - w->slice;
    return true;
}

/* Allocated at the first eviction (until then nothing can be put in them:
 * a cache that never fills does not pay for them) and again at a resize
 * after it. Without memory the window simply stays at its size. */
static void ghosts_alloc(struct wtlfu *w, uint32_t capacity)
{
    free(w->gw);
    free(w->gm);
    w->gw = w->gm = NULL;
    w->slice = capacity / SLICE_DIV ? capacity / SLICE_DIV : 1;
    uint32_t n = (uint32_t)round_up_pow2_u64(w->slice);
    w->gmask = n - 1;
    w->wseq = w->mseq = w->slice; /* empty slots (seq 0) read as old */
    if (!w->evicted)
        return;
    w->gw = calloc(n, sizeof *w->gw);
    w->gm = calloc(n, sizeof *w->gm);
    if (!w->gw || !w->gm) {
        free(w->gw);
        free(w->gm);
        w->gw = w->gm = NULL;
    }
}

/* ---- the policy ---- */

static uint32_t win_min(const struct wtlfu *w)
{
    return w->capacity / 100 ? w->capacity / 100 : 1;
}

/* The length of the window's next move in direction dir (1 grow, -1
 * shrink): WIN_STEP after a move the other way, else longer than the last
 * (a grow by a block, a shrink twice), up to WIN_STEP_MAX. */
static uint32_t win_step(struct wtlfu *w, int dir)
{
    if (w->lean != dir)
        w->step = WIN_STEP;
    else if (dir > 0)
        w->step = w->step + 1 < WIN_STEP_MAX ? w->step + 1 : WIN_STEP_MAX;
    else
        w->step = 2 * w->step < WIN_STEP_MAX ? 2 * w->step : WIN_STEP_MAX;
    w->lean = dir;
    return w->step;
}

static void win_grow(struct wtlfu *w)
{
    uint32_t max = w->capacity > win_min(w) ? w->capacity - win_min(w) : 1;
    uint32_t step = win_step(w, 1);
    if (w->win_target / WIN_GROW_SHARE > step)
        step = w->win_target / WIN_GROW_SHARE;
    w->win_target = w->win_target + step < max ? w->win_target + step : max;
}

static void win_shrink(struct wtlfu *w)
{
    uint32_t min = win_min(w);
    uint32_t step = win_step(w, -1);
    uint32_t main_target = w->capacity > w->win_target ? w->capacity - w->win_target : 0;
    if (main_target / WIN_SHRINK_SHARE > step)
        step = main_target / WIN_SHRINK_SHARE;
    w->win_target = w->win_target > min + step ? w->win_target - step : min;
}

static void set_capacity(struct wtlfu *w, uint32_t capacity)
{
    w->capacity = capacity;
    w->win_target = win_min(w);
    w->step = WIN_STEP;
    w->lean = 0;
    uint64_t m = (uint64_t)capacity * SAMPLE_FACTOR;
    w->sample_max = m > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)(m ? m : SAMPLE_FACTOR);
    ghosts_alloc(w, capacity);
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
    return sketch_alloc(w, SKETCH_MIN_WORDS); /* grows with what is held */
}

static void wt_fini(void *st)
{
    struct wtlfu *w = st;
    free(w->sketch);
    free(w->gw);
    free(w->gm);
    w->sketch = NULL;
    w->gw = w->gm = NULL;
}

static void wt_resize_locked(void *st, uint32_t capacity)
{
    struct wtlfu *w = st;
    set_capacity(w, capacity);
    /* Larger: the sketch grows with what is held. Smaller than the
     * sketch: a new one, which forgets the counts (kept if none can be
     * had: a coarser hint). */
    uint32_t max = sketch_max_words(capacity);
    if (w->smask + 1 > max)
        (void)sketch_alloc(w, max);
}

static void to_main(struct wtlfu *w, uint32_t idx)
{
    struct store_entry *en = &w->e[idx];
    evict_list_unlink(&w->win, w->e, idx);
    entry_set_pbits(en, IN_MAIN | (entry_pbits(en) & VISITED));
    evict_list_push_tail(&w->main, w->e, idx);
}

static uint32_t window_candidate(struct wtlfu *w);
static uint32_t main_candidate(struct wtlfu *w);
static bool admits(struct wtlfu *w, uint32_t c, uint32_t v, unsigned margin);

/* A new entry at the window's tail, with these policy bits. */
static void win_push(struct wtlfu *w, uint32_t idx, uint32_t pbits)
{
    entry_set_pbits(&w->e[idx], pbits);
    evict_list_push_tail(&w->win, w->e, idx);
    if (w->sketch && w->win.len + w->main.len > BLOCKS_PER_WORD * (w->smask + 1) &&
        w->smask + 1 < sketch_max_words(w->capacity))
        sketch_grow(w);
    if (w->win.len <= w->win_target || w->main.len + w->win_target >= w->capacity)
        return;
    /* Until main is full, the window's overflow goes there unopposed.
     * After the first eviction, room in main is a removal's hole: only a
     * candidate used more often than main's victim gets it; a loser waits
     * in the window, unless HOLE_WAIT already do (the header says why). */
    if (!w->evicted || w->main.len == 0) {
        to_main(w, w->win.head);
        return;
    }
    uint32_t c = window_candidate(w);
    if (w->win.len > w->win_target + HOLE_WAIT || admits(w, c, main_candidate(w), 0))
        to_main(w, c);
}

static void wt_insert_locked(void *st, uint32_t idx)
{
    struct wtlfu *w = st;
    uint32_t key = w->e[idx].key;
    sketch_note(w, key);
    if (ghost_take(w, w->gw, w->wseq, key))
        win_grow(w);
    else if (ghost_take(w, w->gm, w->mseq, key))
        win_shrink(w);
    win_push(w, idx, 0);
}

/* Read ahead: in the window like any new content, but not counted as a
 * use (the stream's read will count it; counted twice it would look
 * hotter than a block read once and displace main's), and no ghost
 * verdict on the window's size: nobody asked for it. It starts marked, so
 * it goes round the window once more before it is a candidate: a stream
 * reads its window soon, but other streams' blocks pass through the
 * window meanwhile. */
static void wt_prefetch_locked(void *st, uint32_t idx)
{
    win_push(st, idx, VISITED);
}

static void wt_hit_locked(void *st, uint32_t idx)
{
    struct wtlfu *w = st;
    struct store_entry *en = &w->e[idx];
    sketch_note(w, en->key);
    uint32_t b = entry_pbits(en);
    if (!(b & VISITED))
        entry_set_pbits(en, b | VISITED);
}

static void wt_flush_locked(void *st)
{
    sketch_flush(st);
}

/* A rewrite: the block's old content's count (also of a content evicted
 * since: the sketch keeps counts of keys long gone) ... */
static unsigned wt_heat_locked(void *st, uint32_t key)
{
    return sketch_freq(st, key);
}

/* ... goes to the new content, plus one for the write itself: the block
 * has had that many uses whatever its bytes are now. */
static void wt_inherit_locked(void *st, uint32_t idx, unsigned heat)
{
    struct wtlfu *w = st;
    sketch_raise(w, w->e[idx].key, heat + 1);
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

static uint32_t main_take(struct wtlfu *w, uint32_t idx)
{
    ghost_put(w, w->gm, &w->mseq, w->e[idx].key);
    w->hand = w->e[idx].next;
    evict_list_unlink(&w->main, w->e, idx);
    return idx;
}

/* The window's CLOCK: marked entries at the head go round once more
 * (bounded by one pass: every mark is cleared on the way). */
static uint32_t window_candidate(struct wtlfu *w)
{
    for (uint32_t n = w->win.len; n > 0; n--) {
        uint32_t c = w->win.head;
        uint32_t b = entry_pbits(&w->e[c]);
        if (!(b & VISITED))
            break;
        entry_set_pbits(&w->e[c], b & ~VISITED);
        evict_list_unlink(&w->win, w->e, c);
        evict_list_push_tail(&w->win, w->e, c);
    }
    return w->win.head;
}

/* An entry's worth: its recent uses, plus one per extra directory
 * reference (each cell mapping it will read it). */
static unsigned worth(struct wtlfu *w, uint32_t idx)
{
    const struct store_entry *en = &w->e[idx];
    uint32_t refs = entry_refs(en);
    unsigned bonus = refs > 1 ? refs - 1 : 0;
    return sketch_freq(w, en->key) + (bonus < SHARED_BONUS_MAX ? bonus : SHARED_BONUS_MAX);
}

/* The duel: candidate c beats main's victim v if it was used more than
 * margin times more often (ADMIT_MARGIN to displace v, 0 for a hole).
 * Without a sketch every count is 0: admit, as plain SIEVE would. */
static bool admits(struct wtlfu *w, uint32_t c, uint32_t v, unsigned margin)
{
    return !w->sketch || worth(w, c) > worth(w, v) + margin;
}

static uint32_t wt_evict_locked(void *st)
{
    struct wtlfu *w = st;
    if (!w->evicted) {
        w->evicted = true;
        ghosts_alloc(w, w->capacity);
    }
    if (w->win.len > 0 && (w->win.len >= w->win_target || w->main.len == 0)) {
        uint32_t c = window_candidate(w);
        if (w->main.len == 0) {
            evict_list_unlink(&w->win, w->e, c);
            return c;
        }
        uint32_t v = main_candidate(w);
        if (admits(w, c, v, ADMIT_MARGIN)) {
            main_take(w, v);
            to_main(w, c);
            return v;
        }
        evict_list_unlink(&w->win, w->e, c);
        ghost_put(w, w->gw, &w->wseq, w->e[c].key);
        return c;
    }
    if (w->main.len == 0)
        return STORE_NONE;
    return main_take(w, main_candidate(w));
}

static size_t wt_metadata_bytes_locked(void *st)
{
    struct wtlfu *w = st;
    size_t b = sizeof *w;
    if (w->sketch)
        b += ((size_t)w->smask + 1) * sizeof(uint64_t);
    if (w->gw)
        b += 2 * ((size_t)w->gmask + 1) * sizeof(struct gslot);
    return b;
}

const struct evict_ops evict_wtinylfu_ops = {
    .name = "wtinylfu",
    .state_size = sizeof(struct wtlfu),
    .init = wt_init,
    .fini = wt_fini,
    .resize_locked = wt_resize_locked,
    .insert_locked = wt_insert_locked,
    .prefetch_locked = wt_prefetch_locked,
    .hit_locked = wt_hit_locked,
    .flush_locked = wt_flush_locked,
    .remove_locked = wt_remove_locked,
    .heat_locked = wt_heat_locked,
    .inherit_locked = wt_inherit_locked,
    .evict_locked = wt_evict_locked,
    .metadata_bytes_locked = wt_metadata_bytes_locked,
};
