/* Directory sharing (core/dir.h, SHARING): a dependent's block shares its
 * base's cell only while both are known to hold the same content. Every
 * change on either side unshares; a stale or forgotten base cell never
 * serves a dependent; the race rule of the dependent's tickets holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/block.h"
#include "core/dir.h"
#include "core/evict.h"
#include "core/dir_share.h"
#include "core/fingerprint.h"
#include "core/store.h"
#include "seeded.h"

#define NBLOCKS (1u << 20)

struct fix {
    struct store *st;
    struct dir_budget budget;
    struct dir *base, *dep, *dep2;
    struct dir_tickets *tk, *tk2;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    /* S3-FIFO: new blocks push old ones out (the default, W-TinyLFU,
     * keeps old blocks over blocks seen once), which these tests rely on. */
    assert_int_equal(store_create(4096 * BLOCK_SIZE, 0, evict_find("s3fifo"), &f->st), 0);
    dir_budget_init(&f->budget, 1u << 20);
    assert_int_equal(dir_create(f->st, NBLOCKS, &f->budget, &f->base), 0);
    assert_int_equal(dir_create(f->st, NBLOCKS, &f->budget, &f->dep), 0);
    assert_int_equal(dir_create(f->st, NBLOCKS, &f->budget, &f->dep2), 0);
    assert_int_equal(dir_share(f->dep, f->base), 0);
    assert_int_equal(dir_share(f->dep2, f->base), 0);
    f->tk = calloc(1, sizeof *f->tk);
    f->tk2 = calloc(1, sizeof *f->tk2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    dir_destroy(f->dep);
    dir_destroy(f->dep2);
    dir_destroy(f->base);
    assert_int_equal(store_check(f->st), 0);
    store_destroy(f->st);
    free(f->tk);
    free(f->tk2);
    free(f);
    return 0;
}

/* A reference to the content made from seed (one more reference each
 * call: the store holds each content once). */
static uint64_t content(struct fix *f, uint32_t seed)
{
    uint64_t v = seeded_ref(f->st, seed);
    assert_true(v != 0);
    return v;
}

/* What a read miss of blk in d does with the content it fetched: ticket,
 * install, and drop the reference unless the directory kept it. */
static int install(struct fix *f, struct dir *d, uint64_t blk, uint64_t val)
{
    dir_tickets_reset(f->tk);
    dir_read_ticket(d, blk, f->tk);
    int r = dir_install(d, blk, f->tk, val);
    if (r != DIR_HELD && dir_val_is_ref(val))
        store_unref(f->st, dir_ref(val));
    return r;
}

static void write_block(struct fix *f, struct dir *d, uint64_t blk)
{
    dir_tickets_reset(f->tk2);
    uint64_t v = dir_write_begin(d, blk, f->tk2, NULL, NULL);
    if (dir_val_is_ref(v))
        store_unref(f->st, dir_ref(v));
    bool clean;
    v = dir_write_end(d, blk, f->tk2, &clean);
    if (dir_val_is_ref(v))
        store_unref(f->st, dir_ref(v));
}

static void test_share_rules(void **state)
{
    struct fix *f = *state;
    struct dir *other;
    assert_int_equal(dir_create(f->st, NBLOCKS - 1, &f->budget, &other), 0);
    assert_int_equal(dir_share(other, f->base), -EINVAL); /* another size */
    dir_destroy(other);
    assert_int_equal(dir_create(f->st, NBLOCKS, &f->budget, &other), 0);
    assert_int_equal(dir_share(other, f->dep), -EINVAL); /* a dependent is no base */
    assert_int_equal(dir_share(other, other), -EINVAL);
    assert_int_equal(dir_share(f->base, other), -EINVAL); /* a base is no dependent */
    dir_destroy(other);
}

