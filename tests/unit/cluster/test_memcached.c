/* The memcached tier against real memcached servers on 127.0.0.1, through
 * the engine with a fake back end (as tests/unit/core/test_tier.c does
 * with a fake tier): a block evicted from RAM comes back from memcached
 * without a back end read; a corrupt or malformed value is rejected,
 * counted and read from the back end; a killed server (SIGKILL) and a
 * server that never answers turn into misses within the timeout, never a
 * client error, and are ejected and retried; keys spread evenly over 3
 * servers; adding a 4th moves only the keys it takes, removing one moves
 * only its own; a repeated key in a batch fills both places, forget
 * deletes; lookups cancelled by a 1 ms timeout from several threads never
 * see a late or wrong block; lookups answered on the caller's thread, and
 * sent to the threads after a failure; no allocation per remote hit, one
 * key or many, across handle rebuilds and a get that failed holding the
 * value buffer. Exits 77 when memcached is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../core/fake_be.h"
#include "cluster/memcached.h"
#include "core/block.h"
#include "core/engine.h"
#include "core/fingerprint.h"
#include "core/volume.h"
#include "core/volume_io.h"
#include "mc_server.h"

#define CACHE_BLOCKS 256
#define VOL_BLOCKS   1024
#define FIRST_READ   300 /* blocks read before going back: some 44 evicted */
/* A timeout no sanitizer build on a loaded machine reaches, for the tests
 * that are not about timeouts. */
#define SLOW_OK_MS 20000
#define MAX_SRV    4

struct fix {
    struct engine *e;
    struct volume *v;
    struct fake *f;
    struct vol_scratch *s;
    struct tier *tier;
    struct mc_server_proc srv[MAX_SRV];
    uint16_t ports[MAX_SRV];
    unsigned nsrv;
    struct mc_hang *hang;
};

static void make_distinct(struct fake *f, uint32_t salt)
{
    for (uint64_t b = 0; b < f->be.size / BLOCK_SIZE; b++) {
        uint64_t tag = b * 2654435761u + salt;
        memcpy(f->data + b * BLOCK_SIZE, &tag, sizeof tag);
    }
}

static void servers_string(const uint16_t *ports, unsigned n, char *out, size_t len)
{
    size_t off = 0;
    for (unsigned i = 0; i < n; i++)
        off += (size_t)snprintf(out + off, len - off, "%s127.0.0.1:%u", i ? "," : "", ports[i]);
}

/* nsrv real servers, plus a hanging one when `hang`. */
static struct fix *fix_new(unsigned nsrv, bool hang, uint32_t timeout_ms, uint32_t io_timeout_ms,
                           uint32_t retry_ms)
{
    struct fix *x = calloc(1, sizeof *x);
    for (unsigned i = 0; i < nsrv; i++) {
        assert_int_equal(mc_server_start(&x->srv[i], 0), 0);
        x->ports[i] = x->srv[i].port;
    }
    x->nsrv = nsrv;
    uint16_t ports[MAX_SRV + 1];
    memcpy(ports, x->ports, nsrv * sizeof *ports);
    unsigned n = nsrv;
    if (hang) {
        x->hang = mc_hang_start(&ports[n]);
        assert_non_null(x->hang);
        n++;
    }
    char servers[256];
    servers_string(ports, n, servers, sizeof servers);
    struct tier_memcached_config mc = {.servers = servers,
                                       .timeout_ms = timeout_ms,
                                       .io_timeout_ms = io_timeout_ms,
                                       .retry_ms = retry_ms};
    assert_int_equal(tier_memcached_open(&mc, &x->tier), 0);
    /* S3-FIFO: new blocks push old ones out (the default, W-TinyLFU,
     * keeps old blocks over blocks seen once), which these tests rely on. */
    struct engine_config ec = {.cache_bytes = CACHE_BLOCKS * BLOCK_SIZE,
                               .policy = "s3fifo",
                               .tiers = &x->tier,
                               .ntiers = 1};
    assert_int_equal(engine_create(&ec, &x->e), 0);
    x->f = fake_new(VOL_BLOCKS * BLOCK_SIZE, 0);
    make_distinct(x->f, 1);
    struct volume_config vc = {.name = "vol", .readahead = -1};
    assert_int_equal(engine_add_volume_backend(x->e, &vc, &x->f->be), 0);
    x->v = engine_get_volume(x->e, "vol");
    x->s = vol_scratch_new();
    return x;
}

static void fix_free(struct fix *x)
{
    volume_put(x->v);
    engine_destroy(x->e); /* closes the tier */
    vol_scratch_free(x->s);
    for (unsigned i = 0; i < x->nsrv; i++)
        mc_server_kill(&x->srv[i]);
    if (x->hang)
        mc_hang_stop(x->hang);
    free(x);
}

static int rd(struct fix *x, uint64_t off, uint32_t len, uint8_t *out)
{
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, vol_read_span(off, len));
    struct vol_req r = {.offset = off, .length = len, .buf = buf};
    int ret = vol_read(x->v, &r, x->s);
    if (ret == 0)
        memcpy(out, buf + (off & BLOCK_MASK), len);
    vol_req_finish(x->v, &r);
    free(buf);
    return ret;
}

