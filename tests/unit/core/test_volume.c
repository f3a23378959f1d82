/* The volume data path over an in-memory fake back end that can pause a
 * fetch and inject errors: hits and misses, write-through, partial writes,
 * zero/trim, odd sizes, dedup across volumes, disable/invalidate, and the
 * race rule with a real thread interleaving. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/block.h"
#include "core/engine.h"
#include "core/fingerprint.h"
#include "core/vol_fence.h"
#include "core/volume.h"
#include "core/volume_io.h"
#include "fake_be.h"

/* ---- fixture ---- */

struct fix {
    struct engine *e;
    struct volume *v;
    struct fake *f;
    struct vol_scratch *s;
};

static struct volume *add(struct engine *e, const char *name, struct fake *f)
{
    struct volume_config cfg = {.name = name};
    assert_int_equal(engine_add_volume_backend(e, &cfg, &f->be), 0);
    return engine_get_volume(e, name);
}

static int setup(void **state)
{
    struct fix *x = calloc(1, sizeof *x);
    struct engine_config ec = {.cache_bytes = 16u << 20};
    assert_int_equal(engine_create(&ec, &x->e), 0);
    x->f = fake_new(4u << 20, 0);
    x->v = add(x->e, "vol", x->f);
    x->s = vol_scratch_new();
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fix *x = *state;
    volume_put(x->v);
    engine_destroy(x->e);
    vol_scratch_free(x->s);
    free(x);
    return 0;
}

/* Read [off, off+len) through the cache into out (full two-step cycle). */
static int rd(struct fix *x, struct volume *v, uint64_t off, uint32_t len, uint8_t *out, bool *hit)
{
    size_t span = vol_read_span(off, len);
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, span ? span : BLOCK_SIZE);
    struct vol_req r = {.offset = off, .length = len, .buf = buf, .flags = VOL_NOWAIT};
    int ret = vol_read(v, &r, NULL);
    if (hit)
        *hit = ret == 0;
    if (ret == -EAGAIN) {
        r.flags = 0;
        ret = vol_read(v, &r, x->s);
    }
    if (ret == 0)
        memcpy(out, buf + (off & BLOCK_MASK), len);
    vol_req_finish(v, &r);
    free(buf);
    return ret;
}

static int wr(struct fix *x, struct volume *v, uint64_t off, uint32_t len, const uint8_t *data)
{
    struct vol_req r = {.offset = off, .length = len, .buf = (void *)data};
    int ret = vol_write(v, &r, x->s);
    vol_req_finish(v, &r);
    return ret;
}

static void check_matches_backend(struct fix *x, uint64_t off, uint32_t len)
{
    uint8_t *got = malloc(len);
    assert_int_equal(rd(x, x->v, off, len, got, NULL), 0);
    assert_memory_equal(got, x->f->data + off, len);
    free(got);
}

/* ---- tests ---- */

static void test_miss_then_hit(void **state)
{
    struct fix *x = *state;
    uint8_t buf[3 * BLOCK_SIZE];
    bool hit;
    assert_int_equal(rd(x, x->v, 0, 3 * BLOCK_SIZE, buf, &hit), 0);
    assert_false(hit);
    assert_memory_equal(buf, x->f->data, 3 * BLOCK_SIZE);
    unsigned before = x->f->preads;
    assert_int_equal(rd(x, x->v, 100, 9000, buf, &hit), 0);
    assert_true(hit);
    assert_int_equal(x->f->preads, before);
    assert_memory_equal(buf, x->f->data + 100, 9000);
    struct volume_snapshot vs;
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.read_ops, 2);
    assert_int_equal(vs.read_bytes, 3 * BLOCK_SIZE + 9000);
    assert_int_equal(vs.read_hit_bytes, 9000);
    assert_int_equal(vs.read_miss_bytes, 3 * BLOCK_SIZE);
    assert_int_equal(vs.partial_exact_blocks, 0);
}

/* A read of 1000 bytes inside block 3 fetches the whole block (the back
 * end's unit is a block), which a second read then hits. */
static void partial_read_whole(struct fix *x, struct volume *v, struct fake *f)
{
    struct volume_snapshot vs;
    uint8_t buf[BLOCK_SIZE];
    bool hit;
    assert_int_equal(rd(x, v, 3 * BLOCK_SIZE + 700, 1000, buf, &hit), 0);
    assert_memory_equal(buf, f->data + 3 * BLOCK_SIZE + 700, 1000);
    assert_int_equal(rd(x, v, 3 * BLOCK_SIZE + 700, 1000, buf, &hit), 0);
    assert_true(hit);
    volume_snapshot(v, &vs);
    assert_int_equal(vs.backend_read_bytes, BLOCK_SIZE);
    assert_int_equal(vs.partial_exact_blocks, 0);
}

/* Exact reads respect the back end's smallest I/O unit (the fake refuses
 * smaller, as an iSCSI LUN does), or the unit it reads without extra work
 * (io_align): 512-byte units are read as such; with 4 KiB units a partial
 * miss is fetched whole and cached at once. */
