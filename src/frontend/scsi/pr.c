/* Reservations: the command table, the conflict check every command passes
 * (SPC-5 5.13.1 for persistent reservations, SPC-2 7.21 for RESERVE), the
 * SPC-2 RESERVE(6/10) and RELEASE(6/10) commands, and the LU's hooks
 * (nexus gone, reset, free). PERSISTENT RESERVE IN and OUT are pr_in.c and
 * pr_out.c; the state is described in pr.h. */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "frontend/scsi/pr.h"
#include "frontend/scsi/xcopy.h"

/* ---- state ---- */

struct scsi_pr *pr_get_locked(struct scsi_lu *lu)
{
    if (lu->pr)
        return lu->pr;
    struct scsi_pr *pr = calloc(1, sizeof *pr);
    if (!pr)
        return NULL;
    pr->holder = -1;
    __atomic_store_n(&lu->pr, pr, __ATOMIC_RELEASE);
    return pr;
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

static bool reg_matches(const struct pr_reg *r, const struct scsi_nexus *n)
{
    if (!r->used || strcmp(r->initiator, str_or_empty(n->initiator)) != 0)
        return false;
    return r->all_tg_pt ||
           (r->rel_tgt_port == n->rel_tgt_port && strcmp(r->target, str_or_empty(n->target)) == 0);
}

int pr_find_locked(struct scsi_pr *pr, const struct scsi_nexus *n)
{
    for (int i = 0; i < PR_MAX_REGS; i++) {
        if (reg_matches(&pr->regs[i], n)) {
            pr->regs[i].nexus_id = n->id; /* where its unit attentions go now */
            return i;
        }
    }
    return -1;
}

bool pr_is_holder_locked(struct scsi_pr *pr, const struct scsi_nexus *n)
{
    if (!pr->reserved)
        return false;
    int i = pr_find_locked(pr, n);
    if (i < 0)
        return false;
    return pr_all_registrants(pr->type) || pr->holder == i;
}

void pr_ua_locked(struct scsi_lu *lu, const struct pr_reg *r, uint16_t asc)
{
    if (r->nexus_id)
        scsi_ua_post_locked(lu, r->nexus_id, asc);
}

static unsigned count_regs(const struct scsi_pr *pr)
{
    unsigned n = 0;
    for (int i = 0; i < PR_MAX_REGS; i++)
        n += pr->regs[i].used;
    return n;
}

void pr_unregister_locked(struct scsi_lu *lu, struct scsi_pr *pr, int i, uint64_t by_nexus)
{
    struct pr_reg *r = &pr->regs[i];
    free(r->initiator);
    free(r->target);
    memset(r, 0, sizeof *r);
    if (!pr->reserved)
        return;
    if (pr_all_registrants(pr->type)) {
        /* held by every registrant: it ends with the last one */
        if (count_regs(pr) == 0) {
            pr->reserved = false;
            pr->type = 0;
        }
        return;
    }
    if (pr->holder != i)
        return;
    /* The holder went: a registrants-only reservation's other registrants
     * learn that it was released. */
    uint8_t type = pr->type;
    pr->reserved = false;
    pr->type = 0;
    pr->holder = -1;
    if (type == PR_WE_RO || type == PR_EA_RO)
        for (int j = 0; j < PR_MAX_REGS; j++)
            if (pr->regs[j].used && pr->regs[j].nexus_id != by_nexus)
                pr_ua_locked(lu, &pr->regs[j], ASC_RESERVATIONS_RELEASED);
}

/* ---- the conflict check ---- */

enum pr_class {
    PRC_ALLOW, /* allowed through every reservation type */
    PRC_READ,  /* conflicts with the exclusive access types only */
    PRC_WRITE, /* conflicts with every type */
};

/* SPC-5 table 5.13.1 and SBC-4 4.17: where an opcode's row differs from
 * what its flags say (commands that read state but still conflict, and
 * reporting commands every initiator may send). */
static enum pr_class pr_class_of(const struct scsi_op *op)
{
    switch (op->opcode) {
    case 0x00: /* TEST UNIT READY */
    case 0x03: /* REQUEST SENSE */
    case 0x12: /* INQUIRY */
    case 0x25: /* READ CAPACITY (10) */
    case 0x4d: /* LOG SENSE */
    case 0x5e: /* PERSISTENT RESERVE IN */
    case 0x5f: /* PERSISTENT RESERVE OUT: the service action decides */
    case 0xa0: /* REPORT LUNS */
    case 0xa3: /* MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES ... */
        return PRC_ALLOW;
    case 0x9e: /* SERVICE ACTION IN (16): READ CAPACITY (16) is allowed */
        return op->service_action == 0x10 ? PRC_ALLOW : PRC_READ;
    case 0x15: /* MODE SELECT (6) */
    case 0x55: /* MODE SELECT (10) */
    case 0x1a: /* MODE SENSE (6) */
    case 0x5a: /* MODE SENSE (10) */
    case 0x4c: /* LOG SELECT */
    case 0x35: /* SYNCHRONIZE CACHE (10) */
    case 0x91: /* SYNCHRONIZE CACHE (16) */
    case 0x16: /* RESERVE (6) */
    case 0x17: /* RELEASE (6) */
    case 0x56: /* RESERVE (10) */
    case 0x57: /* RELEASE (10) */
    case 0x3b: /* WRITE BUFFER */
    case 0x3c: /* READ BUFFER */
    case 0x1c: /* RECEIVE DIAGNOSTIC RESULTS */
    case 0x1d: /* SEND DIAGNOSTIC */
    case 0x83: /* EXTENDED COPY */
    case 0x84: /* RECEIVE COPY RESULTS */
        return PRC_WRITE;
    default:
        break;
    }
    if (op->flags & SCSI_OP_PR_ALLOW)
        return PRC_ALLOW;
    return (op->flags & SCSI_OP_WRITES) ? PRC_WRITE : PRC_READ;
}

/* What another nexus may still send while an SPC-2 RESERVE is held
 * (SPC-2 7.21.1): reporting commands and RELEASE (a no-op for it). */
static bool spc2_allows(uint8_t opcode)
{
    switch (opcode) {
    case 0x03: /* REQUEST SENSE */
    case 0x12: /* INQUIRY */
    case 0x17: /* RELEASE (6) */
    case 0x4d: /* LOG SENSE */
    case 0x57: /* RELEASE (10) */
    case 0xa0: /* REPORT LUNS */
    case 0xa3: /* MAINTENANCE IN */
        return true;
    default:
        return false;
    }
}

bool pr_blocks(struct scsi_lu *lu, const struct scsi_nexus *n, const struct scsi_op *op)
{
    if (!lu || !n || !__atomic_load_n(&lu->pr, __ATOMIC_ACQUIRE))
        return false;
    LOCK_GUARD(&lu->lock);
    struct scsi_pr *pr = lu->pr;
    if (pr->spc2 && pr->spc2_nexus != n->id)
        return !spc2_allows(op->opcode);
    if (!pr->reserved)
        return false;
    int i = pr_find_locked(pr, n);
    if (i >= 0 && (pr_registrants_type(pr->type) || pr->holder == i))
        return false;
    switch (pr_class_of(op)) {
    case PRC_ALLOW:
        return false;
    case PRC_READ:
        return pr->type == PR_EA || pr->type == PR_EA_RO || pr->type == PR_EA_AR;
    case PRC_WRITE:
    default:
        return true;
    }
}

bool scsi_pr_blocks(struct scsi_cmd *c, const struct scsi_op *op)
{
    return pr_blocks(c->lu, c->nexus, op);
}

/* ---- hooks ---- */

void scsi_pr_nexus_gone(struct scsi_lu *lu, const struct scsi_nexus *n)
{
    if (__atomic_load_n(&lu->pr, __ATOMIC_ACQUIRE)) {
        LOCK_GUARD(&lu->lock);
        struct scsi_pr *pr = lu->pr;
        /* SPC-2 reservations end with the nexus; persistent ones do not */
        if (pr->spc2 && pr->spc2_nexus == n->id)
            pr->spc2 = false;
        for (int i = 0; i < PR_MAX_REGS; i++)
            if (pr->regs[i].used && pr->regs[i].nexus_id == n->id)
                pr->regs[i].nexus_id = 0;
    }
    /* copy results are kept per nexus (xcopy.c) */
    scsi_copy_nexus_gone(lu, n);
}

void scsi_pr_reset(struct scsi_lu *lu)
{
    if (!__atomic_load_n(&lu->pr, __ATOMIC_ACQUIRE))
        return;
    LOCK_GUARD(&lu->lock);
    /* a LOGICAL UNIT RESET releases SPC-2 reservations only (SPC-5 5.13.4) */
    lu->pr->spc2 = false;
}

void scsi_pr_free(struct scsi_lu *lu)
{
    struct scsi_pr *pr = lu->pr;
    if (!pr)
        return;
    for (int i = 0; i < PR_MAX_REGS; i++) {
        free(pr->regs[i].initiator);
        free(pr->regs[i].target);
    }
    free(pr);
    lu->pr = NULL;
}

/* ---- RESERVE (6/10), RELEASE (6/10) ---- */

static enum scsi_exec_result exec_reserve(struct scsi_cmd *c)
{
    /* third-party reservations and extents are not supported */
    uint8_t bad = c->cdb[0] == 0x16 ? 0x1f : 0x12;
    if (c->cdb[1] & bad)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, -1);
    if (!c->nexus)
        return scsi_conflict(c);
    struct scsi_lu *lu = c->lu;
    LOCK_GUARD(&lu->lock);
    struct scsi_pr *pr = pr_get_locked(lu);
    if (!pr)
        return scsi_check(c, SK_ABORTED_COMMAND, ASC_INSUFFICIENT_RESOURCES);
    /* SPC-5 5.13.3: once anyone registered, RESERVE conflicts */
    if (pr->reserved || count_regs(pr) > 0)
        return scsi_conflict(c);
    if (pr->spc2 && pr->spc2_nexus != c->nexus->id)
        return scsi_conflict(c);
    pr->spc2 = true;
    pr->spc2_nexus = c->nexus->id;
    return scsi_good(c);
}

