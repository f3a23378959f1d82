/* shoald command line and config file; see options.h. */
#include "daemon/options.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/ids.h"
#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/evict.h"
#include "frontend/netaddr.h"
#include "mgmt/mgmt.h"

#define DEFAULT_HTTP      "127.0.0.1:10810"
#define DEFAULT_CACHE     (1ull << 30)
#define DEFAULT_IO_MEMORY (512ull << 20)
#define DEFAULT_THREADS   32

const struct frontend_ops *const daemon_frontends[] = {
    &frontend_nbd_ops,
};
const unsigned daemon_nfrontends = ARRAY_SIZE(daemon_frontends);
_Static_assert(ARRAY_SIZE(daemon_frontends) <= MAX_FRONTENDS, "raise MAX_FRONTENDS");

/* getopt values of front-end options: FE_VAL_BASE + front end * 256 + index
 * in its table (daemon options use characters and small enum values). */
#define FE_VAL_BASE    0x10000
#define FE_MAX_OPTS    256
#define FE_VAL(fe, i)  (FE_VAL_BASE + (int)(fe)*FE_MAX_OPTS + (int)(i))
#define LONG_OPTS_MAX  128
#define SHORT_OPTS_MAX 64

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
    for (unsigned i = 0; i < MAX_FRONTENDS; i++) {
        free(opts->frontend_opts[i]);
        opts->frontend_opts[i] = NULL;
    }
    for (unsigned i = 0; i < nowned; i++)
        free(owned[i]);
    free(owned);
    owned = NULL;
    nowned = 0;
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
    fprintf(f,
            "Usage: shoald [options] NAME=BACKING[,format=raw] [NAME=BACKING ...]\n"
            "\n"
            "A deduplicating, write-through RAM read cache for virtual disks, served over NBD.\n"
            "BACKING is a file or block device path, nbd://host[:port]/export or\n"
            "nbd+unix:///export?socket=PATH. A file holds a raw image: one that starts with\n"
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
            "  -c, --config FILE                 INI file: [shoald] settings, [volume NAME]\n"
            "  -r, --readonly                    export every volume read-only\n"
            "  -f, --foreground                  do not daemonize; log to stderr\n"
            "  -v, --verbose                     more logging (repeat for debug)\n"
            "  -D, --debug COMPONENT=LEVEL       per-component log level (error|warn|info|debug)\n"
            "      --policy s3fifo|lru           eviction policy (default s3fifo)\n"
            "      --threads N                   worker threads for back end I/O, shared by\n"
            "                                    every front end (default %d)\n"
            "      --io-memory SIZE              cap on request buffers (default 512M)\n"
            "      --direct                      open file back ends with O_DIRECT\n"
            "      --readahead SIZE|off          on a read miss, also fetch the uncached\n"
            "                                    blocks of its aligned SIZE window (default\n"
            "                                    64K for NBD back ends, off for files)\n"
            "      --pid-file FILE               write the daemon's pid\n"
            "      --user USER                   run as USER once listeners, volumes, pid and\n"
            "                                    token files are open (volumes added later\n"
            "                                    are opened as USER)\n"
            "      --group GROUP                 with --user: run with this group instead of\n"
            "                                    USER's primary group\n"
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
    OPT_DIRECT,
    OPT_PID_FILE,
    OPT_READAHEAD,
    OPT_HTTP_TLS_CERTS,
    OPT_BACKING_DIR,
    OPT_USER,
    OPT_GROUP,
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
    {"direct", no_argument, NULL, OPT_DIRECT},
    {"readahead", required_argument, NULL, OPT_READAHEAD},
    {"pid-file", required_argument, NULL, OPT_PID_FILE},
    {"user", required_argument, NULL, OPT_USER},
    {"group", required_argument, NULL, OPT_GROUP},
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

/* A switch: given on the command line, true or false in a file. */
static int set_flag(bool *field, const char *what, const char *val, bool from_file)
{
    if (!from_file) {
        *field = true;
        return 0;
    }
    if (parse_bool(val, field) < 0)
        return bad(what, val, "want true or false");
    return 0;
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
        return set_flag(&o->readonly, "readonly", val, from_file);
    case OPT_DIRECT:
        return set_flag(&o->direct, "direct", val, from_file);
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
    case OPT_PID_FILE:
        o->pid_file = val;
        return 0;
    case OPT_USER:
        o->user = val;
        return 0;
    case OPT_GROUP:
        o->group = val;
        return 0;
    case 'D':
        if (log_set_spec(val) < 0)
            return bad("debug setting", val, "want COMPONENT=LEVEL, e.g. nbd=debug");
        return 0;
    default:
        return -1;
    }
}