static void test_partial_exact_min_block(void **state)
{
    struct fix *x = *state;
    struct volume_snapshot vs;
    uint8_t buf[2 * BLOCK_SIZE];
    bool hit;
    struct fake *f = fake_new(1u << 20, 5);
    f->be.min_block = 512;
    struct volume *v = add(x->e, "sectors", f);
    assert_int_equal(rd(x, v, 3 * BLOCK_SIZE + 700, 1000, buf, &hit), 0);
    assert_memory_equal(buf, f->data + 3 * BLOCK_SIZE + 700, 1000);
    volume_snapshot(v, &vs);
    assert_int_equal(vs.backend_read_bytes, 1536); /* sectors 1..3 of the block */
    assert_int_equal(vs.partial_exact_blocks, 1);
    /* Two blocks, unaligned at both ends, one request. */
    assert_int_equal(rd(x, v, 6 * BLOCK_SIZE + 4000, 200, buf, &hit), 0);
    assert_memory_equal(buf, f->data + 6 * BLOCK_SIZE + 4000, 200);
    volume_snapshot(v, &vs);
    assert_int_equal(vs.backend_read_bytes, 1536 + 1024);
    volume_put(v);

    f = fake_new(1u << 20, 6);
    f->be.min_block = BLOCK_SIZE;
    v = add(x->e, "blocks", f);
    partial_read_whole(x, v, f);
    volume_put(v);

    /* Any unit accepted, 4 KiB preferred (an O_DIRECT file, io_align):
     * fetched whole too, not exactly through the back end's slow path. */
    f = fake_new(1u << 20, 7);
    f->be.io_align = BLOCK_SIZE;
    v = add(x->e, "direct", f);
    partial_read_whole(x, v, f);
    struct vol_block_limits lim;
    volume_block_limits(v, &lim);
    assert_int_equal(lim.min, 1);
    assert_int_equal(lim.preferred, BLOCK_SIZE);
    volume_put(v);
}

/* A partly read block the directory knows nothing of is read exactly and
 * not cached; partly read again, it is fetched whole and cached
 * (core/partial.h). Whole blocks in between are cached at once. */
static void test_partial_exact(void **state)
{
    struct fix *x = *state;
    uint8_t buf[3 * BLOCK_SIZE];
    bool hit;
    struct volume_snapshot vs;
    assert_int_equal(rd(x, x->v, 100, 9000, buf, &hit), 0);
    assert_false(hit);
    assert_memory_equal(buf, x->f->data + 100, 9000);
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.backend_read_bytes, 9000); /* not 3 blocks */
    assert_int_equal(vs.backend_read_ops, 1);
    assert_int_equal(vs.partial_exact_blocks, 2);
    /* Block 1, read whole, is cached. */
    unsigned before = x->f->preads;
    assert_int_equal(rd(x, x->v, BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
    assert_true(hit);
    assert_int_equal(x->f->preads, before);
    /* Again: the edges are fetched whole (two runs around block 1). */
    assert_int_equal(rd(x, x->v, 100, 9000, buf, &hit), 0);
    assert_false(hit);
    assert_memory_equal(buf, x->f->data + 100, 9000);
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.backend_read_bytes, 9000 + 2 * BLOCK_SIZE);
    assert_int_equal(vs.partial_exact_blocks, 2);
    before = x->f->preads;
    assert_int_equal(rd(x, x->v, 100, 9000, buf, &hit), 0);
    assert_true(hit);
    assert_int_equal(x->f->preads, before);
    assert_memory_equal(buf, x->f->data + 100, 9000);

    /* One sector inside a block, then the whole block: cached by the
     * whole read, and the sector is a hit after it. */
    uint64_t b50 = 50 * BLOCK_SIZE;
    assert_int_equal(rd(x, x->v, b50 + 1024, 512, buf, &hit), 0);
    assert_memory_equal(buf, x->f->data + b50 + 1024, 512);
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.backend_read_bytes, 9000 + 2 * BLOCK_SIZE + 512);
    assert_int_equal(rd(x, x->v, b50, BLOCK_SIZE, buf, &hit), 0);
    assert_false(hit);
    assert_int_equal(rd(x, x->v, b50 + 1024, 512, buf, &hit), 0);
    assert_true(hit);
    assert_memory_equal(buf, x->f->data + b50 + 1024, 512);

    /* A block written whole is known: a partial read of it is a hit. */
    uint8_t d[BLOCK_SIZE];
    memset(d, 0x3c, sizeof d);
    assert_int_equal(wr(x, x->v, 60 * BLOCK_SIZE, BLOCK_SIZE, d), 0);
    assert_int_equal(rd(x, x->v, 60 * BLOCK_SIZE + 7, 70, buf, &hit), 0);
    assert_true(hit);
    assert_memory_equal(buf, d + 7, 70);
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.partial_exact_blocks, 3);
}

static void test_write_through_and_partial(void **state)
{
    struct fix *x = *state;
    uint8_t data[2 * BLOCK_SIZE];
    memset(data, 0xA5, sizeof data);
    check_matches_backend(x, 0, 4 * BLOCK_SIZE); /* warm */
    /* Full blocks 1..2 written: installed; reads hit and see new data. */
    assert_int_equal(wr(x, x->v, BLOCK_SIZE, 2 * BLOCK_SIZE, data), 0);
    assert_memory_equal(x->f->data + BLOCK_SIZE, data, 2 * BLOCK_SIZE);
    uint8_t got[2 * BLOCK_SIZE];
    bool hit;
    assert_int_equal(rd(x, x->v, BLOCK_SIZE, 2 * BLOCK_SIZE, got, &hit), 0);
    assert_true(hit);
    assert_memory_equal(got, data, sizeof got);
    /* Unaligned partial write over cached blocks 0..1 */
    uint8_t p[100];
    memset(p, 0x3C, sizeof p);
    assert_int_equal(wr(x, x->v, BLOCK_SIZE - 50, 100, p), 0);
    check_matches_backend(x, 0, 4 * BLOCK_SIZE);
}

