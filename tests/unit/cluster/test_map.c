/* The cluster's shared block -> key map (cluster/memcached_map.h,
 * core/vol_map.h): the chunk encoding and key format, the identity of a
 * read-only volume (a file's mtime changes it), and, against a real
 * memcached, two engines ("nodes") serving one gold image: what the first
 * read from its back end the second reads by key from the tier, zero
 * blocks included, without a back end read; entries merge per chunk; a
 * wrong or malformed entry costs a back end read, never wrong data; a
 * writable volume takes no part. The memcached tests skip without
 * memcached. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/fake_be.h"
#include "backend/backend.h"
#include "cluster/memcached.h"
#include "cluster/memcached_map.h"
#include "core/block.h"
#include "core/engine.h"
#include "core/vol_map.h"
#include "core/volume.h"
#include "core/volume_io.h"
#include "mc_server.h"

#define VOL_BLOCKS 640 /* ten chunks */
#define SLOW_OK_MS 20000

static const uint8_t secret[MC_MAP_SECRET] = "the cluster's secret, 32 bytes.";
static const uint8_t other_secret[MC_MAP_SECRET] = "not the cluster's secret: forged";

static void test_encoding(void **state)
{
    (void)state;
    struct tier_map_id id;
    for (unsigned i = 0; i < TIER_MAP_ID_SIZE; i++)
        id.b[i] = (uint8_t)i;
    char key[MC_MAP_KEY_MAX + 1];
    size_t n = mc_map_key(&id, 42, key);
    assert_string_equal(key, "m1:000102030405060708090a0b0c0d0e0f:2a");
    assert_int_equal(n, strlen(key));
    n = mc_map_key(&id, UINT64_MAX, key);
    assert_int_equal(n, MC_MAP_KEY_MAX);

    struct mc_map_chunk c = {.present = 0x8000000000000005ull}, d;
    for (unsigned i = 0; i < MC_MAP_CHUNK; i++)
        for (unsigned j = 0; j < FPKEY_SIZE; j++)
            c.keys[i].b[j] = (uint8_t)(i * 7 + j + 1);
    uint8_t val[MC_MAP_VALUE_LEN];
    n = mc_map_key(&id, 42, key);
    mc_map_encode(&c, key, n, secret, val);
    assert_int_equal(val[0], 5);
    assert_int_equal(val[7], 0x80);
    assert_int_equal(mc_map_decode(val, sizeof val, key, n, secret, &d), 0);
    assert_int_equal(d.present, c.present);
    struct fpkey none = {{0}};
    for (unsigned i = 0; i < MC_MAP_CHUNK; i++) {
        bool p = c.present >> i & 1;
        assert_memory_equal(&d.keys[i], p ? &c.keys[i] : &none, FPKEY_SIZE);
    }
    assert_int_equal(mc_map_decode(val, sizeof val - 1, key, n, secret, &d), -EINVAL);
    assert_int_equal(mc_map_decode(val, 4096, key, n, secret, &d), -EINVAL);
    /* The MAC: another secret, another chunk's key, a changed entry. */
    assert_int_equal(mc_map_decode(val, sizeof val, key, n, other_secret, &d), -EBADMSG);
    char key2[MC_MAP_KEY_MAX + 1];
    size_t n2 = mc_map_key(&id, 43, key2);
    assert_int_equal(mc_map_decode(val, sizeof val, key2, n2, secret, &d), -EBADMSG);
    val[8 + 2 * FPKEY_SIZE] ^= 1;
    assert_int_equal(mc_map_decode(val, sizeof val, key, n, secret, &d), -EBADMSG);
}

