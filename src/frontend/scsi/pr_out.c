/* PERSISTENT RESERVE OUT (SPC-5 6.16, 5.13.5-5.13.11): REGISTER, REGISTER
 * AND IGNORE EXISTING KEY, RESERVE, RELEASE, CLEAR, PREEMPT and PREEMPT AND
 * ABORT. REGISTER AND MOVE, SPEC_I_PT and APTPL are not supported (REPORT
 * CAPABILITIES says so). PREEMPT AND ABORT does what PREEMPT does and
 * leaves aborting the preempted nexuses' tasks to the transport, which
 * owns tasks; they see the unit attention. */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "frontend/scsi/pr.h"

enum {
    SA_REGISTER = 0,
    SA_RESERVE = 1,
    SA_RELEASE = 2,
    SA_CLEAR = 3,
    SA_PREEMPT = 4,
    SA_PREEMPT_ABORT = 5,
    SA_REGISTER_IGNORE = 6,
    SA_REGISTER_MOVE = 7,
};

#define PARAM_LEN 24

struct prout {
    struct scsi_cmd *c;
    struct scsi_lu *lu;
    struct scsi_pr *pr;
    const struct scsi_nexus *n;
    uint8_t sa, type;
    uint64_t rk, sark; /* RESERVATION KEY, SERVICE ACTION RESERVATION KEY */
    bool all_tg_pt;
    int me; /* the nexus's registration, or -1 */
};

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static enum scsi_exec_result do_register(struct prout *p)
{
    struct scsi_pr *pr = p->pr;
    if (p->me < 0) {
        /* not registered: REGISTER wants a zero RESERVATION KEY */
        if (p->sa == SA_REGISTER && p->rk != 0)
            return scsi_conflict(p->c);
        if (p->sark == 0)
            return scsi_good(p->c); /* nothing to register, nothing to do */
        int slot = -1;
        for (int i = 0; i < PR_MAX_REGS && slot < 0; i++)
            if (!pr->regs[i].used)
                slot = i;
        if (slot < 0)
            return scsi_check(p->c, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_REG_RESOURCES);
        struct pr_reg *r = &pr->regs[slot];
        r->initiator = dup_or_empty(p->n->initiator);
        r->target = dup_or_empty(p->n->target);
        if (!r->initiator || !r->target) {
            free(r->initiator);
            free(r->target);
            r->initiator = r->target = NULL;
            return scsi_check(p->c, SK_ABORTED_COMMAND, ASC_INSUFFICIENT_RESOURCES);
        }
        r->used = true;
        r->all_tg_pt = p->all_tg_pt;
        r->rel_tgt_port = p->n->rel_tgt_port;
        r->key = p->sark;
        r->nexus_id = p->n->id;
        pr->generation++;
        return scsi_good(p->c);
    }
    if (p->sa == SA_REGISTER && p->rk != pr->regs[p->me].key)
        return scsi_conflict(p->c);
    if (p->sark == 0)
        pr_unregister_locked(p->lu, pr, p->me, p->n->id);
    else
        pr->regs[p->me].key = p->sark;
    pr->generation++;
    return scsi_good(p->c);
}

static enum scsi_exec_result do_reserve(struct prout *p)
{
    struct scsi_pr *pr = p->pr;
    if (pr->reserved) {
        /* only the holder may ask again, and for the same type */
        if (!pr_is_holder_locked(pr, p->n) || pr->type != p->type)
            return scsi_conflict(p->c);
        return scsi_good(p->c);
    }
    pr->reserved = true;
    pr->type = p->type;
    pr->holder = pr_all_registrants(p->type) ? -1 : p->me;
    return scsi_good(p->c);
}

static enum scsi_exec_result do_release(struct prout *p)
{
    struct scsi_pr *pr = p->pr;
    if (!pr->reserved || !pr_is_holder_locked(pr, p->n))
        return scsi_good(p->c); /* nothing of ours to release */
    if (pr->type != p->type)
        return scsi_check(p->c, SK_ILLEGAL_REQUEST, ASC_INVALID_RELEASE_OF_PR);
    uint8_t type = pr->type;
    pr->reserved = false;
    pr->type = 0;
    pr->holder = -1;
    if (type != PR_WE && type != PR_EA)
        for (int i = 0; i < PR_MAX_REGS; i++)
            if (pr->regs[i].used && i != p->me)
                pr_ua_locked(p->lu, &pr->regs[i], ASC_RESERVATIONS_RELEASED);
    return scsi_good(p->c);
}

static enum scsi_exec_result do_clear(struct prout *p)
{
    struct scsi_pr *pr = p->pr;
    for (int i = 0; i < PR_MAX_REGS; i++) {
        if (!pr->regs[i].used)
            continue;
        if (i != p->me)
            pr_ua_locked(p->lu, &pr->regs[i], ASC_RESERVATIONS_PREEMPTED);
        free(pr->regs[i].initiator);
        free(pr->regs[i].target);
        memset(&pr->regs[i], 0, sizeof pr->regs[i]);
    }
    pr->reserved = false;
    pr->type = 0;
    pr->holder = -1;
    pr->generation++;
    return scsi_good(p->c);
}

