/* The cluster's routes of the REST API (api.c lists them):
 *
 *   GET    /api/v1/cluster                        nodes (with their state and volumes),
 *                                                 memcached servers (with their figures:
 *                                                 cluster/mc_stats_list.h), volume owners
 *                                                 (cluster/membership.h), this node's ring,
 *                                                 the tier's figures ("tier"). Without etcd:
 *                                                 {"enabled": false} and, with a memcached
 *                                                 tier, its servers and "tier".
 *   POST   /api/v1/cluster/memcached              {"server": "HOST:PORT"}
 *   DELETE /api/v1/cluster/memcached/HOST:PORT
 */
#ifndef SHOAL_MGMT_API_CLUSTER_H
#define SHOAL_MGMT_API_CLUSTER_H

#include "mgmt/mgmt_internal.h"

void api_cluster_get(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep);
void api_cluster_mc_add(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep);
void api_cluster_mc_remove(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep);

#endif
