/* Directory: lookups, growth, stale cells, invalidation, and the race rule
 * step by step (see core/dir.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/block.h"
#include "core/dir.h"
#include "core/evict.h"
#include "core/fingerprint.h"
#include "core/store.h"
#include "seeded.h"

struct fix {
    struct store *st;
    struct dir_budget budget;
    struct dir *d;
    struct dir_tickets *tk, *tk2;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    /* S3-FIFO: new blocks push old ones out (the default, W-TinyLFU,
     * keeps old blocks over blocks seen once), which these tests rely on. */
    store_create(4096 * BLOCK_SIZE, 0, evict_find("s3fifo"), &f->st);
    dir_budget_init(&f->budget, 1u << 20);
    dir_create(f->st, 1u << 30, &f->budget, &f->d);
    f->tk = calloc(1, sizeof *f->tk);
    f->tk2 = calloc(1, sizeof *f->tk2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    dir_destroy(f->d);
    store_destroy(f->st);
    free(f->tk);
    free(f->tk2);
    free(f);
    return 0;
}

static uint64_t content(struct fix *f, uint32_t seed)
{
    uint64_t v = seeded_ref(f->st, seed);
    assert_true(v != 0);
    return v;
}

static void test_install_lookup(void **state)
{
    struct fix *f = *state;
    dir_tickets_reset(f->tk);
    for (uint64_t b = 0; b < 3000; b++)
        dir_read_ticket(f->d, b * 7919, f->tk);
    for (uint64_t b = 0; b < 3000; b++) {
        uint64_t v = b % 3 ? content(f, (uint32_t)b) : DIR_ZERO;
        assert_true(dir_install(f->d, b * 7919, f->tk, v));
    }
    for (uint64_t b = 0; b < 3000; b++) {
        uint64_t v = dir_lookup(f->d, b * 7919);
        if (b % 3 == 0)
            assert_true(v == DIR_ZERO);
        else
            assert_true(dir_val_is_ref(v));
    }
    assert_int_equal(dir_lookup(f->d, 1), 0);
    assert_int_equal(dir_cells(f->d), 3000);
    assert_int_equal(dir_zero_cells(f->d), 1000);
    assert_true(dir_metadata_bytes(f->d) > 3000 * 12);
    /* A second install on an occupied cell is refused (keeps the first). */
    assert_false(dir_install(f->d, 7919, f->tk, DIR_ZERO));
}

static void test_read_raced_by_write(void **state)
{
    struct fix *f = *state;
    const uint64_t blk = 42;
    /* Reader takes its ticket, then a write begins and ends. */
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->d, blk, f->tk);
    dir_tickets_reset(f->tk2);
    dir_write_begin(f->d, blk, f->tk2, NULL, NULL);
    bool clean;
    dir_write_end(f->d, blk, f->tk2, &clean);
    assert_true(clean);
    uint64_t old = content(f, 1);
    assert_false(dir_install(f->d, blk, f->tk, old)); /* stale data refused */
    store_unref(f->st, dir_ref(old));
    uint64_t fresh = content(f, 2);
    assert_true(dir_install(f->d, blk, f->tk2, fresh)); /* the write's own data */
    assert_int_equal(dir_lookup(f->d, blk), fresh);
}

static void test_read_during_write_is_cleared(void **state)
{
    struct fix *f = *state;
    const uint64_t blk = 77;
    dir_tickets_reset(f->tk2);
    dir_write_begin(f->d, blk, f->tk2, NULL, NULL);
    /* A read starting during the write may install... */
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->d, blk, f->tk);
    assert_true(dir_install(f->d, blk, f->tk, content(f, 3)));
    /* ...but the write's end removes it before the write is acknowledged. */
    bool clean;
    uint64_t removed = dir_write_end(f->d, blk, f->tk2, &clean);
    assert_true(dir_val_is_ref(removed));
    store_unref(f->st, dir_ref(removed));
    assert_int_equal(dir_lookup(f->d, blk), 0);
    /* The write was not clean: someone touched the stripe meanwhile? No:
     * a read install does not bump, so the write is still clean. */
    assert_true(clean);
}

