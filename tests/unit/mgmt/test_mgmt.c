/* Management server tests: the HTTP API, /metrics and the safety rules
 * (a token for every change, backing paths only with the token, the
 * transport-neutral entry mgmt_handle), against a fake engine
 * (fake_engine.h) on 127.0.0.1 with an ephemeral port. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "fake_engine.h"
#include "http_client.h"
#include "mgmt/gate.h"
#include "mgmt/mgmt.h"
#include "mgmt/mgmt_internal.h" /* auth_browser_refusal, struct mgmt */

#define TOKEN "s3cret-token"

static struct engine *eng;
static struct mgmt *srv;
static unsigned port;

/* ---- helpers ---- */

static void req(const char *method, const char *path, const char *body, const char *token,
                struct http_resp *r)
{
    http_req(port, method, path, body, body ? strlen(body) : 0, token, 0, r);
}

/* Assert a JSON error reply with the given status. */
static void assert_error(struct http_resp *r, long status)
{
    if (r->status != status)
        fprintf(stderr, "expected %ld, got %ld: %s\n", status, r->status,
                r->body ? r->body : "(no body)");
    assert_int_equal(r->status, status);
    assert_non_null(r->json);
    assert_true(json_is_string(json_object_get(r->json, "error")));
    assert_true(strlen(json_string_value(json_object_get(r->json, "error"))) > 0);
}

static void assert_status(struct http_resp *r, long status)
{
    if (r->status != status)
        fprintf(stderr, "expected %ld, got %ld: %s\n", status, r->status,
                r->body ? r->body : "(no body)");
    assert_int_equal(r->status, status);
}

static struct fake_calls calls(void)
{
    struct fake_calls c;
    fake_engine_calls(eng, &c);
    return c;
}

