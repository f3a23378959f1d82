/* Prometheus text exposition format 0.0.4 for GET /metrics, rendered from
 * the same descriptor tables as the JSON:
 *   - one family per stat; counters get the `_total` suffix, gauges and
 *     ratios are gauges; times (seconds) are counters;
 *   - volume stats are `shoal_volume_<stat>{volume="NAME"}`, cache stats are the
 *     unlabelled `shoal_cache_<stat>`;
 *   - latency is the histogram `shoal_volume_latency_seconds{volume,op}`;
 *   - with a memcached tier: `shoal_memcached_<stat>` for the tier and
 *     `shoal_memcached_server_<stat>{server="HOST:PORT"}` per server, its
 *     state in `shoal_memcached_server_info{server,state}`;
 *   - `shoal_volume_info` carries the `backend` label (the backing path)
 *     only for a scrape that sends the API token.
 * All samples of a family are written together after its HELP and TYPE,
 * as the format requires, so this walks stats in the outer loop and volumes
 * in the inner one. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mgmt/mgmt_internal.h"

/* Label values escape backslash, double quote and newline, and must be
 * UTF-8: a path that is not gets '?' for its non-ASCII bytes. */
static void put_label_value(FILE *f, const char *s)
{
    json_t *probe = json_string(s); /* jansson validates UTF-8 */
    bool utf8 = probe != NULL;
    json_decref(probe);
    for (; *s; s++) {
        if (!utf8 && (unsigned char)*s >= 0x80) {
            fputc('?', f);
            continue;
        }
        switch (*s) {
        case '\\':
            fputs("\\\\", f);
            break;
        case '"':
            fputs("\\\"", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* HELP text escapes backslash and newline only. */
static void put_help(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void put_double(FILE *f, double v)
{
    if (isnan(v))
        fputs("NaN", f);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", f);
    else
        fprintf(f, "%.12g", v);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Family name for a stat: prefix + name, plus "_total" for counters. */
static void family_name(char *buf, size_t len, const char *prefix, const struct stat_desc *d)
{
    const char *suffix = stat_is_monotonic(d) && !ends_with(d->name, "_total") ? "_total" : "";
    snprintf(buf, len, "%s%s%s", prefix, d->name, suffix);
}

static void put_header(FILE *f, const char *family, const char *help, const char *type)
{
    fprintf(f, "# HELP %s ", family);
    put_help(f, help);
    fprintf(f, "\n# TYPE %s %s\n", family, type);
}

static void put_stat_value(FILE *f, const void *snap, const struct stat_desc *d)
{
    if (stat_is_f64(d))
        put_double(f, stat_f64(snap, d));
    else
        fprintf(f, "%" PRIu64, stat_u64(snap, d));
}

static const char *stat_type(const struct stat_desc *d)
{
    return stat_is_monotonic(d) ? "counter" : "gauge";
}

/* One unlabelled family per stat of a list: prefix + name, its value in
 * snap. */
static void put_unlabelled(FILE *f, const char *prefix, const struct stat_desc *descs,
                           unsigned count, const void *snap)
{
    char family[128];
    for (unsigned i = 0; i < count; i++) {
        const struct stat_desc *d = &descs[i];
        family_name(family, sizeof family, prefix, d);
        put_header(f, family, d->help, stat_type(d));
        fprintf(f, "%s ", family);
        put_stat_value(f, snap, d);
        fputc('\n', f);
    }
}

static void render_cache(FILE *f, const struct cache_snapshot *c)
{
    put_unlabelled(f, "shoal_cache_", cache_stat_descs, cache_stat_count, c);
}

static void render_volume_stats(FILE *f, const struct mgmt_snap *s)
{
    char family[128];
    for (unsigned i = 0; i < volume_stat_count; i++) {
        const struct stat_desc *d = &volume_stat_descs[i];
        family_name(family, sizeof family, "shoal_volume_", d);
        put_header(f, family, d->help, stat_type(d));
        for (size_t k = 0; k < s->nvols; k++) {
            fprintf(f, "%s{volume=\"", family);
            put_label_value(f, s->vols[k].name);
            fputs("\"} ", f);
            put_stat_value(f, &s->vols[k].snap, d);
            fputc('\n', f);
        }
    }
}

static void render_volume_info(FILE *f, const struct mgmt_snap *s)
{
    put_header(f, "shoal_volume_info", "Volume identity (value is always 1)", "gauge");
    for (size_t k = 0; k < s->nvols; k++) {
        const struct mgmt_vol *v = &s->vols[k];
        fputs("shoal_volume_info{volume=\"", f);
        put_label_value(f, v->name);
        /* A scrape without the token gets no backend label at all. */
        if (!v->backend_hidden) {
            fputs("\",backend=\"", f);
            put_label_value(f, v->backend);
        }
        fprintf(f, "\",state=\"%s\",readonly=\"%s\"} 1\n", v->enabled ? "enabled" : "disabled",
                v->readonly ? "true" : "false");
    }
}

static void render_histogram(FILE *f, const char *volume, const char *op,
                             const struct histogram_snap *h)
{
    /* Buckets in the snapshot are per-interval; Prometheus wants cumulative
     * counts, and _count must equal the +Inf bucket, so it is the running
     * sum rather than h->count (read separately, it can be off by a few). */
    uint64_t cum = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        cum += h->buckets[i];
        fputs("shoal_volume_latency_seconds_bucket{volume=\"", f);
        put_label_value(f, volume);
        fprintf(f, "\",op=\"%s\",le=\"", op);
        put_double(f, hist_bucket_le_seconds(i));
        fprintf(f, "\"} %" PRIu64 "\n", cum);
    }
    fputs("shoal_volume_latency_seconds_sum{volume=\"", f);
    put_label_value(f, volume);
    fprintf(f, "\",op=\"%s\"} ", op);
    put_double(f, (double)h->sum_ns / 1e9);
    fputs("\nshoal_volume_latency_seconds_count{volume=\"", f);
    put_label_value(f, volume);
    fprintf(f, "\",op=\"%s\"} %" PRIu64 "\n", op, cum);
}

static void put_mrc(FILE *f, const char *family, const char *volume, const struct mrc_curve *c)
{
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        fprintf(f, "%s{", family);
        if (volume) {
            fputs("volume=\"", f);
            put_label_value(f, volume);
            fputs("\",", f);
        }
        fputs("factor=\"", f);
        put_double(f, mrc_eighths[i] / 8.0);
        fputs("\"} ", f);
        put_double(f, c->p[i].hit_ratio);
        fputc('\n', f);
    }
}

/* Miss-ratio curves: predicted hit ratio with `factor` times the cache. */
static void render_mrc(FILE *f, const struct mgmt_snap *s)
{
    put_header(f, "shoal_cache_mrc_hit_ratio",
               "Predicted read hit ratio with factor x the cache size (miss-ratio curve)", "gauge");
    put_mrc(f, "shoal_cache_mrc_hit_ratio", NULL, &s->mrc);
    put_header(f, "shoal_volume_mrc_hit_ratio",
               "Predicted read hit ratio of the volume alone with factor x the cache size",
               "gauge");
    for (size_t k = 0; k < s->nvols; k++)
        put_mrc(f, "shoal_volume_mrc_hit_ratio", s->vols[k].name, &s->vols[k].mrc);
}

/* The memcached tier (cluster/mc_stats_list.h): the unlabelled
 * shoal_memcached_<stat>, and per server shoal_memcached_server_<stat>
 * with a `server` label ("host:port") and its state as an info family. */
static void render_memcached(FILE *f, const struct mgmt_snap *s)
{
    char family[128];
    put_unlabelled(f, "shoal_memcached_", mc_tier_stat_descs, mc_tier_stat_count, &s->mc);
    put_header(f, "shoal_memcached_server_info",
               "A memcached server of the ring and its state: live, probation (failed lately) or "
               "ejected (value is always 1)",
               "gauge");
    for (unsigned k = 0; k < s->nmcs; k++) {
        fputs("shoal_memcached_server_info{server=\"", f);
        put_label_value(f, s->mcs[k].name);
        fprintf(f, "\",state=\"%s\"} 1\n", s->mcs[k].state ? s->mcs[k].state : "unknown");
    }
    for (unsigned i = 0; i < mc_server_stat_count; i++) {
        const struct stat_desc *d = &mc_server_stat_descs[i];
        family_name(family, sizeof family, "shoal_memcached_server_", d);
        put_header(f, family, d->help, stat_type(d));
        for (unsigned k = 0; k < s->nmcs; k++) {
            fprintf(f, "%s{server=\"", family);
            put_label_value(f, s->mcs[k].name);
            fputs("\"} ", f);
            put_stat_value(f, &s->mcs[k], d);
            fputc('\n', f);
        }
    }
}

static void render_latency(FILE *f, const struct mgmt_snap *s)
{
    put_header(f, "shoal_volume_latency_seconds",
               "Request latency by volume and operation (read_hit, read_miss, write)", "histogram");
    for (size_t k = 0; k < s->nvols; k++) {
        const struct mgmt_vol *v = &s->vols[k];
        render_histogram(f, v->name, "read_hit", &v->snap.lat_read_hit);
        render_histogram(f, v->name, "read_miss", &v->snap.lat_read_miss);
        render_histogram(f, v->name, "write", &v->snap.lat_write);
    }
}

int render_prometheus(const struct mgmt *m, const struct mgmt_snap *s, char **buf, size_t *len)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!f)
        return -errno;

    put_header(f, "shoal_build_info", "Build information (value is always 1)", "gauge");
    fputs("shoal_build_info{version=\"", f);
    put_label_value(f, SHOAL_VERSION);
    fputs("\"} 1\n", f);
    put_header(f, "shoal_uptime_seconds", "Seconds since the management server started", "gauge");
    fprintf(f, "shoal_uptime_seconds %" PRIu64 "\n", mgmt_uptime_seconds(m));
    put_header(f, "shoal_volumes", "Registered volumes", "gauge");
    fprintf(f, "shoal_volumes %zu\n", s->nvols);

    render_cache(f, &s->cache);
    render_volume_info(f, s);
    render_volume_stats(f, s);
    render_latency(f, s);
    render_mrc(f, s);
    if (s->has_mc)
        render_memcached(f, s);

    /* open_memstream reports allocation failures as stream errors. */
    bool failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        free(text);
        return -ENOMEM;
    }
    *buf = text;
    *len = n;
    return 0;
}
