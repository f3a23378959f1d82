/* The cluster's global tier: content blocks kept in memcached servers
 * (one per host), asked by key after the local store and before the back
 * end. See core/tier.h for the contract and docs/cluster.md for sizing.
 *
 * Keys are "s1:" and the 40 hex digits of the content's 160-bit key
 * (fingerprint.h); values are the 4 KiB block, flags 0, no expiry (memcached
 * evicts by LRU). Placement and server health: mc_ring.h.
 *
 * Threads: a lookup is answered on the caller's thread when one of a few
 * inline slots is free (memcached.c says how that stays within
 * timeout_ms), else `lookup_threads` threads each answer one batched
 * lookup at a time with one multi-get (binary protocol); one thread sends
 * puts and forgets from a queue bounded in bytes (a put that does not fit
 * is dropped and counted). Each thread and slot has its own libmemcached
 * handle and value buffer, used only by the thread answering with it (a
 * lookup thread, or the caller holding the inline slot).
 *
 * Memory is allocated at open (the put queue, the lookup queue, per-thread
 * and per-slot key and value buffers); per lookup and per put nothing is,
 * except inside libmemcached when a handle is rebuilt (a server failed or
 * came back, the list changed) or an error is recorded. A one-key
 * lookup's value, which memcached_get hands over in a buffer of the
 * handle's, is read into the thread's or slot's spare buffer (mc_alloc.h)
 * and given back once delivered; a multi-get's values go to a result
 * buffer each thread and slot reuses. The lookup_allocs counter shows
 * what lookups did allocate. */
#ifndef SHOAL_CLUSTER_MEMCACHED_H
#define SHOAL_CLUSTER_MEMCACHED_H

#include <stdint.h>

#include "cluster/mc_stats_list.h"
#include "core/fingerprint.h"
#include "core/tier.h"

#define TIER_MEMCACHED_TIMEOUT_MS      5
#define TIER_MEMCACHED_PUT_QUEUE_BYTES (16u << 20)
#define TIER_MEMCACHED_PUT_QUEUE_MAX   (64ull << 30)
#define TIER_MEMCACHED_LOOKUP_THREADS  4

struct tier_memcached_config {
    /* "host:port,host:port" ("[v6addr]:port"; the port defaults to 11211).
     * Every node must list the same servers, spelled the same way. */
    const char *servers;
    /* The list may start empty and change while the tier runs
     * (tier_memcached_set_servers: the etcd membership gives it). */
    bool dynamic;
    /* Longest a read waits for one lookup (0: TIER_MEMCACHED_TIMEOUT_MS). */
    uint32_t timeout_ms;
    /* Connect/poll/send/receive timeout on the tier's own threads; an
     * operation that exceeds it counts against the server (0: 4 x
     * timeout_ms, within 20 .. 60000). */
    uint32_t io_timeout_ms;
    /* Blocks waiting to be put (after the reply), in bytes: BLOCK_SIZE ..
     * TIER_MEMCACHED_PUT_QUEUE_MAX (0: TIER_MEMCACHED_PUT_QUEUE_BYTES). */
    uint64_t put_queue_bytes;
    unsigned lookup_threads; /* 0: TIER_MEMCACHED_LOOKUP_THREADS */
    unsigned failure_limit;  /* failed operations in a row that eject a server (0: 2) */
    uint32_t retry_ms;       /* first back-off of an ejected server (0: 1000), doubling */
    uint32_t retry_max_ms;   /* up to this (0: 60000) */
};

/* Returns 0 and a tier (closed with tier_close, or by the engine that it
 * is given to), or -EINVAL (one line logged) / -ENOMEM / an errno from
 * starting threads. No server is contacted here: a server that is down
 * at start is a miss and ejected like any other. */
int tier_memcached_open(const struct tier_memcached_config *cfg, struct tier **out);

extern const struct tier_ops tier_memcached_ops;

/* Counters beyond the core's tier_counters: the fields and their meaning
 * are MC_TIER_OWN's (mc_stats_list.h). */
struct tier_memcached_stats {
#define X(name, kind, unit, help) uint64_t name;
    MC_TIER_OWN(X)
#undef X
};
void tier_memcached_stats(struct tier *t, struct tier_memcached_stats *out);

/* Replace the server list of a running tier ("host:port,...", may be
 * empty): rendezvous hashing moves only the buckets a new server wins or a
 * removed one held (about 1/N each); lookups and puts use the new list
 * from their next operation. Returns 0, or -EINVAL (one line logged, the
 * list unchanged) / -ENOMEM. */
int tier_memcached_set_servers(struct tier *t, const char *servers);
/* The servers in use, "host:port,..." into buf: how many, or -ENOSPC. */
int tier_memcached_servers(struct tier *t, char *buf, size_t len);

/* Wait until every put queued before the call was sent (not necessarily
 * stored yet). Returns 0 or -ETIMEDOUT. For tests and orderly shutdown. */
int tier_memcached_flush(struct tier *t, uint32_t timeout_ms);

/* The memcached key of a content key: "s1:" + 40 lower-case hex digits. */
#define TIER_MEMCACHED_KEY_LEN (3 + 2 * FPKEY_SIZE)
void tier_memcached_key(const struct fpkey *k, char out[TIER_MEMCACHED_KEY_LEN + 1]);

/* Which of the configured servers (0-based, in list order) holds a key
 * now; -1 if none is live. */
int tier_memcached_server_of(struct tier *t, const struct fpkey *k);

/* The tier's shared block -> key map (cluster/memcached_map.h), and the
 * cluster's secret that authenticates its entries (32 bytes; the etcd
 * membership gives it). Without a secret the map is off. */
struct mc_map *tier_memcached_map(struct tier *t);
void tier_memcached_set_map_secret(struct tier *t, const uint8_t *secret);

#endif