static enum scsi_exec_result exec_release(struct scsi_cmd *c)
{
    uint8_t bad = c->cdb[0] == 0x17 ? 0x1f : 0x12;
    if (c->cdb[1] & bad)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, -1);
    struct scsi_lu *lu = c->lu;
    if (!c->nexus || !__atomic_load_n(&lu->pr, __ATOMIC_ACQUIRE))
        return scsi_good(c);
    LOCK_GUARD(&lu->lock);
    /* Releasing what another nexus holds, or nothing, is no error; with
     * registrations present it is a no-op too (SPC-5 5.13.3). */
    if (lu->pr->spc2 && lu->pr->spc2_nexus == c->nexus->id)
        lu->pr->spc2 = false;
    return scsi_good(c);
}

/* CDB usage data: the bits each command evaluates. */
const struct scsi_op scsi_ops_pr[] = {
    {.opcode = 0x5e,
     .service_action = -1,
     .cdb_len = 10,
     .usage = {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0},
     .name = "PERSISTENT RESERVE IN",
     .exec = scsi_exec_pr_in},
    {.opcode = 0x5f,
     .service_action = -1,
     .cdb_len = 10,
     .usage = {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0},
     .name = "PERSISTENT RESERVE OUT",
     .exec = scsi_exec_pr_out},
    {.opcode = 0x16,
     .service_action = -1,
     .cdb_len = 6,
     .usage = {0x16, 0, 0, 0, 0, 0},
     .name = "RESERVE (6)",
     .exec = exec_reserve},
    {.opcode = 0x17,
     .service_action = -1,
     .cdb_len = 6,
     .usage = {0x17, 0, 0, 0, 0, 0},
     .name = "RELEASE (6)",
     .exec = exec_release},
    {.opcode = 0x56,
     .service_action = -1,
     .cdb_len = 10,
     .usage = {0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0},
     .name = "RESERVE (10)",
     .exec = exec_reserve},
    {.opcode = 0x57,
     .service_action = -1,
     .cdb_len = 10,
     .usage = {0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0},
     .name = "RELEASE (10)",
     .exec = exec_release},
    {.name = NULL},
};
