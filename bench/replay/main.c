/* shoal-replay: replay a block trace (MSR Cambridge CSV, blkparse text or
 * CloudPhysics vSCSI binary) against an NBD export and report throughput,
 * client-side latency percentiles and, with the daemon's API, the hit ratio
 * and offload the replay got; or, with --sizes, the miss-ratio curve over
 * several cache sizes. See bench/README.md. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "common/util.h"
#include "engine.h"
#include "trace.h"

#define EXIT_IO_ERRORS 1
#define EXIT_USAGE     2

struct opts {
    struct trace_opts trace;
    struct replay_opts replay;
    const char *trace_path, *uri;
    const char *stats_url, *volume, *token_file;
    uint64_t sizes[64];
    unsigned nsizes;
    bool json, parse_only;
};

/* Counters of one replay as the daemon saw them (deltas). */
struct daemon_delta {
    bool valid;
    struct api_vol_stats d;
    double hit_ratio, offload_ratio;
};

static void usage(FILE *f)
{
    fputs("Usage: shoal-replay [options] TRACE [URI]\n"
          "Replay a block trace against an NBD export (URI as for nbdinfo, e.g.\n"
          "nbd+unix:///vol?socket=/run/shoal.sock) and report what it cost.\n"
          "\n"
          "Trace:\n"
          "  -F, --format FMT         auto (default), msr, blkparse, vscsi, disksim or fiu\n"
          "      --action Q|C         blkparse: replay queued (Q, default) or completed (C)\n"
          "      --disk ID            only this disk (MSR DiskNumber, blkparse maj,min)\n"
          "      --limit N            only the first N records\n"
          "      --strict             fail on the first malformed record (default: report\n"
          "                           it with its line number on stderr and skip it)\n"
          "      --parse-only         parse and summarise the trace; no URI needed\n"
          "Replay:\n"
          "  -q, --queue-depth N      commands in flight (default 16)\n"
          "  -t, --timing             issue each request at its recorded time\n"
          "                           (default: as fast as the queue depth allows)\n"
          "      --speed X            with --timing, replay X times faster\n"
          "      --offsets wrap|clip  offsets past the export: wrap modulo its size\n"
          "                           (default) or clip (drop/truncate)\n"
          "      --reads-only         skip the trace's writes\n"
          "      --repeat N           passes over the trace (default 1)\n"
          "      --seed N             seed of the generated write content\n"
          "      --progress FILE      append \"unix_time read_bytes write_bytes ops\" lines\n"
          "      --progress-interval S  seconds between those lines (default 0.5)\n"
          "      --start-at T         connect, then start at unix time T (lines up several\n"
          "                           replayers, e.g. the clients of a boot storm)\n"
          "Daemon (shoald):\n"
          "      --stats-url URL      management API, e.g. http://127.0.0.1:10810\n"
          "      --volume NAME        the volume behind URI: hit ratio and offload from\n"
          "                           its stats before and after the replay\n"
          "      --token-file FILE    bearer token for --sizes (resize, invalidate)\n"
          "      --sizes LIST         e.g. 64M,128M,256M: for each size resize the cache,\n"
          "                           invalidate the volume, replay; print the miss-ratio curve\n"
          "Output:\n"
          "      --json               one JSON object on stdout instead of text\n"
          "  -h, --help\n"
          "\n"
          "Exit status: 0, 1 when requests failed, 2 on usage, trace or connection errors.\n",
          f);
}

