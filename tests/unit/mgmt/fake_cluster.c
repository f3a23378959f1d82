/* The cluster as a node without [cluster] etcd sees it (membership.h),
 * for the management tests that build mgmt's sources without libshoal. */
#include <errno.h>
#include <stdio.h>

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
