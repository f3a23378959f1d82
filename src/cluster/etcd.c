/* See etcd.h: the HTTP side (libcurl); etcd_json.c reads the answers. */
#include "cluster/etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/cleanup.h"

#define MAX_ANSWER (16u << 20) /* etcd's own default request limit is 1.5 MiB */

/* Easy handles kept between calls: a handle keeps its connections open,
 * so the next call on it reuses one (no new TCP connection, and over
 * https no new TLS handshake: one per call made a node's lease renewals
 * late under ThreadSanitizer). Enough for the threads that call at once
 * (lease keepalive, ownership, the API); more are made and dropped. */
#define ETCD_POOL 4

struct etcd {
    char *ep[ETCD_MAX_ENDPOINT];
    char *cacert, *cert, *key; /* TLS files (NULL: none, or the system CAs) */
    unsigned n;
    unsigned cur; /* the last endpoint that answered (atomic) */
    uint32_t timeout_ms;
    pthread_mutex_t pool_lock;
    CURL *pool[ETCD_POOL]; /* under pool_lock */
    unsigned npool;
};

static __thread char last_error[1024];

const char *etcd_error(void)
{
    return last_error;
}

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

static int split(const char *endpoints, char **ep, unsigned *n, char *err, size_t errlen)
{
    *n = 0;
    if (!endpoints || !*endpoints) {
        snprintf(err, errlen, "no etcd endpoint given (want http[s]://HOST:PORT[,...])");
        return -EINVAL;
    }
    for (const char *s = endpoints; *s;) {
        size_t len = strcspn(s, ",");
        size_t pl = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
        const char *host = s + pl;
        size_t hl = len > pl ? len - pl : 0;
        if (!pl || hl == 0 || memchr(host, '/', hl) || memchr(host, ' ', hl)) {
            snprintf(err, errlen,
                     "bad etcd endpoint \"%.*s\" (want http://HOST:PORT or https://HOST:PORT)",
                     (int)len, s);
            return -EINVAL;
        }
        if (*n == ETCD_MAX_ENDPOINT) {
            snprintf(err, errlen, "more than %d etcd endpoints", ETCD_MAX_ENDPOINT);
            return -EINVAL;
        }
        if (ep && !(ep[*n] = strndup(s, len)))
            return -ENOMEM;
        (*n)++;
        s += len;
        if (*s == ',' && !*++s) {
            snprintf(err, errlen, "trailing comma in the etcd endpoint list");
            return -EINVAL;
        }
    }
    return 0;
}

int etcd_endpoints_check(const char *endpoints, char *err, size_t errlen)
{
    unsigned n;
    return split(endpoints, NULL, &n, err, errlen);
}

int etcd_tls_check(const char *endpoints, const struct etcd_tls *tls, char *err, size_t errlen)
{
    if (!tls || (!tls->cacert && !tls->cert && !tls->key))
        return 0;
    if (!tls->cert != !tls->key) {
        snprintf(err, errlen,
                 "a client certificate for etcd needs both --etcd-cert and --etcd-key");
        return -EINVAL;
    }
    if (endpoints && !strstr(endpoints, "https://")) {
        snprintf(err, errlen,
                 "etcd TLS files given, but no etcd endpoint is https:// (they would not be used)");
        return -EINVAL;
    }
    return 0;
}

int etcd_tls_readable(const struct etcd_tls *tls, const char **option, const char **path)
{
    const char *const files[][2] = {
        {"--etcd-cacert", tls->cacert}, {"--etcd-cert", tls->cert}, {"--etcd-key", tls->key}};
    for (size_t i = 0; i < 3; i++) {
        if (files[i][1] && access(files[i][1], R_OK) < 0) {
            *option = files[i][0];
            *path = files[i][1];
            return -errno;
        }
    }
    return 0;
}

static int dup_or_null(const char *s, char **out)
{
    *out = s ? strdup(s) : NULL;
    return s && !*out ? -ENOMEM : 0;
}

