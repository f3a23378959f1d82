/* Decoding a CDB to its op, and the checks every command passes before it
 * runs, in the order SAM-5 and SPC-5 give them precedence: the LU exists,
 * a pending unit attention, the opcode and service action, the CDB (its
 * length, its CONTROL byte), a reservation held by another nexus, a
 * read-only medium. */
#include <pthread.h>
#include <stddef.h>

#include "core/engine.h"
#include "frontend/scsi/scsi_int.h"

static const struct scsi_op *const tables[] = {
    scsi_ops_basic, scsi_ops_rw, scsi_ops_mode, scsi_ops_pr, scsi_ops_copy, scsi_ops_caw,
};

#define NTABLES (sizeof tables / sizeof tables[0])

/* Per opcode, built once from the tables: whether an op of it has a
 * service action, and its op that takes any (service_action -1). A command
 * whose opcode has no service actions (READ, WRITE: nearly every command)
 * finds its op here instead of scanning every table. */
static struct {
    bool has_sa;
    const struct scsi_op *any;
} by_opcode[256];
static pthread_once_t by_opcode_once = PTHREAD_ONCE_INIT;

static void by_opcode_build(void)
{
    for (size_t t = 0; t < NTABLES; t++) {
        for (const struct scsi_op *op = tables[t]; op->name; op++) {
            if (op->service_action >= 0)
                by_opcode[op->opcode].has_sa = true;
            else if (!by_opcode[op->opcode].any)
                by_opcode[op->opcode].any = op;
        }
    }
}

/* An op with service_action -1 takes every service action of its opcode
 * (it decodes them itself); otherwise the exact one. */
const struct scsi_op *scsi_op_find(uint8_t opcode, int service_action)
{
    pthread_once(&by_opcode_once, by_opcode_build);
    if (!by_opcode[opcode].has_sa)
        return by_opcode[opcode].any;
    const struct scsi_op *any = NULL;
    for (size_t t = 0; t < NTABLES; t++) {
        for (const struct scsi_op *op = tables[t]; op->name; op++) {
            if (op->opcode != opcode)
                continue;
            if (op->service_action == service_action)
                return op;
            if (op->service_action < 0 && !any)
                any = op;
        }
    }
    return any;
}

void scsi_op_for_each(void (*fn)(const struct scsi_op *op, void *opaque), void *opaque)
{
    for (size_t t = 0; t < NTABLES; t++)
        for (const struct scsi_op *op = tables[t]; op->name; op++)
            fn(op, opaque);
}

/* True when some op of the opcode has a service action (the CDB's is then
 * significant). */
static bool has_service_actions(uint8_t opcode)
{
    pthread_once(&by_opcode_once, by_opcode_build);
    return by_opcode[opcode].has_sa;
}

/* The service action a CDB carries: in byte 1 (bits 4-0) of the 12- and
 * 16-byte forms that have one, in bytes 8-9 of a variable-length CDB. */
static int cdb_service_action(const struct scsi_cmd *c)
{
    if (c->cdb[0] == 0x7f)
        return c->cdb_len >= 10 ? scsi_get16(c->cdb + 8) : -1;
    return c->cdb[1] & 0x1f;
}

/* The CDB length its group code implies (SPC-5 4.2.5.1); 0: vendor
 * specific or variable. */
static unsigned group_cdb_len(uint8_t opcode)
{
    switch (opcode >> 5) {
    case 0:
        return 6;
    case 1:
    case 2:
        return 10;
    case 4:
        return 16;
    case 5:
        return 12;
    default:
        return 0;
    }
}

enum scsi_exec_result scsi_dispatch(struct scsi_cmd *c)
{
    uint8_t opcode = c->cdb[0];
    unsigned need = group_cdb_len(opcode);
    if (c->cdb_len == 0 || c->cdb_len > SCSI_CDB_MAX || (need && c->cdb_len < need))
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 0, -1);

    bool with_sa = has_service_actions(opcode);
    const struct scsi_op *op = scsi_op_find(opcode, with_sa ? cdb_service_action(c) : -1);

    if (!c->lu && !(op && (op->flags & SCSI_OP_NO_LU)))
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);

    /* A unit attention is reported to any command but those that pass it,
     * unknown ones included (SAM-5 5.14). */
    if (c->lu && c->nexus && !(op && (op->flags & SCSI_OP_UA_PASS))) {
        uint16_t asc;
        if (scsi_ua_take(c->lu, c->nexus, &asc) == 0)
            return scsi_check(c, SK_UNIT_ATTENTION, asc);
    }

    if (!op) {
        if (with_sa)
            return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true,
                                    opcode == 0x7f ? 8 : 1, opcode == 0x7f ? -1 : 4);
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, true, 0, -1);
    }
    if (op->cdb_len && c->cdb_len < op->cdb_len)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 0, -1);
    if (opcode == 0x7f && (c->cdb_len < 8 || c->cdb_len < 8u + c->cdb[7]))
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 7, -1);

    /* The CONTROL byte: no ACA (NACA) and no linked commands (LINK). */
    unsigned ctl = op->cdb_len ? op->cdb_len - 1u : opcode == 0x7f ? 1u : 0u;
    if (ctl && (c->cdb[ctl] & 0x05))
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true,
                                (uint16_t)ctl, (c->cdb[ctl] & 0x04) ? 2 : 0);

    /* A volume under one 512-byte block has no LBA to offer, and READ
     * CAPACITY cannot say "no blocks" (it returns the last LBA): such a LU
     * is a drive without a medium, which every initiator understands. The
     * commands that pass a unit attention (INQUIRY, REPORT LUNS, REQUEST
     * SENSE), MODE SENSE and REPORT SUPPORTED OPERATION CODES, which are
     * about the device, still answer. */
    if (c->lu && !(op->flags & SCSI_OP_UA_PASS) && opcode != 0x1a && opcode != 0x5a &&
        opcode != 0xa3 && scsi_lu_blocks(c->lu) == 0)
        return scsi_check(c, SK_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
    if (c->lu && !(op->flags & SCSI_OP_PR_ALLOW) && c->nexus && scsi_pr_blocks(c, op))
        return scsi_conflict(c);
    if (c->lu && (op->flags & SCSI_OP_WRITES) && volume_readonly(c->lu->v))
        return scsi_check(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    return op->exec(c);
}
