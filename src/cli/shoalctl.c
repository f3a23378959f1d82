/* shoalctl: the command-line client of shoald's management API.
 *
 *   shoalctl [--url URL] [--token-file FILE] [--cacert FILE] [--timeout SECONDS]
 *            COMMAND [ARGS] [FLAGS]
 *   shoalctl --version
 *
 * The API token comes from --token-file, else $SHOAL_TOKEN, else the first
 * readable of the default files (the one shoald would use when run as this
 * user, then /run/shoal/api-token: see mgmt/token.h). It is sent with every
 * request: changes need it, and reads show backing paths only with it.
 *
 * It only speaks HTTP/JSON to the daemon (libcurl + jansson); it links no
 * daemon code besides common/util.c.
 *
 * Exit codes (also printed by `shoalctl help`):
 *   0  success
 *   1  usage error (unknown command, bad argument, unreadable token file)
 *   2  the server answered with an error (its message is printed)
 *   3  the server could not be reached, or did not answer within the
 *      request timeout (--timeout, $SHOAL_TIMEOUT)
 * Errors go to stderr as one line starting with "shoalctl: ". */
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/shoalctl.h"
#include "cli/table.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "mgmt/token.h"

#define DEFAULT_URL "http://127.0.0.1:10810"

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("shoalctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see 'shoalctl help')\n", stderr);
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
    if (s) {
        puts(s);
        free(s);
    }
}

void puts_json(json_t *j)
{
    print_json(j);
}

/* Path segment for a volume name; NULL only when out of memory. */
static char *volume_path(struct cli *cli, const char *prefix, const char *name, const char *suffix)
{
    _cleanup_free_ char *esc = client_escape(cli->client, name);
    char *path = NULL;
    if (!esc || asprintf(&path, "%s%s%s", prefix, esc, suffix) < 0)
        return NULL;
    return path;
}

/* Parse OFFSET LENGTH arguments (args[1], args[2]) into a JSON body. */
static int range_body(struct cli *cli, json_t **body)
{
    *body = json_object();
    if (cli->nargs == 1)
        return EXIT_OK;
    if (cli->nargs != 3) {
        usage_error("give both OFFSET and LENGTH, or neither");
        return EXIT_USAGE;
    }
    uint64_t off, len;
    if (parse_size(cli->args[1], &off) < 0 || parse_size(cli->args[2], &len) < 0) {
        usage_error("bad OFFSET or LENGTH \"%s %s\" (bytes, or with K/M/G/T)", cli->args[1],
                    cli->args[2]);
        return EXIT_USAGE;
    }
    json_object_set_new(*body, "offset", json_integer((json_int_t)off));
    json_object_set_new(*body, "length", json_integer((json_int_t)len));
    return EXIT_OK;
}

/* ---- stats ---- */

/* Columns of the compact per-volume table: stat key and header. The full
 * set of stats is in `shoalctl stats VOLUME` and --json. */
static const struct {
    const char *key, *header;
    char align;
} volume_columns[] = {
    {"name", "NAME", 'l'},
    {"size_bytes", "SIZE", 'r'},
    {"read_ops", "READS", 'r'},
    {"hit_ratio", "HIT%", 'r'},
    {"read_bytes", "READ", 'r'},
    {"read_hit_bytes", "HIT", 'r'},
    {"read_miss_bytes", "MISS", 'r'},
    {"write_ops", "WRITES", 'r'},
    {"errors", "ERRORS", 'r'},
    {"state", "STATE", 'l'},
};

static void cell_value(const char *key, json_t *val, char *buf, size_t len)
{
    /* Tables use short sizes ("1.5G") to stay narrow. */
    if (json_is_integer(val) && strstr(key, "bytes"))
        fmt_size_short((double)json_integer_value(val), buf, len);
    else
        fmt_stat(key, val, buf, len);
}

static void print_volume_table(json_t *vols)
{
    enum { NCOL = ARRAY_SIZE(volume_columns) };
    const char *headers[NCOL];
    char align[NCOL + 1];
    for (size_t i = 0; i < NCOL; i++) {
        headers[i] = volume_columns[i].header;
        align[i] = volume_columns[i].align;
    }
    align[NCOL] = '\0';
    struct table *t = table_new(NCOL, headers, align);
    size_t idx;
    json_t *v;
    json_array_foreach(vols, idx, v)
    {
        char cells[NCOL][64];
        const char *row[NCOL];
        for (size_t i = 0; i < NCOL; i++) {
            cell_value(volume_columns[i].key, json_object_get(v, volume_columns[i].key), cells[i],
                       sizeof cells[i]);
            row[i] = cells[i];
        }
        table_add(t, row);
    }
    table_print(t, stdout);
    table_free(t);
}

/* A latency in microseconds, in the unit that keeps it short. */
static void fmt_latency(double us, char *buf, size_t len)
{
    if (us < 1000)
        snprintf(buf, len, "%.1f us", us);
    else if (us < 1e6)
        snprintf(buf, len, "%.2f ms", us / 1e3);
    else
        snprintf(buf, len, "%.2f s", us / 1e6);
}

