/* The memcached tier's view of its servers: the list from the
 * configuration, which of them are live, and the map from key to server.
 *
 * Placement: a key hashes (libmemcached's MD5 of the key) into one of
 * MC_RING_BUCKETS virtual buckets; each bucket belongs to the live server
 * with the highest score hash(server name, bucket) (rendezvous hashing).
 * Adding a server moves only the buckets it now wins (about 1/N), removing
 * one moves only its own, and with 8192 buckets the servers' shares stay
 * within a few percent of each other. libmemcached's ketama ring (100 or 160
 * points per server) was measured at up to 29% off the mean for 3 servers
 * (docs/cluster.md), hence buckets. Every node must spell the servers the
 * same way ("host:port") to place keys the same way.
 *
 * Health: an operation that fails on a server (timeout, refused, reset)
 * counts against it; after `failure_limit` failures in a row it is
 * ejected: its buckets go to the other servers (their keys are misses there
 * until put again) and it is retried after a back-off that doubles on each
 * failed retry (retry_ms .. retry_max_ms). The state is shared by all of
 * the tier's threads; each thread keeps its own memcached_st (struct
 * mc_conn: libmemcached handles are not thread-safe) and rebuilds it when
 * the live set changes or after a failure (which also drops any half-read
 * replies).
 *
 * Lock rules: mc_ring.lock guards the server list (srv[], n: mc_ring_set
 * replaces them) and the servers' health; `gen` and
 * `next_due_ms` are read without it (atomics). A struct mc_conn belongs to
 * one thread. */
#ifndef SHOAL_CLUSTER_MC_RING_H
#define SHOAL_CLUSTER_MC_RING_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <libmemcached/memcached.h>

#include "common/histogram.h"

struct mc_alloc;

#define MC_RING_MAX_SERVERS 64
#define MC_RING_BUCKETS     8192 /* a power of two (libmemcached masks the hash) */
#define MC_DEFAULT_PORT     11211

struct mc_server {
    char host[256];
    uint16_t port;
    char name[272]; /* "host:port", as placement hashes it */
    uint64_t name_hash;
    /* under mc_ring.lock */
    unsigned fails;    /* failed operations in a row */
    unsigned timeouts; /* of which short-wait timeouts (mc_conn.short_waits) */
    bool ejected;
    uint64_t dead_until; /* ms, monotonic: retried after this */
    uint32_t backoff_ms; /* the next ejection's length */
    /* what the tier saw of it (memcached_stats.h), carried across list
     * changes like its health */
    uint64_t lookups, keys, hits, ejections;
    struct histogram rtt; /* multi-get round trips it took part in */
};

struct mc_ring_params {
    uint32_t io_timeout_ms; /* connect, poll, send, receive */
    unsigned failure_limit;
    uint32_t retry_ms, retry_max_ms;
    bool allow_empty; /* the list comes later (mc_ring_set: etcd membership) */
};

struct mc_ring {
    struct mc_ring_params p;
    unsigned n;
    struct mc_server srv[MC_RING_MAX_SERVERS];
    pthread_mutex_t lock;
    uint64_t gen;                 /* bumped when the live set changes (atomic) */
    uint64_t next_due_ms;         /* earliest dead_until among ejected, 0: none (atomic) */
    uint64_t ejections, revivals; /* atomic */
    uint64_t layout;              /* under lock: bumped when mc_ring_set changes srv[] */
    bool inited;
};

/* One thread's connection set, built for ring generation `gen`. */
struct mc_conn {
    memcached_st *mc; /* NULL: not built, or no live server */
    uint64_t gen;
    uint64_t layout; /* the ring's layout that ring_idx indexes */
    unsigned nlive;
    uint8_t ring_idx[MC_RING_MAX_SERVERS]; /* mc server index -> mc_ring.srv */
    bool noreply;                          /* for the put thread */
    /* Allocators of every handle built for it (mc_alloc.h: a lookup
     * thread's or inline slot's own spare), or NULL: libmemcached's. */
    struct mc_alloc *alloc;
    /* Waits cut to the read path's timeout (lookups on the reader's own
     * thread, the map's): a timeout there says "slow", not "dead", so it
     * counts against MC_SHORT_TIMEOUT_FACTOR x failure_limit in a row. */
    bool short_waits;
};
/* On a loaded host a server's answer can take longer than the read path's
 * few ms many times in a row (a boot storm on 2 cores ejected every server
 * at 5 ms); a hung server still times out every time and goes. */
#define MC_SHORT_TIMEOUT_FACTOR 8

/* Parse "host:port,host:port" ("[v6addr]:port"; the port defaults to 11211)
 * into r. Returns 0, or -EINVAL after logging one line. */
int mc_ring_init(struct mc_ring *r, const char *servers, const struct mc_ring_params *p);
void mc_ring_destroy(struct mc_ring *r);
/* Replace the server list while the tier runs (etcd membership): servers
 * that stay keep their health, and rendezvous hashing moves only the
 * buckets that a new server wins or a removed one held. Every thread
 * rebuilds its handle on its next operation. Returns 0, or -EINVAL (one
 * line logged; the list is unchanged) / -ENOMEM. */
int mc_ring_set(struct mc_ring *r, const char *servers);
/* The current list, "host:port,..." into buf; returns how many, or -ENOSPC. */
int mc_ring_names(struct mc_ring *r, char *buf, size_t len);
/* Check one "HOST[:PORT]" and give its canonical "host:port" name: 0 or
 * -EINVAL (one line logged). */
int mc_ring_check(const char *server, char *name, size_t namelen);
/* The same, quiet: why it is refused goes in why (NUL-terminated). */
int mc_ring_check_why(const char *server, char *name, size_t namelen, char *why, size_t whylen);

/* A whole server list, as mc_ring_init takes it (HOST[:PORT], IPv6 as
 * [ADDR]:PORT, comma-separated, each once, at most MC_RING_MAX_SERVERS):
 * 0, or -EINVAL with why (one line) set, for a config checker. */
int mc_ring_check_list(const char *servers, char *why, size_t whylen);
unsigned mc_ring_live(struct mc_ring *r);

/* Make c->mc current (rebuilt if the live set changed, or ejected servers
 * are due for a retry). Returns 0, -ENOENT when no server is live (c->mc is
 * NULL), or -ENOMEM. */
int mc_conn_refresh(struct mc_ring *r, struct mc_conn *c);
/* After an operation on c->mc: count a failure against each server whose
 * connection failed in it (and drop c->mc so the next one starts clean), or
 * clear the failures of servers that answered. Returns the number of
 * failed servers. `keys`/`lens` (n) are the keys the operation touched: a
 * server on probation is cleared only if one of them is its. */
unsigned mc_conn_report(struct mc_ring *r, struct mc_conn *c, const char *const *keys,
                        const size_t *lens, unsigned n);
void mc_conn_drop(struct mc_conn *c);

/* For tests and tools: which server (index into r->srv) holds key, given
 * the current live set; -1 if none is live. */
int mc_ring_server_of(struct mc_ring *r, const char *key, size_t len);
/* How many of the MC_RING_BUCKETS buckets each of srv[0 .. n-1] holds
 * (a copy of the ring's list: counting takes 8192 x n hashes, too long to
 * hold mc_ring.lock). */
void mc_ring_buckets(const struct mc_server *srv, unsigned n, unsigned *counts);
/* The live server that holds a bucket: its index (-1: none) and name. */
int mc_ring_bucket_owner(struct mc_ring *r, uint32_t bucket, char *name, size_t namelen);

#endif
