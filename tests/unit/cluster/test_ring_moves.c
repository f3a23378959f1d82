/* A live change of the memcached tier's server list (mc_ring_set, as the
 * etcd membership makes it): rendezvous hashing over 8192 buckets moves
 * only the buckets the added server wins (about 1/N of them, N = 3 -> 4)
 * or the removed server held (4 -> 3); servers that stay keep their
 * health; a bad list leaves the ring as it was; an empty ring is allowed
 * only when the tier is dynamic. Also the etcd gateway's JSON answers
 * (etcd_json.c) and base64. No server is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/etcd.h"
#include "cluster/mc_ring.h"

static const struct mc_ring_params params = {
    .io_timeout_ms = 20, .failure_limit = 2, .retry_ms = 1000, .retry_max_ms = 60000};

typedef char owner_map[MC_RING_BUCKETS][272];

static void owners(struct mc_ring *r, owner_map *out)
{
    for (uint32_t b = 0; b < MC_RING_BUCKETS; b++)
        assert_true(mc_ring_bucket_owner(r, b, (*out)[b], sizeof(*out)[b]) >= 0);
}

/* Buckets whose owner differs; each moved one must involve `server`. */
static unsigned moved(owner_map *a, owner_map *b, const char *server, bool to)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < MC_RING_BUCKETS; i++) {
        if (strcmp((*a)[i], (*b)[i]) == 0)
            continue;
        n++;
        assert_string_equal(to ? (*b)[i] : (*a)[i], server);
    }
    return n;
}

static void test_add_remove(void **state)
{
    (void)state;
    static const char *const sets[][4] = {
        {"127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213", "127.0.0.1:11214"},
        {"mc-a:11211", "mc-b:11211", "mc-c:11211", "mc-d:11211"},
        {"node1.example:7000", "node2.example:7000", "node3.example:7000", "[::1]:7001"},
    };
    owner_map *before = malloc(sizeof *before), *after = malloc(sizeof *after);
    assert_non_null(before);
    assert_non_null(after);
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        char three[512], four[1024];
        snprintf(three, sizeof three, "%s,%s,%s", sets[s][0], sets[s][1], sets[s][2]);
        snprintf(four, sizeof four, "%s,%s", three, sets[s][3]);
        struct mc_ring r;
        assert_int_equal(mc_ring_init(&r, three, &params), 0);
        owners(&r, before);
        /* N = 3 -> 4: every moved bucket goes to the new server, ~1/4 of them. */
        assert_int_equal(mc_ring_set(&r, four), 0);
        owners(&r, after);
        char name4[272];
        assert_int_equal(mc_ring_check(sets[s][3], name4, sizeof name4), 0);
        unsigned add = moved(before, after, name4, true);
        printf("# %s: 3 -> 4 moved %u of %u buckets (%.1f%%)\n", sets[s][0], add, MC_RING_BUCKETS,
               100.0 * add / MC_RING_BUCKETS);
        assert_true(add > MC_RING_BUCKETS * 0.20 && add < MC_RING_BUCKETS * 0.30);
        /* N = 4 -> 3 (the first one leaves): only its buckets move. */
        char name0[272], rest[1024];
        assert_int_equal(mc_ring_check(sets[s][0], name0, sizeof name0), 0);
        unsigned held = 0;
        for (uint32_t b = 0; b < MC_RING_BUCKETS; b++)
            held += strcmp((*after)[b], name0) == 0;
        snprintf(rest, sizeof rest, "%s,%s,%s", sets[s][1], sets[s][2], sets[s][3]);
        assert_int_equal(mc_ring_set(&r, rest), 0);
        owners(&r, before);
        unsigned rem = moved(after, before, name0, false);
        printf("# %s: 4 -> 3 moved %u buckets, the %u it held (%.1f%%)\n", sets[s][0], rem, held,
               100.0 * rem / MC_RING_BUCKETS);
        assert_int_equal(rem, held);
        assert_true(rem > MC_RING_BUCKETS * 0.20 && rem < MC_RING_BUCKETS * 0.30);
        mc_ring_destroy(&r);
    }
    free(before);
    free(after);
}

static void test_health_and_errors(void **state)
{
    (void)state;
    struct mc_ring r;
    assert_int_equal(mc_ring_init(&r, "a:1,b:2", &params), 0);
    pthread_mutex_lock(&r.lock);
    r.srv[1].fails = 1;
    uint64_t layout = r.layout;
    pthread_mutex_unlock(&r.lock);
    assert_int_equal(mc_ring_set(&r, "b:2,c:3"), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.srv[0].name, "b:2");
    assert_int_equal(r.srv[0].fails, 1); /* kept */
    assert_int_equal(r.srv[1].fails, 0);
    assert_true(r.layout == layout + 1);
    /* The same list again changes nothing. */
    assert_int_equal(mc_ring_set(&r, "b:2,c:3"), 0);
    assert_true(r.layout == layout + 1);
    /* A bad list leaves the ring alone. */
    assert_int_equal(mc_ring_set(&r, "b:2,b:2"), -EINVAL);
    assert_int_equal(mc_ring_set(&r, "b:2,"), -EINVAL);
    assert_int_equal(mc_ring_set(&r, "b:99999"), -EINVAL);
    assert_int_equal(r.n, 2);
    char names[256];
    assert_int_equal(mc_ring_names(&r, names, sizeof names), 2);
    assert_string_equal(names, "b:2,c:3");
    /* Empty: no owner, every key a miss. */
    assert_int_equal(mc_ring_set(&r, ""), 0);
    assert_int_equal(mc_ring_bucket_owner(&r, 7, NULL, 0), -1);
    mc_ring_destroy(&r);

    assert_int_equal(mc_ring_init(&r, "", &params), -EINVAL);
    struct mc_ring_params dyn = params;
    dyn.allow_empty = true;
    assert_int_equal(mc_ring_init(&r, "", &dyn), 0);
    assert_int_equal(mc_ring_names(&r, names, sizeof names), 0);
    mc_ring_destroy(&r);
    assert_int_equal(mc_ring_check("host", names, sizeof names), 0);
    assert_string_equal(names, "host:11211");
    assert_int_equal(mc_ring_check("a:1,b:2", NULL, 0), -EINVAL);
}

