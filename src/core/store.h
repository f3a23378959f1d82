/* Content store: fingerprint -> one 4 KiB block in RAM, shared by every
 * volume. Each distinct content is held once; volume directories point at it
 * with (index, generation) references and the store counts those references
 * so it can report logical vs unique blocks and free content nobody maps.
 *
 * Memory: the data area (one BLOCK_SIZE slot per entry) and the entry array
 * are reserved up front with mmap(MAP_NORESERVE) for the largest size the
 * cache may be resized to, and touched lazily, so RSS follows use and the
 * I/O path never allocates.
 *
 * Sharding: entries are split into a power-of-two number of shards by
 * fingerprint; each shard has its own lock, hash table, free list and
 * eviction policy state. Shard s owns entry indexes [s*per_shard, ...).
 *
 * References: a `struct store_ref` is (idx, gen). Freeing an entry (eviction,
 * last reference dropped) bumps its generation, so every outstanding ref to
 * it goes stale at once without the store knowing who holds them; a stale
 * ref reads as a miss. Generations never go back to an old value (entry
 * pages are never returned to the kernel), so a stale ref cannot come back
 * to life.
 *
 * Pins (zero-copy replies): store_pin hands out a pointer to a live entry's
 * data slot and counts a pin; the slot is not reused until store_unpin drops
 * the last pin, even if the content is evicted or unreferenced meanwhile
 * (its references go stale at once; only the memory waits). A front end
 * pins the blocks of a RAM hit, writev()s the reply straight from them and
 * unpins after the send, so a hit costs no memcpy in user space.
 *
 * Lock rules:
 *   - shard->lock guards everything in the shard, including the entries'
 *     fields and their data slots; store_read copies under it.
 *   - pins[] are atomics: pinned under the lock (after the liveness check),
 *     unpinned without it; the unpin that releases a dead entry's slot takes
 *     the lock.
 *   - entry.gen is also read without the lock (store_ref_live) with an
 *     acquire load; it is written under the lock with release stores.
 *   - The store never calls out while holding a shard lock, and callers
 *     must not hold a directory stripe lock when calling functions that
 *     take a shard lock, except store_ref_live (lock-free).
 */
#ifndef SHOAL_CORE_STORE_H
#define SHOAL_CORE_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/fingerprint.h"

#define STORE_NONE UINT32_MAX

struct store;
struct evict_ops;

struct store_ref {
    uint32_t idx;
    uint32_t gen; /* never 0 for a real reference */
};

/* One cached content. 24 bytes; its data lives at data + idx * BLOCK_SIZE.
 * It keeps only a 32-bit tag of its key (fingerprint.h), the low half of
 * fpkey_hash64 (the high bits chose its shard): a tag match is a candidate,
 * never a proof. A dedup match is confirmed by comparing the bytes, a
 * lookup by a remembered key by rehashing the data and comparing all 160
 * bits (store_find), and an evicted content's whole key is recomputed from
 * its data for the eviction log. 16 bytes a block cheaper than keeping the
 * whole key, for a hash per eviction and per find. */
struct store_entry {
    uint32_t key;   /* low 32 bits of fpkey_hash64 of the content's key */
    uint32_t gen;   /* incarnation; bumped when freed */
    uint32_t hnext; /* hash chain / free list link */
    uint32_t prev;  /* eviction policy links (owned by the policy) */
    uint32_t next;
    uint32_t refs; /* low 24 bits: directory references; high 8: policy bits */
};
_Static_assert(sizeof(struct store_entry) == 24, "a store entry is counted per cached block");

#define STORE_REFS_MAX    ((1u << 24) - 1)
#define STORE_REFS_MASK   STORE_REFS_MAX
#define STORE_PBITS_SHIFT 24

