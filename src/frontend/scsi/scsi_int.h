/* Inside the SCSI layer: the command table, the logical unit, and the
 * helpers every command's file uses. Transports include scsi.h only.
 *
 * One file per group of commands (inquiry.c, rw.c, mode.c, pr.c, xcopy.c,
 * caw.c ...), each exporting a table of `struct scsi_op` that dispatch.c
 * lists. dispatch.c finds the op by opcode (and service action), checks the
 * CDB length, the LU, unit attentions and reservations, then calls exec.
 *
 * exec either finishes the command at once (sets status/sense/data-in with
 * the helpers below and returns SCSI_DONE) or submits core I/O with
 * scsi_submit() and returns SCSI_PENDING; the layer then calls c->done when
 * the command finishes. A multi-step command (EXTENDED COPY: one core COPY
 * per segment) chains its I/Os through scsi_submit's `next`, which runs
 * when the core no longer uses priv.io, so it may submit again. */
#ifndef SHOAL_FRONTEND_SCSI_SCSI_INT_H
#define SHOAL_FRONTEND_SCSI_SCSI_INT_H

#include <pthread.h>

#include "frontend/scsi/scsi.h"

/* Sense keys (SPC-5 4.4.8). */
#define SK_NO_SENSE        0x0
#define SK_RECOVERED_ERROR 0x1
#define SK_NOT_READY       0x2
#define SK_MEDIUM_ERROR    0x3
#define SK_HARDWARE_ERROR  0x4
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION  0x6
#define SK_DATA_PROTECT    0x7
#define SK_COPY_ABORTED    0xa
#define SK_ABORTED_COMMAND 0xb
#define SK_MISCOMPARE      0xe

/* Additional sense code and qualifier, as one 16-bit value (ASC << 8 | ASCQ). */
#define ASC_LBA_OUT_OF_RANGE                 0x2100
#define ASC_INVALID_OPCODE                   0x2000
#define ASC_INVALID_FIELD_IN_CDB             0x2400
#define ASC_INVALID_FIELD_IN_PARAM_LIST      0x2600
#define ASC_PARAM_LIST_LENGTH_ERROR          0x1a00
#define ASC_LUN_NOT_SUPPORTED                0x2500
#define ASC_WRITE_PROTECTED                  0x2700
#define ASC_MISCOMPARE_DURING_VERIFY         0x1d00
#define ASC_POWER_ON_RESET                   0x2900
#define ASC_BUS_DEVICE_RESET                 0x2903 /* BUS DEVICE RESET FUNCTION OCCURRED */
#define ASC_RESERVATIONS_PREEMPTED           0x2a03
#define ASC_RESERVATIONS_RELEASED            0x2a04
#define ASC_REGISTRATIONS_PREEMPTED          0x2a05
#define ASC_CAPACITY_CHANGED                 0x2a09
#define ASC_UNRECOVERED_READ_ERROR           0x1100
#define ASC_WRITE_ERROR                      0x0c00
#define ASC_INTERNAL_TARGET_FAILURE          0x4400
#define ASC_INSUFFICIENT_RESOURCES           0x5503
#define ASC_TOO_MANY_SEGMENT_DESCS           0x2606
#define ASC_UNSUPPORTED_SEGMENT_DESC         0x2609
#define ASC_UNREACHABLE_COPY_TARGET          0x0804
#define ASC_COPY_TARGET_DEVICE_NOT_REACHABLE ASC_UNREACHABLE_COPY_TARGET
#define ASC_INVALID_FIELD_IN_IU              0x0e03 /* data-out shorter than the CDB needs */
#define ASC_SAVING_PARAMS_UNSUPPORTED        0x3900
#define ASC_MODE_PARAMETERS_CHANGED          0x2a01
#define ASC_MEDIUM_NOT_PRESENT               0x3a00
#define ASC_COMMANDS_CLEARED_BY_ANOTHER      0x2f00
#define ASC_NO_ADDITIONAL_SENSE              0x0000

enum scsi_exec_result { SCSI_DONE = 0, SCSI_PENDING = 1 };

/* scsi_op.flags */
#define SCSI_OP_NO_LU  (1u << 0) /* runs without an LU (REPORT LUNS, INQUIRY, REQUEST SENSE) */
#define SCSI_OP_WRITES (1u << 1) /* changes the medium: refused on a read-only LU */
#define SCSI_OP_UA_PASS                                                                            \
    (1u << 2) /* not blocked by a pending unit attention (INQUIRY, REPORT LUNS, REQUEST SENSE) */
#define SCSI_OP_PR_ALLOW (1u << 3) /* allowed through a reservation held by another nexus */

