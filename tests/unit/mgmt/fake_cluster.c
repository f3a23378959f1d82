/* The cluster as a node without [cluster] etcd sees it (membership.h),
 * for the management tests that build mgmt's sources without libshoal. */
#include <errno.h>
#include <stdio.h>

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

int cluster_status(json_t **out, char *err, size_t errlen)
{
    (void)err, (void)errlen;
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

/* mgmt asks only when given a tier, which these tests never give. */
int tier_memcached_snapshot(struct tier *t, struct mc_tier_snap *tier, struct mc_server_snap *srv,
                            unsigned max)
{
    (void)t, (void)tier, (void)srv, (void)max;
    return -ENOTSUP;
}
