/* THE list of shoal's statistics. Add a stat here and it appears in
 * GET /api/v1/stats, /metrics and `shoalctl stats` without touching them.
 * X(name, kind, unit, help). Ratios are derived in the snapshot functions
 * (volume_snapshot / cache_snapshot) and listed here so they render too. */
#ifndef SHOAL_CORE_STATS_LIST_H
#define SHOAL_CORE_STATS_LIST_H

/* Per-volume counters, kept as relaxed atomics in struct volume. */
#define VOLUME_COUNTERS(X)                                                                         \
    X(read_ops, STAT_COUNTER, "ops", "Read requests")                                              \
    X(read_bytes, STAT_COUNTER, "bytes", "Bytes read by clients")                                  \
    X(read_hit_bytes, STAT_COUNTER, "bytes", "Read bytes served from RAM")                         \
    X(read_miss_bytes, STAT_COUNTER, "bytes", "Read bytes fetched from the back end")              \
    X(write_ops, STAT_COUNTER, "ops", "Write requests")                                            \
    X(write_bytes, STAT_COUNTER, "bytes", "Bytes written by clients")                              \
    X(trim_ops, STAT_COUNTER, "ops", "Trim requests")                                              \
    X(trim_bytes, STAT_COUNTER, "bytes", "Bytes trimmed")                                          \
    X(zero_ops, STAT_COUNTER, "ops", "Write-zeroes requests")                                      \
    X(zero_bytes, STAT_COUNTER, "bytes", "Bytes zeroed")                                           \
    X(flush_ops, STAT_COUNTER, "ops", "Flush requests")                                            \
    X(cache_ops, STAT_COUNTER, "ops", "Prefetch (NBD_CMD_CACHE) requests")                         \
    X(block_status_ops, STAT_COUNTER, "ops", "Block status requests")                              \
    X(errors, STAT_COUNTER, "ops", "Requests answered with an error")                              \
    X(backend_read_ops, STAT_COUNTER, "ops", "Reads sent to the back end")                         \
    X(backend_read_bytes, STAT_COUNTER, "bytes", "Bytes read from the back end")                   \
    X(readahead_bytes, STAT_COUNTER, "bytes", "Bytes fetched around read misses (read-ahead)")     \
    X(readahead_used_bytes, STAT_COUNTER, "bytes",                                                 \
      "Read-ahead bytes a client then read from RAM (what read-ahead paid back)")                  \
    X(readahead_denied, STAT_COUNTER, "windows",                                                   \
      "Read-ahead windows not fetched: the volume's read-ahead budget could not pay for them")     \
    X(partial_exact_blocks, STAT_COUNTER, "blocks",                                                \
      "Partly read blocks fetched exactly, not whole, and not cached (first partial miss)")        \
    X(copy_shared_blocks, STAT_COUNTER, "blocks",                                                  \
      "Blocks copied (SCSI EXTENDED COPY) that share the source's cached content, not hashed")     \
    X(backend_errors, STAT_COUNTER, "ops", "Back end operations that failed")                      \
    X(async_ops, STAT_COUNTER, "ops",                                                              \
      "Read misses and writes sent to the back end from the thread that parsed them and "          \
      "answered from the back end's (no worker)")                                                  \
    X(insert_races, STAT_COUNTER, "blocks",                                                        \
      "Fetched blocks not cached because a write or invalidate raced them")                        \
    X(key_hit_blocks, STAT_COUNTER, "blocks",                                                      \
      "Read misses found by their remembered key in RAM (another volume brought the content "      \
      "back)")                                                                                     \
    X(tier_hit_blocks, STAT_COUNTER, "blocks",                                                     \
      "Read misses served by a tier (by remembered key, checked) instead of the back end")

/* Per-volume gauges and ratios computed at snapshot time. */
#define VOLUME_GAUGES(X)                                                                           \
    X(size_bytes, STAT_GAUGE, "bytes", "Volume size")                                              \
    X(connections, STAT_GAUGE, "connections", "Connected clients")                                 \
    X(enabled, STAT_GAUGE, "bool", "1 when acceleration is on, 0 in pass-through")                 \
    X(cached_blocks, STAT_GAUGE, "blocks", "Directory entries (blocks of this volume in RAM)")     \
    X(zero_blocks, STAT_GAUGE, "blocks", "Blocks known to be all zero (cost no RAM)")              \
    X(remembered_blocks, STAT_GAUGE, "blocks",                                                     \
      "Blocks whose content left RAM but whose key the directory remembers")

