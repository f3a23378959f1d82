/* libFuzzer target for shoald's command line and INI config file
 * (src/daemon/options.c over src/daemon/ini.c: options_parse, then, when
 * it succeeded, options_reparse as a reload does, then options_free; the
 * front ends' option tables, src/frontend/nbd/options.c, come from the
 * library).
 *
 * Input (text, so seeds are readable): one argument per line, then
 * optionally a line "%%" followed by the config file's contents:
 *
 *   -c
 *   @
 *   -m
 *   64M
 *   vm1=/var/lib/vm1.img
 *   %%
 *   [shoald]
 *   listen = unix:/run/shoal.sock
 *
 * argv[0] is "shoald"; every '@' in an argument stands for the config file
 * (a memfd, /proc/self/fd/N), so "-c@", "--config=@" and friends work. At
 * most 64 arguments. A NUL inside a line ends that argument.
 *
 * Side effects neutralised by the harness (linked with --wrap):
 *   - ini_read_file opens only the harness's config file: any other -c
 *     path fails as a missing file would (ENOENT), so inputs cannot read
 *     the user's files;
 *   - getaddrinfo (listen addresses are resolved while parsing) gets
 *     AI_NUMERICHOST, with "localhost" mapped to 127.0.0.1: no DNS;
 *   - -h/--help and -V/--version print to stdout and return 1 (options.c
 *     never exits), and errors are printed on stderr: both streams point
 *     at /dev/null during the call (libFuzzer and the sanitizers write to
 *     fd 2 directly, so their reports still show). Nothing is filtered out;
 *   - -D changes the global log levels: they are reset after each input.
 *
 * After a successful parse the harness checks the result against what
 * options.h and main.c rely on (bounds, the memcached put queue's among
 * them, defaults, one listener at least, valid and unique volume names
 * with a backing, a FILE:LINE for each file volume) and aborts otherwise;
 * a reload's parse of the same input, and one from the text read at start
 * (options_reparse_same, the reloader's baseline), must succeed with the
 * same volumes. */
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cluster/memcached.h"
#include "common/log.h"
#include "core/block.h"
#include "daemon/ini.h"
#include "daemon/options.h"
#include "frontend/nbd/options.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 64

static int cfg_fd = -1;
static char cfg_path[64];
static FILE *devnull;
static bool quiet;
static struct daemon_options opts, again; /* ~500 KiB each: not on the stack */

/* ---- wrapped library calls (see the -Wl,--wrap flags in meson.build) ---- */

int __real_ini_read_file(const char *path, bool regular_only, char **text, size_t *len,
                         bool *regular, char *why, size_t whylen);
int __wrap_ini_read_file(const char *path, bool regular_only, char **text, size_t *len,
                         bool *regular, char *why, size_t whylen);
int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);

int __wrap_ini_read_file(const char *path, bool regular_only, char **text, size_t *len,
                         bool *regular, char *why, size_t whylen)
{
    if (strcmp(path, cfg_path) != 0) {
        *text = NULL;
        *len = 0;
        *regular = false;
        snprintf(why, whylen, "%s", strerror(ENOENT));
        return -ENOENT; /* what the reader returns for a missing file */
    }
    return __real_ini_read_file(path, regular_only, text, len, regular, why, whylen);
}

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    struct addrinfo h = {0};
    if (hints)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    if (node && strcmp(node, "localhost") == 0)
        node = "127.0.0.1";
    return __real_getaddrinfo(node, service, &h, res);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cfg_fd = memfd_create("shoald.ini", MFD_CLOEXEC);
    if (cfg_fd < 0)
        abort();
    snprintf(cfg_path, sizeof cfg_path, "/proc/self/fd/%d", cfg_fd);
    quiet = !getenv("SHOAL_FUZZ_LOG");
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        abort();
    log_set_all(-1);
    return 0;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_config: invariant failed: %s (%s:%d)\n", #cond, __FILE__,        \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const struct nbd_options *nbd_opts(const struct daemon_options *o)
{
    for (unsigned i = 0; i < daemon_nfrontends; i++)
        if (daemon_frontends[i] == &frontend_nbd_ops)
            return o->frontend_opts[i];
    abort();
}

