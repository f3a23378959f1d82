/* Reservations of a logical unit (SPC-5 5.13 persistent reservations and
 * the SPC-2 RESERVE/RELEASE kept for old initiators), shared by pr.c (the
 * conflict check, RESERVE/RELEASE, the hooks), pr_in.c and pr_out.c.
 *
 * State lives in memory only: registrations and reservations are lost when
 * shoald stops (REPORT CAPABILITIES says PTPL_C=0, and APTPL=1 is refused
 * with INVALID FIELD IN PARAMETER LIST). Keeping them through --state-dir
 * is a later step.
 *
 * Identity. A registration belongs to an I_T nexus as SPC names it: the
 * initiator port name (iSCSI: "iqn...,i,0x<ISID>") and the target port
 * (name and relative identifier), or every target port (ALL_TG_PT). It
 * outlives the session that made it. Unit attentions go to the live nexus
 * a registration was last seen on (nexus_id, 0 when none is known).
 *
 * Lock rules: everything here is guarded by lu->lock; functions ending in
 * _locked expect it held. lu->pr is set once (under the lock, with release
 * order) and freed only with the LU, so a NULL check may read it without
 * the lock. */
#ifndef SHOAL_FRONTEND_SCSI_PR_H
#define SHOAL_FRONTEND_SCSI_PR_H

#include "frontend/scsi/scsi_int.h"

/* Registrations per LU: a cluster of hypervisors registers one key per
 * host and path; 64 is far above that and keeps READ KEYS (8 + 8 x 64
 * bytes) within one data-in buffer. A 65th gets INSUFFICIENT REGISTRATION
 * RESOURCES. */
#define PR_MAX_REGS 64

/* Persistent reservation types (the TYPE field of PERSISTENT RESERVE OUT). */
#define PR_WE    0x1 /* Write Exclusive */
#define PR_EA    0x3 /* Exclusive Access */
#define PR_WE_RO 0x5 /* Write Exclusive, Registrants Only */
#define PR_EA_RO 0x6 /* Exclusive Access, Registrants Only */
#define PR_WE_AR 0x7 /* Write Exclusive, All Registrants */
#define PR_EA_AR 0x8 /* Exclusive Access, All Registrants */

/* Sense codes only reservations use. */
#define ASC_INVALID_RELEASE_OF_PR      0x2604
#define ASC_INSUFFICIENT_REG_RESOURCES 0x5504

struct pr_reg {
    bool used;
    bool all_tg_pt;
    uint16_t rel_tgt_port;
    uint64_t key;
    uint64_t nexus_id; /* the live nexus with this identity; 0: none known */
    char *initiator;   /* copies: a registration outlives its session */
    char *target;
};

struct scsi_pr {
    uint32_t generation; /* PRGENERATION */
    bool reserved;       /* a persistent reservation exists */
    uint8_t type;        /* its type (PR_*) */
    int holder;          /* its holder's slot in regs; all-registrants types: -1 */
    bool spc2;           /* an SPC-2 RESERVE(6/10) is held ... */
    uint64_t spc2_nexus; /* ... by this nexus */
    struct pr_reg regs[PR_MAX_REGS];
};

static inline bool pr_all_registrants(uint8_t type)
{
    return type == PR_WE_AR || type == PR_EA_AR;
}

static inline bool pr_registrants_type(uint8_t type)
{
    return type == PR_WE_RO || type == PR_EA_RO || pr_all_registrants(type);
}

static inline bool pr_type_valid(uint8_t type)
{
    return type == PR_WE || type == PR_EA || pr_registrants_type(type);
}

/* scsi_pr_blocks for any LU and nexus: EXTENDED COPY asks it for the
 * other volumes a copy reads or writes. Takes lu->lock. */
bool pr_blocks(struct scsi_lu *lu, const struct scsi_nexus *n, const struct scsi_op *op);
/* lu->pr, made on first use; NULL when out of memory. */
struct scsi_pr *pr_get_locked(struct scsi_lu *lu);
/* The slot of the registration n reaches the LU through, or -1. */
int pr_find_locked(struct scsi_pr *pr, const struct scsi_nexus *n);
/* True when n holds the persistent reservation (a registrant, for the
 * all-registrants types). */
bool pr_is_holder_locked(struct scsi_pr *pr, const struct scsi_nexus *n);
/* Drop slot i; a reservation it held goes with it (SPC-5 5.13.11.2.3 for
 * the unit attentions). */
void pr_unregister_locked(struct scsi_lu *lu, struct scsi_pr *pr, int i, uint64_t by_nexus);
/* Unit attention for the nexus a registration was last seen on. */
void pr_ua_locked(struct scsi_lu *lu, const struct pr_reg *r, uint16_t asc);

/* The exec functions of the table in pr.c. */
enum scsi_exec_result scsi_exec_pr_in(struct scsi_cmd *c);
enum scsi_exec_result scsi_exec_pr_out(struct scsi_cmd *c);

/* lu.c's unit attention queue (declared in scsi_int.h once the scsi
 * helper's lu.c is merged; the same prototype, so both may stand). */
void scsi_ua_post_locked(struct scsi_lu *lu, uint64_t nexus_id, uint16_t asc);

#endif
