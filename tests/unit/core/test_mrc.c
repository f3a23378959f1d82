/* Miss-ratio curves (core/mrc.h): the small caches' predictions against
 * what a cache of each size does on streams whose answer is known. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/evict.h"
#include "core/mrc.h"

/* Keys as the store keeps them: hash bits. */
static uint32_t key_of(uint32_t i)
{
    uint64_t x = (uint64_t)i * 0xD6E8FEB86659FD93ull + 0x9E3779B97F4A7C15ull;
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    return (uint32_t)(x ^ (x >> 29));
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void feed(struct mrc *m, uint32_t key, enum mrc_access kind)
{
    if (mrc_sampled(m, key))
        mrc_access(m, key, kind);
}

/* A loop over N contents under LRU: a cache of N or more hits all but the
 * first pass, a smaller one never hits. */
static void test_loop_lru(void **state)
{
    (void)state;
    const uint32_t n = 20000, passes = 10;
    const uint64_t cache = 16000; /* points: 2000 4000 8000 12000 16000 24000 32000 64000 */
    struct mrc *m;
    assert_int_equal(mrc_create(evict_find("lru"), cache, 4096, &m), 0);
    for (uint32_t p = 0; p < passes; p++)
        for (uint32_t i = 0; i < n; i++)
            feed(m, key_of(i), MRC_READ);
    struct mrc_curve c;
    mrc_get(m, &c);
    assert_true(c.sampled_reads > 0);
    assert_true(c.rate > 0 && c.rate <= 1.0 / 4);
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        double want = c.p[i].cache_blocks * 1.02 >= n ? 1.0 - 1.0 / passes : 0.0;
        if (c.p[i].cache_blocks > n * 0.98 && c.p[i].cache_blocks < n * 1.02)
            continue; /* at the edge sampling decides */
        if (c.p[i].hit_ratio < want - 0.03 || c.p[i].hit_ratio > want + 0.03)
            fail_msg("point %u (%llu blocks): hit ratio %.3f, want %.3f", i,
                     (unsigned long long)c.p[i].cache_blocks, c.p[i].hit_ratio, want);
    }
    mrc_destroy(m);
}

/* Uniform random reads over N contents: an LRU cache of c < N blocks hits
 * about c/N of them once warm. */
static void test_uniform_lru(void **state)
{
    (void)state;
    const uint32_t n = 40000;
    const uint64_t cache = 16000;
    struct mrc *m;
    assert_int_equal(mrc_create(evict_find("lru"), cache, 8192, &m), 0);
    uint64_t s = 88172645463325252ull;
    for (uint32_t i = 0; i < 60 * n; i++)
        feed(m, key_of((uint32_t)(rng(&s) % n)), MRC_READ);
    struct mrc_curve c;
    mrc_get(m, &c);
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        double want = c.p[i].cache_blocks >= n ? 1.0 : (double)c.p[i].cache_blocks / n;
        /* The cold start (N misses of 60N reads) lowers every point a little. */
        want -= 1.0 / 60;
        if (c.p[i].hit_ratio < want - 0.03 || c.p[i].hit_ratio > want + 0.03)
            fail_msg("point %u (%llu blocks): hit ratio %.3f, want %.3f", i,
                     (unsigned long long)c.p[i].cache_blocks, c.p[i].hit_ratio, want);
    }
    mrc_destroy(m);
}

/* Pinned at the cache's own size: with the real cache's hits reported
 * (mrc_reads), the x1 point is the real hit ratio and every other point
 * keeps its distance from it (the uniform stream above, whose real cache
 * lost a tenth of its hits, say to install races). */
static void test_pinned_to_real_hits(void **state)
{
    (void)state;
    const uint32_t n = 40000;
    const uint64_t cache = 16000;
    struct mrc *free_run, *m;
    assert_int_equal(mrc_create(evict_find("lru"), cache, 8192, &free_run), 0);
    assert_int_equal(mrc_create(evict_find("lru"), cache, 8192, &m), 0);
    uint64_t s = 88172645463325252ull;
    for (uint32_t i = 0; i < 60 * n; i++) {
        uint32_t key = key_of((uint32_t)(rng(&s) % n));
        feed(free_run, key, MRC_READ);
        feed(m, key, MRC_READ);
    }
    struct mrc_curve c0, c;
    mrc_get(free_run, &c0);
    /* The real cache: 60n reads, and hits 0.1 below the simulated x1. */
    double real = c0.p[MRC_X1].hit_ratio - 0.1;
    uint64_t reads = 60ull * n;
    uint64_t hits = (uint64_t)(real * (double)reads);
    mrc_reads(m, hits, true);
    mrc_reads(m, reads - hits, false);
    mrc_get(m, &c);
    assert_true(c.p[MRC_X1].hit_ratio > real - 0.001 && c.p[MRC_X1].hit_ratio < real + 0.001);
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        double want = c0.p[i].hit_ratio - (c0.p[MRC_X1].hit_ratio - real);
        want = want < 0 ? 0 : want;
        if (c.p[i].hit_ratio < want - 0.002 || c.p[i].hit_ratio > want + 0.002)
            fail_msg("point %u: pinned hit ratio %.4f, want %.4f (free %.4f)", i, c.p[i].hit_ratio,
                     want, c0.p[i].hit_ratio);
    }
    mrc_destroy(free_run);
    mrc_destroy(m);
}