static void print_latency(json_t *lat)
{
    const char *op;
    json_t *o;
    json_object_foreach(lat, op, o)
    {
        char p50[32], p99[32];
        fmt_latency(json_number_value(json_object_get(o, "p50")), p50, sizeof p50);
        fmt_latency(json_number_value(json_object_get(o, "p99")), p99, sizeof p99);
        printf("  latency %-10s p50 %-10s p99 %-10s count %" JSON_INTEGER_FORMAT "\n", op, p50, p99,
               json_integer_value(json_object_get(o, "count")));
    }
}

/* Every key of an object, in the server's (descriptor) order. `align` is
 * "lr" for numbers only, "ll" when there are strings among them. */
static void print_object(json_t *obj, const char *align)
{
    struct table *t = table_new(2, NULL, align);
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (json_is_object(val) || json_is_array(val))
            continue;
        char buf[128];
        fmt_stat(key, val, buf, sizeof buf);
        char label[96];
        snprintf(label, sizeof label, "  %s", key);
        const char *row[] = {label, buf};
        table_add(t, row);
    }
    table_print(t, stdout);
    table_free(t);
    json_t *lat = json_object_get(obj, "latency_us");
    if (json_is_object(lat))
        print_latency(lat);
}

static void format_uptime(uint64_t s, char *buf, size_t len)
{
    if (s >= 86400)
        snprintf(buf, len, "%llud %lluh", (unsigned long long)(s / 86400),
                 (unsigned long long)(s % 86400 / 3600));
    else if (s >= 3600)
        snprintf(buf, len, "%lluh %llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s % 3600 / 60));
    else
        snprintf(buf, len, "%llum %llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
}

static int cmd_stats(struct cli *cli)
{
    json_t *j = NULL;
    int r;
    if (cli->nargs == 1) {
        _cleanup_free_ char *path = volume_path(cli, "/api/v1/stats/volumes/", cli->args[0], "");
        r = path ? client_call(cli->client, "GET", path, NULL, &j) : EXIT_CONNECT;
        if (r)
            return r;
        if (cli->flags & F_JSON) {
            print_json(j);
        } else {
            printf("Volume %s\n", json_string_value(json_object_get(j, "name")));
            print_object(j, "ll");
        }
        json_decref(j);
        return EXIT_OK;
    }
    r = client_call(cli->client, "GET", "/api/v1/stats", NULL, &j);
    if (r)
        return r;
    if (cli->flags & F_JSON) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    char up[32];
    format_uptime((uint64_t)json_integer_value(json_object_get(j, "uptime_seconds")), up,
                  sizeof up);
    printf("shoald %s, up %s\n\nCache\n", json_string_value(json_object_get(j, "version")), up);
    print_object(json_object_get(j, "cache"), "lr");
    json_t *vols = json_object_get(j, "volumes");
    printf("\nVolumes (%zu)\n", json_array_size(vols));
    if (json_array_size(vols))
        print_volume_table(vols);
    json_decref(j);
    return EXIT_OK;
}

/* ---- what-if sizing ---- */

/* One curve as a table: cache size, its share of today's, predicted hits. */
static void print_curve(json_t *curve)
{
    static const char *const headers[] = {"CACHE", "x NOW", "HIT% (PREDICTED)"};
    struct table *t = table_new(3, headers, "rrr");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(curve, "points"), i, p)
    {
        char size[32], factor[16], hit[16];
        format_size((uint64_t)json_integer_value(json_object_get(p, "cache_bytes")), size,
                    sizeof size);
        snprintf(factor, sizeof factor, "%g", json_real_value(json_object_get(p, "factor")));
        snprintf(hit, sizeof hit, "%.1f", 100 * json_number_value(json_object_get(p, "hit_ratio")));
        const char *row[] = {size, factor, hit};
        table_add(t, row);
    }
    table_print(t, stdout);
    table_free(t);
    printf("(from %" JSON_INTEGER_FORMAT " sampled reads)\n",
           json_integer_value(json_object_get(curve, "sampled_reads")));
}

static int cmd_mrc(struct cli *cli)
{
    json_t *j;
    int r = client_call(cli->client, "GET", "/api/v1/mrc", NULL, &j);
    if (r)
        return r;
    json_t *curve = json_object_get(j, "cache");
    const char *what = "the whole cache";
    if (cli->nargs == 1) {
        curve = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(j, "volumes"), i, v)
        {
            const char *name = json_string_value(json_object_get(v, "name"));
            if (name && !strcmp(name, cli->args[0]))
                curve = json_object_get(v, "mrc");
        }
        if (!curve) {
            fprintf(stderr, "shoalctl: no such volume: %s\n", cli->args[0]);
            json_decref(j);
            return EXIT_SERVER;
        }
        what = cli->args[0];
    }
    if (cli->flags & F_JSON) {
        print_json(curve);
    } else {
        printf("Predicted read hit ratio of %s by cache size\n", what);
        print_curve(curve);
    }
    json_decref(j);
    return EXIT_OK;
}