static void test_same_content_is_shared(void **state)
{
    struct fix *f = *state;
    uint64_t base0 = dir_metadata_bytes(f->base), dep0 = dir_metadata_bytes(f->dep);
    for (uint64_t b = 0; b < 2000; b++) {
        uint64_t blk = b * 331;
        assert_int_equal(install(f, f->base, blk, content(f, (uint32_t)b + 1)), DIR_HELD);
        uint64_t want = dir_lookup(f->base, blk);
        assert_int_equal(install(f, f->dep, blk, content(f, (uint32_t)b + 1)), DIR_SHARED);
        assert_int_equal(dir_lookup(f->dep, blk), want);
    }
    assert_int_equal(dir_cells(f->dep), 0);
    assert_int_equal(dir_shared(f->dep), 2000);
    /* Scattered blocks: 8 bytes a group of one, against 12 a cell. */
    uint64_t base1 = dir_metadata_bytes(f->base), dep1 = dir_metadata_bytes(f->dep);
    assert_true((dep1 - dep0) * 4 < (base1 - base0) * 3);
    /* Neighbouring blocks: 8 bytes a group of eight (tables of a few
     * groups per stripe here, so less than the 8x of a full table). */
    for (uint64_t b = 0; b < 1024; b++) {
        uint64_t blk = 800000 + b; /* past the scattered ones */
        install(f, f->base, blk, content(f, 100000 + (uint32_t)b));
        assert_int_equal(install(f, f->dep, blk, content(f, 100000 + (uint32_t)b)), DIR_SHARED);
    }
    assert_true((dir_metadata_bytes(f->dep) - dep1) * 3 < dir_metadata_bytes(f->base) - base1);
    /* Each content has one reference: the base's. */
    struct store_stats ss;
    store_get_stats(f->st, &ss);
    assert_int_equal(ss.logical_blocks, 3024);
    assert_int_equal(ss.unique_blocks, 3024);
    /* Zero blocks share too. */
    assert_int_equal(install(f, f->base, 5, DIR_ZERO), DIR_HELD);
    assert_int_equal(install(f, f->dep, 5, DIR_ZERO), DIR_SHARED);
    assert_int_equal(dir_lookup(f->dep, 5), DIR_ZERO);
    assert_int_equal(dir_shared_zeros(f->dep), 1); /* counted as a zero block */
    write_block(f, f->base, 5);
    assert_int_equal(dir_shared_zeros(f->dep), 0);
    /* Another content than the base's: a cell of its own. */
    assert_int_equal(install(f, f->base, 7, content(f, 70)), DIR_HELD);
    assert_int_equal(install(f, f->dep, 7, content(f, 71)), DIR_HELD);
    assert_int_not_equal(dir_lookup(f->dep, 7), dir_lookup(f->base, 7));
    assert_int_equal(dir_cells(f->dep), 1);
    /* A second install of a block shared with a live cell is refused. */
    assert_int_equal(install(f, f->dep, 331, content(f, 2)), DIR_REFUSED);
    /* Nothing in the base: nothing shared, a cell of its own. */
    assert_int_equal(install(f, f->dep, 9, content(f, 90)), DIR_HELD);
    assert_int_equal(dir_lookup(f->dep2, 9), 0);
}

/* The base's block changes: no dependent may read the base's new content
 * (or anything) through the old share. */
static void test_base_change_unshares(void **state)
{
    struct fix *f = *state;
    const uint64_t blks[] = {100, 101, 108, 5000, 70000};
    for (unsigned i = 0; i < 5; i++) {
        install(f, f->base, blks[i], content(f, 500 + i));
        assert_int_equal(install(f, f->dep, blks[i], content(f, 500 + i)), DIR_SHARED);
        assert_int_equal(install(f, f->dep2, blks[i], content(f, 500 + i)), DIR_SHARED);
    }
    /* A write to the base, then the base caches its new content. */
    write_block(f, f->base, 100);
    assert_int_equal(dir_lookup(f->dep, 100), 0);
    assert_int_equal(dir_lookup(f->dep2, 100), 0);
    assert_int_equal(install(f, f->base, 100, content(f, 999)), DIR_HELD);
    assert_int_equal(dir_lookup(f->dep, 100), 0);
    /* Neighbours in the same group stay shared. */
    assert_int_equal(dir_lookup(f->dep, 101), dir_lookup(f->base, 101));
    /* A write's begin alone already unshares (the write is in flight). */
    dir_tickets_reset(f->tk2);
    uint64_t v = dir_write_begin(f->base, 101, f->tk2, NULL, NULL);
    store_unref(f->st, dir_ref(v));
    assert_int_equal(dir_lookup(f->dep, 101), 0);
    bool clean;
    dir_write_end(f->base, 101, f->tk2, &clean);
    /* Invalidation, small and large ranges. */
    dir_invalidate(f->base, 108, 1);
    assert_int_equal(dir_lookup(f->dep, 108), 0);
    assert_int_equal(dir_lookup(f->dep2, 108), 0);
    dir_invalidate(f->base, 0, NBLOCKS);
    assert_int_equal(dir_lookup(f->dep, 5000), 0);
    assert_int_equal(dir_lookup(f->dep2, 70000), 0);
    assert_int_equal(dir_shared(f->dep), 0);
    assert_int_equal(dir_shared(f->dep2), 0);
}

/* The dependent's block changes: it stops sharing; the base and the other
 * dependents keep theirs. */
