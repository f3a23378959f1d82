/* ARC eviction (Megiddo and Modha, FAST'03): T1 holds contents seen once
 * recently, T2 contents seen at least twice; B1 and B2 are ghost lists of
 * the keys recently evicted from each. A miss whose key is in B1 means T1
 * was too small: the target size p of T1 grows; one in B2 shrinks it.
 *
 * Kept as a textbook policy to measure the default against (bench/evict-sim
 * --trace); selectable with --policy arc. Two departures from the paper,
 * both forced by struct evict_ops:
 *   - The store asks for a victim before it tells the policy which key
 *     comes in (slot first, then insert), so REPLACE cannot apply the
 *     paper's tie rule for a key found in B2 (evict from T1 when |T1| = p),
 *     and p adapts at the insert, just after that victim was chosen.
 *   - Ghosts keep the entry's 32-bit key tag (store.h), not the key: two
 *     contents with one tag share a ghost. A false match only moves p and
 *     admits a block to T2 early; it never affects what a read returns.
 * Memory: the ghost lists hold at most one node per cached block (20 bytes
 * and 4 of hash bucket), allocated at the first eviction and at a resize,
 * never per I/O; without memory ARC runs without ghosts (as LRU + LFU
 * halves with a fixed p). */
#include "core/evict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define IN_T2 0x1u

struct gnode {
    uint32_t key;
    uint32_t prev, next; /* within B1 or B2; head = least recent */
    uint32_t hnext;      /* hash chain, or free list */
    uint32_t list;       /* 1: B1, 2: B2 */
};

struct glist {
    uint32_t head, tail, len;
};

struct arc {
    struct store_entry *e;
    struct evict_list t1, t2; /* head = least recently used */
    uint32_t c, p;
    struct gnode *g; /* ghost pool: c nodes */
    uint32_t gcap, gfree;
    uint32_t *gbuckets;
    uint32_t gmask;
    struct glist b1, b2;
};

/* ---- ghosts ---- */

static uint32_t ghash(const struct arc *a, uint32_t key)
{
    return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & a->gmask;
}

static void glist_unlink(struct arc *a, struct glist *l, uint32_t i)
{
    struct gnode *n = &a->g[i];
    if (n->prev != STORE_NONE)
        a->g[n->prev].next = n->next;
    else
        l->head = n->next;
    if (n->next != STORE_NONE)
        a->g[n->next].prev = n->prev;
    else
        l->tail = n->prev;
    l->len--;
}

static void ghost_free(struct arc *a, struct glist *l, uint32_t i)
{
    glist_unlink(a, l, i);
    uint32_t *p = &a->gbuckets[ghash(a, a->g[i].key)];
    while (*p != i)
        p = &a->g[*p].hnext;
    *p = a->g[i].hnext;
    a->g[i].hnext = a->gfree;
    a->gfree = i;
}

static int ghosts_alloc(struct arc *a, uint32_t c)
{
    uint32_t n = c ? c : 1;
    uint32_t nb = (uint32_t)round_up_pow2_u64(n);
    struct gnode *g = malloc((size_t)n * sizeof *g);
    uint32_t *b = malloc((size_t)nb * sizeof *b);
    if (!g || !b) {
        free(g);
        free(b);
        return -ENOMEM;
    }
    free(a->g);
    free(a->gbuckets);
    a->g = g;
    a->gbuckets = b;
    a->gcap = n;
    a->gmask = nb - 1;
    memset(b, 0xff, (size_t)nb * sizeof *b);
    for (uint32_t i = 0; i < n; i++)
        g[i].hnext = i + 1 < n ? i + 1 : STORE_NONE;
    a->gfree = 0;
    a->b1 = a->b2 = (struct glist){STORE_NONE, STORE_NONE, 0};
    return 0;
}

/* Remember an evicted key as the most recent of l. The pool holds c nodes
 * (|B1| + |B2| <= c once the cache is full); when it is empty the oldest
 * ghost of B2 (else B1) makes room. */
static void ghost_add(struct arc *a, struct glist *l, uint32_t key)
{
    if (!a->g && ghosts_alloc(a, a->c) < 0)
        return;
    if (a->gfree == STORE_NONE) {
        struct glist *from = a->b2.len ? &a->b2 : &a->b1;
        ghost_free(a, from, from->head);
    }
    uint32_t i = a->gfree;
    a->gfree = a->g[i].hnext;
    a->g[i] = (struct gnode){key, l->tail, STORE_NONE, STORE_NONE, l == &a->b1 ? 1 : 2};
    if (l->tail != STORE_NONE)
        a->g[l->tail].next = i;
    else
        l->head = i;
    l->tail = i;
    l->len++;
    uint32_t *b = &a->gbuckets[ghash(a, key)];
    a->g[i].hnext = *b;
    *b = i;
}

