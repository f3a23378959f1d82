/* LRU eviction: the classic baseline, kept to measure S3-FIFO against and for
 * workloads without scans. A hit moves the entry to the tail (most recent). */
#include "core/evict.h"

struct lru {
    struct store_entry *e;
    struct evict_list list;
};

static int lru_init(void *st, struct store_entry *entries, uint32_t capacity, uint32_t max)
{
    struct lru *l = st;
    (void)capacity;
    (void)max;
    l->e = entries;
    evict_list_init(&l->list);
    return 0;
}

static void lru_fini(void *st)
{
    (void)st;
}

static void lru_resize_locked(void *st, uint32_t capacity)
{
    (void)st;
    (void)capacity;
}

static void lru_insert_locked(void *st, uint32_t idx)
{
    struct lru *l = st;
    evict_list_push_tail(&l->list, l->e, idx);
}

static void lru_hit_locked(void *st, uint32_t idx)
{
    struct lru *l = st;
    if (l->list.tail == idx)
        return;
    evict_list_unlink(&l->list, l->e, idx);
    evict_list_push_tail(&l->list, l->e, idx);
}

static void lru_remove_locked(void *st, uint32_t idx)
{
    struct lru *l = st;
    evict_list_unlink(&l->list, l->e, idx);
}

static uint32_t lru_evict_locked(void *st)
{
    struct lru *l = st;
    return evict_list_pop_head(&l->list, l->e);
}

static size_t lru_metadata_bytes_locked(void *st)
{
    (void)st;
    return sizeof(struct lru);
}

const struct evict_ops evict_lru_ops = {
    .name = "lru",
    .state_size = sizeof(struct lru),
    .init = lru_init,
    .fini = lru_fini,
    .resize_locked = lru_resize_locked,
    .insert_locked = lru_insert_locked,
    .hit_locked = lru_hit_locked,
    .remove_locked = lru_remove_locked,
    .evict_locked = lru_evict_locked,
    .metadata_bytes_locked = lru_metadata_bytes_locked,
};
