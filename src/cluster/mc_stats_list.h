/* THE list of the memcached tier's statistics, per server and for the
 * whole tier. Add one here and it appears in GET /api/v1/cluster and
 * /api/v1/stats ("memcached"), in /metrics (shoal_memcached_server_<stat>
 * with a `server` label, shoal_memcached_<stat>) and in `shoalctl cluster
 * status --all`, without touching them. X(name, kind, unit, help), as in
 * core/stats_list.h. Per-server figures come from two places: the tier's
 * own counts (lookups, latency, health: kept in the ring, mc_ring.h) and
 * the server's own `stats` and `stats slabs`, read by a background thread
 * every few seconds (memcached_stats.h). */
#ifndef SHOAL_CLUSTER_MC_STATS_LIST_H
#define SHOAL_CLUSTER_MC_STATS_LIST_H

#define MC_SERVER_COUNTERS(X)                                                                      \
    X(lookups, STAT_COUNTER, "lookups", "Batched multi-gets that asked this server for keys")      \
    X(lookup_keys, STAT_COUNTER, "keys",                                                           \
      "Keys asked of this server (duplicates in a batch count)")                                   \
    X(lookup_hits, STAT_COUNTER, "blocks",                                                         \
      "Values this server returned to a lookup still waiting (checked by the core afterwards)")    \
    X(ejections, STAT_COUNTER, "ejections", "Times this server was ejected after failures")        \
    X(evictions, STAT_COUNTER, "items",                                                            \
      "Items the server evicted to make room (its own stats: evictions)")

#define MC_SERVER_GAUGES(X)                                                                        \
    X(ring_buckets, STAT_GAUGE, "buckets", "Ring buckets (of 8192) the server holds now")          \
    X(failures, STAT_GAUGE, "failures", "Failed operations in a row now")                          \
    X(curr_items, STAT_GAUGE, "items", "Items it holds (its own stats: curr_items)")               \
    X(bytes, STAT_GAUGE, "bytes",                                                                  \
      "Bytes its items take, headers and keys included (stats: bytes)")                            \
    X(limit_maxbytes, STAT_GAUGE, "bytes",                                                         \
      "Its memory limit (memcached -m; stats: limit_maxbytes)")                                    \
    X(slab_chunk_bytes, STAT_GAUGE, "bytes",                                                       \
      "Bytes of the slab chunks its items sit in (stats slabs: used_chunks x chunk_size)")         \
    X(slab_malloced_bytes, STAT_GAUGE, "bytes", "Memory its slab pages took (stats slabs)")        \
    X(slab_waste_bytes, STAT_GAUGE, "bytes",                                                       \
      "slab_chunk_bytes - bytes: chunk space its items leave unused")                              \
    X(stats_ok, STAT_GAUGE, "bool", "1 when the last read of its stats succeeded")

#define MC_SERVER_RATIOS(X)                                                                        \
    X(ring_share, STAT_RATIO, "ratio", "ring_buckets / 8192: its share of the keys")               \
    X(hit_share, STAT_RATIO, "ratio", "Its lookup_hits / every server's lookup_hits")              \
    X(hit_ratio, STAT_RATIO, "ratio", "lookup_hits / lookup_keys")                                 \
    X(latency_mean_seconds, STAT_RATIO, "seconds",                                                 \
      "Mean round trip of the multi-gets it took part in (request sent to last reply read)")       \
    X(latency_p50_seconds, STAT_RATIO, "seconds", "Median of that round trip")                     \
    X(latency_p99_seconds, STAT_RATIO, "seconds", "99th percentile of that round trip")            \
    X(retry_in_seconds, STAT_RATIO, "seconds", "Ejected: time until it is retried (else 0)")       \
    X(stats_age_seconds, STAT_RATIO, "seconds", "Age of the figures read from its stats")          \
    X(slab_waste_ratio, STAT_RATIO, "ratio", "slab_waste_bytes / slab_chunk_bytes")                \
    X(bytes_per_item, STAT_RATIO, "bytes",                                                         \
      "bytes / curr_items: memory per cached block in items (4096 + key + header)")                \
    X(chunk_bytes_per_item, STAT_RATIO, "bytes",                                                   \
      "slab_chunk_bytes / curr_items: memory per cached block, slab waste included")

/* The whole tier: its own counters (struct tier_memcached_stats in
 * memcached.h is made of these), then the servers' polled figures summed. */
#define MC_TIER_OWN(X)                                                                             \
    X(servers, STAT_GAUGE, "servers", "Servers in the ring")                                       \
    X(live, STAT_GAUGE, "servers", "Servers not ejected")                                          \
    X(put_sent, STAT_COUNTER, "blocks", "Sets handed to a server")                                 \
    X(put_drops, STAT_COUNTER, "blocks", "Puts and forgets dropped: the queue was full")           \
    X(put_errors, STAT_COUNTER, "blocks", "Puts not sent: no live server, or it failed")           \
    X(put_queued, STAT_GAUGE, "bytes", "Bytes of puts waiting to be sent")                         \
    X(lookup_busy, STAT_COUNTER, "lookups", "Lookups refused: too many waiting")                   \
    X(lookup_inline, STAT_COUNTER, "lookups", "Lookups answered on the reader's own thread")       \
    X(lookup_failures, STAT_COUNTER, "lookups",                                                    \
      "Lookups a server failed in (timed out or errored): their keys went to the back end")        \
    X(lookup_cut, STAT_COUNTER, "lookups",                                                         \
      "Lookups cut off at their time limit while a server was still sending")                      \
    X(bad_values, STAT_COUNTER, "blocks", "Values of the wrong size (ignored)")                    \
    X(lookup_allocs, STAT_COUNTER, "allocations",                                                  \
      "Allocations libmemcached made for lookups (handle rebuilds, errors; none per lookup)")      \
    X(put_allocs, STAT_COUNTER, "allocations",                                                     \
      "Allocations libmemcached made for puts (handle rebuilds, errors; none per put)")            \
    X(map_allocs, STAT_COUNTER, "allocations",                                                     \
      "Allocations libmemcached made for the block map (rebuilds, errors; none per chunk)")        \
    X(ejections, STAT_COUNTER, "ejections", "Servers ejected")                                     \
    X(revivals, STAT_COUNTER, "revivals", "Ejected servers retried")

#define MC_TIER_POLLED(X)                                                                          \
    X(curr_items, STAT_GAUGE, "items", "Items held by every server whose stats answered")          \
    X(bytes, STAT_GAUGE, "bytes", "Their items' bytes")                                            \
    X(slab_chunk_bytes, STAT_GAUGE, "bytes", "Their items' slab chunk bytes")

#define MC_TIER_STATS(X) MC_TIER_OWN(X) MC_TIER_POLLED(X)

#define MC_TIER_RATIOS(X)                                                                          \
    X(bytes_per_item, STAT_RATIO, "bytes", "bytes / curr_items over the servers")                  \
    X(chunk_bytes_per_item, STAT_RATIO, "bytes",                                                   \
      "slab_chunk_bytes / curr_items: memory per block in this tier, slab waste included")         \
    X(slab_waste_ratio, STAT_RATIO, "ratio", "(slab_chunk_bytes - bytes) / slab_chunk_bytes")

#endif