/* Read blocks [a, b) one at a time and compare with the back end. */
static void read_blocks(struct fix *x, uint64_t a, uint64_t b)
{
    uint8_t got[BLOCK_SIZE];
    for (uint64_t blk = a; blk < b; blk++) {
        assert_int_equal(rd(x, blk * BLOCK_SIZE, BLOCK_SIZE, got), 0);
        assert_memory_equal(got, x->f->data + blk * BLOCK_SIZE, BLOCK_SIZE);
    }
}

static bool in_ram(struct fix *x, uint64_t blk)
{
    struct iovec iov[1];
    uint32_t pins[1];
    unsigned niov;
    struct vol_req r = {.offset = blk * BLOCK_SIZE, .length = BLOCK_SIZE};
    bool hit = vol_read_zc(x->v, &r, iov, pins, &niov) == 0;
    vol_req_finish(x->v, &r);
    return hit;
}

static struct fpkey key_of(const uint8_t *block)
{
    struct fp full;
    assert_int_equal(fp_compute(block, &full), 0);
    return fpkey_of(&full);
}

static struct fpkey block_key(struct fix *x, uint64_t blk)
{
    return key_of(x->f->data + blk * BLOCK_SIZE);
}

/* Fill past the cache so some blocks are evicted, and wait until what
 * the back end returned is stored in memcached. Returns the evicted
 * blocks among the first 64. */
static unsigned warm_and_evict(struct fix *x, uint64_t *gone)
{
    read_blocks(x, 0, FIRST_READ);
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.tier_puts, FIRST_READ);
    assert_int_equal(tier_memcached_flush(x->tier, SLOW_OK_MS), 0);
    if (!x->hang)
        assert_int_equal(mc_server_wait_items(x->ports, x->nsrv, FIRST_READ), 0);
    unsigned n = 0;
    for (uint64_t b = 0; b < 64; b++)
        if (!in_ram(x, b))
            gone[n++] = b;
    assert_true(n >= 10);
    return n;
}

static void read_list(struct fix *x, const uint64_t *blks, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        read_blocks(x, blks[i], blks[i] + 1);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct volume_snapshot snap(struct volume *v)
{
    struct volume_snapshot vs;
    volume_snapshot(v, &vs);
    return vs;
}

static void test_evicted_block_comes_back(void **state)
{
    (void)state;
    struct fix *x = fix_new(3, false, SLOW_OK_MS, 0, 200);
    uint64_t gone[64];
    unsigned n = warm_and_evict(x, gone);
    unsigned preads = x->f->preads;
    read_list(x, gone, n); /* compared with the back end's bytes inside */
    assert_int_equal(x->f->preads, preads);
    assert_int_equal(snap(x->v).tier_hit_blocks, n);
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.tier_hits, n);
    assert_int_equal(cs.tier_corrupt, 0);
    assert_int_equal(cs.tier_errors, 0);
    /* Served by the servers the tier says hold them. */
    unsigned per[MAX_SRV] = {0};
    for (unsigned i = 0; i < n; i++) {
        struct fpkey k = block_key(x, gone[i]);
        int s = tier_memcached_server_of(x->tier, &k);
        assert_true(s >= 0 && s < 3);
        per[s]++;
    }
    for (unsigned s = 0; s < 3; s++)
        assert_int_equal(mc_server_stat(x->ports[s], "get_hits"), per[s]);
    fix_free(x);
}

static void test_corrupt_value_rejected(void **state)
{
    (void)state;
    struct fix *x = fix_new(3, false, SLOW_OK_MS, 0, 200);
    uint64_t gone[64];
    unsigned n = warm_and_evict(x, gone);
    /* Overwrite the values in every server: the first with a short value,
     * the rest with 4 KiB of the wrong content. */
    for (unsigned i = 0; i < n; i++) {
        uint8_t bad[BLOCK_SIZE];
        memcpy(bad, x->f->data + gone[i] * BLOCK_SIZE, BLOCK_SIZE);
        bad[BLOCK_SIZE / 2] ^= 0x5a;
        char key[TIER_MEMCACHED_KEY_LEN + 1];
        struct fpkey k = block_key(x, gone[i]);
        tier_memcached_key(&k, key);
        for (unsigned s = 0; s < x->nsrv; s++)
            assert_int_equal(mc_server_set(x->ports[s], key, bad, i == 0 ? 100 : BLOCK_SIZE), 0);
    }
    unsigned preads = x->f->preads;
    read_list(x, gone, n); /* right bytes: from the back end */
    assert_int_equal(x->f->preads, preads + n);
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.tier_corrupt, n - 1);
    assert_int_equal(cs.tier_hits, 0);
    struct tier_memcached_stats ms;
    tier_memcached_stats(x->tier, &ms);
    assert_int_equal(ms.bad_values, 1);
    assert_int_equal(snap(x->v).tier_hit_blocks, 0);
    assert_int_equal(snap(x->v).errors, 0);
    fix_free(x);
}

