/* The SCSI layer's block commands over a real file volume: READ and WRITE
 * (6/10/12/16), WRITE AND VERIFY, VERIFY, SYNCHRONIZE CACHE, WRITE SAME,
 * UNMAP and GET LBA STATUS. Writes go through SCSI and are checked by
 * reading the backing file; reads are compared with the file's bytes;
 * every refusal is checked for its sense key, ASC/ASCQ and field pointer,
 * and for leaving the file untouched. */
#include <linux/falloc.h>

#include "harness.h"

#define BS 512u

static uint8_t *scratch(size_t n)
{
    static uint8_t *b;
    static size_t cap;
    if (n > cap) {
        free(b);
        b = malloc(n);
        assert_non_null(b);
        cap = n;
    }
    return b;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 9));
}

static void cdb10(uint8_t *c, uint8_t op, uint8_t b1, uint32_t lba, uint16_t n)
{
    memset(c, 0, 10);
    c[0] = op;
    c[1] = b1;
    put32be(c + 2, lba);
    c[7] = (uint8_t)(n >> 8);
    c[8] = (uint8_t)n;
}

static void cdb12(uint8_t *c, uint8_t op, uint8_t b1, uint32_t lba, uint32_t n)
{
    memset(c, 0, 12);
    c[0] = op;
    c[1] = b1;
    put32be(c + 2, lba);
    put32be(c + 6, n);
}

static void cdb16(uint8_t *c, uint8_t op, uint8_t b1, uint64_t lba, uint32_t n)
{
    memset(c, 0, 16);
    c[0] = op;
    c[1] = b1;
    put64be(c + 2, lba);
    put32be(c + 10, n);
}

/* The file's bytes equal b at off. */
static void assert_file(uint64_t off, const uint8_t *b, size_t n)
{
    uint8_t *f = malloc(n);
    assert_non_null(f);
    file_read(off, f, n);
    assert_memory_equal(f, b, n);
    free(f);
}

static void assert_file_zero(uint64_t off, size_t n)
{
    uint8_t *z = calloc(1, n);
    assert_non_null(z);
    assert_file(off, z, n);
    free(z);
}

static void test_read(void **state)
{
    (void)state;
    uint8_t c[16], *want = scratch(64 * BS);
    /* READ (10) of 64 blocks at 3, against the file. */
    cdb10(c, 0x28, 0, 3, 64);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 64 * BS);
    assert_int_equal(R.xfer_len, 64 * BS);
    file_read(3 * BS, want, 64 * BS);
    assert_memory_equal(g_env->in, want, 64 * BS);
    /* Again: from the cache this time, the same bytes. */
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_memory_equal(g_env->in, want, 64 * BS);
    /* READ (6): 0 blocks means 256. */
    uint8_t r6[6] = {0x08, 0, 0, 5, 0, 0};
    run_full(g_env->lu, &nexus_a, r6, 6, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 256 * BS);
    uint8_t *w6 = scratch(256 * BS);
    file_read(5 * BS, w6, 256 * BS);
    assert_memory_equal(g_env->in, w6, 256 * BS);
    /* READ (12) and (16) with DPO and FUA. */
    cdb12(c, 0xa8, 0x18, 1000, 9);
    run_full(g_env->lu, &nexus_a, c, 12, NULL, 0, IN_MAX);
    assert_good();
    file_read(1000 * BS, w6, 9 * BS);
    assert_memory_equal(g_env->in, w6, 9 * BS);
    cdb16(c, 0x88, 0x18, 16000, 3);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    file_read(16000 * BS, w6, 3 * BS);
    assert_memory_equal(g_env->in, w6, 3 * BS);
    /* Clipped to the transport's maximum; xfer_len says what was asked. */
    cdb10(c, 0x28, 0, 0, 2);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, 200);
    assert_good();
    assert_int_equal(R.in_len, 200);
    assert_int_equal(R.xfer_len, 2 * BS);
    file_read(0, w6, 200);
    assert_memory_equal(g_env->in, w6, 200);
    /* 256 blocks ending at the last one (the length's low byte 0). */
    cdb16(c, 0x88, 0, VOL_BLOCKS - 256, 256);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 256 * BS);
    /* The last block, and 0 blocks at the end. */
    cdb16(c, 0x88, 0, VOL_BLOCKS - 1, 1);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    cdb10(c, 0x28, 0, VOL_BLOCKS, 0);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 0);
}

