/* remote-hit: the cost of a global-tier hit next to the memcached get it
 * is made of, in one run against one memcached server.
 *
 * Blocks are put through shoal's memcached tier (the keys and values the
 * daemon stores), then, round after round and in alternating order:
 *   - QD1: tier_lookup of one key (the block's SHA-256 checked by the core,
 *     as on a daemon's read that misses locally) against memcached_get of
 *     the same key on a plain libmemcached handle (binary protocol,
 *     TCP_NODELAY, as the tier's handles);
 *   - batch: tier_lookup of 32 keys against memcached_mget of the same 32
 *     keys and a fetch of every result.
 * Each figure is the median over rounds; the ratios are the issue's:
 * tier/get latency at QD1 (target <= 1.2) and tier/mget blocks per second
 * for 32 keys (target >= 0.8).
 *
 *   remote-hit --server HOST:PORT [--rounds N] [--blocks N] [--timeout-ms MS]
 * prints one JSON object. Exit 0, or 1 with a one-line error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmemcached/memcached.h>

#include "cluster/memcached.h"
#include "common/util.h"
#include "core/block.h"
#include "core/fingerprint.h"
#include "core/tier.h"

#define BATCH 32

struct opts {
    const char *server;
    unsigned rounds, blocks, timeout_ms;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double median_us(uint64_t *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    return (double)v[n / 2] / 1000.0;
}

static int parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.rounds = 5000, .blocks = 1024, .timeout_ms = 50};
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned *num = !strcmp(a, "--rounds")       ? &o->rounds
                        : !strcmp(a, "--blocks")     ? &o->blocks
                        : !strcmp(a, "--timeout-ms") ? &o->timeout_ms
                                                     : NULL;
        if (!strcmp(a, "--server") && v) {
            o->server = v;
        } else if (num && v) {
            char *end;
            unsigned long x = strtoul(v, &end, 10);
            if (*end || !x || x > 10000000) {
                fprintf(stderr, "remote-hit: bad value for %s: '%s'\n", a, v);
                return -EINVAL;
            }
            *num = (unsigned)x;
        } else {
            fprintf(stderr, "remote-hit: unknown or incomplete option '%s' (see the source)\n", a);
            return -EINVAL;
        }
    }
    if (!o->server || o->blocks < BATCH) {
        fprintf(stderr, "remote-hit: --server HOST:PORT is required (and --blocks >= %d)\n", BATCH);
        return -EINVAL;
    }
    return 0;
}

/* A plain handle as the tier sets its own up. */
static memcached_st *plain_handle(const char *server)
{
    char host[256];
    const char *colon = strrchr(server, ':');
    if (!colon || (size_t)(colon - server) >= sizeof host)
        return NULL;
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = '\0';
    memcached_st *mc = memcached_create(NULL);
    if (!mc)
        return NULL;
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    if (memcached_failed(memcached_server_add(mc, host, (in_port_t)atoi(colon + 1)))) {
        memcached_free(mc);
        return NULL;
    }
    return mc;
}

struct run {
    struct opts o;
    struct tier *t;
    memcached_st *mc;
    uint8_t *data, *out;
    struct fpkey *keys;
    char (*names)[TIER_MEMCACHED_KEY_LEN + 1];
    uint64_t tier_misses, get_misses;
};

static uint64_t time_tier(struct run *x, unsigned first, unsigned n)
{
    uint8_t *bufs[BATCH];
    for (unsigned i = 0; i < n; i++)
        bufs[i] = x->out + (size_t)i * BLOCK_SIZE;
    struct tier_req r;
    tier_req_init(&r);
    r.keys = &x->keys[first];
    r.bufs = bufs;
    r.n = n;
    uint64_t t0 = now_ns();
    int got = tier_lookup(x->t, &r);
    uint64_t took = now_ns() - t0;
    x->tier_misses += got < 0 ? n : n - (unsigned)got;
    tier_req_destroy(&r);
    return took;
}

static uint64_t time_get(struct run *x, unsigned i)
{
    size_t len;
    uint32_t flags;
    memcached_return_t rc;
    uint64_t t0 = now_ns();
    char *v = memcached_get(x->mc, x->names[i], TIER_MEMCACHED_KEY_LEN, &len, &flags, &rc);
    uint64_t took = now_ns() - t0;
    if (!v || len != BLOCK_SIZE)
        x->get_misses++;
    free(v);
    return took;
}

static uint64_t time_mget(struct run *x, unsigned first, unsigned n)
{
    const char *kp[BATCH];
    size_t kl[BATCH];
    for (unsigned i = 0; i < n; i++) {
        kp[i] = x->names[first + i];
        kl[i] = TIER_MEMCACHED_KEY_LEN;
    }
    unsigned found = 0;
    uint64_t t0 = now_ns();
    memcached_return_t rc = memcached_mget(x->mc, kp, kl, n);
    if (!memcached_failed(rc)) {
        memcached_result_st *res;
        while ((res = memcached_fetch_result(x->mc, NULL, &rc))) {
            /* Copied out, as the tier copies into the reader's buffer. */
            if (memcached_result_length(res) == BLOCK_SIZE)
                memcpy(x->out + (size_t)(found % BATCH) * BLOCK_SIZE, memcached_result_value(res),
                       BLOCK_SIZE);
            found++;
            memcached_result_free(res);
        }
    }
    uint64_t took = now_ns() - t0;
    x->get_misses += n - (found < n ? found : n);
    return took;
}

/* What the core adds to every batch: the SHA-256 check of each block, two
 * at a time as tier_req_deliver checks them. */