static void test_zero_and_trim(void **state)
{
    struct fix *x = *state;
    check_matches_backend(x, 0, 8 * BLOCK_SIZE);
    struct vol_req z = {.offset = BLOCK_SIZE, .length = 3 * BLOCK_SIZE};
    assert_int_equal(vol_zero(x->v, &z, x->s), 0);
    vol_req_finish(x->v, &z);
    check_matches_backend(x, 0, 8 * BLOCK_SIZE);
    struct volume_snapshot vs;
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.zero_blocks, 3);
    struct vol_req t = {.offset = 5 * BLOCK_SIZE, .length = 2 * BLOCK_SIZE};
    assert_int_equal(vol_trim(x->v, &t, x->s), 0);
    vol_req_finish(x->v, &t);
    check_matches_backend(x, 0, 8 * BLOCK_SIZE); /* sees the 0xEE, not old data */
}

static void test_backend_errors_cache_nothing(void **state)
{
    struct fix *x = *state;
    uint8_t buf[BLOCK_SIZE];
    x->f->fail_reads = 1;
    assert_int_equal(rd(x, x->v, 0, BLOCK_SIZE, buf, NULL), -EIO);
    x->f->fail_reads = 0;
    bool hit;
    assert_int_equal(rd(x, x->v, 0, BLOCK_SIZE, buf, &hit), 0);
    assert_false(hit); /* nothing was cached by the failed read */
    /* A failed write invalidates the block it covered. */
    uint8_t d[BLOCK_SIZE];
    memset(d, 7, sizeof d);
    x->f->fail_writes = 1;
    assert_int_equal(wr(x, x->v, 0, BLOCK_SIZE, d), -EIO);
    x->f->fail_writes = 0;
    assert_int_equal(rd(x, x->v, 0, BLOCK_SIZE, buf, &hit), 0);
    assert_false(hit);
    assert_memory_equal(buf, x->f->data, BLOCK_SIZE);
}

struct racer {
    struct volume *v;
    uint64_t off; /* the block-aligned offset it reads (0 unless set) */
    uint8_t out[BLOCK_SIZE];
    int ret;
};

static void *race_reader(void *arg)
{
    struct racer *rc = arg;
    struct vol_scratch *s = vol_scratch_new();
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, BLOCK_SIZE);
    struct vol_req r = {.offset = rc->off, .length = BLOCK_SIZE, .buf = buf};
    rc->ret = vol_read(rc->v, &r, s);
    memcpy(rc->out, buf, BLOCK_SIZE);
    vol_req_finish(rc->v, &r);
    free(buf);
    vol_scratch_free(s);
    return NULL;
}

/* Start a read miss of rc->off in rc->v (over f) that stalls after the back
 * end read covering pause_off copied its data; returns once it is stalled. */
static void race_start(struct racer *rc, struct fake *f, uint64_t pause_off, pthread_t *t)
{
    fake_pause(f, pause_off);
    pthread_create(t, NULL, race_reader, rc);
    fake_wait_paused(f);
}

/* A background prefetch that the volume's disable overtakes ends with
 * -ECANCELED (it cached nothing more), not with success. The fake's pause
 * holds the prefetch in its first back end read while the volume is
 * disabled. */
static void test_prefetch_disabled_midway(void **state)
{
    struct fix *x = *state;
    fake_pause(x->f, 0);
    assert_int_equal(volume_prefetch_start(x->v, 0, 0), 0);
    fake_wait_paused(x->f);
    assert_int_equal(volume_set_enabled(x->v, false), 0);
    fake_release(x->f);
    struct prefetch_status st;
    for (int i = 0; i < 10000; i++) {
        volume_prefetch_status(x->v, &st);
        if (!st.running)
            break;
        usleep(1000);
    }
    assert_false(st.running);
    assert_int_equal(st.error, -ECANCELED);
    struct volume_snapshot snap;
    volume_snapshot(x->v, &snap);
    assert_int_equal(snap.cached_blocks, 0);

    /* Enabled again, the same prefetch completes and caches the volume. */
    assert_int_equal(volume_set_enabled(x->v, true), 0);
    assert_int_equal(volume_prefetch_start(x->v, 0, 0), 0);
    for (int i = 0; i < 10000; i++) {
        volume_prefetch_status(x->v, &st);
        if (!st.running)
            break;
        usleep(1000);
    }
    assert_false(st.running);
    assert_int_equal(st.error, 0);
    volume_snapshot(x->v, &snap);
    assert_true(snap.cached_blocks > 0);
}

static void race_release(struct fake *f, pthread_t t)
{
    fake_release(f);
    pthread_join(t, NULL);
}

/* A read miss fetches block 0 (old data) and stalls before caching it; a
 * write to block 0 completes meanwhile; the read then finishes. The old data
 * must not be cached: later reads return the write's data. With a full-block
 * write the write's own install also guards the cell, so the partial-write
 * variant (which installs nothing) is the one that proves the ticket check. */
