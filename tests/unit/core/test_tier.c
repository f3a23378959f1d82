/* The tier seam with a test tier (tier_fake.c): a block evicted from RAM
 * comes back from tier 1 by its remembered key without a back end read; a
 * corrupt copy is rejected, counted and read from the back end; a failing
 * or hanging tier turns into misses after its timeout, never into a client
 * error; a content another volume brought back is found by key in RAM; and
 * the race rule holds for blocks served by key; the request's paired
 * checks (tier_req_deliver) keep exactly the blocks that match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "core/block.h"
#include "core/engine.h"
#include "core/fingerprint.h"
#include "core/tier.h"
#include "core/vol_move.h"
#include "core/volume.h"
#include "core/volume_io.h"
#include "fake_be.h"
#include "seeded.h"
#include "tier_fake.h"

#define CACHE_BLOCKS 256
#define VOL_BLOCKS   1024
#define FIRST_READ   300 /* blocks read before going back: some 44 evicted */
/* A tier timeout no sanitizer build on a loaded machine reaches, for the
 * tests that are not about timeouts. */
#define SLOW_OK_MS 20000

struct fix {
    struct engine *e;
    struct volume *v;
    struct fake *f;
    struct tier_fake_ctl ctl;
    struct vol_scratch *s;
    struct tier *tier;
    uint64_t race_blk;
};

/* Blocks of the fake all distinct (its pattern repeats every 256). */
static void make_distinct(struct fake *f, uint32_t salt)
{
    for (uint64_t b = 0; b < f->be.size / BLOCK_SIZE; b++) {
        uint64_t tag = b * 2654435761u + salt;
        memcpy(f->data + b * BLOCK_SIZE, &tag, sizeof tag);
    }
}

static struct volume *add(struct engine *e, const char *name, struct fake *f)
{
    struct volume_config cfg = {.name = name, .readahead = -1};
    assert_int_equal(engine_add_volume_backend(e, &cfg, &f->be), 0);
    return engine_get_volume(e, name);
}

static struct fix *fix_new_ctl(bool with_tier, uint32_t timeout_ms, unsigned put_queue,
                               bool with_map)
{
    struct fix *x = calloc(1, sizeof *x);
    x->ctl.put_queue = put_queue;
    x->ctl.with_map = with_map;
    struct tier *t = with_tier ? tier_fake_new(&x->ctl, timeout_ms) : NULL;
    x->tier = t;
    /* S3-FIFO: new blocks push old ones out (the default, W-TinyLFU,
     * keeps old blocks over blocks seen once), which these tests rely on. */
    struct engine_config ec = {.cache_bytes = CACHE_BLOCKS * BLOCK_SIZE,
                               .policy = "s3fifo",
                               .tiers = with_tier ? &t : NULL,
                               .ntiers = with_tier ? 1 : 0};
    assert_int_equal(engine_create(&ec, &x->e), 0);
    x->f = fake_new(VOL_BLOCKS * BLOCK_SIZE, 0);
    make_distinct(x->f, 1);
    x->v = add(x->e, "vol", x->f);
    x->s = vol_scratch_new();
    return x;
}

static struct fix *fix_new(bool with_tier, uint32_t timeout_ms)
{
    return fix_new_ctl(with_tier, timeout_ms, 0, false);
}

static void fix_free(struct fix *x)
{
    volume_put(x->v);
    engine_destroy(x->e);
    vol_scratch_free(x->s);
    free(x);
}

static int rd(struct fix *x, struct volume *v, uint64_t off, uint32_t len, uint8_t *out)
{
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, vol_read_span(off, len));
    struct vol_req r = {.offset = off, .length = len, .buf = buf};
    int ret = vol_read(v, &r, x->s);
    if (ret == 0)
        memcpy(out, buf + (off & BLOCK_MASK), len);
    vol_req_finish(v, &r);
    free(buf);
    return ret;
}