static void test_read_errors(void **state)
{
    (void)state;
    uint8_t c[16];
    struct {
        uint64_t lba;
        uint32_t n;
    } oob[] = {{VOL_BLOCKS, 1}, {VOL_BLOCKS - 1, 2}, {VOL_BLOCKS + 1, 0},     {0x80000000u, 1},
               {UINT64_MAX, 1}, {UINT64_MAX - 1, 4}, {VOL_BLOCKS - 8, 65536}, {UINT64_MAX, 0}};
    for (size_t i = 0; i < sizeof oob / sizeof oob[0]; i++) {
        cdb16(c, 0x88, 0, oob[i].lba, oob[i].n);
        run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
        assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    }
    cdb10(c, 0x28, 0, 0xffffffffu, 1);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    /* READ (6) past the end: LBA 0x1fffff. */
    uint8_t r6[6] = {0x08, 0x1f, 0xff, 0xff, 1, 0};
    run_full(g_env->lu, &nexus_a, r6, 6, NULL, 0, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    /* Longer than the maximum transfer length: the length field. */
    cdb12(c, 0xa8, 0, 0, 65537);
    run_full(g_env->lu, &nexus_a, c, 12, NULL, 0, IN_MAX);
    assert_bad_cdb(6, -1);
    cdb16(c, 0x88, 0, 0, 65537);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_bad_cdb(10, -1);
    /* RDPROTECT without protection information. */
    cdb10(c, 0x28, 0x20, 0, 1);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_bad_cdb(1, 7);
}

static void test_write(void **state)
{
    (void)state;
    uint8_t c[16];
    uint8_t *b = scratch(300 * BS);
    fill(b, 300 * BS, 1);
    cdb10(c, 0x2a, 0, 100, 300);
    run_full(g_env->lu, &nexus_a, c, 10, b, 300 * BS, IN_MAX);
    assert_good();
    assert_int_equal(R.xfer_len, 300 * BS);
    assert_file(100 * BS, b, 300 * BS);
    /* Read back through SCSI (the cache holds the written blocks now). */
    cdb10(c, 0x28, 0, 100, 300);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_memory_equal(g_env->in, b, 300 * BS);

    /* WRITE (6), (12) with FUA, (16) with DPO+FUA at the last blocks. */
    fill(b, 4 * BS, 2);
    uint8_t w6[6] = {0x0a, 0, 0x01, 0x00, 4, 0};
    run_full(g_env->lu, &nexus_a, w6, 6, b, 4 * BS, IN_MAX);
    assert_good();
    assert_file(256 * BS, b, 4 * BS);
    fill(b, 7 * BS, 3);
    cdb12(c, 0xaa, 0x08, 5000, 7);
    run_full(g_env->lu, &nexus_a, c, 12, b, 7 * BS, IN_MAX);
    assert_good();
    assert_file(5000 * BS, b, 7 * BS);
    fill(b, 2 * BS, 4);
    cdb16(c, 0x8a, 0x18, VOL_BLOCKS - 2, 2);
    run_full(g_env->lu, &nexus_a, c, 16, b, 2 * BS, IN_MAX);
    assert_good();
    assert_file((VOL_BLOCKS - 2) * BS, b, 2 * BS);
    /* WRITE AND VERIFY (10/12/16), BYTCHK 0 and 1. */
    uint8_t ops[] = {0x2e, 0xae, 0x8e};
    for (int i = 0; i < 3; i++) {
        fill(b, 3 * BS, 10 + i);
        if (i == 0)
            cdb10(c, ops[i], 0x02, 7000, 3);
        else if (i == 1)
            cdb12(c, ops[i], 0x00, 7000, 3);
        else
            cdb16(c, ops[i], 0x12, 7000, 3);
        run_full(g_env->lu, &nexus_a, c, i == 0 ? 10 : i == 1 ? 12 : 16, b, 3 * BS, IN_MAX);
        assert_good();
        assert_file(7000 * BS, b, 3 * BS);
    }
    /* BYTCHK 10b is reserved. */
    cdb10(c, 0x2e, 0x04, 7000, 1);
    run_full(g_env->lu, &nexus_a, c, 10, b, BS, IN_MAX);
    assert_bad_cdb(1, 2);
}

static void test_write_errors(void **state)
{
    (void)state;
    uint8_t c[16];
    uint8_t *b = scratch(4 * BS), before[4 * BS];
    fill(b, 4 * BS, 5);
    file_read(20 * BS, before, sizeof before);
    /* Data-out shorter than the CDB asks: the whole blocks it holds are
     * written, the rest is left alone; a partial block is refused. */
    cdb10(c, 0x2a, 0, 20, 2);
    run_full(g_env->lu, &nexus_a, c, 10, b, BS + 200, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
    assert_int_equal(R.xfer_len, 2 * BS);
    assert_file(20 * BS, before, sizeof before);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.xfer_len, 2 * BS);
    assert_file(20 * BS, before, sizeof before);
    run_full(g_env->lu, &nexus_a, c, 10, b, BS, IN_MAX);
    assert_good();
    assert_int_equal(R.xfer_len, 2 * BS);
    assert_file(20 * BS, b, BS);
    assert_file(21 * BS, before + BS, 3 * BS);
    cdb10(c, 0x2e, 0, 22, 2); /* WRITE AND VERIFY alike */
    run_full(g_env->lu, &nexus_a, c, 10, b + BS, BS, IN_MAX);
    assert_good();
    assert_file(22 * BS, b + BS, BS);
    assert_file(23 * BS, before + 3 * BS, BS);
    memcpy(before, b, BS);
    memcpy(before + 2 * BS, b + BS, BS);
    /* Longer: only what the CDB asks is written. */
    cdb10(c, 0x2a, 0, 20, 1);
    run_full(g_env->lu, &nexus_a, c, 10, b, 4 * BS, IN_MAX);
    assert_good();
    assert_int_equal(R.xfer_len, BS);
    assert_file(20 * BS, b, BS);
    assert_file(21 * BS, before + BS, 3 * BS);
    /* 0 blocks writes nothing and is no error; out of range; WRPROTECT. */
    cdb10(c, 0x2a, 0, 22, 0);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_good();
    cdb10(c, 0x2a, 0, VOL_BLOCKS + 1, 0);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    cdb16(c, 0x8a, 0, VOL_BLOCKS - 1, 2);
    run_full(g_env->lu, &nexus_a, c, 16, b, 2 * BS, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    cdb10(c, 0x2a, 0x40, 22, 1);
    run_full(g_env->lu, &nexus_a, c, 10, b, BS, IN_MAX);
    assert_bad_cdb(1, 7);
    assert_file(21 * BS, before + BS, 3 * BS);
}

static void test_verify(void **state)
{
    (void)state;
    uint8_t c[16];
    uint8_t *b = scratch(40 * BS);
    file_read(2000 * BS, b, 40 * BS);
    /* BYTCHK 1: equal, then one byte off at offset 700 + 9 blocks. */
    cdb10(c, 0x2f, 0x02, 2000, 40);
    run_full(g_env->lu, &nexus_a, c, 10, b, 40 * BS, IN_MAX);
    assert_good();
    b[9 * BS + 700 - 512] ^= 0x5a;
    cdb12(c, 0xaf, 0x02, 2000, 40);
    run_full(g_env->lu, &nexus_a, c, 12, b, 40 * BS, IN_MAX);
    assert_sense(SK_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY);
    assert_int_equal(R.sense[0] & 0x80, 0x80); /* VALID */
    assert_int_equal(get32be(R.sense + 3), 9 * BS + 700 - 512);
    /* BYTCHK 0: no data, no compare. */
    cdb16(c, 0x8f, 0, 2000, 40);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    /* BYTCHK 3: one block against each: write 5 equal blocks first. */
    uint8_t blk[BS], *five = scratch(5 * BS);
    fill(blk, BS, 9);
    for (int i = 0; i < 5; i++)
        memcpy(five + i * BS, blk, BS);
    cdb10(c, 0x2a, 0, 3000, 5);
    run_full(g_env->lu, &nexus_a, c, 10, five, 5 * BS, IN_MAX);
    assert_good();
    cdb10(c, 0x2f, 0x06, 3000, 5);
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_good();
    cdb10(c, 0x2f, 0x06, 3000, 6);
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_sense(SK_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY);
    uint8_t next[BS];
    file_read(3005 * BS, next, BS);
    uint32_t k = 0;
    while (next[k] == blk[k])
        k++;
    assert_int_equal(get32be(R.sense + 3), 5 * BS + k);
    /* BYTCHK 2 reserved; VRPROTECT; short data-out; range. */
    cdb10(c, 0x2f, 0x04, 3000, 1);
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_bad_cdb(1, 2);
    cdb10(c, 0x2f, 0x22, 3000, 1);
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_bad_cdb(1, 7);
    cdb10(c, 0x2f, 0x02, 3000, 2);
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
    cdb10(c, 0x2f, 0x02, VOL_BLOCKS + 1, 0);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
}

static void test_sync_cache(void **state)
{
    (void)state;
    uint8_t c[16];
    cdb10(c, 0x35, 0, 0, 0);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_good();
    cdb16(c, 0x91, 0x02, VOL_BLOCKS - 10, 10);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    cdb16(c, 0x91, 0, VOL_BLOCKS - 10, 11);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
}

static void test_prefetch(void **state)
{
    (void)state;
    uint8_t c[16];
    cdb10(c, 0x34, 0x02, 0, 256);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 0);
    cdb16(c, 0x90, 0, VOL_BLOCKS - 1, 1);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    cdb10(c, 0x34, 0, VOL_BLOCKS + 1, 0);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    cdb16(c, 0x90, 0, 0, 65537);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_bad_cdb(10, -1);
}

static void test_write_same(void **state)
{
    (void)state;
    uint8_t c[16], blk[BS];
    fill(blk, BS, 21);
    /* A pattern over 5000 blocks: more than one chunk. */
    cdb10(c, 0x41, 0, 9000, 5000);
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_good();
    uint8_t *f = scratch(5001 * BS);
    file_read(9000 * BS, f, 5001 * BS);
    for (int i = 0; i < 5000; i++)
        assert_memory_equal(f + (size_t)i * BS, blk, BS);
    assert_memory_not_equal(f + 5000 * BS, blk, BS);
    /* Zeros, with and without UNMAP; NDOB (16). */
    uint8_t zero[BS] = {0};
    cdb10(c, 0x41, 0x08, 9000, 100);
    run_full(g_env->lu, &nexus_a, c, 10, zero, BS, IN_MAX);
    assert_good();
    assert_file_zero(9000 * BS, 100 * BS);
    cdb16(c, 0x93, 0, 9100, 50);
    run_full(g_env->lu, &nexus_a, c, 16, zero, BS, IN_MAX);
    assert_good();
    assert_file_zero(9100 * BS, 50 * BS);
    cdb16(c, 0x93, 0x09, 9150, 20);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.xfer_len, 0);
    assert_file_zero(9150 * BS, 20 * BS);
    file_read(9170 * BS, f, BS);
    assert_memory_equal(f, blk, BS);
    /* Reads through SCSI see the zeros too (the cache followed). */
    cdb10(c, 0x28, 0, 9000, 170);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    uint8_t *z = calloc(1, 170 * BS);
    assert_memory_equal(g_env->in, z, 170 * BS);
    free(z);

    /* Refusals, none of which writes. */
    cdb10(c, 0x41, 0, 9000, 0); /* WSNZ */
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_bad_cdb(7, -1);
    cdb16(c, 0x93, 0, 0, (1u << 20) + 1);
    run_full(g_env->lu, &nexus_a, c, 16, blk, BS, IN_MAX);
    assert_bad_cdb(10, -1);
    cdb10(c, 0x41, 0x10, 9000, 1); /* ANCHOR */
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_bad_cdb(1, 4);
    cdb10(c, 0x41, 0x18, 9000, 1);
    run_full(g_env->lu, &nexus_a, c, 10, zero, BS, IN_MAX);
    assert_bad_cdb(1, 4);
    cdb10(c, 0x41, 0x20, 9000, 1); /* WRPROTECT */
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_bad_cdb(1, 7);
    cdb10(c, 0x41, 0, VOL_BLOCKS - 1, 2);
    run_full(g_env->lu, &nexus_a, c, 10, blk, BS, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    uint8_t two[2 * BS];
    memcpy(two, blk, BS);
    memcpy(two + BS, blk, BS);
    cdb10(c, 0x41, 0x08, 9000, 1);
    run_full(g_env->lu, &nexus_a, c, 10, two, BS / 2, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
    run_full(g_env->lu, &nexus_a, c, 10, two, 2 * BS, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
    assert_file_zero(9000 * BS, 170 * BS);
}

/* An UNMAP parameter list with n descriptors. */
static uint32_t unmap_list(uint8_t *p, const uint64_t *lba, const uint32_t *num, unsigned n)
{
    memset(p, 0, 8 + 16 * n);
    uint32_t len = 8 + 16 * n;
    p[0] = (uint8_t)((len - 2) >> 8);
    p[1] = (uint8_t)(len - 2);
    p[2] = (uint8_t)((16 * n) >> 8);
    p[3] = (uint8_t)(16 * n);
    for (unsigned i = 0; i < n; i++) {
        put64be(p + 8 + 16 * i, lba[i]);
        put32be(p + 8 + 16 * i + 8, num[i]);
    }
    return len;
}

static void unmap_cdb(uint8_t *c, uint32_t plen)
{
    memset(c, 0, 10);
    c[0] = 0x42;
    c[7] = (uint8_t)(plen >> 8);
    c[8] = (uint8_t)plen;
}

static void test_unmap(void **state)
{
    (void)state;
    uint8_t c[10], list[8 + 16 * 200];
    uint8_t *before = scratch(64 * BS);
    file_read(40 * BS, before, 64 * BS);
    /* Two ranges, one of 0 blocks, unaligned to the cache block. */
    uint64_t lba[] = {41, 60, 80};
    uint32_t num[] = {5, 0, 17};
    uint32_t plen = unmap_list(list, lba, num, 3);
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_good();
    assert_file(40 * BS, before, BS);
    assert_file_zero(41 * BS, 5 * BS);
    assert_file(46 * BS, before + 6 * BS, 34 * BS);
    assert_file_zero(80 * BS, 17 * BS);
    assert_file(97 * BS, before + 57 * BS, 7 * BS);

    /* No parameter list; an empty one; a descriptor at the end with 0. */
    unmap_cdb(c, 0);
    run_full(g_env->lu, &nexus_a, c, 10, NULL, 0, IN_MAX);
    assert_good();
    plen = unmap_list(list, NULL, NULL, 0);
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_good();
    uint64_t end[] = {VOL_BLOCKS};
    uint32_t zero[] = {0};
    plen = unmap_list(list, end, zero, 1);
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_good();

    /* Refusals change nothing: the second descriptor is out of range. */
    file_read(100 * BS, before, 8 * BS);
    uint64_t bad[] = {100, VOL_BLOCKS - 1};
    uint32_t badn[] = {8, 2};
    plen = unmap_list(list, bad, badn, 2);
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    assert_file(100 * BS, before, 8 * BS);
    /* Parameter list length 1..7. */
    unmap_cdb(c, 7);
    run_full(g_env->lu, &nexus_a, c, 10, list, 7, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    /* Block descriptor data length beyond the list. */
    plen = unmap_list(list, bad, badn, 1);
    list[3] = 32;
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 2, -1);
    /* Unmap data length beyond the list. */
    plen = unmap_list(list, bad, badn, 1);
    list[1] = 40;
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 0, -1);
    /* A trailing partial descriptor is ignored. */
    plen = unmap_list(list, bad, badn, 1);
    list[3] = 16 + 8;
    list[1] = (uint8_t)(6 + 24);
    unmap_cdb(c, plen + 8);
    uint8_t *withtail = scratch(plen + 8);
    memcpy(withtail, list, plen);
    memset(withtail + plen, 0xff, 8);
    run_full(g_env->lu, &nexus_a, c, 10, withtail, plen + 8, IN_MAX);
    assert_good();
    assert_file_zero(100 * BS, 8 * BS);
    /* Too many descriptors; too many blocks (the field pointer names the
     * descriptor's count). */
    uint64_t many_l[129];
    uint32_t many_n[129];
    for (int i = 0; i < 129; i++) {
        many_l[i] = (uint64_t)i;
        many_n[i] = 1;
    }
    plen = unmap_list(list, many_l, many_n, 129);
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 2, -1);
    uint64_t big_l[] = {0, 1u << 19};
    uint32_t big_n[] = {1u << 19, (1u << 19) + 1};
    plen = unmap_list(list, big_l, big_n, 2);
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE); /* beyond the 64 MiB volume */
    /* In range each, but more than the maximum unmap LBA count together:
     * the ninth whole-volume descriptor crosses it. */
    uint64_t all_l[9] = {0};
    uint32_t all_n[9];
    for (int i = 0; i < 9; i++)
        all_n[i] = (uint32_t)VOL_BLOCKS;
    plen = unmap_list(list, all_l, all_n, 9);
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 8 + 16 * 8 + 8, -1);
    /* ANCHOR; short data-out. */
    plen = unmap_list(list, bad, badn, 1);
    unmap_cdb(c, plen);
    c[1] = 0x01;
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_bad_cdb(1, 0);
    c[1] = 0;
    run_full(g_env->lu, &nexus_a, c, 10, list, plen - 1, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
}