/* 1 if key was in B1, 2 if in B2 (and remove it), else 0. */
static int ghost_take(struct arc *a, uint32_t key)
{
    if (!a->g)
        return 0;
    for (uint32_t i = a->gbuckets[ghash(a, key)]; i != STORE_NONE; i = a->g[i].hnext) {
        if (a->g[i].key != key)
            continue;
        int which = (int)a->g[i].list;
        ghost_free(a, which == 1 ? &a->b1 : &a->b2, i);
        return which;
    }
    return 0;
}

/* ---- the policy ---- */

static int arc_init(void *st, struct store_entry *entries, uint32_t capacity, uint32_t max)
{
    struct arc *a = st;
    (void)max;
    memset(a, 0, sizeof *a);
    a->e = entries;
    evict_list_init(&a->t1);
    evict_list_init(&a->t2);
    a->c = capacity;
    a->gfree = STORE_NONE;
    a->b1 = a->b2 = (struct glist){STORE_NONE, STORE_NONE, 0};
    return 0;
}

static void arc_fini(void *st)
{
    struct arc *a = st;
    free(a->g);
    free(a->gbuckets);
    a->g = NULL;
    a->gbuckets = NULL;
}

static void arc_resize_locked(void *st, uint32_t capacity)
{
    struct arc *a = st;
    a->c = capacity;
    if (a->p > capacity)
        a->p = capacity;
    /* A new pool forgets the ghosts; keep the old one if none can be had. */
    if (a->g)
        (void)ghosts_alloc(a, capacity);
}

static void arc_insert_locked(void *st, uint32_t idx)
{
    struct arc *a = st;
    struct store_entry *en = &a->e[idx];
    int g = ghost_take(a, en->key);
    /* The paper's steps, with the list sizes from before the take. */
    if (g == 1) {
        uint32_t b1 = a->b1.len + 1, b2 = a->b2.len;
        uint32_t d = b1 >= b2 ? 1 : b2 / b1;
        a->p = d > a->c - a->p ? a->c : a->p + d;
    } else if (g == 2) {
        uint32_t b1 = a->b1.len, b2 = a->b2.len + 1;
        uint32_t d = b2 >= b1 ? 1 : b1 / b2;
        a->p = a->p > d ? a->p - d : 0;
    }
    if (g) {
        entry_set_pbits(en, IN_T2);
        evict_list_push_tail(&a->t2, a->e, idx);
    } else {
        entry_set_pbits(en, 0);
        evict_list_push_tail(&a->t1, a->e, idx);
    }
}

static void arc_hit_locked(void *st, uint32_t idx)
{
    struct arc *a = st;
    struct store_entry *en = &a->e[idx];
    if (entry_pbits(en) & IN_T2) {
        if (a->t2.tail != idx) {
            evict_list_unlink(&a->t2, a->e, idx);
            evict_list_push_tail(&a->t2, a->e, idx);
        }
        return;
    }
    evict_list_unlink(&a->t1, a->e, idx);
    entry_set_pbits(en, IN_T2);
    evict_list_push_tail(&a->t2, a->e, idx);
}

static void arc_remove_locked(void *st, uint32_t idx)
{
    struct arc *a = st;
    evict_list_unlink(entry_pbits(&a->e[idx]) & IN_T2 ? &a->t2 : &a->t1, a->e, idx);
}

static uint32_t arc_evict_locked(void *st)
{
    struct arc *a = st;
    bool from_t1 = a->t1.len > 0 && (a->t1.len > a->p || a->t2.len == 0);
    struct evict_list *l = from_t1 ? &a->t1 : &a->t2;
    uint32_t idx = evict_list_pop_head(l, a->e);
    if (idx == STORE_NONE)
        return STORE_NONE;
    ghost_add(a, from_t1 ? &a->b1 : &a->b2, a->e[idx].key);
    /* The paper's bound |T1| + |B1| <= c. */
    while (a->b1.len && a->t1.len + a->b1.len > a->c)
        ghost_free(a, &a->b1, a->b1.head);
    return idx;
}

static size_t arc_metadata_bytes_locked(void *st)
{
    struct arc *a = st;
    return sizeof *a +
           (a->g ? (size_t)a->gcap * sizeof *a->g + ((size_t)a->gmask + 1) * sizeof(uint32_t) : 0);
}

const struct evict_ops evict_arc_ops = {
    .name = "arc",
    .state_size = sizeof(struct arc),
    .init = arc_init,
    .fini = arc_fini,
    .resize_locked = arc_resize_locked,
    .insert_locked = arc_insert_locked,
    .hit_locked = arc_hit_locked,
    .remove_locked = arc_remove_locked,
    .evict_locked = arc_evict_locked,
    .metadata_bytes_locked = arc_metadata_bytes_locked,
};