static inline uint32_t entry_refs(const struct store_entry *e)
{
    return e->refs & STORE_REFS_MASK;
}
static inline uint32_t entry_pbits(const struct store_entry *e)
{
    return e->refs >> STORE_PBITS_SHIFT;
}
static inline void entry_set_pbits(struct store_entry *e, uint32_t bits)
{
    e->refs = (e->refs & STORE_REFS_MASK) | (bits << STORE_PBITS_SHIFT);
}

struct store_stats {
    uint64_t capacity_blocks;
    uint64_t unique_blocks;
    uint64_t logical_blocks;
    uint64_t metadata_bytes;
    uint64_t evictions;
    uint64_t inserts;
    uint64_t dedup_hits;
    uint64_t insert_failures;
};

/* capacity: bytes of content RAM now; max: the most it may grow to with
 * store_resize (0 = capacity). policy: NULL for the default (evict_find(NULL)). */
int store_create(uint64_t capacity, uint64_t max, const struct evict_ops *policy,
                 struct store **out);
void store_destroy(struct store *s);

/* Find the content with this fingerprint (and these bytes: a key match is
 * confirmed with a compare of the data) or insert `data` (BLOCK_SIZE bytes)
 * under it, evicting if needed, and take one directory reference on it.
 * Returns 0 and *ref, -ENOSPC when the cache has no capacity, or -EOVERFLOW
 * when the content already has STORE_REFS_MAX references. */
int store_get_or_insert(struct store *s, const struct fp *fp, const void *data,
                        struct store_ref *ref);
/* The same with the content's key (fingerprint.h) rather than its whole
 * SHA-256. */
int store_get_or_insert_key(struct store *s, const struct fpkey *key, const void *data,
                            struct store_ref *ref);

/* The same for a block being rewritten: heat is what store_unref_heat
 * returned for the block's old content (0: nothing to hand on), given to
 * the new content's eviction policy (evict.h, heat_locked). */
int store_get_or_insert_heat(struct store *s, const struct fpkey *key, const void *data,
                             unsigned heat, struct store_ref *ref);

/* The same for a block read ahead, that no client asked for yet: a new
 * content goes to the policy's prefetch_locked (evict.h), not counted as
 * a use. */
int store_get_or_insert_ahead(struct store *s, const struct fpkey *key, const void *data,
                              struct store_ref *ref);

/* Find the content with this key (no bytes to compare: the key is 160 bits
 * of its SHA-256, see fingerprint.h) and take one directory reference on
 * it. 0 and *ref, or -ENOENT when it is not held. */
int store_find(struct store *s, const struct fpkey *key, struct store_ref *ref);

/* One more directory reference on the live content ref names (another
 * block that holds the same bytes: a copy). 0 and *out, -ENOENT when ref
 * is stale, -EOVERFLOW at STORE_REFS_MAX. */
int store_ref_dup(struct store *s, struct store_ref ref, struct store_ref *out);

/* The key of the content a stale reference pointed at, if the store still
 * remembers it: evicted contents' keys are kept in a bounded per-shard log
 * (the most recent evictions), so the directory can remember the blocks
 * whose content left RAM. true and *key, or false (forgotten, or the ref
 * was never evicted: freed because nobody mapped it). The keys are hashed
 * after the evicting insert released its shard, two evictions at a time;
 * one asked for before that is hashed by the asker. */
bool store_evicted_key(struct store *s, struct store_ref ref, struct fpkey *key);

/* How many evictions the log keeps (all shards): a reader of stale cells
 * must ask within about that many evictions (dir_purge, engine.c). */
uint64_t store_evlog_records(struct store *s);
/* fn(arg) is called, outside the store's locks, each time a shard has
 * evicted half of what its log keeps since the last call: the reader of
 * stale cells is told before the log wraps, however fast blocks go (a
 * timer alone lost most keys of a fast scan through a small cache). Set
 * once, before the store is used by other threads. */
void store_set_evict_notify(struct store *s, void (*fn)(void *), void *arg);

/* Keep the eviction log (default on)? Off, evictions cost no hashing and
 * store_evicted_key always answers false (the engine turns it off when
 * nothing may be remembered). */