static void race_read_miss_vs_write(struct fix *x, uint32_t wlen)
{
    struct fake *f = x->f;
    uint8_t old[BLOCK_SIZE], fresh[BLOCK_SIZE], want[BLOCK_SIZE];
    memcpy(old, f->data, BLOCK_SIZE);
    memset(fresh, 0x5A, sizeof fresh);
    memcpy(want, old, BLOCK_SIZE);
    memcpy(want, fresh, wlen);

    struct racer rc = {.v = x->v};
    pthread_t t;
    race_start(&rc, f, 0, &t);
    assert_int_equal(wr(x, x->v, 0, wlen, fresh), 0); /* acknowledged */
    race_release(f, t);
    assert_int_equal(rc.ret, 0);
    assert_memory_equal(rc.out, old, BLOCK_SIZE); /* concurrent: old is allowed */

    uint8_t got[BLOCK_SIZE];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rd(x, x->v, 0, BLOCK_SIZE, got, NULL), 0);
        assert_memory_equal(got, want, BLOCK_SIZE);
    }
    struct volume_snapshot vs;
    volume_snapshot(x->v, &vs);
    assert_true(vs.insert_races >= 1);
}

static void test_race_read_miss_vs_full_write(void **state)
{
    race_read_miss_vs_write(*state, BLOCK_SIZE);
}

static void test_race_read_miss_vs_partial_write(void **state)
{
    race_read_miss_vs_write(*state, 100);
}

/* ---- trims and zeroes longer than the largest read or write ---- */

#define BIG_SIZE (48u << 20)

static struct volume *add_big(struct fix *x, struct fake **fo)
{
    struct fake *f = fake_new(BIG_SIZE, 7);
    struct volume_config cfg = {.name = "big"};
    assert_int_equal(engine_add_volume_backend(x->e, &cfg, &f->be), 0);
    *fo = f;
    return engine_get_volume(x->e, "big");
}

/* Read all of v through the cache in 1 MiB pieces and compare with f. */
static void check_all(struct fix *x, struct volume *v, struct fake *f)
{
    const uint32_t chunk = 1u << 20;
    uint8_t *got = malloc(chunk);
    for (uint64_t off = 0; off < f->be.size; off += chunk) {
        assert_int_equal(rd(x, v, off, chunk, got, NULL), 0);
        assert_memory_equal(got, f->data + off, chunk);
    }
    free(got);
}

static int change_req(struct fix *x, struct volume *v,
                      int (*fn)(struct volume *, struct vol_req *, struct vol_scratch *),
                      uint64_t off, uint32_t len)
{
    struct vol_req r = {.offset = off, .length = len};
    int ret = fn(v, &r, x->s);
    vol_req_finish(v, &r);
    return ret;
}

/* A guest's fstrim or mkfs sends trims and zeroes of any length up to the
 * whole export; they once overflowed the per-block scratch. Warm data must
 * not survive them (the fake's trim leaves 0xEE garbage, so a stale block
 * would show), and blocks outside the range must stay cached. */
static void test_large_trim_and_zero(void **state)
{
    struct fix *x = *state;
    struct fake *f;
    struct volume *v = add_big(x, &f);
    check_all(x, v, f); /* warm everything */
    struct volume_snapshot vs;
    volume_snapshot(v, &vs);
    uint64_t cached = vs.cached_blocks;
    assert_true(cached > 0);

    /* Unaligned ends, 39 MiB long: partial blocks at both edges. */
    assert_int_equal(change_req(x, v, vol_trim, (1u << 20) + 100, 39u << 20), 0);
    check_all(x, v, f);
    assert_int_equal(change_req(x, v, vol_zero, 3u << 20, 40u << 20), 0);
    check_all(x, v, f);
    /* The whole volume in one request. */
    assert_int_equal(change_req(x, v, vol_trim, 0, BIG_SIZE), 0);
    check_all(x, v, f);
    assert_int_equal(change_req(x, v, vol_zero, 0, BIG_SIZE), 0);
    check_all(x, v, f);
    for (uint64_t i = 0; i < BIG_SIZE; i++)
        if (f->data[i])
            fail_msg("byte %llu not zero after zeroing the volume", (unsigned long long)i);
    volume_snapshot(v, &vs);
    assert_int_equal(vs.trim_ops, 2);
    assert_int_equal(vs.zero_ops, 2);

    /* Reads and writes stay capped at VOL_MAX_IO; the core refuses longer. */
    uint8_t *big = aligned_alloc(BLOCK_SIZE, VOL_MAX_IO + 2 * BLOCK_SIZE);
    struct vol_req r = {.offset = 0, .length = VOL_MAX_IO + 1, .buf = big};
    assert_int_equal(vol_read(v, &r, x->s), -EINVAL);
    vol_req_finish(v, &r);
    r = (struct vol_req){.offset = 0, .length = VOL_MAX_IO + 1, .buf = big};
    assert_int_equal(vol_write(v, &r, x->s), -EINVAL);
    vol_req_finish(v, &r);
    free(big);
    volume_put(v);
}

/* The race rule for the range path: a read miss that fetched old data
 * before a whole-volume zero was acknowledged must not cache it. */
static void test_race_read_miss_vs_large_zero(void **state)
{
    struct fix *x = *state;
    struct fake *f;
    struct volume *v = add_big(x, &f);
    uint8_t old[BLOCK_SIZE];
    memcpy(old, f->data, BLOCK_SIZE);
    struct racer rc = {.v = v};
    pthread_t t;
    race_start(&rc, f, 0, &t);
    assert_int_equal(change_req(x, v, vol_zero, 0, BIG_SIZE), 0); /* acknowledged */
    race_release(f, t);
    assert_int_equal(rc.ret, 0);
    assert_memory_equal(rc.out, old, BLOCK_SIZE); /* concurrent: old is allowed */
    uint8_t got[BLOCK_SIZE], zero[BLOCK_SIZE] = {0};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rd(x, v, 0, BLOCK_SIZE, got, NULL), 0);
        assert_memory_equal(got, zero, BLOCK_SIZE);
    }
    struct volume_snapshot vs;
    volume_snapshot(v, &vs);
    assert_true(vs.insert_races >= 1);
    volume_put(v);
}