/* Read blocks [a, b) one at a time and compare with the back end. */
static void read_blocks(struct fix *x, uint64_t a, uint64_t b)
{
    uint8_t got[BLOCK_SIZE];
    for (uint64_t blk = a; blk < b; blk++) {
        assert_int_equal(rd(x, x->v, blk * BLOCK_SIZE, BLOCK_SIZE, got), 0);
        assert_memory_equal(got, x->f->data + blk * BLOCK_SIZE, BLOCK_SIZE);
    }
}

static struct volume_snapshot snap(struct volume *v)
{
    struct volume_snapshot vs;
    volume_snapshot(v, &vs);
    return vs;
}

/* Is blk in RAM? (A zero-copy read never touches the back end or a tier.) */
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

/* Fill past the cache so some blocks are evicted; what the back end
 * returned was offered to the tier. Returns the evicted blocks among the
 * first 64 (in gone[], count returned; at least 10). */
static unsigned warm_and_evict(struct fix *x, uint64_t *gone)
{
    read_blocks(x, 0, FIRST_READ);
    assert_int_equal(x->ctl.puts, FIRST_READ);
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

static void test_evicted_block_comes_back_from_tier(void **state)
{
    (void)state;
    struct fix *x = fix_new(true, SLOW_OK_MS);
    uint64_t gone[64];
    unsigned n = warm_and_evict(x, gone);
    unsigned preads = x->f->preads;
    read_list(x, gone, n); /* evicted: remembered keys, served by the tier */
    assert_int_equal(x->f->preads, preads);
    struct volume_snapshot vs = snap(x->v);
    assert_int_equal(vs.tier_hit_blocks, n);
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.tier_hits, n);
    assert_int_equal(cs.tier_corrupt, 0);
    /* Cached again: the next read is a RAM hit. */
    for (unsigned i = 0; i < n; i++)
        assert_true(in_ram(x, gone[i]));
    read_list(x, gone, n);
    assert_int_equal(x->f->preads, preads);
    assert_int_equal(snap(x->v).tier_hit_blocks, n);
    fix_free(x);
}

static void test_corrupt_copy_rejected(void **state)
{
    (void)state;
    struct fix *x = fix_new(true, SLOW_OK_MS);
    uint64_t gone[64];
    unsigned n = warm_and_evict(x, gone);
    __atomic_store_n(&x->ctl.mode, TIER_FAKE_CORRUPT, __ATOMIC_RELEASE);
    unsigned preads = x->f->preads;
    read_list(x, gone, n); /* compared with the back end inside */
    assert_int_equal(x->f->preads, preads + n);
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.tier_corrupt, n);
    assert_int_equal(cs.tier_hits, 0);
    assert_int_equal(snap(x->v).tier_hit_blocks, 0);
    assert_int_equal(snap(x->v).errors, 0);
    fix_free(x);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_failing_and_hanging_tier(void **state)
{
    (void)state;
    struct fix *x = fix_new(true, SLOW_OK_MS);
    uint64_t gone[64];
    unsigned n = warm_and_evict(x, gone);
    __atomic_store_n(&x->ctl.mode, TIER_FAKE_FAIL, __ATOMIC_RELEASE);
    read_list(x, gone, 3);
    struct cache_snapshot cs;
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.tier_errors, 3);

    __atomic_store_n(&x->ctl.mode, TIER_FAKE_HANG, __ATOMIC_RELEASE);
    x->tier->timeout_ms = 50;
    uint64_t t0 = now_ms();
    read_list(x, gone + 3, 3);
    uint64_t took = now_ms() - t0;
    assert_true(took >= 3 * 50);       /* each waited for the timeout... */
    assert_true(took < 3 * 50 + 2000); /* ...and no longer */
    cache_snapshot(x->e, &cs);
    assert_int_equal(cs.tier_timeouts, 3);
    assert_int_equal(snap(x->v).errors, 0);

    /* A slow tier within its timeout still serves. */
    __atomic_store_n(&x->ctl.mode, TIER_FAKE_OK, __ATOMIC_RELEASE);
    x->tier->timeout_ms = SLOW_OK_MS;
    x->ctl.delay_ms = 10;
    unsigned preads = x->f->preads;
    read_list(x, gone + 6, n - 6);
    assert_int_equal(x->f->preads, preads);
    fix_free(x);
}

