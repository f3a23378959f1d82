/* The commands every SCSI device answers (SPC-5, SBC-4): TEST UNIT READY,
 * INQUIRY (inquiry.c), REPORT LUNS, REQUEST SENSE, READ CAPACITY (10/16),
 * REPORT SUPPORTED OPERATION CODES (rsoc.c), and START STOP UNIT / PREVENT
 * ALLOW MEDIUM REMOVAL, which a fixed medium accepts and ignores. */
#include <string.h>

#include "core/engine.h"
#include "frontend/scsi/ops.h"

static enum scsi_exec_result test_unit_ready(struct scsi_cmd *c)
{
    return scsi_good(c);
}

/* SAM-5 4.7: single level LUN, peripheral addressing below 256, flat
 * space addressing up to 16383. */
static void put_lun(uint8_t *p, uint64_t lun)
{
    memset(p, 0, 8);
    if (lun < 256) {
        p[1] = (uint8_t)lun;
    } else {
        p[0] = (uint8_t)(0x40 | ((lun >> 8) & 0x3f));
        p[1] = (uint8_t)lun;
    }
}

#define LUNS_MAX ((SCSI_SMALL_DATA_MAX - 8) / 8)

static enum scsi_exec_result report_luns(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    uint32_t alloc = scsi_get32(cdb + 6);
    uint8_t select = cdb[2];
    if (alloc < 16)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 6, -1);
    /* 0: all LUs, 2: all (no well-known LUs exist here); 1 (well-known
     * only) reports none; 0x10-0x12 are for administrative LUs, which
     * this target has none of. */
    if (select > 2 && !(select >= 0x10 && select <= 0x12))
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, -1);
    uint64_t luns[LUNS_MAX];
    unsigned n = 0;
    if (select == 0 || select == 2) {
        if (c->nexus && c->nexus->list_luns) {
            n = c->nexus->list_luns(c->nexus, luns, LUNS_MAX);
            if (n > LUNS_MAX)
                n = LUNS_MAX;
        } else {
            luns[0] = 0;
            n = 1;
        }
    }
    uint8_t *p = c->priv.small;
    memset(p, 0, 8);
    scsi_put32(p, n * 8);
    for (unsigned i = 0; i < n; i++)
        put_lun(p + 8 + 8 * i, luns[i]);
    return scsi_data_in(c, 8 + n * 8, alloc);
}

static enum scsi_exec_result request_sense(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    bool desc = cdb[1] & 0x01;
    uint32_t alloc = cdb[4];
    uint8_t key = SK_NO_SENSE;
    uint16_t asc = ASC_NO_ADDITIONAL_SENSE;
    if (!c->lu) {
        key = SK_ILLEGAL_REQUEST;
        asc = ASC_LUN_NOT_SUPPORTED;
    } else if (c->nexus && scsi_ua_take(c->lu, c->nexus, &asc) == 0) {
        key = SK_UNIT_ATTENTION;
    }
    uint8_t *p = c->priv.small;
    uint32_t len;
    if (desc) {
        memset(p, 0, 8);
        p[0] = 0x72;
        p[1] = key;
        p[2] = (uint8_t)(asc >> 8);
        p[3] = (uint8_t)asc;
        len = 8;
    } else {
        memset(p, 0, SCSI_SENSE_MAX);
        p[0] = 0x70;
        p[2] = key;
        p[7] = SCSI_SENSE_MAX - 8;
        p[12] = (uint8_t)(asc >> 8);
        p[13] = (uint8_t)asc;
        len = SCSI_SENSE_MAX;
    }
    return scsi_data_in(c, len, alloc);
}

static enum scsi_exec_result read_capacity10(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    /* Without PMI the LBA field must be 0 (SBC-4 5.20.1). */
    if (!(cdb[8] & 0x01) && scsi_get32(cdb + 2) != 0)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, -1);
    uint64_t n = scsi_lu_blocks(c->lu);
    uint64_t last = n ? n - 1 : 0;
    uint8_t *p = c->priv.small;
    /* Larger LUs answer 0xffffffff: the initiator then asks (16). */
    scsi_put32(p, last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
    scsi_put32(p + 4, SCSI_LBA_SIZE);
    return scsi_data_in(c, 8, 8);
}