struct scsi_op {
    uint8_t opcode;
    int16_t service_action; /* -1: the opcode has none */
    uint8_t cdb_len;        /* fixed CDB length (0: variable) */
    uint32_t flags;         /* SCSI_OP_* */
    /* REPORT SUPPORTED OPERATION CODES: the CDB usage data (bits an
     * initiator may set in each byte; byte 0 is the opcode). */
    uint8_t usage[16];
    const char *name;
    enum scsi_exec_result (*exec)(struct scsi_cmd *c);
};

/* A NULL-named entry ends each table. */
extern const struct scsi_op scsi_ops_basic[]; /* dispatch/inquiry/capacity/luns/sense/tur */
extern const struct scsi_op
    scsi_ops_rw[]; /* READ/WRITE/VERIFY/SYNC/WRITE SAME/UNMAP/GET LBA STATUS */
extern const struct scsi_op scsi_ops_mode[]; /* MODE SENSE/SELECT */
extern const struct scsi_op scsi_ops_pr[];   /* PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE */
extern const struct scsi_op scsi_ops_copy[]; /* EXTENDED COPY, RECEIVE COPY RESULTS */
extern const struct scsi_op scsi_ops_caw[];  /* COMPARE AND WRITE */

/* Every op of every table, for REPORT SUPPORTED OPERATION CODES. */
const struct scsi_op *scsi_op_find(uint8_t opcode, int service_action);
void scsi_op_for_each(void (*fn)(const struct scsi_op *op, void *opaque), void *opaque);

struct scsi_pr; /* pr.c */

/* A logical unit: one per volume, shared by every session. */
struct scsi_lu {
    struct volume *v;     /* referenced while the LU lives */
    struct engine *e;     /* v's engine: EXTENDED COPY finds other volumes there */
    unsigned refs;        /* guarded by the registry lock (lu.c) */
    pthread_mutex_t lock; /* guards everything below */
    uint64_t naa_id;      /* VPD 0x83 NAA IEEE Registered identifier, from the name */
    char serial[33];      /* VPD 0x80, from the name */
    bool write_cache;     /* MODE caching page WCE (shoal is write-through: reported off) */
    struct scsi_pr *pr;   /* reservations, pr.c's (NULL: none ever made) */
    /* Unit attentions pending per nexus (lu.c): a small list. */
    struct scsi_ua *ua;
    /* Copy results kept for RECEIVE COPY RESULTS, xcopy.c's. */
    void *copy_state;
};

/* The engine of the LU's volume (EXTENDED COPY finds other volumes in it). */
struct engine *scsi_lu_engine(const struct scsi_lu *lu);

/* ---- unit attentions (ua.c) ----
 * Queued per nexus the LU has seen (a command from it, or a post). REQUEST
 * SENSE and every command but INQUIRY / REPORT LUNS report and clear the
 * oldest one. */
/* For one nexus; for every nexus but `except` (0: all). */
void scsi_ua_post(struct scsi_lu *lu, uint64_t nexus_id, uint16_t asc);
void scsi_ua_post_others(struct scsi_lu *lu, uint64_t except, uint16_t asc);
void scsi_ua_post_locked(struct scsi_lu *lu, uint64_t nexus_id, uint16_t asc);
void scsi_ua_post_others_locked(struct scsi_lu *lu, uint64_t except, uint16_t asc);
/* The oldest unit attention pending for n, taken off the queue: 0 and *asc,
 * or -ENOENT. Also makes n known to the LU. */
int scsi_ua_take(struct scsi_lu *lu, const struct scsi_nexus *n, uint16_t *asc);
/* The nexus is gone: drop its queue. */
void scsi_ua_forget(struct scsi_lu *lu, uint64_t nexus_id);
/* The LU goes (no lock: nobody else holds it). */
void scsi_ua_free_all(struct scsi_lu *lu);

/* ---- finishing a command (status, sense, data-in) ---- */

/* GOOD with no data. */
enum scsi_exec_result scsi_good(struct scsi_cmd *c);
/* CHECK CONDITION, fixed-format sense with the key and ASC/ASCQ. */
enum scsi_exec_result scsi_check(struct scsi_cmd *c, uint8_t key, uint16_t asc);
/* Same, with the sense-key specific field pointer (SKSV=1): the CDB byte
 * (C/D=1) or parameter-list byte (C/D=0) at fault and, when bit >= 0, the
 * bit (BPV=1). INVALID FIELD IN CDB / PARAMETER LIST want it. */
enum scsi_exec_result scsi_check_field(struct scsi_cmd *c, uint8_t key, uint16_t asc, bool in_cdb,
                                       uint16_t byte, int bit);