static void test_identity(void **state)
{
    (void)state;
    struct tier_map_id a, b;
    assert_int_equal(vol_map_identity("gold", 1 << 20, "file", "1.5 1048576", &a), 0);
    assert_int_equal(vol_map_identity("gold", 1 << 20, "file", "1.5 1048576", &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    const struct {
        const char *name;
        uint64_t size;
        const char *kind, *detail;
    } other[] = {
        {"gold2", 1 << 20, "file", "1.5 1048576"},
        {"gold", 2 << 20, "file", "1.5 1048576"},
        {"gold", 1 << 20, "nbd", "1.5 1048576"},
        {"gold", 1 << 20, "file", "1.6 1048576"},
        /* the fields are separated: moving a character across one changes it */
        {"gol", 1 << 20, "dfile", "1.5 1048576"},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        assert_int_equal(
            vol_map_identity(other[i].name, other[i].size, other[i].kind, other[i].detail, &b), 0);
        assert_memory_not_equal(&a, &b, sizeof a);
    }
    char hex[2 * TIER_MAP_ID_SIZE + 1];
    vol_map_id_hex(&a, hex);
    assert_int_equal(strlen(hex), 32);

    /* A file: its mtime is part of it, its path is not. */
    char path[] = "/tmp/shoal-map-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    struct timespec ts[2] = {{.tv_sec = 1000, .tv_nsec = 5}, {.tv_sec = 1000, .tv_nsec = 5}};
    assert_int_equal(futimens(fd, ts), 0);
    struct backend_params bp = {.spec = path, .readonly = true, .format = BACKEND_FORMAT_RAW};
    struct backend *be;
    assert_int_equal(backend_open(&bp, &be), 0);
    assert_int_equal(vol_map_backend_identity("gold", be, &a), 0);
    assert_int_equal(vol_map_backend_identity("gold", be, &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    ts[1].tv_nsec = 6;
    assert_int_equal(futimens(fd, ts), 0);
    assert_int_equal(vol_map_backend_identity("gold", be, &b), 0);
    assert_memory_not_equal(&a, &b, sizeof a);
    backend_close(be);
    close(fd);
    unlink(path);

    /* The zero block's key is SHA-256 of 4 KiB of zeros. */
    static const uint8_t zero[BLOCK_SIZE];
    assert_true(fpkey_verify(vol_map_zero_key(), zero));
}

/* ---- two nodes over one memcached ---- */

struct node {
    struct engine *e;
    struct volume *v;
    struct fake *f;
    struct tier *t;
    struct vol_scratch *s;
};

static void node_start(struct node *n, uint16_t port, bool readonly)
{
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%u", port);
    struct tier_memcached_config mc = {.servers = servers, .timeout_ms = SLOW_OK_MS};
    assert_int_equal(tier_memcached_open(&mc, &n->t), 0);
    assert_false(tier_has_map(n->t)); /* no secret yet */
    tier_memcached_set_map_secret(n->t, secret);
    assert_true(tier_has_map(n->t));
    struct engine_config ec = {.cache_bytes = 4 << 20, .tiers = &n->t, .ntiers = 1};
    assert_int_equal(engine_create(&ec, &n->e), 0);
    n->f = fake_new(VOL_BLOCKS * BLOCK_SIZE, 3);
    /* distinct blocks, and every 10th one all zeros */
    for (uint64_t b = 0; b < VOL_BLOCKS; b++) {
        uint8_t *p = n->f->data + b * BLOCK_SIZE;
        if (b % 10 == 9)
            memset(p, 0, BLOCK_SIZE);
        else
            memcpy(p, &b, sizeof b);
    }
    n->f->be.spec = (char *)"fake://gold"; /* names the image across nodes */
    struct volume_config vc = {.name = "gold", .readonly = readonly, .readahead = -1};
    assert_int_equal(engine_add_volume_backend(n->e, &vc, &n->f->be), 0);
    n->v = engine_get_volume(n->e, "gold");
    n->s = vol_scratch_new();
}

static void node_stop(struct node *n)
{
    volume_put(n->v);
    engine_destroy(n->e);
    vol_scratch_free(n->s);
}

/* Read blocks [first, end) of the volume in requests of len bytes,
 * comparing every byte. */
static void read_range(struct node *n, uint64_t first, uint64_t end, uint32_t len)
{
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, len);
    for (uint64_t off = first * BLOCK_SIZE; off < end * BLOCK_SIZE; off += len) {
        struct vol_req r = {.offset = off, .length = len, .buf = buf};
        assert_int_equal(vol_read(n->v, &r, n->s), 0);
        assert_memory_equal(buf, n->f->data + off, len);
        vol_req_finish(n->v, &r);
    }
    free(buf);
}

static void read_all(struct node *n)
{
    read_range(n, 0, VOL_BLOCKS, 64 << 10);
}

static void settle(struct node *n)
{
    assert_int_equal(tier_memcached_flush(n->t, SLOW_OK_MS), 0);
    assert_int_equal(mc_map_flush(tier_memcached_map(n->t), SLOW_OK_MS), 0);
}

static struct volume_snapshot vsnap(struct node *n)
{
    struct volume_snapshot vs;
    volume_snapshot(n->v, &vs);
    return vs;
}

static struct cache_snapshot csnap(struct node *n)
{
    struct cache_snapshot cs;
    cache_snapshot(n->e, &cs);
    return cs;
}

/* A memcached and two nodes serving the read-only gold volume through it
 * (the test is skipped without memcached). */
static void two_nodes(struct mc_server_proc *srv, struct node *a, struct node *b)
{
    if (!mc_server_available())
        skip();
    assert_int_equal(mc_server_start(srv, 0), 0);
    node_start(a, srv->port, true);
    node_start(b, srv->port, true);
}

static void two_nodes_stop(struct mc_server_proc *srv, struct node *a, struct node *b)
{
    node_stop(a);
    node_stop(b);
    mc_server_kill(srv);
}

static void test_second_node_reads_by_map(void **state)
{
    (void)state;
    struct mc_server_proc srv;
    struct node a, b;
    two_nodes(&srv, &a, &b);
    read_all(&a);
    assert_int_equal(a.f->preads, VOL_BLOCKS / 16);
    assert_int_equal(csnap(&a).map_puts, VOL_BLOCKS);
    settle(&a);
    /* the content (not the zeros) and one entry per chunk (puts are sent
     * without a reply: wait for the server to have them) */
    unsigned zeros = VOL_BLOCKS / 10;
    assert_int_equal(
        mc_server_wait_items(&srv.port, 1, VOL_BLOCKS - zeros + VOL_BLOCKS / MC_MAP_CHUNK), 0);
    assert_int_equal(mc_server_stat(srv.port, "curr_items"),
                     VOL_BLOCKS - zeros + VOL_BLOCKS / MC_MAP_CHUNK);

    /* requests of 320 blocks: longer than one tier batch (256) */
    read_range(&b, 0, VOL_BLOCKS, 320 * BLOCK_SIZE);
    assert_int_equal(b.f->preads, 0);
    struct volume_snapshot vs = vsnap(&b);
    assert_int_equal(vs.tier_hit_blocks, VOL_BLOCKS);
    assert_int_equal(vs.backend_read_bytes, 0);
    struct cache_snapshot cs = csnap(&b);
    assert_int_equal(cs.map_hits, VOL_BLOCKS);
    assert_int_equal(cs.map_lookups, 2 * 2); /* two batches a request */
    assert_int_equal(cs.map_puts, 0);
    assert_int_equal(cs.tier_hits, VOL_BLOCKS - zeros);
    /* and they are cached: a second pass is all hits */
    read_all(&b);
    assert_int_equal(b.f->preads, 0);
    /* (blocks that came by key count as hits, like the local store's) */
    assert_int_equal(vsnap(&b).read_hit_bytes, 2 * VOL_BLOCKS * BLOCK_SIZE);
    two_nodes_stop(&srv, &a, &b);
}

static struct tier_memcached_stats mstats(struct node *n)
{
    struct tier_memcached_stats ms;
    tier_memcached_stats(n->t, &ms);
    return ms;
}

/* Puts and the map allocate nothing per block or chunk once their handles
 * are built (the project's "no malloc per I/O"; the lookups' own test is
 * test_no_alloc_per_hit): the put thread's sets, the map's put thread
 * (a chunk's read, merge and set) and the map's lookups, counted through
 * the handles' allocators (mc_alloc.h). */
static void test_no_alloc_per_put(void **state)
{
    (void)state;
    struct mc_server_proc srv;
    struct node a, b;
    two_nodes(&srv, &a, &b);
    /* The first chunk builds a's handles: published a quarter at a time,
     * so the map's put thread also reads back a chunk it wrote (its
     * result buffer grows once, on the first value it reads). */
    for (uint64_t b0 = 0; b0 < MC_MAP_CHUNK; b0 += 16) {
        read_range(&a, b0, b0 + 16, 16 * BLOCK_SIZE);
        settle(&a);
    }
    struct tier_memcached_stats m0 = mstats(&a);
    assert_true(m0.put_allocs > 0); /* the counters count */
    assert_true(m0.map_allocs > 0);
    read_range(&a, MC_MAP_CHUNK, VOL_BLOCKS, 16 * BLOCK_SIZE);
    settle(&a);
    struct tier_memcached_stats m1 = mstats(&a);
    unsigned zeros = 0; /* every 10th block is all zeros: not put */
    for (unsigned blk = MC_MAP_CHUNK; blk < VOL_BLOCKS; blk++)
        zeros += blk % 10 == 9;
    assert_int_equal(m1.put_sent - m0.put_sent, VOL_BLOCKS - MC_MAP_CHUNK - zeros);
    assert_int_equal(csnap(&a).map_puts, VOL_BLOCKS);
    assert_int_equal(m1.put_allocs, m0.put_allocs);
    assert_int_equal(m1.map_allocs, m0.map_allocs);
    assert_int_equal(mc_server_wait_items(&srv.port, 1,
                                          VOL_BLOCKS - VOL_BLOCKS / 10 + VOL_BLOCKS / MC_MAP_CHUNK),
                     0);
    /* b reads by the map: its first request builds the map's handle. */
    read_range(&b, 0, 16, 16 * BLOCK_SIZE);
    struct tier_memcached_stats b0 = mstats(&b);
    read_range(&b, 16, VOL_BLOCKS, 16 * BLOCK_SIZE);
    assert_int_equal(b.f->preads, 0);
    assert_int_equal(csnap(&b).map_hits, VOL_BLOCKS);
    assert_int_equal(mstats(&b).map_allocs, b0.map_allocs);
    two_nodes_stop(&srv, &a, &b);
}

/* Entries learnt by different nodes of one chunk add up. */
static void test_entries_merge(void **state)
{
    (void)state;
    struct mc_server_proc srv;
    struct node a, b;
    two_nodes(&srv, &a, &b);
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, BLOCK_SIZE);
    for (uint64_t blk = 0; blk < 2; blk++) {
        struct node *n = blk ? &b : &a;
        struct vol_req r = {.offset = blk * BLOCK_SIZE, .length = BLOCK_SIZE, .buf = buf};
        assert_int_equal(vol_read(n->v, &r, n->s), 0);
        vol_req_finish(n->v, &r);
        settle(n);
    }
    struct tier_map_id id = a.v->map_id;
    struct fpkey keys[2];
    uint64_t found[1] = {0};
    assert_int_equal(tier_map_lookup(a.t, &id, 0, 2, keys, found), 2);
    for (uint64_t blk = 0; blk < 2; blk++)
        assert_true(fpkey_verify(&keys[blk], a.f->data + blk * BLOCK_SIZE));
    free(buf);
    two_nodes_stop(&srv, &a, &b);
}

/* Wrong entries cost back end reads, and the bytes are right: keys of
 * content no tier holds, a malformed value, and a forged chunk (not made
 * with the cluster's secret) whose entries all name content memcached does
 * hold (block 1's): without the MAC those blocks would read as block 1. */
static void test_wrong_entries(void **state)
{
    (void)state;
    struct mc_server_proc srv;
    struct node a, b;
    two_nodes(&srv, &a, &b);
    read_all(&a);
    settle(&a);
    struct tier_map_id id = a.v->map_id;
    /* chunk 0: keys of content nobody has; chunk 1: too short; chunk 2:
     * forged */
    struct mc_map_chunk c = {.present = UINT64_MAX};
    for (unsigned i = 0; i < MC_MAP_CHUNK; i++)
        memset(c.keys[i].b, 0x40 + (int)i, FPKEY_SIZE);
    uint8_t val[MC_MAP_VALUE_LEN];
    char key[MC_MAP_KEY_MAX + 1];
    size_t kn = mc_map_key(&id, 0, key);
    mc_map_encode(&c, key, kn, secret, val);
    assert_int_equal(mc_server_set(srv.port, key, val, sizeof val), 0);
    mc_map_key(&id, 1, key);
    assert_int_equal(mc_server_set(srv.port, key, val, 100), 0);
    struct fp full;
    assert_int_equal(fp_compute(a.f->data + BLOCK_SIZE, &full), 0);
    for (unsigned i = 0; i < MC_MAP_CHUNK; i++)
        c.keys[i] = fpkey_of(&full);
    kn = mc_map_key(&id, 2, key);
    mc_map_encode(&c, key, kn, other_secret, val);
    assert_int_equal(mc_server_set(srv.port, key, val, sizeof val), 0);

    read_all(&b); /* compares every byte */
    struct cache_snapshot cs = csnap(&b);
    unsigned zeros_after = 0; /* zero blocks past chunk 2 */
    for (unsigned b0 = 3 * MC_MAP_CHUNK; b0 < VOL_BLOCKS; b0++)
        zeros_after += b0 % 10 == 9;
    assert_int_equal(cs.tier_corrupt, 0);
    assert_int_equal(cs.tier_hits, VOL_BLOCKS - 3 * MC_MAP_CHUNK - zeros_after);
    assert_int_equal(vsnap(&b).backend_read_bytes, 3 * MC_MAP_CHUNK * BLOCK_SIZE);
    /* b's reads from the back end rewrote the three chunks right: the
     * malformed and forged ones were seen by lookups (up to four: until
     * the rewrite) and by the merge */
    settle(&b);
    struct mc_map_stats ms;
    mc_map_get_stats(tier_memcached_map(b.t), &ms);
    assert_true(ms.bad_values >= 2 && ms.bad_values <= 5);
    assert_true(ms.forged >= 2 && ms.forged <= 5);
    struct tier_map_id id2 = b.v->map_id;
    struct fpkey keys[3 * MC_MAP_CHUNK];
    uint64_t found[3] = {0};
    assert_int_equal(tier_map_lookup(b.t, &id2, 0, 3 * MC_MAP_CHUNK, keys, found),
                     3 * MC_MAP_CHUNK);
    for (unsigned i = 0; i < 3 * MC_MAP_CHUNK; i++)
        assert_true(fpkey_verify(&keys[i], b.f->data + (size_t)i * BLOCK_SIZE));
    two_nodes_stop(&srv, &a, &b);
}

static void test_writable_takes_no_part(void **state)
{
    (void)state;
    if (!mc_server_available())
        skip();
    struct mc_server_proc srv;
    assert_int_equal(mc_server_start(&srv, 0), 0);
    struct node a;
    node_start(&a, srv.port, false);
    assert_null(a.v->map_tier);
    read_all(&a);
    struct cache_snapshot cs = csnap(&a);
    assert_int_equal(cs.map_lookups, 0);
    assert_int_equal(cs.map_puts, 0);
    node_stop(&a);
    mc_server_kill(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_second_node_reads_by_map),
        cmocka_unit_test(test_no_alloc_per_put),
        cmocka_unit_test(test_entries_merge),
        cmocka_unit_test(test_wrong_entries),
        cmocka_unit_test(test_writable_takes_no_part),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