static int group_setup(void **state)
{
    (void)state;
    log_set_all(LOG_LVL_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    eng = fake_engine_new();
    static const char *const dirs[] = {"/srv/vms", "/data", NULL};
    struct mgmt_config cfg = {.listen = "127.0.0.1:0", .token = TOKEN, .backing_dirs = dirs};
    int r = mgmt_start(eng, &cfg, &srv);
    if (r < 0)
        return -1;
    port = mgmt_port(srv);
    return port ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    mgmt_stop(srv);
    fake_engine_free(eng);
    curl_global_cleanup();
    return 0;
}

static int setup(void **state)
{
    (void)state;
    fake_engine_reset(eng);
    return 0;
}

/* Every request must drop the volume references it took. */
static int teardown(void **state)
{
    (void)state;
    assert_int_equal(fake_engine_refs(eng), 0);
    return 0;
}

/* ---- listen address ---- */

static void test_parse_listen(void **state)
{
    (void)state;
    char host[64];
    unsigned p;
    assert_int_equal(mgmt_parse_listen("127.0.0.1:10810", host, sizeof host, &p), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(p, 10810);
    assert_int_equal(mgmt_parse_listen("[::1]:80", host, sizeof host, &p), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(p, 80);
    assert_int_equal(mgmt_parse_listen("localhost:0", host, sizeof host, &p), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(p, 0);
    assert_int_equal(mgmt_parse_listen("0.0.0.0:65535", host, sizeof host, &p), 0);

    static const char *const bad[] = {
        "",           "127.0.0.1",     "127.0.0.1:",     ":80",     "127.0.0.1:65536",
        "1.2.3.4:-1", "1.2.3.4:80x",   "::1:80",         "[::1]80", "[::1]:",
        "[zz]:80",    "example.com:1", "256.1.1.1:80",   "[::1:80", "1.2.3.4:123456",
        "off",        "1.2.3.4: 80",   "[127.0.0.1]:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (mgmt_parse_listen(bad[i], host, sizeof host, &p) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_equal(mgmt_parse_listen(NULL, host, sizeof host, &p), -EINVAL);
    /* Too small a buffer is an error, not a truncation. */
    assert_int_equal(mgmt_parse_listen("127.0.0.1:1", host, 4, &p), -EINVAL);
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(mgmt_listen_is_loopback("127.0.0.1:1"));
    assert_true(mgmt_listen_is_loopback("127.1.2.3:1"));
    assert_true(mgmt_listen_is_loopback("localhost:1"));
    assert_true(mgmt_listen_is_loopback("[::1]:1"));
    assert_true(mgmt_listen_is_loopback("[::ffff:127.0.0.1]:1"));
    assert_false(mgmt_listen_is_loopback("0.0.0.0:1"));
    assert_false(mgmt_listen_is_loopback("192.0.2.1:1"));
    assert_false(mgmt_listen_is_loopback("128.0.0.1:1"));
    assert_false(mgmt_listen_is_loopback("[::]:1"));
    assert_false(mgmt_listen_is_loopback("[::ffff:192.0.2.1]:1"));
    assert_false(mgmt_listen_is_loopback("garbage"));
    assert_false(mgmt_listen_is_loopback(NULL));
}

static void test_start_rules(void **state)
{
    (void)state;
    /* A token is always required: there is no "open" mode, not even on
     * loopback. */
    struct mgmt *m = (struct mgmt *)1;
    struct mgmt_config cfg = {.listen = "127.0.0.1:0"};
    assert_int_equal(mgmt_start(eng, &cfg, &m), -EINVAL);
    assert_null(m);
    cfg.token = ""; /* an empty token is no token */
    assert_int_equal(mgmt_start(eng, &cfg, &m), -EINVAL);
    cfg.listen = "0.0.0.0:0";
    assert_int_equal(mgmt_start(eng, &cfg, &m), -EINVAL);

    /* With a token any address is served (plain HTTP elsewhere than on
     * loopback only warns). */
    cfg.token = "t";
    assert_int_equal(mgmt_start(eng, &cfg, &m), 0);
    assert_non_null(m);
    assert_true(mgmt_port(m) > 0);
    mgmt_stop(m);

    /* HTTPS without usable certificates does not start. */
    cfg = (struct mgmt_config){
        .listen = "127.0.0.1:0", .token = "t", .tls_certificates = "/nonexistent/certs"};
    m = (struct mgmt *)1;
    assert_true(mgmt_start(eng, &cfg, &m) < 0);
    assert_null(m);

    cfg = (struct mgmt_config){.listen = "off"};
    m = (struct mgmt *)1;
    assert_int_equal(mgmt_start(eng, &cfg, &m), 0);
    assert_null(m);
    mgmt_stop(NULL);
    cfg.listen = NULL;
    assert_int_equal(mgmt_start(eng, &cfg, &m), 0);
    assert_null(m);
    cfg.listen = "nonsense";
    cfg.token = "t";
    assert_int_equal(mgmt_start(eng, &cfg, &m), -EINVAL);

    /* The port is taken by the main test server. */
    char busy[64];
    snprintf(busy, sizeof busy, "127.0.0.1:%u", port);
    cfg.listen = busy;
    assert_true(mgmt_start(eng, &cfg, &m) < 0);
    assert_null(m);
}

/* Loopback is no credential: a second server on localhost refuses every
 * change without the token, as the main one does. */
static void test_loopback_needs_token(void **state)
{
    (void)state;
    struct mgmt *m;
    struct mgmt_config cfg = {.listen = "localhost:0", .token = "loopback-token"};
    assert_int_equal(mgmt_start(eng, &cfg, &m), 0);
    struct http_resp r;
    char body[] = "";
    http_req(mgmt_port(m), "POST", "/api/v1/volumes/vm1/disable", body, 0, NULL, 0, &r);
    assert_error(&r, 401);
    http_resp_free(&r);
    const char *add = "{\"name\":\"x\",\"backing\":\"/etc/shadow\"}";
    static const char *const local[] = {"Host: 127.0.0.1", NULL};
    http_set_headers(local);
    http_req(mgmt_port(m), "POST", "/api/v1/volumes", add, strlen(add), NULL, 0, &r);
    http_set_headers(NULL);
    assert_error(&r, 401);
    http_resp_free(&r);
    assert_int_equal(calls().set_enabled, 0);
    assert_int_equal(calls().add, 0);
    http_req(mgmt_port(m), "POST", "/api/v1/volumes/vm1/disable", body, 0, "loopback-token", 0, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
    mgmt_stop(m);
    assert_int_equal(calls().set_enabled, 1);
}

/* Changes through a browser: only from the server's own page. Reads stay
 * open. */
static void test_browser_rules(void **state)
{
    (void)state;
    static const struct {
        const char *host, *origin, *site;
        bool refused;
    } cases[] = {
        {"127.0.0.1:10810", NULL, NULL, false},
        {"127.0.0.1:10810", "http://127.0.0.1:10810", "same-origin", false},
        {"127.0.0.1:10810", "http://127.0.0.1:10810", NULL, false},
        {"shoal.example:443", "https://shoal.example:443", "same-origin", false},
        {"127.0.0.1:10810", NULL, "none", false},
        {"127.0.0.1:10810", "http://evil.example", NULL, true},
        {"127.0.0.1:10810", "http://127.0.0.1:10811", NULL, true},
        {"127.0.0.1:10810", "null", NULL, true},
        {"127.0.0.1:10810", NULL, "cross-site", true},
        {"127.0.0.1:10810", NULL, "same-site", true},
        {NULL, "http://127.0.0.1:10810", NULL, true},
        {"rebound.example:10810", "http://rebound.example:10810", "same-origin", false},
        {"192.0.2.1:10810", NULL, NULL, false}, /* the token decides, not the Host */
        {NULL, NULL, NULL, false},              /* HTTP/1.0 without Host: not a browser */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = auth_browser_refusal(cases[i].host, cases[i].origin, cases[i].site);
        if ((why != NULL) != cases[i].refused)
            fail_msg("case %zu (host %s, origin %s, site %s): %s", i, cases[i].host,
                     cases[i].origin, cases[i].site, why ? why : "accepted");
    }

    /* Through the server. */
    struct http_resp r;
    static const char *const evil[] = {"Origin: http://evil.example", NULL};
    http_set_headers(evil);
    req("POST", "/api/v1/volumes/vm1/disable", NULL, TOKEN, &r);
    assert_error(&r, 403);
    http_resp_free(&r);
    assert_int_equal(calls().set_enabled, 0);
    req("GET", "/api/v1/volumes/vm1", NULL, NULL, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
    static const char *const cross[] = {"Sec-Fetch-Site: cross-site", NULL};
    http_set_headers(cross);
    req("DELETE", "/api/v1/volumes/vm1", NULL, TOKEN, &r);
    assert_error(&r, 403);
    http_resp_free(&r);
    char own[80];
    snprintf(own, sizeof own, "Origin: http://127.0.0.1:%u", port);
    const char *const same[] = {own, "Sec-Fetch-Site: same-origin", NULL};
    http_set_headers(same);
    req("POST", "/api/v1/volumes/vm1/disable", NULL, TOKEN, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
    http_set_headers(NULL);
    assert_int_equal(calls().set_enabled, 1);
}

static void test_ipv6(void **state)
{
    (void)state;
    struct mgmt *m;
    struct mgmt_config cfg = {.listen = "[::1]:0", .token = TOKEN};
    int r = mgmt_start(eng, &cfg, &m);
    if (r < 0) {
        /* No IPv6 loopback in this sandbox. */
        skip();
    }
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(mgmt_port(m))};
    inet_pton(AF_INET6, "::1", &sa.sin6_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char rq[] = "GET /api/v1/volumes HTTP/1.0\r\n\r\n";
    assert_int_equal(write(fd, rq, sizeof rq - 1), (ssize_t)(sizeof rq - 1));
    char buf[256] = "";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    assert_true(n > 12);
    /* MHD answers as HTTP/1.1 whatever the request's version. */
    assert_memory_equal(buf, "HTTP/1.", 7);
    assert_memory_equal(buf + 8, " 200", 4);
    close(fd);
    mgmt_stop(m);
}

/* ---- stats ---- */

static json_t *find_volume(json_t *vols, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(
        vols, i, v) if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0) return v;
    return NULL;
}

static void check_latency(json_t *vol)
{
    json_t *lat = json_object_get(vol, "latency_us");
    assert_true(json_is_object(lat));
    static const char *const ops[] = {"read_hit", "read_miss", "write"};
    for (int i = 0; i < 3; i++) {
        json_t *o = json_object_get(lat, ops[i]);
        assert_true(json_is_object(o));
        assert_true(json_is_number(json_object_get(o, "p50")));
        assert_true(json_is_number(json_object_get(o, "p99")));
        assert_true(json_is_integer(json_object_get(o, "count")));
        /* Raw buckets (for interval percentiles): they add up to count. */
        json_t *b = json_object_get(o, "buckets");
        assert_true(json_is_array(b));
        assert_int_equal(json_array_size(b), HIST_BUCKETS);
        json_int_t sum = 0;
        size_t k;
        json_t *x;
        json_array_foreach(b, k, x)
        {
            assert_true(json_is_integer(x));
            sum += json_integer_value(x);
        }
        assert_int_equal(sum, json_integer_value(json_object_get(o, "count")));
    }
}

static void test_stats(void **state)
{
    (void)state;
    struct http_resp r;
    req("GET", "/api/v1/stats", NULL, TOKEN, &r);
    assert_status(&r, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_non_null(r.json);

    json_t *cache = json_object_get(r.json, "cache");
    assert_true(json_is_object(cache));
    /* Every stat of the list is there, with the right JSON type. */
    for (unsigned i = 0; i < cache_stat_count; i++) {
        json_t *v = json_object_get(cache, cache_stat_descs[i].name);
        if (!v)
            fail_msg("cache.%s missing", cache_stat_descs[i].name);
        if (stat_is_f64(&cache_stat_descs[i]))
            assert_true(json_is_real(v));
        else
            assert_true(json_is_integer(v));
    }
    static const char *const required_cache[] = {"capacity_bytes", "used_bytes",  "unique_blocks",
                                                 "logical_blocks", "dedup_ratio", "metadata_bytes",
                                                 "evictions"};
    for (size_t i = 0; i < sizeof required_cache / sizeof required_cache[0]; i++)
        assert_non_null(json_object_get(cache, required_cache[i]));
    assert_int_equal(json_integer_value(json_object_get(cache, "capacity_bytes")), 1 << 30);
    assert_float_equal(json_real_value(json_object_get(cache, "dedup_ratio")), 3.0, 1e-9);
    assert_int_equal(json_integer_value(json_object_get(cache, "evictions")), 42);

    json_t *vols = json_object_get(r.json, "volumes");
    assert_true(json_is_array(vols));
    assert_int_equal(json_array_size(vols), 2);
    json_t *vm1 = find_volume(vols, "vm1");
    assert_non_null(vm1);
    for (unsigned i = 0; i < volume_stat_count; i++) {
        json_t *v = json_object_get(vm1, volume_stat_descs[i].name);
        if (!v)
            fail_msg("volume.%s missing", volume_stat_descs[i].name);
        if (stat_is_f64(&volume_stat_descs[i]))
            assert_true(json_is_real(v));
        else if (strcmp(volume_stat_descs[i].unit, "bool") == 0)
            assert_true(json_is_boolean(v));
        else
            assert_true(json_is_integer(v));
    }
    /* `enabled` is a boolean here as in /volumes (one key, one type). */
    assert_true(json_is_true(json_object_get(vm1, "enabled")));
    static const char *const required_vol[] = {
        "name",      "size_bytes", "read_ops",    "read_bytes", "read_hit_bytes", "read_miss_bytes",
        "hit_ratio", "write_ops",  "write_bytes", "trim_ops",   "zero_ops",       "flush_ops",
        "errors"};
    for (size_t i = 0; i < sizeof required_vol / sizeof required_vol[0]; i++)
        assert_non_null(json_object_get(vm1, required_vol[i]));
    assert_string_equal(json_string_value(json_object_get(vm1, "backend")),
                        "file /var/lib/shoal/vm1.img");
    assert_string_equal(json_string_value(json_object_get(vm1, "state")), "enabled");
    assert_true(json_is_false(json_object_get(vm1, "readonly")));
    assert_int_equal(json_integer_value(json_object_get(vm1, "size_bytes")), 1 << 30);
    assert_int_equal(json_integer_value(json_object_get(vm1, "read_ops")), 1000);
    assert_float_equal(json_real_value(json_object_get(vm1, "hit_ratio")), 0.75, 1e-9);
    check_latency(vm1);
    json_t *hit = json_object_get(json_object_get(vm1, "latency_us"), "read_hit");
    assert_true(json_integer_value(json_object_get(hit, "count")) > 0);
    assert_true(json_number_value(json_object_get(hit, "p50")) > 0);
    assert_true(json_number_value(json_object_get(hit, "p99")) >=
                json_number_value(json_object_get(hit, "p50")));

    json_t *gold = find_volume(vols, "gold.base-2");
    assert_non_null(gold);
    assert_string_equal(json_string_value(json_object_get(gold, "state")), "disabled");
    assert_true(json_is_false(json_object_get(gold, "enabled")));
    assert_true(json_is_true(json_object_get(gold, "readonly")));
    /* NaN (no reads) must still be valid JSON: rendered as 0. */
    assert_float_equal(json_real_value(json_object_get(gold, "hit_ratio")), 0, 0);
    assert_int_equal(json_integer_value(json_object_get(gold, "connections")), 2);

    assert_true(json_is_integer(json_object_get(r.json, "uptime_seconds")));
    assert_true(json_is_string(json_object_get(r.json, "version")));
    http_resp_free(&r);

    req("GET", "/api/v1/stats/volumes/vm1", NULL, NULL, &r);
    assert_status(&r, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "vm1");
    assert_int_equal(json_integer_value(json_object_get(r.json, "write_ops")), 200);
    assert_true(json_is_true(json_object_get(r.json, "enabled")));
    check_latency(r.json);
    http_resp_free(&r);
    req("GET", "/api/v1/stats/volumes/gold.base-2", NULL, NULL, &r);
    assert_status(&r, 200);
    assert_true(json_is_false(json_object_get(r.json, "enabled")));
    http_resp_free(&r);

    req("GET", "/api/v1/stats/volumes/nope", NULL, NULL, &r);
    assert_error(&r, 404);
    http_resp_free(&r);

    req("GET", "/api/v1/cache", NULL, NULL, &r);
    assert_status(&r, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "unique_blocks")), 131072);
    http_resp_free(&r);
}

static void test_volumes(void **state)
{
    (void)state;
    struct http_resp r;
    req("GET", "/api/v1/volumes", NULL, TOKEN, &r);
    assert_status(&r, 200);
    assert_true(json_is_array(r.json));
    assert_int_equal(json_array_size(r.json), 2);
    json_t *v = json_array_get(r.json, 0);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "vm1");
    static const char *const keys[] = {"name",     "size_bytes",  "backend",       "state",
                                       "readonly", "connections", "backend_hidden"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_non_null(json_object_get(v, keys[i]));
    /* Booleans, as in the stats records. */
    assert_true(json_is_true(json_object_get(v, "enabled")));
    assert_true(json_is_false(json_object_get(json_array_get(r.json, 1), "enabled")));
    http_resp_free(&r);

    req("GET", "/api/v1/volumes/gold.base-2", NULL, TOKEN, &r);
    assert_status(&r, 200);
    assert_true(json_is_false(json_object_get(r.json, "enabled")));
    assert_int_equal(json_integer_value(json_object_get(r.json, "size_bytes")), 256 << 20);
    assert_int_equal(json_integer_value(json_object_get(r.json, "connections")), 2);
    /* The backend description holds a quote, a backslash and a newline. */
    assert_non_null(strchr(json_string_value(json_object_get(r.json, "backend")), '\n'));
    http_resp_free(&r);

    /* A trailing slash is tolerated. */
    req("GET", "/api/v1/volumes/vm1/", NULL, NULL, &r);
    assert_status(&r, 200);
    http_resp_free(&r);

    req("GET", "/api/v1/volumes/unknown", NULL, NULL, &r);
    assert_error(&r, 404);
    http_resp_free(&r);
    req("GET", "/api/v1/volumes/..", NULL, NULL, &r);
    assert_error(&r, 404);
    http_resp_free(&r);
    req("GET", "/api/v1/volumes/%ff%fe", NULL, NULL, &r);
    assert_error(&r, 404);
    http_resp_free(&r);
}

/* ---- /metrics ---- */

static void run_promtool(const char *text)
{
    if (access("/usr/bin/promtool", X_OK) != 0) {
        fprintf(stderr, "promtool not installed: skipping the lint\n");
        return;
    }
    FILE *p = popen("/usr/bin/promtool check metrics 2>&1", "w");
    assert_non_null(p);
    fputs(text, p);
    int status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "---- metrics ----\n%s-----------------\n", text);
        fail_msg("promtool check metrics failed (status %d)", status);
    }
}

static void test_metrics(void **state)
{
    (void)state;
    struct http_resp r;
    req("GET", "/metrics", NULL, TOKEN, &r);
    assert_status(&r, 200);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    const char *t = r.body;
    assert_non_null(strstr(t, "# TYPE shoal_volume_read_ops_total counter\n"));
    assert_non_null(strstr(t, "# HELP shoal_volume_read_ops_total Read requests\n"));
    assert_non_null(strstr(t, "shoal_volume_read_ops_total{volume=\"vm1\"} 1000\n"));
    assert_non_null(strstr(t, "shoal_volume_read_ops_total{volume=\"gold.base-2\"} 0\n"));
    assert_non_null(strstr(t, "# TYPE shoal_volume_size_bytes gauge\n"));
    assert_non_null(strstr(t, "# TYPE shoal_volume_hit_ratio gauge\n"));
    assert_non_null(strstr(t, "shoal_volume_hit_ratio{volume=\"vm1\"} 0.75\n"));
    assert_non_null(strstr(t, "shoal_volume_hit_ratio{volume=\"gold.base-2\"} NaN\n"));
    /* Prometheus has no booleans: `enabled` stays 0/1 here. */
    assert_non_null(strstr(t, "shoal_volume_enabled{volume=\"vm1\"} 1\n"));
    assert_non_null(strstr(t, "shoal_volume_enabled{volume=\"gold.base-2\"} 0\n"));
    assert_non_null(strstr(t, "shoal_cache_capacity_bytes 1073741824\n"));
    assert_non_null(strstr(t, "# TYPE shoal_cache_evictions_total counter\n"));
    assert_non_null(strstr(t, "shoal_cache_dedup_ratio 3\n"));
    assert_non_null(strstr(t, "# TYPE shoal_volume_latency_seconds histogram\n"));
    assert_non_null(strstr(t, "backend=\"nbd nbd://array/\\\"gold\\\"\\\\base\\nsecond line\""));
    assert_non_null(strstr(
        t, "shoal_volume_latency_seconds_bucket{volume=\"vm1\",op=\"read_hit\",le=\"1e-06\"} 0\n"));

    /* Cumulative buckets: +Inf equals _count and the buckets never drop. */
    char inf_line[128], count_line[128];
    snprintf(inf_line, sizeof inf_line,
             "shoal_volume_latency_seconds_bucket{volume=\"vm1\",op=\"read_hit\",le=\"+Inf\"} ");
    snprintf(count_line, sizeof count_line,
             "shoal_volume_latency_seconds_count{volume=\"vm1\",op=\"read_hit\"} ");
    const char *a = strstr(t, inf_line), *b = strstr(t, count_line);
    assert_non_null(a);
    assert_non_null(b);
    unsigned long long inf = strtoull(a + strlen(inf_line), NULL, 10);
    unsigned long long cnt = strtoull(b + strlen(count_line), NULL, 10);
    assert_true(inf > 0);
    assert_int_equal(inf, cnt);
    unsigned long long prev = 0;
    const char *pfx = "shoal_volume_latency_seconds_bucket{volume=\"vm1\",op=\"read_hit\"";
    for (const char *s = strstr(t, pfx); s; s = strstr(s + 1, pfx)) {
        unsigned long long v = strtoull(strstr(s, "} ") + 2, NULL, 10);
        assert_true(v >= prev);
        prev = v;
    }

    run_promtool(t);
    http_resp_free(&r);

    req("HEAD", "/metrics", NULL, NULL, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
}

/* A node with a memcached tier (fake_cluster.c's two servers): its
 * figures in /api/v1/stats, /api/v1/cluster and /metrics. */
static void test_memcached_tier(void **state)
{
    (void)state;
    struct mgmt *m;
    static int dummy;
    struct mgmt_config cfg = {
        .listen = "127.0.0.1:0", .token = TOKEN, .memcached = (struct tier *)&dummy};
    assert_int_equal(mgmt_start(eng, &cfg, &m), 0);
    struct http_resp r;
    http_req(mgmt_port(m), "GET", "/api/v1/stats", NULL, 0, NULL, 0, &r);
    assert_status(&r, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *servers = json_object_get(json_object_get(j, "memcached"), "servers");
    assert_int_equal(json_array_size(servers), 2);
    json_t *a = json_array_get(servers, 0), *b = json_array_get(servers, 1);
    assert_string_equal(json_string_value(json_object_get(a, "server")), "cache-a:11211");
    assert_string_equal(json_string_value(json_object_get(a, "state")), "live");
    assert_int_equal(json_integer_value(json_object_get(a, "curr_items")), 100);
    assert_true(json_is_true(json_object_get(a, "stats_ok")));
    assert_null(json_object_get(a, "stats_error"));
    assert_string_equal(json_string_value(json_object_get(b, "state")), "ejected");
    assert_true(json_real_value(json_object_get(b, "retry_in_seconds")) == 1.5);
    assert_string_equal(json_string_value(json_object_get(b, "stats_error")), "CONNECTION FAILURE");
    json_t *tier = json_object_get(json_object_get(j, "memcached"), "tier");
    assert_int_equal(json_integer_value(json_object_get(tier, "put_sent")), 120);
    /* Every stat of the list, and nothing else but the identity fields. */
    assert_int_equal(json_object_size(a), mc_server_stat_count + 2);
    assert_int_equal(json_object_size(tier), mc_tier_stat_count);
    json_decref(j);
    http_resp_free(&r);

    /* Without etcd: the servers and the tier, "enabled" false. */
    http_req(mgmt_port(m), "GET", "/api/v1/cluster", NULL, 0, NULL, 0, &r);
    assert_status(&r, 200);
    j = json_loads(r.body, 0, NULL);
    assert_true(json_is_false(json_object_get(j, "enabled")));
    servers = json_object_get(j, "memcached");
    assert_int_equal(json_array_size(servers), 2);
    assert_true(json_is_true(json_object_get(json_array_get(servers, 1), "in_ring")));
    assert_true(json_real_value(json_object_get(json_array_get(servers, 0), "hit_share")) == 0.75);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "tier"), "live")), 1);
    json_decref(j);
    http_resp_free(&r);

    http_req(mgmt_port(m), "GET", "/metrics", NULL, 0, NULL, 0, &r);
    assert_status(&r, 200);
    const char *t = r.body;
    assert_non_null(strstr(t, "shoal_memcached_server_curr_items{server=\"cache-a:11211\"} 100\n"));
    assert_non_null(strstr(t, "# TYPE shoal_memcached_server_lookup_hits_total counter\n"));
    assert_non_null(
        strstr(t, "shoal_memcached_server_lookup_hits_total{server=\"cache-b:11211\"} 10\n"));
    assert_non_null(
        strstr(t, "shoal_memcached_server_info{server=\"cache-b:11211\",state=\"ejected\"} 1\n"));
    assert_non_null(strstr(t, "shoal_memcached_server_ring_share{server=\"cache-a:11211\"} 1\n"));
    assert_non_null(strstr(t, "shoal_memcached_put_sent_total 120\n"));
    assert_non_null(strstr(t, "shoal_memcached_live 1\n"));
    run_promtool(t);
    http_resp_free(&r);
    mgmt_stop(m);
}

/* ---- auth, methods, limits ---- */

/* GET /api/v1/mrc and the curves in /metrics: every point, in order, from
 * the engine's curves (the fake's: factor/4, and half that per volume). */
static void test_mrc(void **state)
{
    (void)state;
    struct http_resp r;
    req("GET", "/api/v1/mrc", NULL, NULL, &r);
    assert_status(&r, 200);
    json_t *cache = json_object_get(r.json, "cache");
    assert_true(json_is_object(cache));
    json_t *pts = json_object_get(cache, "points");
    assert_int_equal(json_array_size(pts), MRC_POINTS);
    uint64_t cap = (uint64_t)json_integer_value(json_object_get(r.json, "capacity_bytes"));
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        json_t *p = json_array_get(pts, i);
        assert_float_equal(json_real_value(json_object_get(p, "factor")), mrc_eighths[i] / 8.0,
                           1e-9);
        assert_float_equal(json_real_value(json_object_get(p, "hit_ratio")), mrc_eighths[i] / 32.0,
                           1e-9);
        assert_int_equal(json_integer_value(json_object_get(p, "cache_bytes")),
                         cap / 4096 * mrc_eighths[i] / 8 * 4096);
    }
    json_t *vols = json_object_get(r.json, "volumes");
    assert_true(json_array_size(vols) >= 2);
    json_t *v = json_array_get(vols, 0);
    assert_true(json_is_string(json_object_get(v, "name")));
    json_t *vp = json_object_get(json_object_get(v, "mrc"), "points");
    assert_float_equal(json_real_value(json_object_get(json_array_get(vp, 7), "hit_ratio")), 0.5,
                       1e-9);
    http_resp_free(&r);

    req("GET", "/metrics", NULL, NULL, &r);
    assert_status(&r, 200);
    assert_non_null(strstr(r.body, "# TYPE shoal_cache_mrc_hit_ratio gauge\n"));
    assert_non_null(strstr(r.body, "shoal_cache_mrc_hit_ratio{factor=\"0.125\"} 0.03125\n"));
    assert_non_null(strstr(r.body, "shoal_cache_mrc_hit_ratio{factor=\"4\"} 1\n"));
    assert_non_null(
        strstr(r.body, "shoal_volume_mrc_hit_ratio{volume=\"vm1\",factor=\"2\"} 0.25\n"));
    http_resp_free(&r);
}

static void test_auth(void **state)
{
    (void)state;
    struct http_resp r;
    req("POST", "/api/v1/volumes/vm1/disable", NULL, NULL, &r);
    assert_error(&r, 401);
    http_resp_free(&r);
    req("POST", "/api/v1/volumes/vm1/disable", NULL, "wrong-token!", &r);
    assert_error(&r, 401);
    http_resp_free(&r);
    req("POST", "/api/v1/volumes/vm1/disable", NULL, "s3cret-toke", &r);
    assert_error(&r, 401);
    http_resp_free(&r);
    req("POST", "/api/v1/volumes/vm1/disable", NULL, TOKEN "x", &r);
    assert_error(&r, 401);
    http_resp_free(&r);
    req("DELETE", "/api/v1/volumes/vm1", NULL, NULL, &r);
    assert_error(&r, 401);
    http_resp_free(&r);
    /* Even an unknown path: the token is checked before routing. */
    req("POST", "/nowhere", NULL, NULL, &r);
    assert_error(&r, 401);
    http_resp_free(&r);
    assert_int_equal(calls().set_enabled, 0);
    assert_int_equal(calls().remove, 0);

    req("POST", "/api/v1/volumes/vm1/disable", NULL, TOKEN, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
    assert_int_equal(calls().set_enabled, 1);

    req("GET", "/api/v1/stats", NULL, NULL, &r);
    assert_status(&r, 200); /* GETs are open */
    http_resp_free(&r);
}

static void test_methods_and_paths(void **state)
{
    (void)state;
    struct http_resp r;
    req("PUT", "/api/v1/stats", "{}", TOKEN, &r);
    assert_error(&r, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    http_resp_free(&r);
    req("DELETE", "/metrics", NULL, TOKEN, &r);
    assert_error(&r, 405);
    http_resp_free(&r);
    req("GET", "/api/v1/cache/resize", NULL, NULL, &r);
    assert_error(&r, 405);
    assert_string_equal(r.allow, "POST");
    http_resp_free(&r);
    req("PATCH", "/api/v1/volumes/vm1", "{}", TOKEN, &r);
    assert_error(&r, 405);
    assert_string_equal(r.allow, "GET, HEAD, DELETE");
    http_resp_free(&r);
    req("GET", "/api/v1/volumes/vm1/enable", NULL, NULL, &r);
    assert_error(&r, 405);
    http_resp_free(&r);
    req("POST", "/", NULL, TOKEN, &r);
    assert_error(&r, 405);
    http_resp_free(&r);

    static const char *const unknown[] = {"/api",
                                          "/api/v1",
                                          "/api/v2/stats",
                                          "/api/v1/stats/x",
                                          "/api/v1/volumes/vm1/x",
                                          "/api/v1/volumes//enable",
                                          "/metricsx",
                                          "/dashboard/nope.js",
                                          "/dashboard/app.js/x",
                                          "/dashboard/assets.h"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        req("GET", unknown[i], NULL, NULL, &r);
        if (r.status != 404)
            fail_msg("%s -> %ld", unknown[i], r.status);
        assert_error(&r, 404);
        http_resp_free(&r);
    }

    req("GET", "/", NULL, NULL, &r);
    assert_status(&r, 200);
    assert_string_equal(r.content_type, "text/html; charset=utf-8");
    assert_non_null(strstr(r.body, "dashboard"));
    http_resp_free(&r);
    req("GET", "/dashboard", NULL, NULL, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
}

/* The dashboard's files are compiled in and served with their types. */
static void test_dashboard(void **state)
{
    (void)state;
    struct http_resp r;
    static const struct {
        const char *path, *type, *needle;
    } files[] = {
        {"/", "text/html; charset=utf-8", "/dashboard/app.js"},
        {"/dashboard", "text/html; charset=utf-8", "/dashboard/style.css"},
        {"/dashboard/", "text/html; charset=utf-8", "scope-select"},
        {"/dashboard/index.html", "text/html; charset=utf-8", "volumes-body"},
        {"/dashboard/app.js", "text/javascript; charset=utf-8", "/api/v1/stats"},
        {"/dashboard/style.css", "text/css; charset=utf-8", "--accent"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        req("GET", files[i].path, NULL, NULL, &r);
        if (r.status != 200)
            fail_msg("%s -> %ld", files[i].path, r.status);
        assert_string_equal(r.content_type, files[i].type);
        assert_true(r.len > 100);
        assert_int_equal(strlen(r.body), r.len); /* text, no stray NUL */
        if (!strstr(r.body, files[i].needle))
            fail_msg("%s lacks \"%s\"", files[i].path, files[i].needle);
        http_resp_free(&r);
    }
    /* HEAD is answered like GET, without a body. */
    req("HEAD", "/dashboard/app.js", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/javascript; charset=utf-8");
    http_resp_free(&r);
    /* Files are not writable. */
    req("POST", "/dashboard/app.js", "{}", TOKEN, &r);
    assert_error(&r, 405);
    http_resp_free(&r);
    req("DELETE", "/dashboard/style.css", NULL, TOKEN, &r);
    assert_error(&r, 405);
    http_resp_free(&r);
}

static void test_body_limit(void **state)
{
    (void)state;
    size_t n = 100 * 1024;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    struct http_resp r;
    http_req(port, "POST", "/api/v1/volumes", big, n, TOKEN, 0, &r);
    assert_error(&r, 413);
    http_resp_free(&r);
    http_req(port, "POST", "/api/v1/volumes", big, n, TOKEN, 1, &r);
    assert_error(&r, 413);
    http_resp_free(&r);
    /* Just under the limit is parsed (and refused for its content). */
    size_t ok = 60 * 1024;
    big[ok - 1] = '}';
    http_req(port, "POST", "/api/v1/volumes", big, ok, TOKEN, 1, &r);
    assert_error(&r, 400);
    http_resp_free(&r);
    free(big);
    assert_int_equal(calls().add, 0);

    req("GET", "/api/v1/volumes", NULL, NULL, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
}

/* ---- control calls ---- */

static void test_volume_add(void **state)
{
    (void)state;
    struct http_resp r;
    static const char *const bad[] = {
        "{bad json",
        "[1,2]",
        "\"str\"",
        "{}",
        "{\"name\":\"x\"}",
        "{\"backing\":\"/tmp/x\"}",
        "{\"name\":\"\",\"backing\":\"/tmp/x\"}",
        "{\"name\":\"a/b\",\"backing\":\"/tmp/x\"}",
        "{\"name\":\".hidden\",\"backing\":\"/tmp/x\"}",
        "{\"name\":1,\"backing\":\"/tmp/x\"}",
        "{\"name\":\"x\",\"backing\":\"/tmp/x\",\"readonly\":\"yes\"}",
        "{\"name\":\"x\",\"backing\":\"/tmp/x\",\"read_only\":true}",
        "{\"name\":\"x\",\"backing\":\"/tmp/x\",\"conns\":-1}",
        "{\"name\":\"x\",\"name\":\"y\",\"backing\":\"/tmp/x\"}",
        "{\"name\":\"x\",\"backing\":\"/tmp/x\"} trailing",
        "{\"name\":\"x\\u0000y\",\"backing\":\"/tmp/x\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req("POST", "/api/v1/volumes", bad[i], TOKEN, &r);
        if (r.status != 400)
            fail_msg("%s -> %ld", bad[i], r.status);
        assert_error(&r, 400);
        http_resp_free(&r);
    }
    req("POST", "/api/v1/volumes", NULL, TOKEN, &r);
    assert_error(&r, 400);
    http_resp_free(&r);
    assert_int_equal(calls().add, 0);

    req("POST", "/api/v1/volumes", "{\"name\":\"vm1\",\"backing\":\"/tmp/x\"}", TOKEN, &r);
    assert_error(&r, 409);
    http_resp_free(&r);

    req("POST", "/api/v1/volumes", "{\"name\":\"vm9\",\"backing\":\"/nonexistent/disk.img\"}",
        TOKEN, &r);
    assert_error(&r, 400);
    assert_non_null(
        strstr(json_string_value(json_object_get(r.json, "error")), "No such file or directory"));
    http_resp_free(&r);

    req("POST", "/api/v1/volumes",
        "{\"name\":\"vm2\",\"backing\":\"/srv/vm2.img\",\"readonly\":true,\"enabled\":false}",
        TOKEN, &r);
    assert_status(&r, 201);
    assert_string_equal(r.location, "/api/v1/volumes/vm2");
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "vm2");
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "disabled");
    assert_true(json_is_true(json_object_get(r.json, "readonly")));
    assert_int_equal(json_integer_value(json_object_get(r.json, "size_bytes")), 64 << 20);
    http_resp_free(&r);
    struct fake_calls c = calls();
    assert_string_equal(c.last_add.name, "vm2");
    assert_string_equal(c.last_add.spec, "/srv/vm2.img");
    assert_true(c.last_add.readonly);
    assert_true(c.last_add.backend_readonly);
    assert_true(c.last_add.disabled);

    req("POST", "/api/v1/volumes", "{\"name\":\"vm3\",\"backing\":\"/srv/vm3.img\"}", TOKEN, &r);
    assert_status(&r, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "enabled");
    http_resp_free(&r);
    c = calls();
    assert_false(c.last_add.readonly);
    assert_false(c.last_add.disabled);

    req("GET", "/api/v1/volumes", NULL, NULL, &r);
    assert_int_equal(json_array_size(r.json), 4);
    http_resp_free(&r);
}

static void test_volume_remove(void **state)
{
    (void)state;
    struct http_resp r;
    req("DELETE", "/api/v1/volumes/nope", NULL, TOKEN, &r);
    assert_error(&r, 404);
    http_resp_free(&r);

    req("DELETE", "/api/v1/volumes/gold.base-2", NULL, TOKEN, &r);
    assert_error(&r, 409);
    http_resp_free(&r);
    assert_false(calls().remove_force);

    req("DELETE", "/api/v1/volumes/gold.base-2?force=maybe", NULL, TOKEN, &r);
    assert_error(&r, 400);
    http_resp_free(&r);

    req("DELETE", "/api/v1/volumes/gold.base-2?force=0", NULL, TOKEN, &r);
    assert_error(&r, 409);
    http_resp_free(&r);

    req("DELETE", "/api/v1/volumes/gold.base-2?force", NULL, TOKEN, &r);
    assert_status(&r, 204);
    assert_int_equal(r.len, 0);
    http_resp_free(&r);
    struct fake_calls c = calls();
    assert_string_equal(c.remove_name, "gold.base-2");
    assert_true(c.remove_force);

    req("DELETE", "/api/v1/volumes/vm1", NULL, TOKEN, &r);
    assert_status(&r, 204);
    http_resp_free(&r);
    assert_false(calls().remove_force);

    req("GET", "/api/v1/volumes", NULL, NULL, &r);
    assert_int_equal(json_array_size(r.json), 0);
    http_resp_free(&r);
}

static void test_enable_disable(void **state)
{
    (void)state;
    struct http_resp r;
    req("POST", "/api/v1/volumes/gold.base-2/enable", NULL, TOKEN, &r);
    assert_status(&r, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "enabled");
    http_resp_free(&r);
    struct fake_calls c = calls();
    assert_string_equal(c.enabled_name, "gold.base-2");
    assert_true(c.enabled_on);

    req("POST", "/api/v1/volumes/vm1/disable", NULL, TOKEN, &r);
    assert_status(&r, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "disabled");
    http_resp_free(&r);
    c = calls();
    assert_string_equal(c.enabled_name, "vm1");
    assert_false(c.enabled_on);
    assert_int_equal(c.set_enabled, 2);

    req("POST", "/api/v1/volumes/none/enable", NULL, TOKEN, &r);
    assert_error(&r, 404);
    http_resp_free(&r);
}

static void test_invalidate(void **state)
{
    (void)state;
    struct http_resp r;
    req("POST", "/api/v1/volumes/vm1/invalidate", NULL, TOKEN, &r);
    assert_status(&r, 200);
    assert_true(json_is_true(json_object_get(r.json, "invalidated")));
    assert_int_equal(json_integer_value(json_object_get(r.json, "length")), 1 << 30);
    http_resp_free(&r);
    struct fake_calls c = calls();
    assert_int_equal(c.invalidate, 1);
    assert_int_equal(c.invalidate_offset, 0);
    assert_int_equal(c.invalidate_length, 0);

    req("POST", "/api/v1/volumes/vm1/invalidate", "{\"offset\": 4096, \"length\": \"1M\"}", TOKEN,
        &r);
    assert_status(&r, 200);
    http_resp_free(&r);
    c = calls();
    assert_int_equal(c.invalidate_offset, 4096);
    assert_int_equal(c.invalidate_length, 1 << 20);

    static const char *const bad[] = {
        "{\"offset\": -1}",
        "{\"offset\": 1073741825}",
        "{\"offset\": 1073741824, \"length\": 1}",
        "{\"length\": \"2G\"}",
        "{\"offset\": 18446744073709551615}",
        "{\"offset\": \"lots\"}",
        "{\"offset\": 1.5}",
        "{\"start\": 0}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req("POST", "/api/v1/volumes/vm1/invalidate", bad[i], TOKEN, &r);
        if (r.status != 400)
            fail_msg("%s -> %ld", bad[i], r.status);
        assert_error(&r, 400);
        http_resp_free(&r);
    }
    assert_int_equal(calls().invalidate, 2);

    req("POST", "/api/v1/volumes/nope/invalidate", NULL, TOKEN, &r);
    assert_error(&r, 404);
    http_resp_free(&r);
}

static void test_prefetch(void **state)
{
    (void)state;
    struct http_resp r;
    req("POST", "/api/v1/volumes/vm1/prefetch", "{\"offset\": \"1M\", \"length\": 8192}", TOKEN,
        &r);
    assert_status(&r, 202);
    assert_true(json_is_true(json_object_get(r.json, "started")));
    http_resp_free(&r);
    struct fake_calls c = calls();
    assert_string_equal(c.prefetch_name, "vm1");
    assert_int_equal(c.prefetch_offset, 1 << 20);
    assert_int_equal(c.prefetch_length, 8192);

    req("POST", "/api/v1/volumes/vm1/prefetch", NULL, TOKEN, &r);
    assert_error(&r, 409);
    http_resp_free(&r);

    req("GET", "/api/v1/volumes/vm1/prefetch", NULL, NULL, &r);
    assert_status(&r, 200);
    assert_true(json_is_boolean(json_object_get(r.json, "running")));
    assert_int_equal(json_integer_value(json_object_get(r.json, "offset")), 1 << 20);
    assert_int_equal(json_integer_value(json_object_get(r.json, "length")), 8192);
    assert_true(json_is_integer(json_object_get(r.json, "done_bytes")));
    assert_true(json_is_null(json_object_get(r.json, "error")));
    http_resp_free(&r);

    /* A disabled volume (pass-through) would cache nothing: refused in
     * one line, and the engine is not asked. */
    unsigned asked = calls().prefetch;
    req("POST", "/api/v1/volumes/gold.base-2/prefetch", NULL, TOKEN, &r);
    assert_error(&r, 409);
    assert_string_equal(json_string_value(json_object_get(r.json, "error")),
                        "volume gold.base-2: acceleration is off (pass-through): enable it "
                        "before prefetching");
    http_resp_free(&r);
    assert_int_equal(calls().prefetch, asked);
    req("POST", "/api/v1/volumes/gold.base-2/enable", NULL, TOKEN, &r);
    assert_status(&r, 200);
    http_resp_free(&r);

    /* Whole volume by default: the length is spelled out for the engine. */
    req("POST", "/api/v1/volumes/gold.base-2/prefetch", NULL, TOKEN, &r);
    assert_status(&r, 202);
    http_resp_free(&r);
    c = calls();
    assert_int_equal(c.prefetch, asked + 1);
    assert_int_equal(c.prefetch_offset, 0);
    assert_int_equal(c.prefetch_length, 256 << 20);

    req("POST", "/api/v1/volumes/vm1/prefetch", "{\"length\": \"4G\"}", TOKEN, &r);
    assert_error(&r, 400);
    http_resp_free(&r);
}

static void test_resize(void **state)
{
    (void)state;
    struct http_resp r;
    req("POST", "/api/v1/cache/resize", "{\"size\": \"2G\"}", TOKEN, &r);
    assert_status(&r, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "capacity_bytes")), 2ll << 30);
    http_resp_free(&r);
    assert_int_equal(calls().resize_bytes, 2ull << 30);

    req("POST", "/api/v1/cache/resize", "{\"size\": 536870912}", TOKEN, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
    assert_int_equal(calls().resize_bytes, 512ull << 20);

    static const char *const bad[] = {"{\"size\": \"huge\"}",
                                      "{\"size\": -5}",
                                      "{}",
                                      "{\"size\": true}",
                                      "{\"size\": 1}",
                                      "",
                                      "{\"size\": \"1G\", \"x\": 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req("POST", "/api/v1/cache/resize", bad[i], TOKEN, &r);
        if (r.status != 400)
            fail_msg("%s -> %ld", bad[i], r.status);
        assert_error(&r, 400);
        http_resp_free(&r);
    }
    /* Out of range: the message says which way, not "Invalid argument";
     * the engine is not asked. */
    static const struct {
        const char *body, *says;
    } range[] = {{"{\"size\": 0}", "at least one 4096-byte block"},
                 {"{\"size\": 4095}", "at least one 4096-byte block"},
                 {"{\"size\": \"65G\"}", "more than it can grow to while running (64.0 GiB"}};
    for (size_t i = 0; i < sizeof range / sizeof range[0]; i++) {
        unsigned before = calls().resize;
        req("POST", "/api/v1/cache/resize", range[i].body, TOKEN, &r);
        assert_error(&r, 400);
        const char *msg = json_string_value(json_object_get(r.json, "error"));
        if (!msg || !strstr(msg, range[i].says))
            fail_msg("%s -> %s", range[i].body, msg ? msg : "(no message)");
        http_resp_free(&r);
        assert_int_equal(calls().resize, before);
    }
}

/* ---- robustness ---- */

static void raw_exchange(const char *data, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    /* The server may close early; a short write is fine. */
    ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
    (void)w;
    shutdown(fd, SHUT_WR);
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
}

static void test_garbage(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "\r\n\r\n",
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET /api/v1/volumes/%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /api/v1/volumes/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /api/v1/stats?%%%%=%%%% HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
        "\r\nContent-Length: 10\r\n\r\n{\"na",
        "POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
        "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n\r\n",
        "POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\n\r\n",
        "POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nAuthorization: bearer " TOKEN
        "\r\nContent-Length: 2\r\n\r\n{}",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        raw_exchange(inputs[i], strlen(inputs[i]));

    /* A very long path and a very long header. */
    size_t n = 200000;
    char *big = malloc(n + 64);
    if (!big)
        abort();
    strcpy(big, "GET /");
    memset(big + 5, 'a', n);
    strcpy(big + 5 + n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_exchange(big, strlen(big));
    free(big);

    /* Still serving. */
    struct http_resp r;
    req("GET", "/api/v1/stats", NULL, NULL, &r);
    assert_status(&r, 200);
    http_resp_free(&r);
}

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 40; i++) {
        struct http_resp r;
        static const char *const paths[] = {"/api/v1/stats", "/metrics", "/api/v1/volumes",
                                            "/api/v1/volumes/vm1"};
        req("GET", paths[i % 4], NULL, NULL, &r);
        if (r.status != 200)
            return (void *)1;
        http_resp_free(&r);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < 8; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        assert_null(ret);
    }
}

/* ---- backing paths: only for requests that carry the token ---- */

/* Every GET that shows volumes: without the token (or with a wrong one) no
 * backing path anywhere in the body and "backend_hidden": true; with it,
 * the path. */
static void test_redaction(void **state)
{
    (void)state;
    static const char *const paths[] = {"/api/v1/volumes", "/api/v1/volumes/vm1", "/api/v1/stats",
                                        "/api/v1/stats/volumes/vm1", "/metrics"};
    static const char *const tokens[] = {NULL, "wrong-token!", TOKEN};
    for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++) {
        bool shown = tokens[t] != NULL && strcmp(tokens[t], TOKEN) == 0;
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
            struct http_resp r;
            req("GET", paths[i], NULL, tokens[t], &r);
            assert_status(&r, 200);
            bool has_path = strstr(r.body, "/var/lib/shoal/vm1.img") != NULL;
            bool has_nbd = strstr(r.body, "nbd://array") != NULL;
            if (has_path != shown ||
                (strcmp(paths[i], "/api/v1/volumes/vm1") != 0 &&
                 strcmp(paths[i], "/api/v1/stats/volumes/vm1") != 0 && has_nbd != shown))
                fail_msg("GET %s with %s: backing paths %s", paths[i],
                         tokens[t] ? tokens[t] : "no token", shown ? "missing" : "shown");
            if (strcmp(paths[i], "/metrics") == 0) {
                assert_true((strstr(r.body, "backend=\"") != NULL) == shown);
                assert_non_null(strstr(r.body, "shoal_volume_info{volume=\"vm1\""));
            } else {
                json_t *v = json_is_array(r.json) ? json_array_get(r.json, 0)
                            : json_object_get(r.json, "volumes")
                                ? json_array_get(json_object_get(r.json, "volumes"), 0)
                                : r.json;
                assert_true(json_is_boolean(json_object_get(v, "backend_hidden")));
                assert_true(json_is_true(json_object_get(v, "backend_hidden")) == !shown);
                assert_true((json_object_get(v, "backend") != NULL) == shown);
            }
            http_resp_free(&r);
        }
    }
    /* A change's answer carries the token's authority: the path is shown. */
    struct http_resp r;
    req("POST", "/api/v1/volumes/vm1/disable", NULL, TOKEN, &r);
    assert_status(&r, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "backend")),
                        "file /var/lib/shoal/vm1.img");
    http_resp_free(&r);
}