static void test_killed_server(void **state)
{
    (void)state;
    struct fix *x = fix_new(3, false, SLOW_OK_MS, 0, 200);
    uint64_t gone[64];
    unsigned n = warm_and_evict(x, gone);
    const unsigned victim = 1;
    unsigned on_victim = 0;
    for (unsigned i = 0; i < n; i++) {
        struct fpkey k = block_key(x, gone[i]);
        on_victim += tier_memcached_server_of(x->tier, &k) == (int)victim;
    }
    assert_true(on_victim > 0);
    uint16_t port = x->srv[victim].port;
    mc_server_kill(&x->srv[victim]);

    unsigned preads = x->f->preads;
    uint64_t t0 = now_ms();
    read_list(x, gone, n);
    assert_true(now_ms() - t0 < 5000); /* refused at once: no waiting */
    /* Only the dead server's blocks came from the back end: the others'
     * keys stayed where they were. */
    assert_int_equal(x->f->preads, preads + on_victim);
    assert_int_equal(snap(x->v).errors, 0);
    assert_int_equal(snap(x->v).tier_hit_blocks, n - on_victim);
    struct tier_memcached_stats ms;
    tier_memcached_stats(x->tier, &ms);
    if (on_victim >= 2) {
        assert_int_equal(ms.ejections, 1);
        assert_int_equal(ms.live, 2);
    }

    /* Back on its port: retried after the back-off, in use again. */
    assert_int_equal(mc_server_start(&x->srv[victim], port), 0);
    usleep(300 * 1000);
    struct fpkey k = block_key(x, 0);
    for (int i = 0; i < 100 && ms.live < 3; i++) {
        tier_put(x->tier, &k, x->f->data);
        assert_int_equal(tier_memcached_flush(x->tier, SLOW_OK_MS), 0);
        tier_memcached_stats(x->tier, &ms);
        usleep(20 * 1000);
    }
    assert_int_equal(ms.live, 3);
    if (on_victim >= 2)
        assert_true(ms.revivals >= 1);
    fix_free(x);
}

static void test_hanging_server(void **state)
{
    (void)state;
    const uint32_t timeout = 100, io_timeout = 1000;
    struct fix *x = fix_new(1, true, timeout, io_timeout, SLOW_OK_MS);
    uint64_t gone[64];
    unsigned n = warm_and_evict(x, gone);
    struct fpkey keys[64];
    unsigned hung = 0;
    for (unsigned i = 0; i < n; i++) {
        keys[i] = block_key(x, gone[i]);
        hung += tier_memcached_server_of(x->tier, &keys[i]) == 1;
    }
    struct tier_memcached_stats ms;
    tier_memcached_stats(x->tier, &ms);
    /* Either the puts to it already failed (a full socket buffer) and it
     * is out, or the lookups will find out. */
    uint64_t worst = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t t0 = now_ms();
        read_list(x, &gone[i], 1);
        uint64_t took = now_ms() - t0;
        if (took > worst)
            worst = took;
    }
    /* Never longer than the timeout (plus scheduling slack). */
    printf("slowest read with a hanging server: %llu ms (timeout %u ms)\n",
           (unsigned long long)worst, timeout);
    assert_true(worst < timeout + 1500);
    assert_int_equal(snap(x->v).errors, 0);
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    if (ms.ejections == 0 && hung >= 2)
        assert_true(cs.tier_timeouts >= 1);
    /* Ejected within a few I/O timeouts. */
    for (int i = 0; i < 100 && ms.ejections == 0; i++) {
        read_list(x, gone, 1);
        usleep(50 * 1000);
        tier_memcached_stats(x->tier, &ms);
    }
    assert_true(ms.ejections >= 1);
    /* Out of the ring (its retry is far off): lookups no longer wait. */
    tier_memcached_stats(x->tier, &ms);
    assert_int_equal(ms.live, 1);
    cache_snapshot(x->e, &cs);
    uint64_t timeouts = cs.tier_timeouts;
    struct tier_req r;
    tier_req_init(&r);
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, BLOCK_SIZE);
    uint8_t *const bufs[1] = {buf};
    r.bufs = bufs;
    r.n = 1;
    for (unsigned i = 0; i < n; i++) {
        r.keys = &keys[i];
        assert_true(tier_lookup(x->tier, &r) >= 0);
    }
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.tier_timeouts, timeouts);
    free(buf);
    tier_req_destroy(&r);
    fix_free(x);
}

/* ---- placement: a tier without an engine, keys put and looked up ---- */

#define NKEYS 6000

struct keyset {
    uint8_t *data; /* NKEYS blocks */
    struct fpkey keys[NKEYS];
};

static struct keyset *keyset_new(void)
{
    struct keyset *ks = malloc(sizeof *ks);
    ks->data = malloc((size_t)NKEYS * BLOCK_SIZE);
    srand(7);
    for (size_t i = 0; i < (size_t)NKEYS * BLOCK_SIZE / sizeof(int); i++)
        ((int *)ks->data)[i] = rand();
    for (unsigned i = 0; i < NKEYS; i++)
        ks->keys[i] = key_of(ks->data + (size_t)i * BLOCK_SIZE);
    return ks;
}

static struct tier *open_tier(const uint16_t *ports, unsigned n)
{
    char servers[256];
    servers_string(ports, n, servers, sizeof servers);
    struct tier_memcached_config mc = {
        .servers = servers, .timeout_ms = SLOW_OK_MS, .put_queue_bytes = 64u << 20};
    struct tier *t;
    assert_int_equal(tier_memcached_open(&mc, &t), 0);
    return t;
}

