/* shoald command line and config file; see options.h. */
#include "daemon/options.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <sys/stat.h>

#include "cluster/etcd.h"
#include "cluster/mc_ring.h"
#include "cluster/memcached.h"
#include "common/busy_poll.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/evict.h"
#include "daemon/ini.h"
#include "frontend/netaddr.h"
#include "mgmt/mgmt.h"

#define DEFAULT_HTTP      "127.0.0.1:10810"
#define DEFAULT_CACHE     (1ull << 30)
#define DEFAULT_IO_MEMORY (512ull << 20)
#define DEFAULT_THREADS   32
#define VOLUME_NAME_MAX   255 /* volume_name_valid's limit */

const struct frontend_ops *const daemon_frontends[] = {
    &frontend_nbd_ops,
    &frontend_iscsi_ops,
};
const unsigned daemon_nfrontends = ARRAY_SIZE(daemon_frontends);
_Static_assert(ARRAY_SIZE(daemon_frontends) <= MAX_FRONTENDS, "raise MAX_FRONTENDS");

/* getopt values of front-end options: FE_VAL_BASE + front end * 256 + index
 * in its table (daemon options use characters and small enum values). */
#define FE_VAL_BASE    0x10000
#define FE_VAL(fe, i)  (FE_VAL_BASE + (int)(fe)*FE_MAX_OPTS + (int)(i))
#define LONG_OPTS_MAX  128
#define SHORT_OPTS_MAX 64

/* A copy of s that lives as long as the options, or NULL. Per options
 * struct, so a reload's parse frees nothing the running daemon uses. */
static const char *own(struct daemon_options *o, const char *s)
{
    char *copy = s ? strdup(s) : NULL;
    char **n = copy ? realloc(o->owned, (o->nowned + 1) * sizeof *n) : NULL;
    if (!n) {
        free(copy);
        return NULL;
    }
    o->owned = n;
    o->owned[o->nowned++] = copy;
    return copy;
}

/* Take over p (malloc'ed) for as long as the options live. 0 or -1 (p
 * freed). */
static int own_ptr(struct daemon_options *o, char *p)
{
    char **n = realloc(o->owned, (o->nowned + 1) * sizeof *n);
    if (!n) {
        free(p);
        return -1;
    }
    o->owned = n;
    o->owned[o->nowned++] = p;
    return 0;
}

void options_free(struct daemon_options *opts)
{
    for (unsigned i = 0; i < MAX_FRONTENDS; i++) {
        free(opts->frontend_opts[i]);
        opts->frontend_opts[i] = NULL;
    }
    for (unsigned i = 0; i < opts->nowned; i++)
        free(opts->owned[i]);
    free(opts->owned);
    opts->owned = NULL;
    opts->nowned = 0;
}

/* The one-line error: "shoald: [FILE:LINE: ]message" on stderr, or into
 * the reparse's buffer. Returns -1. */
static int fail(struct daemon_options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(struct daemon_options *o, const char *fmt, ...)
{
    char msg[768], loc[320] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (o->at_file)
        snprintf(loc, sizeof loc, "%s:%u: ", o->at_file, o->at_line);
    if (o->error)
        snprintf(o->error, o->error_len, "%s%s", loc, msg);
    else
        fprintf(stderr, "shoald: %s%s\n", loc, msg);
    return -1;
}

/* One option in --help: "  -X, --NAME ARG" then its help, lines aligned. */
static void usage_line(FILE *f, char short_name, const char *name, const char *arg,
                       const char *help)
{
    char left[128];
    snprintf(left, sizeof left, "  %c%c%c --%s%s%s", short_name ? '-' : ' ',
             short_name ? short_name : ' ', short_name ? ',' : ' ', name, arg ? " " : "",
             arg ? arg : "");
    if (strlen(left) > 34)
        fprintf(f, "%s\n%36s", left, "");
    else
        fprintf(f, "%-36s", left);
    for (const char *p = help; *p;) {
        size_t n = strcspn(p, "\n");
        fprintf(f, "%.*s\n", (int)n, p);
        p += n;
        if (*p) {
            p++;
            fprintf(f, "%36s", "");
        }
    }
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: shoald [options] NAME=BACKING[,format=raw] [NAME=BACKING ...]\n"
        "\n"
        "A deduplicating, write-through RAM read cache for virtual disks, served over NBD.\n"
        "BACKING is a file or block device path, nbd://host[:port]/export,\n"
        "nbd+unix:///export?socket=PATH or iscsi://[user@]host[:port]/target-iqn/lun\n"
        "[?secret-file=PATH] (the CHAP secret). A file holds a raw image: one that starts with\n"
        "a qcow2, qed, vmdk, vhdx, vdi, vhd or luks header is refused unless format=raw.\n"
        "\n"
        "      --http ADDR:PORT|off          management API (default %s)\n"
        "      --http-token-file FILE        the API's bearer token, created (random, mode\n"
        "                                    0600) if missing; default /run/shoal/api-token\n"
        "                                    as root, else $XDG_RUNTIME_DIR/shoal/api-token\n"
        "      --http-tls-certificates DIR   serve the API over HTTPS: DIR/server-cert.pem,\n"
        "                                    server-key.pem\n"
        "      --backing-dir DIR             file, device and nbd+unix socket back ends must\n"
        "                                    lie beneath DIR (repeatable; default: anywhere)\n"
        "  -m, --cache-size SIZE             RAM for cached content, K/M/G (default 1G)\n"
        "  -c, --config FILE                 INI file: [shoald] settings, [volume NAME];\n"
        "                                    SIGHUP or shoalctl reload re-reads it\n"
        "  -r, --readonly                    export every volume read-only\n"
        "  -f, --foreground                  do not daemonize; log to stderr\n"
        "  -v, --verbose                     more logging (repeat for debug)\n"
        "  -D, --debug COMPONENT=LEVEL       per-component log level (error|warn|info|debug)\n"
        "      --policy NAME                 eviction policy: wtinylfu (default), s3fifo,\n"
        "                                    lru, sieve or arc\n"
        "      --threads N                   worker threads for back end I/O, shared by\n"
        "                                    every front end (default %d)\n"
        "      --io-memory SIZE              cap on request buffers (default 512M)\n"
        "      --busy-poll USEC|off          poll a client's socket up to USEC for its\n"
        "                                    next request before sleeping (default 50)\n"
        "      --direct                      open file back ends with O_DIRECT\n"
        "      --readahead SIZE|off          on a read miss, also fetch the uncached\n"
        "                                    blocks of its aligned SIZE window (default\n"
        "                                    64K for NBD and iSCSI back ends, off for\n"
        "                                    files)\n"
        "      --pid-file FILE               write the daemon's pid\n"
        "      --user USER                   run as USER once listeners, volumes, pid and\n"
        "                                    token files are open (volumes added later\n"
        "                                    are opened as USER)\n"
        "      --group GROUP                 with --user: run with this group instead of\n"
        "                                    USER's primary group\n"
        "      --state-dir DIR|off           keep volume changes made through the API in\n"
        "                                    DIR/state.json (default: $STATE_DIRECTORY,\n"
        "                                    set by systemd, else /var/lib/shoal)\n"
        "      --connect-timeout TIME        give up connecting to an NBD back end (connect\n"
        "                                    and handshake) after TIME (default 10s)\n"
        "      --memcached HOST:PORT,...     the cluster's global tier: memcached servers\n"
        "                                    asked for a block by fingerprint before the\n"
        "                                    back end (in a config file: [cluster])\n"
        "      --memcached-timeout TIME      longest a read waits for memcached (default\n"
        "                                    5ms; then it reads the back end)\n"
        "      --memcached-put-queue SIZE    memory for blocks waiting to be put to\n"
        "                                    memcached after the reply, 4K to 64G (default\n"
        "                                    16M; when full, new puts are dropped)\n"
        "      --etcd URL,...                cluster membership and volume ownership in\n"
        "                                    etcd (http://HOST:PORT or https://); --memcached\n"
        "                                    then names this node's own server(s)\n"
        "      --etcd-cacert FILE            CA certificate(s) etcd's server certificate is\n"
        "                                    checked against (default: the system's)\n"
        "      --etcd-cert FILE              client certificate for etcd (PEM), with\n"
        "      --etcd-key FILE               its private key (PEM)\n"
        "      --node-name NAME              this node's name in the cluster (default:\n"
        "                                    the host name)\n"
        "      --etcd-lease TIME             the node's etcd lease: its volumes and\n"
        "                                    server go this long after it dies (default\n"
        "                                    10s)\n"
        "  -h, --help                        this help\n"
        "  -V, --version                     print the version\n",
        DEFAULT_HTTP, DEFAULT_THREADS);
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        const struct frontend_ops *ops = daemon_frontends[fe];
        fprintf(f, "\n%s (in a config file: [shoald] or [%s]):\n", ops->title, ops->section);
        for (const struct frontend_option *opt = ops->options; opt->name; opt++)
            usage_line(f, opt->short_name, opt->name, opt->arg, opt->help);
    }
}

