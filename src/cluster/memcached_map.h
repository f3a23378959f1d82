/* The memcached tier's shared block -> key map (core/tier.h, the map ops;
 * docs/cluster.md): entries of read-only volumes kept in the same
 * memcached servers as the content, placed by the same ring.
 *
 * Key "m1:" + the volume identity's 32 hex digits + ":" + the chunk number
 * in hex; a chunk covers MC_MAP_CHUNK blocks. Value: a 64-bit present
 * bitmap (little-endian, bit i: block chunk*64+i is known), 64 keys of
 * FPKEY_SIZE bytes (zeros where absent), and a MAC: the first 16 bytes of
 * HMAC-SHA256(cluster secret, key || bitmap || keys). MC_MAP_VALUE_LEN
 * bytes; a value of another size or with a wrong MAC is ignored.
 *
 * Why a MAC: a block found through an entry is checked against the
 * entry's key, but the key itself says which content the block holds, so
 * an entry naming other content that a tier holds would be served. Without
 * the MAC, anyone who can write to a memcached server could choose what a
 * gold image's blocks read as on every node; with it, only who knows the
 * secret (kept in etcd, mc_map_set_secret) can. Without a secret the map
 * is off (a static --memcached list without etcd).
 *
 * Writes merge: the put thread reads the chunks it is about to change,
 * adds its entries and writes them back; two nodes racing on one chunk
 * lose one's new entries (last writer wins), which costs hints, never
 * data: every block found through an entry is verified against its key.
 *
 * Threads: lookups run on the caller's thread over one of MC_MAP_CONNS
 * handles (a busy set of handles is a miss, not a wait), bounded by the
 * tier's timeout; puts are queued in a ring allocated at open (a full ring
 * drops them, counted) and sent by one thread. */
#ifndef SHOAL_CLUSTER_MEMCACHED_MAP_H
#define SHOAL_CLUSTER_MEMCACHED_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/fingerprint.h"
#include "core/tier.h"

struct mc_ring;
struct mc_map;

#define MC_MAP_CHUNK     64
#define MC_MAP_MAC_LEN   16
#define MC_MAP_VALUE_LEN (8 + MC_MAP_CHUNK * FPKEY_SIZE + MC_MAP_MAC_LEN)
#define MC_MAP_SECRET    32 /* bytes of the cluster's secret */
/* "m1:" + 32 hex + ":" + up to 16 hex */
#define MC_MAP_KEY_MAX (3 + 2 * TIER_MAP_ID_SIZE + 1 + 16)
#define MC_MAP_QUEUE   65536 /* entries waiting to be sent (48 bytes each) */

/* One chunk of the map, decoded. */
struct mc_map_chunk {
    uint64_t present;
    struct fpkey keys[MC_MAP_CHUNK];
};

/* The memcached key of a chunk, NUL-terminated into out; its length. */
size_t mc_map_key(const struct tier_map_id *id, uint64_t chunk, char out[MC_MAP_KEY_MAX + 1]);
/* key/klen: the chunk's memcached key, which the MAC covers (so a value
 * cannot be replayed under another chunk or volume). */
void mc_map_encode(const struct mc_map_chunk *c, const char *key, size_t klen,
                   const uint8_t secret[MC_MAP_SECRET], uint8_t out[MC_MAP_VALUE_LEN]);
/* 0, -EINVAL for a value of the wrong size, -EBADMSG for a wrong MAC,
 * -ENOMEM when the MAC cannot be computed (nothing is accepted then).
 * Absent keys come out zero. */
int mc_map_decode(const void *val, size_t len, const char *key, size_t klen,
                  const uint8_t secret[MC_MAP_SECRET], struct mc_map_chunk *out);

/* Counters (relaxed atomics). */
struct mc_map_stats {
    uint64_t busy;       /* lookups with every handle in use (misses) */
    uint64_t put_drops;  /* entries dropped: the queue was full */
    uint64_t sets;       /* chunks written */
    uint64_t bad_values; /* chunks of the wrong size (ignored) */
    uint64_t forged;     /* chunks with a wrong MAC (ignored) */
};

/* queue: entries the put ring holds (0: MC_MAP_QUEUE); allocs: counts
 * what libmemcached allocates for the map's handles (mc_alloc.h; may be
 * NULL). */
int mc_map_open(struct mc_ring *ring, uint32_t timeout_ms, unsigned queue, uint64_t *allocs,
                struct mc_map **out);
void mc_map_close(struct mc_map *m);
int mc_map_lookup(struct mc_map *m, const struct tier_map_id *id, uint64_t first, unsigned n,
                  struct fpkey *keys, uint64_t *found);
void mc_map_put(struct mc_map *m, const struct tier_map_id *id, uint64_t blk,
                const struct fpkey *key);
/* Wait until every entry queued before the call was written: 0 or
 * -ETIMEDOUT. */
int mc_map_flush(struct mc_map *m, uint32_t timeout_ms);
void mc_map_get_stats(struct mc_map *m, struct mc_map_stats *out);
/* The cluster's secret (MC_MAP_SECRET bytes); until it is set, lookups
 * find nothing and puts are dropped. */
void mc_map_set_secret(struct mc_map *m, const uint8_t *secret);
bool mc_map_ready(struct mc_map *m);

#endif