int etcd_open(const char *endpoints, uint32_t timeout_ms, const struct etcd_tls *tls,
              struct etcd **out)
{
    struct etcd *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    pthread_mutex_init(&e->pool_lock, NULL);
    int r = split(endpoints, e->ep, &e->n, last_error, sizeof last_error);
    if (r == 0)
        r = etcd_tls_check(endpoints, tls, last_error, sizeof last_error);
    if (r == 0 && tls &&
        (dup_or_null(tls->cacert, &e->cacert) < 0 || dup_or_null(tls->cert, &e->cert) < 0 ||
         dup_or_null(tls->key, &e->key) < 0))
        r = -ENOMEM;
    if (r == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        set_error("cannot initialise libcurl");
        r = -ENOMEM;
    }
    if (r < 0) {
        etcd_close(e);
        return r;
    }
    e->timeout_ms = timeout_ms ? timeout_ms : ETCD_TIMEOUT_MS;
    *out = e;
    return 0;
}

void etcd_close(struct etcd *e)
{
    if (!e)
        return;
    for (unsigned i = 0; i < e->npool; i++)
        curl_easy_cleanup(e->pool[i]);
    pthread_mutex_destroy(&e->pool_lock);
    for (unsigned i = 0; i < ETCD_MAX_ENDPOINT; i++)
        free(e->ep[i]);
    free(e->cacert);
    free(e->cert);
    free(e->key);
    free(e);
}

struct answer {
    char *buf;
    size_t len, cap;
    bool too_big;
};

static size_t collect(char *p, size_t size, size_t nmemb, void *arg)
{
    struct answer *a = arg;
    size_t n = size * nmemb;
    if (a->len + n + 1 > MAX_ANSWER) {
        a->too_big = true;
        return 0;
    }
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + n + 1)
            cap *= 2;
        char *nb = realloc(a->buf, cap);
        if (!nb)
            return 0;
        a->buf = nb;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
    a->buf[a->len] = '\0';
    return n;
}

static int curl_errno(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -ECONNRESET;
    }
}

/* A kept handle (options reset, connections open), or a new one. */
static CURL *handle_take(struct etcd *e)
{
    CURL *c = NULL;
    {
        LOCK_GUARD(&e->pool_lock);
        if (e->npool)
            c = e->pool[--e->npool];
    }
    return c ? c : curl_easy_init();
}

/* Keep c for the next call, unless the pool is full. Its options are
 * reset at once: they point at the caller's buffers. */
static void handle_give(struct etcd *e, CURL *c)
{
    curl_easy_reset(c);
    {
        LOCK_GUARD(&e->pool_lock);
        if (e->npool < ETCD_POOL) {
            e->pool[e->npool++] = c;
            return;
        }
    }
    curl_easy_cleanup(c);
}

/* Set handle c up for one POST of `body` to endpoint i (NULL: no handle). */
static CURL *prepare(struct etcd *e, CURL *c, unsigned i, const char *path, const char *body,
                     struct curl_slist *hdr, char *url, size_t urlsz)
{
    if (!c)
        return NULL;
    snprintf(url, urlsz, "%s%s", e->ep[i], path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* a proxy setting must not reroute the cluster */
    /* https: the server is always verified (libcurl's default, never
     * turned off), against cacert or the system's CAs. The files are read
     * at each new connection (libcurl with GnuTLS takes no in-memory keys):
     * they must stay readable by the user shoald runs as. */
    if (e->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, e->cacert);
    if (e->cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, e->cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, e->key);
    }
    return c;
}

/* POST body to path on the first endpoint that answers. *out: the answer
 * (any HTTP status: the gateway says its errors in JSON). */
