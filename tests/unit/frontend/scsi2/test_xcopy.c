/* EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (xcopy*.c) between two
 * file-backed volumes and within one: the bytes land (backing files and
 * reads through the destination's cache, primed before the copy, are
 * compared with the source's pattern), several segments in one command,
 * every parameter-list refusal with its sense and field pointer, the
 * COPY ABORTED cases (bad descriptor index, range, unknown or unreachable
 * volume, read-only destination) with the segments before the failing one
 * done, the results kept per nexus and list identifier, and reservations
 * on the other volume's LU honoured. Run with the
 * engine on the caller's thread and with 2 workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "frontend/scsi/xcopy_int.h"
#include "harness.h"

#define VOL_BYTES (4u << 20)
#define BLK       SCSI_LBA_SIZE
#define NBLK      (VOL_BYTES / BLK)

static struct h_vol va, vb, vro;
static uint64_t naa_a, naa_b, naa_ro;
static const struct scsi_nexus N1 = {1, "iqn.2026-12.org.test:one,i,0x230000000001",
                                     "iqn.2026-12.org.shoal:a,t,0x1", 1};
static const struct scsi_nexus N2 = {2, "iqn.2026-12.org.test:two,i,0x230000000002",
                                     "iqn.2026-12.org.shoal:a,t,0x1", 1};

/* ---- building parameter lists ---- */

struct seg {
    uint16_t src, dst, blocks;
    uint64_t src_lba, dst_lba;
};

struct plist {
    uint8_t b[2048];
    uint32_t len;
};

static void target_desc(uint8_t *d, uint64_t naa)
{
    memset(d, 0, 32);
    d[0] = 0xe4;
    d[4] = 0x01; /* binary */
    d[5] = 0x03; /* LU association, NAA */
    d[7] = 8;
    scsi_put64(d + 8, naa);
    d[30] = BLK >> 8; /* DISK BLOCK LENGTH (bytes 29-31) */
    d[31] = BLK & 0xff;
}

static void segment_desc(uint8_t *d, const struct seg *s)
{
    memset(d, 0, 28);
    d[0] = 0x02;
    scsi_put16(d + 2, 0x18);
    scsi_put16(d + 4, s->src);
    scsi_put16(d + 6, s->dst);
    scsi_put16(d + 10, s->blocks);
    scsi_put64(d + 12, s->src_lba);
    scsi_put64(d + 20, s->dst_lba);
}

static void build(struct plist *p, uint8_t list_id, uint8_t usage, const uint64_t *naa, unsigned nt,
                  const struct seg *s, unsigned ns)
{
    memset(p, 0, sizeof *p);
    uint8_t *b = p->b;
    b[0] = list_id;
    b[1] = (uint8_t)(usage << 3);
    scsi_put16(b + 2, (uint16_t)(32 * nt));
    scsi_put32(b + 8, 28 * ns);
    uint32_t at = 16;
    for (unsigned i = 0; i < nt; i++, at += 32)
        target_desc(b + at, naa[i]);
    for (unsigned i = 0; i < ns; i++, at += 28)
        segment_desc(b + at, &s[i]);
    p->len = at;
}

static void xcopy_n(const struct scsi_nexus *n, struct h_vol *lu, const void *p, uint32_t plen,
                    uint32_t sent, struct h_res *r)
{
    uint8_t cdb[16] = {0x83, 0x00};
    scsi_put32(cdb + 10, plen);
    h_run(&lu->lu, n, cdb, 16, p, sent, 0, r);
}

static void xcopy(struct h_vol *lu, const struct plist *p, struct h_res *r)
{
    xcopy_n(&N1, lu, p->b, p->len, p->len, r);
}

static void results(const struct scsi_nexus *n, struct h_vol *lu, uint8_t sa, uint8_t list_id,
                    struct h_res *r)
{
    uint8_t cdb[16] = {0x84, sa, list_id};
    scsi_put32(cdb + 10, 1024);
    h_run(&lu->lu, n, cdb, 16, NULL, 0, 1024, r);
}

static void assert_sense(const struct h_res *r, uint8_t key, uint16_t asc)
{
    assert_int_equal(r->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_key(r), key);
    assert_int_equal(h_asc(r), asc);
}

/* Parameter-list byte the sense-key specific field points at (C/D = 0). */
static int field(const struct h_res *r)
{
    if (!(r->sense[15] & 0x80))
        return -1;
    assert_int_equal(r->sense[15] & 0x40, 0);
    return scsi_get16(r->sense + 16);
}