/* ---- the transport-neutral entry, without HTTP ---- */

struct hdr {
    const char *name, *value;
};

static const char *table_header(const struct mgmt_req *rq, const char *name)
{
    for (const struct hdr *h = rq->transport; h && h->name; h++)
        if (strcasecmp(h->name, name) == 0)
            return h->value;
    return NULL;
}

static unsigned handle(struct mgmt *m, enum mgmt_method method, const char *path, const char *body,
                       const struct hdr *hdrs, struct mgmt_reply *rep, bool *authorized)
{
    struct mgmt_req rq = {
        .method = method,
        .path = path,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .header = table_header,
        .transport = (void *)hdrs,
    };
    memset(rep, 0, sizeof *rep);
    mgmt_handle(m, &rq, rep);
    if (authorized)
        *authorized = rq.authorized;
    return rep->status;
}

/* gate.c's check of a request head, byte for byte: what passes to
 * libmicrohttpd, what waits for more, what is refused with which status. */
static void test_gate_head(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        enum gate_result want;
        unsigned status;
    } cases[] = {
        {"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n", GATE_PASS, 0},
        {"\r\nGET / HTTP/1.0\r\n\r\n", GATE_PASS, 0},
        {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 005\r\n\r\n",
         GATE_PASS, 0},
        {"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", GATE_PASS, 0},
        {"G", GATE_MORE, 0},
        {"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n", GATE_MORE, 0},
        {"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nX-A: 1\r", GATE_MORE, 0},
        {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
         GATE_REFUSE, 400},
        {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", GATE_REFUSE, 400},
        {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", GATE_REFUSE, 400},
        {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
         GATE_REFUSE, 400},
        {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", GATE_REFUSE, 400},
        {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         GATE_REFUSE, 400},
        {"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", GATE_REFUSE, 501},
        {"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", GATE_REFUSE, 400},
        {"GET / HTTP/1.1\r\n\r\n", GATE_REFUSE, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", GATE_REFUSE, 400},
        {"GET / HTTP/1.1\nHost: x\n\n", GATE_REFUSE, 400},
        {"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", GATE_REFUSE, 400},
        {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", GATE_REFUSE, 400},
        {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", GATE_REFUSE, 400},
        {"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", GATE_REFUSE, 400},
        {"GET / HTTP/1.1\r\nHost: x\r\nX: \x7f\r\n\r\n", GATE_REFUSE, 400},
        {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", GATE_REFUSE, 505},
        {"GET / HTTX/1.1\r\nHost: x\r\n\r\n", GATE_REFUSE, 400},
        {"GET /\r\nHost: x\r\n\r\n", GATE_REFUSE, 400},
        {"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", GATE_REFUSE, 400},
        {"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", GATE_REFUSE, 400},
    };
    struct gate_verdict v;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        memset(&v, 0, sizeof v);
        enum gate_result r = gate_check_head(cases[i].head, strlen(cases[i].head), &v);
        if (r != cases[i].want || (r == GATE_REFUSE && v.status != cases[i].status))
            fail_msg("case %zu (%s): result %d status %u (%s)", i, cases[i].head, r, v.status,
                     v.message);
    }

    /* The limits: a target of GATE_MAX_TARGET passes, one more byte is 414
     * even before the line ends; a head that fills GATE_MAX_HEAD is 431. */
    static char buf[GATE_MAX_HEAD + 64];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET /");
    memset(buf + n, 'a', GATE_MAX_TARGET - 1);
    n += GATE_MAX_TARGET - 1;
    n += (size_t)snprintf(buf + n, sizeof buf - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(gate_check_head(buf, n, &v), GATE_PASS);
    n = (size_t)snprintf(buf, sizeof buf, "GET /");
    memset(buf + n, 'a', GATE_MAX_TARGET + 1);
    n += GATE_MAX_TARGET + 1;
    assert_int_equal(gate_check_head(buf, n, &v), GATE_REFUSE);
    assert_int_equal(v.status, 414);
    n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: x\r\nX: ");
    memset(buf + n, 'b', GATE_MAX_HEAD - n);
    assert_int_equal(gate_check_head(buf, GATE_MAX_HEAD - 1, &v), GATE_MORE);
    assert_int_equal(gate_check_head(buf, GATE_MAX_HEAD, &v), GATE_REFUSE);
    assert_int_equal(v.status, 431);
}

static void test_handle_entry(void **state)
{
    (void)state;
    struct mgmt_reply rep;
    bool authz;
    const struct hdr none[] = {{NULL, NULL}};
    const struct hdr good[] = {{"Authorization", "Bearer " TOKEN}, {NULL, NULL}};
    const struct hdr lower[] = {{"authorization", "bearer \t " TOKEN " "}, {NULL, NULL}};
    const struct hdr bad[] = {{"Authorization", "Bearer " TOKEN "0"}, {NULL, NULL}};
    const struct hdr basic[] = {{"Authorization", "Basic " TOKEN}, {NULL, NULL}};
    const struct hdr empty[] = {{"Authorization", "Bearer "}, {NULL, NULL}};
    const struct hdr evil[] = {{"Authorization", "Bearer " TOKEN},
                               {"Host", "127.0.0.1:1"},
                               {"Origin", "http://evil.example"},
                               {NULL, NULL}};
    const struct hdr huge[] = {
        {"Authorization", "Bearer " TOKEN}, {"Content-Length", "99999999"}, {NULL, NULL}};
    const char *add = "{\"name\":\"x\",\"backing\":\"/etc/shadow\"}";

    /* Every method but GET needs the token; the peer is not a factor
     * (there is none here at all). */
    static const enum mgmt_method changes[] = {MGMT_POST, MGMT_DELETE, MGMT_PUT, MGMT_PATCH,
                                               MGMT_OTHER};
    const struct hdr *refused[] = {none, bad, basic, empty};
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
            assert_int_equal(
                handle(srv, changes[i], "/api/v1/volumes", add, refused[k], &rep, &authz), 401);
            assert_false(authz);
            reply_free(&rep);
        }
    }
    assert_int_equal(calls().add, 0);
    assert_int_equal(
        handle(srv, MGMT_POST, "/api/v1/volumes/vm1/disable", NULL, lower, &rep, &authz), 200);
    assert_true(authz);
    reply_free(&rep);
    assert_int_equal(handle(srv, MGMT_POST, "/api/v1/volumes/vm1/enable", NULL, evil, &rep, NULL),
                     403);
    reply_free(&rep);
    assert_int_equal(handle(srv, MGMT_POST, "/api/v1/volumes", add, huge, &rep, NULL), 413);
    reply_free(&rep);
    assert_int_equal(calls().set_enabled, 1);

    /* GETs: open, authorized only with the token. */
    assert_int_equal(handle(srv, MGMT_GET, "/api/v1/volumes/vm1", NULL, none, &rep, &authz), 200);
    assert_false(authz);
    assert_null(strstr(rep.body, "vm1.img"));
    reply_free(&rep);
    assert_int_equal(handle(srv, MGMT_GET, "/api/v1/volumes/vm1", NULL, good, &rep, &authz), 200);
    assert_true(authz);
    assert_non_null(strstr(rep.body, "vm1.img"));
    reply_free(&rep);

    /* A server object without a token (which mgmt_start never makes)
     * still refuses: no token is not "anything goes". */
    struct mgmt bare = {.engine = eng};
    assert_int_equal(
        handle(&bare, MGMT_POST, "/api/v1/volumes/vm1/disable", NULL, empty, &rep, &authz), 401);
    assert_false(authz);
    reply_free(&rep);
    assert_int_equal(handle(&bare, MGMT_GET, "/api/v1/volumes/vm1", NULL, good, &rep, &authz), 200);
    assert_false(authz);
    reply_free(&rep);

    /* A transport without a header callback cannot authorize anything. */
    struct mgmt_req rq = {.method = MGMT_POST, .path = "/api/v1/volumes/vm1/disable"};
    memset(&rep, 0, sizeof rep);
    mgmt_handle(srv, &rq, &rep);
    assert_int_equal(rep.status, 401);
    reply_free(&rep);
    assert_int_equal(calls().set_enabled, 1);
}

/* The API hands its --backing-dir list to every volume it adds, and a
 * refusal by that rule is a 403 naming the volume. */
static void test_backing_dirs(void **state)
{
    (void)state;
    struct http_resp r;
    req("POST", "/api/v1/volumes", "{\"name\":\"vm5\",\"backing\":\"/srv/vms/vm5.img\"}", TOKEN,
        &r);
    assert_status(&r, 201);
    http_resp_free(&r);
    assert_string_equal(calls().last_add.backing_dirs, "/srv/vms:/data");
    req("POST", "/api/v1/volumes", "{\"name\":\"vm6\",\"backing\":\"/forbidden/etc/shadow\"}",
        TOKEN, &r);
    assert_error(&r, 403);
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "error")), "vm6"));
    http_resp_free(&r);
    req("GET", "/api/v1/volumes/vm6", NULL, TOKEN, &r);
    assert_error(&r, 404);
    http_resp_free(&r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_parse_listen),   T(test_loopback),
        T(test_start_rules),    T(test_loopback_needs_token),
        T(test_ipv6),           T(test_stats),
        T(test_volumes),        T(test_metrics),
        T(test_memcached_tier), T(test_mrc),
        T(test_auth),           T(test_methods_and_paths),
        T(test_body_limit),     T(test_volume_add),
        T(test_volume_remove),  T(test_enable_disable),
        T(test_invalidate),     T(test_prefetch),
        T(test_resize),         T(test_garbage),
        T(test_concurrent),     T(test_dashboard),
        T(test_browser_rules),  T(test_redaction),
        T(test_handle_entry),   T(test_backing_dirs),
        T(test_gate_head),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
