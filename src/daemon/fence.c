/* See fence.h. */
#include "daemon/fence.h"

#include "cluster/membership.h"
#include "core/vol_fence.h"

static void on_fence(void *arg, const char *name, bool fenced)
{
    struct volume *v = engine_get_volume(arg, name);
    if (!v)
        return; /* removed meanwhile */
    if (fenced)
        volume_fence(v, VOL_FENCE_LEASE);
    else
        volume_unfence(v, VOL_FENCE_LEASE);
    volume_put(v);
}

void fence_setup(struct engine *e)
{
    if (cluster_enabled())
        cluster_on_fence(on_fence, e);
}

void fence_stop(void)
{
    cluster_on_fence(NULL, NULL);
}