static void test_dependent_change_unshares(void **state)
{
    struct fix *f = *state;
    for (uint64_t b = 0; b < 64; b++) {
        install(f, f->base, b, content(f, 600 + (uint32_t)b));
        install(f, f->dep, b, content(f, 600 + (uint32_t)b));
        install(f, f->dep2, b, content(f, 600 + (uint32_t)b));
    }
    assert_int_equal(dir_shared(f->dep), 64);
    write_block(f, f->dep, 3);
    assert_int_equal(dir_lookup(f->dep, 3), 0);
    assert_int_not_equal(dir_lookup(f->dep2, 3), 0);
    assert_int_not_equal(dir_lookup(f->base, 3), 0);
    /* Its own new content: a cell of its own. */
    assert_int_equal(install(f, f->dep, 3, content(f, 12345)), DIR_HELD);
    assert_int_not_equal(dir_lookup(f->dep, 3), dir_lookup(f->base, 3));
    dir_invalidate(f->dep, 10, 20);
    for (uint64_t b = 10; b < 30; b++)
        assert_int_equal(dir_lookup(f->dep, b), 0);
    assert_int_equal(dir_lookup(f->dep, 30), dir_lookup(f->base, 30));
    dir_invalidate(f->dep, 0, NBLOCKS);
    assert_int_equal(dir_shared(f->dep), 0);
    assert_int_equal(dir_shared(f->dep2), 64);
}

/* The race rule through a share: a dependent's read that took its ticket
 * before its own write must not share (or install) afterwards. */
static void test_race_rule_holds_when_sharing(void **state)
{
    struct fix *f = *state;
    const uint64_t blk = 4242;
    install(f, f->base, blk, content(f, 77));
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->dep, blk, f->tk); /* the dependent's read starts */
    write_block(f, f->dep, blk);         /* its write completes */
    uint64_t v = content(f, 77);         /* the read's (old) data */
    assert_int_equal(dir_install(f->dep, blk, f->tk, v), DIR_REFUSED);
    store_unref(f->st, dir_ref(v));
    assert_int_equal(dir_lookup(f->dep, blk), 0);
    /* A base write between the dependent's ticket and install: the
     * dependent's data is still its own, but the base's no longer matches:
     * no share, a cell of its own. */
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->dep, blk, f->tk);
    write_block(f, f->base, blk);
    v = content(f, 77);
    assert_int_equal(dir_install(f->dep, blk, f->tk, v), DIR_HELD);
    assert_int_equal(dir_shared(f->dep), 0);
    assert_int_equal(dir_lookup(f->dep, blk), v);
}

/* Evict every content the store holds now (fill it with others). */
static void evict_all(struct fix *f)
{
    static uint64_t held[4096 + 300];
    for (uint32_t i = 0; i < 4096 + 300; i++)
        held[i] = content(f, 1000000 + i);
    for (uint32_t i = 0; i < 4096 + 300; i++)
        store_unref(f->st, dir_ref(held[i]));
}

/* The base's content is evicted: a shared block reads as stale (a miss),
 * then as remembered once the base remembers the key (so a tier can be
 * asked), and the dependent's purge drops shares the base forgot. */
static void test_eviction_and_remembered(void **state)
{
    struct fix *f = *state;
    for (uint64_t b = 0; b < 16; b++) {
        install(f, f->base, b, content(f, 700 + (uint32_t)b));
        install(f, f->dep, b, content(f, 700 + (uint32_t)b));
    }
    struct fpkey want = seeded_key(703);
    evict_all(f);
    uint64_t v = dir_lookup(f->dep, 3);
    assert_true(dir_val_is_ref(v) && !store_ref_live(f->st, dir_ref(v)));
    dir_purge(f->base); /* stale base cells become remembered */
    assert_int_equal(dir_lookup(f->dep, 3), DIR_REMEMBERED);
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->dep, 3, f->tk);
    struct fpkey got;
    assert_true(dir_remembered_key(f->dep, 3, f->tk, &got));
    assert_memory_equal(&got, &want, sizeof got);
    /* A dependent write: not its content any more. */
    write_block(f, f->dep, 3);
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->dep, 3, f->tk);
    assert_false(dir_remembered_key(f->dep, 3, f->tk, &got));
    /* The base forgets: the dependent's purge unshares. */
    dir_invalidate(f->base, 0, 16);
    assert_int_equal(dir_shared(f->dep), 0);
    for (uint64_t b = 16; b < 24; b++) {
        install(f, f->base, b, content(f, 800 + (uint32_t)b));
        install(f, f->dep, b, content(f, 800 + (uint32_t)b));
    }
    assert_int_equal(dir_shared(f->dep), 8);
    /* Evicted again, with no room left to remember: the base's purge drops
     * its stale cells, and the dependent's purge then unshares blocks the
     * base knows nothing of (before it, stale base cells keep them). */
    evict_all(f);
    dir_purge(f->dep);
    assert_int_equal(dir_shared(f->dep), 8);
    f->budget.max = 0;
    dir_purge(f->base);
    for (uint64_t b = 16; b < 24; b++)
        assert_int_equal(dir_lookup(f->base, b), 0);
    dir_purge(f->dep);
    assert_int_equal(dir_shared(f->dep), 0);
    for (uint64_t b = 16; b < 24; b++)
        assert_int_equal(dir_lookup(f->dep, b), 0);
}