/* Without tiers: a block whose content left RAM is found by key when
 * another volume brought the same content back. */
static void test_key_hit_in_ram(void **state)
{
    (void)state;
    struct fix *x = fix_new(false, 0);
    read_blocks(x, 0, FIRST_READ);
    uint64_t gone[64];
    unsigned n = 0;
    for (uint64_t b = 0; b < 64 && n < 10; b++)
        if (!in_ram(x, b))
            gone[n++] = b;
    assert_int_equal(n, 10);
    struct fake *f2 = fake_new(VOL_BLOCKS * BLOCK_SIZE, 0);
    make_distinct(f2, 1); /* same contents as vol */
    struct volume *v2 = add(x->e, "clone", f2);
    uint8_t got[BLOCK_SIZE];
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(rd(x, v2, gone[i] * BLOCK_SIZE, BLOCK_SIZE, got), 0);
    unsigned preads = x->f->preads;
    read_list(x, gone, n); /* vol finds them in RAM by key */
    assert_int_equal(x->f->preads, preads);
    assert_int_equal(snap(x->v).key_hit_blocks, n);
    volume_put(v2);
    engine_remove_volume(x->e, "clone", true);
    fix_free(x);
}

/* The race rule for a block served by key: a read waiting on the tier
 * while a write to the block is acknowledged may return the old data, but
 * must not cache it. The write is partial, so it installs nothing itself:
 * only the ticket check stands between the old copy and the cache (the
 * test fails if dir_install skips it). */
struct racer {
    struct fix *x;
    uint8_t out[BLOCK_SIZE];
    int ret;
};

static void *race_reader(void *arg)
{
    struct racer *rc = arg;
    struct vol_scratch *s = vol_scratch_new();
    uint8_t *buf = aligned_alloc(BLOCK_SIZE, BLOCK_SIZE);
    struct vol_req r = {.offset = rc->x->race_blk * BLOCK_SIZE, .length = BLOCK_SIZE, .buf = buf};
    rc->ret = vol_read(rc->x->v, &r, s);
    memcpy(rc->out, buf, BLOCK_SIZE);
    vol_req_finish(rc->x->v, &r);
    free(buf);
    vol_scratch_free(s);
    return NULL;
}

static void test_race_tier_read_vs_write(void **state)
{
    (void)state;
    struct fix *x = fix_new(true, SLOW_OK_MS);
    uint64_t gone[64];
    warm_and_evict(x, gone);
    x->race_blk = gone[0];
    uint64_t blk = gone[0];
    uint8_t old[BLOCK_SIZE], fresh[100], want[BLOCK_SIZE];
    memcpy(old, x->f->data + blk * BLOCK_SIZE, BLOCK_SIZE);
    memset(fresh, 0x3C, sizeof fresh);
    memcpy(want, old, BLOCK_SIZE);
    memcpy(want, fresh, sizeof fresh);
    x->ctl.delay_ms = 300;
    unsigned lookups = x->ctl.lookups;
    struct racer rc = {.x = x};
    pthread_t t;
    pthread_create(&t, NULL, race_reader, &rc);
    while (__atomic_load_n(&x->ctl.lookups, __ATOMIC_ACQUIRE) == lookups)
        ; /* the reader is waiting on the tier */
    struct vol_req w = {.offset = blk * BLOCK_SIZE, .length = sizeof fresh, .buf = fresh};
    assert_int_equal(vol_write(x->v, &w, x->s), 0); /* acknowledged */
    vol_req_finish(x->v, &w);
    pthread_join(t, NULL);
    assert_int_equal(rc.ret, 0);
    assert_memory_equal(rc.out, old, BLOCK_SIZE); /* concurrent: old is allowed */
    x->ctl.delay_ms = 0;
    uint8_t got[BLOCK_SIZE];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rd(x, x->v, blk * BLOCK_SIZE, BLOCK_SIZE, got), 0);
        assert_memory_equal(got, want, BLOCK_SIZE);
    }
    fix_free(x);
}

/* tier_req's own checks, driven by a tier that delivers a script on the
 * caller's thread: blocks are checked two at a time (one held until the
 * next delivery or done), so a corrupt block first or second in a pair, an
 * odd one left for done, a repeated key and a lookup cancelled with a
 * block held must each end as if checked alone. */
