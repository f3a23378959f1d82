/* Eviction policies for the content store, one `struct evict_ops` each.
 * A policy orders the entries of one store shard and picks victims; it keeps
 * its links in store_entry.prev/next and up to 8 bits in the entry's policy
 * bits, plus whatever per-shard state it declares in state_size.
 *
 * Lock rules: the "_locked" hooks are called with the shard lock held, so
 * policies need no locking of their own; init and fini run while the store
 * has one owner (store_create, store_destroy), when no lock is needed.
 *
 * Why W-TinyLFU is the default: VM block traffic mixes a hot working set
 * with one-pass scans (backups, `dd`, image copies) and boot storms and
 * loops larger than the cache. LRU lets a scan flush the hot set and
 * misses every block of a loop; W-TinyLFU admits a block into its main
 * queue only if it was used more often than the block it would displace,
 * so scans pass through a small window and a storm keeps a fixed part of
 * itself. With a rewritten block's count handed on to its new content
 * (heat_locked / inherit_locked below), and the room a rewrite leaves in
 * its main queue given only to a block that wins its admission duel, it
 * beats S3-FIFO, the default before, on the synthetic storms, loops, vdi
 * and write mix and on daemon-sim's write mixes at 10% and 30% of their
 * working set; it loses to it by up to 0.005 on a few trace sizes
 * (bench/README.md, "Policy simulator", from bench/policy-sim). */
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
    /* Optional (NULL: insert_locked). A new entry was inserted at idx that
     * no client asked for yet (read-ahead): not a use, and it should last
     * until the stream that fetched it reads it. */
    void (*prefetch_locked)(void *st, uint32_t idx);
    /* The entry at idx was read. */
    void (*hit_locked)(void *st, uint32_t idx);
    /* Optional: do now what the policy put off (W-TinyLFU's sketch counts,
     * whose memory loads its hits only asked for). store_used calls it on
     * every shard of a batch after all of the batch's hits. */
    void (*flush_locked)(void *st);
    /* The entry at idx is being freed for another reason (unreferenced). */
    void (*remove_locked)(void *st, uint32_t idx);
    /* Choose a victim, unlink it and return its index (STORE_NONE if empty). */
    uint32_t (*evict_locked)(void *st);
    /* Optional (NULL: no memory of use to hand on). When a block is
     * rewritten, its old content's worth goes to the new one: heat_locked
     * reads it by the old content's key (entry.key's tag, in the key's
     * shard: the entry's own just before it loses the block's reference,
     * or an evicted content's from the eviction log), inherit_locked gives
     * it to the new entry (in its own shard, after its insert). Why: a
     * policy that counts uses per content restarts a hot block at zero at
     * every write, and a block written and then read again is as hot as
     * before. */
    unsigned (*heat_locked)(void *st, uint32_t key);
    void (*inherit_locked)(void *st, uint32_t idx, unsigned heat);
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