enum {
    OPT_HTTP = 256,
    OPT_HTTP_TOKEN,
    OPT_POLICY,
    OPT_THREADS,
    OPT_IO_MEMORY,
    OPT_BUSY_POLL,
    OPT_DIRECT,
    OPT_PID_FILE,
    OPT_READAHEAD,
    OPT_HTTP_TLS_CERTS,
    OPT_BACKING_DIR,
    OPT_USER,
    OPT_GROUP,
    OPT_STATE_DIR,
    OPT_CONNECT_TIMEOUT,
    OPT_MEMCACHED,
    OPT_MEMCACHED_TIMEOUT,
    OPT_MEMCACHED_PUT_QUEUE,
    OPT_ETCD,
    OPT_NODE_NAME,
    OPT_ETCD_LEASE,
    OPT_ETCD_CACERT,
    OPT_ETCD_CERT,
    OPT_ETCD_KEY,
};

/* The daemon's own options; each front end's come from its table. */
static const char daemon_shortopts[] = "m:c:rfvD:hV";
static const struct option daemon_long_opts[] = {
    {"http", required_argument, NULL, OPT_HTTP},
    {"http-token-file", required_argument, NULL, OPT_HTTP_TOKEN},
    {"http-tls-certificates", required_argument, NULL, OPT_HTTP_TLS_CERTS},
    {"backing-dir", required_argument, NULL, OPT_BACKING_DIR},
    {"cache-size", required_argument, NULL, 'm'},
    {"config", required_argument, NULL, 'c'},
    {"readonly", no_argument, NULL, 'r'},
    {"read-only", no_argument, NULL, 'r'},
    {"foreground", no_argument, NULL, 'f'},
    {"verbose", no_argument, NULL, 'v'},
    {"debug", required_argument, NULL, 'D'},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"io-memory", required_argument, NULL, OPT_IO_MEMORY},
    {"busy-poll", required_argument, NULL, OPT_BUSY_POLL},
    {"direct", no_argument, NULL, OPT_DIRECT},
    {"readahead", required_argument, NULL, OPT_READAHEAD},
    {"pid-file", required_argument, NULL, OPT_PID_FILE},
    {"user", required_argument, NULL, OPT_USER},
    {"group", required_argument, NULL, OPT_GROUP},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"memcached", required_argument, NULL, OPT_MEMCACHED},
    {"memcached-timeout", required_argument, NULL, OPT_MEMCACHED_TIMEOUT},
    {"memcached-put-queue", required_argument, NULL, OPT_MEMCACHED_PUT_QUEUE},
    {"etcd", required_argument, NULL, OPT_ETCD},
    {"node-name", required_argument, NULL, OPT_NODE_NAME},
    {"etcd-lease", required_argument, NULL, OPT_ETCD_LEASE},
    {"etcd-cacert", required_argument, NULL, OPT_ETCD_CACERT},
    {"etcd-cert", required_argument, NULL, OPT_ETCD_CERT},
    {"etcd-key", required_argument, NULL, OPT_ETCD_KEY},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int bad(struct daemon_options *o, const char *what, const char *value, const char *why)
{
    return fail(o, "invalid %s '%s'%s%s", what, value, why ? ": " : "", why ? why : "");
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || *s == '-' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") ||
        !strcmp(s, "1")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") ||
        !strcmp(s, "0")) {
        *out = false;
        return 0;
    }
    return -1;
}

static struct volume_config *find_volume(struct daemon_options *o, const char *name)
{
    for (unsigned i = 0; i < o->nvolumes; i++)
        if (strcmp(o->volumes[i].name, name) == 0)
            return &o->volumes[i];
    return NULL;
}

static struct volume_config *new_volume(struct daemon_options *o, const char *name)
{
    if (!volume_name_valid(name)) {
        bad(o, "volume name", name,
            "use 1-255 characters from A-Z a-z 0-9 . _ - (not starting with .)");
        return NULL;
    }
    struct volume_config *prev = find_volume(o, name);
    if (prev) {
        unsigned i = (unsigned)(prev - o->volumes);
        if (o->volume_file[i])
            fail(o, "volume %s is defined twice (first at %s:%u)", name, o->volume_file[i],
                 o->volume_line[i]);
        else
            bad(o, "volume name", name, "defined twice");
        return NULL;
    }
    if (o->nvolumes == MAX_VOLUMES) {
        bad(o, "volume", name, "too many volumes");
        return NULL;
    }
    struct volume_config *v = &o->volumes[o->nvolumes++];
    memset(v, 0, sizeof *v);
    v->name = name;
    return v;
}

/* "off"/"0" -> -1 (off); a size from 4K to 256K -> bytes. */
static int parse_readahead(const char *val, int32_t *out)
{
    uint64_t n;
    if (!strcmp(val, "off") || !strcmp(val, "0")) {
        *out = -1;
        return 0;
    }
    if (parse_size(val, &n) < 0 || n < BLOCK_SIZE || n > VOL_READAHEAD_MAX)
        return -EINVAL;
    *out = (int32_t)n;
    return 0;
}