static void test_overlapping_writes_install_nothing(void **state)
{
    struct fix *f = *state;
    const uint64_t blk = 1234;
    bool c1, c2;
    dir_tickets_reset(f->tk);
    dir_tickets_reset(f->tk2);
    dir_write_begin(f->d, blk, f->tk, NULL, NULL);  /* W1 */
    dir_write_begin(f->d, blk, f->tk2, NULL, NULL); /* W2 */
    dir_write_end(f->d, blk, f->tk2, &c2);
    dir_write_end(f->d, blk, f->tk, &c1);
    assert_false(c1); /* W2 began inside W1 */
    /* W2 saw nothing between its begin and end, but W1's end came after:
     * its install must fail. */
    uint64_t v = content(f, 9);
    if (c2)
        assert_false(dir_install(f->d, blk, f->tk2, v));
    store_unref(f->st, dir_ref(v));
    assert_int_equal(dir_lookup(f->d, blk), 0);
}

static void test_same_stripe_foreign_change_marks_dirty(void **state)
{
    struct fix *f = *state;
    /* Blocks 8 and 9 share a stripe. Our request writes both; a foreign
     * write to block 8 slips between our two begins. */
    bool c;
    dir_tickets_reset(f->tk);
    dir_tickets_reset(f->tk2);
    dir_write_begin(f->d, 8, f->tk, NULL, NULL);
    dir_write_begin(f->d, 8, f->tk2, NULL, NULL); /* foreign */
    dir_write_begin(f->d, 9, f->tk, NULL, NULL);
    dir_write_end(f->d, 8, f->tk2, &c);
    dir_write_end(f->d, 8, f->tk, &c);
    assert_false(c);
    dir_write_end(f->d, 9, f->tk, &c);
    assert_false(c);
    uint64_t v = content(f, 11);
    assert_false(dir_install(f->d, 8, f->tk, v));
    assert_false(dir_install(f->d, 9, f->tk, v));
    store_unref(f->st, dir_ref(v));
}

/* Installs are refused only for a change of their own block: the stripe
 * knows which block its latest run of changes touched (a read miss at QD1
 * is installed after its reply, when the client's next request, often to
 * the next block, may already have changed the stripe). */
static int read_install(struct fix *f, uint64_t blk, uint32_t seed, void (*between)(struct fix *))
{
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->d, blk, f->tk);
    between(f);
    uint64_t v = content(f, seed);
    int r = dir_install(f->d, blk, f->tk, v);
    if (r != DIR_HELD)
        store_unref(f->st, dir_ref(v));
    return r;
}

static void write_blk(struct fix *f, uint64_t blk)
{
    dir_tickets_reset(f->tk2);
    bool clean;
    dir_write_begin(f->d, blk, f->tk2, NULL, NULL);
    uint64_t v = dir_write_end(f->d, blk, f->tk2, &clean);
    if (dir_val_is_ref(v))
        store_unref(f->st, dir_ref(v));
}

static void w17(struct fix *f)
{
    write_blk(f, 17);
}
static void w19_then_18(struct fix *f)
{
    write_blk(f, 19);
    write_blk(f, 18);
}
static void w21_then_22(struct fix *f)
{
    write_blk(f, 21);
    write_blk(f, 22);
}
static void far_range(struct fix *f)
{
    dir_invalidate(f->d, 1u << 20, 1u << 20); /* not block 20's range */
}
static void w21_300(struct fix *f)
{
    for (int i = 0; i < 300; i++)
        write_blk(f, 21);
}

static void test_install_after_neighbour_change(void **state)
{
    struct fix *f = *state;
    /* 16..23 are one group: one stripe. */
    assert_int_equal(read_install(f, 16, 1600, w17), DIR_HELD);
    assert_int_equal(read_install(f, 18, 1800, w19_then_18), DIR_REFUSED);
    assert_int_equal(dir_lookup(f->d, 18), 0);
    /* What the stripe cannot tell apart counts as a change (refused): two
     * different blocks since the ticket, a range change, a long run. */
    assert_int_equal(read_install(f, 20, 2000, w21_then_22), DIR_REFUSED);
    assert_int_equal(read_install(f, 20, 2001, far_range), DIR_REFUSED);
    assert_int_equal(read_install(f, 20, 2002, w21_300), DIR_REFUSED);
    assert_int_equal(read_install(f, 20, 2003, w17), DIR_HELD);
}

