/* Warm volume moves, the core's part (docs/cluster.md, "Warm volume
 * moves"): the old owner fences the volume's writes and publishes its
 * directory (block -> key, live and remembered, and the content of live
 * blocks) to the cluster's map under a move identity; the new owner loads
 * those keys as remembered blocks before it serves the volume, so its
 * misses go to the global tier by key instead of the back end. The etcd
 * hand-over between the two is cluster/membership.c's. The old owner
 * fences the volume's writes first (core/vol_fence.h, VOL_FENCE_MOVE). */
#ifndef SHOAL_CORE_VOL_MOVE_H
#define SHOAL_CORE_VOL_MOVE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tier.h"

struct volume;

/* The map identity of a move: the volume's name and the generation that
 * the ownership record names, so a stale move's entries are never read. */
int vol_move_identity(const char *name, uint64_t gen, struct tier_map_id *out);

/* Publish the directory under id (map puts, and the live blocks' content
 * to the tiers) and wait up to timeout_ms for it to be sent. *blocks: how
 * many keys. 0, -ENOTSUP (no tier keeps a map), -ETIMEDOUT. */
int volume_map_export(struct volume *v, const struct tier_map_id *id, uint32_t timeout_ms,
                      uint64_t *blocks);

/* Load the keys published under id as remembered blocks (zeros as known
 * zeros), within the remembered budget. Only on a volume no client uses
 * yet. *blocks: how many. 0 or -ENOTSUP. */
int volume_map_import(struct volume *v, const struct tier_map_id *id, uint64_t *blocks);

#endif