/* Resolved now, so volumes are checked against the directory's real path
 * (file.c compares spelled paths with it) and a typo is one line. */
static int add_backing_dir(struct daemon_options *o, const char *val)
{
    if (o->nbacking_dirs == MAX_BACKING_DIRS)
        return bad(o, "--backing-dir", val, "too many directories");
    if (!val[0])
        return bad(o, "--backing-dir", val, "empty path");
    char *real = realpath(val, NULL);
    if (!real)
        return bad(o, "--backing-dir", val, strerror(errno));
    struct stat st;
    int r = stat(real, &st);
    if (r < 0 || !S_ISDIR(st.st_mode)) {
        free(real);
        return bad(o, "--backing-dir", val, "not a directory");
    }
    const char *kept = own(o, real);
    free(real);
    if (!kept)
        return bad(o, "--backing-dir", val, "out of memory");
    o->backing_dirs[o->nbacking_dirs++] = kept;
    o->backing_dirs[o->nbacking_dirs] = NULL;
    return 0;
}

/* A switch: given on the command line, true or false in a file. */
static int set_flag(struct daemon_options *o, bool *field, const char *what, const char *val,
                    bool from_file)
{
    if (!from_file) {
        *field = true;
        return 0;
    }
    if (parse_bool(val, field) < 0)
        return bad(o, what, val, "want true or false");
    return 0;
}

/* What log_set_spec accepts: COMPONENT=LEVEL, COMPONENT a logger component
 * or "all", LEVEL error|warn|info|debug (any case) or 0..3. */
static bool debug_spec_valid(const char *spec)
{
    static const char *const components[] = {
#define X(name) #name,
        SHOAL_LOG_COMPONENTS(X)
#undef X
            "all",
    };
    static const char *const levels[] = {"error", "warn", "info", "debug", "0", "1", "2", "3"};
    const char *eq = strchr(spec, '=');
    if (!eq)
        return false;
    bool comp = false, lvl = false;
    for (size_t i = 0; i < ARRAY_SIZE(components); i++)
        comp |= strlen(components[i]) == (size_t)(eq - spec) &&
                !strncmp(spec, components[i], (size_t)(eq - spec));
    for (size_t i = 0; i < ARRAY_SIZE(levels); i++)
        lvl |= !strcasecmp(eq + 1, levels[i]);
    return comp && lvl;
}

/* One of the daemon's own settings, from either source. Returns 0 or -1
 * (message printed). */
static int set_option(struct daemon_options *o, int key, const char *val, bool from_file)
{
    uint64_t u64;
    switch (key) {
    case OPT_HTTP:
        if (strcmp(val, "off") != 0) {
            char h[256];
            unsigned port;
            if (mgmt_parse_listen(val, h, sizeof h, &port) < 0)
                return bad(o, "--http address", val, "want ADDR:PORT or off");
        }
        o->http = val;
        return 0;
    case OPT_HTTP_TOKEN:
        if (!val[0])
            return bad(o, "--http-token-file", val, "empty path");
        o->http_token_file = val;
        o->http_token_at = (struct opt_at){o->at_file, o->at_line};
        return 0;
    case OPT_HTTP_TLS_CERTS:
        if (!val[0])
            return bad(o, "--http-tls-certificates", val, "empty path");
        o->http_tls_certificates = val;
        o->http_tls_at = (struct opt_at){o->at_file, o->at_line};
        return 0;
    case OPT_BACKING_DIR:
        return add_backing_dir(o, val);
    case 'm':
        if (parse_size(val, &u64) < 0 || u64 < 4096)
            return bad(o, "cache size", val, "want a size like 512M or 2G (at least 4K)");
        o->cache_bytes = u64;
        o->cache_at.file = o->at_file;
        o->cache_at.line = o->at_line;
        return 0;
    case OPT_IO_MEMORY:
        if (parse_size(val, &u64) < 0 || u64 < (1u << 20))
            return bad(o, "io memory", val, "want a size of at least 1M");
        o->io_memory = u64;
        return 0;
    case 'r':
        return set_flag(o, &o->readonly, "readonly", val, from_file);
    case OPT_DIRECT:
        return set_flag(o, &o->direct, "direct", val, from_file);
    case OPT_POLICY:
        if (!evict_find(val))
            return bad(o, "eviction policy", val, "want wtinylfu, s3fifo, lru, sieve or arc");
        o->policy = val;
        return 0;
    case OPT_READAHEAD:
        if (parse_readahead(val, &o->readahead) < 0)
            return bad(o, "readahead", val, "want off or a size from 4K to 256K");
        return 0;
    case OPT_BUSY_POLL:
        if (strcmp(val, "off") == 0)
            o->busy_poll_us = 0;
        else if (parse_uint(val, 0, BUSY_POLL_MAX_US, &o->busy_poll_us) < 0)
            return bad(o, "busy poll", val, "want off or microseconds, 0..1000");
        return 0;
    case OPT_THREADS:
        if (parse_uint(val, 1, 1024, &o->threads) < 0)
            return bad(o, "thread count", val, "want 1..1024");
        return 0;
    case OPT_PID_FILE:
        o->pid_file = val;
        o->pid_file_at = (struct opt_at){o->at_file, o->at_line};
        return 0;
    case OPT_USER:
        o->user = val;
        o->user_at.file = o->at_file;
        o->user_at.line = o->at_line;
        return 0;
    case OPT_GROUP:
        o->group = val;
        o->group_at.file = o->at_file;
        o->group_at.line = o->at_line;
        return 0;
    case OPT_CONNECT_TIMEOUT:
        if (parse_duration_ms(val, &u64) < 0 || u64 == 0 || u64 > BACKEND_CONNECT_TIMEOUT_MAX_MS)
            return bad(o, "--connect-timeout", val,
                       "want a duration like 10s or 500ms (at most 1h)");
        o->connect_timeout_ms = u64;
        return 0;
    case OPT_MEMCACHED: {
        /* Checked here, as the start would (mc_ring_init), so a bad list
         * in a config file names its line, and a reload refuses it rather
         * than leave it for the next restart to fail on. */
        char why[300];
        if (!val[0] || mc_ring_check_list(val, why, sizeof why) < 0)
            return bad(o, "--memcached", val, val[0] ? why : "want HOST:PORT[,HOST:PORT...]");
        o->memcached = val;
        return 0;
    }
    case OPT_MEMCACHED_TIMEOUT:
        if (parse_duration_ms(val, &u64) < 0 || u64 == 0 || u64 > 60000)
            return bad(o, "--memcached-timeout", val, "want a duration like 5ms (at most 60s)");
        o->memcached_timeout_ms = u64;
        return 0;
    case OPT_MEMCACHED_PUT_QUEUE:
        /* The tier's own bounds, checked here so that a typo is one line
         * naming the option. */
        if (parse_size(val, &u64) < 0 || u64 < BLOCK_SIZE || u64 > TIER_MEMCACHED_PUT_QUEUE_MAX)
            return bad(o, "--memcached-put-queue", val, "want a size like 16M (4K to 64G)");
        o->memcached_put_queue_bytes = u64;
        return 0;
    case OPT_ETCD: {
        char why[300];
        if (etcd_endpoints_check(val, why, sizeof why) < 0)
            return bad(o, "--etcd", val, why);
        o->etcd = val;
        return 0;
    }
    case OPT_NODE_NAME:
        if (!volume_name_valid(val))
            return bad(o, "--node-name", val,
                       "use 1-255 of A-Z a-z 0-9 . _ -, not starting with '.'");
        o->node_name = val;
        return 0;
    case OPT_ETCD_CACERT:
    case OPT_ETCD_CERT:
    case OPT_ETCD_KEY: {
        const char *name = key == OPT_ETCD_CACERT ? "--etcd-cacert"
                           : key == OPT_ETCD_CERT ? "--etcd-cert"
                                                  : "--etcd-key";
        if (!val[0])
            return bad(o, name, val, "empty path");
        o->etcd_tls_at = (struct opt_at){o->at_file, o->at_line};
        o->etcd_file_at[key == OPT_ETCD_CACERT ? 0 : key == OPT_ETCD_CERT ? 1 : 2] = o->etcd_tls_at;
        *(key == OPT_ETCD_CACERT ? &o->etcd_tls.cacert
          : key == OPT_ETCD_CERT ? &o->etcd_tls.cert
                                 : &o->etcd_tls.key) = val;
        return 0;
    }
    case OPT_ETCD_LEASE:
        if (parse_duration_ms(val, &u64) < 0 || u64 < 2000 || u64 > 3600000 || u64 % 1000)
            return bad(o, "--etcd-lease", val, "want whole seconds from 2s to 1h");
        o->etcd_lease_s = u64 / 1000;
        return 0;
    case OPT_STATE_DIR:
        if (!val[0])
            return bad(o, "--state-dir", val, "empty path (off turns it off)");
        o->state_dir = val;
        o->state_dir_at = (struct opt_at){o->at_file, o->at_line};
        return 0;
    case 'D': {
        /* Only checked here: options_apply_logging sets the levels once
         * the whole parse succeeded (a reload's parse runs beside live
         * threads, which must not see a level come and go). */
        if (!debug_spec_valid(val))
            return bad(o, "debug setting", val, "want COMPONENT=LEVEL, e.g. nbd=debug");
        if (o->ndebug_specs == MAX_DEBUG_SPECS)
            return bad(o, "debug setting", val, "too many");
        o->debug_specs[o->ndebug_specs++] = val;
        return 0;
    }
    default:
        return -1;
    }
}