static int parse_sizes(const char *s, struct opts *o)
{
    char *copy = strdup(s);
    if (!copy)
        return -ENOMEM;
    int r = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (o->nsizes == sizeof o->sizes / sizeof o->sizes[0] || parse_size(tok, &v) < 0 ||
            v == 0) {
            r = -EINVAL;
            break;
        }
        o->sizes[o->nsizes++] = v;
    }
    free(copy);
    return o->nsizes ? r : -EINVAL;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    enum {
        O_ACTION = 256,
        O_DISK,
        O_LIMIT,
        O_STRICT,
        O_PARSE_ONLY,
        O_SPEED,
        O_OFFSETS,
        O_READS_ONLY,
        O_REPEAT,
        O_SEED,
        O_PROGRESS,
        O_PROGRESS_INTERVAL,
        O_STATS_URL,
        O_VOLUME,
        O_TOKEN_FILE,
        O_SIZES,
        O_JSON,
        O_START_AT,
    };
    static const struct option longopts[] = {
        {"format", required_argument, NULL, 'F'},
        {"action", required_argument, NULL, O_ACTION},
        {"disk", required_argument, NULL, O_DISK},
        {"limit", required_argument, NULL, O_LIMIT},
        {"strict", no_argument, NULL, O_STRICT},
        {"parse-only", no_argument, NULL, O_PARSE_ONLY},
        {"queue-depth", required_argument, NULL, 'q'},
        {"timing", no_argument, NULL, 't'},
        {"speed", required_argument, NULL, O_SPEED},
        {"offsets", required_argument, NULL, O_OFFSETS},
        {"reads-only", no_argument, NULL, O_READS_ONLY},
        {"repeat", required_argument, NULL, O_REPEAT},
        {"seed", required_argument, NULL, O_SEED},
        {"progress", required_argument, NULL, O_PROGRESS},
        {"progress-interval", required_argument, NULL, O_PROGRESS_INTERVAL},
        {"stats-url", required_argument, NULL, O_STATS_URL},
        {"volume", required_argument, NULL, O_VOLUME},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"sizes", required_argument, NULL, O_SIZES},
        {"json", no_argument, NULL, O_JSON},
        {"start-at", required_argument, NULL, O_START_AT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){
        .trace = {.format = TRACE_AUTO, .blk_action = 'Q', .max_reports = 10},
        .replay = {.qd = 16, .speed = 1.0, .repeat = 1, .progress_interval = 0.5, .seed = 0x5eed},
    };
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "F:q:th", longopts, NULL)) != -1) {
        switch (c) {
        case 'F':
            if (trace_format_parse(optarg, &o->trace.format) < 0) {
                fprintf(stderr, "shoal-replay: unknown format '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case O_ACTION:
            if ((optarg[0] != 'Q' && optarg[0] != 'C') || optarg[1]) {
                fprintf(stderr, "shoal-replay: --action is Q or C\n");
                return -EINVAL;
            }
            o->trace.blk_action = optarg[0];
            break;
        case O_DISK:
            o->trace.disk = optarg;
            break;
        case O_LIMIT:
            o->trace.limit = strtoull(optarg, &end, 10);
            if (*end || !o->trace.limit)
                return -EINVAL;
            break;
        case O_STRICT:
            o->trace.strict = true;
            break;
        case O_PARSE_ONLY:
            o->parse_only = true;
            break;
        case 'q': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > 4096) {
                fprintf(stderr, "shoal-replay: --queue-depth is 1..4096\n");
                return -EINVAL;
            }
            o->replay.qd = (unsigned)v;
            break;
        }
        case 't':
            o->replay.timing = true;
            break;
        case O_SPEED:
            o->replay.speed = strtod(optarg, &end);
            if (*end || !(o->replay.speed > 0))
                return -EINVAL;
            break;
        case O_OFFSETS:
            if (strcmp(optarg, "wrap") == 0)
                o->replay.offsets = OFF_WRAP;
            else if (strcmp(optarg, "clip") == 0)
                o->replay.offsets = OFF_CLIP;
            else
                return -EINVAL;
            break;
        case O_READS_ONLY:
            o->replay.reads_only = true;
            break;
        case O_REPEAT: {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > 1000000)
                return -EINVAL;
            o->replay.repeat = (unsigned)v;
            break;
        }
        case O_SEED:
            o->replay.seed = strtoull(optarg, &end, 0);
            if (*end)
                return -EINVAL;
            break;
        case O_PROGRESS:
            o->replay.progress_path = optarg;
            break;
        case O_PROGRESS_INTERVAL:
            o->replay.progress_interval = strtod(optarg, &end);
            if (*end || !(o->replay.progress_interval > 0))
                return -EINVAL;
            break;
        case O_STATS_URL:
            o->stats_url = optarg;
            break;
        case O_VOLUME:
            o->volume = optarg;
            break;
        case O_TOKEN_FILE:
            o->token_file = optarg;
            break;
        case O_SIZES:
            if (parse_sizes(optarg, o) < 0) {
                fprintf(stderr, "shoal-replay: bad --sizes '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_START_AT:
            o->replay.start_at = strtod(optarg, &end);
            if (*end || !(o->replay.start_at >= 0))
                return -EINVAL;
            break;
        case 'h':
            return 1;
        default:
            return -EINVAL;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "shoal-replay: no TRACE given\n");
        return -EINVAL;
    }
    o->trace_path = argv[optind++];
    if (optind < argc)
        o->uri = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "shoal-replay: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (!o->uri && !o->parse_only) {
        fprintf(stderr, "shoal-replay: no URI given (or use --parse-only)\n");
        return -EINVAL;
    }
    if ((o->stats_url != NULL) != (o->volume != NULL)) {
        fprintf(stderr, "shoal-replay: --stats-url and --volume go together\n");
        return -EINVAL;
    }
    if (o->nsizes && !o->stats_url) {
        fprintf(stderr, "shoal-replay: --sizes needs --stats-url and --volume\n");
        return -EINVAL;
    }
    return 0;
}