static int post(struct etcd *e, const char *path, const char *body, struct answer *out)
{
    memset(out, 0, sizeof *out);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (!hdr)
        return -ENOMEM;
    unsigned start = __atomic_load_n(&e->cur, __ATOMIC_RELAXED);
    int r = -ECONNREFUSED;
    char why[CURL_ERROR_SIZE + 600] = "";
    for (unsigned k = 0; k < e->n; k++) {
        unsigned i = (start + k) % e->n;
        char url[512], cerr[CURL_ERROR_SIZE] = "";
        CURL *c = prepare(e, handle_take(e), i, path, body, hdr, url, sizeof url);
        if (!c) {
            r = -ENOMEM;
            break;
        }
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
        CURLcode cc = curl_easy_perform(c);
        handle_give(e, c);
        if (cc == CURLE_OK && out->len) {
            __atomic_store_n(&e->cur, i, __ATOMIC_RELAXED);
            r = 0;
            break;
        }
        /* Too large: etcd answered; asking another endpoint would not help. */
        r = out->too_big ? -EMSGSIZE : cc == CURLE_OK ? -EPROTO : curl_errno(cc);
        snprintf(why, sizeof why, "%s: %s", url,
                 out->too_big     ? "answer too large"
                 : cc == CURLE_OK ? "empty answer"
                 : cerr[0]        ? cerr
                                  : curl_easy_strerror(cc));
        free(out->buf);
        memset(out, 0, sizeof *out);
        if (r == -EMSGSIZE)
            break;
    }
    curl_slist_free_all(hdr);
    if (r < 0)
        set_error("etcd: no endpoint answered (%s)", why[0] ? why : strerror(-r));
    return r;
}

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (o)
        etcd_b64_encode(s, n, o);
    return o;
}

/* The first key after every key starting with prefix. */
static char *prefix_end(const char *prefix)
{
    char *end = strdup(prefix);
    if (!end)
        return NULL;
    size_t n = strlen(end);
    while (n && (unsigned char)end[n - 1] == 0xff)
        end[--n] = '\0';
    if (n)
        end[n - 1]++;
    return end;
}

