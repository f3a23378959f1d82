/* libFuzzer target for the management API's one entry, mgmt_handle()
 * (src/mgmt/handle.c: the token and browser checks, the body limit, then
 * api.c's routes), the function the daemon's HTTP transport calls, on a
 * real engine: two small file-backed volumes in a temp dir,
 *   "a"  256 KiB, read-write      (TMP/a.img)
 *   "b"  64 KiB + 100, read-only  (TMP/b.img)
 * and TMP/c.img (128 KiB), not exported, for inputs that add a volume.
 * TMP is the server's --backing-dir; TMP/link-out is a symlink to
 * /etc/hostname and "@/../" leads out of it, so the fuzzer can try to
 * escape. The cache is 1 MiB. No libmicrohttpd: the harness builds the
 * struct mgmt itself (mgmt_handle never touches the daemon) and plays the
 * transport.
 *
 * Input (text, so seeds are readable), like an HTTP request:
 *   METHOD PATH[?QUERY]
 *   Header: value          any headers, looked up case-insensitively (the
 *   ...                    first of a name wins); the token is "fuzz-token"
 *   (blank line)
 *   BODY                   each '@' stands for the temp dir: "@/c.img"
 * PATH and the query are %-decoded as libmicrohttpd does; the query's
 * arguments are KEY[=VALUE] separated by '&' (the first KEY wins).
 *
 * Side effects neutralised by the harness:
 *   - inputs that mention "nbd" anywhere (any case) are skipped: no
 *     network connects;
 *   - backend_open is wrapped (-Wl,--wrap): a spec that does not start
 *     with "TMP/" (any other path, a fault: layer) fails with EACCES as an
 *     unreadable file would, so nothing outside TMP is named; specs under
 *     TMP, ".." and the symlink included, go to the real back end and its
 *     --backing-dir rule. That also covers specs the "nbd" filter cannot
 *     see (JSON \u escapes);
 *   - engine_resize_cache is wrapped: sizes above 4 MiB are capped at 4 MiB
 *     (a real resize to gigabytes would allocate the tables for it).
 * State: after every request other than GET that got past auth the harness
 * waits for any prefetch, removes every volume, re-adds "a" and "b" and
 * sets the cache back to 1 MiB, so each input starts from the same volumes
 * (cache counters and the cache's content carry over, as they do on a live
 * server).
 *
 * Every input is also given, as raw bytes, to the management API's request
 * head check (gate_check_head, src/mgmt/gate.c: check_gate below).
 *
 * Checks on every reply (anything else aborts):
 *   - a status in 100..599; a JSON body that parses when the content type
 *     is application/json; for 4xx/5xx a JSON object with an "error"
 *     string; an Allow header for 405, a Location for 201, no body for 204;
 *   - auth: a request other than GET without "Authorization: Bearer
 *     fuzz-token" (as RFC 7235 spells it) never gets a 2xx or 3xx; a reply
 *     to a request without the token never contains the temp dir's path
 *     (backing paths are hidden);
 *   - --backing-dir: the API always passes it to the back end, and a back
 *     end that opened resolves (realpath) inside the temp dir.
 *
 * The temp dir is removed at exit (not after a crash: it is small, under
 * $TMPDIR or /tmp, named shoal-fuzz-api.*). Set SHOAL_FUZZ_LOG=debug to see
 * the daemon's log while reproducing. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "mgmt/gate.h"
#include "mgmt/mgmt_internal.h"
#include "fuzz_log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CACHE_BYTES     (1u << 20)
#define CACHE_MAX_BYTES (4u << 20)
#define TOKEN           "fuzz-token"
#define MAX_ARGS        16
#define MAX_HEADERS     32

static char tmpdir[64];
static char path_a[128], path_b[128], path_c[128], path_link[128];
static const char *backing_dirs[2] = {tmpdir, NULL};
static struct engine *engine;
static struct mgmt server;
static bool verbose; /* SHOAL_FUZZ_LOG: print each reply */

/* ---- wrapped engine calls (see the -Wl,--wrap flags in meson.build) ---- */

int __real_backend_open(const struct backend_params *p, struct backend **out);
int __wrap_backend_open(const struct backend_params *p, struct backend **out);
int __real_engine_resize_cache(struct engine *e, uint64_t bytes);
int __wrap_engine_resize_cache(struct engine *e, uint64_t bytes);

/* ---- wrapped calls ---- */

static bool spec_allowed(const char *spec)
{
    size_t n = strlen(tmpdir);
    return spec && strncmp(spec, tmpdir, n) == 0 && spec[n] == '/';
}

