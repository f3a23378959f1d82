/* The SCSI layer's dispatch and its SPC commands, over real file volumes:
 * unknown opcodes and service actions, absent LUs, unit attentions per
 * nexus (a reset reaches the other nexus once, INQUIRY passes it, REQUEST
 * SENSE reports and clears it), the read-only LU, INQUIRY (standard data
 * and every VPD page, identifiers stable across LU lifetimes), REPORT LUNS,
 * READ CAPACITY, REPORT SUPPORTED OPERATION CODES and MODE SENSE/SELECT,
 * each with good and bad CDBs, checking sense key, ASC/ASCQ and the field
 * pointer, and the bytes returned. */
#include "harness.h"

static void test_unknown_opcode(void **state)
{
    (void)state;
    uint8_t cdb[10] = {0xc0};
    run(cdb, NULL, 0);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, true, 0, -1);
    /* A known opcode with an unknown service action: byte 1, bit 4. */
    uint8_t sa[16] = {0x9e, 0x1f};
    run(sa, NULL, 0);
    assert_bad_cdb(1, 4);
    /* NACA and LINK in the CONTROL byte. */
    uint8_t naca[6] = {0x00, 0, 0, 0, 0, 0x04};
    run(naca, NULL, 0);
    assert_bad_cdb(5, 2);
    uint8_t link[10] = {0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x01};
    run(link, NULL, 0);
    assert_bad_cdb(9, 0);
    /* A CDB shorter than its group's length. */
    uint8_t rd[16] = {0x28};
    run_full(g_env->lu, &nexus_a, rd, 6, NULL, 0, IN_MAX);
    assert_bad_cdb(0, -1);
}

