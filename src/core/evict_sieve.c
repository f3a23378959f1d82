/* SIEVE eviction (Zhang et al., NSDI'24): one FIFO queue, a visited bit per
 * entry and a hand. A hit only sets the bit (no list move, like S3-FIFO's
 * counter); to evict, the hand walks from the oldest entry towards the
 * newest, clearing visited bits, and takes the first unvisited entry. Unlike
 * CLOCK, survivors stay where they are rather than moving to the head, so
 * new entries that are never read again are the ones found first.
 *
 * Kept as a textbook policy to measure the default against (bench/evict-sim
 * --trace); selectable with --policy sieve. In the list, head is the oldest
 * entry and tail the newest; the hand moves along next (towards newer). */
#include "core/evict.h"

#define VISITED 0x1u

struct sieve {
    struct store_entry *e;
    struct evict_list q;
    uint32_t hand; /* STORE_NONE: start again from the oldest */
};

static int sieve_init(void *st, struct store_entry *entries, uint32_t capacity, uint32_t max)
{
    struct sieve *s = st;
    (void)capacity;
    (void)max;
    s->e = entries;
    evict_list_init(&s->q);
    s->hand = STORE_NONE;
    return 0;
}

static void sieve_fini(void *st)
{
    (void)st;
}

static void sieve_resize_locked(void *st, uint32_t capacity)
{
    (void)st;
    (void)capacity;
}

static void sieve_insert_locked(void *st, uint32_t idx)
{
    struct sieve *s = st;
    entry_set_pbits(&s->e[idx], 0);
    evict_list_push_tail(&s->q, s->e, idx);
}

static void sieve_hit_locked(void *st, uint32_t idx)
{
    struct sieve *s = st;
    entry_set_pbits(&s->e[idx], VISITED);
}

static void sieve_remove_locked(void *st, uint32_t idx)
{
    struct sieve *s = st;
    if (s->hand == idx)
        s->hand = s->e[idx].next;
    evict_list_unlink(&s->q, s->e, idx);
}

static uint32_t sieve_evict_locked(void *st)
{
    struct sieve *s = st;
    if (s->q.len == 0)
        return STORE_NONE;
    /* At most one full turn clears every bit, so this ends within 2 turns. */
    uint32_t idx = s->hand != STORE_NONE ? s->hand : s->q.head;
    while (entry_pbits(&s->e[idx]) & VISITED) {
        entry_set_pbits(&s->e[idx], 0);
        idx = s->e[idx].next != STORE_NONE ? s->e[idx].next : s->q.head;
    }
    s->hand = s->e[idx].next;
    evict_list_unlink(&s->q, s->e, idx);
    return idx;
}

static size_t sieve_metadata_bytes_locked(void *st)
{
    (void)st;
    return sizeof(struct sieve);
}

const struct evict_ops evict_sieve_ops = {
    .name = "sieve",
    .state_size = sizeof(struct sieve),
    .init = sieve_init,
    .fini = sieve_fini,
    .resize_locked = sieve_resize_locked,
    .insert_locked = sieve_insert_locked,
    .hit_locked = sieve_hit_locked,
    .remove_locked = sieve_remove_locked,
    .evict_locked = sieve_evict_locked,
    .metadata_bytes_locked = sieve_metadata_bytes_locked,
};