#define VOLUME_RATIOS(X)                                                                           \
    X(hit_ratio, STAT_RATIO, "ratio", "Share of read bytes served from RAM")                       \
    X(offload_ratio, STAT_RATIO, "ratio",                                                          \
      "1 - back end read bytes / client read bytes: the share of reads kept off the back end; "    \
      "negative when the cache (read-ahead) read more from it than clients asked for")

/* Cache-wide (content store) figures. */
#define CACHE_GAUGES(X)                                                                            \
    X(capacity_bytes, STAT_GAUGE, "bytes", "RAM budget for cached content (--cache-size)")         \
    X(used_bytes, STAT_GAUGE, "bytes", "RAM holding cached content")                               \
    X(unique_blocks, STAT_GAUGE, "blocks", "Distinct 4 KiB contents held")                         \
    X(logical_blocks, STAT_GAUGE, "blocks", "Volume blocks that map to held contents")             \
    X(zero_blocks, STAT_GAUGE, "blocks", "Volume blocks mapped to the all-zero constant")          \
    X(logical_bytes, STAT_GAUGE, "bytes", "Effective cache size: logical bytes served from RAM")   \
    X(metadata_bytes, STAT_GAUGE, "bytes",                                                         \
      "Memory for cache metadata (entries, tables, directories), remembered blocks included")      \
    X(directory_remembered_blocks, STAT_GAUGE, "blocks",                                           \
      "Blocks, all volumes, whose content left RAM but whose key is remembered")                   \
    X(remembered_limit_blocks, STAT_GAUGE, "blocks", "Most blocks the directories may remember")   \
    X(remembered_metadata_bytes, STAT_GAUGE, "bytes", "Memory for remembered blocks")              \
    X(mrc_bytes, STAT_GAUGE, "bytes",                                                              \
      "Memory for the miss-ratio curves, cache and volumes (fixed; not in metadata_bytes)")        \
    X(io_buffer_bytes, STAT_GAUGE, "bytes",                                                        \
      "Request buffers allocated: in use and kept for reuse (at most --io-memory)")                \
    X(heap_bytes, STAT_GAUGE, "bytes",                                                             \
      "The process's heap in use (malloc'ed, not freed): request buffers and directories "         \
      "included, cached content and the store's entry table (mapped apart) not")                   \
    X(busy_poll_caught, STAT_COUNTER, "requests",                                                  \
      "Client requests a front end's reader found by busy polling, without sleeping "              \
      "(--busy-poll)")                                                                             \
    X(busy_poll_missed, STAT_COUNTER, "polls", "Busy polls that found nothing and slept")          \
    X(tier_lookups, STAT_COUNTER, "lookups", "Batched lookups sent to tiers")                      \
    X(tier_hits, STAT_COUNTER, "blocks", "Blocks tiers returned that matched their key")           \
    X(tier_corrupt, STAT_COUNTER, "blocks", "Blocks tiers returned that did not match their key")  \
    X(tier_timeouts, STAT_COUNTER, "lookups", "Tier lookups given up after the tier's timeout")    \
    X(tier_errors, STAT_COUNTER, "lookups", "Tier lookups that failed")                            \
    X(tier_puts, STAT_COUNTER, "blocks", "Blocks offered to tiers after a back end read")          \
    X(map_lookups, STAT_COUNTER, "lookups",                                                        \
      "Lookups in the cluster's shared block -> key map of read-only volumes")                     \
    X(map_hits, STAT_COUNTER, "blocks", "Block keys the cluster's map gave")                       \
    X(map_puts, STAT_COUNTER, "blocks", "Block keys offered to the cluster's map")                 \
    X(evictions, STAT_COUNTER, "blocks", "Contents evicted to make room")                          \
    X(inserts, STAT_COUNTER, "blocks", "Contents added")                                           \
    X(dedup_hits, STAT_COUNTER, "blocks", "Blocks that found their content already held")          \
    X(insert_failures, STAT_COUNTER, "blocks", "Blocks not cached for lack of room or references")

/* Cache-wide times (doubles). */
#define CACHE_SECONDS(X)                                                                           \
    X(busy_poll_cpu_seconds, STAT_SECONDS, "seconds", "CPU time spent busy polling (--busy-poll)")

#define CACHE_RATIOS(X)                                                                            \
    X(dedup_ratio, STAT_RATIO, "ratio", "logical_blocks / unique_blocks")                          \
    X(metadata_bytes_per_block, STAT_RATIO, "bytes",                                               \
      "(metadata_bytes - remembered_metadata_bytes) / unique_blocks: per locally cached block")    \
    X(remembered_bytes_per_block, STAT_RATIO, "bytes",                                             \
      "remembered_metadata_bytes / directory_remembered_blocks")                                   \
    X(fill_ratio, STAT_RATIO, "ratio", "used_bytes / capacity_bytes")

#endif