/* How many of the keys t finds (each verified by the core). */
static unsigned count_found(struct tier *t, struct keyset *ks)
{
    struct tier_req r;
    tier_req_init(&r);
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, (size_t)TIER_BATCH_MAX * BLOCK_SIZE);
    uint8_t *bufs[TIER_BATCH_MAX];
    for (unsigned i = 0; i < TIER_BATCH_MAX; i++)
        bufs[i] = buf + (size_t)i * BLOCK_SIZE;
    unsigned found = 0;
    for (unsigned i = 0; i < NKEYS; i += TIER_BATCH_MAX) {
        r.keys = &ks->keys[i];
        r.bufs = bufs;
        r.n = NKEYS - i < TIER_BATCH_MAX ? NKEYS - i : TIER_BATCH_MAX;
        int got = tier_lookup(t, &r);
        assert_true(got >= 0);
        found += (unsigned)got;
    }
    free(buf);
    tier_req_destroy(&r);
    return found;
}

static void test_placement(void **state)
{
    (void)state;
    struct mc_server_proc srv[4];
    uint16_t ports[4];
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(mc_server_start(&srv[i], 0), 0);
        ports[i] = srv[i].port;
    }
    struct keyset *ks = keyset_new();

    /* Balance over 3 servers: within 10% of the mean, and where the tier
     * says each key is. */
    struct tier *t3 = open_tier(ports, 3);
    unsigned placed[3] = {0};
    for (unsigned i = 0; i < NKEYS; i++) {
        tier_put(t3, &ks->keys[i], ks->data + (size_t)i * BLOCK_SIZE);
        placed[tier_memcached_server_of(t3, &ks->keys[i])]++;
    }
    assert_int_equal(tier_memcached_flush(t3, SLOW_OK_MS), 0);
    assert_int_equal(mc_server_wait_items(ports, 3, NKEYS), 0);
    struct tier_memcached_stats ms;
    tier_memcached_stats(t3, &ms);
    assert_int_equal(ms.put_drops, 0);
    assert_int_equal(ms.put_sent, NKEYS);
    double mean = NKEYS / 3.0;
    for (unsigned s = 0; s < 3; s++) {
        int64_t items = mc_server_stat(ports[s], "curr_items");
        printf("server %u: %lld keys (%.1f%% of the mean)\n", s, (long long)items,
               100.0 * (double)items / mean);
        assert_int_equal(items, placed[s]);
        assert_true(items > 0.9 * mean && items < 1.1 * mean);
    }
    assert_int_equal(count_found(t3, ks), NKEYS);
    tier_close(t3);

    /* A 4th server takes about a quarter, and only what it takes moves. */
    struct tier *t4 = open_tier(ports, 4);
    unsigned to_new = 0;
    for (unsigned i = 0; i < NKEYS; i++)
        to_new += tier_memcached_server_of(t4, &ks->keys[i]) == 3;
    unsigned found = count_found(t4, ks);
    unsigned moved = NKEYS - found;
    printf("adding a 4th server moved %u of %u keys (%.3f)\n", moved, NKEYS, (double)moved / NKEYS);
    assert_int_equal(moved, to_new);
    assert_true(moved <= 1.2 * NKEYS / 4);
    assert_true(moved >= 0.8 * NKEYS / 4);
    tier_close(t4);

    /* Removing the 3rd moves only its own keys. */
    uint16_t two[2] = {ports[0], ports[1]};
    struct tier *t2 = open_tier(two, 2);
    found = count_found(t2, ks);
    printf("removing a server lost %u keys, it held %u\n", NKEYS - found, placed[2]);
    assert_int_equal(NKEYS - found, placed[2]);
    tier_close(t2);

    for (unsigned i = 0; i < 4; i++)
        mc_server_kill(&srv[i]);
    free(ks->data);
    free(ks);
}

/* One batch with a key twice and a key nobody stored: both places of the
 * repeated key are filled (one get for it), the unknown one is a miss;
 * a forgotten key is gone. */
static void test_batch_duplicates(void **state)
{
    (void)state;
    struct mc_server_proc srv;
    assert_int_equal(mc_server_start(&srv, 0), 0);
    struct tier *t = open_tier(&srv.port, 1);
    static uint8_t blocks[3][BLOCK_SIZE];
    struct fpkey k[3];
    for (unsigned i = 0; i < 3; i++) {
        memset(blocks[i], 'a' + (int)i, BLOCK_SIZE);
        k[i] = key_of(blocks[i]);
    }
    tier_put(t, &k[0], blocks[0]);
    tier_put(t, &k[1], blocks[1]);
    assert_int_equal(tier_memcached_flush(t, SLOW_OK_MS), 0);
    assert_int_equal(mc_server_wait_items(&srv.port, 1, 2), 0);
    struct fpkey keys[4] = {k[0], k[1], k[0], k[2]};
    static uint8_t out[4][BLOCK_SIZE];
    uint8_t *bufs[4] = {out[0], out[1], out[2], out[3]};
    struct tier_req r;
    tier_req_init(&r);
    r.keys = keys;
    r.bufs = bufs;
    r.n = 4;
    assert_int_equal(tier_lookup(t, &r), 3);
    assert_true(tier_req_found(&r, 0) && tier_req_found(&r, 1) && tier_req_found(&r, 2));
    assert_false(tier_req_found(&r, 3));
    assert_memory_equal(out[0], blocks[0], BLOCK_SIZE);
    assert_memory_equal(out[1], blocks[1], BLOCK_SIZE);
    assert_memory_equal(out[2], blocks[0], BLOCK_SIZE);
    assert_int_equal(mc_server_stat(srv.port, "get_hits"), 2);
    assert_int_equal(mc_server_stat(srv.port, "get_misses"), 1);
    /* Forget deletes (best effort, queued like a put). */
    t->ops->forget(t, &k[0]);
    assert_int_equal(tier_memcached_flush(t, SLOW_OK_MS), 0);
    assert_int_equal(mc_server_wait_items(&srv.port, 1, 1), 0);
    r.n = 2;
    assert_int_equal(tier_lookup(t, &r), 1);
    assert_false(tier_req_found(&r, 0));
    assert_true(tier_req_found(&r, 1));
    tier_req_destroy(&r);
    tier_close(t);
    mc_server_kill(&srv);
}