/* Remove every registration with key `key` but the caller's; how many. */
static unsigned remove_key(struct prout *p, uint64_t key)
{
    struct scsi_pr *pr = p->pr;
    unsigned n = 0;
    for (int i = 0; i < PR_MAX_REGS; i++) {
        if (!pr->regs[i].used || pr->regs[i].key != key || i == p->me)
            continue;
        pr_ua_locked(p->lu, &pr->regs[i], ASC_REGISTRATIONS_PREEMPTED);
        pr_unregister_locked(p->lu, pr, i, p->n->id);
        n++;
    }
    return n;
}

static enum scsi_exec_result do_preempt(struct prout *p)
{
    struct scsi_pr *pr = p->pr;
    bool all = pr->reserved && pr_all_registrants(pr->type);
    bool holder_key = pr->reserved && !all && pr->regs[pr->holder].key == p->sark;

    if (all && p->sark == 0) {
        /* all registrants: a zero key preempts everyone else and takes
         * the reservation with the new type (SPC-5 5.13.11.4.4) */
        for (int i = 0; i < PR_MAX_REGS; i++) {
            if (!pr->regs[i].used || i == p->me)
                continue;
            pr_ua_locked(p->lu, &pr->regs[i], ASC_REGISTRATIONS_PREEMPTED);
            free(pr->regs[i].initiator);
            free(pr->regs[i].target);
            memset(&pr->regs[i], 0, sizeof pr->regs[i]);
        }
        pr->type = p->type;
        pr->holder = pr_all_registrants(p->type) ? -1 : p->me;
        pr->generation++;
        return scsi_good(p->c);
    }
    if (holder_key) {
        /* the holder's key: its registrations go, the caller takes the
         * reservation; the registrants left learn of a changed type */
        uint8_t old = pr->type;
        pr->reserved = false; /* so removing the holder releases nothing */
        remove_key(p, p->sark);
        bool changed = old != p->type;
        pr->reserved = true;
        pr->type = p->type;
        pr->holder = pr_all_registrants(p->type) ? -1 : p->me;
        if (changed)
            for (int i = 0; i < PR_MAX_REGS; i++)
                if (pr->regs[i].used && i != p->me)
                    pr_ua_locked(p->lu, &pr->regs[i], ASC_RESERVATIONS_RELEASED);
        pr->generation++;
        return scsi_good(p->c);
    }
    /* Only registrations go; a zero key names none of them. */
    if (p->sark == 0)
        return scsi_check_field(p->c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 8,
                                -1);
    if (remove_key(p, p->sark) == 0)
        return scsi_conflict(p->c);
    pr->generation++;
    return scsi_good(p->c);
}

/* The CDB and parameter list checks; 0 or the command is finished. */
static int parse(struct prout *p, enum scsi_exec_result *res)
{
    struct scsi_cmd *c = p->c;
    p->sa = c->cdb[1] & 0x1f;
    uint8_t scope = c->cdb[2] >> 4;
    p->type = c->cdb[2] & 0x0f;
    uint32_t plen = scsi_get32(c->cdb + 5);
    if (p->sa >= SA_REGISTER_MOVE) {
        *res = scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 4);
        return -1;
    }
    /* without SPEC_I_PT the list is exactly 24 bytes (SPC-5 6.16.3) */
    if (plen != PARAM_LEN || c->data_out_len < PARAM_LEN) {
        /* the CDB's PARAMETER LIST LENGTH */
        *res = scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR, true, 5, -1);
        return -1;
    }
    c->xfer_len = PARAM_LEN;
    bool typed = p->sa == SA_RESERVE || p->sa == SA_RELEASE || p->sa == SA_PREEMPT ||
                 p->sa == SA_PREEMPT_ABORT;
    if (typed && scope != 0) {
        *res = scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, 7);
        return -1;
    }
    if (typed && !pr_type_valid(p->type)) {
        *res = scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, 3);
        return -1;
    }
    const uint8_t *d = c->data_out;
    p->rk = scsi_get64(d);
    p->sark = scsi_get64(d + 8);
    if (d[20] & 0x08) { /* SPEC_I_PT */
        *res =
            scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 20, 3);
        return -1;
    }
    if (d[20] & 0x01) { /* APTPL: nothing persists across a restart */
        *res =
            scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 20, 0);
        return -1;
    }
    /* ALL_TG_PT means something to the register actions only */
    p->all_tg_pt = (d[20] & 0x04) && (p->sa == SA_REGISTER || p->sa == SA_REGISTER_IGNORE);
    return 0;
}

enum scsi_exec_result scsi_exec_pr_out(struct scsi_cmd *c)
{
    struct prout p = {.c = c, .lu = c->lu, .n = c->nexus};
    enum scsi_exec_result res;
    if (parse(&p, &res) < 0)
        return res;
    if (!p.n)
        return scsi_conflict(c);
    LOCK_GUARD(&p.lu->lock);
    p.pr = pr_get_locked(p.lu);
    if (!p.pr)
        return scsi_check(c, SK_ABORTED_COMMAND, ASC_INSUFFICIENT_RESOURCES);
    p.me = pr_find_locked(p.pr, p.n);
    if (p.sa == SA_REGISTER || p.sa == SA_REGISTER_IGNORE)
        return do_register(&p);
    /* everything else needs a registration with the key given */
    if (p.me < 0 || p.pr->regs[p.me].key != p.rk)
        return scsi_conflict(c);
    switch (p.sa) {
    case SA_RESERVE:
        return do_reserve(&p);
    case SA_RELEASE:
        return do_release(&p);
    case SA_CLEAR:
        return do_clear(&p);
    default:
        return do_preempt(&p);
    }
}