void store_set_eviction_log(struct store *s, bool on);

/* Drop a directory reference. Stale refs are ignored. The entry is freed when
 * its last reference goes (nobody can read it any more). */
void store_unref(struct store *s, struct store_ref ref);
/* The same, returning the content's heat for its policy (evict.h): what a
 * rewrite of the block hands on to the new content. For a stale ref, the
 * heat of the key the eviction log still has for it; 0 when forgotten or
 * when the policy keeps none. */
unsigned store_unref_heat(struct store *s, struct store_ref ref);

/* The heat (evict.h, heat_locked) of a content no longer held, by its key:
 * policies that count uses by key remember them after the content left.
 * 0 when the policy keeps none. */
unsigned store_key_heat(struct store *s, const struct fpkey *key);

/* Copy [off, off+len) of the block into dst if ref is still live, and tell
 * the eviction policy it was used. 0 or -ENOENT (stale: treat as a miss). */
int store_read(struct store *s, struct store_ref ref, void *dst, uint32_t off, uint32_t len);
/* The same, also giving the content's key (low 32 bits of its
 * fpkey_hash64, for sampling: core/mrc.h). */
int store_read_key(struct store *s, struct store_ref ref, void *dst, uint32_t off, uint32_t len,
                   uint32_t *key);

/* Pin a live entry and return a pointer to its BLOCK_SIZE bytes (valid and
 * unchanging until store_unpin(ref.idx)). Not a use for the eviction
 * policy: a zero-copy read pins every block before it knows it can serve
 * them all, and one that falls back reads them again with store_read
 * (counting them there); store_used says a served pin was used. 0, -ENOENT
 * (stale) or -EBUSY (pinned too often at once: copy it with store_read
 * instead). */
int store_pin(struct store *s, struct store_ref ref, const uint8_t **data);
/* store_pin of n (<= STORE_PIN_MANY_MAX) entries at once, all or none:
 * data[i] for refs[i]. The entries are fetched from memory together and
 * each shard's lock is taken once, where n store_pins wait for n cache
 * misses and n locks one after another (a 1 MiB read hit is 256 blocks).
 * 0, or store_pin's error (-ENOENT or -EBUSY) for an entry that failed,
 * with nothing left pinned; -EINVAL if n is too large. */
#define STORE_PIN_MANY_MAX 256
int store_pin_many(struct store *s, const struct store_ref *refs, uint32_t n, const uint8_t **data);
/* Tell the eviction policy that the n entries idx[], pinned by the caller,
 * were read (once each, in this order within each shard; shards take
 * their share under one lock each). */
void store_used(struct store *s, const uint32_t *idx, uint32_t n);
void store_unpin(struct store *s, uint32_t idx);
/* store_unpin of n entries, their pin counts fetched together (a reply
 * sent from 256 pinned blocks unpins them all). */
void store_unpin_many(struct store *s, const uint32_t *idx, uint32_t n);
/* The key (as store_read_key's) of an entry this thread holds pinned: it
 * cannot change while pinned. */
uint32_t store_pinned_key(const struct store *s, uint32_t idx);

/* Lock-free staleness check (may race: a live answer can go stale later). */
bool store_ref_live(const struct store *s, struct store_ref ref);

/* Change the capacity (bytes, at most the max given at creation): shrinking
 * evicts. 0, -EINVAL (above max or not a whole number of blocks >= 1 block). */
int store_resize(struct store *s, uint64_t capacity);

/* Check the store's invariants (tests, fuzzing; O(capacity), takes every
 * shard lock in turn): each free slot listed once, below its shard's mark,
 * holding no live content and no pin; every live entry findable by its key;
 * the live count matching the shard's. 0, or -EUCLEAN with the first
 * violation logged. */
int store_check(struct store *s);

void store_get_stats(struct store *s, struct store_stats *out);
uint64_t store_capacity_bytes(const struct store *s);
uint64_t store_max_bytes(const struct store *s);
const char *store_policy_name(const struct store *s);

#endif
