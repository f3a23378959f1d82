/* JSON renderings of the stats and of volumes. Stat keys come from the
 * descriptor tables (core/stats_list.h), so a stat added there shows up here
 * without a change; only identity fields (name, backend, state, ...) and the
 * latency summaries are named in this file. */
#include <string.h>

#include "mgmt/mgmt_internal.h"

/* Add every stat of a descriptor table to `obj`, reading `snap`. A gauge
 * whose unit is "bool" (a volume's `enabled`) is a JSON boolean here, as
 * in the /volumes records, so one key has one type across the API; only
 * Prometheus, which has no booleans, keeps it as 0/1 (render_prom.c). */
static void add_stats(json_t *obj, const struct stat_desc *descs, unsigned n, const void *snap)
{
    for (unsigned i = 0; i < n; i++) {
        const struct stat_desc *d = &descs[i];
        json_t *val;
        if (stat_is_f64(d))
            val = json_ratio(stat_f64(snap, d));
        else if (strcmp(d->unit, "bool") == 0)
            val = json_boolean(stat_u64(snap, d) != 0);
        else
            val = json_u64(stat_u64(snap, d));
        json_object_set_new(obj, d->name, val);
    }
}

json_t *render_cache_json(const struct cache_snapshot *c)
{
    json_t *obj = json_object();
    if (obj)
        add_stats(obj, cache_stat_descs, cache_stat_count, c);
    return obj;
}

/* Percentiles since start, plus the raw bucket counts (bucket i: latency
 * below 2^i us, the last one open-ended): a client that keeps two samples
 * gets the percentiles of the interval between them from the differences,
 * which is what the dashboard charts. */
static json_t *latency_json(const struct histogram_snap *h)
{
    double mean_us = h->count ? (double)h->sum_ns / (double)h->count / 1000.0 : 0;
    json_t *buckets = json_array();
    for (int i = 0; buckets && i < HIST_BUCKETS; i++) {
        if (json_array_append_new(buckets, json_u64(h->buckets[i])) < 0) {
            json_decref(buckets);
            buckets = NULL;
        }
    }
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "p50", json_ratio(hist_quantile_us(h, 0.50)),
                     "p90", json_ratio(hist_quantile_us(h, 0.90)), "p99",
                     json_ratio(hist_quantile_us(h, 0.99)), "mean", json_ratio(mean_us), "count",
                     json_u64(h->count), "buckets", buckets);
}

/* Identity fields shared by both volume renderings. A request without the
 * token gets "backend_hidden": true and no "backend" (the back end's
 * description names its file, device, socket or server). */