/* Many threads look up with a 1 ms timeout, so that lookups are cancelled
 * while a tier thread is answering them; each thread scribbles over its
 * buffers as soon as a lookup returns. A tier that touched a request after
 * cancel would race with that (ThreadSanitizer) or leave a wrong block
 * marked found. */
struct stress {
    struct tier *t;
    const struct fpkey *keys;
    const uint8_t *data;
    unsigned found, rounds;
};

static void *stress_main(void *arg)
{
    struct stress *st = arg;
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, 32 * (size_t)BLOCK_SIZE);
    uint8_t *bufs[32];
    for (unsigned i = 0; i < 32; i++)
        bufs[i] = buf + (size_t)i * BLOCK_SIZE;
    struct tier_req r;
    tier_req_init(&r);
    r.bufs = bufs;
    for (unsigned round = 0; round < st->rounds; round++) {
        unsigned first = (round * 7) % 32;
        r.keys = &st->keys[first];
        r.n = 32;
        int got = tier_lookup(st->t, &r);
        for (unsigned i = 0; got > 0 && i < 32; i++) {
            if (!tier_req_found(&r, i))
                continue;
            if (memcmp(bufs[i], st->data + (size_t)(first + i) * BLOCK_SIZE, BLOCK_SIZE) != 0)
                return NULL; /* found stays short of what it should be */
            st->found++;
        }
        memset(buf, 0xee, 32 * (size_t)BLOCK_SIZE);
    }
    tier_req_destroy(&r);
    free(buf);
    return NULL;
}

static void test_concurrent_cancel(void **state)
{
    (void)state;
    struct mc_server_proc srv;
    assert_int_equal(mc_server_start(&srv, 0), 0);
    char servers[64];
    servers_string(&srv.port, 1, servers, sizeof servers);
    struct tier_memcached_config c = {
        .servers = servers, .timeout_ms = 1, .io_timeout_ms = 5000, .lookup_threads = 2};
    struct tier *t;
    assert_int_equal(tier_memcached_open(&c, &t), 0);
    enum { NB = 64, NT = 4 };
    uint8_t *data = malloc((size_t)NB * BLOCK_SIZE);
    struct fpkey keys[NB];
    for (unsigned i = 0; i < NB; i++) {
        memset(data + (size_t)i * BLOCK_SIZE, (int)i + 1, BLOCK_SIZE);
        keys[i] = key_of(data + (size_t)i * BLOCK_SIZE);
        tier_put(t, &keys[i], data + (size_t)i * BLOCK_SIZE);
    }
    assert_int_equal(tier_memcached_flush(t, SLOW_OK_MS), 0);
    assert_int_equal(mc_server_wait_items(&srv.port, 1, NB), 0);
    struct stress st[NT];
    pthread_t th[NT];
    for (unsigned i = 0; i < NT; i++) {
        st[i] = (struct stress){.t = t, .keys = keys, .data = data, .rounds = 300};
        assert_int_equal(pthread_create(&th[i], NULL, stress_main, &st[i]), 0);
    }
    unsigned found = 0;
    for (unsigned i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        found += st[i].found;
    }
    printf("%u of %u blocks found within 1 ms, %llu lookups timed out\n", found, NT * 300 * 32,
           (unsigned long long)t->c.timeouts);
    assert_int_equal(t->c.corrupt, 0);
    assert_int_equal(found, (unsigned)t->c.hits);
    tier_close(t);
    mc_server_kill(&srv);
    free(data);
}

/* One lookup of keys[first..first+n) straight on the tier; returns what
 * tier_lookup returns. */
static int lookup_n(struct tier *t, const struct fpkey *keys, unsigned first, unsigned n,
                    uint8_t *buf)
{
    uint8_t *bufs[32];
    for (unsigned i = 0; i < n; i++)
        bufs[i] = buf + (size_t)i * BLOCK_SIZE;
    struct tier_req r;
    tier_req_init(&r);
    r.keys = &keys[first];
    r.bufs = bufs;
    r.n = n;
    int got = tier_lookup(t, &r);
    tier_req_destroy(&r);
    return got;
}

/* Lookups are answered on the caller's thread (no thread hand-off, so no
 * timeout is ever counted for them): one key by a plain get, several by a
 * multi-get, a value of the wrong size ignored. A lookup that sees its
 * server fail sends the next ones to the tier's threads. Against a server
 * that never answers, an inline lookup gives up after timeout_ms on its
 * own (its poll timeout), not the core. */