/* A request body from printf-style arguments (every key already base64). */
static char *body_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *body_of(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* base64 of n bytes (a key may hold any). */
static char *b64n(const char *s, size_t n)
{
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (o)
        etcd_b64_encode(s, n, o);
    return o;
}

/* One range request from key `from` (n bytes) to `end` (base64), at
 * `revision` (0: now), at most `limit` pairs (0: all), keys only or not. */
static int range_once(struct etcd *e, const char *from, size_t n, const char *end, int64_t revision,
                      unsigned limit, bool keys_only, struct etcd_kvs *out)
{
    memset(out, 0, sizeof *out);
    _cleanup_free_ char *k = b64n(from, n);
    _cleanup_free_ char *body =
        k ? body_of("{\"key\":\"%s\",\"range_end\":\"%s\",\"revision\":\"%" PRId64
                    "\",\"limit\":\"%u\",\"keys_only\":%s}",
                    k, end, revision, limit, keys_only ? "true" : "false")
          : NULL;
    if (!body)
        return -ENOMEM;
    struct answer a;
    int r = post(e, "/v3/kv/range", body, &a);
    if (r < 0)
        return r;
    r = etcd_parse_range(a.buf, a.len, out, last_error, sizeof last_error);
    free(a.buf);
    return r;
}

/* Move the pairs of `page` to the end of `all`. */
static int kvs_append(struct etcd_kvs *all, struct etcd_kvs *page)
{
    struct etcd_kv *kv = realloc(all->kv, (all->n + page->n) * sizeof *kv);
    if (!kv)
        return -ENOMEM;
    memcpy(kv + all->n, page->kv, page->n * sizeof *kv);
    all->kv = kv;
    all->n += page->n;
    free(page->kv);
    page->kv = NULL;
    page->n = 0;
    return 0;
}

/* The range too large for one answer, in pages: a page too large is
 * asked again with a quarter of the pairs, down to one, and the pages go
 * on that small (each failed try has etcd send up to MAX_ANSWER) until a
 * pair too large alone is listed by its key (too_large) and passed. Every
 * page at the revision of the first, so the pages are one view of the
 * store. */
#define RANGE_PAGE 16

static int range_paged(struct etcd *e, const char *prefix, const char *end, struct etcd_kvs *out)
{
    _cleanup_free_ char *from = strdup(prefix);
    size_t n = strlen(prefix);
    unsigned limit = RANGE_PAGE;
    int64_t revision = 0;
    if (!from)
        return -ENOMEM;
    for (;;) {
        struct etcd_kvs page;
        int r = range_once(e, from, n, end, revision, limit, false, &page);
        bool alone = false;
        if (r == -EMSGSIZE && limit > 1) {
            limit = limit / 4 ? limit / 4 : 1;
            continue;
        }
        if (r == -EMSGSIZE) {
            /* This one pair is too large: its key, without its value. */
            r = range_once(e, from, n, end, revision, 1, true, &page);
            alone = r == 0 && page.n == 1;
            if (r == 0 && page.n == 1) {
                free(page.kv[0].value);
                page.kv[0].value = strdup("");
                page.kv[0].value_len = 0;
                page.kv[0].too_large = true;
                if (!page.kv[0].value)
                    r = -ENOMEM;
            } else if (r == 0) {
                set_error("etcd: a range answer is too large, yet lists no key");
                r = -EPROTO;
            }
        }
        if (r < 0) {
            etcd_kvs_free(&page);
            etcd_kvs_free(out);
            return r;
        }
        if (!revision)
            revision = out->revision = page.revision;
        bool more = page.more || alone;
        size_t got = page.n;
        r = got ? kvs_append(out, &page) : 0;
        etcd_kvs_free(&page);
        /* No pair, yet "more": the next page would start here again. */
        if (r < 0 || !more || !got) {
            if (r < 0)
                etcd_kvs_free(out);
            return r;
        }
        /* The next page starts just after the last key: key + "\0". */
        const struct etcd_kv *last = &out->kv[out->n - 1];
        char *next = malloc(last->key_len + 1);
        if (!next) {
            etcd_kvs_free(out);
            return -ENOMEM;
        }
        memcpy(next, last->key, last->key_len);
        next[last->key_len] = '\0';
        free(from);
        from = next;
        n = last->key_len + 1;
        if (alone)
            limit = RANGE_PAGE;
    }
}

int etcd_range_prefix(struct etcd *e, const char *prefix, struct etcd_kvs *out)
{
    memset(out, 0, sizeof *out);
    _cleanup_free_ char *end = prefix_end(prefix);
    _cleanup_free_ char *k = b64(prefix);
    _cleanup_free_ char *ke = end ? b64(end) : NULL;
    _cleanup_free_ char *body =
        k && ke ? body_of("{\"key\":\"%s\",\"range_end\":\"%s\"}", k, ke) : NULL;
    if (!body)
        return -ENOMEM;
    struct answer a;
    int r = post(e, "/v3/kv/range", body, &a);
    if (r == -EMSGSIZE)
        r = range_paged(e, prefix, ke, out);
    else if (r == 0) {
        r = etcd_parse_range(a.buf, a.len, out, last_error, sizeof last_error);
        free(a.buf);
    }
    if (r == 0)
        last_error[0] = '\0';
    return r;
}

int etcd_put(struct etcd *e, const char *key, const char *value, int64_t lease)
{
    _cleanup_free_ char *k = b64(key);
    _cleanup_free_ char *v = b64(value);
    _cleanup_free_ char *body =
        k && v ? body_of("{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%" PRId64 "\"}", k, v, lease)
               : NULL;
    if (!body)
        return -ENOMEM;
    struct answer a;
    int r = post(e, "/v3/kv/put", body, &a);
    if (r < 0)
        return r;
    int64_t unused;
    r = etcd_parse_deleted(a.buf, a.len, &unused, last_error, sizeof last_error);
    free(a.buf);
    if (r == 0)
        last_error[0] = '\0';
    return r;
}

int etcd_delete(struct etcd *e, const char *key, bool *deleted)
{
    _cleanup_free_ char *k = b64(key);
    _cleanup_free_ char *body = k ? body_of("{\"key\":\"%s\"}", k) : NULL;
    if (!body)
        return -ENOMEM;
    struct answer a;
    int r = post(e, "/v3/kv/deleterange", body, &a);
    if (r < 0)
        return r;
    int64_t n = 0;
    r = etcd_parse_deleted(a.buf, a.len, &n, last_error, sizeof last_error);
    free(a.buf);
    if (deleted)
        *deleted = n > 0;
    if (r == 0)
        last_error[0] = '\0';
    return r;
}

static int txn(struct etcd *e, const char *body, bool *ok, struct etcd_kvs *kvs)
{
    struct answer a;
    int r = post(e, "/v3/kv/txn", body, &a);
    if (r < 0)
        return r;
    r = etcd_parse_txn(a.buf, a.len, ok, kvs, last_error, sizeof last_error);
    free(a.buf);
    if (r == 0)
        last_error[0] = '\0';
    return r;
}

int etcd_create(struct etcd *e, const char *key, const char *value, int64_t lease,
                struct etcd_kvs *holder)
{
    _cleanup_free_ char *k = b64(key);
    _cleanup_free_ char *v = b64(value);
    _cleanup_free_ char *body =
        k && v ? body_of("{\"compare\":[{\"target\":\"CREATE\",\"result\":\"EQUAL\",\"key\":\"%s\","
                         "\"create_revision\":\"0\"}],"
                         "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\","
                         "\"lease\":\"%" PRId64 "\"}}],"
                         "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
                         k, k, v, lease, k)
               : NULL;
    if (!body)
        return -ENOMEM;
    bool ok = false;
    struct etcd_kvs kvs;
    int r = txn(e, body, &ok, &kvs);
    if (r < 0)
        return r;
    if (!ok && holder)
        *holder = kvs;
    else
        etcd_kvs_free(&kvs);
    return ok ? 0 : -EEXIST;
}

/* A txn whose answer only says whether its compare held (into *held, if
 * given); the pairs it returned are dropped. */
static int txn_held(struct etcd *e, const char *body, bool *held)
{
    bool ok = false;
    struct etcd_kvs kvs;
    int r = txn(e, body, &ok, &kvs);
    if (r == 0)
        etcd_kvs_free(&kvs);
    if (held)
        *held = r == 0 && ok;
    return r;
}

int etcd_delete_if(struct etcd *e, const char *key, const char *value, bool *deleted)
{
    _cleanup_free_ char *k = b64(key);
    _cleanup_free_ char *v = b64(value);
    _cleanup_free_ char *body =
        k && v ? body_of("{\"compare\":[{\"target\":\"VALUE\",\"result\":\"EQUAL\",\"key\":\"%s\","
                         "\"value\":\"%s\"}],"
                         "\"success\":[{\"request_delete_range\":{\"key\":\"%s\"}}]}",
                         k, v, k)
               : NULL;
    if (!body)
        return -ENOMEM;
    return txn_held(e, body, deleted);
}

int etcd_replace_if(struct etcd *e, const char *key, const char *old, const char *value,
                    int64_t lease, bool *replaced)
{
    _cleanup_free_ char *k = b64(key);
    _cleanup_free_ char *o = b64(old);
    _cleanup_free_ char *v = b64(value);
    _cleanup_free_ char *body =
        k && o && v ? body_of("{\"compare\":[{\"target\":\"VALUE\",\"result\":\"EQUAL\","
                              "\"key\":\"%s\",\"value\":\"%s\"}],"
                              "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\","
                              "\"lease\":\"%" PRId64 "\"}}]}",
                              k, o, k, v, lease)
                    : NULL;
    if (!body)
        return -ENOMEM;
    return txn_held(e, body, replaced);
}

int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id)
{
    _cleanup_free_ char *body = body_of("{\"TTL\":\"%" PRId64 "\"}", ttl_s);
    if (!body)
        return -ENOMEM;
    struct answer a;
    int r = post(e, "/v3/lease/grant", body, &a);
    if (r < 0)
        return r;
    int64_t ttl = 0;
    r = etcd_parse_lease(a.buf, a.len, id, &ttl, last_error, sizeof last_error);
    free(a.buf);
    if (r == 0 && (*id == 0 || ttl <= 0)) {
        set_error("etcd granted no lease");
        r = -EPROTO;
    }
    if (r == 0)
        last_error[0] = '\0';
    return r;
}