/* The rule's oracle: whatever opened must really be inside the temp dir. */
static void check_inside(const char *spec)
{
    char *real = realpath(spec, NULL);
    size_t n = strlen(tmpdir);
    if (!real || strncmp(real, tmpdir, n) != 0 || real[n] != '/') {
        fprintf(stderr, "fuzz_api: %s opened, but it is %s: outside --backing-dir %s\n", spec,
                real ? real : "(unresolvable)", tmpdir);
        abort();
    }
    free(real);
}

int __wrap_backend_open(const struct backend_params *p, struct backend **out)
{
    if (!p || !spec_allowed(p->spec)) {
        backend_set_open_error("%s", strerror(EACCES));
        return -EACCES;
    }
    if (!p->backing_dirs || !p->backing_dirs[0] || strcmp(p->backing_dirs[0], tmpdir) != 0) {
        fprintf(stderr, "fuzz_api: %s was opened without the --backing-dir rule\n", p->spec);
        abort();
    }
    int r = __real_backend_open(p, out);
    if (r == 0)
        check_inside(p->spec);
    return r;
}

int __wrap_engine_resize_cache(struct engine *e, uint64_t bytes)
{
    return __real_engine_resize_cache(e, bytes > CACHE_MAX_BYTES ? CACHE_MAX_BYTES : bytes);
}

/* ---- setup ---- */

static int make_image(const char *path, size_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        return -1;
    /* Some non-zero blocks, some zero ones, so the cache dedups and skips. */
    char blk[4096];
    for (size_t off = 0; off + sizeof blk <= size; off += 3 * sizeof blk) {
        memset(blk, (int)(off >> 12) + 1, sizeof blk);
        if (pwrite(fd, blk, sizeof blk, (off_t)off) != (ssize_t)sizeof blk) {
            close(fd);
            return -1;
        }
    }
    close(fd);
    return 0;
}

/* As shoald adds its command line's volumes: under the same --backing-dir. */
static int add_base_volumes(void)
{
    struct volume_config a = {.name = "a",
                              .backend = {.spec = path_a, .backing_dirs = backing_dirs}};
    struct volume_config b = {
        .name = "b",
        .backend = {.spec = path_b, .readonly = true, .backing_dirs = backing_dirs},
        .readonly = true};
    int r = engine_add_volume(engine, &a);
    return r < 0 ? r : engine_add_volume(engine, &b);
}

static void cleanup_tmpdir(void)
{
    unlink(path_a);
    unlink(path_b);
    unlink(path_c);
    unlink(path_link);
    rmdir(tmpdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    verbose = fuzz_log_setup();
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/shoal-fuzz-api.XXXXXX",
             t && *t && strlen(t) < 32 ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("fuzz_api: mkdtemp");
        abort();
    }
    atexit(cleanup_tmpdir);
    snprintf(path_a, sizeof path_a, "%s/a.img", tmpdir);
    snprintf(path_b, sizeof path_b, "%s/b.img", tmpdir);
    snprintf(path_c, sizeof path_c, "%s/c.img", tmpdir);
    snprintf(path_link, sizeof path_link, "%s/link-out", tmpdir);
    if (symlink("/etc/hostname", path_link) < 0) {
        perror("fuzz_api: symlink");
        abort();
    }
    struct engine_config ec = {.cache_bytes = CACHE_BYTES};
    if (make_image(path_a, 256u << 10) < 0 || make_image(path_b, (64u << 10) + 100) < 0 ||
        make_image(path_c, 128u << 10) < 0 || engine_create(&ec, &engine) < 0 ||
        add_base_volumes() < 0) {
        fprintf(stderr, "fuzz_api: cannot create the engine or its volumes in %s\n", tmpdir);
        abort();
    }
    server = (struct mgmt){.engine = engine,
                           .token = strdup(TOKEN),
                           .token_len = strlen(TOKEN),
                           .backing_dirs = (char **)backing_dirs,
                           .start_ns = now_ns(),
                           .running = true};
    if (!server.token)
        abort();
    return 0;
}

/* ---- after a request: back to "a" and "b" and a 1 MiB cache ---- */