static void check_options(const struct daemon_options *o)
{
    const struct nbd_options *n = nbd_opts(o);
    CHECK(n->listen.n >= 1 && n->listen.n <= NBD_MAX_LISTEN);
    for (unsigned i = 0; i < n->listen.n; i++)
        CHECK(n->listen.v[i] && n->listen.v[i][0]);
    CHECK(o->http && o->http[0]);
    CHECK(o->cache_bytes >= 4096);
    CHECK(o->io_memory >= (1u << 20));
    CHECK(o->threads >= 1 && o->threads <= 1024);
    CHECK(n->max_connections <= 100000);
    CHECK(n->handshake_timeout_ms > 0);
    CHECK(n->tls == NBD_TLS_OFF || n->tls == NBD_TLS_ON || n->tls == NBD_TLS_REQUIRE);
    CHECK(n->tls == NBD_TLS_OFF || n->tls_certificates || n->tls_psk);
    CHECK(n->allow.n <= FRONTEND_LIST_MAX);
    for (unsigned i = 0; i < n->allow.n; i++)
        CHECK(n->allow.v[i]);
    CHECK(o->nvolumes <= MAX_VOLUMES);
    for (unsigned i = 0; i < o->nvolumes; i++) {
        const struct volume_config *v = &o->volumes[i];
        CHECK(volume_name_valid(v->name));
        CHECK(v->backend.spec && v->backend.spec[0]);
        CHECK(v->backend.conns <= 64);
        CHECK(!o->readonly || v->readonly);
        CHECK(!o->direct || v->backend.direct);
        for (unsigned j = 0; j < i; j++)
            CHECK(strcmp(o->volumes[j].name, v->name) != 0);
        CHECK((i < o->nfile_volumes) == (o->volume_file[i] != NULL));
        CHECK(i >= o->nfile_volumes || o->volume_line[i] >= 1);
    }
    CHECK(o->nfile_volumes <= o->nvolumes);
    CHECK(o->nconfig_files <= MAX_CONFIGS);
    /* main.c hands it to tier_memcached_open, which refuses what is out of
     * these bounds (0: its default). */
    CHECK(o->memcached_put_queue_bytes == 0 ||
          (o->memcached_put_queue_bytes >= BLOCK_SIZE &&
           o->memcached_put_queue_bytes <= TIER_MEMCACHED_PUT_QUEUE_MAX));
    /* Touch every string the daemon would use (ASan: nothing freed). */
    size_t sum = 0;
    const char *strs[] = {o->http_token_file, o->policy, o->pid_file, n->tls_certificates,
                          n->tls_psk};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        sum += strs[i] ? strlen(strs[i]) : 0;
    for (unsigned i = 0; i < n->listen.n; i++)
        sum += strlen(n->listen.v[i]);
    for (unsigned i = 0; i < n->allow.n; i++)
        sum += strlen(n->allow.v[i]);
    for (unsigned i = 0; i < o->nvolumes; i++)
        sum += strlen(o->volumes[i].name) + strlen(o->volumes[i].backend.spec);
    (void)sum;
}

/* One argument: the bytes of a line, each '@' replaced by the config path. */
static char *make_arg(const uint8_t *p, size_t n)
{
    size_t ats = 0, len = strnlen((const char *)p, n);
    for (size_t i = 0; i < len; i++)
        ats += p[i] == '@';
    size_t plen = strlen(cfg_path);
    char *a = malloc(len + ats * plen + 1), *w = a;
    if (!a)
        abort();
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '@') {
            memcpy(w, cfg_path, plen);
            w += plen;
        } else {
            *w++ = (char)p[i];
        }
    }
    *w = '\0';
    return a;
}

static const uint8_t *find_sep(const uint8_t *data, size_t size, size_t *argv_len)
{
    if (size >= 3 && memcmp(data, "%%\n", 3) == 0) {
        *argv_len = 0;
        return data + 3;
    }
    for (size_t i = 0; i + 4 <= size; i++) {
        if (memcmp(data + i, "\n%%\n", 4) == 0) {
            *argv_len = i + 1;
            return data + i + 4;
        }
    }
    *argv_len = size;
    return NULL;
}

typedef int (*reparse_fn)(int argc, char **argv, const struct daemon_options *running,
                          struct daemon_options *out, char *err, size_t errlen);

/* reparse() of the input a start took (its result: start) succeeds and
 * yields the same volumes (into the static `again`). */
static void reparse_same_result(reparse_fn reparse, const char *what, int argc, char **argv,
                                const struct daemon_options *start)
{
    char err[1024];
    FILE *out = stdout, *err_stream = stderr;
    stdout = devnull;
    if (quiet)
        stderr = devnull;
    int r = reparse(argc, argv, start, &again, err, sizeof err);
    stdout = out;
    stderr = err_stream;
    if (r != 0)
        fprintf(stderr, "fuzz_config: %s failed: %s\n", what, err);
    CHECK(r == 0);
    check_options(&again);
    CHECK(again.nvolumes == start->nvolumes && again.nfile_volumes == start->nfile_volumes);
    for (unsigned i = 0; i < start->nvolumes; i++)
        CHECK(strcmp(again.volumes[i].name, start->volumes[i].name) == 0);
    options_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t argv_len;
    const uint8_t *ini = find_sep(data, size, &argv_len);
    size_t ini_len = ini ? size - (size_t)(ini - data) : 0;
    if (ftruncate(cfg_fd, 0) < 0 ||
        (ini_len && pwrite(cfg_fd, ini, ini_len, 0) != (ssize_t)ini_len))
        abort();

    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = make_arg((const uint8_t *)"shoald", 6);
    for (size_t i = 0; i < argv_len && argc <= MAX_ARGS;) {
        const uint8_t *nl = memchr(data + i, '\n', argv_len - i);
        size_t n = nl ? (size_t)(nl - (data + i)) : argv_len - i;
        argv[argc++] = make_arg(data + i, n);
        i += n + 1;
    }
    argv[argc] = NULL;
    /* getopt permutes argv: keep the pointers to free them. */
    char *owned[MAX_ARGS + 2];
    memcpy(owned, argv, (size_t)(argc + 1) * sizeof argv[0]);

    FILE *out = stdout, *err_stream = stderr;
    stdout = devnull;
    if (quiet)
        stderr = devnull;
    int r = options_parse(argc, argv, &opts);
    stdout = out;
    stderr = err_stream;
    CHECK(r == 0 || r == 1 || r == -1);
    if (r == 0) {
        check_options(&opts);
        /* A reload of the same input: same result; so is the reloader's
         * view of the start, from the text read then. */
        reparse_same_result(options_reparse, "reparse", argc, argv, &opts);
        reparse_same_result(options_reparse_same, "reparse from the start's text", argc, argv,
                            &opts);
    }
    options_free(&opts);
    log_set_all(-1);
    for (int i = 0; i < argc; i++)
        free(owned[i]);
    return 0;
}
