/* Shared pieces of the eviction policies: the intrusive list and the name
 * registry. */
#include "core/evict.h"

#include <string.h>

void evict_list_init(struct evict_list *l)
{
    l->head = l->tail = STORE_NONE;
    l->len = 0;
}

void evict_list_push_tail(struct evict_list *l, struct store_entry *e, uint32_t idx)
{
    e[idx].next = STORE_NONE;
    e[idx].prev = l->tail;
    if (l->tail != STORE_NONE)
        e[l->tail].next = idx;
    else
        l->head = idx;
    l->tail = idx;
    l->len++;
}

void evict_list_unlink(struct evict_list *l, struct store_entry *e, uint32_t idx)
{
    uint32_t p = e[idx].prev, n = e[idx].next;
    if (p != STORE_NONE)
        e[p].next = n;
    else
        l->head = n;
    if (n != STORE_NONE)
        e[n].prev = p;
    else
        l->tail = p;
    e[idx].prev = e[idx].next = STORE_NONE;
    l->len--;
}

uint32_t evict_list_pop_head(struct evict_list *l, struct store_entry *e)
{
    uint32_t idx = l->head;
    if (idx != STORE_NONE)
        evict_list_unlink(l, e, idx);
    return idx;
}

const struct evict_ops *evict_find(const char *name)
{
    static const struct evict_ops *const all[] = {&evict_wtinylfu_ops, &evict_s3fifo_ops,
                                                  &evict_lru_ops, &evict_sieve_ops, &evict_arc_ops};
    if (!name || !*name)
        return all[0];
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}