static void test_etcd_json(void **state)
{
    (void)state;
    char err[256];
    struct etcd_kvs kvs;
    const char *range =
        "{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"YS8x\",\"create_revision\":\"2\","
        "\"mod_revision\":\"3\",\"version\":\"1\",\"value\":\"dg==\",\"lease\":\"41\"},"
        "{\"key\":\"YS8y\"}],\"count\":\"2\"}";
    assert_int_equal(etcd_parse_range(range, strlen(range), &kvs, err, sizeof err), 0);
    assert_int_equal(kvs.revision, 7);
    assert_int_equal(kvs.n, 2);
    assert_string_equal(kvs.kv[0].key, "a/1");
    assert_string_equal(kvs.kv[0].value, "v");
    assert_int_equal(kvs.kv[0].lease, 41);
    assert_int_equal(kvs.kv[0].create_revision, 2);
    assert_string_equal(kvs.kv[1].value, "");
    etcd_kvs_free(&kvs);
    const char *badkey = "{\"header\":{},\"kvs\":[{\"key\":\"!!!\"}]}";
    assert_int_equal(etcd_parse_range(badkey, strlen(badkey), &kvs, err, sizeof err), -EPROTO);
    const char *error = "{\"error\":\"x\",\"message\":\"etcdserver: requested lease not found\","
                        "\"code\":5}";
    int64_t id, ttl;
    assert_int_equal(etcd_parse_lease(error, strlen(error), &id, &ttl, err, sizeof err), -ENOENT);
    assert_string_equal(err, "etcd: etcdserver: requested lease not found");
    const char *ka = "{\"result\":{\"header\":{},\"ID\":\"123\",\"TTL\":\"5\"}}";
    assert_int_equal(etcd_parse_lease(ka, strlen(ka), &id, &ttl, err, sizeof err), 0);
    assert_int_equal(id, 123);
    assert_int_equal(ttl, 5);
    bool ok = true;
    const char *txn = "{\"header\":{\"revision\":\"2\"},\"responses\":[{\"response_range\":{"
                      "\"kvs\":[{\"key\":\"YS8x\",\"value\":\"dg==\"}]}}]}";
    assert_int_equal(etcd_parse_txn(txn, strlen(txn), &ok, &kvs, err, sizeof err), 0);
    assert_false(ok);
    assert_int_equal(kvs.n, 1);
    etcd_kvs_free(&kvs);
    unsigned nev;
    int64_t rev;
    const char *w = "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"kv\":{}},"
                    "{\"type\":\"DELETE\",\"kv\":{}}]}}";
    assert_int_equal(etcd_parse_watch(w, strlen(w), &rev, &nev, err, sizeof err), 0);
    assert_int_equal(rev, 9);
    assert_int_equal(nev, 2);
    const char *cancel = "{\"result\":{\"header\":{},\"canceled\":true}}";
    assert_int_equal(etcd_parse_watch(cancel, strlen(cancel), &rev, &nev, err, sizeof err),
                     -ECANCELED);
    assert_int_equal(etcd_parse_watch("[1]", 3, &rev, &nev, err, sizeof err), -EPROTO);

    char enc[64];
    unsigned char dec[64];
    const char *samples[] = {"", "f", "fo", "foo", "foob", "shoal/v1/nodes/a"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        etcd_b64_encode(samples[i], strlen(samples[i]), enc);
        assert_int_equal(etcd_b64_decode(enc, strlen(enc), dec), (long)strlen(samples[i]));
        assert_string_equal((char *)dec, samples[i]);
    }
    etcd_b64_encode("fo", 2, enc);
    assert_string_equal(enc, "Zm8=");
    assert_int_equal(etcd_b64_decode("Zm8", 3, dec), -EINVAL);
    assert_int_equal(etcd_b64_decode("Z=8=", 4, dec), -EINVAL);
    assert_int_equal(etcd_b64_decode("Zm==Zm8=", 8, dec), -EINVAL);
    assert_int_equal(etcd_b64_decode("Zm9=", 4, dec), -EINVAL);

    assert_int_equal(etcd_endpoints_check("http://127.0.0.1:2379,http://h:1", err, sizeof err), 0);
    assert_int_equal(etcd_endpoints_check("127.0.0.1:2379", err, sizeof err), -EINVAL);
    assert_int_equal(etcd_endpoints_check("http://h:1/v3", err, sizeof err), -EINVAL);
    assert_int_equal(etcd_endpoints_check("http://h:1,", err, sizeof err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_remove),
        cmocka_unit_test(test_health_and_errors),
        cmocka_unit_test(test_etcd_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