static void test_inline_lookups(void **state)
{
    (void)state;
    struct mc_server_proc srv;
    assert_int_equal(mc_server_start(&srv, 0), 0);
    char servers[64];
    servers_string(&srv.port, 1, servers, sizeof servers);
    struct tier_memcached_config c = {
        .servers = servers, .timeout_ms = SLOW_OK_MS, .retry_ms = 60000, .retry_max_ms = 60000};
    struct tier *t;
    assert_int_equal(tier_memcached_open(&c, &t), 0);
    enum { NB = 40 };
    uint8_t *data = malloc((size_t)NB * BLOCK_SIZE);
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, 32 * (size_t)BLOCK_SIZE);
    struct fpkey keys[NB];
    for (unsigned i = 0; i < NB; i++) {
        memset(data + (size_t)i * BLOCK_SIZE, (int)i + 7, BLOCK_SIZE);
        keys[i] = key_of(data + (size_t)i * BLOCK_SIZE);
        if (i < NB - 1) /* the last one gets a short value below */
            tier_put(t, &keys[i], data + (size_t)i * BLOCK_SIZE);
    }
    char name[TIER_MEMCACHED_KEY_LEN + 1];
    tier_memcached_key(&keys[NB - 1], name);
    assert_int_equal(mc_server_set(srv.port, name, "short", 5), 0);
    assert_int_equal(tier_memcached_flush(t, SLOW_OK_MS), 0);
    assert_int_equal(mc_server_wait_items(&srv.port, 1, NB), 0);

    for (unsigned i = 0; i < NB - 1; i++) {
        assert_int_equal(lookup_n(t, keys, i, 1, buf), 1);
        assert_memory_equal(buf, data + (size_t)i * BLOCK_SIZE, BLOCK_SIZE);
    }
    assert_int_equal(lookup_n(t, keys, 0, 32, buf), 32);
    assert_memory_equal(buf + 31 * (size_t)BLOCK_SIZE, data + 31 * (size_t)BLOCK_SIZE, BLOCK_SIZE);
    assert_int_equal(lookup_n(t, keys, NB - 1, 1, buf), 0);
    struct tier_memcached_stats ms;
    tier_memcached_stats(t, &ms);
    assert_int_equal(ms.lookup_inline, NB + 1);
    assert_int_equal(ms.bad_values, 1);
    assert_int_equal(t->c.timeouts, 0);

    /* The server dies: that lookup is a miss on the caller's thread, the
     * next one goes to the threads. */
    mc_server_kill(&srv);
    assert_true(lookup_n(t, keys, 0, 1, buf) <= 0);
    assert_true(lookup_n(t, keys, 1, 1, buf) <= 0);
    tier_memcached_stats(t, &ms);
    assert_int_equal(ms.lookup_inline, NB + 2);
    /* The first one met the dead server (so the next went to the threads):
     * the core saw a miss, the tier counts the failure. */
    assert_true(ms.lookup_failures >= 1);
    tier_close(t);

    /* A server that accepts and never answers: the inline lookup returns
     * by itself after about timeout_ms, with no core timeout counted. */
    uint16_t hport;
    struct mc_hang *h = mc_hang_start(&hport);
    assert_non_null(h);
    servers_string(&hport, 1, servers, sizeof servers);
    c = (struct tier_memcached_config){
        .servers = servers, .timeout_ms = 100, .io_timeout_ms = 5000};
    assert_int_equal(tier_memcached_open(&c, &t), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_true(lookup_n(t, keys, 0, 1, buf) <= 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms_took = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("inline lookup against a hanging server: %ld ms (timeout 100 ms)\n", ms_took);
    assert_true(ms_took >= 90 && ms_took < 1500);
    assert_int_equal(t->c.timeouts, 0);
    tier_memcached_stats(t, &ms);
    assert_int_equal(ms.lookup_inline, 1);
    assert_int_equal(ms.lookup_failures, 1); /* counted here, not by the core */
    tier_close(t);
    mc_hang_stop(h);

    /* A server that answers with a byte now and then (each wait for the
     * network is shorter than the timeout): the watchdog cuts the inline
     * lookup off after about timeout_ms, where it once took the 31 s the
     * server needed to send the value. */
    h = mc_hang_start_trickle(&hport);
    assert_non_null(h);
    servers_string(&hport, 1, servers, sizeof servers);
    c = (struct tier_memcached_config){
        .servers = servers, .timeout_ms = 100, .io_timeout_ms = 5000};
    assert_int_equal(tier_memcached_open(&c, &t), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_true(lookup_n(t, keys, 0, 1, buf) <= 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms_took = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("inline lookup against a trickling server: %ld ms (timeout 100 ms)\n", ms_took);
    assert_true(ms_took >= 90 && ms_took < 1500);
    tier_memcached_stats(t, &ms);
    assert_int_equal(ms.lookup_inline, 1);
    assert_int_equal(ms.lookup_failures, 1);
    assert_int_equal(ms.lookup_cut, 1);
    tier_close(t);
    mc_hang_stop(h);
    free(buf);
    free(data);
}

/* Allocations on this thread (the caller's: inline lookups run on it),
 * counted while `counting`: the tier's own counter (lookup_allocs) sees
 * what libmemcached allocates through the handles' hooks, this sees any
 * malloc at all, the core's and libc's included. glibc lets a program
 * replace malloc; the sanitizers replace it themselves, so their builds
 * rely on the tier's counter. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define THREAD_ALLOCS 0
#else
#define THREAD_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t nelem, size_t size);
extern void *__libc_realloc(void *p, size_t n);
static __thread bool counting;
static __thread unsigned long thread_allocs;

void *malloc(size_t n)
{
    thread_allocs += counting;
    return __libc_malloc(n);
}

void *calloc(size_t nelem, size_t size)
{
    thread_allocs += counting;
    return __libc_calloc(nelem, size);
}

void *realloc(void *p, size_t n)
{
    thread_allocs += counting;
    return __libc_realloc(p, n);
}
#endif

static void count_allocs(bool on)
{
#if THREAD_ALLOCS
    counting = on;
#else
    (void)on;
#endif
}

static unsigned long allocs_seen(void)
{
#if THREAD_ALLOCS
    return thread_allocs;
#else
    return 0;
#endif
}

static struct tier_memcached_stats tier_stats(struct tier *t)
{
    struct tier_memcached_stats ms;
    tier_memcached_stats(t, &ms);
    return ms;
}

/* Blocks [0, NSTORED) are put in memcached, [NSTORED, 2 x NSTORED) never
 * are: their lookups are misses. */
#define NSTORED 64
struct blocks {
    uint8_t *data; /* 2 x NSTORED blocks */
    struct fpkey keys[2 * NSTORED];
};

/* `rounds` lookups of `batch` keys from keys[lo .. hi), moving along by
 * `batch`: every block found must be the bytes stored and every miss must
 * leave its buffer alone; and none of them may allocate, on this thread or
 * in libmemcached, all being answered on this thread. Returns the blocks
 * found. */
static uint64_t lookups_without_malloc(struct tier *t, const struct blocks *b, unsigned lo,
                                       unsigned hi, unsigned batch, unsigned rounds, uint8_t *buf)
{
    struct tier_memcached_stats before = tier_stats(t);
    uint64_t hits = t->c.hits, want_hits = 0;
    unsigned long seen = allocs_seen();
    for (unsigned i = 0; i < rounds; i++) {
        unsigned first = lo + (i * batch) % (hi - lo - batch + 1);
        memset(buf, 0, (size_t)batch * BLOCK_SIZE);
        count_allocs(true);
        int got = lookup_n(t, b->keys, first, batch, buf);
        count_allocs(false);
        unsigned want = 0;
        for (unsigned k = first; k < first + batch; k++) {
            uint8_t *out = buf + (size_t)(k - first) * BLOCK_SIZE;
            if (k < NSTORED) {
                assert_memory_equal(out, b->data + (size_t)k * BLOCK_SIZE, BLOCK_SIZE);
                want++;
            } else {
                static const uint8_t zero[BLOCK_SIZE];
                assert_memory_equal(out, zero, BLOCK_SIZE);
            }
        }
        assert_int_equal(got, want);
        want_hits += want;
    }
    struct tier_memcached_stats after = tier_stats(t);
    printf("%u lookups of %u key(s), %llu found: %llu allocations in libmemcached, %lu on the "
           "thread\n",
           rounds, batch, (unsigned long long)want_hits,
           (unsigned long long)(after.lookup_allocs - before.lookup_allocs), allocs_seen() - seen);
    assert_int_equal(after.lookup_allocs, before.lookup_allocs);
    assert_int_equal(allocs_seen(), seen);
    assert_int_equal(after.lookup_inline - before.lookup_inline, rounds);
    assert_int_equal(t->c.hits - hits, want_hits);
    return want_hits;
}

/* Build the handle (connecting to the servers allocates): one lookup of
 * each stored key. */
static void warm_up(struct tier *t, const struct blocks *b, uint8_t *buf)
{
    for (unsigned i = 0; i < NSTORED; i++)
        assert_int_equal(lookup_n(t, b->keys, i, 1, buf), 1);
}

static int64_t server_hits(const uint16_t *ports, unsigned n)
{
    int64_t sum = 0;
    for (unsigned i = 0; i < n; i++)
        sum += mc_server_stat(ports[i], "get_hits");
    return sum;
}

/* A remote hit allocates nothing: the one-key get reads its value into
 * the inline slot's spare buffer and gives it back (mc_alloc.h), the
 * multi-get into a result buffer that is reused. After a warm-up, 1000
 * one-key hits, 1000 one-key misses and 100 lookups of 32 keys (half of
 * them hits) add no allocation. The spare outlives handle rebuilds (new
 * server lists), and a get that failed with its value half read (the
 * handle freed while its result held the spare) gives it back: the hits
 * after it allocate nothing either. */
static void test_no_alloc_per_hit(void **state)
{
    (void)state;
    struct mc_server_proc srv[2];
    uint16_t ports[2];
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(mc_server_start(&srv[i], 0), 0);
        ports[i] = srv[i].port;
    }
    char servers[128];
    servers_string(ports, 2, servers, sizeof servers);
    struct tier_memcached_config c = {
        .servers = servers, .timeout_ms = SLOW_OK_MS, .retry_ms = 60000, .retry_max_ms = 60000};
    struct tier *t;
    assert_int_equal(tier_memcached_open(&c, &t), 0);
    struct blocks *b = malloc(sizeof *b);
    b->data = malloc(2 * (size_t)NSTORED * BLOCK_SIZE);
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, 32 * (size_t)BLOCK_SIZE);
    for (unsigned i = 0; i < 2 * NSTORED; i++) {
        uint8_t *blk = b->data + (size_t)i * BLOCK_SIZE;
        for (unsigned j = 0; j < BLOCK_SIZE; j++)
            blk[j] = (uint8_t)(i * 131 + j * 7 + (j >> 8));
        b->keys[i] = key_of(blk);
        if (i < NSTORED)
            tier_put(t, &b->keys[i], blk);
    }
    assert_int_equal(tier_memcached_flush(t, SLOW_OK_MS), 0);
    assert_int_equal(mc_server_wait_items(ports, 2, NSTORED), 0);

    warm_up(t, b, buf);
    assert_int_equal(lookup_n(t, b->keys, 0, 32, buf), 32);
    assert_true(tier_stats(t).lookup_allocs > 0); /* the counter counts */
    int64_t get_hits = server_hits(ports, 2);
    uint64_t found = lookups_without_malloc(t, b, 0, NSTORED, 1, 1000, buf);
    assert_int_equal(found, 1000);
    found += lookups_without_malloc(t, b, NSTORED, 2 * NSTORED, 1, 1000, buf);
    assert_int_equal(found, 1000);
    found += lookups_without_malloc(t, b, NSTORED / 2, NSTORED + NSTORED / 2, 32, 100, buf);
    /* The servers did answer them. */
    assert_int_equal(server_hits(ports, 2), get_hits + (int64_t)found);

    /* A get whose value stops a quarter of the way: the inline slot's
     * handle fails and is freed while its result holds the spare. */
    uint16_t pport;
    struct mc_hang *h = mc_hang_start_partial(&pport);
    assert_non_null(h);
    char partial[64];
    servers_string(&pport, 1, partial, sizeof partial);
    tier_close(t);
    c = (struct tier_memcached_config){.servers = partial,
                                       .timeout_ms = 300,
                                       .io_timeout_ms = 5000,
                                       .retry_ms = 60000,
                                       .retry_max_ms = 60000};
    assert_int_equal(tier_memcached_open(&c, &t), 0);
    assert_true(lookup_n(t, b->keys, 0, 1, buf) <= 0);
    assert_int_equal(tier_stats(t).lookup_inline, 1);
    assert_int_equal(mc_hang_answered(h), 1); /* the value was on its way */
    /* A new list (a rebuild) of the real servers: once the new handle is
     * up, hits allocate nothing again, so the spare came back. */
    assert_int_equal(tier_memcached_set_servers(t, servers), 0);
    warm_up(t, b, buf);
    lookups_without_malloc(t, b, 0, NSTORED, 1, 1000, buf);
    /* And across a rebuild onto the same servers (the list reordered). */
    char swapped[128];
    uint16_t rev[2] = {ports[1], ports[0]};
    servers_string(rev, 2, swapped, sizeof swapped);
    assert_int_equal(tier_memcached_set_servers(t, swapped), 0);
    warm_up(t, b, buf);
    lookups_without_malloc(t, b, 0, NSTORED, 1, 1000, buf);
    tier_close(t);
    mc_hang_stop(h);
    for (unsigned i = 0; i < 2; i++)
        mc_server_kill(&srv[i]);
    free(buf);
    free(b->data);
    free(b);
}

static void test_bad_config(void **state)
{
    (void)state;
    const char *bad[] = {
        "",          "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", ":11211",
        "::1:11211", "[::1",        "a:1,a:1",         "a:1,",        "127.0.0.1:1,,b:2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tier_memcached_config c = {.servers = bad[i]};
        struct tier *t = NULL;
        assert_int_equal(tier_memcached_open(&c, &t), -EINVAL);
    }
    struct tier_memcached_config c = {.servers = "127.0.0.1:1", .put_queue_bytes = 100};
    struct tier *t = NULL;
    assert_int_equal(tier_memcached_open(&c, &t), -EINVAL);
    c = (struct tier_memcached_config){.servers = "[::1]:11211,localhost,127.0.0.1:11212"};
    assert_int_equal(tier_memcached_open(&c, &t), 0);
    struct tier_memcached_stats ms;
    tier_memcached_stats(t, &ms);
    assert_int_equal(ms.servers, 3);
    assert_int_equal(t->timeout_ms, TIER_MEMCACHED_TIMEOUT_MS);
    assert_string_equal(t->ops->name, "memcached");
    tier_close(t);
}

int main(void)
{
    if (!mc_server_available()) {
        fprintf(stderr, "memcached is not installed: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_evicted_block_comes_back),
        cmocka_unit_test(test_corrupt_value_rejected),
        cmocka_unit_test(test_killed_server),
        cmocka_unit_test(test_hanging_server),
        cmocka_unit_test(test_batch_duplicates),
        cmocka_unit_test(test_concurrent_cancel),
        cmocka_unit_test(test_inline_lookups),
        cmocka_unit_test(test_no_alloc_per_hit),
        cmocka_unit_test(test_placement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