/* ---- front-end options (frontend/frontend.h) ---- */

/* Option i of front end fe, from either source. Returns 0 or -1 (message
 * printed). */
static int set_frontend_option(struct daemon_options *o, unsigned fe, unsigned i, const char *val,
                               bool from_file)
{
    const struct frontend_option *opt = &daemon_frontends[fe]->options[i];
    void *field = (char *)o->frontend_opts[fe] + opt->offset;
    const char *what = opt->what ? opt->what : opt->name;
    struct frontend_list *list = field;
    char refused[256] = "";
    if (i < FE_MAX_OPTS)
        o->fe_at[fe][i] = (struct opt_at){o->at_file, o->at_line};
    if (opt->check && opt->check(val, refused, sizeof refused) < 0)
        return bad(o, what, val, refused[0] ? refused : opt->want);
    switch (opt->kind) {
    case FE_OPT_STRING:
    case FE_OPT_PATH:
        *(const char **)field = val;
        return 0;
    case FE_OPT_FLAG:
        return set_flag(o, field, what, val, from_file);
    case FE_OPT_UINT:
        if (parse_uint(val, opt->min, opt->max, field) < 0)
            return bad(o, what, val, opt->want);
        return 0;
    case FE_OPT_DURATION: {
        uint64_t ms;
        if (parse_duration_ms(val, &ms) < 0 || ms == 0)
            return bad(o, what, val, opt->want);
        *(uint64_t *)field = ms;
        return 0;
    }
    case FE_OPT_ENUM:
        for (int k = 0; opt->names[k]; k++) {
            if (strcmp(opt->names[k], val) == 0) {
                *(int *)field = k;
                return 0;
            }
        }
        return bad(o, what, val, opt->want);
    case FE_OPT_LISTEN: {
        if (!from_file && !o->cli_replaced[fe][i]) {
            list->n = 0;
            o->cli_replaced[fe][i] = true;
        }
        /* Resolved now, so a bad host is reported before anything starts. */
        const char *why = netaddr_check_listen(val, opt->port);
        if (why)
            return bad(o, what, val, why);
        if (list->n == MIN(opt->max, FRONTEND_LIST_MAX))
            return bad(o, what, val, "too many listeners");
        list->v[list->n++] = val;
        return 0;
    }
    case FE_OPT_LIST:
        if (list->n == MIN(opt->max, FRONTEND_LIST_MAX))
            return bad(o, what, val, "too many entries");
        list->v[list->n++] = val;
        return 0;
    }
    return -1;
}

/* A front-end option by its command-line name (fe_section < 0: any front
 * end, as in [shoald]) or by its key in front end fe_section's own section. */
static bool find_frontend_option(int fe_section, const char *name, unsigned *fe_out,
                                 unsigned *i_out)
{
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        if (fe_section >= 0 && fe != (unsigned)fe_section)
            continue;
        const struct frontend_option *opts = daemon_frontends[fe]->options;
        for (unsigned i = 0; opts[i].name; i++) {
            const char *k = fe_section >= 0 && opts[i].key ? opts[i].key : opts[i].name;
            if (strcmp(k, name) == 0) {
                *fe_out = fe;
                *i_out = i;
                return true;
            }
        }
    }
    return false;
}

/* ---- getopt ---- */

static struct option long_opts[LONG_OPTS_MAX];
static char shortopts[SHORT_OPTS_MAX];

/* The daemon's options, then every front end's. */
static void build_getopt_tables(void)
{
    unsigned n = 0;
    for (const struct option *d = daemon_long_opts; d->name; d++)
        long_opts[n++] = *d;
    size_t sl = (size_t)snprintf(shortopts, sizeof shortopts, ":%s", daemon_shortopts);
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        const struct frontend_option *opts = daemon_frontends[fe]->options;
        for (unsigned i = 0; opts[i].name; i++) {
            bool flag = opts[i].kind == FE_OPT_FLAG;
            if (n + 1 < LONG_OPTS_MAX && i < FE_MAX_OPTS)
                long_opts[n++] = (struct option){
                    opts[i].name, flag ? no_argument : required_argument, NULL, FE_VAL(fe, i)};
            if (opts[i].short_name && sl + 3 < sizeof shortopts) {
                shortopts[sl++] = opts[i].short_name;
                if (!flag)
                    shortopts[sl++] = ':';
                shortopts[sl] = '\0';
            }
        }
    }
    long_opts[n] = (struct option){NULL, 0, NULL, 0};
}