/* ---- front-end options (frontend/frontend.h) ---- */

/* Whether the command line already dropped a FE_OPT_LISTEN option's values
 * from the config file (its own replace them). */
static bool cli_replaced[MAX_FRONTENDS][FE_MAX_OPTS];

/* Option i of front end fe, from either source. Returns 0 or -1 (message
 * printed). */
static int set_frontend_option(struct daemon_options *o, unsigned fe, unsigned i, const char *val,
                               bool from_file)
{
    const struct frontend_option *opt = &daemon_frontends[fe]->options[i];
    void *field = (char *)o->frontend_opts[fe] + opt->offset;
    const char *what = opt->what ? opt->what : opt->name;
    struct frontend_list *list = field;
    switch (opt->kind) {
    case FE_OPT_STRING:
    case FE_OPT_PATH:
        *(const char **)field = val;
        return 0;
    case FE_OPT_FLAG:
        return set_flag(field, what, val, from_file);
    case FE_OPT_UINT:
        if (parse_uint(val, opt->min, opt->max, field) < 0)
            return bad(what, val, opt->want);
        return 0;
    case FE_OPT_DURATION: {
        uint64_t ms;
        if (parse_duration_ms(val, &ms) < 0 || ms == 0)
            return bad(what, val, opt->want);
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
        return bad(what, val, opt->want);
    case FE_OPT_LISTEN: {
        if (!from_file && !cli_replaced[fe][i]) {
            list->n = 0;
            cli_replaced[fe][i] = true;
        }
        /* Resolved now, so a bad host is reported before anything starts. */
        const char *why = netaddr_check_listen(val, opt->port);
        if (why)
            return bad(what, val, why);
        if (list->n == MIN(opt->max, FRONTEND_LIST_MAX))
            return bad(what, val, "too many listeners");
        list->v[list->n++] = val;
        return 0;
    }
    case FE_OPT_LIST:
        if (list->n == MIN(opt->max, FRONTEND_LIST_MAX))
            return bad(what, val, "too many entries");
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

struct ini_ctx {
    struct daemon_options *o;
    const char *file;
    int failed;
};

/* A key of [shoald] (or [global], or before any section): the daemon's
 * options and every front end's, by their command-line names. */
static int main_setting(struct ini_ctx *c, const char *section, const char *name, const char *val)
{
    int key = key_of_name(name);
    unsigned fe, i;
    if (!key && find_frontend_option(-1, name, &fe, &i))
        return set_frontend_option(c->o, fe, i, val, true);
    if (!key || key == 'c' || key == 'h' || key == 'V' || key == 'f' || key == 'v') {
        fprintf(stderr, "shoald: %s: unknown setting '%s' in [%s]\n", c->file, name,
                section[0] ? section : "shoald");
        return -1;
    }
    return set_option(c->o, key, val, true);
}

/* A key of a front end's own section ([nbd]). */
static int frontend_setting(struct ini_ctx *c, unsigned fe_section, const char *name,
                            const char *val)
{
    unsigned fe, i;
    if (!find_frontend_option((int)fe_section, name, &fe, &i)) {
        fprintf(stderr, "shoald: %s: unknown setting '%s' in [%s]\n", c->file, name,
                daemon_frontends[fe_section]->section);
        return -1;
    }
    return set_frontend_option(c->o, fe, i, val, true);
}

/* A key of [volume NAME]. */
static int volume_setting(struct ini_ctx *c, const char *vname, const char *name, const char *val)
{
    struct daemon_options *o = c->o;
    struct volume_config *v = find_volume(o, vname);
    if (!v) {
        v = new_volume(o, own(vname));
        if (!v)
            return -1;
    }
    bool b;
    if (!strcmp(name, "backing") || !strcmp(name, "path") || !strcmp(name, "uri")) {
        v->backend.spec = val;
    } else if (!strcmp(name, "readonly") || !strcmp(name, "read-only")) {
        if (parse_bool(val, &b) < 0)
            return bad("readonly", val, "want true or false");
        v->readonly = b;
    } else if (!strcmp(name, "enabled") || !strcmp(name, "accelerate")) {
        if (parse_bool(val, &b) < 0)
            return bad(name, val, "want true or false");
        v->disabled = !b;
    } else if (!strcmp(name, "direct")) {
        if (parse_bool(val, &b) < 0)
            return bad("direct", val, "want true or false");
        v->backend.direct = b;
    } else if (!strcmp(name, "readahead")) {
        if (parse_readahead(val, &v->readahead) < 0)
            return bad("readahead", val, "want off or a size from 4K to 256K");
    } else if (!strcmp(name, "format")) {
        if (backend_format_parse(val, &v->backend.format) < 0)
            return bad("format", val, "want auto or raw");
    } else if (!strcmp(name, "connections")) {
        if (parse_uint(val, 1, 64, &v->backend.conns) < 0)
            return bad("connections", val, "want 1..64");
    } else {
        fprintf(stderr, "shoald: %s: unknown setting '%s' in [volume %s]\n", c->file, name, vname);
        return -1;
    }
    return 0;
}

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *c = user;
    if (c->failed)
        return 0;
    const char *val = own(value);
    if (!val)
        return 0;
    int r;
    if (!strcmp(section, "") || !strcmp(section, "shoald") || !strcmp(section, "global")) {
        r = main_setting(c, section, name, val);
    } else if (!strncmp(section, "volume ", 7)) {
        const char *vname = section + 7;
        while (*vname == ' ')
            vname++;
        r = volume_setting(c, vname, name, val);
    } else {
        r = -1;
        unsigned fe = 0;
        while (fe < daemon_nfrontends && strcmp(section, daemon_frontends[fe]->section) != 0)
            fe++;
        if (fe < daemon_nfrontends)
            r = frontend_setting(c, fe, name, val);
        else
            fprintf(stderr, "shoald: %s: unknown section [%s]\n", c->file, section);
    }
    if (r < 0) {
        c->failed = 1;
        return 0;
    }
    return 1;
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

/* Every default, before any source is read. 0 or -1 (message printed). */
static int set_defaults(struct daemon_options *o)
{
    memset(o, 0, sizeof *o);
    o->cache_bytes = DEFAULT_CACHE;
    o->io_memory = DEFAULT_IO_MEMORY;
    o->http = DEFAULT_HTTP;
    o->threads = DEFAULT_THREADS;
    memset(cli_replaced, 0, sizeof cli_replaced);
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        const struct frontend_ops *ops = daemon_frontends[fe];
        o->frontend_opts[fe] = calloc(1, ops->opts_size);
        if (!o->frontend_opts[fe]) {
            fprintf(stderr, "shoald: out of memory\n");
            return -1;
        }
        if (ops->opts_init)
            ops->opts_init(o->frontend_opts[fe]);
    }
    return 0;
}

/* Pass 2 over the command line: everything but --config. Our own
 * messages, one line each. 0, 1 (--help, --version) or -1. */
static int parse_command_line(int argc, char **argv, struct daemon_options *o)
{
    unsigned file_backing_dirs = o->nbacking_dirs;
    bool cli_backing = false;
    opterr = 0;
    optind = 0;
    int c;
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
        case '?': {
            /* optopt is set for an unknown short option, and for a long
             * option that takes no value but was given one ("--direct=x"). */
            const char *arg = argv[optind - 1], *eq = strchr(arg, '=');
            if (optopt && strncmp(arg, "--", 2) == 0 && eq)
                fprintf(stderr, "shoald: option '%.*s' takes no value (try 'shoald --help')\n",
                        (int)(eq - arg), arg);
            else if (optopt)
                fprintf(stderr, "shoald: unknown option '-%c' (try 'shoald --help')\n", optopt);
            else
                fprintf(stderr, "shoald: unknown option '%s' (try 'shoald --help')\n", arg);
            return -1;
        }
        case ':':
            fprintf(stderr, "shoald: option '%s' needs a value (try 'shoald --help')\n",
                    argv[optind - 1]);
            return -1;
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
    for (int i = optind; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i] || !eq[1])
            return bad("volume", argv[i], "want NAME=BACKING");
        *eq = '\0';
        struct volume_config *v = new_volume(o, argv[i]);
        if (!v)
            return -1;
        v->backend.spec = eq + 1;
        /* NAME=BACKING,format=raw|auto: the one per-volume key the command
         * line takes, so an image refused as qcow2 & co. can still be
         * served as bytes without a config file. Only a trailing
         * ",format=" is taken off; any other comma stays in the path. */
        char *fmt = strrchr(eq + 1, ',');
        if (fmt && !strncmp(fmt, ",format=", 8)) {
            if (backend_format_parse(fmt + 8, &v->backend.format) < 0)
                return bad("format", fmt + 8, "want auto or raw");
            *fmt = '\0';
            if (!eq[1])
                return bad("volume", argv[i], "want NAME=BACKING");
        }
    }
    return 0;
}

