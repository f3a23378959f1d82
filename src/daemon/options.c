/* shoald command line and config file; see options.h. */
#include "daemon/options.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/evict.h"
#include "frontend/nbd/server.h"
#include "mgmt/mgmt.h"

#define DEFAULT_LISTEN    "127.0.0.1:10809"
#define DEFAULT_HTTP      "127.0.0.1:10810"
#define DEFAULT_CACHE     (1ull << 30)
#define DEFAULT_IO_MEMORY (512ull << 20)

/* Strings duplicated from the config file, freed by options_free. */
static char **owned;
static unsigned nowned;

static const char *own(const char *s)
{
    char **n = realloc(owned, (nowned + 1) * sizeof *n);
    if (!n)
        return NULL;
    owned = n;
    owned[nowned] = strdup(s);
    return owned[nowned++];
}

void options_free(struct daemon_options *opts)
{
    (void)opts;
    for (unsigned i = 0; i < nowned; i++)
        free(owned[i]);
    free(owned);
    owned = NULL;
    nowned = 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: shoald [options] NAME=BACKING [NAME=BACKING ...]\n"
            "\n"
            "A deduplicating, write-through RAM read cache for virtual disks, served over NBD.\n"
            "BACKING is a file or block device path, nbd://host[:port]/export or\n"
            "nbd+unix:///export?socket=PATH.\n"
            "\n"
            "  -l, --listen ADDR:PORT|unix:PATH  NBD listener (default %s; repeatable)\n"
            "      --http ADDR:PORT|off          management API (default %s)\n"
            "      --http-token-file FILE        the API's bearer token, created (random, mode\n"
            "                                    0600) if missing; default /run/shoal/api-token\n"
            "                                    as root, else $XDG_RUNTIME_DIR/shoal/api-token\n"
            "      --http-tls-certificates DIR   serve the API over HTTPS: DIR/server-cert.pem,\n"
            "                                    server-key.pem\n"
            "      --backing-dir DIR             file, device and nbd+unix socket back ends must\n"
            "                                    lie beneath DIR (repeatable; default: anywhere)\n"
            "  -m, --cache-size SIZE             RAM for cached content, K/M/G (default 1G)\n"
            "  -c, --config FILE                 INI file: [shoald] settings, [volume NAME]\n"
            "  -r, --readonly                    export every volume read-only\n"
            "  -f, --foreground                  do not daemonize; log to stderr\n"
            "  -v, --verbose                     more logging (repeat for debug)\n"
            "  -D, --debug COMPONENT=LEVEL       per-component log level (error|warn|info|debug)\n"
            "      --policy s3fifo|lru           eviction policy (default s3fifo)\n"
            "      --threads N                   worker threads for back end I/O (default 32)\n"
            "      --max-connections N           NBD client limit (default 1024)\n"
            "      --handshake-timeout DURATION  drop clients that do not finish the\n"
            "                                    handshake in time (default 10s)\n"
            "      --io-memory SIZE              cap on request buffers (default 512M)\n"
            "      --direct                      open file back ends with O_DIRECT\n"
            "      --readahead SIZE|off          on a read miss, also fetch the uncached\n"
            "                                    blocks of its aligned SIZE window (default\n"
            "                                    64K for NBD back ends, off for files)\n"
            "      --pid-file FILE               write the daemon's pid\n"
            "      --tls off|on|require          NBD over TLS (STARTTLS): off (default),\n"
            "                                    offered, or required of every client\n"
            "      --tls-certificates DIR        x509: DIR/server-cert.pem, server-key.pem\n"
            "                                    (+ ca-cert.pem, ca-crl.pem)\n"
            "      --tls-psk FILE                PSK: username:hexkey lines (psktool)\n"
            "      --tls-verify-peer             x509: require client certificates signed\n"
            "                                    by DIR/ca-cert.pem\n"
            "      --allow ADDR[/PREFIX]|unix    accept NBD clients only from these\n"
            "                                    addresses (repeatable; default: all)\n"
            "  -h, --help                        this help\n"
            "  -V, --version                     print the version\n",
            DEFAULT_LISTEN, DEFAULT_HTTP);
}