/* ---- daemon stats ---- */

static void delta(const struct api_vol_stats *a, const struct api_vol_stats *b,
                  struct daemon_delta *out)
{
    out->valid = true;
#define D(f) out->d.f = b->f >= a->f ? b->f - a->f : 0
    D(read_ops);
    D(read_bytes);
    D(read_hit_bytes);
    D(read_miss_bytes);
    D(write_ops);
    D(write_bytes);
    D(backend_read_ops);
    D(backend_read_bytes);
    D(errors);
#undef D
    double rb = (double)out->d.read_bytes;
    out->hit_ratio = rb > 0 ? (double)out->d.read_hit_bytes / rb : 0;
    /* Signed, like the daemon's: negative when read-ahead fetched more from
     * the back end than the replay read. */
    out->offload_ratio = rb > 0 ? 1.0 - (double)out->d.backend_read_bytes / rb : 0;
}

/* ---- output ---- */

static const char *hsize(uint64_t b, char *buf, size_t len)
{
    return format_size(b, buf, len);
}

static json_t *lat_json(const struct lat_set *l)
{
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)l->n, "mean",
                     lat_mean_us(l), "p50", lat_pct_us(l, 50), "p90", lat_pct_us(l, 90), "p99",
                     lat_pct_us(l, 99), "p999", lat_pct_us(l, 99.9), "max", lat_pct_us(l, 100));
}

static json_t *trace_json(const struct opts *o, const struct trace *t)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "path",
                     o->trace_path, "format", trace_format_name(t->format), "records",
                     (json_int_t)t->n, "reads", (json_int_t)t->reads, "writes",
                     (json_int_t)t->writes, "read_bytes", (json_int_t)t->read_bytes, "write_bytes",
                     (json_int_t)t->write_bytes, "malformed", (json_int_t)t->malformed, "ignored",
                     (json_int_t)t->ignored, "filtered", (json_int_t)t->filtered, "max_end",
                     (json_int_t)t->max_end);
}