/* A command-line option getopt returned as c. 0 or -1 (message printed). */
static int set_from_cli(struct daemon_options *o, int c, const char *val)
{
    if (c >= FE_VAL_BASE)
        return set_frontend_option(o, (unsigned)(c - FE_VAL_BASE) / FE_MAX_OPTS,
                                   (unsigned)(c - FE_VAL_BASE) % FE_MAX_OPTS, val, false);
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        const struct frontend_option *opts = daemon_frontends[fe]->options;
        for (unsigned i = 0; opts[i].name; i++)
            if (opts[i].short_name && opts[i].short_name == c)
                return set_frontend_option(o, fe, i, val, false);
    }
    return set_option(o, c, val, false);
}

/* Map a config key of [shoald] to the daemon option it stands for. */
static int key_of_name(const char *name)
{
    for (const struct option *o = daemon_long_opts; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o->val;
    if (!strcmp(name, "cache_size"))
        return 'm';
    return 0;
}

/* What a section is, once its header was read. */
enum section_kind { SEC_MAIN, SEC_FRONTEND, SEC_VOLUME, SEC_CLUSTER };

/* A section header or a setting already read from this file: a second
 * one is refused with both lines. */
struct seen {
    char *id;
    unsigned line;
};

struct ini_ctx {
    struct daemon_options *o;
    const char *file;
    enum section_kind kind;
    unsigned fe;  /* SEC_FRONTEND: its index */
    unsigned vol; /* SEC_VOLUME: index in o->volumes */
    struct seen *seen;
    size_t nseen;
};

static void ctx_free(struct ini_ctx *c)
{
    for (size_t i = 0; i < c->nseen; i++)
        free(c->seen[i].id);
    free(c->seen);
}

/* Record id at line; the line it was first seen at if it was (0 if not,
 * or when out of memory, which then fails the parse). */
static unsigned seen_before(struct ini_ctx *c, const char *id, unsigned line, bool *oom)
{
    for (size_t i = 0; i < c->nseen; i++)
        if (strcmp(c->seen[i].id, id) == 0)
            return c->seen[i].line;
    struct seen *n = realloc(c->seen, (c->nseen + 1) * sizeof *n);
    char *copy = strdup(id);
    if (!n || !copy) {
        free(copy);
        if (n)
            c->seen = n;
        *oom = true;
        return 0;
    }
    c->seen = n;
    c->seen[c->nseen++] = (struct seen){copy, line};
    return 0;
}

/* A setting given twice in one file is a mistake (which one wins?), so it
 * is refused; keys that build a list (listen, allow, backing-dir, debug)
 * may repeat. id names the setting whatever its spelling or section
 * (cache-size and cache_size, [shoald] listen and [nbd] listen). */
static int check_once(struct ini_ctx *c, const char *id, const char *key, bool repeatable)
{
    if (repeatable)
        return 0;
    bool oom = false;
    unsigned first = seen_before(c, id, c->o->at_line, &oom);
    if (oom)
        return fail(c->o, "out of memory");
    if (first)
        return fail(c->o, "'%s' is set twice (first on line %u)", key, first);
    return 0;
}

/* A key of [shoald] (or [global], or before any section): the daemon's
 * options and every front end's, by their command-line names. */
static int main_setting(struct ini_ctx *c, const char *section, const char *name, const char *val)
{
    int key = key_of_name(name);
    unsigned fe, i;
    char id[32];
    if (!key && find_frontend_option(-1, name, &fe, &i)) {
        enum frontend_opt_kind k = daemon_frontends[fe]->options[i].kind;
        snprintf(id, sizeof id, "fe %u.%u", fe, i);
        if (check_once(c, id, name, k == FE_OPT_LISTEN || k == FE_OPT_LIST) < 0)
            return -1;
        return set_frontend_option(c->o, fe, i, val, true);
    }
    if (!key || key == 'c' || key == 'h' || key == 'V' || key == 'f' || key == 'v')
        return fail(c->o, "unknown setting '%s' in [%s]", name, section[0] ? section : "shoald");
    snprintf(id, sizeof id, "opt %d", key);
    if (check_once(c, id, name, key == OPT_BACKING_DIR || key == 'D') < 0)
        return -1;
    return set_option(c->o, key, val, true);
}

/* A key of [cluster]: the global tier (memcached, memcached-timeout,
 * memcached-put-queue) and the membership (etcd, node-name, etcd-lease,
 * etcd-cacert, etcd-cert, etcd-key); the same keys are accepted in
 * [shoald]. */
static int cluster_setting(struct ini_ctx *c, const char *name, const char *val)
{
    int key = key_of_name(name);
    if (key != OPT_MEMCACHED && key != OPT_MEMCACHED_TIMEOUT && key != OPT_MEMCACHED_PUT_QUEUE &&
        key != OPT_ETCD && key != OPT_NODE_NAME && key != OPT_ETCD_LEASE &&
        key != OPT_ETCD_CACERT && key != OPT_ETCD_CERT && key != OPT_ETCD_KEY)
        return fail(c->o,
                    "unknown setting '%s' in [cluster] (want memcached, memcached-timeout, "
                    "memcached-put-queue, etcd, node-name, etcd-lease, etcd-cacert, etcd-cert "
                    "or etcd-key)",
                    name);
    char id[32];
    snprintf(id, sizeof id, "opt %d", key);
    if (check_once(c, id, name, false) < 0)
        return -1;
    return set_option(c->o, key, val, true);
}

/* A key of a front end's own section ([nbd]). */
static int frontend_setting(struct ini_ctx *c, const char *name, const char *val)
{
    unsigned fe, i;
    if (!find_frontend_option((int)c->fe, name, &fe, &i))
        return fail(c->o, "unknown setting '%s' in [%s]", name, daemon_frontends[c->fe]->section);
    enum frontend_opt_kind k = daemon_frontends[fe]->options[i].kind;
    char id[32];
    snprintf(id, sizeof id, "fe %u.%u", fe, i);
    if (check_once(c, id, name, k == FE_OPT_LISTEN || k == FE_OPT_LIST) < 0)
        return -1;
    return set_frontend_option(c->o, fe, i, val, true);
}

/* A key of [volume NAME]: its canonical name (aliases are one setting), or
 * NULL for an unknown key. */
static const char *volume_key(const char *name)
{
    static const char *const keys[][2] = {
        {"backing", "backing"},
        {"path", "backing"},
        {"uri", "backing"},
        {"readonly", "readonly"},
        {"read-only", "readonly"},
        {"enabled", "enabled"},
        {"accelerate", "enabled"},
        {"direct", "direct"},
        {"readahead", "readahead"},
        {"format", "format"},
        {"connections", "connections"},
        {"connect-timeout", "connect-timeout"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        if (!strcmp(name, keys[i][0]))
            return keys[i][1];
    return NULL;
}

/* given: the key as spelled; name: its canonical name. */
static int volume_setting(struct ini_ctx *c, const char *given, const char *val)
{
    struct daemon_options *o = c->o;
    struct volume_config *v = &o->volumes[c->vol];
    const char *name = volume_key(given);
    if (!name)
        return fail(o, "unknown setting '%s' in [volume %s]", given, v->name);
    char id[300];
    snprintf(id, sizeof id, "volume %s %s", v->name, name);
    if (check_once(c, id, given, false) < 0)
        return -1;
    bool b;
    if (!strcmp(name, "backing")) {
        if (!val[0])
            return bad(o, "backing", val, "empty");
        v->backend.spec = val;
    } else if (!strcmp(name, "readonly")) {
        if (parse_bool(val, &b) < 0)
            return bad(o, "readonly", val, "want true or false");
        v->readonly = b;
    } else if (!strcmp(name, "enabled")) {
        if (parse_bool(val, &b) < 0)
            return bad(o, given, val, "want true or false");
        v->disabled = !b;
    } else if (!strcmp(name, "direct")) {
        if (parse_bool(val, &b) < 0)
            return bad(o, "direct", val, "want true or false");
        v->backend.direct = b;
    } else if (!strcmp(name, "readahead")) {
        if (parse_readahead(val, &v->readahead) < 0)
            return bad(o, "readahead", val, "want off or a size from 4K to 256K");
    } else if (!strcmp(name, "format")) {
        if (backend_format_parse(val, &v->backend.format) < 0)
            return bad(o, "format", val, "want auto or raw");
    } else if (!strcmp(name, "connections")) {
        if (parse_uint(val, 1, 64, &v->backend.conns) < 0)
            return bad(o, "connections", val, "want 1..64");
    } else if (!strcmp(name, "connect-timeout")) {
        uint64_t ms;
        if (parse_duration_ms(val, &ms) < 0 || ms == 0 || ms > BACKEND_CONNECT_TIMEOUT_MAX_MS)
            return bad(o, "connect-timeout", val, "want a duration like 10s or 500ms (at most 1h)");
        v->backend.connect_timeout_ms = (uint32_t)ms;
    }
    return 0;
}

/* A section header: what its keys set. Each section may appear once. */
static int section_start(struct ini_ctx *c, const char *section)
{
    struct daemon_options *o = c->o;
    bool oom = false;
    unsigned first = seen_before(c, section, o->at_line, &oom);
    if (oom)
        return fail(o, "out of memory");
    if (first)
        return fail(o, "[%s] appears twice (first on line %u)", section, first);
    if (!strcmp(section, "shoald") || !strcmp(section, "global")) {
        c->kind = SEC_MAIN;
        return 0;
    }
    if (!strcmp(section, "cluster")) {
        c->kind = SEC_CLUSTER;
        return 0;
    }
    if (!strncmp(section, "volume ", 7)) {
        const char *name = own(o, section + 7);
        if (!name)
            return fail(o, "out of memory");
        struct volume_config *v = new_volume(o, name);
        if (!v)
            return -1;
        c->kind = SEC_VOLUME;
        c->vol = (unsigned)(v - o->volumes);
        o->volume_file[c->vol] = c->file;
        o->volume_line[c->vol] = o->at_line;
        return 0;
    }
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        if (!strcmp(section, daemon_frontends[fe]->section)) {
            c->kind = SEC_FRONTEND;
            c->fe = fe;
            return 0;
        }
    }
    if (!strcmp(section, "volume"))
        return fail(o, "[volume] needs a name: [volume NAME]");
    return fail(o, "unknown section [%s]", section);
}

static int config_entry(void *user, unsigned line, const char *section, const char *name,
                        const char *value)
{
    struct ini_ctx *c = user;
    c->o->at_line = line;
    if (!name)
        return section_start(c, section) < 0 ? -1 : 0;
    const char *val = own(c->o, value);
    if (!val)
        return fail(c->o, "out of memory");
    switch (section[0] ? c->kind : SEC_MAIN) {
    case SEC_MAIN:
        return main_setting(c, section, name, val) < 0 ? -1 : 0;
    case SEC_FRONTEND:
        return frontend_setting(c, name, val) < 0 ? -1 : 0;
    case SEC_VOLUME:
        return volume_setting(c, name, val) < 0 ? -1 : 0;
    case SEC_CLUSTER:
        return cluster_setting(c, name, val) < 0 ? -1 : 0;
    }
    return -1;
}

/* How a parse gets the config files' text. */
enum config_source {
    CONFIG_READ,         /* read the files: the start */
    CONFIG_READ_REGULAR, /* read them again, refusing all but regular files: a reload */
    CONFIG_SAME_TEXT,    /* the text an earlier parse read (no file is read) */
};

/* Config file number idx of o->config_files: read (kept in o) or taken
 * from same, then parsed. */
static int load_config(struct daemon_options *o, unsigned idx, enum config_source src,
                       const struct daemon_options *same)
{
    const char *file = o->config_files[idx];
    struct ini_ctx c = {.o = o, .file = file};
    unsigned err_line = 0;
    char why[256] = "";
    unsigned first_vol = o->nvolumes;
    o->at_file = NULL;
    o->at_line = 0;
    const char *text;
    size_t len;
    int r = 0;
    if (src == CONFIG_SAME_TEXT) {
        if (idx >= same->nconfig_files || !same->config_text[idx])
            return fail(o, "config file '%s': the text read at start is not kept", file);
        text = same->config_text[idx];
        len = same->config_len[idx];
    } else {
        char *buf = NULL;
        bool regular;
        r = ini_read_file(file, src == CONFIG_READ_REGULAR, &buf, &len, &regular, why, sizeof why);
        if (r < 0 && src == CONFIG_READ_REGULAR && r == -EINVAL && !regular && why[0])
            return fail(o,
                        "config file '%s' is %s: it cannot be read again (a pipe is empty the "
                        "second time); the running configuration is kept (restart shoald to "
                        "change it, or give -c a regular file)",
                        file, why);
        if (r < 0)
            return fail(o, "cannot read config file '%s': %s", file, why[0] ? why : strerror(-r));
        if (own_ptr(o, buf) < 0)
            return fail(o, "out of memory");
        text = buf;
        o->config_text[idx] = buf;
        o->config_len[idx] = len;
    }
    o->at_file = file;
    r = ini_parse_buffer(text, len, config_entry, &c, &err_line, why, sizeof why);
    ctx_free(&c);
    if (r == 1)
        return -1; /* a setting was refused: fail() said why */
    if (r < 0) {
        o->at_file = NULL;
        if (err_line)
            return fail(o, "%s:%u: %s", file, err_line, why);
        return fail(o, "cannot read config file '%s': %s", file, why[0] ? why : strerror(-r));
    }
    for (unsigned i = first_vol; i < o->nvolumes; i++) {
        if (!o->volumes[i].backend.spec) {
            o->at_line = o->volume_line[i];
            return fail(o, "[volume %s] has no backing", o->volumes[i].name);
        }
    }
    o->at_file = NULL;
    o->nfile_volumes = o->nvolumes;
    return 0;
}

/* Every default, before any source is read; the parser's own state too,
 * except where errors go. 0 or -1 (message printed). */
static int set_defaults(struct daemon_options *o)
{
    char *error = o->error;
    size_t error_len = o->error_len;
    memset(o, 0, sizeof *o);
    o->error = error;
    o->error_len = error_len;
    o->cache_bytes = DEFAULT_CACHE;
    o->io_memory = DEFAULT_IO_MEMORY;
    o->http = DEFAULT_HTTP;
    o->threads = DEFAULT_THREADS;
    o->busy_poll_us = BUSY_POLL_DEFAULT_US;
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        const struct frontend_ops *ops = daemon_frontends[fe];
        o->frontend_opts[fe] = calloc(1, ops->opts_size);
        if (!o->frontend_opts[fe])
            return fail(o, "out of memory");
        if (ops->opts_init)
            ops->opts_init(o->frontend_opts[fe]);
    }
    return 0;
}

/* NAME=BACKING[,format=raw|auto] from the command line. argv is left as
 * given (ps and /proc/PID/cmdline show it): the name and a spec with its
 * format cut off are copies. 0 or -1 (message printed). */
static int cli_volume(struct daemon_options *o, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return bad(o, "volume", arg, "want NAME=BACKING");
    char name[VOLUME_NAME_MAX + 1];
    size_t nlen = (size_t)(eq - arg);
    if (nlen > VOLUME_NAME_MAX) {
        char what[64];
        snprintf(what, sizeof what, "a volume name is at most %d bytes", VOLUME_NAME_MAX);
        return bad(o, "volume", arg, what);
    }
    memcpy(name, arg, nlen);
    name[nlen] = '\0';
    const char *kept = own(o, name);
    if (!kept)
        return fail(o, "out of memory");
    struct volume_config *v = new_volume(o, kept);
    if (!v)
        return -1;
    v->backend.spec = eq + 1;
    /* The one per-volume key the command line takes, so an image refused
     * as qcow2 & co. can still be served as bytes without a config file.
     * Only a trailing ",format=" is taken off; any other comma stays in
     * the path. */
    const char *fmt = strrchr(eq + 1, ',');
    if (fmt && !strncmp(fmt, ",format=", 8)) {
        if (backend_format_parse(fmt + 8, &v->backend.format) < 0)
            return bad(o, "format", fmt + 8, "want auto or raw");
        if (fmt == eq + 1)
            return bad(o, "volume", arg, "want NAME=BACKING");
        char *spec = strndup(eq + 1, (size_t)(fmt - (eq + 1)));
        v->backend.spec = spec ? own(o, spec) : NULL;
        free(spec);
        if (!v->backend.spec)
            return fail(o, "out of memory");
    }
    return 0;
}

/* Pass 2 over the command line: everything but --config. Our own
 * messages, one line each. 0, 1 (--help, --version) or -1. */
static int parse_command_line(int argc, char **argv, struct daemon_options *o, bool quiet)
{
    unsigned file_backing_dirs = o->nbacking_dirs;
    bool cli_backing = false;
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            if (!quiet)
                usage(stdout);
            return 1;
        case 'V':
            if (!quiet)
                printf("shoald %s\n", SHOAL_VERSION);
            return 1;
        case 'c':
            break;
        case 'f':
            o->foreground = true;
            break;
        case 'v':
            o->verbosity++;
            break;
        case '?': {
            /* optopt is set for an unknown short option, and for a long
             * option that takes no value but was given one ("--direct=x"). */
            const char *arg = argv[optind - 1], *eq = strchr(arg, '=');
            if (optopt && strncmp(arg, "--", 2) == 0 && eq)
                return fail(o, "option '%.*s' takes no value (try 'shoald --help')",
                            (int)(eq - arg), arg);
            if (optopt)
                return fail(o, "unknown option '-%c' (try 'shoald --help')", optopt);
            return fail(o, "unknown option '%s' (try 'shoald --help')", arg);
        }
        case ':':
            return fail(o, "option '%s' needs a value (try 'shoald --help')", argv[optind - 1]);
        case OPT_BACKING_DIR:
            /* Like listeners: the command line's list replaces the file's. */
            if (!cli_backing) {
                o->nbacking_dirs -= file_backing_dirs;
                memmove(o->backing_dirs, o->backing_dirs + file_backing_dirs,
                        (o->nbacking_dirs + 1) * sizeof o->backing_dirs[0]);
                cli_backing = true;
            }
            if (set_option(o, c, optarg, false) < 0)
                return -1;
            break;
        default:
            if (set_from_cli(o, c, optarg) < 0)
                return -1;
            break;
        }
    }
    for (int i = optind; i < argc; i++)
        if (cli_volume(o, argv[i]) < 0)
            return -1;
    return 0;
}