int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_s)
{
    _cleanup_free_ char *body = body_of("{\"ID\":\"%" PRId64 "\"}", id);
    if (!body)
        return -ENOMEM;
    struct answer a;
    int r = post(e, "/v3/lease/keepalive", body, &a);
    if (r < 0)
        return r;
    int64_t got = 0;
    r = etcd_parse_lease(a.buf, a.len, &got, ttl_s, last_error, sizeof last_error);
    free(a.buf);
    /* An expired lease is answered with its ID and no TTL. */
    if (r == 0 && *ttl_s <= 0) {
        set_error("etcd: lease %" PRIx64 " has expired", (uint64_t)id);
        r = -ENOENT;
    }
    if (r == 0)
        last_error[0] = '\0';
    return r;
}

int etcd_lease_revoke(struct etcd *e, int64_t id)
{
    _cleanup_free_ char *body = body_of("{\"ID\":\"%" PRId64 "\"}", id);
    if (!body)
        return -ENOMEM;
    struct answer a;
    int r = post(e, "/v3/lease/revoke", body, &a);
    if (r < 0)
        return r;
    int64_t unused;
    r = etcd_parse_deleted(a.buf, a.len, &unused, last_error, sizeof last_error);
    free(a.buf);
    if (r == 0)
        last_error[0] = '\0';
    return r;
}