/* A second volume "ra" over a fresh fake back end, with a 64 KiB read-ahead. */
static struct volume *add_ra(struct fix *x, uint8_t seed, struct fake **fo)
{
    struct fake *f = fake_new(4u << 20, seed);
    struct volume_config cfg = {.name = "ra", .readahead = 65536};
    assert_int_equal(engine_add_volume_backend(x->e, &cfg, &f->be), 0);
    *fo = f;
    return engine_get_volume(x->e, "ra");
}

/* Read-ahead: only a stream of misses that each start exactly where the
 * last one's fetch ended reads ahead, from its third miss (RA_MIN_RUN),
 * forward to the end of its aligned window, paid from the volume's budget
 * (core/ra_budget.h): a volume starts with one 4-block window's credit,
 * a larger window has none until the smaller ones paid off, so the stream
 * falls back to 4 blocks; the neighbours then hit and are paid back.
 * Random or merely nearby misses fetch just themselves. */
static void test_readahead_window(void **state)
{
    struct fix *x = *state;
    struct fake *f;
    struct volume *v = add_ra(x, 9, &f);
    uint8_t buf[2 * BLOCK_SIZE];
    bool hit;
    struct volume_snapshot vs;
    for (uint64_t b = 4; b <= 7; b++) {
        assert_int_equal(rd(x, v, b * BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
        assert_false(hit);
        assert_memory_equal(buf, f->data + b * BLOCK_SIZE, BLOCK_SIZE);
    }
    /* Third in a row (7): its window 4..7 has nothing ahead of it. */
    volume_snapshot(v, &vs);
    assert_int_equal(vs.readahead_bytes, 0);
    assert_int_equal(vs.backend_read_bytes, 4 * BLOCK_SIZE);
    assert_int_equal(f->preads, 4);
    /* Fourth (8): an 8-block window has no credit yet (one denial), the
     * 4-block one has: 8..11 in one back end read. */
    assert_int_equal(rd(x, v, 8 * BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
    assert_false(hit);
    assert_memory_equal(buf, f->data + 8 * BLOCK_SIZE, BLOCK_SIZE);
    assert_int_equal(f->preads, 5);
    volume_snapshot(v, &vs);
    assert_int_equal(vs.readahead_bytes, 3 * BLOCK_SIZE);
    assert_int_equal(vs.readahead_denied, 1);
    assert_int_equal(vs.backend_read_bytes, 8 * BLOCK_SIZE);
    assert_int_equal(vs.readahead_used_bytes, 0);
    for (uint64_t b = 4; b < 12; b++) {
        assert_int_equal(rd(x, v, b * BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
        assert_true(hit);
        assert_memory_equal(buf, f->data + b * BLOCK_SIZE, BLOCK_SIZE);
    }
    assert_int_equal(f->preads, 5);
    volume_snapshot(v, &vs);
    assert_int_equal(vs.readahead_used_bytes, 3 * BLOCK_SIZE); /* paid back once each */
    /* Fifth (12, two blocks): 12..15, the rest of its 4-block windows. */
    assert_int_equal(rd(x, v, 12 * BLOCK_SIZE, 2 * BLOCK_SIZE, buf, &hit), 0);
    assert_false(hit);
    assert_memory_equal(buf, f->data + 12 * BLOCK_SIZE, 2 * BLOCK_SIZE);
    assert_int_equal(f->preads, 6);
    assert_int_equal(rd(x, v, 15 * BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
    assert_true(hit);
    assert_memory_equal(buf, f->data + 15 * BLOCK_SIZE, BLOCK_SIZE);
    assert_int_equal(f->preads, 6);
    /* A miss one block past the stream's end, and a new stream far away:
     * themselves only, twice in a row. */
    volume_snapshot(v, &vs);
    uint64_t ra = vs.readahead_bytes;
    assert_int_equal(rd(x, v, 17 * BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
    assert_int_equal(rd(x, v, 200 * BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
    assert_memory_equal(buf, f->data + 200 * BLOCK_SIZE, BLOCK_SIZE);
    assert_int_equal(rd(x, v, 201 * BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
    assert_false(hit);
    volume_snapshot(v, &vs);
    assert_int_equal(vs.readahead_bytes, ra);
    assert_false(rd(x, v, 202 * BLOCK_SIZE, BLOCK_SIZE, buf, &hit) != 0 || hit);
    volume_put(v);
}

/* Read-ahead backs off when what it fetched goes unread: streams of four
 * blocks each (the fourth miss reads ahead) read ahead three blocks nobody
 * reads. The volume's first credit (one 4-block window) pays for one such
 * window; after that every stream's window is refused (the bonus a
 * stream's miss earns is 1/64 of a block), and the back end reads no more
 * than the clients asked, plus those three blocks. Read now, they are paid
 * back and the credit pays for windows again. */
static void test_readahead_backoff(void **state)
{
    struct fix *x = *state;
    struct fake *f;
    struct volume *v = add_ra(x, 5, &f);
    uint8_t buf[BLOCK_SIZE];
    struct volume_snapshot vs;
    const uint64_t streams = 40;
    for (uint64_t k = 0; k < streams; k++) {
        for (uint64_t b = 1; b <= 4; b++) {
            uint64_t blk = 8 * k + b;
            assert_int_equal(rd(x, v, blk * BLOCK_SIZE, BLOCK_SIZE, buf, NULL), 0);
            assert_memory_equal(buf, f->data + blk * BLOCK_SIZE, BLOCK_SIZE);
        }
    }
    volume_snapshot(v, &vs);
    assert_int_equal(vs.readahead_bytes, 3 * BLOCK_SIZE);
    assert_int_equal(vs.readahead_used_bytes, 0);
    assert_int_equal(vs.readahead_denied, streams - 1);
    assert_int_equal(vs.read_bytes, streams * 4 * BLOCK_SIZE);
    assert_int_equal(vs.backend_read_bytes, vs.read_bytes + 3 * BLOCK_SIZE);
    for (uint64_t b = 5; b < 8; b++) {
        bool hit;
        assert_int_equal(rd(x, v, b * BLOCK_SIZE, BLOCK_SIZE, buf, &hit), 0);
        assert_true(hit);
        assert_memory_equal(buf, f->data + b * BLOCK_SIZE, BLOCK_SIZE);
    }
    volume_snapshot(v, &vs);
    assert_int_equal(vs.readahead_used_bytes, 3 * BLOCK_SIZE);
    for (uint64_t b = 801; b <= 804; b++)
        assert_int_equal(rd(x, v, b * BLOCK_SIZE, BLOCK_SIZE, buf, NULL), 0);
    volume_snapshot(v, &vs);
    assert_int_equal(vs.readahead_bytes, 6 * BLOCK_SIZE);
    volume_put(v);
}

/* The race rule covers read-ahead blocks: a fetch that brought block 11
 * along (for a read of block 8, the fourth of a stream) stalls; a partial
 * write to block 11 completes; the stale copy of block 11 must not be
 * cached. */
static void test_readahead_race(void **state)
{
    struct fix *x = *state;
    struct fake *f;
    struct volume *v = add_ra(x, 3, &f);
    uint8_t want[BLOCK_SIZE], fresh[100], got[BLOCK_SIZE];
    memcpy(want, f->data + 11 * BLOCK_SIZE, BLOCK_SIZE);
    memset(fresh, 0xA7, sizeof fresh);
    memcpy(want, fresh, sizeof fresh);

    struct racer rc = {.v = v, .off = 8 * BLOCK_SIZE};
    pthread_t t;
    uint8_t one[BLOCK_SIZE];
    for (uint64_t b = 4; b < 8; b++) /* a stream: 4, 5, 6, 7 */
        assert_int_equal(rd(x, v, b * BLOCK_SIZE, BLOCK_SIZE, one, NULL), 0);
    uint32_t before = f->preads;
    race_start(&rc, f, 11 * BLOCK_SIZE, &t); /* reads block 8: fetches 8..15 */
    assert_int_equal(wr(x, v, 11 * BLOCK_SIZE, sizeof fresh, fresh), 0);
    race_release(f, t);
    assert_int_equal(rc.ret, 0);
    assert_int_equal(f->preads, before + 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rd(x, v, 11 * BLOCK_SIZE, BLOCK_SIZE, got, NULL), 0);
        assert_memory_equal(got, want, BLOCK_SIZE);
    }
    volume_put(v);
}

static void test_odd_size_tail(void **state)
{
    struct fix *x = *state;
    struct fake *f = fake_new(3 * BLOCK_SIZE + 1000, 9);
    struct volume *v = add(x->e, "odd", f);
    uint8_t buf[1000 + BLOCK_SIZE];
    assert_int_equal(rd(x, v, 2 * BLOCK_SIZE + 500, BLOCK_SIZE + 500, buf, NULL), 0);
    assert_memory_equal(buf, f->data + 2 * BLOCK_SIZE + 500, BLOCK_SIZE + 500);
    bool hit;
    assert_int_equal(rd(x, v, 3 * BLOCK_SIZE, 1000, buf, &hit), 0);
    assert_true(hit);
    assert_memory_equal(buf, f->data + 3 * BLOCK_SIZE, 1000);
    /* A write to the end of the volume covers the tail block: cached. */
    uint8_t d[1000];
    memset(d, 0x77, sizeof d);
    assert_int_equal(wr(x, v, 3 * BLOCK_SIZE, 1000, d), 0);
    assert_int_equal(rd(x, v, 3 * BLOCK_SIZE, 1000, buf, &hit), 0);
    assert_true(hit);
    assert_memory_equal(buf, d, 1000);
    assert_int_equal(vol_check_range(v, 3 * BLOCK_SIZE, 1001, -EINVAL), -EINVAL);
    assert_int_equal(vol_check_range(v, UINT64_MAX, 2, -EINVAL), -EOVERFLOW);
    volume_put(v);
}

static void test_dedup_across_volumes(void **state)
{
    struct fix *x = *state;
    const uint32_t size = 4u << 20;
    struct fake *f2 = fake_new(size, 0); /* same content as "vol" */
    struct volume *v2 = add(x->e, "clone", f2);
    uint8_t *buf = malloc(size);
    assert_int_equal(rd(x, x->v, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, x->f->data, size);
    assert_int_equal(rd(x, v2, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, f2->data, size);
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.logical_blocks, 2 * 1024);
    /* The fake's pattern repeats, so distinct contents are fewer than
     * blocks; what matters: the clone added no new content. */
    assert_true(cs.dedup_ratio >= 2.0);
    uint64_t unique = cs.unique_blocks;
    /* Second pass: all hits, same bytes, no new content. */
    unsigned preads = f2->preads;
    bool hit;
    assert_int_equal(rd(x, v2, 0, size, buf, &hit), 0);
    assert_true(hit);
    assert_int_equal(f2->preads, preads);
    assert_memory_equal(buf, f2->data, size);
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.unique_blocks, unique);

    /* Shared content is never changed in place: writing the clone leaves
     * the original's blocks (cached, deduplicated) as they were. */
    uint8_t w[2 * BLOCK_SIZE];
    memset(w, 0x6D, sizeof w);
    assert_int_equal(wr(x, v2, 5 * BLOCK_SIZE, sizeof w, w), 0);
    assert_int_equal(rd(x, x->v, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, x->f->data, size);
    assert_int_equal(rd(x, v2, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, f2->data, size);
    assert_memory_equal(buf + 5 * BLOCK_SIZE, w, sizeof w);
    free(buf);
    volume_put(v2);
}

/* A clone of the same size shares the original's directory cells for the
 * blocks found equal (core/dir.h, SHARING): reads of the clone come from
 * RAM without cells of its own, and any change on either side ends the
 * sharing of that block, so neither ever reads the other's new data. */
static void test_clone_shares_until_changed(void **state)
{
    struct fix *x = *state;
    const uint32_t size = 4u << 20;
    struct fake *f2 = fake_new(size, 0); /* same content as "vol" */
    struct volume *v2 = add(x->e, "clone", f2);
    uint8_t *buf = malloc(size);
    assert_int_equal(rd(x, x->v, 0, size, buf, NULL), 0);
    assert_int_equal(rd(x, v2, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, f2->data, size);
    struct volume_snapshot vs;
    volume_snapshot(v2, &vs);
    assert_int_equal(vs.cached_blocks, 1024); /* all shared */
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.logical_blocks, 2 * 1024);

    /* The original changes: a write, a zero, a trim. The clone still reads
     * its own bytes (its back end is untouched). */
    uint8_t w[3 * BLOCK_SIZE];
    memset(w, 0xA7, sizeof w);
    assert_int_equal(wr(x, x->v, 10 * BLOCK_SIZE, sizeof w, w), 0);
    assert_int_equal(change_req(x, x->v, vol_zero, 20 * BLOCK_SIZE, 2 * BLOCK_SIZE), 0);
    assert_int_equal(change_req(x, x->v, vol_trim, 30 * BLOCK_SIZE, 64 * BLOCK_SIZE), 0);
    assert_int_equal(rd(x, x->v, 0, size, buf, NULL), 0); /* caches the new data */
    assert_memory_equal(buf, x->f->data, size);
    assert_memory_equal(buf + 10 * BLOCK_SIZE, w, sizeof w);
    unsigned preads = f2->preads;
    assert_int_equal(rd(x, v2, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, f2->data, size);
    assert_true(f2->preads > preads); /* the changed blocks came from its back end */
    /* Then they are cached (of its own) and the rest is still shared. */
    preads = f2->preads;
    bool hit;
    assert_int_equal(rd(x, v2, 0, size, buf, &hit), 0);
    assert_true(hit);
    assert_int_equal(f2->preads, preads);
    assert_memory_equal(buf, f2->data, size);

    /* The clone changes: the original keeps its bytes. */
    memset(w, 0x3C, sizeof w);
    assert_int_equal(wr(x, v2, 50 * BLOCK_SIZE, sizeof w, w), 0);
    assert_int_equal(rd(x, x->v, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, x->f->data, size);
    assert_int_equal(rd(x, v2, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, f2->data, size);

    /* The original goes away first: the clone goes on, from its back end
     * where nothing is its own, with the right bytes. */
    volume_put(x->v);
    x->v = NULL;
    assert_int_equal(engine_remove_volume(x->e, "vol", true), 0);
    assert_int_equal(rd(x, v2, 0, size, buf, NULL), 0);
    assert_memory_equal(buf, f2->data, size);
    assert_int_equal(rd(x, v2, 0, size, buf, &hit), 0);
    assert_true(hit);
    assert_memory_equal(buf, f2->data, size);
    free(buf);
    volume_put(v2);
}

static void test_disable_enable_invalidate(void **state)
{
    struct fix *x = *state;
    uint8_t buf[BLOCK_SIZE];
    bool hit;
    check_matches_backend(x, 0, 16 * BLOCK_SIZE);
    assert_int_equal(volume_set_enabled(x->v, false), 0);
    assert_int_equal(rd(x, x->v, 0, BLOCK_SIZE, buf, &hit), 0);
    assert_false(hit);
    struct volume_snapshot vs;
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.cached_blocks, 0);
    /* Writes while disabled go through and are not cached. */
    memset(buf, 0x42, sizeof buf);
    assert_int_equal(wr(x, x->v, 0, BLOCK_SIZE, buf), 0);
    assert_int_equal(volume_set_enabled(x->v, true), 0);
    check_matches_backend(x, 0, 16 * BLOCK_SIZE);
    /* Out-of-band change, then invalidate: the cache follows. */
    memset(x->f->data + 2 * BLOCK_SIZE, 0x99, BLOCK_SIZE);
    assert_int_equal(volume_invalidate(x->v, 2 * BLOCK_SIZE, BLOCK_SIZE), 0);
    check_matches_backend(x, 0, 16 * BLOCK_SIZE);
}

/* Fences (core/vol_fence.h): writes fail with EPERM and leave the back end
 * alone; a lease fence also drops the cache and serves reads from the back
 * end (an out-of-band change is seen at once); the two reasons are lifted
 * one at a time; a read-only volume is never fenced. */
static void test_fences(void **state)
{
    struct fix *x = *state;
    uint8_t buf[BLOCK_SIZE], got[BLOCK_SIZE];
    bool hit;
    check_matches_backend(x, 0, 16 * BLOCK_SIZE);
    unsigned pwrites = x->f->pwrites;
    memset(buf, 0x5a, sizeof buf);

    volume_fence(x->v, VOL_FENCE_MOVE);
    assert_int_equal(volume_fenced(x->v), VOL_FENCE_MOVE);
    assert_true(volume_readonly(x->v));
    assert_int_equal(wr(x, x->v, 0, BLOCK_SIZE, buf), -EPERM);
    assert_int_equal(x->f->pwrites, pwrites);
    assert_int_equal(rd(x, x->v, 0, BLOCK_SIZE, got, &hit), 0);
    assert_true(hit); /* a move's fence keeps serving the cache */

    volume_fence(x->v, VOL_FENCE_LEASE);
    assert_int_equal(volume_fenced(x->v), VOL_FENCE_MOVE | VOL_FENCE_LEASE);
    assert_true(volume_enabled(x->v)); /* the setting is unchanged */
    struct volume_snapshot vs;
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.cached_blocks, 0);
    memset(x->f->data + BLOCK_SIZE, 0x77, BLOCK_SIZE); /* another node's write */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rd(x, x->v, BLOCK_SIZE, BLOCK_SIZE, got, &hit), 0);
        assert_false(hit);
        assert_memory_equal(got, x->f->data + BLOCK_SIZE, BLOCK_SIZE);
    }
    volume_snapshot(x->v, &vs);
    assert_int_equal(vs.cached_blocks, 0); /* nothing cached while fenced */

    volume_unfence(x->v, VOL_FENCE_MOVE);
    assert_int_equal(volume_fenced(x->v), VOL_FENCE_LEASE);
    assert_int_equal(wr(x, x->v, 0, BLOCK_SIZE, buf), -EPERM); /* still the lease's */
    assert_int_equal(x->f->pwrites, pwrites);
    volume_unfence(x->v, VOL_FENCE_LEASE);
    assert_int_equal(volume_fenced(x->v), 0);
    assert_false(volume_readonly(x->v));
    assert_int_equal(wr(x, x->v, 0, BLOCK_SIZE, buf), 0);
    assert_int_equal(x->f->pwrites, pwrites + 1);
    check_matches_backend(x, 0, 16 * BLOCK_SIZE);
    assert_int_equal(rd(x, x->v, 0, BLOCK_SIZE, got, &hit), 0);
    assert_true(hit);

    /* Read-only: nothing to fence, and unfencing never makes it writable. */
    struct fake *f2 = fake_new(1u << 20, 3);
    struct volume_config cfg = {.name = "ro", .readonly = true};
    assert_int_equal(engine_add_volume_backend(x->e, &cfg, &f2->be), 0);
    struct volume *ro = engine_get_volume(x->e, "ro");
    volume_fence(ro, VOL_FENCE_LEASE);
    assert_int_equal(volume_fenced(ro), 0);
    volume_unfence(ro, VOL_FENCE_LEASE);
    assert_true(volume_readonly(ro));
    assert_int_equal(wr(x, ro, 0, BLOCK_SIZE, buf), -EPERM);
    volume_put(ro);
}

/* A write in flight holds the write gate shared: a lease's fence does not
 * wait for it (a hung back end must not hold back the fences of other
 * volumes), a move's fence does (the hand-over follows the last write). */
struct fencer {
    struct volume *v;
    int why;
    int done; /* atomic */
};

static void *fence_thread(void *arg)
{
    struct fencer *f = arg;
    volume_fence(f->v, f->why);
    __atomic_store_n(&f->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_fence_waits(void **state)
{
    struct fix *x = *state;
    uint8_t buf[BLOCK_SIZE];
    memset(buf, 0x3c, sizeof buf);
    gate_shared(&x->v->gate); /* as a write between its check and its answer */
    struct fencer lf = {x->v, VOL_FENCE_LEASE, 0}, mf = {x->v, VOL_FENCE_MOVE, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fence_thread, &lf), 0);
    pthread_join(t, NULL); /* returned with the gate still held */
    assert_int_equal(volume_fenced(x->v), VOL_FENCE_LEASE);
    assert_int_equal(pthread_create(&t, NULL, fence_thread, &mf), 0);
    usleep(50 * 1000);
    assert_int_equal(__atomic_load_n(&mf.done, __ATOMIC_ACQUIRE), 0); /* waits */
    assert_int_equal(volume_fenced(x->v), VOL_FENCE_LEASE | VOL_FENCE_MOVE);
    gate_shared_end(&x->v->gate);
    pthread_join(t, NULL);
    assert_int_equal(mf.done, 1);
    assert_int_equal(wr(x, x->v, 0, BLOCK_SIZE, buf), -EPERM);
    volume_unfence(x->v, VOL_FENCE_LEASE);
    volume_unfence(x->v, VOL_FENCE_MOVE);
    assert_int_equal(wr(x, x->v, 0, BLOCK_SIZE, buf), 0);
    check_matches_backend(x, 0, BLOCK_SIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_miss_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_through_and_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_and_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_errors_cache_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_read_miss_vs_full_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_read_miss_vs_partial_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_size_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_exact_min_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_trim_and_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_read_miss_vs_large_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readahead_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readahead_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readahead_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup_across_volumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clone_shares_until_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disable_enable_invalidate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefetch_disabled_midway, setup, teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    return r;
}