static uint64_t time_verify(struct run *x, unsigned first)
{
    _Static_assert(BATCH % 2 == 0, "pairs");
    uint64_t t0 = now_ns();
    for (unsigned i = first; i < first + BATCH; i += 2) {
        bool a, b;
        fpkey_verify2(&x->keys[i], x->data + (size_t)i * BLOCK_SIZE, &x->keys[i + 1],
                      x->data + (size_t)(i + 1) * BLOCK_SIZE, &a, &b);
        x->tier_misses += !a + !b;
    }
    return now_ns() - t0;
}

static int setup(struct run *x)
{
    struct tier_memcached_config c = {.servers = x->o.server, .timeout_ms = x->o.timeout_ms};
    int ret = tier_memcached_open(&c, &x->t);
    if (ret < 0)
        return ret;
    x->mc = plain_handle(x->o.server);
    unsigned nb = x->o.blocks;
    x->data = malloc((size_t)nb * BLOCK_SIZE);
    x->out = aligned_alloc(BLOCK_SIZE, (size_t)BATCH * BLOCK_SIZE);
    x->keys = calloc(nb, sizeof *x->keys);
    x->names = calloc(nb, sizeof *x->names);
    if (!x->mc || !x->data || !x->out || !x->keys || !x->names)
        return -ENOMEM;
    uint64_t s = 0x9e3779b97f4a7c15ull ^ now_ns();
    for (size_t i = 0; i < (size_t)nb * BLOCK_SIZE / 8; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        memcpy(x->data + i * 8, &s, 8);
    }
    for (unsigned i = 0; i < nb; i++) {
        struct fp f;
        if (fp_compute(x->data + (size_t)i * BLOCK_SIZE, &f) < 0)
            return -EIO;
        x->keys[i] = fpkey_of(&f);
        tier_memcached_key(&x->keys[i], x->names[i]);
        tier_put(x->t, &x->keys[i], x->data + (size_t)i * BLOCK_SIZE);
    }
    return tier_memcached_flush(x->t, 10000);
}

int main(int argc, char **argv)
{
    struct run x = {0};
    if (parse(argc, argv, &x.o) < 0)
        return 1;
    int ret = setup(&x);
    if (ret < 0) {
        fprintf(stderr, "remote-hit: setting up against %s: %s\n", x.o.server, strerror(-ret));
        return 1;
    }
    unsigned n = x.o.rounds, nb = x.o.blocks, nbatch = (n + 7) / 8;
    uint64_t *qt = calloc(n, 8), *qg = calloc(n, 8), *qm = calloc(n, 8), *bt = calloc(nbatch, 8),
             *bg = calloc(nbatch, 8), *bv = calloc(nbatch, 8);
    if (!qt || !qg || !qm || !bt || !bg || !bv) {
        fprintf(stderr, "remote-hit: out of memory\n");
        return 1;
    }
    /* Warm both paths (connections, libmemcached's buffers). */
    for (unsigned i = 0; i < 64; i++) {
        time_tier(&x, i % nb, 1);
        time_get(&x, i % nb);
    }
    x.tier_misses = x.get_misses = 0;
    uint64_t s = 12345;
    for (unsigned i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        unsigned k = (unsigned)(s % nb);
        /* Alternate which goes first, so neither gets the warmer cache. */
        if (i & 1) {
            qt[i] = time_tier(&x, k, 1);
            qg[i] = time_get(&x, k);
        } else {
            qg[i] = time_get(&x, k);
            qt[i] = time_tier(&x, k, 1);
        }
        qm[i] = time_mget(&x, k, 1); /* what the tier sends for one key */
    }
    for (unsigned i = 0; i < nbatch; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        unsigned first = (unsigned)(s % (nb - BATCH + 1));
        if (i & 1) {
            bt[i] = time_tier(&x, first, BATCH);
            bg[i] = time_mget(&x, first, BATCH);
        } else {
            bg[i] = time_mget(&x, first, BATCH);
            bt[i] = time_tier(&x, first, BATCH);
        }
        bv[i] = time_verify(&x, first);
    }
    double q_tier = median_us(qt, n), q_get = median_us(qg, n), q_mget = median_us(qm, n);
    double b_tier = median_us(bt, nbatch), b_mget = median_us(bg, nbatch),
           b_verify = median_us(bv, nbatch);
    struct tier_memcached_stats ms;
    tier_memcached_stats(x.t, &ms);
    printf("{\"rounds\": %u, \"batch_rounds\": %u, \"qd1_tier_us\": %.2f, \"qd1_get_us\": %.2f, "
           "\"qd1_mget1_us\": %.2f, \"qd1_ratio\": %.3f, \"batch\": %d, \"batch_tier_us\": %.2f, "
           "\"batch_mget_us\": %.2f, "
           "\"batch_blocks_per_s_tier\": %.0f, \"batch_blocks_per_s_mget\": %.0f, "
           "\"batch_ratio\": %.3f, \"batch_verify_us\": %.2f, \"tier_misses\": %llu, "
           "\"get_misses\": %llu, "
           "\"tier_timeouts\": %llu, \"lookup_inline\": %llu}\n",
           n, nbatch, q_tier, q_get, q_mget, q_tier / q_get, BATCH, b_tier, b_mget,
           BATCH * 1e6 / b_tier, BATCH * 1e6 / b_mget, b_mget / b_tier, b_verify,
           (unsigned long long)x.tier_misses, (unsigned long long)x.get_misses,
           (unsigned long long)x.t->c.timeouts, (unsigned long long)ms.lookup_inline);
    tier_close(x.t);
    memcached_free(x.mc);
    free(x.data), free(x.out), free(x.keys), free(x.names);
    free(qt), free(qg), free(qm), free(bt), free(bg), free(bv);
    return 0;
}