/* ---- volumes ---- */

/* The back end's description, or why it is not shown. */
static const char *backend_text(json_t *v)
{
    const char *b = json_string_value(json_object_get(v, "backend"));
    if (b)
        return b;
    return json_is_true(json_object_get(v, "backend_hidden")) ? "(hidden: needs the API token)"
                                                              : "-";
}

/* owner: the OWNER column is shown (a node in a cluster). */
static void volume_row(struct table *t, json_t *v, bool owner)
{
    const char *state = json_string_value(json_object_get(v, "state"));
    const char *own = json_string_value(json_object_get(v, "owner"));
    if (!json_object_get(v, "size_bytes")) {
        /* An add still opening, or failed: no size nor clients yet. */
        const char *row[] = {json_string_value(json_object_get(v, "name")),
                             "-",
                             state,
                             "-",
                             "-",
                             owner ? (own ? own : "-") : backend_text(v),
                             backend_text(v)};
        table_add(t, row);
        return;
    }
    char size[32];
    fmt_size_short((double)json_integer_value(json_object_get(v, "size_bytes")), size, sizeof size);
    char conns[16];
    snprintf(conns, sizeof conns, "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(v, "connections")));
    /* A fenced volume (core/vol_fence.h) is read-only for now: say why. */
    const char *fenced = json_string_value(json_object_get(v, "fenced"));
    char mode[48];
    snprintf(mode, sizeof mode, "%s%s%s", fenced ? "fenced (" : "",
             fenced ? fenced : (json_is_true(json_object_get(v, "readonly")) ? "ro" : "rw"),
             fenced ? ")" : "");
    const char *row[] = {json_string_value(json_object_get(v, "name")),
                         size,
                         json_string_value(json_object_get(v, "state")),
                         mode,
                         conns,
                         owner ? (own ? own : "-") : backend_text(v),
                         backend_text(v)};
    table_add(t, row);
}

static int cmd_volumes(struct cli *cli)
{
    json_t *j;
    int r = client_call(cli->client, "GET", "/api/v1/volumes", NULL, &j);
    if (r)
        return r;
    if (cli->flags & F_JSON) {
        print_json(j);
    } else {
        /* In a cluster each volume has an owner (mgmt/render_json.c). */
        bool owner = false;
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) owner = owner || json_object_get(v, "owner");
        static const char *const with_owner[] = {"NAME",  "SIZE",  "STATE",  "MODE",
                                                 "CONNS", "OWNER", "BACKEND"};
        static const char *const without[] = {"NAME", "SIZE", "STATE", "MODE", "CONNS", "BACKEND"};
        struct table *t =
            owner ? table_new(7, with_owner, "lrllrll") : table_new(6, without, "lrllrl");
        json_array_foreach(j, i, v) volume_row(t, v, owner);
        table_print(t, stdout);
        table_free(t);
    }
    json_decref(j);
    return EXIT_OK;
}

static void print_volume_line(const char *what, json_t *v)
{
    char size[32];
    format_size((uint64_t)json_integer_value(json_object_get(v, "size_bytes")), size, sizeof size);
    printf("%s %s: %s, %s, %s%s\n", what, json_string_value(json_object_get(v, "name")), size,
           backend_text(v), json_string_value(json_object_get(v, "state")),
           json_is_true(json_object_get(v, "readonly")) ? ", read-only" : "");
}

/* A back end spec that names a URI ("nbd://...", "nbd+unix://...", any
 * "scheme://") rather than a path. "fault:" (the test-only layer, whose
 * inner spec follows its options) is passed on as given too. */