/* --user and --group to ids. 0 or -1 (message printed). */
static int resolve_user(struct daemon_options *o)
{
    o->uid = (uid_t)-1;
    o->gid = (gid_t)-1;
    o->at_file = o->group_at.file;
    o->at_line = o->group_at.line;
    if (o->group && !o->user)
        return fail(o, "--group needs --user");
    if (!o->user)
        return 0;
    o->at_file = o->user_at.file;
    o->at_line = o->user_at.line;
    int r = ids_lookup_user(o->user, &o->uid, &o->gid);
    if (r < 0)
        return bad(o, "--user", o->user, r == -ENOENT ? "no such user" : strerror(-r));
    if (o->group) {
        o->at_file = o->group_at.file;
        o->at_line = o->group_at.line;
        r = ids_lookup_group(o->group, &o->gid);
        if (r < 0)
            return bad(o, "--group", o->group, r == -ENOENT ? "no such group" : strerror(-r));
        o->at_file = o->user_at.file;
        o->at_line = o->user_at.line;
    }
    if (o->gid == (gid_t)-1)
        return bad(o, "--user", o->user, "a user id without a passwd entry needs --group");
    if (o->uid == 0)
        return bad(o, "--user", o->user, "is root: nothing to drop");
    /* Found now rather than after every socket and volume is open. */
    if (geteuid() != 0 && geteuid() != o->uid)
        return fail(o, "--user %s needs shoald to start as root (it runs as uid %u)", o->user,
                    (unsigned)geteuid());
    o->at_file = NULL;
    return 0;
}