static void test_invalidate_small_and_large(void **state)
{
    struct fix *f = *state;
    dir_tickets_reset(f->tk);
    const uint64_t n = 20000;
    for (uint64_t b = 0; b < n; b++)
        dir_read_ticket(f->d, b, f->tk);
    for (uint64_t b = 0; b < n; b++)
        assert_true(dir_install(f->d, b, f->tk, DIR_ZERO));
    dir_invalidate(f->d, 100, 10); /* small path */
    for (uint64_t b = 95; b < 115; b++)
        assert_int_equal(dir_lookup(f->d, b) == 0, b >= 100 && b < 110);
    dir_invalidate(f->d, 5000, 12000); /* large path: walks the tables */
    for (uint64_t b = 0; b < n; b++) {
        bool gone = (b >= 100 && b < 110) || (b >= 5000 && b < 17000);
        assert_int_equal(dir_lookup(f->d, b) == 0, gone);
    }
    assert_int_equal(dir_cells(f->d), n - 10 - 12000);
    /* Any install with an old ticket now fails. */
    assert_false(dir_install(f->d, 6000, f->tk, DIR_ZERO));
    dir_invalidate(f->d, 0, 1u << 30);
    assert_int_equal(dir_cells(f->d), 0);
}

static void test_stale_cells_dropped(void **state)
{
    struct fix *f = *state;
    /* Fill far beyond the store's capacity: cells of evicted contents go
     * stale; the tables purge them instead of growing without bound. */
    for (uint32_t round = 0; round < 8; round++) {
        dir_tickets_reset(f->tk);
        for (uint64_t b = 0; b < 4096; b++)
            dir_read_ticket(f->d, round * 4096 + b, f->tk);
        for (uint64_t b = 0; b < 4096; b++) {
            uint64_t v = content(f, round * 4096 + (uint32_t)b + 100);
            if (!dir_install(f->d, round * 4096 + b, f->tk, v))
                store_unref(f->st, dir_ref(v));
        }
    }
    struct store_stats st;
    store_get_stats(f->st, &st);
    assert_true(st.unique_blocks <= 4096);
    assert_true(dir_cells(f->d) < 8 * 4096); /* some stale cells were purged */
    /* Every live cell reads back; stale cells report stale. */
    unsigned live = 0;
    for (uint64_t b = 0; b < 8 * 4096; b++) {
        uint64_t v = dir_lookup(f->d, b);
        if (v && store_ref_live(f->st, dir_ref(v)))
            live++;
    }
    assert_true(live > 0 && live <= 4096);
    /* A purge turns stale cells the eviction log still knows into
     * remembered blocks, drops the others and shrinks the tables. */
    uint64_t bytes_before = dir_metadata_bytes(f->d);
    dir_purge(f->d);
    assert_int_equal(dir_cells(f->d), live);
    assert_true(dir_metadata_bytes(f->d) <= bytes_before);
    assert_true(dir_remembered(f->d) > 0);
    assert_true(dir_remembered(f->d) <= 8 * 4096 - live);
    unsigned remembered = 0;
    for (uint64_t b = 0; b < 8 * 4096; b++) {
        uint64_t v = dir_lookup(f->d, b);
        if (v == DIR_REMEMBERED) {
            remembered++;
            continue;
        }
        assert_true(v == 0 || store_ref_live(f->st, dir_ref(v)));
    }
    assert_int_equal(remembered, dir_remembered(f->d));
}

static struct fpkey key_of_seed(uint32_t seed)
{
    return seeded_key(seed);
}

/* Evict what the directory maps (inserted first: the oldest) by filling
 * the store (4096 blocks) with a little more than its capacity of other
 * contents: few enough evictions that the store's eviction log (an eighth
 * of each shard) still holds the first ones. */
#define EVICT_FILL (4096 + 300)
static void evict_all(struct fix *f)
{
    static uint64_t held[EVICT_FILL];
    for (uint32_t i = 0; i < EVICT_FILL; i++)
        held[i] = content(f, 1000000 + i); /* referenced: only eviction frees them */
    for (uint32_t i = 0; i < EVICT_FILL; i++)
        store_unref(f->st, dir_ref(held[i]));
}

static void install_seed(struct fix *f, uint64_t blk, uint32_t seed)
{
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->d, blk, f->tk);
    assert_true(dir_install(f->d, blk, f->tk, content(f, seed)));
}

/* A block whose content was evicted keeps the content's key (learnt from
 * the store's eviction log on the read path), until a write, trim or
 * invalidate of the block. */
