/* Fingerprints: SHA-256 against known vectors, hex rendering, thread use,
 * the two-at-once forms against the one-at-a-time one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/block.h"
#include "core/fingerprint.h"
#include "core/sha256x2.h"

static void test_known_vectors(void **state)
{
    (void)state;
    struct fp f;
    char hex[2 * FP_SIZE + 1];
    assert_int_equal(fp_compute_len("abc", 3, &f), 0);
    fp_to_hex(&f, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    static uint8_t zero[BLOCK_SIZE];
    assert_int_equal(fp_compute(zero, &f), 0);
    fp_to_hex(&f, hex);
    assert_string_equal(hex, "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7");
}

static void test_distinct_blocks_differ(void **state)
{
    (void)state;
    static uint8_t a[BLOCK_SIZE], b[BLOCK_SIZE];
    memset(a, 0x11, sizeof a);
    memcpy(b, a, sizeof b);
    b[BLOCK_SIZE - 1] ^= 1;
    struct fp fa, fb, fa2;
    assert_int_equal(fp_compute(a, &fa), 0);
    assert_int_equal(fp_compute(b, &fb), 0);
    assert_int_equal(fp_compute(a, &fa2), 0);
    assert_false(fp_equal(&fa, &fb));
    assert_true(fp_equal(&fa, &fa2));
}

static void *hash_many(void *arg)
{
    uint8_t blk[BLOCK_SIZE];
    struct fp ref, f;
    memset(blk, (int)(uintptr_t)arg, sizeof blk);
    fp_compute(blk, &ref);
    for (int i = 0; i < 2000; i++) {
        fp_compute(blk, &f);
        if (!fp_equal(&f, &ref))
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hash_many, (void *)i);
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        assert_null(ret);
    }
}

/* fp_compute2 and fpkey_verify2 agree with fp_compute (OpenSSL) on random,
 * constant and single-bit-different blocks, the same block twice and
 * unaligned buffers; with SHA-NI this is the two-lane code (sha256x2.h),
 * which is then also called directly. */
static void test_two_at_once(void **state)
{
    (void)state;
    enum { N = 64 };
    static uint8_t mem[N * (BLOCK_SIZE + 1)];
    uint64_t x = 88172645463325252ull; /* xorshift: the same blocks every run */
    for (size_t i = 0; i < sizeof mem; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        mem[i] = (uint8_t)x;
    }
    uint8_t *blk[N];
    for (int i = 0; i < N; i++)
        blk[i] = mem + (size_t)i * (BLOCK_SIZE + 1) + (i % 3 == 2); /* some unaligned */
    memset(blk[3], 0, BLOCK_SIZE);
    memset(blk[4], 0xff, BLOCK_SIZE);
    memcpy(blk[7], blk[6], BLOCK_SIZE);
    blk[7][BLOCK_SIZE - 1] ^= 0x80; /* the last bit hashed */
    memcpy(blk[9], blk[8], BLOCK_SIZE);
    blk[9][0] ^= 1;
    for (int i = 0; i < N; i++) {
        int j = (i * 7 + 1) % N;
        struct fp ri, rj, ai, aj;
        assert_int_equal(fp_compute(blk[i], &ri), 0);
        assert_int_equal(fp_compute(blk[j], &rj), 0);
        assert_int_equal(fp_compute2(blk[i], blk[j], &ai, &aj), 0);
        assert_memory_equal(ai.b, ri.b, FP_SIZE);
        assert_memory_equal(aj.b, rj.b, FP_SIZE);
        assert_int_equal(fp_compute2(blk[i], blk[i], &ai, &aj), 0);
        assert_memory_equal(ai.b, ri.b, FP_SIZE);
        assert_memory_equal(aj.b, ri.b, FP_SIZE);
        if (sha256x2_available()) {
            uint8_t da[32], db[32];
            sha256x2_4k(blk[j], blk[i], da, db);
            assert_memory_equal(da, rj.b, FP_SIZE);
            assert_memory_equal(db, ri.b, FP_SIZE);
        }

        struct fpkey ki = fpkey_of(&ri), kj = fpkey_of(&rj);
        bool oki, okj;
        fpkey_verify2(&ki, blk[i], &kj, blk[j], &oki, &okj);
        assert_true(oki && okj);
        fpkey_verify2(&kj, blk[i], &ki, blk[j], &oki, &okj); /* keys swapped */
        assert_int_equal(oki, fp_equal(&ri, &rj));
        assert_int_equal(okj, fp_equal(&ri, &rj));
        fpkey_verify2(&ki, blk[i], &ki, blk[j], &oki, &okj); /* only a matches */
        assert_true(oki);
        assert_int_equal(okj, fp_equal(&ri, &rj));
    }
    struct fp f6, f7;
    assert_int_equal(fp_compute2(blk[6], blk[7], &f6, &f7), 0);
    assert_false(fp_equal(&f6, &f7));
    print_message("two-lane SHA-256 on this CPU: %s\n", sha256x2_available() ? "yes" : "no");
}

/* No allocation per block hashed (the brief: no malloc per I/O). OpenSSL's
 * allocations go through CRYPTO_malloc: count them. */
static unsigned long n_allocs;
static void *count_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    __atomic_fetch_add(&n_allocs, 1, __ATOMIC_RELAXED);
    return malloc(n);
}
static void *count_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    __atomic_fetch_add(&n_allocs, 1, __ATOMIC_RELAXED);
    return realloc(p, n);
}
static void count_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static void test_no_allocation_per_block(void **state)
{
    (void)state;
    static uint8_t blk[BLOCK_SIZE];
    struct fp f;
    assert_int_equal(fp_compute(blk, &f), 0); /* first use may set up */
    unsigned long before = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED);
    for (int i = 0; i < 1000; i++) {
        blk[0] = (uint8_t)i;
        assert_int_equal(fp_compute(blk, &f), 0);
    }
    struct fp g;
    for (int i = 0; i < 1000; i++) {
        blk[0] = (uint8_t)i;
        assert_int_equal(fp_compute2(blk, blk, &f, &g), 0);
    }
    assert_int_equal(__atomic_load_n(&n_allocs, __ATOMIC_RELAXED), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_distinct_blocks_differ),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_two_at_once),
        cmocka_unit_test(test_no_allocation_per_block),
    };
    /* Before OpenSSL allocates anything. */
    if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free))
        return 1;
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    return r;
}