enum {
    OPT_HTTP = 256,
    OPT_HTTP_TOKEN,
    OPT_POLICY,
    OPT_THREADS,
    OPT_MAXCONN,
    OPT_HS_TIMEOUT,
    OPT_IO_MEMORY,
    OPT_DIRECT,
    OPT_PID_FILE,
    OPT_TLS,
    OPT_TLS_CERTS,
    OPT_TLS_PSK,
    OPT_TLS_VERIFY_PEER,
    OPT_ALLOW,
    OPT_READAHEAD,
    OPT_HTTP_TLS_CERTS,
    OPT_BACKING_DIR,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, 'l'},
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
    {"max-connections", required_argument, NULL, OPT_MAXCONN},
    {"handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT},
    {"io-memory", required_argument, NULL, OPT_IO_MEMORY},
    {"direct", no_argument, NULL, OPT_DIRECT},
    {"readahead", required_argument, NULL, OPT_READAHEAD},
    {"pid-file", required_argument, NULL, OPT_PID_FILE},
    {"tls", required_argument, NULL, OPT_TLS},
    {"tls-certificates", required_argument, NULL, OPT_TLS_CERTS},
    {"tls-psk", required_argument, NULL, OPT_TLS_PSK},
    {"tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY_PEER},
    {"allow", required_argument, NULL, OPT_ALLOW},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int bad(const char *what, const char *value, const char *why)
{
    fprintf(stderr, "shoald: invalid %s '%s'%s%s\n", what, value, why ? ": " : "", why ? why : "");
    return -1;
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
        bad("volume name", name,
            "use 1-255 characters from A-Z a-z 0-9 . _ - (not starting with .)");
        return NULL;
    }
    if (find_volume(o, name)) {
        bad("volume name", name, "defined twice");
        return NULL;
    }
    if (o->nvolumes == MAX_VOLUMES) {
        bad("volume", name, "too many volumes");
        return NULL;
    }
    struct volume_config *v = &o->volumes[o->nvolumes++];
    memset(v, 0, sizeof *v);
    v->name = name;
    return v;
}

/* One setting, from either source. Returns 0 or -1 (message printed). */
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
        return bad("--backing-dir", val, "too many directories");
    if (!val[0])
        return bad("--backing-dir", val, "empty path");
    char *real = realpath(val, NULL);
    if (!real)
        return bad("--backing-dir", val, strerror(errno));
    struct stat st;
    int r = stat(real, &st);
    if (r < 0 || !S_ISDIR(st.st_mode)) {
        free(real);
        return bad("--backing-dir", val, "not a directory");
    }
    const char *kept = own(real);
    free(real);
    if (!kept)
        return bad("--backing-dir", val, "out of memory");
    o->backing_dirs[o->nbacking_dirs++] = kept;
    o->backing_dirs[o->nbacking_dirs] = NULL;
    return 0;
}