static void test_absent_lu(void **state)
{
    (void)state;
    uint8_t tur[6] = {0x00};
    run_full(NULL, &nexus_a, tur, 6, NULL, 0, IN_MAX);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
    uint8_t inq[6] = {0x12, 0, 0, 0, 255};
    run_full(NULL, &nexus_a, inq, 6, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(g_env->in[0], 0x7f); /* qualifier 3, type 0x1f */
    uint8_t rs[6] = {0x03, 0, 0, 0, 18};
    run_full(NULL, &nexus_a, rs, 6, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 18);
    assert_int_equal(g_env->in[2], SK_ILLEGAL_REQUEST);
    assert_int_equal(g_env->in[12], 0x25);
    uint8_t rl[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64};
    run_full(NULL, &nexus_a, rl, 12, NULL, 0, IN_MAX);
    assert_good();
}

static void test_unit_attention(void **state)
{
    (void)state;
    uint8_t tur[6] = {0x00};
    /* Both nexuses known to the LU, then A resets it. */
    run_full(g_env->lu, &nexus_a, tur, 6, NULL, 0, IN_MAX);
    run_full(g_env->lu, &nexus_b, tur, 6, NULL, 0, IN_MAX);
    assert_good();
    scsi_lu_reset(g_env->lu, &nexus_a);
    /* The resetting nexus gets one too (SAM-5: every I_T nexus). */
    run_full(g_env->lu, &nexus_a, tur, 6, NULL, 0, IN_MAX);
    assert_sense(SK_UNIT_ATTENTION, ASC_BUS_DEVICE_RESET);
    run_full(g_env->lu, &nexus_a, tur, 6, NULL, 0, IN_MAX);
    assert_good();
    /* INQUIRY passes it without clearing it. */
    uint8_t inq[6] = {0x12, 0, 0, 0, 36};
    run_full(g_env->lu, &nexus_b, inq, 6, NULL, 0, IN_MAX);
    assert_good();
    run_full(g_env->lu, &nexus_b, tur, 6, NULL, 0, IN_MAX);
    assert_sense(SK_UNIT_ATTENTION, ASC_BUS_DEVICE_RESET);
    run_full(g_env->lu, &nexus_b, tur, 6, NULL, 0, IN_MAX);
    assert_good();

    /* REQUEST SENSE reports it as data (fixed and descriptor) and clears. */
    scsi_lu_reset(g_env->lu, &nexus_a);
    run_full(g_env->lu, &nexus_a, tur, 6, NULL, 0, IN_MAX);
    assert_sense(SK_UNIT_ATTENTION, ASC_BUS_DEVICE_RESET);
    uint8_t rs[6] = {0x03, 0x01, 0, 0, 252};
    run_full(g_env->lu, &nexus_b, rs, 6, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 8);
    assert_int_equal(g_env->in[0], 0x72);
    assert_int_equal(g_env->in[1], SK_UNIT_ATTENTION);
    assert_int_equal(g_env->in[2], 0x29);
    rs[1] = 0;
    run_full(g_env->lu, &nexus_b, rs, 6, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(g_env->in[2], SK_NO_SENSE);
    assert_int_equal(g_env->in[12], 0);

    /* A vanished nexus's attentions go with it. */
    scsi_lu_reset(g_env->lu, &nexus_a);
    run_full(g_env->lu, &nexus_a, tur, 6, NULL, 0, IN_MAX);
    assert_sense(SK_UNIT_ATTENTION, ASC_BUS_DEVICE_RESET);
    scsi_lu_nexus_gone(g_env->lu, &nexus_b);
    run_full(g_env->lu, &nexus_b, tur, 6, NULL, 0, IN_MAX);
    assert_good();
    /* Posted for one nexus only. */
    scsi_ua_post(g_env->lu, nexus_b.id, ASC_CAPACITY_CHANGED);
    run_full(g_env->lu, &nexus_a, tur, 6, NULL, 0, IN_MAX);
    assert_good();
    run_full(g_env->lu, &nexus_b, tur, 6, NULL, 0, IN_MAX);
    assert_sense(SK_UNIT_ATTENTION, ASC_CAPACITY_CHANGED);
}

static void test_read_only(void **state)
{
    (void)state;
    uint8_t w[10] = {0x2a, 0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t buf[512] = {0};
    run_full(g_env->ro, &nexus_a, w, 10, buf, 512, IN_MAX);
    assert_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    uint8_t ws[10] = {0x41, 0, 0, 0, 0, 0, 0, 0, 1};
    run_full(g_env->ro, &nexus_a, ws, 10, buf, 512, IN_MAX);
    assert_sense(SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    uint8_t r[10] = {0x28, 0, 0, 0, 0, 0, 0, 0, 1};
    run_full(g_env->ro, &nexus_a, r, 10, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(R.in_len, 512);
    uint8_t ms[6] = {0x1a, 0x08, 0x3f, 0, 255};
    run_full(g_env->ro, &nexus_a, ms, 6, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(g_env->in[2] & 0x80, 0x80); /* WP */
}

static void test_inquiry_standard(void **state)
{
    (void)state;
    uint8_t cdb[6] = {0x12, 0, 0, 0x01, 0x04}; /* 260 */
    run(cdb, NULL, 0);
    assert_good();
    uint8_t *p = g_env->in;
    assert_int_equal(R.in_len, 96);
    assert_int_equal(p[0], 0x00);
    assert_int_equal(p[2], 0x06);
    assert_int_equal(p[3] & 0x0f, 2);
    assert_int_equal(p[4], 96 - 5);
    assert_memory_equal(p + 8, "SHOAL   ", 8);
    for (int i = 8; i < 36; i++)
        assert_true(p[i] >= 0x20 && p[i] <= 0x7e);
    /* Clipped to the allocation length, and to the transport's maximum. */
    uint8_t five[6] = {0x12, 0, 0, 0, 5};
    run(five, NULL, 0);
    assert_good();
    assert_int_equal(R.in_len, 5);
    assert_int_equal(R.xfer_len, 5);
    run_full(g_env->lu, &nexus_a, cdb, 6, NULL, 0, 36);
    assert_int_equal(R.in_len, 36);
    /* Page code without EVPD; CMDDT. */
    uint8_t bad[6] = {0x12, 0, 0x80, 0, 255};
    run(bad, NULL, 0);
    assert_bad_cdb(2, -1);
    uint8_t cmddt[6] = {0x12, 0x02, 0, 0, 255};
    run(cmddt, NULL, 0);
    assert_bad_cdb(1, 1);
}

static const uint8_t *find_desig(const uint8_t *p, uint32_t len, uint8_t assoc, uint8_t type)
{
    for (uint32_t off = 4; off + 4 <= len; off += 4u + p[off + 3])
        if (((p[off + 1] >> 4) & 3) == assoc && (p[off + 1] & 0x0f) == type)
            return p + off;
    return NULL;
}

static void test_inquiry_vpd(void **state)
{
    (void)state;
    uint8_t cdb[6] = {0x12, 0x01, 0x00, 0, 255};
    run(cdb, NULL, 0);
    assert_good();
    uint8_t pages[] = {0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2};
    assert_int_equal(g_env->in[3], sizeof pages);
    assert_memory_equal(g_env->in + 4, pages, sizeof pages);
    for (size_t i = 0; i < sizeof pages; i++) {
        cdb[2] = pages[i];
        run(cdb, NULL, 0);
        assert_good();
        assert_int_equal(g_env->in[1], pages[i]);
        assert_int_equal(R.in_len, 4u + (g_env->in[2] << 8 | g_env->in[3]));
    }
    cdb[2] = 0x80;
    run(cdb, NULL, 0);
    assert_int_equal(g_env->in[3], 32);
    assert_memory_equal(g_env->in + 4, g_env->lu->serial, 32);

    cdb[2] = 0x83;
    run(cdb, NULL, 0);
    uint8_t id83[256];
    uint32_t len83 = R.in_len;
    memcpy(id83, g_env->in, len83);
    const uint8_t *naa = find_desig(id83, len83, 0, 3);
    assert_non_null(naa);
    assert_int_equal(naa[3], 8);
    assert_int_equal(naa[4] >> 4, 3); /* NAA 3, locally assigned */
    assert_int_equal(get64be(naa + 4), scsi_naa_id("vol"));
    assert_non_null(find_desig(id83, len83, 0, 1)); /* T10 vendor ID */
    const uint8_t *rel = find_desig(id83, len83, 1, 4);
    assert_non_null(rel);
    assert_int_equal(rel[7], 1);
    const uint8_t *name = find_desig(id83, len83, 1, 8);
    assert_non_null(name);
    assert_int_equal(name[3] % 4, 0);
    assert_string_equal((const char *)name + 4, nexus_a.target);
    /* Stable: a new LU for the volume (the old one dropped) says the same. */
    struct volume *v = scsi_lu_volume(g_env->lu);
    volume_get(v);
    scsi_lu_put(g_env->lu);
    g_env->lu = scsi_lu_get(g_env->e, v);
    volume_put(v);
    run(cdb, NULL, 0);
    assert_int_equal(R.in_len, len83);
    assert_memory_equal(g_env->in, id83, len83);

    cdb[2] = 0xb0;
    run(cdb, NULL, 0);
    const uint8_t *b0 = g_env->in;
    assert_int_equal(b0[3], 0x3c);
    assert_int_equal(b0[4] & 1, 1);                                    /* WSNZ */
    assert_int_equal(b0[6] << 8 | b0[7], 8);                           /* granularity */
    assert_int_equal(get32be(b0 + 8), 65536);                          /* max transfer */
    assert_true(get32be(b0 + 20) > 0 && get32be(b0 + 20) <= 1u << 20); /* unmap LBAs */
    assert_true(get32be(b0 + 24) > 0);
    assert_int_equal(get64be(b0 + 36), 1u << 20); /* max write same */
    cdb[2] = 0xb1;
    run(cdb, NULL, 0);
    assert_int_equal(g_env->in[4] << 8 | g_env->in[5], 1);
    cdb[2] = 0xb2;
    run(cdb, NULL, 0);
    assert_int_equal(g_env->in[5] & 0xe4, 0xe4); /* LBPU, LBPWS, LBPWS10, LBPRZ */
    assert_int_equal(g_env->in[5] & 0x02, 0);    /* no ANC_SUP */

    cdb[2] = 0x99;
    run(cdb, NULL, 0);
    assert_bad_cdb(2, -1);
}

static unsigned three_luns(const struct scsi_nexus *n, uint64_t *luns, unsigned max)
{
    (void)n;
    uint64_t mine[] = {0, 7, 300};
    for (unsigned i = 0; i < 3 && i < max; i++)
        luns[i] = mine[i];
    return 3;
}

static void test_report_luns(void **state)
{
    (void)state;
    uint8_t cdb[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    run(cdb, NULL, 0);
    assert_good();
    assert_int_equal(R.in_len, 16);
    assert_int_equal(get32be(g_env->in), 8);
    static const uint8_t zero[8];
    assert_memory_equal(g_env->in + 8, zero, 8);
    struct scsi_nexus nx = nexus_a;
    nx.list_luns = three_luns;
    run_full(g_env->lu, &nx, cdb, 12, NULL, 0, IN_MAX);
    assert_good();
    assert_int_equal(get32be(g_env->in), 24);
    assert_int_equal(g_env->in[16 + 1], 7);
    assert_int_equal(g_env->in[24], 0x41); /* flat space: 300 = 0x12c */
    assert_int_equal(g_env->in[25], 0x2c);
    /* Allocation length below 16; unknown select report. */
    uint8_t shortl[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 15};
    run(shortl, NULL, 0);
    assert_bad_cdb(6, -1);
    uint8_t sel[12] = {0xa0, 0, 0x05, 0, 0, 0, 0, 0, 1, 0};
    run(sel, NULL, 0);
    assert_bad_cdb(2, -1);
}

static void test_read_capacity(void **state)
{
    (void)state;
    uint8_t rc10[10] = {0x25};
    run(rc10, NULL, 0);
    assert_good();
    assert_int_equal(R.in_len, 8);
    assert_int_equal(get32be(g_env->in), VOL_BLOCKS - 1);
    assert_int_equal(get32be(g_env->in + 4), 512);
    uint8_t rc10bad[10] = {0x25, 0, 0, 0, 0, 1};
    run(rc10bad, NULL, 0);
    assert_bad_cdb(2, -1);
    uint8_t rc16[16] = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32};
    run(rc16, NULL, 0);
    assert_good();
    assert_int_equal(R.in_len, 32);
    assert_int_equal(get64be(g_env->in), VOL_BLOCKS - 1);
    assert_int_equal(get32be(g_env->in + 8), 512);
    assert_int_equal(g_env->in[13] & 0x0f, 0);    /* ops.h: SCSI_PHYS_EXP */
    assert_int_equal(g_env->in[14] & 0xc0, 0xc0); /* LBPME, LBPRZ */
    rc16[13] = 12;
    run(rc16, NULL, 0);
    assert_int_equal(R.in_len, 12);
}

/* A volume under one 512-byte block: no LBA to offer, and READ CAPACITY
 * cannot say "none", so the LU answers as a drive without a medium, while
 * INQUIRY and REPORT LUNS still work. */
static void test_no_medium(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/tiny.img", g_env->dir);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 300), 0);
    close(fd);
    struct volume_config vc = {.name = "tiny", .backend = {.spec = path}};
    assert_int_equal(engine_add_volume(g_env->e, &vc), 0);
    struct volume *v = engine_get_volume(g_env->e, "tiny");
    struct scsi_lu *lu = scsi_lu_get(g_env->e, v);
    volume_put(v);
    assert_non_null(lu);
    uint8_t tur[6] = {0x00}, rc10[10] = {0x25}, rd10[10] = {0x28, 0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t rc16[16] = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32};
    const uint8_t *cdbs[] = {tur, rc10, rc16, rd10};
    const unsigned lens[] = {6, 10, 16, 10};
    for (unsigned i = 0; i < 4; i++) {
        run_full(lu, &nexus_a, cdbs[i], lens[i], NULL, 0, IN_MAX);
        assert_sense(SK_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
    }
    uint8_t inq[6] = {0x12, 0, 0, 0, 36}, ms6[6] = {0x1a, 0, 0x3f, 0, 255};
    run_full(lu, &nexus_a, inq, 6, NULL, 0, IN_MAX);
    assert_good();
    run_full(lu, &nexus_a, ms6, 6, NULL, 0, IN_MAX);
    assert_good();
    scsi_lu_put(lu);
    assert_int_equal(engine_remove_volume(g_env->e, "tiny", true), 0);
    unlink(path);
}

static void test_rsoc(void **state)
{
    (void)state;
    uint8_t all[12] = {0xa3, 0x0c, 0x00, 0, 0, 0, 0, 0, 0x10, 0};
    run(all, NULL, 0);
    assert_good();
    uint32_t len = get32be(g_env->in);
    assert_int_equal(R.in_len, len + 4);
    assert_int_equal(len % 8, 0);
    bool seen_read10 = false, seen_rc16 = false;
    for (uint32_t off = 4; off < len + 4; off += 8) {
        const uint8_t *d = g_env->in + off;
        assert_non_null(scsi_op_find(d[0], (d[5] & 1) ? d[2] << 8 | d[3] : -1));
        seen_read10 |= d[0] == 0x28 && !(d[5] & 1) && (d[6] << 8 | d[7]) == 10;
        seen_rc16 |= d[0] == 0x9e && (d[5] & 1) && d[3] == 0x10;
    }
    assert_true(seen_read10 && seen_rc16);
    /* With timeouts: 20 bytes each. */
    all[2] = 0x80;
    run(all, NULL, 0);
    assert_int_equal(get32be(g_env->in) % 20, 0);
    assert_int_equal(g_env->in[4 + 5] & 0x02, 0x02);

    uint8_t one[12] = {0xa3, 0x0c, 0x01, 0x28, 0, 0, 0, 0, 1, 0};
    run(one, NULL, 0);
    assert_good();
    assert_int_equal(g_env->in[1] & 0x07, 3);
    assert_int_equal(g_env->in[2] << 8 | g_env->in[3], 10);
    assert_int_equal(g_env->in[4], 0x28);
    assert_int_equal(g_env->in[5] & 0x18, 0x18); /* DPO, FUA */
    /* 001b on an opcode with service actions; 010b on one without. */
    one[3] = 0x9e;
    run(one, NULL, 0);
    assert_bad_cdb(2, 2);
    uint8_t two[12] = {0xa3, 0x0c, 0x02, 0x9e, 0, 0x10, 0, 0, 1, 0};
    run(two, NULL, 0);
    assert_good();
    assert_int_equal(g_env->in[4], 0x9e);
    assert_int_equal(g_env->in[5], 0x10);
    two[3] = 0x28;
    two[5] = 0;
    run(two, NULL, 0);
    assert_bad_cdb(2, 2);
    /* An unsupported opcode: SUPPORT 001b. */
    one[3] = 0xc5;
    run(one, NULL, 0);
    assert_good();
    assert_int_equal(g_env->in[1] & 0x07, 1);
    uint8_t badopt[12] = {0xa3, 0x0c, 0x07, 0, 0, 0, 0, 0, 1, 0};
    run(badopt, NULL, 0);
    assert_bad_cdb(2, 2);
}

static void test_mode_sense(void **state)
{
    (void)state;
    uint8_t ms6[6] = {0x1a, 0, 0x3f, 0, 255};
    run(ms6, NULL, 0);
    assert_good();
    const uint8_t *p = g_env->in;
    assert_int_equal(p[0] + 1u, R.in_len);
    assert_int_equal(p[2] & 0x90, 0x10); /* DPOFUA, not WP */
    assert_int_equal(p[3], 8);           /* one short block descriptor */
    assert_int_equal(get32be(p + 4), VOL_BLOCKS);
    assert_int_equal(p[10] << 8 | p[11], 512);
    assert_int_equal(R.in_len, 4 + 8 + 20 + 12 + 12);
    const uint8_t *cache = p + 12;
    assert_int_equal(cache[0], 0x08);
    assert_int_equal(cache[1], 18);
    assert_int_equal(cache[2] & 0x04, 0); /* WCE=0: write-through */
    assert_int_equal(p[32], 0x0a);

    /* Only the allocation length is sent (no residual beyond it). */
    ms6[4] = 4;
    run(ms6, NULL, 0);
    assert_int_equal(R.in_len, 4);
    assert_int_equal(R.xfer_len, 4);

    /* MODE SENSE (10), DBD, one page; LLBAA. */
    uint8_t ms10[10] = {0x5a, 0x08, 0x0a, 0, 0, 0, 0, 0, 255};
    run(ms10, NULL, 0);
    assert_good();
    assert_int_equal(R.in_len, 8 + 12);
    assert_int_equal(g_env->in[8], 0x0a);
    uint8_t ll[10] = {0x5a, 0x10, 0x08, 0, 0, 0, 0, 0, 255};
    run(ll, NULL, 0);
    assert_good();
    assert_int_equal(g_env->in[4] & 1, 1);
    assert_int_equal(g_env->in[7], 16);
    assert_int_equal(get64be(g_env->in + 8), VOL_BLOCKS);

    /* Changeable: nothing. Saved: not supported. Unknown page / subpage. */
    uint8_t ch[6] = {0x1a, 0x08, 0x48, 0, 255};
    run(ch, NULL, 0);
    assert_good();
    for (uint32_t i = 6; i < R.in_len; i++)
        assert_int_equal(g_env->in[i], 0);
    uint8_t sv[6] = {0x1a, 0, 0xc8, 0, 255};
    run(sv, NULL, 0);
    assert_field(SK_ILLEGAL_REQUEST, ASC_SAVING_PARAMS_UNSUPPORTED, true, 2, 7);
    uint8_t unk[6] = {0x1a, 0, 0x05, 0, 255};
    run(unk, NULL, 0);
    assert_bad_cdb(2, 5);
    uint8_t sub[6] = {0x1a, 0, 0x08, 0x01, 255};
    run(sub, NULL, 0);
    assert_bad_cdb(3, -1);
}

static void test_mode_select(void **state)
{
    (void)state;
    /* What MODE SENSE says, sent back, is accepted. */
    uint8_t ms6[6] = {0x1a, 0, 0x08, 0, 255};
    run(ms6, NULL, 0);
    uint8_t list[64];
    uint32_t n = R.in_len;
    memcpy(list, g_env->in, n);
    list[0] = 0; /* mode data length is reserved in MODE SELECT */
    uint8_t sel[6] = {0x15, 0x10, 0, 0, (uint8_t)n};
    run(sel, list, n);
    assert_good();
    /* Turning WCE on changes an unchangeable field: byte 12 + 2. */
    list[14] |= 0x04;
    run(sel, list, n);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 14, -1);
    list[14] &= ~0x04;
    /* Another block length. */
    list[10] = 0x10;
    run(sel, list, n);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 9, -1);
    list[10] = 0x02;
    /* A wrong page length; an unknown page. */
    list[13] = 17;
    run(sel, list, n);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 13, -1);
    list[13] = 18;
    list[12] = 0x05;
    run(sel, list, n);
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 12, -1);
    list[12] = 0x08;
    /* SP; a list shorter than the header; data-out shorter than the list. */
    uint8_t sp[6] = {0x15, 0x11, 0, 0, (uint8_t)n};
    run(sp, list, n);
    assert_bad_cdb(1, 0);
    uint8_t tiny[6] = {0x15, 0x10, 0, 0, 3};
    run(tiny, list, 3);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    run(sel, list, n - 1);
    assert_sense(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
    /* MODE SELECT (10) with no block descriptor and the control page. */
    uint8_t ms10[10] = {0x5a, 0x08, 0x0a, 0, 0, 0, 0, 0, 255};
    run(ms10, NULL, 0);
    n = R.in_len;
    memcpy(list, g_env->in, n);
    list[0] = list[1] = 0;
    uint8_t sel10[10] = {0x55, 0x10, 0, 0, 0, 0, 0, 0, (uint8_t)n};
    run(sel10, list, n);
    assert_good();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_opcode),   cmocka_unit_test(test_absent_lu),
        cmocka_unit_test(test_unit_attention),   cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_inquiry_standard), cmocka_unit_test(test_inquiry_vpd),
        cmocka_unit_test(test_report_luns),      cmocka_unit_test(test_read_capacity),
        cmocka_unit_test(test_no_medium),        cmocka_unit_test(test_rsoc),
        cmocka_unit_test(test_mode_sense),       cmocka_unit_test(test_mode_select),
    };
    return RUN_BOTH(tests);
}
