/* The core's side of the cluster's shared block -> key map (tier.h, the
 * map ops): which read-only volumes take part, under what identity, and
 * the key that stands for the all-zero block.
 *
 * A read-only volume's cluster identity names the image, not the node: a
 * hash of the volume's name, its size and its back end's identity (a file:
 * its size and modification time in ns; a network back end: its URI). Two
 * nodes that serve the same unchanged gold image under the same name get
 * the same identity and share the map's entries; a changed image (new
 * mtime) gets a new identity, so old entries are never used for it. A
 * writable volume has none: its blocks change under the map. */
#ifndef SHOAL_CORE_VOL_MAP_H
#define SHOAL_CORE_VOL_MAP_H

#include <stdint.h>

#include "core/fingerprint.h"
#include "core/tier.h"

struct backend;
struct volume;

/* The identity of (name, size, kind, detail): 0, or -EIO. */
int vol_map_identity(const char *name, uint64_t size, const char *kind, const char *detail,
                     struct tier_map_id *out);
/* The identity of a volume over an opened back end: 0, or -ENOTSUP when
 * the back end cannot be named across hosts (a file that cannot be
 * stat()ed, a block device). */
int vol_map_backend_identity(const char *name, const struct backend *be, struct tier_map_id *out);
/* 32 lower-case hex digits and a NUL. */
void vol_map_id_hex(const struct tier_map_id *id, char out[2 * TIER_MAP_ID_SIZE + 1]);

/* The key of the all-zero block: a map entry with it means "zeros" (the
 * zero block is never stored in any tier). */
const struct fpkey *vol_map_zero_key(void);

/* (Re)compute the volume's map identity (at open, after an invalidate:
 * an out-of-band change gave the image a new mtime). Sets v->map_tier to
 * the first tier with a map, or NULL when the volume takes no part: shared
 * is false unless the volume is read-only and not fenced for a move (the
 * caller, volume_ctl.c, knows; this file stays below the volume's
 * control). */
void vol_map_setup(struct volume *v, bool shared);

/* After the race rule accepted block blk's content from the back end:
 * tell the map (a queued put). */
void vol_map_publish(struct volume *v, uint64_t blk, const struct fpkey *key);

#endif