struct script {
    const int *order; /* key indexes to deliver, -1 ends */
    uint64_t corrupt; /* bit i: key i's block delivered with a flipped byte */
    bool done;        /* else the lookup hangs until its timeout */
    uint8_t (*blocks)[BLOCK_SIZE];
};

static void sc_lookup(struct tier *t, struct tier_req *r)
{
    struct script *sc = t->priv;
    uint8_t copy[BLOCK_SIZE];
    for (const int *o = sc->order; *o >= 0; o++) {
        memcpy(copy, sc->blocks[*o], BLOCK_SIZE);
        if (sc->corrupt >> *o & 1)
            copy[17] ^= 0x40;
        tier_req_deliver(r, (unsigned)*o, copy);
        memset(copy, 0xee, BLOCK_SIZE); /* the tier's buffer is reused at once */
    }
    if (sc->done)
        tier_req_done(r, 0);
}

static void sc_cancel(struct tier *t, struct tier_req *r)
{
    (void)t, (void)r;
}

static const struct tier_ops script_ops = {
    .name = "script",
    .lookup = sc_lookup,
    .cancel = sc_cancel,
};

static void test_paired_checks(void **state)
{
    (void)state;
    enum { N = 7 };
    static uint8_t blocks[N][BLOCK_SIZE], out[N][BLOCK_SIZE];
    struct fpkey keys[N];
    uint8_t *bufs[N];
    for (int i = 0; i < N; i++) {
        memset(blocks[i], 0x30 + i, BLOCK_SIZE);
        blocks[i][i] = (uint8_t)i;
        struct fp f;
        assert_int_equal(fp_compute(blocks[i], &f), 0);
        keys[i] = fpkey_of(&f);
        bufs[i] = out[i];
    }
    static const int odd[] = {3, 0, 4, 1, 6, -1}; /* pairs (3,0) (4,1), 6 left for done */
    static const int twice[] = {2, 2, 5, -1};     /* the same key twice, then one */
    static const int held_only[] = {1, 4, 6, -1}; /* 6 is held when the lookup hangs */
    const struct {
        const int *order;
        uint64_t corrupt;
        bool done;
        uint64_t want_found;
        unsigned want_corrupt;
    } cases[] = {
        {odd, 0, true, 1u << 0 | 1u << 1 | 1u << 3 | 1u << 4 | 1u << 6, 0},
        {odd, 1u << 3 | 1u << 1, true, 1u << 0 | 1u << 4 | 1u << 6, 2}, /* held, second */
        {odd, 1u << 6, true, 1u << 0 | 1u << 1 | 1u << 3 | 1u << 4, 1}, /* done's */
        {twice, 1u << 5, true, 1u << 2, 1},
        {held_only, 0, false, 1u << 1 | 1u << 4, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct script sc = {.order = cases[c].order,
                            .corrupt = cases[c].corrupt,
                            .done = cases[c].done,
                            .blocks = blocks};
        struct tier t = {.ops = &script_ops, .priv = &sc, .timeout_ms = 50};
        struct tier_req r;
        tier_req_init(&r);
        memset(out, 0x5a, sizeof out);
        r.keys = keys;
        r.bufs = bufs;
        r.n = N;
        int got = tier_lookup(&t, &r);
        unsigned nfound = (unsigned)__builtin_popcountll(cases[c].want_found);
        assert_int_equal(got, nfound ? (int)nfound : -ETIMEDOUT);
        assert_int_equal(t.c.corrupt, cases[c].want_corrupt);
        assert_int_equal(t.c.timeouts, cases[c].done ? 0 : 1);
        for (unsigned i = 0; i < N; i++) {
            bool want = cases[c].want_found >> i & 1;
            assert_int_equal(tier_req_found(&r, i), want);
            /* Found blocks hold their content (the others may hold
             * anything: the back end fills them). */
            if (want)
                assert_memory_equal(out[i], blocks[i], BLOCK_SIZE);
        }
        tier_req_destroy(&r);
    }
}

/* A warm move's two halves (vol_move.h) over a tier whose put queue has
 * fallen behind and whose map lookups time out under load: the export
 * first waits for what was queued before it, so the content of blocks
 * only written here (never offered to the tier) still lands, and the
 * import asks a failed batch again; the new owner then reads every
 * exported block without the back end. */
static void test_move_export_import_under_load(void **state)
{
    (void)state;
    enum { QUEUE = 256, WRITTEN = 32, READ_FROM = 100, READ_TO = 164 };
    struct fix *x = fix_new_ctl(true, SLOW_OK_MS, QUEUE, true);
    read_blocks(x, READ_FROM, READ_TO); /* their content is queued */
    static uint8_t wbuf[WRITTEN * BLOCK_SIZE];
    for (size_t i = 0; i < sizeof wbuf; i++)
        wbuf[i] = (uint8_t)(i * 7 + i / BLOCK_SIZE);
    struct vol_req w = {.offset = 0, .length = sizeof wbuf, .buf = wbuf};
    assert_int_equal(vol_write(x->v, &w, x->s), 0);
    vol_req_finish(x->v, &w);
    for (uint64_t b = 0; b < WRITTEN; b++)
        assert_true(in_ram(x, b));
    /* Other content fills the queue (another volume's cold pass). */
    uint8_t junk[BLOCK_SIZE];
    for (uint32_t i = 0; i < QUEUE - (READ_TO - READ_FROM); i++) {
        seeded_block(0xa5000000u + i, junk);
        struct fpkey k = seeded_key(0xa5000000u + i);
        tier_put(x->tier, &k, junk);
    }
    assert_int_equal(x->ctl.put_drops, 0);

    struct tier_map_id id;
    assert_int_equal(vol_move_identity("vol", 7, &id), 0);
    uint64_t exported = 0;
    assert_int_equal(volume_map_export(x->v, &id, SLOW_OK_MS, &exported), 0);
    assert_int_equal(exported, WRITTEN + (READ_TO - READ_FROM));
    assert_int_equal(x->ctl.put_drops, 0);
    for (uint64_t b = 0; b < WRITTEN; b++) {
        struct fp f;
        assert_int_equal(fp_compute(wbuf + b * BLOCK_SIZE, &f), 0);
        struct fpkey k = fpkey_of(&f);
        assert_true(tier_fake_holds(x->tier, &k));
    }

    /* The new owner: the same image (one block longer, so its directory is
     * its own rather than shared with vol's); the first map lookup fails. */
    struct fake *f2 = fake_new((VOL_BLOCKS + 1) * BLOCK_SIZE, 0);
    memcpy(f2->data, x->f->data, VOL_BLOCKS * BLOCK_SIZE);
    struct volume *v2 = add(x->e, "vol2", f2);
    x->ctl.map_fails = 1;
    unsigned lookups = x->ctl.map_lookups;
    uint64_t imported = 0;
    assert_int_equal(volume_map_import(v2, &id, &imported), 0);
    assert_int_equal(imported, exported);
    assert_true(x->ctl.map_lookups > lookups + (VOL_BLOCKS + 1 + TIER_BATCH_MAX - 1) /
                                                   TIER_BATCH_MAX); /* one asked twice */
    uint8_t got[BLOCK_SIZE];
    for (uint64_t b = 0; b < READ_TO; b++) {
        if (b >= WRITTEN && b < READ_FROM)
            continue;
        assert_int_equal(rd(x, v2, b * BLOCK_SIZE, BLOCK_SIZE, got), 0);
        assert_memory_equal(got, f2->data + b * BLOCK_SIZE, BLOCK_SIZE);
    }
    assert_int_equal(f2->preads, 0);
    volume_put(v2);
    fix_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_evicted_block_comes_back_from_tier),
        cmocka_unit_test(test_corrupt_copy_rejected),
        cmocka_unit_test(test_failing_and_hanging_tier),
        cmocka_unit_test(test_key_hit_in_ram),
        cmocka_unit_test(test_race_tier_read_vs_write),
        cmocka_unit_test(test_paired_checks),
        cmocka_unit_test(test_move_export_import_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
