/* Stat collection for the renderers: one pass over the engine that copies
 * the cache snapshot and every volume's snapshot and identity, so JSON and
 * Prometheus render from plain data and hold no volume reference while
 * formatting. The one place that decides whether a backing path is copied
 * at all (see mgmt_snap_take). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/membership.h"
#include "core/vol_fence.h"
#include "mgmt/mgmt_internal.h"

void mgmt_vol_fill(struct volume *v, struct mgmt_vol *out, bool show_backend)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", volume_name(v));
    out->backend_hidden = !show_backend;
    if (show_backend) {
        volume_describe_backend(v, out->backend, sizeof out->backend);
        out->backend[sizeof out->backend - 1] = '\0';
    }
    out->readonly = volume_readonly(v);
    out->enabled = volume_enabled(v);
    out->fenced = volume_fenced(v);
    out->connections = volume_connections(v);
    volume_get_settings(v, &out->settings);
    /* A fenced volume is read-only for now, but still one node's. */
    if (cluster_enabled())
        snprintf(out->owner, sizeof out->owner, "%s",
                 out->readonly && !out->fenced ? "every node" : cluster_node_name());
    volume_snapshot(v, &out->snap);
    volume_mrc(v, &out->mrc);
}

struct collect {
    struct mgmt_vol *vols;
    size_t n, cap;
    bool show_backend;
};

static int collect_one(struct volume *v, void *opaque)
{
    struct collect *c = opaque;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        struct mgmt_vol *nv = realloc(c->vols, cap * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        c->vols = nv;
        c->cap = cap;
    }
    mgmt_vol_fill(v, &c->vols[c->n++], c->show_backend);
    return 0;
}

int mgmt_snap_take(struct mgmt *m, struct mgmt_snap *out, bool show_backend)
{
    memset(out, 0, sizeof *out);
    cache_snapshot(m->engine, &out->cache);
    engine_mrc(m->engine, &out->mrc);
    struct collect c = {.show_backend = show_backend};
    int r = engine_for_each_volume(m->engine, collect_one, &c);
    if (r < 0) {
        free(c.vols);
        return r;
    }
    out->vols = c.vols;
    out->nvols = c.n;
    r = mgmt_snap_take_mc(m, out);
    if (r < 0)
        mgmt_snap_free(out);
    return r;
}

int mgmt_snap_take_mc(struct mgmt *m, struct mgmt_snap *out)
{
    if (!m->memcached)
        return 0;
    out->mcs = calloc(MC_STATS_MAX_SERVERS, sizeof *out->mcs);
    if (!out->mcs)
        return -ENOMEM;
    int n = tier_memcached_snapshot(m->memcached, &out->mc, out->mcs, MC_STATS_MAX_SERVERS);
    if (n < 0)
        return n;
    out->nmcs = (unsigned)n;
    out->has_mc = true;
    return 0;
}

void mgmt_snap_free(struct mgmt_snap *s)
{
    free(s->vols);
    s->vols = NULL;
    s->nvols = 0;
    free(s->mcs);
    s->mcs = NULL;
    s->nmcs = 0;
    s->has_mc = false;
}