static void test_remembered_keys(void **state)
{
    struct fix *f = *state;
    install_seed(f, 5, 77);
    install_seed(f, 6, 78);
    install_seed(f, 100000, 79);
    evict_all(f);
    uint64_t v = dir_lookup(f->d, 5);
    assert_true(dir_val_is_ref(v) && !store_ref_live(f->st, dir_ref(v))); /* stale */

    struct fpkey k, want = key_of_seed(77);
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->d, 5, f->tk);
    assert_true(dir_remembered_key(f->d, 5, f->tk, &k));
    assert_true(fpkey_equal(&k, &want));
    assert_int_equal(dir_lookup(f->d, 5), DIR_REMEMBERED);
    assert_int_equal(dir_remembered(f->d), 1);
    /* Again, now from the remembered table. */
    assert_true(dir_remembered_key(f->d, 5, f->tk, &k));
    assert_true(fpkey_equal(&k, &want));

    /* A change of a neighbour since the ticket does not matter... */
    dir_tickets_reset(f->tk);
    dir_read_ticket(f->d, 6, f->tk);
    dir_tickets_reset(f->tk2);
    dir_write_begin(f->d, 7, f->tk2, NULL, NULL); /* same stripe as 6 */
    assert_true(dir_remembered_key(f->d, 6, f->tk, &k));
    want = key_of_seed(78);
    assert_true(fpkey_equal(&k, &want));
    /* ...a change of the block itself does: a ticket older than it
     * answers nothing. */
    dir_write_begin(f->d, 6, f->tk2, NULL, NULL);
    assert_false(dir_remembered_key(f->d, 6, f->tk, &k));

    /* A write forgets the key, and hands it to the writer (the old
     * content's heat goes to the new one: volume.c). */
    dir_tickets_reset(f->tk2);
    struct fpkey forgot;
    bool forgotten = false;
    assert_int_equal(dir_write_begin(f->d, 5, f->tk2, &forgot, &forgotten), 0);
    assert_true(forgotten);
    want = key_of_seed(77);
    assert_true(fpkey_equal(&forgot, &want));
    assert_int_equal(dir_lookup(f->d, 5), 0);
    assert_int_equal(dir_remembered(f->d), 0);
    bool clean;
    dir_write_end(f->d, 5, f->tk2, &clean);
    dir_write_begin(f->d, 5, f->tk2, &forgot, &forgotten);
    assert_false(forgotten);
    dir_write_end(f->d, 5, f->tk2, &clean);

    /* The purge remembers the rest; a large invalidate forgets them. */
    dir_purge(f->d);
    assert_int_equal(dir_lookup(f->d, 100000), DIR_REMEMBERED);
    dir_invalidate(f->d, 0, 1u << 30);
    assert_int_equal(dir_lookup(f->d, 100000), 0);
    assert_int_equal(dir_remembered(f->d), 0);
    assert_int_equal(f->budget.used, 0);
}

/* Remembering stops at the budget, shared by the directories using it. */
static void test_remember_budget(void **state)
{
    struct fix *f = *state;
    f->budget.max = 3;
    for (uint64_t b = 0; b < 10; b++)
        install_seed(f, b * 64, 500 + (uint32_t)b);
    evict_all(f);
    dir_purge(f->d);
    assert_int_equal(dir_remembered(f->d), 3);
    assert_int_equal(f->budget.used, 3);
    /* Full, with nothing evicted since: a purge forgets nothing. */
    dir_purge(f->d);
    assert_int_equal(dir_remembered(f->d), 3);
    /* Full, with blocks evicted since: the purge makes room for them by
     * forgetting older ones (whole stripes', in rotation), so what is
     * remembered is the latest evicted, not the first three ever. */
    for (uint64_t b = 0; b < 3; b++)
        install_seed(f, (100 + b) * 64, 600 + (uint32_t)b);
    evict_all(f);
    dir_purge(f->d);
    for (uint64_t b = 0; b < 3; b++)
        assert_int_equal(dir_lookup(f->d, (100 + b) * 64), DIR_REMEMBERED);
    assert_int_equal(dir_remembered(f->d), 3);
    assert_int_equal(f->budget.used, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_install_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_raced_by_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_during_write_is_cleared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_writes_install_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_stripe_foreign_change_marks_dirty, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_install_after_neighbour_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidate_small_and_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_cells_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remembered_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remember_budget, setup, teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    return r;
}