/* Same, with the INFORMATION field set (VALID=1): MISCOMPARE's offset. */
enum scsi_exec_result scsi_check_info(struct scsi_cmd *c, uint8_t key, uint16_t asc, uint64_t info);
/* A core error (negative errno) as status and sense: -EILSEQ miscompare,
 * -EROFS/-EPERM write protected, -ENOSPC/-EINVAL range, -EIO medium, ... */
enum scsi_exec_result scsi_check_errno(struct scsi_cmd *c, int err, bool writing);
/* RESERVATION CONFLICT status. */
enum scsi_exec_result scsi_conflict(struct scsi_cmd *c);
/* GOOD with data-in built in c->priv.small (len bytes): clipped to the
 * CDB's allocation length `alloc` and to c->data_in_max; xfer_len = len. */
enum scsi_exec_result scsi_data_in(struct scsi_cmd *c, uint32_t len, uint32_t alloc);

/* ---- running ---- */

/* dispatch.c: decode c's CDB, check LU, unit attentions and reservations,
 * and run the op. cmd.c's scsi_exec calls it and completes the command
 * when it returns SCSI_DONE. */
enum scsi_exec_result scsi_dispatch(struct scsi_cmd *c);

/* ---- core I/O ---- */

/* Submit c->priv.io (the caller filled op, offset, length, payload, flags,
 * src, src_offset; this sets v, done, end and opaque) and return
 * SCSI_PENDING. Then:
 *   peek(c, io)  when the core's result is ready (io->status; for a READ
 *                io->iov holds the data, valid only during the call): look,
 *                compare, set c's status if it decides it. Must not submit.
 *   next(c, io)  when the core no longer uses io (io->status still valid):
 *                returns SCSI_DONE when the command is finished (status
 *                set) or SCSI_PENDING after a new scsi_submit (the next step).
 * Either may be NULL. With both NULL the command ends with the I/O: GOOD,
 * or the errno's sense (scsi_check_errno); for a READ the core's iovecs
 * become the data-in (clipped to data_in_max) and stay valid until
 * scsi_cmd_put. */
typedef void (*scsi_peek_fn)(struct scsi_cmd *c, const struct vol_io *io);
typedef enum scsi_exec_result (*scsi_next_fn)(struct scsi_cmd *c, const struct vol_io *io);
enum scsi_exec_result scsi_submit(struct scsi_cmd *c, struct volume *v, scsi_peek_fn peek,
                                  scsi_next_fn next);

/* ---- CDB fields ---- */
static inline uint16_t scsi_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t scsi_get24(const uint8_t *p)
{
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}
static inline uint32_t scsi_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t scsi_get64(const uint8_t *p)
{
    return (uint64_t)scsi_get32(p) << 32 | scsi_get32(p + 4);
}
static inline void scsi_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void scsi_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void scsi_put64(uint8_t *p, uint64_t v)
{
    scsi_put32(p, (uint32_t)(v >> 32));
    scsi_put32(p + 4, (uint32_t)v);
}

/* The LU's logical block size: 512 bytes (what every initiator and
 * hypervisor handles; the cache works in 4 KiB blocks underneath, and
 * VPD 0xB0's optimal granularity says so). */
#define SCSI_LBA_SHIFT 9
#define SCSI_LBA_SIZE  (1u << SCSI_LBA_SHIFT)

/* ---- hooks of pr.c and xcopy.c for dispatch.c and lu.c ----
 * Called without lu->lock held; they take it. */
/* True when another nexus's reservation forbids c's op now (SPC-5 5.13.1,
 * and the SPC-2 RESERVE rules); dispatch answers scsi_conflict(c). */
bool scsi_pr_blocks(struct scsi_cmd *c, const struct scsi_op *op);
void scsi_pr_nexus_gone(struct scsi_lu *lu, const struct scsi_nexus *n);
void scsi_pr_reset(struct scsi_lu *lu);
void scsi_pr_free(struct scsi_lu *lu);   /* the LU goes */
void scsi_copy_free(struct scsi_lu *lu); /* the LU goes */

/* ---- identifiers (ident.c) ----
 * Derived from the volume name alone, so they survive restarts and are the
 * same on every node serving that volume. */
/* NAA 3 (locally assigned) identifier: VPD 0x83, and what EXTENDED COPY's
 * identification descriptors name an LU by. */
uint64_t scsi_naa_id(const char *volume_name);
/* Unit serial number (VPD 0x80): 32 hex digits, NUL-terminated. */
void scsi_serial(const char *volume_name, char out[33]);

/* Range check for [lba, +blocks) on the LU: 0, or CHECK CONDITION LBA OUT OF
 * RANGE set in c and -1. */
int scsi_check_lba(struct scsi_cmd *c, uint64_t lba, uint64_t blocks);
uint64_t scsi_lu_blocks(const struct scsi_lu *lu);

#endif
