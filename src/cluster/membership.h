/* Cluster membership and volume ownership in etcd (docs/cluster.md).
 *
 * A node with `[cluster] etcd = ...` keeps a lease (TTL lease_ttl_s,
 * renewed every TTL/3 on its own thread) and, under it:
 *   shoal/v1/nodes/<name>          {"name", "memcached", "api", "started", "pid"}
 *   shoal/v1/memcached/<host:port>  its own memcached server(s) {"node"}
 *   shoal/v1/owners/<volume>       each volume it serves read-write {"node", "lease"}
 * Servers added by `shoalctl cluster add` are memcached keys without a
 * lease ({"node": null}). Every node watches shoal/v1/memcached/ and gives
 * the memcached tier the list it finds there, so all nodes hash with the
 * same ring; a node that dies loses its lease after the TTL, and with it its
 * registration, its memcached server and its volumes.
 *
 * One writer per volume: cluster_claim creates the owner key only if it
 * does not exist (a txn on create_revision == 0); read-only volumes take
 * none and may be served by every node.
 *
 * The cluster is one per process (started by shoald's main); every
 * function below is a no-op returning 0 when it is not started, so a single
 * node without [cluster] etcd needs no etcd. Thread-safe. */
#ifndef SHOAL_CLUSTER_MEMBERSHIP_H
#define SHOAL_CLUSTER_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cluster/etcd.h"
#include "core/tier.h"

#define CLUSTER_LEASE_TTL_S 10
#define CLUSTER_PREFIX      "shoal/v1/"

struct cluster_config {
    const char *etcd;      /* endpoints, "http://127.0.0.1:2379[,...]" (or https://) */
    struct etcd_tls tls;   /* for https:// endpoints (etcd.h) */
    const char *node_name; /* NULL: the host name */
    const char *memcached; /* this node's own server(s), "host:port[,...]"; NULL: none */
    const char *api;       /* where its management API listens (shown by status) */
    uint32_t lease_ttl_s;  /* 0: CLUSTER_LEASE_TTL_S */
    struct tier *tier;     /* the memcached tier to give the list to (NULL: none) */
};

/* Connect, take the lease, register the node and its memcached server(s),
 * read the server list and start watching. If the node's name is
 * registered already (a previous run killed less than a TTL ago), waits
 * for that registration to expire, up to 1.5 TTL. Returns 0, or a
 * negative errno and one sentence in err. */
int cluster_start(const struct cluster_config *cfg, char *err, size_t errlen);
/* Stop the threads and revoke the lease: the node's keys (registration,
 * memcached, volume ownership) go at once. */
void cluster_stop(void);
bool cluster_enabled(void);
const char *cluster_node_name(void);
/* The management API's address as bound (a --http port 0 is known only
 * once the API listens): the node's record is written again with it. */
int cluster_set_api(const char *api);

/* Before a volume is served: a read-write one takes shoal/v1/owners/<vol>.
 * Returns 0 (taken, already ours, read-only, or no cluster), -EBUSY with
 * "volume X is served read-write by node Y" in err, or another negative
 * errno when etcd cannot be asked (err says why). */
int cluster_claim(const char *volume, bool readonly, char *err, size_t errlen);
/* After a volume is removed: give its ownership back (if this node holds it). */
void cluster_release(const char *volume);

/* Warm volume moves (docs/cluster.md). On the owner: cluster_move_check
 * (in a cluster, the volume is ours read-write, node `to` is registered:
 * 0, or -ENOTCONN / -EINVAL / -ENOENT and err), then, with writes fenced
 * and the directory published, cluster_hand_over: a txn that replaces this
 * node's owner record by {"node": to, "from", "gen", "backing",
 * "settings", "returned"} (still under this node's lease) only if it is
 * still this run's: 0, -ESTALE, or an etcd error. settings: the volume's
 * own settings as the daemon writes them (opaque here; NULL: none);
 * returned: the hand-over gives back a volume this node could not open
 * after a move to it (its old owner takes it again; a returned hand-over
 * is never returned again). On the new owner: every node watches
 * shoal/v1/owners/ and calls the handler once per hand-over to it (on the
 * watch thread); cluster_claim_moved then takes the record under its own
 * lease. A hand-over that its new owner has not claimed after 3 lease
 * TTLs (stopped, or cut off from etcd) is taken back by the node that
 * made it: the record becomes a returned hand-over to that node, whose
 * handler adopts it at once. */
int cluster_move_check(const char *volume, const char *to, char *err, size_t errlen);
int cluster_hand_over(const char *volume, const char *to, uint64_t gen, const char *backing,
                      const json_t *settings, bool returned, char *err, size_t errlen);
/* The new owner's claim of a hand-over: only of the record with this
 * generation (-EBUSY and err otherwise: moved again, or its old owner's
 * lease ended first). */
int cluster_claim_moved(const char *volume, uint64_t gen, char *err, size_t errlen);
/* A hand-over to this node, as the handler gets it (valid during the call). */
struct cluster_hand_over {
    const char *volume, *backing;
    const char *from; /* the node that handed it over ("" unknown) */
    uint64_t gen;
    const json_t *settings; /* NULL: none given */
    bool returned;
};
typedef void (*cluster_hand_over_fn)(void *arg, const struct cluster_hand_over *h);
/* fn NULL: hand-overs are left for later (seen again at the next change). */
void cluster_on_hand_over(cluster_hand_over_fn fn, void *arg);

/* Self-fencing. The lease is renewed every TTL/3; when etcd has answered
 * no renewal for 3/4 of the TTL (counted from the renewal's send), etcd
 * may expire it within a quarter TTL and another node take this node's
 * volumes: the handler is called with fenced true for each volume owned
 * read-write here (the daemon fences its writes and sends its reads to
 * the back end, core/vol_fence.h). When a renewal succeeds in time, or
 * after an expiry the volume is claimed again, fenced false; a volume that
 * another node took meanwhile stays fenced and is no longer owned here.
 * On the fencer's or the lease's thread, never under the membership's
 * lock; calls come in the order of their decisions. fn NULL: none. */
typedef void (*cluster_fence_fn)(void *arg, const char *volume, bool fenced);
void cluster_on_fence(cluster_fence_fn fn, void *arg);

/* GET /api/v1/cluster: {"enabled", "node", "etcd", "lease_ttl", "ring",
 * "nodes": [...], "memcached": [...], "owners": [...], "etcd_error",
 * "fenced", "owned", "lease_renewed_seconds_ago"}. The lists are etcd's;
 * when etcd cannot be read they are empty and etcd_error says why (null
 * otherwise), while the rest, this node's own view, still answers (a
 * node cut off from etcd is fenced: that is when it is asked). Returns 0
 * or -ENOMEM. */
int cluster_status(json_t **out);
/* `shoalctl cluster add|remove HOST:PORT`: a memcached key without a lease.
 * -EINVAL (bad name), -ENOENT (remove: not listed), -ENOTCONN (no cluster),
 * or an etcd error; err says which. *canon: the name as placed. */
int cluster_memcached_add(const char *server, char *canon, size_t canonlen, char *err,
                          size_t errlen);
int cluster_memcached_remove(const char *server, char *canon, size_t canonlen, char *err,
                             size_t errlen);

#endif
