/* The cluster as a node without [cluster] etcd sees it (membership.h),
 * for the management tests that build mgmt's sources without libshoal. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/mc_stats.h"
#include "cluster/membership.h"

int cluster_claim(const char *volume, bool readonly, char *err, size_t errlen)
{
    (void)volume, (void)readonly, (void)err, (void)errlen;
    return 0;
}

void cluster_release(const char *volume)
{
    (void)volume;
}

int cluster_status(json_t **out)
{
    *out = json_pack("{s:b}", "enabled", 0);
    return *out ? 0 : -ENOMEM;
}

int cluster_memcached_add(const char *server, char *canon, size_t canonlen, char *err,
                          size_t errlen)
{
    (void)server, (void)canon, (void)canonlen;
    snprintf(err, errlen, "this node is not in a cluster (no [cluster] etcd)");
    return -ENOTCONN;
}

int cluster_memcached_remove(const char *server, char *canon, size_t canonlen, char *err,
                             size_t errlen)
{
    return cluster_memcached_add(server, canon, canonlen, err, errlen);
}

bool cluster_enabled(void)
{
    return false;
}

const char *cluster_node_name(void)
{
    return "";
}

/* A tier of two servers with fixed figures, for the tests that give mgmt
 * a (dummy) tier: "cache-a:11211" live, "cache-b:11211" ejected. */
int tier_memcached_snapshot(struct tier *t, struct mc_tier_snap *tier, struct mc_server_snap *srv,
                            unsigned max)
{
    (void)t;
    if (max < 2)
        return -ENOSPC;
    memset(srv, 0, 2 * sizeof *srv);
    snprintf(srv[0].name, sizeof srv[0].name, "cache-a:11211");
    srv[0].state = MC_STATE_LIVE;
    srv[0].stats_ok = 1;
    srv[0].lookups = 7;
    srv[0].lookup_keys = 40;
    srv[0].lookup_hits = 30;
    srv[0].ring_buckets = 8192;
    srv[0].ring_share = 1.0;
    srv[0].hit_share = 0.75;
    srv[0].curr_items = 100;
    srv[0].bytes = 419800;
    srv[0].slab_chunk_bytes = 454400;
    srv[0].slab_waste_bytes = 454400 - 419800;
    srv[0].latency_p50_seconds = 96e-6;
    snprintf(srv[1].name, sizeof srv[1].name, "cache-b:11211");
    srv[1].state = MC_STATE_EJECTED;
    srv[1].retry_in_seconds = 1.5;
    srv[1].lookup_hits = 10;
    srv[1].hit_share = 0.25;
    snprintf(srv[1].stats_error, sizeof srv[1].stats_error, "CONNECTION FAILURE");
    memset(tier, 0, sizeof *tier);
    tier->servers = 2;
    tier->live = 1;
    tier->put_sent = 120;
    tier->curr_items = 100;
    return 2;
}