/* A base removed before its dependents: they stop sharing at once and
 * keep working with cells of their own. */
static void test_base_goes_first(void **state)
{
    struct fix *f = *state;
    for (uint64_t b = 0; b < 100; b++) {
        install(f, f->base, b, content(f, 900 + (uint32_t)b));
        install(f, f->dep, b, content(f, 900 + (uint32_t)b));
    }
    dir_destroy(f->base);
    f->base = NULL;
    assert_int_equal(dir_shared(f->dep), 0);
    for (uint64_t b = 0; b < 100; b++)
        assert_int_equal(dir_lookup(f->dep, b), 0);
    assert_int_equal(install(f, f->dep, 1, content(f, 901)), DIR_HELD);
    write_block(f, f->dep, 2);
    dir_invalidate(f->dep, 0, NBLOCKS);
    dir_purge(f->dep);
    struct store_stats ss;
    store_get_stats(f->st, &ss);
    assert_int_equal(ss.logical_blocks, 0);
}

/* Threads: the base's blocks are rewritten with other contents while a
 * dependent installs its own (the base's old contents) and reads. A read
 * of the dependent must only ever see its own content; the lock order
 * (dependent stripe -> base stripe) must not deadlock (TSan runs this). */
#define RACE_BLOCKS 64
#define RACE_ROUNDS 300

struct race {
    struct fix *f;
    int stop;
    int bad;
};

static void *race_base(void *arg)
{
    struct race *rc = arg;
    struct fix *f = rc->f;
    struct dir_tickets *tk = calloc(1, sizeof *tk);
    for (uint32_t round = 0; round < RACE_ROUNDS; round++)
        for (uint64_t b = 0; b < RACE_BLOCKS; b++) {
            dir_tickets_reset(tk);
            uint64_t v = dir_write_begin(f->base, b, tk, NULL, NULL);
            if (dir_val_is_ref(v))
                store_unref(f->st, dir_ref(v));
            bool clean;
            v = dir_write_end(f->base, b, tk, &clean);
            if (dir_val_is_ref(v))
                store_unref(f->st, dir_ref(v));
            /* Even rounds: the dependent's content; odd: another. */
            uint32_t seed = 5000 + (uint32_t)b + (round % 2) * 100000;
            v = seeded_ref(f->st, seed);
            if (v && dir_install(f->base, b, tk, v) != DIR_HELD)
                store_unref(f->st, dir_ref(v));
        }
    __atomic_store_n(&rc->stop, 1, __ATOMIC_RELEASE);
    free(tk);
    return NULL;
}

static void *race_dep(void *arg)
{
    struct race *rc = arg;
    struct fix *f = rc->f;
    struct dir_tickets *tk = calloc(1, sizeof *tk);
    uint8_t got[BLOCK_SIZE];
    while (!__atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE))
        for (uint64_t b = 0; b < RACE_BLOCKS; b++) {
            uint64_t v = dir_lookup(f->dep, b);
            if (dir_val_is_ref(v) && store_read(f->st, dir_ref(v), got, 0, BLOCK_SIZE) == 0) {
                uint32_t seed;
                memcpy(&seed, got, sizeof seed);
                if (seed != 5000 + b)
                    __atomic_store_n(&rc->bad, 1, __ATOMIC_RELAXED);
                continue;
            }
            dir_tickets_reset(tk);
            dir_read_ticket(f->dep, b, tk);
            v = seeded_ref(f->st, 5000 + (uint32_t)b);
            if (v && dir_install(f->dep, b, tk, v) != DIR_HELD)
                store_unref(f->st, dir_ref(v));
            if (b % 16 == 0)
                dir_invalidate(f->dep, b, 3);
        }
    free(tk);
    return NULL;
}

static void test_threads(void **state)
{
    struct fix *f = *state;
    struct race rc = {.f = f};
    pthread_t a, b, c;
    pthread_create(&a, NULL, race_base, &rc);
    pthread_create(&b, NULL, race_dep, &rc);
    pthread_create(&c, NULL, race_dep, &rc);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_join(c, NULL);
    assert_int_equal(rc.bad, 0);
    dir_purge(f->dep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_share_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_content_is_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_change_unshares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dependent_change_unshares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_rule_holds_when_sharing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_and_remembered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_goes_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
