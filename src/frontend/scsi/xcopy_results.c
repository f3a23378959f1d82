/* The copy manager's held results, per LU and per (nexus, list identifier),
 * and RECEIVE COPY RESULTS (SPC-4 6.18: COPY STATUS, RECEIVE DATA,
 * OPERATING PARAMETERS, FAILED SEGMENT DETAILS). Copies finish before
 * EXTENDED COPY returns, so a status is "running" only while another
 * command of the same nexus asks concurrently. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "frontend/scsi/xcopy_int.h"

static scsi_copy_access_fn g_access; /* atomic */

void scsi_copy_set_access(scsi_copy_access_fn fn)
{
    __atomic_store_n(&g_access, fn, __ATOMIC_RELEASE);
}

bool xcopy_may_reach(const struct scsi_lu *lu, const struct scsi_nexus *n, const struct volume *v)
{
    if (v == lu->v)
        return true;
    scsi_copy_access_fn fn = __atomic_load_n(&g_access, __ATOMIC_ACQUIRE);
    return fn && n && fn(n, v);
}

static struct copy_state *state_locked(struct scsi_lu *lu, bool make)
{
    if (!lu->copy_state && make)
        lu->copy_state = calloc(1, sizeof(struct copy_state));
    return lu->copy_state;
}

int copy_result_begin(struct scsi_lu *lu, uint64_t nexus, uint8_t list_id)
{
    LOCK_GUARD(&lu->lock);
    struct copy_state *st = state_locked(lu, true);
    if (!st)
        return -ENOMEM;
    int slot = -1;
    for (int i = 0; i < XCOPY_MAX_RESULTS; i++) {
        struct copy_result *r = &st->r[i];
        if (r->used && r->nexus == nexus && r->list_id == list_id) {
            if (r->status == XCOPY_RUNNING)
                return -EBUSY;
            slot = i; /* a new copy replaces the old results */
            break;
        }
    }
    /* else a free slot, else the oldest finished one */
    for (int i = 0; i < XCOPY_MAX_RESULTS && slot < 0; i++)
        if (!st->r[i].used)
            slot = i;
    if (slot < 0)
        for (int i = 0; i < XCOPY_MAX_RESULTS; i++)
            if (st->r[i].status != XCOPY_RUNNING && (slot < 0 || st->r[i].age < st->r[slot].age))
                slot = i;
    if (slot < 0)
        return -ENOSPC;
    st->r[slot] = (struct copy_result){.used = true,
                                       .list_id = list_id,
                                       .status = XCOPY_RUNNING,
                                       .nexus = nexus,
                                       .age = ++st->clock};
    return slot;
}

void copy_result_end(struct scsi_lu *lu, int slot, const struct scsi_cmd *c, uint16_t segments,
                     uint64_t bytes)
{
    LOCK_GUARD(&lu->lock);
    struct copy_result *r = &((struct copy_state *)lu->copy_state)->r[slot];
    r->status = c->status == SCSI_STATUS_GOOD ? XCOPY_GOOD : XCOPY_FAILED;
    r->segments = segments;
    r->bytes = bytes;
    r->sense_len = c->sense_len;
    memcpy(r->sense, c->sense, c->sense_len);
}

void scsi_copy_nexus_gone(struct scsi_lu *lu, const struct scsi_nexus *n)
{
    LOCK_GUARD(&lu->lock);
    struct copy_state *st = state_locked(lu, false);
    if (!st)
        return;
    /* a running copy's slot stays: its command still ends it */
    for (int i = 0; i < XCOPY_MAX_RESULTS; i++)
        if (st->r[i].used && st->r[i].nexus == n->id && st->r[i].status != XCOPY_RUNNING)
            st->r[i].used = false;
}

void scsi_copy_free(struct scsi_lu *lu)
{
    free(lu->copy_state);
    lu->copy_state = NULL;
}

/* ---- RECEIVE COPY RESULTS ---- */

static uint32_t operating_parameters(uint8_t *p)
{
    p[4] = 0x01; /* SNLID: LIST ID USAGE 11b is supported */
    scsi_put16(p + 8, XCOPY_MAX_TARGETS);
    scsi_put16(p + 10, XCOPY_MAX_SEGMENTS);
    scsi_put32(p + 12, XCOPY_MAX_DESC_LIST);
    scsi_put32(p + 16, XCOPY_MAX_SEGMENT_BYTES);
    /* no inline data, no held data, no stream devices: all 0 */
    scsi_put16(p + 34, XCOPY_MAX_RESULTS); /* TOTAL CONCURRENT COPIES */
    p[36] = XCOPY_MAX_RESULTS;             /* MAXIMUM CONCURRENT COPIES */
    p[37] = SCSI_LBA_SHIFT;                /* DATA SEGMENT GRANULARITY (log2) */
    p[43] = 2;                             /* implemented descriptor codes: */
    p[44] = 0x02;                          /* block to block */
    p[45] = 0xe4;                          /* identification */
    scsi_put32(p, 46 - 4);
    return 46;
}

static uint32_t copy_status(uint8_t *p, const struct copy_result *r)
{
    scsi_put32(p, 8);
    p[4] = r->status; /* HDD 0: nothing held */
    scsi_put16(p + 5, r->segments);
    /* TRANSFER COUNT in bytes while it fits, else in KiB (units 01h) */
    if (r->bytes <= UINT32_MAX) {
        p[7] = 0x00;
        scsi_put32(p + 8, (uint32_t)r->bytes);
    } else {
        p[7] = 0x01;
        scsi_put32(p + 8, (uint32_t)(r->bytes >> 10));
    }
    return 12;
}

static uint32_t failed_segment_details(uint8_t *p, const struct copy_result *r)
{
    if (r->status != XCOPY_FAILED) {
        scsi_put32(p, 0);
        return 4;
    }
    scsi_put32(p, 56 + r->sense_len);
    p[56] = SCSI_STATUS_CHECK_CONDITION; /* COPY COMMAND STATUS */
    scsi_put16(p + 58, r->sense_len);
    memcpy(p + 60, r->sense, r->sense_len);
    return 60u + r->sense_len;
}

enum scsi_exec_result scsi_exec_copy_results(struct scsi_cmd *c)
{
    uint8_t sa = c->cdb[1] & 0x1f, list_id = c->cdb[2];
    uint32_t alloc = scsi_get32(c->cdb + 10);
    uint8_t *p = c->priv.small;
    memset(p, 0, 128);
    if (sa == 0x03)
        return scsi_data_in(c, operating_parameters(p), alloc);
    if (sa != 0x00 && sa != 0x01 && sa != 0x04)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 4);
    uint64_t nexus = c->nexus ? c->nexus->id : 0;
    struct scsi_lu *lu = c->lu;
    LOCK_GUARD(&lu->lock);
    struct copy_state *st = state_locked(lu, false);
    const struct copy_result *r = NULL;
    for (int i = 0; st && i < XCOPY_MAX_RESULTS && !r; i++)
        if (st->r[i].used && st->r[i].nexus == nexus && st->r[i].list_id == list_id)
            r = &st->r[i];
    if (!r)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, -1);
    uint32_t len;
    if (sa == 0x00)
        len = copy_status(p, r);
    else if (sa == 0x01)
        len = 4; /* RECEIVE DATA: nothing is ever held */
    else
        len = failed_segment_details(p, r);
    return scsi_data_in(c, len, alloc);
}