/* ---- watch ---- */

struct watch {
    struct answer line; /* bytes of the message not yet complete */
    int (*fn)(void *, int64_t, unsigned);
    void *arg;
    const bool *stop;
    uint64_t deadline_ms; /* 0: none */
    int result;           /* fn's or a parse error; stops the transfer */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Each message of the stream ends in a newline. */
static size_t watch_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct watch *w = arg;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n;) {
        char *nl = memchr(p + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (p + i)) : n - i;
        if (collect(p + i, 1, take, &w->line) != take) {
            w->result = -EPROTO;
            set_error("etcd: watch message too large");
            return 0;
        }
        i += take;
        if (!nl)
            break;
        i++; /* the newline */
        int64_t rev = 0;
        unsigned nev = 0;
        int r = etcd_parse_watch(w->line.buf ? w->line.buf : "", w->line.len, &rev, &nev,
                                 last_error, sizeof last_error);
        w->line.len = 0;
        if (r == 0 && nev)
            r = w->fn(w->arg, rev, nev);
        if (r != 0) {
            w->result = r;
            return 0;
        }
    }
    return n;
}

static int watch_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct watch *w = arg;
    if (__atomic_load_n(w->stop, __ATOMIC_ACQUIRE))
        return 1;
    return w->deadline_ms && now_ms() >= w->deadline_ms;
}

int etcd_watch(struct etcd *e, const char *prefix, int64_t start,
               int (*fn)(void *arg, int64_t revision, unsigned nevents), void *arg,
               const bool *stop, uint32_t max_ms)
{
    _cleanup_free_ char *end = prefix_end(prefix);
    _cleanup_free_ char *k = b64(prefix);
    _cleanup_free_ char *ke = end ? b64(end) : NULL;
    _cleanup_free_ char *body =
        k && ke ? body_of("{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
                          "\"start_revision\":\"%" PRId64 "\"}}",
                          k, ke, start)
                : NULL;
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (!body || !hdr) {
        curl_slist_free_all(hdr);
        return -ENOMEM;
    }
    unsigned i = __atomic_load_n(&e->cur, __ATOMIC_RELAXED) % e->n;
    char url[512], cerr[CURL_ERROR_SIZE] = "";
    /* A handle of its own: a watch holds its connection for minutes. */
    CURL *c = prepare(e, curl_easy_init(), i, "/v3/watch", body, hdr, url, sizeof url);
    if (!c) {
        curl_slist_free_all(hdr);
        return -ENOMEM;
    }
    struct watch w = {
        .fn = fn, .arg = arg, .stop = stop, .deadline_ms = max_ms ? now_ms() + max_ms : 0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, watch_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, watch_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &w);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    free(w.line.buf);
    if (w.result)
        return w.result;
    if (cc == CURLE_ABORTED_BY_CALLBACK)
        return 0; /* stopped, or max_ms passed */
    if (cc != CURLE_OK) {
        set_error("etcd: watch on %s: %s", url, cerr[0] ? cerr : curl_easy_strerror(cc));
        /* The next watch tries the next endpoint. */
        __atomic_store_n(&e->cur, (i + 1) % e->n, __ATOMIC_RELAXED);
        return curl_errno(cc);
    }
    set_error("etcd: watch on %s ended", url);
    return -ECONNRESET;
}