/* --user and --group to ids. 0 or -1 (message printed). */
static int resolve_user(struct daemon_options *o)
{
    o->uid = (uid_t)-1;
    o->gid = (gid_t)-1;
    if (o->group && !o->user) {
        fprintf(stderr, "shoald: --group needs --user\n");
        return -1;
    }
    if (!o->user)
        return 0;
    int r = ids_lookup_user(o->user, &o->uid, &o->gid);
    if (r < 0)
        return bad("--user", o->user, r == -ENOENT ? "no such user" : strerror(-r));
    if (o->group) {
        r = ids_lookup_group(o->group, &o->gid);
        if (r < 0)
            return bad("--group", o->group, r == -ENOENT ? "no such group" : strerror(-r));
    }
    if (o->gid == (gid_t)-1)
        return bad("--user", o->user, "a user id without a passwd entry needs --group");
    if (o->uid == 0)
        return bad("--user", o->user, "is root: nothing to drop");
    /* Found now rather than after every socket and volume is open. */
    if (geteuid() != 0 && geteuid() != o->uid) {
        fprintf(stderr, "shoald: --user %s needs shoald to start as root (it runs as uid %u)\n",
                o->user, (unsigned)geteuid());
        return -1;
    }
    return 0;
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
        fprintf(stderr, "shoald: cache size %s is more than this machine's RAM (%s)\n",
                format_size(o->cache_bytes, want, sizeof want),
                format_size(phys, have, sizeof have));
        return -1;
    }
    if (resolve_user(o) < 0)
        return -1;
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
        if (ops->opts_check && ops->opts_check(o->frontend_opts[fe], err, sizeof err) < 0) {
            fprintf(stderr, "shoald: %s\n", err[0] ? err : "invalid front end settings");
            return -1;
        }
    }
    return 0;
}

int options_parse(int argc, char **argv, struct daemon_options *o)
{
    if (set_defaults(o) < 0)
        return -1;
    build_getopt_tables();

    /* Pass 1: the config file, so the command line can override it. */
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, long_opts, NULL)) != -1) {
        if (c == 'c' && load_config(o, optarg) < 0)
            return -1;
    }
    int r = parse_command_line(argc, argv, o);
    if (r != 0)
        return r;
    return finish(o);
}
