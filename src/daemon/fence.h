/* Self-fencing, the daemon's part: the cluster's fence handler
 * (cluster/membership.h, cluster_on_fence) fences a volume's writes while
 * this node's etcd lease may have expired, and lifts it once the lease is
 * held again (core/vol_fence.h, VOL_FENCE_LEASE). */
#ifndef SHOAL_DAEMON_FENCE_H
#define SHOAL_DAEMON_FENCE_H

#include "core/engine.h"

/* A no-op outside a cluster. */
void fence_setup(struct engine *e);
/* Before the engine goes. */
void fence_stop(void);

#endif