static json_t *daemon_json(const struct opts *o, const struct daemon_delta *d)
{
    return json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "volume", o->volume, "read_bytes",
        (json_int_t)d->d.read_bytes, "read_hit_bytes", (json_int_t)d->d.read_hit_bytes,
        "backend_read_ops", (json_int_t)d->d.backend_read_ops, "backend_read_bytes",
        (json_int_t)d->d.backend_read_bytes, "write_bytes", (json_int_t)d->d.write_bytes, "errors",
        (json_int_t)d->d.errors, "hit_ratio", d->hit_ratio, "miss_ratio", 1.0 - d->hit_ratio,
        "offload_ratio", d->offload_ratio);
}

static json_t *result_json(const struct replay_result *r)
{
    double mb = (double)(r->read_bytes + r->write_bytes) / 1048576.0;
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, "
        "s:I, s:I, s:{s:o, s:o}}",
        "ops", (json_int_t)r->ops, "read_ops", (json_int_t)r->read_ops, "write_ops",
        (json_int_t)r->write_ops, "read_bytes", (json_int_t)r->read_bytes, "write_bytes",
        (json_int_t)r->write_bytes, "errors", (json_int_t)r->errors, "dropped",
        (json_int_t)r->dropped, "clipped", (json_int_t)r->clipped, "moved", (json_int_t)r->moved,
        "skipped", (json_int_t)r->skipped, "late", (json_int_t)r->late, "seconds", r->seconds,
        "iops", r->seconds > 0 ? (double)r->ops / r->seconds : 0.0, "mib_per_s",
        r->seconds > 0 ? mb / r->seconds : 0.0, "start_unix_us", (json_int_t)(r->start_unix * 1e6),
        "end_unix_us", (json_int_t)(r->end_unix * 1e6), "latency_us", "read",
        lat_json(&r->lat[TRACE_READ]), "write", lat_json(&r->lat[TRACE_WRITE]));
}

static void print_trace(const struct opts *o, const struct trace *t)
{
    char a[32], b[32];
    printf("trace     %s (%s): %llu records: %llu reads (%s), %llu writes (%s)\n", o->trace_path,
           trace_format_name(t->format), (unsigned long long)t->n, (unsigned long long)t->reads,
           hsize(t->read_bytes, a, sizeof a), (unsigned long long)t->writes,
           hsize(t->write_bytes, b, sizeof b));
    printf("          %llu malformed skipped, %llu ignored, %llu other disks; highest byte %s\n",
           (unsigned long long)t->malformed, (unsigned long long)t->ignored,
           (unsigned long long)t->filtered, hsize(t->max_end, a, sizeof a));
}

static void print_result(const struct opts *o, const struct replay_result *r)
{
    char a[32], b[32];
    double mb = (double)(r->read_bytes + r->write_bytes) / 1048576.0;
    printf("replay    qd %u, %s: %llu ops in %.3f s = %.0f ops/s, %.1f MiB/s\n", o->replay.qd,
           o->replay.timing ? "recorded timing" : "as fast as possible", (unsigned long long)r->ops,
           r->seconds, r->seconds > 0 ? r->ops / r->seconds : 0,
           r->seconds > 0 ? mb / r->seconds : 0);
    printf("          read %s in %llu ops, wrote %s in %llu ops; %llu errors\n",
           hsize(r->read_bytes, a, sizeof a), (unsigned long long)r->read_ops,
           hsize(r->write_bytes, b, sizeof b), (unsigned long long)r->write_ops,
           (unsigned long long)r->errors);
    if (r->moved || r->dropped || r->clipped || r->skipped || r->late)
        printf("          %llu moved (wrap), %llu dropped and %llu clipped (clip), %llu writes "
               "skipped, %llu late\n",
               (unsigned long long)r->moved, (unsigned long long)r->dropped,
               (unsigned long long)r->clipped, (unsigned long long)r->skipped,
               (unsigned long long)r->late);
    printf("latency   %-6s %9s %9s %9s %9s %9s %9s  (us)\n", "", "mean", "p50", "p90", "p99",
           "p99.9", "max");
    static const char *names[] = {"read", "write"};
    for (int op = 0; op < 2; op++) {
        const struct lat_set *l = &r->lat[op];
        if (!l->n)
            continue;
        printf("          %-6s %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", names[op], lat_mean_us(l),
               lat_pct_us(l, 50), lat_pct_us(l, 90), lat_pct_us(l, 99), lat_pct_us(l, 99.9),
               lat_pct_us(l, 100));
    }
}