static bool spec_is_uri(const char *spec)
{
    /* RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    static const char scheme[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.";
    if (strncmp(spec, "fault:", 6) == 0)
        return true;
    if (strspn(spec, alpha) == 0)
        return false;
    return strncmp(spec + strspn(spec, scheme), "://", 3) == 0;
}

/* The spec to send for BACKING: shoald opens a relative path against its
 * own working directory (often "/" once daemonized), which is not what the
 * user typed it against, so a relative path is made absolute here against
 * shoalctl's. Joined, not realpath(): the file need not exist yet for the
 * message to name it, and ".." then means what it meant in this directory
 * (getcwd() has no symlinks). URIs and absolute paths go as given.
 * 0 with *out malloc'ed, or -errno. */
static int backing_spec(const char *spec, char **out)
{
    *out = NULL;
    if (spec[0] == '/' || spec[0] == '\0' || spec_is_uri(spec)) {
        *out = strdup(spec);
        return *out ? 0 : -ENOMEM;
    }
    while (spec[0] == '.' && spec[1] == '/') {
        spec += 2;
        while (*spec == '/')
            spec++;
    }
    _cleanup_free_ char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return -errno;
    if (asprintf(out, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, spec) < 0) {
        *out = NULL;
        return -ENOMEM;
    }
    return 0;
}

static int cmd_volume_add(struct cli *cli)
{
    _cleanup_free_ char *backing = NULL;
    int r = backing_spec(cli->args[1], &backing);
    if (r < 0) {
        fprintf(stderr, "shoalctl: cannot make BACKING \"%s\" absolute: %s\n", cli->args[1],
                strerror(-r));
        return EXIT_USAGE;
    }
    _cleanup_json_ json_t *body =
        json_pack("{s:s, s:s, s:b, s:b}", "name", cli->args[0], "backing", backing, "readonly",
                  !!(cli->flags & F_READONLY), "enabled", !(cli->flags & F_DISABLED));
    if (!body) {
        usage_error("NAME and BACKING must be valid UTF-8");
        return EXIT_USAGE;
    }
    /* Sent only when asked for, so the server's default (auto) applies
     * otherwise, and an older server is not sent a key it would refuse. */
    if ((cli->flags & F_RAW) && json_object_set_new(body, "format", json_string("raw")) < 0)
        return EXIT_USAGE;
    if ((cli->flags & F_NO_WAIT) && json_object_set_new(body, "wait", json_false()) < 0)
        return EXIT_USAGE;
    json_t *j;
    r = client_call(cli->client, "POST", "/api/v1/volumes", body, &j);
    if (r)
        return r;
    if (cli->flags & F_JSON)
        print_json(j);
    else if (cli->flags & F_NO_WAIT)
        printf("volume %s: %s\n", json_string_value(json_object_get(j, "name")),
               json_string_value(json_object_get(j, "state")));
    else
        print_volume_line("added volume", j);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_volume_remove(struct cli *cli)
{
    _cleanup_free_ char *path =
        volume_path(cli, "/api/v1/volumes/", cli->args[0], cli->flags & F_FORCE ? "?force=1" : "");
    json_t *j = NULL;
    int r = path ? client_call(cli->client, "DELETE", path, NULL, &j) : EXIT_CONNECT;
    json_decref(j);
    if (r)
        return r;
    if (cli->flags & F_JSON) {
        /* The server answers 204 without a body: say what happened. */
        _cleanup_json_ json_t *o = json_pack("{s:s, s:b, s:b}", "name", cli->args[0], "removed", 1,
                                             "forced", !!(cli->flags & F_FORCE));
        print_json(o);
    } else {
        printf("removed volume %s\n", cli->args[0]);
    }
    return EXIT_OK;
}

static int set_enabled(struct cli *cli, const char *action)
{
    _cleanup_free_ char *path = volume_path(cli, "/api/v1/volumes/", cli->args[0], action);
    json_t *j;
    int r = path ? client_call(cli->client, "POST", path, NULL, &j) : EXIT_CONNECT;
    if (r)
        return r;
    if (cli->flags & F_JSON)
        print_json(j);
    else
        printf("volume %s: acceleration %s\n", cli->args[0],
               json_string_value(json_object_get(j, "state")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_enable(struct cli *cli)
{
    return set_enabled(cli, "/enable");
}

static int cmd_disable(struct cli *cli)
{
    return set_enabled(cli, "/disable");
}

static int cmd_invalidate(struct cli *cli)
{
    _cleanup_json_ json_t *body = NULL;
    int r = range_body(cli, &body);
    if (r)
        return r;
    _cleanup_free_ char *path = volume_path(cli, "/api/v1/volumes/", cli->args[0], "/invalidate");
    json_t *j;
    r = path ? client_call(cli->client, "POST", path, body, &j) : EXIT_CONNECT;
    if (r)
        return r;
    if (cli->flags & F_JSON) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    char len[32];
    format_size((uint64_t)json_integer_value(json_object_get(j, "length")), len, sizeof len);
    printf("invalidated %s: %s at offset %" JSON_INTEGER_FORMAT "\n", cli->args[0], len,
           json_integer_value(json_object_get(j, "offset")));
    json_decref(j);
    return EXIT_OK;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Poll the prefetch status until it stops; progress on a terminal. With
 * --json, the final status is the only output. */
static int prefetch_wait(struct cli *cli, const char *path)
{
    bool json = cli->flags & F_JSON;
    bool tty = !json && isatty(STDOUT_FILENO);
    for (;;) {
        json_t *st;
        int r = client_call(cli->client, "GET", path, NULL, &st);
        if (r)
            return r;
        uint64_t done = (uint64_t)json_integer_value(json_object_get(st, "done_bytes"));
        uint64_t total = (uint64_t)json_integer_value(json_object_get(st, "length"));
        bool running = json_is_true(json_object_get(st, "running"));
        char d[32], t[32];
        format_size(done, d, sizeof d);
        format_size(total, t, sizeof t);
        double pct = total ? 100.0 * (double)done / (double)total : 100.0;
        if (tty) {
            printf("\r\033[Kprefetch %s: %5.1f%% (%s of %s)", cli->args[0], pct, d, t);
            fflush(stdout);
        }
        if (!running) {
            const char *err = json_string_value(json_object_get(st, "error"));
            if (tty)
                putchar('\n');
            if (json)
                print_json(st);
            if (err) {
                _cleanup_free_ char *line = strdup(err);
                fprintf(stderr, "shoalctl: prefetch of %s failed: %s\n", cli->args[0],
                        line ? str_printable(line) : "out of memory");
                json_decref(st);
                return EXIT_SERVER;
            }
            if (!json)
                printf("prefetch of %s done: %s\n", cli->args[0], d);
            json_decref(st);
            return EXIT_OK;
        }
        json_decref(st);
        sleep_ms(250);
    }
}

static int cmd_prefetch(struct cli *cli)
{
    _cleanup_json_ json_t *body = NULL;
    int r = range_body(cli, &body);
    if (r)
        return r;
    _cleanup_free_ char *path = volume_path(cli, "/api/v1/volumes/", cli->args[0], "/prefetch");
    json_t *j;
    r = path ? client_call(cli->client, "POST", path, body, &j) : EXIT_CONNECT;
    if (r)
        return r;
    if (cli->flags & F_JSON) {
        if (!(cli->flags & F_WAIT))
            print_json(j);
    } else {
        char len[32];
        format_size((uint64_t)json_integer_value(json_object_get(j, "length")), len, sizeof len);
        printf("prefetch of %s started: %s at offset %" JSON_INTEGER_FORMAT "\n", cli->args[0], len,
               json_integer_value(json_object_get(j, "offset")));
    }
    fflush(stdout);
    json_decref(j);
    return cli->flags & F_WAIT ? prefetch_wait(cli, path) : EXIT_OK;
}

static int cmd_cache_resize(struct cli *cli)
{
    uint64_t size;
    if (parse_size(cli->args[0], &size) < 0) {
        usage_error("bad SIZE \"%s\" (bytes, or with K/M/G/T)", cli->args[0]);
        return EXIT_USAGE;
    }
    _cleanup_json_ json_t *body = json_pack("{s:I}", "size", (json_int_t)size);
    json_t *j;
    int r = client_call(cli->client, "POST", "/api/v1/cache/resize", body, &j);
    if (r)
        return r;
    if (cli->flags & F_JSON) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    char cap[32], used[32];
    fmt_stat("capacity_bytes", json_object_get(j, "capacity_bytes"), cap, sizeof cap);
    fmt_stat("used_bytes", json_object_get(j, "used_bytes"), used, sizeof used);
    printf("cache capacity: %s (used %s)\n", cap, used);
    json_decref(j);
    return EXIT_OK;
}

/* The server's reload report, a line per item under its heading; exit 2
 * when an item failed (the rest was applied). */
static int cmd_reload(struct cli *cli)
{
    json_t *j;
    int r = client_call(cli->client, "POST", "/api/v1/reload", NULL, &j);
    if (r)
        return r;
    json_t *errors = json_object_get(j, "errors");
    bool failed = json_array_size(errors) > 0;
    if (cli->flags & F_JSON) {
        print_json(j);
        json_decref(j);
        return failed ? EXIT_SERVER : EXIT_OK;
    }
    static const struct {
        const char *key, *title;
    } parts[] = {
        {"applied", "applied"},
        {"pending", "waiting (reload again later)"},
        {"restart_needed", "needs a restart"},
        {"errors", "failed"},
    };
    bool any = false;
    for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
        json_t *list = json_object_get(j, parts[i].key);
        if (!json_array_size(list))
            continue;
        any = true;
        printf("%s:\n", parts[i].title);
        size_t k;
        json_t *item;
        json_array_foreach(list, k, item) printf("  %s\n", json_string_value(item));
    }
    if (!any)
        printf("configuration reloaded: nothing changed\n");
    json_decref(j);
    if (failed)
        fprintf(stderr, "shoalctl: reload: %zu change(s) failed (see above)\n",
                json_array_size(errors));
    return failed ? EXIT_SERVER : EXIT_OK;
}

static int cmd_version(struct cli *cli)
{
    bool json = cli->flags & F_JSON;
    if (!json) {
        printf("shoalctl %s\n", SHOAL_VERSION);
        fflush(stdout);
    }
    json_t *j;
    int r = client_call(cli->client, "GET", "/api/v1/stats", NULL, &j);
    if (r)
        return r;
    if (json) {
        _cleanup_json_ json_t *o =
            json_pack("{s:s, s:O, s:s, s:O}", "shoalctl", SHOAL_VERSION, "shoald",
                      json_object_get(j, "version"), "url", cli->url, "uptime_seconds",
                      json_object_get(j, "uptime_seconds"));
        print_json(o);
        json_decref(j);
        return EXIT_OK;
    }
    char up[32];
    format_uptime((uint64_t)json_integer_value(json_object_get(j, "uptime_seconds")), up,
                  sizeof up);
    printf("shoald %s at %s (up %s)\n", json_string_value(json_object_get(j, "version")), cli->url,
           up);
    json_decref(j);
    return EXIT_OK;
}

/* ---- command table ---- */

struct command {
    const char *word, *sub;
    int (*fn)(struct cli *cli);
    unsigned flags;
    int min_args, max_args;
    const char *usage;
    const char *help;
};

static const struct command commands[] = {
    {"stats", NULL, cmd_stats, F_JSON, 0, 1, "stats [VOLUME] [--json]",
     "cache and per-volume statistics"},
    {"volumes", NULL, cmd_volumes, F_JSON, 0, 0, "volumes [--json]", "list volumes"},
    {"mrc", NULL, cmd_mrc, F_JSON, 0, 1, "mrc [VOLUME] [--json]",
     "predicted hit ratio at other cache sizes (miss-ratio curve)"},
    {"volume", "add", cmd_volume_add, F_READONLY | F_DISABLED | F_RAW | F_NO_WAIT | F_JSON, 2, 2,
     "volume add NAME BACKING [--readonly] [--disabled] [--raw] [--no-wait]",
     "export BACKING (file, device, nbd://...) as NAME; a relative path is\n"
     "      taken from this directory; --raw: format=raw, serve a file that\n"
     "      starts with a qcow2/vmdk/... header as its bytes; --no-wait: return\n"
     "      once accepted, the back end opens in the background (see volumes)"},
    {"volume", "remove", cmd_volume_remove, F_FORCE | F_JSON, 1, 1, "volume remove NAME [--force]",
     "stop exporting NAME (--force drops connected clients)"},
    {"volume", "move", cmd_volume_move, F_JSON, 1, 1, "volume move NAME --to NODE",
     "hand read-write volume NAME to cluster node NODE, warm: writes in flight\n"
     "      finish, its directory goes to memcached, ownership moves in etcd, and\n"
     "      its clients here are dropped (the VM migrated)"},
    {"enable", NULL, cmd_enable, F_JSON, 1, 1, "enable NAME", "turn acceleration on"},
    {"disable", NULL, cmd_disable, F_JSON, 1, 1, "disable NAME",
     "turn acceleration off (pass-through, drops cached blocks)"},
    {"invalidate", NULL, cmd_invalidate, F_JSON, 1, 3, "invalidate NAME [OFFSET LENGTH]",
     "forget cached blocks after the storage changed behind shoal"},
    {"prefetch", NULL, cmd_prefetch, F_WAIT | F_JSON, 1, 3,
     "prefetch NAME [OFFSET LENGTH] [--wait]",
     "load a range (default: all) into RAM (refused while acceleration is off)"},
    {"cache", "resize", cmd_cache_resize, F_JSON, 1, 1, "cache resize SIZE",
     "change the RAM budget (e.g. 2G)"},
    {"top", NULL, cmd_top, F_ONCE, 0, 0, "top [--once]",
     "live per-volume IOPS, throughput and hit ratio (q quits)"},
    {"reload", NULL, cmd_reload, F_JSON, 0, 0, "reload [--json]",
     "re-read shoald's config file and apply it (as SIGHUP does)"},
    {"cluster", "status", cmd_cluster_status, F_JSON, 0, 0, "cluster status [--json]",
     "the cluster's nodes, memcached servers and volume owners (etcd)"},
    {"cluster", "add", cmd_cluster_add, F_JSON, 1, 1, "cluster add HOST:PORT",
     "add a memcached server to every node's ring"},
    {"cluster", "remove", cmd_cluster_remove, F_JSON, 1, 1, "cluster remove HOST:PORT",
     "take a memcached server out of every node's ring"},
    {"version", NULL, cmd_version, F_JSON, 0, 0, "version", "client and server versions"},
    {"help", NULL, NULL, 0, 0, 0, "help", "this text"},
};

static void print_help(FILE *f)
{
    fprintf(f,
            "usage: shoalctl [--url URL] [--token-file FILE] [--cacert FILE] [--timeout SECONDS]\n"
            "                COMMAND [ARGS]\n"
            "       shoalctl --version\n"
            "\nCommands:\n");
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        fprintf(f, "  %s\n      %s\n", commands[i].usage, commands[i].help);
    fprintf(f,
            "\nOptions:\n"
            "  --url URL          management API, http:// or https:// (default: $SHOAL_URL,\n"
            "                     else %s)\n"
            "  --token-file FILE  the API token (default: $SHOAL_TOKEN, else the first\n"
            "                     readable of shoald's default file for this user and\n"
            "                     %s); needed for changes and to see\n"
            "                     backing paths\n"
            "  --cacert FILE      CA certificate(s) to verify an https:// server\n"
            "  --timeout SECONDS  give up on a request after this long, connecting included\n"
            "                     (also 500ms, 2m; 0: no limit; default: $SHOAL_TIMEOUT,\n"
            "                     else %u s, and %u s for volume add without --no-wait\n"
            "                     and volume move, which wait on the server's work)\n"
            "  --json             print the server's answer as JSON, for scripts (every\n"
            "                     command but top and help)\n"
            "  -V, --version      print shoalctl's version and exit (no server needed)\n"
            "\nSizes take binary suffixes: 4096, 64K, 1.5G, 2T.\n"
            "\nExit status:\n"
            "  0  success\n"
            "  1  usage error\n"
            "  2  the server refused the request (its message is printed)\n"
            "  3  cannot connect to the server, or it did not answer in time\n",
            DEFAULT_URL, TOKEN_ROOT_PATH, (unsigned)(CLIENT_TIMEOUT_MS / 1000),
            (unsigned)(CLIENT_LONG_TIMEOUT_MS / 1000));
}

static const struct {
    const char *name;
    enum cli_flag flag;
} flag_names[] = {
    {"--json", F_JSON},   {"--readonly", F_READONLY}, {"--disabled", F_DISABLED},
    {"--force", F_FORCE}, {"--wait", F_WAIT},         {"--once", F_ONCE},
    {"--raw", F_RAW},     {"--no-wait", F_NO_WAIT},
};

struct parsed {
    const char *url, *token_file, *cacert, *to, *timeout;
    unsigned flags;
    const char *pos[CLI_MAX_ARGS + 2];
    int npos;
    bool help, version;
};

/* An option with a value: "--opt VALUE" or "--opt=VALUE". */
static int take_value(int argc, char **argv, int *i, const char *opt, const char **out)
{
    size_t n = strlen(opt);
    const char *a = argv[*i];
    if (strncmp(a, opt, n) != 0)
        return 0;
    if (a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        usage_error("%s needs a value", opt);
        return -1;
    }
    *out = argv[++*i];
    return 1;
}

static int parse_args(int argc, char **argv, struct parsed *p)
{
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && a[0] == '-' && a[1] != '\0') {
            if (strcmp(a, "--") == 0) {
                opts_done = true;
                continue;
            }
            if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                p->help = true;
                continue;
            }
            if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
                p->version = true;
                continue;
            }
            int r = take_value(argc, argv, &i, "--url", &p->url);
            if (r == 0)
                r = take_value(argc, argv, &i, "--token-file", &p->token_file);
            if (r == 0)
                r = take_value(argc, argv, &i, "--cacert", &p->cacert);
            if (r == 0)
                r = take_value(argc, argv, &i, "--to", &p->to);
            if (r == 0)
                r = take_value(argc, argv, &i, "--timeout", &p->timeout);
            if (r < 0)
                return -1;
            if (r > 0)
                continue;
            bool known = false;
            for (size_t k = 0; k < ARRAY_SIZE(flag_names); k++) {
                if (strcmp(a, flag_names[k].name) == 0) {
                    p->flags |= flag_names[k].flag;
                    known = true;
                }
            }
            if (!known) {
                usage_error("unknown option %s", a);
                return -1;
            }
            continue;
        }
        if (p->npos == (int)ARRAY_SIZE(p->pos)) {
            usage_error("too many arguments");
            return -1;
        }
        p->pos[p->npos++] = a;
    }
    return 0;
}

/* The request timeout: --timeout, else $SHOAL_TIMEOUT, else the default,
 * longer for the commands that wait on server-side work (an explicit one
 * applies to them too: the user asked for it). 0 with *ms set, or -1
 * after a usage error. */
static int request_timeout(const struct parsed *p, bool waits, uint64_t *ms)
{
    const char *env = getenv("SHOAL_TIMEOUT");
    const char *val = p->timeout ? p->timeout : env && *env ? env : NULL;
    *ms = waits ? CLIENT_LONG_TIMEOUT_MS : CLIENT_TIMEOUT_MS;
    if (val && parse_duration_ms(val, ms) < 0) {
        usage_error("bad %s \"%s\" (seconds, or with ms/s/m; 0: no limit)",
                    p->timeout ? "--timeout" : "$SHOAL_TIMEOUT", val);
        return -1;
    }
    return 0;
}

static const struct command *find_command(const struct parsed *p)
{
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        const struct command *c = &commands[i];
        if (strcmp(c->word, p->pos[0]) != 0)
            continue;
        if (!c->sub || (p->npos > 1 && strcmp(c->sub, p->pos[1]) == 0))
            return c;
    }
    return NULL;
}

