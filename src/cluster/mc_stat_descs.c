/* The memcached tier's descriptor tables, generated from its lists
 * (mc_stats_list.h); mgmt's unit tests link this file too. */
#include <stddef.h>

#include "cluster/mc_stats.h"
#include "common/util.h"

const struct stat_desc mc_server_stat_descs[] = {
#define X(n, k, u, h) {#n, k, u, h, offsetof(struct mc_server_snap, n)},
    MC_SERVER_COUNTERS(X) MC_SERVER_GAUGES(X) MC_SERVER_RATIOS(X)
#undef X
};
const unsigned mc_server_stat_count = ARRAY_SIZE(mc_server_stat_descs);

const struct stat_desc mc_tier_stat_descs[] = {
#define X(n, k, u, h) {#n, k, u, h, offsetof(struct mc_tier_snap, n)},
    MC_TIER_STATS(X) MC_TIER_RATIOS(X)
#undef X
};
const unsigned mc_tier_stat_count = ARRAY_SIZE(mc_tier_stat_descs);
