/* REPORT SUPPORTED OPERATION CODES (SPC-5 6.35), from the op tables: every
 * command, or one with its CDB usage data; with RCTD, timeouts. */
#include <string.h>

#include "frontend/scsi/ops.h"

#define TIMEOUTS_LEN 12
/* Seconds. Nothing here takes long but the storage behind the cache; the
 * recommended timeout leaves it room. */
#define NOMINAL_TIMEOUT     1
#define RECOMMENDED_TIMEOUT 60

static uint32_t put_timeouts(uint8_t *p)
{
    memset(p, 0, TIMEOUTS_LEN);
    scsi_put16(p, TIMEOUTS_LEN - 2);
    scsi_put32(p + 4, NOMINAL_TIMEOUT);
    scsi_put32(p + 8, RECOMMENDED_TIMEOUT);
    return TIMEOUTS_LEN;
}

struct all_ctx {
    uint8_t *p;
    uint32_t n;
    bool rctd;
};

static void put_one(const struct scsi_op *op, void *opaque)
{
    struct all_ctx *a = opaque;
    uint32_t need = 8 + (a->rctd ? TIMEOUTS_LEN : 0);
    if (a->n + need > SCSI_SMALL_DATA_MAX)
        return; /* cannot happen with the tables' size; never overrun */
    uint8_t *d = a->p + a->n;
    memset(d, 0, 8);
    d[0] = op->opcode;
    if (op->service_action >= 0) {
        scsi_put16(d + 2, (uint16_t)op->service_action);
        d[5] |= 0x01; /* SERVACTV */
    }
    if (a->rctd)
        d[5] |= 0x02; /* CTDP */
    scsi_put16(d + 6, op->cdb_len);
    a->n += 8;
    if (a->rctd)
        a->n += put_timeouts(a->p + a->n);
}

static bool opcode_has_sa(uint8_t opcode)
{
    const struct scsi_op *op = scsi_op_find(opcode, -1);
    if (op && op->service_action < 0)
        return false; /* one op takes every service action of the opcode */
    for (int sa = 0; sa < 0x20; sa++) {
        op = scsi_op_find(opcode, sa);
        if (op && op->service_action >= 0)
            return true;
    }
    return false;
}

enum scsi_exec_result scsi_exec_rsoc(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    bool rctd = cdb[2] & 0x80;
    uint8_t options = cdb[2] & 0x07;
    uint8_t opcode = cdb[3];
    uint16_t sa = scsi_get16(cdb + 4);
    uint32_t alloc = scsi_get32(cdb + 6);
    uint8_t *p = c->priv.small;

    if (options == 0) {
        struct all_ctx a = {.p = p, .n = 4, .rctd = rctd};
        scsi_op_for_each(put_one, &a);
        scsi_put32(p, a.n - 4);
        return scsi_data_in(c, a.n, alloc);
    }
    if (options > 3)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, 2);
    bool with_sa = opcode_has_sa(opcode);
    /* 001b: by opcode, which must have no service actions; 010b: by opcode
     * and service action, which it must have; 011b: either. */
    if ((options == 1 && with_sa) || (options == 2 && !with_sa && scsi_op_find(opcode, -1)))
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, 2);
    const struct scsi_op *op = scsi_op_find(opcode, with_sa ? sa : -1);
    if (op && with_sa && op->service_action != sa)
        op = NULL;
    memset(p, 0, 4);
    uint32_t n = 4;
    if (!op) {
        p[1] = 0x01; /* SUPPORT 001b: not supported */
        return scsi_data_in(c, n, alloc);
    }
    p[1] = (uint8_t)((rctd ? 0x80 : 0) | 0x03); /* SUPPORT 011b: as the standard says */
    uint32_t len = op->cdb_len ? op->cdb_len : sizeof op->usage;
    if (len > sizeof op->usage)
        len = sizeof op->usage;
    scsi_put16(p + 2, (uint16_t)len);
    memcpy(p + 4, op->usage, len);
    p[4] = op->opcode;
    n += len;
    if (rctd)
        n += put_timeouts(p + n);
    return scsi_data_in(c, n, alloc);
}