static json_t *volume_head(const struct mgmt_vol *v)
{
    json_t *obj = json_pack("{s:o, s:s, s:b, s:b}", "name", json_string_lossy(v->name), "state",
                            v->enabled ? "enabled" : "disabled", "readonly", v->readonly,
                            "backend_hidden", v->backend_hidden);
    if (obj && !v->backend_hidden &&
        json_object_set_new(obj, "backend", json_string_lossy(v->backend)) < 0) {
        json_decref(obj);
        return NULL;
    }
    /* Indexed by the bits of core/vol_fence.h (MOVE 1, LEASE 2). */
    static const char *const fence_why[] = {"", "move", "lease", "lease,move"};
    if (obj && v->fenced > 0 && (size_t)v->fenced < ARRAY_SIZE(fence_why) &&
        json_object_set_new(obj, "fenced", json_string(fence_why[v->fenced])) < 0) {
        json_decref(obj);
        return NULL;
    }
    if (obj && v->owner[0] && json_object_set_new(obj, "owner", json_string_lossy(v->owner)) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *render_volume_stats_json(const struct mgmt_vol *v)
{
    json_t *obj = volume_head(v);
    if (!obj)
        return NULL;
    add_stats(obj, volume_stat_descs, volume_stat_count, &v->snap);
    json_t *lat =
        json_pack("{s:o, s:o, s:o}", "read_hit", latency_json(&v->snap.lat_read_hit), "read_miss",
                  latency_json(&v->snap.lat_read_miss), "write", latency_json(&v->snap.lat_write));
    if (!lat || json_object_set_new(obj, "latency_us", lat) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *render_volume_json(const struct mgmt_vol *v)
{
    json_t *obj = volume_head(v);
    if (!obj)
        return NULL;
    json_object_set_new(obj, "size_bytes", json_u64(v->snap.size_bytes));
    json_object_set_new(obj, "enabled", json_boolean(v->enabled));
    json_object_set_new(obj, "connections", json_integer(v->connections));
    /* What the volume was opened with (a moved volume keeps them). */
    json_t *st = json_pack("{s:I, s:b, s:I, s:I}", "readahead_bytes",
                           (json_int_t)v->settings.readahead_bytes, "direct", v->settings.direct,
                           "backend_connections", (json_int_t)v->settings.conns,
                           "connect_timeout_ms", (json_int_t)v->settings.connect_timeout_ms);
    if (!st || json_object_set_new(obj, "settings", st) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *render_stats_json(const struct mgmt *m, const struct mgmt_snap *s)
{
    json_t *vols = json_array();
    if (!vols)
        return NULL;
    for (size_t i = 0; i < s->nvols; i++) {
        json_t *v = render_volume_stats_json(&s->vols[i]);
        if (!v || json_array_append_new(vols, v) < 0) {
            json_decref(vols);
            return NULL;
        }
    }
    json_t *out =
        json_pack("{s:o, s:o, s:o, s:s}", "cache", render_cache_json(&s->cache), "volumes", vols,
                  "uptime_seconds", json_u64(mgmt_uptime_seconds(m)), "version", SHOAL_VERSION);
    if (out && s->has_mc && json_object_set_new(out, "memcached", render_memcached_json(s)) < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *render_mc_server_json(const struct mc_server_snap *srv)
{
    json_t *obj = json_pack("{s:o, s:s}", "server", json_string_lossy(srv->name), "state",
                            srv->state ? srv->state : "unknown");
    if (!obj)
        return NULL;
    if (!srv->stats_ok)
        json_object_set_new(obj, "stats_error", json_string_lossy(srv->stats_error));
    add_stats(obj, mc_server_stat_descs, mc_server_stat_count, srv);
    return obj;
}

json_t *render_mc_tier_json(const struct mc_tier_snap *t)
{
    json_t *obj = json_object();
    if (obj)
        add_stats(obj, mc_tier_stat_descs, mc_tier_stat_count, t);
    return obj;
}

json_t *render_memcached_json(const struct mgmt_snap *s)
{
    json_t *servers = json_array();
    for (unsigned i = 0; servers && i < s->nmcs; i++) {
        if (json_array_append_new(servers, render_mc_server_json(&s->mcs[i])) < 0) {
            json_decref(servers);
            servers = NULL;
        }
    }
    return json_pack("{s:o, s:o}", "tier", render_mc_tier_json(&s->mc), "servers", servers);
}

json_t *render_prefetch_json(const struct prefetch_status *st)
{
    json_t *err = st->error ? json_string(strerror(-st->error)) : json_null();
    return json_pack("{s:b, s:o, s:o, s:o, s:o, s:i}", "running", st->running, "offset",
                     json_u64(st->offset), "length", json_u64(st->length), "done_bytes",
                     json_u64(st->done_bytes), "error", err, "errno", -st->error);
}

json_t *render_mrc_json(const struct mrc_curve *c)
{
    json_t *pts = json_array();
    for (unsigned i = 0; pts && i < MRC_POINTS; i++)
        json_array_append_new(pts, json_pack("{s:o, s:o, s:o}", "factor",
                                             json_real(mrc_eighths[i] / 8.0), "cache_bytes",
                                             json_u64(c->p[i].cache_blocks * 4096), "hit_ratio",
                                             json_ratio(c->p[i].hit_ratio)));
    return json_pack("{s:o, s:o, s:o, s:o}", "rate", json_ratio(c->rate), "sampled_reads",
                     json_u64(c->sampled_reads), "memory_bytes", json_u64(c->bytes), "points",
                     pts ? pts : json_null());
}