/* Writes take room without being reads; zero reads always hit. */
static void test_writes_and_zeros(void **state)
{
    (void)state;
    struct mrc *m;
    assert_int_equal(mrc_create(evict_find("s3fifo"), 1 << 20, 4096, &m), 0);
    for (uint32_t i = 0; i < 100000; i++)
        feed(m, key_of(i), MRC_WRITE);
    struct mrc_curve c;
    mrc_get(m, &c);
    assert_int_equal(c.sampled_reads, 0);
    /* Read back what was written: the largest small cache holds it all. */
    for (uint32_t i = 0; i < 100000; i++)
        feed(m, key_of(i), MRC_READ);
    mrc_get(m, &c);
    assert_true(c.sampled_reads > 0);
    assert_true(c.p[MRC_POINTS - 1].hit_ratio > 0.97);
    /* As many zero reads as stored ones (estimated): misses count half. */
    struct mrc *z;
    assert_int_equal(mrc_create(evict_find("lru"), 1000, 4096, &z), 0);
    for (uint32_t i = 0; i < 200000; i++)
        feed(z, key_of(i), MRC_READ); /* all cold: every stored read misses */
    mrc_zero_reads(z, 200000);
    mrc_get(z, &c);
    for (unsigned i = 0; i < MRC_POINTS; i++)
        if (c.p[i].hit_ratio < 0.45 || c.p[i].hit_ratio > 0.55)
            fail_msg("point %u: hit ratio %.3f with half the reads zero", i, c.p[i].hit_ratio);
    mrc_destroy(z);
    mrc_destroy(m);
}

/* A resize starts over around the new size. */
static void test_resize(void **state)
{
    (void)state;
    struct mrc *m;
    assert_int_equal(mrc_create(evict_find("sieve"), 8000, 4096, &m), 0);
    for (uint32_t i = 0; i < 50000; i++)
        feed(m, key_of(i % 5000), MRC_READ);
    struct mrc_curve c;
    mrc_get(m, &c);
    assert_true(c.sampled_reads > 0);
    assert_int_equal(mrc_resize(m, 64000), 0);
    mrc_get(m, &c);
    assert_int_equal(c.sampled_reads, 0);
    assert_true(c.p[4].cache_blocks > 60000 && c.p[4].cache_blocks < 68000);
    assert_true(c.bytes > 0);
    assert_int_equal(mrc_create(evict_find("lru"), 1000, 1, &m), -EINVAL);
    mrc_destroy(m);
}

/* After a resize the small caches start warm, as the real cache does: a
 * uniform workload over n contents, then the cache grows past n. Every
 * content fits, so the new x1 point must say (nearly) every read hits at
 * once; small caches started empty said about half over the same reads
 * (each sampled content's first read a miss). */
static void test_resize_starts_warm(void **state)
{
    (void)state;
    const uint32_t n = 12000;
    struct mrc *m;
    assert_int_equal(mrc_create(evict_find("lru"), 8000, 4096, &m), 0);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < 20 * n; i++)
        feed(m, key_of((uint32_t)(rng(&s) % n)), MRC_READ);
    assert_int_equal(mrc_resize(m, 16000), 0);
    struct mrc_curve c;
    mrc_get(m, &c);
    assert_int_equal(c.sampled_reads, 0); /* the counts start over */
    for (uint32_t i = 0; i < 2 * n; i++)
        feed(m, key_of((uint32_t)(rng(&s) % n)), MRC_READ);
    mrc_get(m, &c);
    assert_true(c.sampled_reads > 500);
    if (c.p[MRC_X1].hit_ratio < 0.97)
        fail_msg("x1 (%llu blocks, all %u contents fit) right after the resize: hit ratio %.3f",
                 (unsigned long long)c.p[MRC_X1].cache_blocks, n, c.p[MRC_X1].hit_ratio);
    /* Half the cache, 8000 blocks: 2/3 of 12000 uniform contents fit (LRU);
     * which contents fall in the sample moves it by several hundredths
     * (started empty: at most 1/2). */
    double half = c.p[MRC_X1 - 2].hit_ratio;
    if (half < 0.6 || half > 0.8)
        fail_msg("x1/2 right after the resize: hit ratio %.3f, want about 0.667", half);
    mrc_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_lru),
        cmocka_unit_test(test_uniform_lru),
        cmocka_unit_test(test_pinned_to_real_hits),
        cmocka_unit_test(test_writes_and_zeros),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_resize_starts_warm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
