/* COMPARE AND WRITE (caw.c) over a file-backed volume: a match writes the
 * second half of the data-out (the backing file shows it, and so does a
 * read through the cache); a mismatch writes nothing and reports MISCOMPARE
 * with the offset of the first differing byte; zero blocks, ranges, FUA,
 * protection bits, a data-out of the wrong size and a read-only volume.
 * Run with the engine on the caller's thread and with 2 workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "frontend/scsi/caw.h"
#include "harness.h"

#define VOL_BYTES (1u << 20)
#define BLK       SCSI_LBA_SIZE

static struct h_vol hv, ro;
static const struct scsi_nexus N1 = {1, "iqn.2026-12.org.test:one,i,0x230000000001",
                                     "iqn.2026-12.org.shoal:caw,t,0x1", 1};

static void caw(struct h_vol *v, uint64_t lba, uint8_t n, uint8_t flags, const void *data,
                uint32_t len, struct h_res *r)
{
    uint8_t cdb[16] = {0x89, flags};
    scsi_put64(cdb + 2, lba);
    cdb[13] = n;
    h_run(&v->lu, &N1, cdb, 16, data, len, 0, r);
}

static int setup(void **state, unsigned workers)
{
    (void)state;
    h_start(workers);
    h_vol_open(&hv, "caw", VOL_BYTES, 3, false);
    h_vol_open(&ro, "caw-ro", VOL_BYTES, 4, true);
    return 0;
}

static int setup0(void **state)
{
    return setup(state, 0);
}

static int setup2(void **state)
{
    return setup(state, 2);
}

static int teardown(void **state)
{
    (void)state;
    h_vol_close(&hv);
    h_vol_close(&ro);
    h_stop();
    return 0;
}

static void test_match_writes(void **state)
{
    (void)state;
    const uint8_t n = 3;
    const uint64_t lba = 17;
    uint8_t *d = malloc(2 * n * BLK), *got = malloc(n * BLK);
    h_file_read(&hv, lba * BLK, d, n * BLK); /* what is there now */
    for (unsigned i = 0; i < n * BLK; i++)
        d[n * BLK + i] = (uint8_t)(i * 7 + 1);
    struct h_res r;
    caw(&hv, lba, n, 0, d, 2 * n * BLK, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    h_file_read(&hv, lba * BLK, got, n * BLK);
    assert_memory_equal(got, d + n * BLK, n * BLK);
    h_read_volume(&hv, lba * BLK, n * BLK, got); /* through the cache */
    assert_memory_equal(got, d + n * BLK, n * BLK);
    /* neighbours untouched */
    uint8_t edge[BLK], want[BLK];
    h_file_read(&hv, (lba + n) * BLK, edge, BLK);
    h_pattern(3, (lba + n) * BLK, want, BLK);
    assert_memory_equal(edge, want, BLK);
    /* again, with FUA and DPO, comparing with what was just written */
    memcpy(d, d + n * BLK, n * BLK);
    memset(d + n * BLK, 0x5a, n * BLK);
    caw(&hv, lba, n, 0x18, d, 2 * n * BLK, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    h_file_read(&hv, lba * BLK, got, n * BLK);
    assert_memory_equal(got, d + n * BLK, n * BLK);
    free(d);
    free(got);
}

static void test_mismatch_writes_nothing(void **state)
{
    (void)state;
    static const uint32_t offsets[] = {0, 1, 511, 512, 700, 2 * BLK - 1};
    for (unsigned k = 0; k < sizeof offsets / sizeof offsets[0]; k++) {
        const uint8_t n = 2;
        const uint64_t lba = 100 + 4 * k;
        uint8_t d[2 * 2 * BLK], before[2 * BLK], after[2 * BLK];
        h_file_read(&hv, lba * BLK, before, sizeof before);
        memcpy(d, before, n * BLK);
        d[offsets[k]] ^= 0x01;
        memset(d + n * BLK, 0xcc, n * BLK);
        struct h_res r;
        caw(&hv, lba, n, 0, d, sizeof d, &r);
        assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
        assert_int_equal(h_key(&r), SK_MISCOMPARE);
        assert_int_equal(h_asc(&r), ASC_MISCOMPARE_DURING_VERIFY);
        assert_int_equal(r.sense[0] & 0x80, 0x80); /* VALID: INFORMATION holds the offset */
        assert_int_equal(scsi_get32(r.sense + 3), offsets[k]);
        h_file_read(&hv, lba * BLK, after, sizeof after);
        assert_memory_equal(after, before, sizeof after);
        h_read_volume(&hv, lba * BLK, sizeof after, after);
        assert_memory_equal(after, before, sizeof after);
    }
}

static void test_most_blocks(void **state)
{
    (void)state;
    const uint32_t n = SCSI_CAW_MAX_BLOCKS, len = n * BLK;
    const uint64_t lba = VOL_BYTES / BLK - n; /* the last blocks */
    uint8_t *d = malloc(2 * len), *got = malloc(len);
    h_file_read(&hv, lba * BLK, d, len);
    memset(d + len, 0x42, len);
    struct h_res r;
    caw(&hv, lba, (uint8_t)n, 0, d, 2 * len, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    h_file_read(&hv, lba * BLK, got, len);
    assert_memory_equal(got, d + len, len);
    free(d);
    free(got);
}

static void test_refusals(void **state)
{
    (void)state;
    uint8_t d[4 * BLK];
    memset(d, 0, sizeof d);
    struct h_res r;
    const uint64_t last = VOL_BYTES / BLK - 1;

    /* zero blocks: nothing happens, no error */
    caw(&hv, 5, 0, 0, NULL, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    /* ... unless data came with it: 256 blocks wrap to 0 in the CDB */
    uint8_t *big = calloc(1, 2 * 256 * BLK);
    caw(&hv, 5, 0, 0, big, 2 * 256 * BLK, &r);
    free(big);
    assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_asc(&r), ASC_INVALID_FIELD_IN_CDB);
    assert_int_equal(scsi_get16(r.sense + 16), 13);
    /* out of range, even by one block */
    caw(&hv, last, 2, 0, d, 4 * BLK, &r);
    assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_key(&r), SK_ILLEGAL_REQUEST);
    assert_int_equal(h_asc(&r), ASC_LBA_OUT_OF_RANGE);
    caw(&hv, UINT64_MAX, 1, 0, d, 2 * BLK, &r);
    assert_int_equal(h_asc(&r), ASC_LBA_OUT_OF_RANGE);
    /* WRPROTECT: no protection information here */
    caw(&hv, 0, 1, 0x20, d, 2 * BLK, &r);
    assert_int_equal(h_key(&r), SK_ILLEGAL_REQUEST);
    assert_int_equal(h_asc(&r), ASC_INVALID_FIELD_IN_CDB);
    assert_int_equal(r.sense[15], 0x80 | 0x40 | 0x08 | 7);
    assert_int_equal(scsi_get16(r.sense + 16), 1);
    /* a data-out that is not 2 x the blocks (libiscsi's InvalidDataOutSize) */
    uint8_t before[2 * BLK], after[2 * BLK];
    h_file_read(&hv, 0, before, sizeof before);
    caw(&hv, 0, 1, 0, d, 4 * BLK, &r);
    assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_asc(&r), ASC_INVALID_FIELD_IN_CDB);
    memcpy(d, before, 3 * BLK > sizeof before ? sizeof before : 3 * BLK);
    caw(&hv, 0, 2, 0, d, 3 * BLK, &r);
    assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_asc(&r), ASC_INVALID_FIELD_IN_CDB);
    h_file_read(&hv, 0, after, sizeof after);
    assert_memory_equal(after, before, sizeof after);
    /* read-only volume: DATA PROTECT, nothing written */
    h_file_read(&ro, 0, d, BLK);
    memset(d + BLK, 0x11, BLK);
    caw(&ro, 0, 1, 0, d, 2 * BLK, &r);
    assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_key(&r), SK_DATA_PROTECT);
    assert_int_equal(h_asc(&r), ASC_WRITE_PROTECTED);
    h_file_read(&ro, 0, after, BLK);
    assert_memory_equal(after, d, BLK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_writes),
        cmocka_unit_test(test_mismatch_writes_nothing),
        cmocka_unit_test(test_most_blocks),
        cmocka_unit_test(test_refusals),
    };
    int fails = cmocka_run_group_tests_name("caw, requests on the caller", tests, setup0, teardown);
    fails += cmocka_run_group_tests_name("caw, 2 workers", tests, setup2, teardown);
    return fails;
}