/* Append "what" to the list of places looked at (for the 401 message). */
static void looked(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void looked(char *buf, size_t len, const char *fmt, ...)
{
    size_t off = strlen(buf);
    if (off && off + 2 < len) {
        strcpy(buf + off, ", ");
        off += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + off, len - off, fmt, ap);
    va_end(ap);
}

/* The token: --token-file, else $SHOAL_TOKEN, else a readable default
 * file. `source` says where it came from, or every place looked at. NULL
 * with *err set when --token-file cannot be used; NULL without error when
 * there is no token. */
static char *load_token(const char *file, char *source, size_t srclen, bool *err)
{
    *err = false;
    source[0] = '\0';
    char msg[512];
    char *tok = NULL;
    if (file) {
        if (token_read(file, 0, &tok, msg, sizeof msg) < 0) {
            fprintf(stderr, "shoalctl: %s\n", msg);
            *err = true;
            return NULL;
        }
        snprintf(source, srclen, "--token-file %s", file);
        return tok;
    }
    looked(source, srclen, "--token-file (not given)");
    const char *env = getenv("SHOAL_TOKEN");
    if (env && *env) {
        snprintf(source, srclen, "$SHOAL_TOKEN");
        return strdup(env);
    }
    looked(source, srclen, "$SHOAL_TOKEN (unset)");
    char def[4096];
    const char *paths[2] = {NULL, TOKEN_ROOT_PATH};
    if (token_default_path(def, sizeof def) == 0 && strcmp(def, TOKEN_ROOT_PATH) != 0)
        paths[0] = def;
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        if (!paths[i])
            continue;
        int r = token_read(paths[i], 0, &tok, msg, sizeof msg);
        if (r == 0) {
            snprintf(source, srclen, "%s", paths[i]);
            return tok;
        }
        looked(source, srclen, "%s (%s)", paths[i], strerror(-r));
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct parsed p = {0};
    if (parse_args(argc, argv, &p) < 0)
        return EXIT_USAGE;
    if (p.help || (p.npos > 0 && strcmp(p.pos[0], "help") == 0)) {
        print_help(stdout);
        return EXIT_OK;
    }
    /* Like shoald -V: this binary's version only, without asking the server
     * (that is `shoalctl version`), so it works with no daemon running. */
    if (p.version) {
        printf("shoalctl %s\n", SHOAL_VERSION);
        return EXIT_OK;
    }
    if (p.npos == 0) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    const struct command *cmd = find_command(&p);
    if (!cmd) {
        if (strcmp(p.pos[0], "volume") == 0 || strcmp(p.pos[0], "cache") == 0 ||
            strcmp(p.pos[0], "cluster") == 0)
            usage_error("%s: unknown or missing subcommand", p.pos[0]);
        else
            usage_error("unknown command \"%s\"", p.pos[0]);
        return EXIT_USAGE;
    }
    if (p.flags & ~cmd->flags) {
        for (size_t k = 0; k < ARRAY_SIZE(flag_names); k++)
            if (p.flags & ~cmd->flags & flag_names[k].flag)
                usage_error("%s does not apply to '%s'", flag_names[k].name, cmd->usage);
        return EXIT_USAGE;
    }
    if (!p.to != (cmd->fn != cmd_volume_move)) {
        usage_error(p.to ? "--to does not apply to '%s'" : "'%s' needs --to NODE", cmd->usage);
        return EXIT_USAGE;
    }
    struct cli cli = {.flags = p.flags, .to = p.to};
    int first = cmd->sub ? 2 : 1;
    cli.nargs = p.npos - first;
    for (int i = 0; i < cli.nargs && i < CLI_MAX_ARGS; i++)
        cli.args[i] = p.pos[first + i];
    if (cli.nargs < cmd->min_args || cli.nargs > cmd->max_args) {
        fprintf(stderr, "shoalctl: usage: shoalctl %s\n", cmd->usage);
        return EXIT_USAGE;
    }

    cli.url = p.url ? p.url : getenv("SHOAL_URL");
    if (!cli.url || !*cli.url)
        cli.url = DEFAULT_URL;
    bool token_err;
    char token_source[1024];
    _cleanup_free_ char *token =
        load_token(p.token_file, token_source, sizeof token_source, &token_err);
    if (token_err)
        return EXIT_USAGE;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "shoalctl: cannot initialise libcurl\n");
        return EXIT_CONNECT;
    }
    /* volume add waits for the back end to open unless --no-wait; a move
     * flushes, publishes and hands over before it answers. */
    bool waits =
        (cmd->fn == cmd_volume_add && !(p.flags & F_NO_WAIT)) || cmd->fn == cmd_volume_move;
    uint64_t timeout_ms;
    if (request_timeout(&p, waits, &timeout_ms) < 0)
        return EXIT_USAGE;
    struct client_options copts = {
        .token = token,
        .token_source = token_source,
        .cacert = p.cacert,
        .timeout_ms = timeout_ms,
    };
    cli.client = client_new(cli.url, &copts);
    if (!cli.client) {
        fprintf(stderr, "shoalctl: out of memory\n");
        curl_global_cleanup();
        return EXIT_CONNECT;
    }
    int r = cmd->fn(&cli);
    client_free(cli.client);
    curl_global_cleanup();
    return r;
}