static void print_daemon(const struct opts *o, const struct daemon_delta *d)
{
    char a[32], b[32], c[32];
    printf("daemon    volume %s: read %s, from RAM %s, from the back end %s\n", o->volume,
           hsize(d->d.read_bytes, a, sizeof a), hsize(d->d.read_hit_bytes, b, sizeof b),
           hsize(d->d.backend_read_bytes, c, sizeof c));
    printf("          hit ratio %.4f, offload %.4f\n", d->hit_ratio, d->offload_ratio);
}

/* ---- main ---- */

static struct nbd_handle *connect_uri(const char *uri, uint64_t *size)
{
    struct nbd_handle *h = nbd_create();
    if (!h) {
        fprintf(stderr, "shoal-replay: %s\n", nbd_get_error());
        return NULL;
    }
    int64_t s;
    /* Read data is never looked at, so libnbd need not zero each buffer
     * before a read (it does by default): that memset was 8% of the
     * replayer's CPU in a boot storm of RAM hits, a cost of the instrument. */
    if (nbd_set_pread_initialize(h, false) < 0 || nbd_connect_uri(h, uri) < 0 ||
        (s = nbd_get_size(h)) < 0) {
        fprintf(stderr, "shoal-replay: %s: %s\n", uri, nbd_get_error());
        nbd_close(h);
        return NULL;
    }
    *size = (uint64_t)s;
    return h;
}

/* One replay, bracketed by the daemon's counters when we have an API. */
static int replay_once(const struct opts *o, struct api *api, const struct trace *t,
                       struct replay_result *res, struct daemon_delta *dd)
{
    memset(res, 0, sizeof *res);
    uint64_t size = 0;
    struct nbd_handle *h = connect_uri(o->uri, &size);
    if (!h)
        return -ECONNREFUSED;
    bool has_writes = t->writes && !o->replay.reads_only;
    if (has_writes && nbd_is_read_only(h) == 1) {
        fprintf(stderr, "shoal-replay: %s is read-only and the trace writes; use --reads-only\n",
                o->uri);
        nbd_close(h);
        return -EROFS;
    }
    struct api_vol_stats before = {0}, after = {0};
    int r = 0;
    if (api && (r = api_volume_stats(api, o->volume, &before)) < 0)
        fprintf(stderr, "shoal-replay: cannot read the stats of volume %s: %s\n", o->volume,
                strerror(-r));
    if (r == 0)
        r = replay_run(h, size, t, &o->replay, res);
    if (r == 0 && has_writes)
        nbd_flush(h, 0);
    /* Close first: the daemon has counted everything once the client is gone. */
    nbd_shutdown(h, 0);
    nbd_close(h);
    if (r == 0 && api) {
        r = api_volume_stats(api, o->volume, &after);
        if (r < 0)
            fprintf(stderr, "shoal-replay: cannot read the stats of volume %s: %s\n", o->volume,
                    strerror(-r));
        else
            delta(&before, &after, dd);
    }
    return r;
}

