/* The memcached tier's per-server figures (mc_stats_list.h):
 *   - counts the lookup threads add once per multi-get (keys asked, values
 *     returned, round trip), kept with each server in the ring;
 *   - each server's own `stats` and `stats slabs` (items, bytes, slab
 *     waste), read by one background thread every MC_POLL_PERIOD_MS with a
 *     timeout of its own, never on the read path;
 *   - the snapshot mgmt renders (mc_stats.h), built from both.
 *
 * Lock rules: counts are under mc_ring.lock; the poll's table is under its
 * own lock, never held with the ring's. */
#ifndef SHOAL_CLUSTER_MEMCACHED_STATS_H
#define SHOAL_CLUSTER_MEMCACHED_STATS_H

#include "cluster/mc_ring.h"
#include "cluster/mc_stats.h"
#include "cluster/memcached.h"

#define MC_POLL_PERIOD_MS  3000
#define MC_POLL_TIMEOUT_MS 1000 /* connect, send, receive of one server's stats */

struct mc_poll;

/* Start the thread that reads the servers' stats. 0 or a negative errno. */
int mc_poll_start(struct mc_ring *r, struct mc_poll **out);
void mc_poll_stop(struct mc_poll *p); /* NULL: no-op */

/* After one multi-get on c->mc: for each of its servers (c's index),
 * the keys asked and the values delivered, and the round trip. Ignored
 * when the ring's list changed since c was built. */
void mc_stats_count(struct mc_ring *r, const struct mc_conn *c, const unsigned *keys,
                    const unsigned *hits, uint64_t rtt_ns);

/* The snapshot (see tier_memcached_snapshot): servers in ring order. */
int mc_stats_servers(struct mc_ring *r, struct mc_poll *p, struct mc_server_snap *out,
                     unsigned max);
void mc_stats_tier(const struct tier_memcached_stats *st, const struct mc_server_snap *s,
                   unsigned n, struct mc_tier_snap *out);

#endif
