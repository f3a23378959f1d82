/* Eviction policies for the content store, one `struct evict_ops` each.
 * A policy orders the entries of one store shard and picks victims; it keeps
 * its links in store_entry.prev/next and up to 8 bits in the entry's policy
 * bits, plus whatever per-shard state it declares in state_size.
 *
 * Lock rules: the "_locked" hooks are called with the shard lock held, so
 * policies need no locking of their own; init and fini run while the store
 * has one owner (store_create, store_destroy), when no lock is needed.
 *
 * Why S3-FIFO is the default: VM block traffic mixes a hot working set with
 * large one-pass scans (backups, `dd`, antivirus, image copies). LRU lets a
 * scan flush the hot set; S3-FIFO admits new blocks to a small FIFO and only
 * promotes blocks touched again, and its hits cost one counter update (no
 * list move). Measured with bench/evict-sim: see the table in evict_s3fifo.c. */
#ifndef SHOAL_CORE_EVICT_H
#define SHOAL_CORE_EVICT_H

#include <stddef.h>
#include <stdint.h>

#include "core/fingerprint.h"
#include "core/store.h"

struct evict_ops {
    const char *name;
    size_t state_size; /* per shard */

    /* entries: the store's entry array (global indexes); capacity: the
     * shard's current capacity in entries, max: the most it can grow to. */
    int (*init)(void *st, struct store_entry *entries, uint32_t capacity, uint32_t max);
    void (*fini)(void *st);
    void (*resize_locked)(void *st, uint32_t capacity);
    /* A new entry was inserted at idx. */
    void (*insert_locked)(void *st, uint32_t idx);
    /* The entry at idx was read. */
    void (*hit_locked)(void *st, uint32_t idx);
    /* The entry at idx is being freed for another reason (unreferenced). */
    void (*remove_locked)(void *st, uint32_t idx);
    /* Choose a victim, unlink it and return its index (STORE_NONE if empty). */
    uint32_t (*evict_locked)(void *st);
    /* Bytes of policy metadata beyond the entry fields. */
    size_t (*metadata_bytes_locked)(void *st);
};

extern const struct evict_ops evict_s3fifo_ops;
extern const struct evict_ops evict_lru_ops;
extern const struct evict_ops evict_sieve_ops;
extern const struct evict_ops evict_arc_ops;
extern const struct evict_ops evict_wtinylfu_ops;

/* Look a policy up by name ("s3fifo", "lru", "sieve", "arc", "wtinylfu");
 * the default for NULL or ""; NULL if unknown. */
const struct evict_ops *evict_find(const char *name);

/* Intrusive doubly linked FIFO over entry indexes, shared by the policies. */
struct evict_list {
    uint32_t head, tail, len;
};
void evict_list_init(struct evict_list *l);
void evict_list_push_tail(struct evict_list *l, struct store_entry *e, uint32_t idx);
uint32_t evict_list_pop_head(struct evict_list *l, struct store_entry *e);
void evict_list_unlink(struct evict_list *l, struct store_entry *e, uint32_t idx);

#endif