static int run_sizes(const struct opts *o, struct api *api, const struct trace *t, json_t *out)
{
    uint64_t orig = 0;
    int r = api_cache_capacity(api, &orig);
    if (r < 0) {
        fprintf(stderr, "shoal-replay: cannot read the cache size: %s\n", strerror(-r));
        return r;
    }
    json_t *curve = json_array();
    if (!o->json)
        printf("miss-ratio curve of %s on volume %s (cold volume at each size)\n", o->trace_path,
               o->volume);
    if (!o->json)
        printf("%14s %10s %10s %10s %12s\n", "cache size", "hit ratio", "miss ratio", "offload",
               "read MiB/s");
    uint64_t errors = 0;
    for (unsigned i = 0; i < o->nsizes && r == 0; i++) {
        if ((r = api_cache_resize(api, o->sizes[i])) < 0 ||
            (r = api_invalidate(api, o->volume)) < 0) {
            fprintf(stderr, "shoal-replay: cannot set up cache size %llu: %s\n",
                    (unsigned long long)o->sizes[i], strerror(-r));
            break;
        }
        struct replay_result res;
        struct daemon_delta dd = {0};
        r = replay_once(o, api, t, &res, &dd);
        if (r == 0) {
            errors += res.errors;
            double mbps = res.seconds > 0 ? (double)res.read_bytes / 1048576.0 / res.seconds : 0;
            char a[32];
            if (!o->json)
                printf("%14s %10.4f %10.4f %10.4f %12.1f\n", hsize(o->sizes[i], a, sizeof a),
                       dd.hit_ratio, 1.0 - dd.hit_ratio, dd.offload_ratio, mbps);
            json_t *pt = daemon_json(o, &dd);
            json_object_set_new(pt, "cache_bytes", json_integer((json_int_t)o->sizes[i]));
            json_object_set_new(pt, "replay", result_json(&res));
            json_array_append_new(curve, pt);
        }
        replay_result_free(&res);
    }
    int rr = api_cache_resize(api, orig);
    if (rr < 0)
        fprintf(stderr, "shoal-replay: cannot restore the cache size: %s\n", strerror(-rr));
    json_object_set_new(out, "sizes", curve);
    if (r < 0)
        return r;
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    int pa = parse_args(argc, argv, &o);
    if (pa < 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (pa > 0) {
        usage(stdout);
        return 0;
    }
    struct trace t;
    int r = trace_load(o.trace_path, &o.trace, &t);
    if (r < 0) {
        if (r != -EINVAL)
            fprintf(stderr, "shoal-replay: %s: %s\n", o.trace_path, strerror(-r));
        return EXIT_USAGE;
    }
    json_t *out = json_object();
    json_object_set_new(out, "trace", trace_json(&o, &t));
    if (!o.json)
        print_trace(&o, &t);
    int status = 0;
    if (o.parse_only) {
        /* nothing else */
    } else if (t.n == 0) {
        fprintf(stderr, "shoal-replay: %s has no read or write records\n", o.trace_path);
        status = EXIT_USAGE;
    } else {
        struct api api_s, *api = NULL;
        if (o.stats_url) {
            if (api_init(&api_s, o.stats_url, o.token_file) < 0) {
                fprintf(stderr, "shoal-replay: bad --stats-url '%s' or token file\n", o.stats_url);
                json_decref(out);
                trace_free(&t);
                return EXIT_USAGE;
            }
            api = &api_s;
        }
        if (o.nsizes) {
            r = run_sizes(&o, api, &t, out);
            status = r < 0 ? EXIT_USAGE : r;
        } else {
            struct replay_result res;
            struct daemon_delta dd = {0};
            r = replay_once(&o, api, &t, &res, &dd);
            if (r < 0 && res.ops == 0 && res.errors == 0) {
                status = EXIT_USAGE;
            } else {
                json_object_set_new(out, "replay", result_json(&res));
                if (dd.valid)
                    json_object_set_new(out, "daemon", daemon_json(&o, &dd));
                if (!o.json) {
                    print_result(&o, &res);
                    if (dd.valid)
                        print_daemon(&o, &dd);
                }
                status = r < 0 ? EXIT_USAGE : res.errors ? EXIT_IO_ERRORS : 0;
            }
            replay_result_free(&res);
        }
        if (api)
            api_free(api);
    }
    if (o.json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        putchar('\n');
    }
    json_decref(out);
    trace_free(&t);
    return status;
}