/* The volume holds `seed`'s pattern taken from src_off, at dst_off. */
static void assert_region(struct h_vol *v, uint64_t dst_off, uint8_t seed, uint64_t src_off,
                          uint32_t len)
{
    uint8_t *want = malloc(len), *got = malloc(len);
    h_pattern(seed, src_off, want, len);
    h_file_read(v, dst_off, got, len);
    assert_memory_equal(got, want, len);
    h_read_volume(v, dst_off, len, got);
    assert_memory_equal(got, want, len);
    free(want);
    free(got);
}

/* ---- fixture ---- */

static int setup(void **state, unsigned workers)
{
    (void)state;
    h_start(workers);
    h_vol_open(&va, "xa", VOL_BYTES, 5, false);
    h_vol_open(&vb, "xb", VOL_BYTES, 6, false);
    h_vol_open(&vro, "xro", VOL_BYTES, 7, true);
    naa_a = scsi_naa_id("xa");
    naa_b = scsi_naa_id("xb");
    naa_ro = scsi_naa_id("xro");
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
    h_vol_close(&va);
    h_vol_close(&vb);
    h_vol_close(&vro);
    h_stop();
    return 0;
}

/* Each test starts with no held results (the tests write disjoint ranges). */
static int fresh(void **state)
{
    (void)state;
    scsi_copy_free(&va.lu);
    scsi_copy_free(&vb.lu);
    return 0;
}

/* ---- tests ---- */