static int wait_prefetch(struct volume *v, void *opaque)
{
    (void)opaque;
    for (int i = 0; i < 10000; i++) { /* 10 s: the volumes are small */
        struct prefetch_status st;
        volume_prefetch_status(v, &st);
        if (!st.running)
            return 0;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    fprintf(stderr, "fuzz_api: prefetch of %s does not finish\n", volume_name(v));
    abort();
}

struct names {
    char (*name)[MGMT_NAME_MAX + 1];
    unsigned n, cap;
};

static int collect_name(struct volume *v, void *opaque)
{
    struct names *ns = opaque;
    if (ns->n < ns->cap)
        snprintf(ns->name[ns->n++], sizeof ns->name[0], "%s", volume_name(v));
    return 0;
}

static void reset_engine(void)
{
    engine_for_each_volume(engine, wait_prefetch, NULL);
    static char buf[64][MGMT_NAME_MAX + 1];
    struct names ns = {.name = buf, .cap = 64};
    engine_for_each_volume(engine, collect_name, &ns);
    for (unsigned i = 0; i < ns.n; i++)
        engine_remove_volume(engine, ns.name[i], true);
    if (engine_volume_count(engine) != 0 || add_base_volumes() < 0 ||
        __real_engine_resize_cache(engine, CACHE_BYTES) < 0) {
        fprintf(stderr, "fuzz_api: cannot restore the engine's volumes\n");
        abort();
    }
}

/* ---- decoding the input ---- */

struct request {
    char *method, *path, *query_string;
    const char *hdr_names[MAX_HEADERS], *hdr_values[MAX_HEADERS];
    unsigned nhdrs;
    char *body;
    size_t body_len;
    char *keys[MAX_ARGS], *values[MAX_ARGS]; /* value NULL: "?key" */
    unsigned nargs;
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* %XX in place, as MHD_http_unescape (a bad escape stays as it is). */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r;) {
        int h, l;
        if (r[0] == '%' && (h = hexval((unsigned char)r[1])) >= 0 &&
            (l = hexval((unsigned char)r[2])) >= 0) {
            *w++ = (char)(h << 4 | l);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

static const char *header_value(const struct mgmt_req *req, const char *name)
{
    const struct request *rq = req->transport;
    for (unsigned i = 0; i < rq->nhdrs; i++)
        if (strcasecmp(rq->hdr_names[i], name) == 0)
            return rq->hdr_values[i];
    return NULL;
}

static const char *query_arg(const struct mgmt_req *req, const char *key)
{
    const struct request *rq = req->transport;
    for (unsigned i = 0; i < rq->nargs; i++)
        if (strcmp(rq->keys[i], key) == 0)
            return rq->values[i] ? rq->values[i] : "";
    return NULL;
}

static void parse_query(struct request *rq)
{
    if (!rq->query_string)
        return;
    for (char *save = NULL, *kv = strtok_r(rq->query_string, "&", &save);
         kv && rq->nargs < MAX_ARGS; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq++ = '\0';
        unescape(kv);
        if (eq) {
            for (char *p = eq; *p; p++)
                if (*p == '+')
                    *p = ' ';
            unescape(eq);
        }
        rq->keys[rq->nargs] = kv;
        rq->values[rq->nargs++] = eq;
    }
}

/* Split `text` (a NUL-terminated copy of the input) into a request; the
 * strings point into it. */
static void parse_request(char *text, size_t size, struct request *rq)
{
    memset(rq, 0, sizeof *rq);
    char *end = text + size;
    char *line = text, *nl = memchr(line, '\n', size);
    char *next = nl ? nl + 1 : end;
    if (nl)
        *nl = '\0';
    /* "METHOD PATH[?QUERY]" */
    char *sp = strchr(line, ' ');
    rq->method = line;
    rq->path = sp ? sp + 1 : line + strlen(line);
    if (sp)
        *sp = '\0';
    char *sp2 = strchr(rq->path, ' '); /* an "HTTP/1.1" after the path */
    if (sp2)
        *sp2 = '\0';
    char *q = strchr(rq->path, '?');
    if (q) {
        *q = '\0';
        rq->query_string = q + 1;
    }
    /* Headers until a blank line; the rest is the body. */
    while (next < end) {
        line = next;
        nl = memchr(line, '\n', (size_t)(end - line));
        next = nl ? nl + 1 : end;
        if (nl)
            *nl = '\0';
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0)
            break;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (rq->nhdrs < MAX_HEADERS) {
            rq->hdr_names[rq->nhdrs] = line;
            rq->hdr_values[rq->nhdrs++] = v;
        }
    }
    if (next < end) {
        rq->body = next;
        rq->body_len = (size_t)(end - next);
    }
    unescape(rq->path);
    parse_query(rq);
}

/* The transport hands over a NUL-terminated copy of the body (or NULL);
 * here each '@' in it becomes the temp dir, so inputs can name its files. */
static char *expand_body(const char *b, size_t n, size_t *out_len)
{
    *out_len = 0;
    if (!n)
        return NULL;
    size_t ats = 0, dlen = strlen(tmpdir);
    for (size_t i = 0; i < n; i++)
        ats += b[i] == '@';
    char *body = malloc(n + ats * dlen + 1), *w = body;
    if (!body)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '@') {
            memcpy(w, tmpdir, dlen);
            w += dlen;
        } else {
            *w++ = b[i];
        }
    }
    *w = '\0';
    *out_len = (size_t)(w - body);
    return body;
}

static enum mgmt_method method_of(const char *m)
{
    if (!strcmp(m, "GET") || !strcmp(m, "HEAD"))
        return MGMT_GET;
    if (!strcmp(m, "POST"))
        return MGMT_POST;
    if (!strcmp(m, "DELETE"))
        return MGMT_DELETE;
    if (!strcmp(m, "PUT"))
        return MGMT_PUT;
    if (!strcmp(m, "PATCH"))
        return MGMT_PATCH;
    return MGMT_OTHER;
}