struct opt_at options_fe_where(const struct daemon_options *o, unsigned fe, const char *name)
{
    const struct frontend_option *opts = daemon_frontends[fe]->options;
    for (unsigned i = 0; name && opts[i].name && i < FE_MAX_OPTS; i++)
        if (!strcmp(opts[i].name, name))
            return o->fe_at[fe][i];
    return (struct opt_at){NULL, 0};
}

char *options_path(const struct daemon_options *o, const char *path)
{
    char *abs = NULL;
    if (path[0] == '/' || !o->start_dir)
        return strdup(path);
    return asprintf(&abs, "%s/%s", o->start_dir, path) < 0 ? NULL : abs;
}

/* After both sources: daemon-wide settings reach every volume, and each
 * front end completes and checks its own. 0 or -1 (message printed). */
static int finish(struct daemon_options *o)
{
    /* A cache larger than the machine would start (its RAM is reserved as
     * address space only) and then be killed by the OOM killer once full:
     * refuse it now, with the figures. */
    uint64_t phys = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    if (phys && o->cache_bytes > phys) {
        char want[32], have[32];
        o->at_file = o->cache_at.file;
        o->at_line = o->cache_at.line;
        return fail(o, "cache size %s is more than this machine's RAM (%s)",
                    format_size(o->cache_bytes, want, sizeof want),
                    format_size(phys, have, sizeof have));
    }
    if (resolve_user(o) < 0)
        return -1;
    char why[300];
    if (etcd_tls_check(o->etcd ? o->etcd : "", &o->etcd_tls, why, sizeof why) < 0) {
        o->at_file = o->etcd_tls_at.file;
        o->at_line = o->etcd_tls_at.line;
        return fail(o, "%s", why);
    }
    o->at_file = NULL;
    for (unsigned i = 0; i < o->nvolumes; i++) {
        if (o->readonly)
            o->volumes[i].readonly = true;
        if (o->direct)
            o->volumes[i].backend.direct = true;
        if (o->readahead && !o->volumes[i].readahead)
            o->volumes[i].readahead = o->readahead;
        o->volumes[i].backend.backing_dirs = o->nbacking_dirs ? o->backing_dirs : NULL;
    }
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        const struct frontend_ops *ops = daemon_frontends[fe];
        char err[320] = "";
        const char *about = NULL;
        if (ops->opts_check && ops->opts_check(o->frontend_opts[fe], err, sizeof err, &about) < 0) {
            /* Named with the line of the file that set the option (none
             * when the command line did, or nobody). */
            struct opt_at at = options_fe_where(o, fe, about);
            o->at_file = at.file;
            o->at_line = at.line;
            return fail(o, "%s", err[0] ? err : "invalid front end settings");
        }
    }
    return 0;
}