/* True when the temp dir's file system deallocates what is punched. */
static bool can_punch(void)
{
    char path[160];
    snprintf(path, sizeof path, "%s/punch", g_env->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return false;
    bool ok = ftruncate(fd, 1 << 20) == 0 &&
              fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
    close(fd);
    unlink(path);
    return ok;
}

static void test_get_lba_status(void **state)
{
    (void)state;
    uint8_t c[16];
    /* Blocks 0..8191 hold data (DATA_BYTES); unmap 64 KiB at 1024. */
    uint64_t l[] = {1024};
    uint32_t n[] = {128};
    uint8_t list[24];
    uint32_t plen = unmap_list(list, l, n, 1);
    unmap_cdb(c, plen);
    run_full(g_env->lu, &nexus_a, c, 10, list, plen, IN_MAX);
    assert_good();

    cdb16(c, 0x9e, 0x12, 1000, 4096);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    uint32_t len = get32be(g_env->in);
    assert_int_equal(R.in_len, len + 4);
    assert_int_equal((len - 4) % 16, 0);
    unsigned nd = (len - 4) / 16;
    assert_true(nd >= 1);
    /* Contiguous from the starting LBA, each a known status. */
    uint64_t at = 1000;
    for (unsigned i = 0; i < nd; i++) {
        const uint8_t *d = g_env->in + 8 + 16 * i;
        assert_int_equal(get64be(d), at);
        assert_true(get32be(d + 8) > 0);
        assert_true((d[12] & 0x0f) <= 1);
        if (i)
            assert_int_not_equal(d[12], d[12 - 16]); /* merged when equal */
        at += get32be(d + 8);
    }
    assert_true(at <= VOL_BLOCKS);
    if (can_punch()) {
        assert_true(nd >= 3);
        const uint8_t *d = g_env->in + 8;
        assert_int_equal(d[12], 0); /* mapped */
        assert_int_equal(get32be(d + 8), 24);
        assert_int_equal(d[16 + 12], 1); /* deallocated */
        assert_int_equal(get64be(d + 16), 1024);
        assert_int_equal(get32be(d + 16 + 8), 128);
        assert_int_equal(d[32 + 12], 0);
    }
    /* Truncated to the allocation length: the header still says all. */
    c[13] = 24;
    c[12] = 0;
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 24);
    /* The last block; past it. */
    cdb16(c, 0x9e, 0x12, VOL_BLOCKS - 1, 64);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(get64be(g_env->in + 8), VOL_BLOCKS - 1);
    assert_int_equal(get32be(g_env->in + 16), 1);
    cdb16(c, 0x9e, 0x12, VOL_BLOCKS, 64);
    run_full(g_env->lu, &nexus_a, c, 16, NULL, 0, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read),     cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_write),    cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_verify),   cmocka_unit_test(test_sync_cache),
        cmocka_unit_test(test_prefetch), cmocka_unit_test(test_write_same),
        cmocka_unit_test(test_unmap),    cmocka_unit_test(test_get_lba_status),
    };
    return RUN_BOTH(tests);
}