static int set_option(struct daemon_options *o, int key, const char *val, bool from_file)
{
    uint64_t u64;
    switch (key) {
    case 'l':
        /* nbd_parse_hostport reads "" as the default port on every address:
         * an empty value (an unset variable in a template) must not do that. */
        if (!val[0])
            return bad("listen address", val, "want ADDR:PORT, [IPv6]:PORT or unix:PATH");
        if (strncmp(val, "unix:", 5) != 0) {
            char h[256], p[16];
            if (nbd_parse_hostport(val, h, sizeof h, p, sizeof p) < 0)
                return bad("listen address", val, "want ADDR:PORT, [IPv6]:PORT or unix:PATH");
            /* Resolve now, so a bad host is reported before anything starts. */
            struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                     .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
            struct addrinfo *res = NULL;
            int g = getaddrinfo(h[0] ? h : NULL, p, &hints, &res);
            if (g != 0)
                return bad("listen address", val, gai_strerror(g));
            freeaddrinfo(res);
        } else if (!val[5]) {
            return bad("listen address", val, "empty unix socket path");
        }
        if (o->nlisten == MAX_LISTEN)
            return bad("listen address", val, "too many listeners");
        o->listen[o->nlisten++] = val;
        return 0;
    case OPT_HTTP:
        if (strcmp(val, "off") != 0) {
            char h[256];
            unsigned port;
            if (mgmt_parse_listen(val, h, sizeof h, &port) < 0)
                return bad("--http address", val, "want ADDR:PORT or off");
        }
        o->http = val;
        return 0;
    case OPT_HTTP_TOKEN:
        if (!val[0])
            return bad("--http-token-file", val, "empty path");
        o->http_token_file = val;
        return 0;
    case OPT_HTTP_TLS_CERTS:
        if (!val[0])
            return bad("--http-tls-certificates", val, "empty path");
        o->http_tls_certificates = val;
        return 0;
    case OPT_BACKING_DIR:
        return add_backing_dir(o, val);
    case 'm':
        if (parse_size(val, &u64) < 0 || u64 < 4096)
            return bad("cache size", val, "want a size like 512M or 2G (at least 4K)");
        o->cache_bytes = u64;
        return 0;
    case OPT_IO_MEMORY:
        if (parse_size(val, &u64) < 0 || u64 < (1u << 20))
            return bad("io memory", val, "want a size of at least 1M");
        o->io_memory = u64;
        return 0;
    case 'r':
        if (from_file) {
            if (parse_bool(val, &o->readonly) < 0)
                return bad("readonly", val, "want true or false");
        } else {
            o->readonly = true;
        }
        return 0;
    case OPT_DIRECT:
        if (from_file) {
            if (parse_bool(val, &o->direct) < 0)
                return bad("direct", val, "want true or false");
        } else {
            o->direct = true;
        }
        return 0;
    case OPT_POLICY:
        if (!evict_find(val))
            return bad("eviction policy", val, "want s3fifo or lru");
        o->policy = val;
        return 0;
    case OPT_READAHEAD:
        if (parse_readahead(val, &o->readahead) < 0)
            return bad("readahead", val, "want off or a size from 4K to 256K");
        return 0;
    case OPT_THREADS:
        if (parse_uint(val, 1, 1024, &o->threads) < 0)
            return bad("thread count", val, "want 1..1024");
        return 0;
    case OPT_MAXCONN:
        if (parse_uint(val, 1, 100000, &o->max_connections) < 0)
            return bad("connection limit", val, "want 1..100000");
        return 0;
    case OPT_HS_TIMEOUT:
        if (parse_duration_ms(val, &o->handshake_timeout_ms) < 0 || o->handshake_timeout_ms == 0)
            return bad("handshake timeout", val, "want a duration like 10s or 500ms");
        return 0;
    case OPT_PID_FILE:
        o->pid_file = val;
        return 0;
    case OPT_TLS:
        if (!strcmp(val, "off"))
            o->tls = NBD_TLS_OFF;
        else if (!strcmp(val, "on"))
            o->tls = NBD_TLS_ON;
        else if (!strcmp(val, "require"))
            o->tls = NBD_TLS_REQUIRE;
        else
            return bad("--tls mode", val, "want off, on or require");
        return 0;
    case OPT_TLS_CERTS:
        o->tls_certificates = val;
        return 0;
    case OPT_TLS_PSK:
        o->tls_psk = val;
        return 0;
    case OPT_TLS_VERIFY_PEER:
        if (from_file) {
            if (parse_bool(val, &o->tls_verify_peer) < 0)
                return bad("tls-verify-peer", val, "want true or false");
        } else {
            o->tls_verify_peer = true;
        }
        return 0;
    case OPT_ALLOW:
        if (o->nallow == ARRAY_SIZE(o->allow))
            return bad("--allow", val, "too many entries");
        o->allow[o->nallow++] = val;
        return 0;
    case 'D':
        if (log_set_spec(val) < 0)
            return bad("debug setting", val, "want COMPONENT=LEVEL, e.g. nbd=debug");
        return 0;
    default:
        return -1;
    }
}

/* Map a config key to the option it stands for. */
static int key_of_name(const char *name)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o->val;
    if (!strcmp(name, "cache_size"))
        return 'm';
    return 0;
}

struct ini_ctx {
    struct daemon_options *o;
    const char *file;
    int failed;
};

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *c = user;
    struct daemon_options *o = c->o;
    if (c->failed)
        return 0;
    const char *val = own(value);
    if (!val)
        return 0;
    if (!strcmp(section, "") || !strcmp(section, "shoald") || !strcmp(section, "global")) {
        int key = key_of_name(name);
        if (!key || key == 'c' || key == 'h' || key == 'V' || key == 'f' || key == 'v') {
            fprintf(stderr, "shoald: %s: unknown setting '%s' in [%s]\n", c->file, name,
                    section[0] ? section : "shoald");
            c->failed = 1;
            return 0;
        }
        if (set_option(o, key, val, true) < 0)
            c->failed = 1;
        return 1;
    }
    if (!strncmp(section, "volume ", 7)) {
        const char *vname = section + 7;
        while (*vname == ' ')
            vname++;
        struct volume_config *v = find_volume(o, vname);
        if (!v) {
            v = new_volume(o, own(vname));
            if (!v) {
                c->failed = 1;
                return 0;
            }
        }
        bool b;
        if (!strcmp(name, "backing") || !strcmp(name, "path") || !strcmp(name, "uri")) {
            v->backend.spec = val;
        } else if (!strcmp(name, "readonly") || !strcmp(name, "read-only")) {
            if (parse_bool(val, &b) < 0) {
                bad("readonly", val, "want true or false");
                c->failed = 1;
                return 0;
            }
            v->readonly = b;
        } else if (!strcmp(name, "enabled") || !strcmp(name, "accelerate")) {
            if (parse_bool(val, &b) < 0) {
                bad(name, val, "want true or false");
                c->failed = 1;
                return 0;
            }
            v->disabled = !b;
        } else if (!strcmp(name, "direct")) {
            if (parse_bool(val, &b) < 0) {
                bad("direct", val, "want true or false");
                c->failed = 1;
                return 0;
            }
            v->backend.direct = b;
        } else if (!strcmp(name, "readahead")) {
            if (parse_readahead(val, &v->readahead) < 0) {
                bad("readahead", val, "want off or a size from 4K to 256K");
                c->failed = 1;
                return 0;
            }
        } else if (!strcmp(name, "connections")) {
            if (parse_uint(val, 1, 64, &v->backend.conns) < 0) {
                bad("connections", val, "want 1..64");
                c->failed = 1;
                return 0;
            }
        } else {
            fprintf(stderr, "shoald: %s: unknown setting '%s' in [volume %s]\n", c->file, name,
                    vname);
            c->failed = 1;
            return 0;
        }
        return 1;
    }
    fprintf(stderr, "shoald: %s: unknown section [%s]\n", c->file, section);
    c->failed = 1;
    return 0;
}

