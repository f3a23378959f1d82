/* PERSISTENT RESERVE IN (SPC-5 6.15): READ KEYS, READ RESERVATION, REPORT
 * CAPABILITIES, READ FULL STATUS. Each answer is built whole in the
 * command's small buffer; the ADDITIONAL LENGTH fields always say how much
 * there is, whatever the allocation length lets through. */
#include <string.h>

#include "common/cleanup.h"
#include "frontend/scsi/pr.h"

/* A data-in buffer that counts what does not fit. */
struct out {
    uint8_t *p;
    uint32_t len, cap;
};

static void put(struct out *o, const void *src, uint32_t n)
{
    if (o->len < o->cap) {
        uint32_t room = o->cap - o->len;
        memcpy(o->p + o->len, src, n < room ? n : room);
    }
    o->len += n;
}

static void put8(struct out *o, uint8_t v)
{
    put(o, &v, 1);
}

static void put16(struct out *o, uint16_t v)
{
    uint8_t b[2];
    scsi_put16(b, v);
    put(o, b, 2);
}

static void put32(struct out *o, uint32_t v)
{
    uint8_t b[4];
    scsi_put32(b, v);
    put(o, b, 4);
}

static void put64(struct out *o, uint64_t v)
{
    uint8_t b[8];
    scsi_put64(b, v);
    put(o, b, 8);
}

static void zeros(struct out *o, uint32_t n)
{
    while (n--)
        put8(o, 0);
}

/* Patch a 32-bit field already written (if it fit). */
static void patch32(struct out *o, uint32_t at, uint32_t v)
{
    if (at + 4 <= o->cap)
        scsi_put32(o->p + at, v);
}

static void read_keys_locked(struct scsi_pr *pr, struct out *o)
{
    put32(o, pr->generation);
    put32(o, 0);
    for (int i = 0; i < PR_MAX_REGS; i++)
        if (pr->regs[i].used)
            put64(o, pr->regs[i].key);
    patch32(o, 4, o->len - 8);
}

static void read_reservation_locked(struct scsi_pr *pr, struct out *o)
{
    put32(o, pr->generation);
    if (!pr->reserved) {
        put32(o, 0);
        return;
    }
    put32(o, 16);
    /* all-registrants reservations have no single key (SPC-5 6.15.3) */
    put64(o, pr_all_registrants(pr->type) ? 0 : pr->regs[pr->holder].key);
    zeros(o, 4);             /* obsolete */
    put8(o, 0);              /* reserved */
    put8(o, pr->type & 0xf); /* scope 0 (logical unit), type */
    zeros(o, 2);             /* obsolete */
}

static void report_capabilities(struct out *o)
{
    put16(o, 8); /* LENGTH */
    /* CRH (RESERVE/RELEASE as SPC-5 5.13.3 says), ATP_C (ALL_TG_PT);
     * no SIP_C (SPEC_I_PT), no PTPL_C: state is in memory only. */
    put8(o, 0x10 | 0x04);
    /* TMV, ALLOW COMMANDS 001b: TEST UNIT READY passes WE and EA
     * reservations, nothing claimed about the others; PTPL_A 0. */
    put8(o, 0x80 | 0x10);
    /* the type mask: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR */
    put8(o, 0x80 | 0x40 | 0x20 | 0x08 | 0x02);
    put8(o, 0x01);
    put16(o, 0);
}

/* An iSCSI TransportID (SPC-5 7.6.4.6) for an initiator port name:
 * format 01b when the name carries ",i,0x<ISID>", else 00b. The name is
 * NUL-terminated and padded to a multiple of 4, at least 20 bytes in all. */
static uint32_t transport_id(struct out *o, const char *name)
{
    uint32_t n = (uint32_t)strlen(name) + 1;
    uint32_t padded = (n + 3) & ~3u;
    if (padded < 16)
        padded = 16;
    put8(o, (strstr(name, ",i,0x") ? 0x40 : 0x00) | 0x05);
    put8(o, 0);
    put16(o, (uint16_t)padded);
    put(o, name, n);
    zeros(o, padded - n);
    return 4 + padded;
}

static void read_full_status_locked(struct scsi_pr *pr, struct out *o)
{
    put32(o, pr->generation);
    put32(o, 0);
    for (int i = 0; i < PR_MAX_REGS; i++) {
        const struct pr_reg *r = &pr->regs[i];
        if (!r->used)
            continue;
        bool holder = pr->reserved && (pr_all_registrants(pr->type) || pr->holder == i);
        put64(o, r->key);
        zeros(o, 4);
        put8(o, (r->all_tg_pt ? 0x02 : 0) | (holder ? 0x01 : 0));
        put8(o, holder ? (pr->type & 0xf) : 0);
        zeros(o, 4);
        put16(o, r->all_tg_pt ? 0 : r->rel_tgt_port);
        uint32_t at = o->len;
        put32(o, 0);
        patch32(o, at, transport_id(o, r->initiator));
    }
    patch32(o, 4, o->len - 8);
}

enum scsi_exec_result scsi_exec_pr_in(struct scsi_cmd *c)
{
    uint8_t sa = c->cdb[1] & 0x1f;
    uint16_t alloc = scsi_get16(c->cdb + 7);
    if (sa > 3)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 4);
    struct out o = {.p = c->priv.small, .cap = SCSI_SMALL_DATA_MAX};
    memset(c->priv.small, 0, sizeof c->priv.small);
    if (sa == 2) {
        report_capabilities(&o);
    } else {
        struct scsi_lu *lu = c->lu;
        LOCK_GUARD(&lu->lock);
        struct scsi_pr *pr = pr_get_locked(lu);
        if (!pr)
            return scsi_check(c, SK_ABORTED_COMMAND, ASC_INSUFFICIENT_RESOURCES);
        if (sa == 0)
            read_keys_locked(pr, &o);
        else if (sa == 1)
            read_reservation_locked(pr, &o);
        else
            read_full_status_locked(pr, &o);
    }
    return scsi_data_in(c, o.len, alloc);
}