static bool mentions_nbd(const char *s, size_t n)
{
    for (size_t i = 0; i + 3 <= n; i++)
        if (tolower((unsigned char)s[i]) == 'n' && tolower((unsigned char)s[i + 1]) == 'b' &&
            tolower((unsigned char)s[i + 2]) == 'd')
            return true;
    return false;
}

/* ---- checking the reply ---- */

#define CHECK(cond, rep)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_api: bad reply (%s, %s:%d): status %u, body %.*s\n", #cond,      \
                    __FILE__, __LINE__, (rep)->status, (int)MIN((rep)->len, 2000u),                \
                    (rep)->body ? (rep)->body : "(none)");                                         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_reply(const struct mgmt_reply *rep)
{
    CHECK(rep->status >= 100 && rep->status <= 599, rep);
    CHECK(rep->body || rep->len == 0, rep);
    bool is_json = rep->content_type && !strcmp(rep->content_type, "application/json");
    json_t *j = NULL;
    if (is_json) {
        json_error_t err;
        CHECK(rep->body, rep);
        j = json_loadb(rep->body, rep->len, 0, &err);
        CHECK(j, rep);
    }
    if (rep->status >= 400) {
        CHECK(is_json && json_is_object(j), rep);
        CHECK(json_is_string(json_object_get(j, "error")), rep);
    }
    if (rep->status == 405)
        CHECK(rep->allow[0], rep);
    if (rep->status == 201)
        CHECK(rep->location[0], rep);
    if (rep->status == 204)
        CHECK(!rep->body, rep);
    json_decref(j);
}

/* What auth_check accepts, written out again as the oracle: the scheme
 * "Bearer" in any case, blanks, the token, optional trailing blanks. */
static bool token_sent(const struct mgmt_req *req)
{
    const char *a = req->header(req, "Authorization");
    if (!a || strncasecmp(a, "Bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t'))
        return false;
    a += 6;
    while (*a == ' ' || *a == '\t')
        a++;
    size_t n = strlen(a);
    while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
        n--;
    return n == strlen(TOKEN) && memcmp(a, TOKEN, n) == 0;
}

/* The gate's request head check (src/mgmt/gate.c), which every plain-HTTP
 * connection passes before libmicrohttpd sees it, on the same bytes: its
 * verdict is one of the three, a refusal carries an error status and a
 * message, a head it passes is complete (ends with an empty line within the
 * bytes looked at), and the verdict is the same for the same bytes. */
static void check_gate(const uint8_t *data, size_t size)
{
    size_t n = size < GATE_MAX_HEAD ? size : GATE_MAX_HEAD;
    struct gate_verdict v = {0}, v2 = {0};
    enum gate_result r = gate_check_head((const char *)data, n, &v);
    switch (r) {
    case GATE_MORE:
        break;
    case GATE_PASS:
        if (!memmem(data, n, "\r\n\r\n", 4))
            abort(); /* passed a head that has not ended */
        break;
    case GATE_REFUSE:
        if (v.status < 400 || v.status > 599 || !v.message[0] ||
            !memchr(v.message, '\0', sizeof v.message))
            abort();
        break;
    default:
        abort();
    }
    if (gate_check_head((const char *)data, n, &v2) != r || v2.status != v.status)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_gate(data, size);
    /* Skip anything that names an NBD back end, wherever it is. */
    if (mentions_nbd((const char *)data, size))
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    struct request rq;
    parse_request(text, size, &rq);
    size_t body_len;
    char *body = expand_body(rq.body, rq.body_len, &body_len);

    struct mgmt_reply rep = {0};
    struct mgmt_req req = {
        .method = method_of(rq.method),
        .path = rq.path,
        .body = body,
        .body_len = body_len,
        .query = query_arg,
        .header = header_value,
        .transport = &rq,
    };
    mgmt_handle(&server, &req, &rep);
    if (verbose)
        fprintf(stderr, "fuzz_api: %s %s -> %u %.*s\n", rq.method, rq.path, rep.status,
                (int)MIN(rep.len, 300u), rep.body ? rep.body : "");
    check_reply(&rep);
    bool token = token_sent(&req);
    CHECK(token == req.authorized, &rep);
    if (req.method != MGMT_GET && !token)
        CHECK(rep.status >= 400, &rep);
    if (!token)
        CHECK(!rep.body || !memmem(rep.body, rep.len, tmpdir, strlen(tmpdir)), &rep);
    reply_free(&rep);
    if (req.method != MGMT_GET && token)
        reset_engine();
    free(body);
    free(text);
    return 0;
}