static enum scsi_exec_result read_capacity16(struct scsi_cmd *c)
{
    uint32_t alloc = scsi_get32(c->cdb + 10);
    uint64_t n = scsi_lu_blocks(c->lu);
    uint8_t *p = c->priv.small;
    memset(p, 0, 32);
    scsi_put64(p, n ? n - 1 : 0);
    scsi_put32(p + 8, SCSI_LBA_SIZE);
    p[13] = SCSI_PHYS_EXP; /* ops.h says why not the cache block's 8 */
    /* LBPME and LBPRZ: UNMAP and WRITE SAME deallocate through a core ZERO
     * on every back end, so unmapped blocks always read back as zeros. */
    p[14] = 0x80 | 0x40;
    return scsi_data_in(c, 32, alloc);
}

static enum scsi_exec_result start_stop_unit(struct scsi_cmd *c)
{
    /* The medium cannot stop or be ejected; power conditions are moot. */
    return scsi_good(c);
}

static enum scsi_exec_result prevent_allow(struct scsi_cmd *c)
{
    return scsi_good(c);
}

/* What every reservation type lets through is marked PR_ALLOW; the rest
 * (READ CAPACITY, TEST UNIT READY: allowed by some types only) is pr.c's
 * decision. */
#define NO_LU_PASS (SCSI_OP_NO_LU | SCSI_OP_UA_PASS | SCSI_OP_PR_ALLOW)

const struct scsi_op scsi_ops_basic[] = {
    {.opcode = 0x00,
     .service_action = -1,
     .cdb_len = 6,
     .usage = {0x00, 0, 0, 0, 0, 0x00},
     .name = "TEST UNIT READY",
     .exec = test_unit_ready},
    {.opcode = 0x12,
     .service_action = -1,
     .cdb_len = 6,
     .flags = NO_LU_PASS,
     .usage = {0x12, 0x01, 0xff, 0xff, 0xff, 0x00},
     .name = "INQUIRY",
     .exec = scsi_exec_inquiry},
    {.opcode = 0xa0,
     .service_action = -1,
     .cdb_len = 12,
     .flags = NO_LU_PASS,
     .usage = {0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x00},
     .name = "REPORT LUNS",
     .exec = report_luns},
    {.opcode = 0x03,
     .service_action = -1,
     .cdb_len = 6,
     .flags = NO_LU_PASS,
     .usage = {0x03, 0x01, 0, 0, 0xff, 0x00},
     .name = "REQUEST SENSE",
     .exec = request_sense},
    {.opcode = 0x25,
     .service_action = -1,
     .cdb_len = 10,
     .usage = {0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0x00},
     .name = "READ CAPACITY (10)",
     .exec = read_capacity10},
    {.opcode = 0x9e,
     .service_action = 0x10,
     .cdb_len = 16,
     .usage = {0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
               0x01, 0x00},
     .name = "READ CAPACITY (16)",
     .exec = read_capacity16},
    {.opcode = 0xa3,
     .service_action = 0x0c,
     .cdb_len = 12,
     .flags = SCSI_OP_PR_ALLOW,
     .usage = {0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x00},
     .name = "REPORT SUPPORTED OPERATION CODES",
     .exec = scsi_exec_rsoc},
    {.opcode = 0x1b,
     .service_action = -1,
     .cdb_len = 6,
     .usage = {0x1b, 0x01, 0, 0x0f, 0xf7, 0x00},
     .name = "START STOP UNIT",
     .exec = start_stop_unit},
    {.opcode = 0x1e,
     .service_action = -1,
     .cdb_len = 6,
     .usage = {0x1e, 0, 0, 0, 0x03, 0x00},
     .name = "PREVENT ALLOW MEDIUM REMOVAL",
     .exec = prevent_allow},
    {.name = NULL},
};