/* -c FILE made absolute now, while the directory is the one it was given
 * in: a reload reads it again after the daemon's chdir("/"). */
static int add_config_file(struct daemon_options *o, const char *file)
{
    if (o->nconfig_files == MAX_CONFIGS)
        return bad(o, "--config", file, "more than 4 config files");
    if (!file[0])
        return bad(o, "--config", file, "empty path");
    char *abs = options_path(o, file);
    const char *kept = abs ? own(o, abs) : NULL;
    free(abs);
    if (!kept)
        return fail(o, "out of memory");
    o->config_files[o->nconfig_files++] = kept;
    return 0;
}

/* Both sources into o. configs NULL: take the -c files from argv; else read
 * these (a reload). 0, 1 (--help, --version) or -1 (message given). */
static int parse_all(int argc, char **argv, struct daemon_options *o, const char *const *configs,
                     unsigned nconfigs, const char *start_dir, bool quiet, enum config_source src,
                     const struct daemon_options *same)
{
    if (set_defaults(o) < 0)
        return -1;
    build_getopt_tables();
    if (start_dir) {
        o->start_dir = own(o, start_dir);
    } else {
        char cwd[4096];
        if (getcwd(cwd, sizeof cwd))
            o->start_dir = own(o, cwd);
    }

    /* Pass 1: the config files, so the command line can override them. */
    if (configs) {
        for (unsigned i = 0; i < nconfigs; i++)
            if (add_config_file(o, configs[i]) < 0)
                return -1;
    } else {
        opterr = 0;
        optind = 0;
        int c;
        while ((c = getopt_long(argc, argv, shortopts, long_opts, NULL)) != -1)
            if (c == 'c' && add_config_file(o, optarg) < 0)
                return -1;
    }
    for (unsigned i = 0; i < o->nconfig_files; i++)
        if (load_config(o, i, src, same) < 0)
            return -1;
    int r = parse_command_line(argc, argv, o, quiet);
    if (r != 0)
        return r;
    return finish(o);
}

int options_parse(int argc, char **argv, struct daemon_options *o)
{
    o->error = NULL;
    return parse_all(argc, argv, o, NULL, 0, NULL, false, CONFIG_READ, NULL);
}

static int reparse(int argc, char **argv, const struct daemon_options *running,
                   struct daemon_options *out, char *err, size_t errlen, enum config_source src)
{
    out->error = err;
    out->error_len = errlen;
    err[0] = '\0';
    int r = parse_all(argc, argv, out, running->config_files, running->nconfig_files,
                      running->start_dir, true, src, running);
    out->error = NULL;
    if (r > 0) {
        snprintf(err, errlen, "--help or --version on the command line");
        return -1;
    }
    return r < 0 ? -1 : 0;
}

int options_reparse(int argc, char **argv, const struct daemon_options *running,
                    struct daemon_options *out, char *err, size_t errlen)
{
    return reparse(argc, argv, running, out, err, errlen, CONFIG_READ_REGULAR);
}

int options_reparse_same(int argc, char **argv, const struct daemon_options *running,
                         struct daemon_options *out, char *err, size_t errlen)
{
    return reparse(argc, argv, running, out, err, errlen, CONFIG_SAME_TEXT);
}

void options_apply_logging(const struct daemon_options *o)
{
    log_set_all(LOG_LVL_INFO);
    for (unsigned i = 0; i < o->ndebug_specs; i++)
        log_set_spec(o->debug_specs[i]);
    if (o->verbosity > 0)
        for (int i = 0; i < LOG_C__COUNT; i++)
            if (log_level((enum log_component)i) < LOG_LVL_INFO + o->verbosity)
                log_set_level((enum log_component)i,
                              MIN(LOG_LVL_DEBUG, LOG_LVL_INFO + o->verbosity));
}

int options_resolve_spec(const struct daemon_options *o, const char *spec, char **out)
{
    *out = NULL;
    if (strstr(spec, "://") != NULL || strncmp(spec, "fault:", 6) == 0) {
        *out = strdup(spec);
        return *out ? 0 : -ENOMEM;
    }
    char *abs = options_path(o, spec);
    if (!abs)
        return -ENOMEM;
    if (o->nbacking_dirs) {
        /* Spelled as given: the file back end checks the spelling against
         * --backing-dir and lets the kernel resolve it beneath the
         * directory (realpath here would follow the symlinks the rule
         * refuses). */
        *out = abs;
        return 0;
    }
    char *real = realpath(abs, NULL);
    int e = errno;
    free(abs);
    if (!real || access(real, R_OK) != 0) {
        e = real ? errno : e;
        free(real);
        return -e;
    }
    *out = real;
    return 0;
}
