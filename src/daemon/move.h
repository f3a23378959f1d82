/* Warm volume moves, the daemon's part (docs/cluster.md): the API's move
 * hook on the owner (fence writes, publish the directory, hand the
 * ownership over in etcd, drop the volume), and, on every node, adopting a
 * volume handed to it (claim it, open it with the published keys loaded,
 * keep it in the state file). Glue between core/vol_move.h,
 * cluster/membership.h and the persist hooks. */
#ifndef SHOAL_DAEMON_MOVE_H
#define SHOAL_DAEMON_MOVE_H

#include "core/engine.h"
#include "mgmt/mgmt.h"

/* Add the move hook to hooks (whose `changed` keeps the state file) and
 * start adopting hand-overs to this node. A no-op outside a cluster.
 * backing_dirs: --backing-dir (NULL: anywhere), kept by the caller. */
void move_setup(struct engine *e, struct mgmt_hooks *hooks, const char *const *backing_dirs);
/* Stop adopting (before the engine goes). */
void move_stop(void);

#endif
