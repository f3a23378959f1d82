/* Snapshots of the memcached tier's statistics (the lists in
 * mc_stats_list.h), for the management side: plain structs and the
 * descriptor tables its renderers walk. Nothing here needs libmemcached,
 * so mgmt's unit tests build against it with a fake tier. */
#ifndef SHOAL_CLUSTER_MC_STATS_H
#define SHOAL_CLUSTER_MC_STATS_H

#include <stdint.h>

#include "cluster/mc_stats_list.h"
#include "common/stats.h"

#define MC_STATS_MAX_SERVERS 64 /* MC_RING_MAX_SERVERS */

/* A server's state in the ring. */
#define MC_STATE_LIVE      "live"      /* no failure lately */
#define MC_STATE_PROBATION "probation" /* failed lately (or just retried), not ejected */
#define MC_STATE_EJECTED   "ejected"   /* out of the ring until retry_in_seconds */

/* clang-format off: the X-macro lists end without ';', which it misreads */
struct mc_server_snap {
    char name[272];        /* "host:port", as the ring hashes it */
    const char *state;     /* MC_STATE_* */
    char stats_error[128]; /* why its stats could not be read ("" when stats_ok) */
#define X(name, kind, unit, help) uint64_t name;
    MC_SERVER_COUNTERS(X)
    MC_SERVER_GAUGES(X)
#undef X
#define X(name, kind, unit, help) double name;
    MC_SERVER_RATIOS(X)
#undef X
};

struct mc_tier_snap {
#define X(name, kind, unit, help) uint64_t name;
    MC_TIER_STATS(X)
#undef X
#define X(name, kind, unit, help) double name;
    MC_TIER_RATIOS(X)
#undef X
};
/* clang-format on */

struct tier;
/* The tier's figures and up to `max` servers' (in ring order). Returns how
 * many servers were filled, or a negative errno. Reads memory only: the
 * servers' own stats come from the last background poll. */
int tier_memcached_snapshot(struct tier *t, struct mc_tier_snap *tier, struct mc_server_snap *srv,
                            unsigned max);

extern const struct stat_desc mc_server_stat_descs[];
extern const unsigned mc_server_stat_count;
extern const struct stat_desc mc_tier_stat_descs[];
extern const unsigned mc_tier_stat_count;

#endif