static int load_config(struct daemon_options *o, const char *file)
{
    struct ini_ctx c = {.o = o, .file = file};
    int r = ini_parse(file, config_handler, &c);
    if (c.failed)
        return -1;
    if (r < 0) {
        fprintf(stderr, "shoald: cannot read config file '%s': %s\n", file,
                r == -1 ? strerror(errno) : "out of memory");
        return -1;
    }
    if (r > 0) {
        fprintf(stderr, "shoald: %s: syntax error on line %d\n", file, r);
        return -1;
    }
    for (unsigned i = 0; i < o->nvolumes; i++) {
        if (!o->volumes[i].backend.spec || !o->volumes[i].backend.spec[0]) {
            fprintf(stderr, "shoald: %s: [volume %s] has no backing\n", file, o->volumes[i].name);
            return -1;
        }
    }
    return 0;
}

int options_parse(int argc, char **argv, struct daemon_options *o)
{
    memset(o, 0, sizeof *o);
    o->cache_bytes = DEFAULT_CACHE;
    o->io_memory = DEFAULT_IO_MEMORY;
    o->http = DEFAULT_HTTP;
    o->handshake_timeout_ms = 10000;
    const char *shortopts = ":l:m:c:rfvD:hV";

    /* Pass 1: the config file, so the command line can override it. */
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, long_opts, NULL)) != -1) {
        if (c == 'c' && load_config(o, optarg) < 0)
            return -1;
    }
    unsigned file_listeners = o->nlisten;
    unsigned file_backing_dirs = o->nbacking_dirs;

    /* Pass 2: everything else. Our own messages, one line each. */
    opterr = 0;
    optind = 0;
    bool cli_listen = false, cli_backing = false;
    while ((c = getopt_long(argc, argv, shortopts, long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
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
        case '?':
            if (optopt)
                fprintf(stderr, "shoald: unknown option '-%c' (try 'shoald --help')\n", optopt);
            else
                fprintf(stderr, "shoald: unknown option '%s' (try 'shoald --help')\n",
                        argv[optind - 1]);
            return -1;
        case ':':
            fprintf(stderr, "shoald: option '%s' needs a value (try 'shoald --help')\n",
                    argv[optind - 1]);
            return -1;
        case 'l':
            /* Listeners given on the command line replace the file's. */
            if (!cli_listen) {
                o->nlisten -= file_listeners;
                memmove(o->listen, o->listen + file_listeners, o->nlisten * sizeof o->listen[0]);
                cli_listen = true;
            }
            if (set_option(o, c, optarg, false) < 0)
                return -1;
            break;
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
            if (set_option(o, c, optarg, false) < 0)
                return -1;
            break;
        }
    }
    for (int i = optind; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i] || !eq[1])
            return bad("volume", argv[i], "want NAME=BACKING");
        *eq = '\0';
        struct volume_config *v = new_volume(o, argv[i]);
        if (!v)
            return -1;
        v->backend.spec = eq + 1;
    }
    for (unsigned i = 0; i < o->nvolumes; i++) {
        if (o->readonly)
            o->volumes[i].readonly = true;
        if (o->direct)
            o->volumes[i].backend.direct = true;
        if (o->readahead && !o->volumes[i].readahead)
            o->volumes[i].readahead = o->readahead;
        o->volumes[i].backend.backing_dirs = o->nbacking_dirs ? o->backing_dirs : NULL;
    }
    if (o->nlisten == 0)
        o->listen[o->nlisten++] = DEFAULT_LISTEN;
    if (o->tls != NBD_TLS_OFF && !o->tls_certificates && !o->tls_psk) {
        fprintf(stderr, "shoald: --tls=%s needs --tls-certificates DIR or --tls-psk FILE\n",
                o->tls == NBD_TLS_ON ? "on" : "require");
        return -1;
    }
    return 0;
}