static void test_between_volumes(void **state)
{
    (void)state;
    const uint64_t src = 8, dst = 1000;
    const uint16_t n = 300;
    /* prime B's cache with what is about to be overwritten */
    uint8_t *tmp = malloc(n * BLK);
    h_read_volume(&vb, dst * BLK, n * BLK, tmp);
    free(tmp);
    struct plist p;
    const uint64_t naa[] = {naa_a, naa_b};
    const struct seg s = {0, 1, n, src, dst};
    build(&p, 1, XCOPY_LIST_HOLD, naa, 2, &s, 1);
    struct h_res r;
    xcopy(&va, &p, &r); /* sent to A's LU */
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_region(&vb, dst * BLK, 5, src * BLK, n * BLK);
    /* the blocks around it are B's own */
    assert_region(&vb, (dst - 1) * BLK, 6, (dst - 1) * BLK, BLK);
    assert_region(&vb, (dst + n) * BLK, 6, (dst + n) * BLK, BLK);
    /* the source is unchanged */
    assert_region(&va, src * BLK, 5, src * BLK, n * BLK);

    /* the other way, sent to B's LU, which names itself second */
    const uint64_t naa2[] = {naa_a, naa_b};
    const struct seg s2 = {1, 0, 16, 0, NBLK - 16};
    build(&p, 2, XCOPY_LIST_HOLD, naa2, 2, &s2, 1);
    xcopy(&vb, &p, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_region(&va, (NBLK - 16) * BLK, 6, 0, 16 * BLK);

    /* COPY STATUS of the first: done, one segment, the bytes */
    results(&N1, &va, 0x00, 1, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(r.data_in_len, 12);
    assert_int_equal(scsi_get32(r.data), 8);
    assert_int_equal(r.data[4], XCOPY_GOOD);
    assert_int_equal(scsi_get16(r.data + 5), 1);
    assert_int_equal(r.data[7], 0);
    assert_int_equal(scsi_get32(r.data + 8), n * BLK);
    /* held per LU and nexus: not on B's LU, not for N2 */
    results(&N1, &vb, 0x00, 1, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    assert_int_equal(scsi_get16(r.sense + 16), 2);
    results(&N2, &va, 0x00, 1, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    /* no failure to detail, no held data */
    results(&N1, &va, 0x04, 1, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(scsi_get32(r.data), 0);
    results(&N1, &va, 0x01, 1, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(scsi_get32(r.data), 0);
    /* the nexus goes, its results with it */
    scsi_copy_nexus_gone(&va.lu, &N1);
    results(&N1, &va, 0x00, 1, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
}

static void test_within_one_volume(void **state)
{
    (void)state;
    /* overlapping ranges: the destination gets the source as it was */
    struct plist p;
    const uint64_t naa[] = {naa_a};
    const struct seg s = {0, 0, 2048, 64, 64 + 1024};
    build(&p, 3, XCOPY_LIST_DISCARD, naa, 1, &s, 1);
    struct h_res r;
    xcopy(&va, &p, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_region(&va, (64 + 1024) * BLK, 5, 64 * BLK, 2048 * BLK);
    assert_region(&va, 64 * BLK, 5, 64 * BLK, 1024 * BLK);
}

static void test_segments(void **state)
{
    (void)state;
    /* three segments and an empty one, both directions, one list */
    struct plist p;
    const uint64_t naa[] = {naa_b, naa_a};
    const struct seg s[] = {
        {1, 0, 8, 0, 3000},    /* A -> B */
        {0, 1, 0, 0, 0},       /* nothing */
        {0, 1, 24, 100, 4000}, /* B -> A */
        {1, 1, 1, 7, 7000},    /* A -> A */
    };
    build(&p, 9, XCOPY_LIST_HOLD, naa, 2, s, 4);
    struct h_res r;
    xcopy(&vb, &p, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_region(&vb, 3000 * BLK, 5, 0, 8 * BLK);
    assert_region(&va, 4000 * BLK, 6, 100 * BLK, 24 * BLK);
    assert_region(&va, 7000 * BLK, 5, 7 * BLK, BLK);
    results(&N1, &vb, 0x00, 9, &r);
    assert_int_equal(r.data[4], XCOPY_GOOD);
    assert_int_equal(scsi_get16(r.data + 5), 4);
    assert_int_equal(scsi_get32(r.data + 8), 33 * BLK);
    /* no list: nothing kept */
    build(&p, 0, XCOPY_LIST_NONE, naa, 2, s, 1);
    xcopy(&vb, &p, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    results(&N1, &vb, 0x00, 0, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    /* an empty parameter list is no error */
    xcopy_n(&N1, &va, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
}

static void test_bad_lists(void **state)
{
    (void)state;
    struct plist p;
    struct h_res r;
    const uint64_t naa[] = {naa_a, naa_b};
    const struct seg s = {0, 1, 8, 0, 0};
    uint8_t before[8 * BLK];
    h_file_read(&vb, 0, before, sizeof before);

    /* shorter than the header; shorter than the lists say */
    build(&p, 1, 0, naa, 2, &s, 1);
    /* (the field pointer: the CDB's PARAMETER LIST LENGTH, or the header's
     * list length that overshoots) */
    xcopy_n(&N1, &va, p.b, 15, 15, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    assert_int_equal(r.sense[15], 0x80 | 0x40);
    assert_int_equal(scsi_get16(r.sense + 16), 10);
    xcopy_n(&N1, &va, p.b, 16 + 32 + 31, 16 + 32 + 31, &r); /* truncates a target */
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    assert_int_equal(field(&r), 2);
    xcopy_n(&N1, &va, p.b, p.len - 1, p.len - 1, &r); /* truncates the segment */
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    assert_int_equal(field(&r), 8);
    /* the CDB says more than was sent */
    xcopy_n(&N1, &va, p.b, p.len, p.len - 1, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    assert_int_equal(r.sense[15], 0x80 | 0x40);
    assert_int_equal(scsi_get16(r.sense + 16), 10);

    /* an unsupported target descriptor (FC N_Port_Name) */
    build(&p, 1, 0, naa, 2, &s, 1);
    p.b[16 + 32] = 0xe0;
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, XC_ASC_UNSUPPORTED_TARGET);
    assert_int_equal(field(&r), 16 + 32);
    /* an unsupported segment descriptor (stream to stream) */
    build(&p, 1, 0, naa, 2, &s, 1);
    p.b[16 + 64] = 0x03;
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, XC_ASC_UNSUPPORTED_SEGMENT);
    assert_int_equal(field(&r), 16 + 64);
    /* a block-to-block descriptor of the wrong length */
    build(&p, 1, 0, naa, 2, &s, 1);
    scsi_put16(p.b + 16 + 64 + 2, 0x14);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
    assert_int_equal(field(&r), 16 + 64 + 2);
    /* a peripheral device type that is not a block device */
    build(&p, 1, 0, naa, 2, &s, 1);
    p.b[16 + 1] = 0x01;
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
    assert_int_equal(field(&r), 17);
    /* another block size */
    build(&p, 1, 0, naa, 2, &s, 1);
    p.b[16 + 30] = 0x10;
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
    assert_int_equal(field(&r), 16 + 29);
    /* too many targets, too many segments (libiscsi's DescrLimits) */
    uint64_t many[XCOPY_MAX_TARGETS + 1];
    for (unsigned i = 0; i <= XCOPY_MAX_TARGETS; i++)
        many[i] = naa_a;
    build(&p, 1, 0, many, XCOPY_MAX_TARGETS + 1, &s, 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, XC_ASC_TOO_MANY_TARGETS);
    struct seg segs[XCOPY_MAX_SEGMENTS + 1];
    for (unsigned i = 0; i <= XCOPY_MAX_SEGMENTS; i++)
        segs[i] = s;
    build(&p, 1, 0, naa, 2, segs, XCOPY_MAX_SEGMENTS + 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, XC_ASC_TOO_MANY_SEGMENTS);
    /* the lists together longer than the limit */
    struct seg lots[40];
    for (unsigned i = 0; i < 40; i++)
        lots[i] = s;
    build(&p, 1, 0, many, XCOPY_MAX_TARGETS + 1, lots, 40);
    assert_true(p.len - 16 > XCOPY_MAX_DESC_LIST);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    assert_int_equal(field(&r), 8);
    /* inline data, a reserved LIST ID USAGE, a list id with usage 11b */
    build(&p, 1, 0, naa, 2, &s, 1);
    scsi_put32(p.b + 12, 4);
    p.len += 4;
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, XC_ASC_INLINE_DATA_EXCEEDED);
    assert_int_equal(field(&r), 12);
    build(&p, 1, 1, naa, 2, &s, 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
    assert_int_equal(field(&r), 1);
    assert_int_equal(r.sense[15], 0x80 | 0x08 | 4);
    build(&p, 1, XCOPY_LIST_NONE, naa, 2, &s, 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
    assert_int_equal(field(&r), 0);
    /* a target list that is not whole descriptors */
    build(&p, 1, 0, naa, 2, &s, 1);
    scsi_put16(p.b + 2, 48);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST);
    assert_int_equal(field(&r), 2);

    /* none of these wrote anything */
    uint8_t after[sizeof before];
    h_file_read(&vb, 0, after, sizeof after);
    assert_memory_equal(after, before, sizeof after);
}

static void test_copy_aborted(void **state)
{
    (void)state;
    struct plist p;
    struct h_res r;
    const uint64_t naa[] = {naa_a, naa_b};
    uint8_t before[16 * BLK], after[16 * BLK];

    /* a destination index past the targets (libiscsi's ValidateSegDescr):
     * the first segment is done, the second aborts */
    const struct seg s1[] = {{0, 1, 4, 0, 200}, {0, 2, 4, 0, 300}};
    h_file_read(&vb, 300 * BLK, before, 4 * BLK);
    build(&p, 4, XCOPY_LIST_HOLD, naa, 2, s1, 2);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
    assert_int_equal(field(&r), 16 + 64 + 28);
    assert_int_equal(scsi_get32(r.sense + 8), 1); /* the segment that failed */
    assert_region(&vb, 200 * BLK, 5, 0, 4 * BLK);
    h_file_read(&vb, 300 * BLK, after, 4 * BLK);
    assert_memory_equal(after, before, 4 * BLK);
    results(&N1, &va, 0x00, 4, &r);
    assert_int_equal(r.data[4], XCOPY_FAILED);
    assert_int_equal(scsi_get16(r.data + 5), 1);
    assert_int_equal(scsi_get32(r.data + 8), 4 * BLK);
    results(&N1, &va, 0x04, 4, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(scsi_get32(r.data), 56 + 18);
    assert_int_equal(r.data[56], SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(scsi_get16(r.data + 58), 18);
    assert_int_equal(r.data[60 + 2] & 0x0f, SK_COPY_ABORTED);

    /* past the end of the destination, by one block (BeyondEol) */
    const struct seg s2 = {0, 1, 16, 0, NBLK - 15};
    h_file_read(&vb, (NBLK - 16) * BLK, before, 16 * BLK);
    build(&p, 5, 0, naa, 2, &s2, 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_COPY_ABORTED, XC_ASC_NO_ADDITIONAL_SENSE);
    h_file_read(&vb, (NBLK - 16) * BLK, after, 16 * BLK);
    assert_memory_equal(after, before, 16 * BLK);
    /* past the end of the source */
    const struct seg s3 = {0, 1, 16, UINT64_MAX - 3, 0};
    build(&p, 5, 0, naa, 2, &s3, 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_COPY_ABORTED, XC_ASC_NO_ADDITIONAL_SENSE);

    /* a volume nobody serves, and a designator that is not an NAA */
    const uint64_t ghost[] = {naa_a, naa_b ^ 1};
    const struct seg s4 = {0, 1, 1, 0, 0};
    build(&p, 6, 0, ghost, 2, &s4, 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
    build(&p, 6, 0, naa, 2, &s4, 1);
    p.b[16 + 32 + 5] = 0x02; /* EUI-64 */
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);

    /* without the transport's policy only the LU's own volume is reachable */
    h_copy_policy(false);
    h_file_read(&vb, 0, before, BLK);
    build(&p, 7, 0, naa, 2, &s4, 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
    h_file_read(&vb, 0, after, BLK);
    assert_memory_equal(after, before, BLK);
    const struct seg s5 = {0, 0, 2, 10, 5000};
    build(&p, 7, 0, naa, 2, &s5, 1);
    xcopy(&va, &p, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_region(&va, 5000 * BLK, 5, 10 * BLK, 2 * BLK);
    h_copy_policy(true);

    /* a read-only destination */
    const uint64_t ro[] = {naa_a, naa_ro};
    h_file_read(&vro, 0, before, BLK);
    build(&p, 8, 0, ro, 2, &s4, 1);
    xcopy(&va, &p, &r);
    assert_sense(&r, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    h_file_read(&vro, 0, after, BLK);
    assert_memory_equal(after, before, BLK);
}

static void test_results_params(void **state)
{
    (void)state;
    struct h_res r;
    results(&N1, &va, 0x03, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(r.data_in_len, 46);
    assert_int_equal(scsi_get32(r.data), 42);
    assert_int_equal(scsi_get16(r.data + 8), XCOPY_MAX_TARGETS);
    assert_int_equal(scsi_get16(r.data + 10), XCOPY_MAX_SEGMENTS);
    assert_int_equal(scsi_get32(r.data + 12), XCOPY_MAX_DESC_LIST);
    assert_int_equal(scsi_get32(r.data + 16), XCOPY_MAX_SEGMENT_BYTES);
    assert_int_equal(scsi_get32(r.data + 20), 0); /* inline data */
    assert_int_equal(r.data[37], 9);
    assert_int_equal(r.data[43], 2);
    assert_int_equal(r.data[44], 0x02);
    assert_int_equal(r.data[45], 0xe4);
    /* unknown service actions */
    static const uint8_t bad[] = {0x02, 0x05, 0x10, 0x1f};
    for (unsigned i = 0; i < sizeof bad; i++) {
        uint8_t cdb[16] = {0x84, bad[i]};
        scsi_put32(cdb + 10, 1024);
        h_run(&va.lu, &N1, cdb, 16, NULL, 0, 1024, &r);
        assert_sense(&r, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    }
    /* a list identifier in use is refused until it ends; slots run out
     * only when every one is running */
    int slot = copy_result_begin(&va.lu, 9, 42);
    assert_true(slot >= 0);
    assert_int_equal(copy_result_begin(&va.lu, 9, 42), -EBUSY);
    int slots[XCOPY_MAX_RESULTS];
    unsigned n = 0;
    for (; n < XCOPY_MAX_RESULTS; n++) {
        slots[n] = copy_result_begin(&va.lu, 10, (uint8_t)n);
        if (slots[n] < 0)
            break;
    }
    assert_int_equal(n, XCOPY_MAX_RESULTS - 1);
    assert_int_equal(slots[n], -ENOSPC);
    static struct scsi_cmd done_cmd; /* GOOD */
    copy_result_end(&va.lu, slot, &done_cmd, 0, 0);
    assert_true(copy_result_begin(&va.lu, 9, 42) >= 0);
    scsi_copy_free(&va.lu);
}

static uint8_t prout(const struct scsi_nexus *n, struct h_vol *v, uint8_t sa, uint8_t type,
                     uint64_t rk, uint64_t sark)
{
    uint8_t cdb[10] = {0x5f, sa, type}, p[24] = {0};
    scsi_put32(cdb + 5, 24);
    scsi_put64(p, rk);
    scsi_put64(p + 8, sark);
    struct h_res r;
    h_run(&v->lu, n, cdb, 10, p, 24, 0, &r);
    return r.status;
}

/* N2 reserves B; N1 may not copy into it through A's LU, nor read it under
 * Exclusive Access; the holder may. */
static void test_reservations_elsewhere(void **state)
{
    (void)state;
    struct plist p;
    struct h_res r;
    const uint64_t naa[] = {naa_a, naa_b};
    const struct seg into_b = {0, 1, 4, 40, 6000}, from_b = {1, 0, 4, 6100, 6200};
    uint8_t before[4 * BLK], after[4 * BLK];
    assert_int_equal(prout(&N2, &vb, 0, 0, 0, 0xb2), SCSI_STATUS_GOOD);
    assert_int_equal(prout(&N2, &vb, 1, 0x1, 0xb2, 0), SCSI_STATUS_GOOD); /* WE */
    h_file_read(&vb, 6000 * BLK, before, sizeof before);
    build(&p, 1, XCOPY_LIST_HOLD, naa, 2, &into_b, 1);
    xcopy(&va, &p, &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
    h_file_read(&vb, 6000 * BLK, after, sizeof after);
    assert_memory_equal(after, before, sizeof after);
    /* reading B is allowed under Write Exclusive */
    build(&p, 2, XCOPY_LIST_HOLD, naa, 2, &from_b, 1);
    xcopy(&va, &p, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_region(&va, 6200 * BLK, 6, 6100 * BLK, 4 * BLK);
    /* not under Exclusive Access */
    assert_int_equal(prout(&N2, &vb, 2, 0x1, 0xb2, 0), SCSI_STATUS_GOOD);
    assert_int_equal(prout(&N2, &vb, 1, 0x3, 0xb2, 0), SCSI_STATUS_GOOD); /* EA */
    const struct seg from_b2 = {1, 0, 4, 6300, 6400};
    h_file_read(&va, 6400 * BLK, before, sizeof before);
    build(&p, 3, XCOPY_LIST_HOLD, naa, 2, &from_b2, 1);
    xcopy(&va, &p, &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
    h_file_read(&va, 6400 * BLK, after, sizeof after);
    assert_memory_equal(after, before, sizeof after);
    /* the holder copies into B through A's LU */
    build(&p, 4, XCOPY_LIST_HOLD, naa, 2, &into_b, 1);
    xcopy_n(&N2, &va, p.b, p.len, p.len, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_region(&vb, 6000 * BLK, 5, 40 * BLK, 4 * BLK);
    scsi_pr_free(&vb.lu);
}

/* VPD 0x8F walked the way libiscsi walks it: the Supported Commands
 * descriptor lists EXTENDED COPY (LID1) and RECEIVE COPY RESULTS with COPY
 * STATUS; every descriptor is a multiple of 4 bytes. */
static void test_vpd_page(void **state)
{
    (void)state;
    uint8_t p[256];
    memset(p, 0xee, sizeof p);
    uint32_t len = scsi_copy_vpd_page(p, sizeof p);
    assert_true(len > 4 && len <= sizeof p);
    assert_int_equal(p[1], 0x8f);
    assert_int_equal(scsi_get16(p + 2), len - 4);
    bool xcopy = false, status = false, descs = false;
    for (uint32_t at = 4; at < len;) {
        uint16_t type = scsi_get16(p + at), dlen = scsi_get16(p + at + 2);
        assert_int_equal(dlen % 4, 0);
        assert_true(at + 4 + dlen <= len);
        if (type == 0x0001) {
            const uint8_t *l = p + at + 5;
            for (int left = p[at + 4]; left > 0;) {
                for (int i = 0; i < l[1]; i++) {
                    xcopy |= l[0] == 0x83 && l[2 + i] == 0x00;
                    status |= l[0] == 0x84 && l[2 + i] == 0x00;
                }
                left -= l[1] + 2;
                l += l[1] + 2;
                assert_true(left >= 0);
            }
        } else if (type == 0x0009) {
            assert_int_equal(p[at + 4], 2);
            descs = p[at + 5] == 0x02 && p[at + 6] == 0xe4;
        }
        at += 4 + dlen;
    }
    assert_true(xcopy && status && descs);
    /* a short buffer gets nothing half-written past cap, and the length */
    uint8_t small[8];
    memset(small, 0xee, sizeof small);
    assert_int_equal(scsi_copy_vpd_page(small, sizeof small), len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_between_volumes, fresh),
        cmocka_unit_test_setup(test_within_one_volume, fresh),
        cmocka_unit_test_setup(test_segments, fresh),
        cmocka_unit_test_setup(test_bad_lists, fresh),
        cmocka_unit_test_setup(test_copy_aborted, fresh),
        cmocka_unit_test_setup(test_results_params, fresh),
        cmocka_unit_test_setup(test_reservations_elsewhere, fresh),
        cmocka_unit_test(test_vpd_page),
    };
    int fails =
        cmocka_run_group_tests_name("xcopy, requests on the caller", tests, setup0, teardown);
    fails += cmocka_run_group_tests_name("xcopy, 2 workers", tests, setup2, teardown);
    return fails;
}
