/* SCSI target emulation (SPC-5, SBC-4) over shoal volumes, independent of
 * the transport that carries it. A transport (iSCSI today; vhost-scsi or
 * FC could follow) parses its PDUs, gathers a command's data-out, and hands
 * the command here; this layer decodes the CDB, submits the volume I/O
 * through the core's request path (core/submit.h) and fills in the status,
 * sense data and data-in. It never touches sockets; the transport never
 * looks inside a CDB beyond its length.
 *
 * Logical units. One LU per volume, shared by every session that reaches
 * that volume (through any target or LUN): what SCSI says is per logical
 * unit (reservations, COMPARE AND WRITE atomicity, unit attentions, mode
 * pages) lives in it, so two initiators see one device. scsi_lu_get()
 * returns the volume's LU, made on first use; identifiers (VPD 0x80, 0x83)
 * are derived from the volume name, so they are stable across restarts.
 *
 * A command's life, as for vol_io (core/submit.h):
 *
 *   scsi_exec(c)        the transport: c is filled (cdb, lu, nexus, data-out
 *                       complete, done/end callbacks).
 *   c->done(c)          this layer: status, sense and data-in are ready.
 *                       Called exactly once, from any thread (the submitting
 *                       one for RAM hits and for commands answered without
 *                       I/O; a core worker otherwise).
 *   scsi_cmd_put(c)     the transport: the response is sent (or never will
 *                       be); data-in may be released. Exactly once, any
 *                       thread, also from within done.
 *   c->end(c)           this layer: it no longer uses c or its data-out;
 *                       the transport may free or reuse both. Exactly once,
 *                       after done returned and scsi_cmd_put was called.
 *
 * Lock rules: a scsi_cmd belongs to one command; the transport does not
 * touch it between scsi_exec and done. LU state is guarded by the LU's own
 * lock (scsi_int.h); no callback is called with it held.
 *
 * Task management. The core cannot cancel a request in flight, so aborting
 * a task is the transport's business: it waits for done and sends no
 * response. This layer provides the LU-side effects (scsi_lu_reset). */
#ifndef SHOAL_FRONTEND_SCSI_SCSI_H
#define SHOAL_FRONTEND_SCSI_SCSI_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/submit.h"

struct engine;
struct volume;
struct scsi_lu;
struct scsi_cmd;

/* SAM-5 status codes. */
#define SCSI_STATUS_GOOD                 0x00
#define SCSI_STATUS_CHECK_CONDITION      0x02
#define SCSI_STATUS_CONDITION_MET        0x04
#define SCSI_STATUS_BUSY                 0x08
#define SCSI_STATUS_RESERVATION_CONFLICT 0x18
#define SCSI_STATUS_TASK_SET_FULL        0x28
#define SCSI_STATUS_TASK_ABORTED         0x40

/* Fixed-format sense data with room for the sense-key specific bytes and
 * the information field (SPC-5 4.4.3). */
#define SCSI_SENSE_MAX 18
/* Longest CDB accepted (a 32-byte variable-length CDB; iSCSI carries the
 * bytes past 16 in an extended-CDB AHS). */
#define SCSI_CDB_MAX 32
/* Data-in built by this layer itself (INQUIRY, MODE SENSE, REPORT LUNS,
 * RECEIVE COPY RESULTS, PERSISTENT RESERVE IN ...) is at most this long;
 * READ data comes from the core. */
#define SCSI_SMALL_DATA_MAX 4096

/* The I_T nexus: who sends a command (SPC-5 reservations and unit
 * attentions are kept per nexus). The transport owns the strings; they
 * live as long as the nexus. */
struct scsi_nexus {
    uint64_t id;           /* unique while the nexus lives (iSCSI: per session) */
    const char *initiator; /* initiator port name: "iqn...,i,0x<ISID>" */
    const char *target;    /* target port name: "iqn...,t,0x<TPGT>" */
    uint16_t rel_tgt_port; /* relative target port identifier (>= 1) */
    /* REPORT LUNS: the LUN numbers (0..16383) this nexus reaches, at most
     * max of them into luns, in order; returns how many there are. NULL:
     * LUN 0 only (one target per volume). */
    unsigned (*list_luns)(const struct scsi_nexus *n, uint64_t *luns, unsigned max);
};

typedef void (*scsi_cmd_fn)(struct scsi_cmd *c);

struct scsi_cmd {
    /* Set by the transport before scsi_exec. */
    struct scsi_lu *lu; /* NULL: the LUN addresses no LU (this layer answers
                         * INQUIRY with "not present", REPORT LUNS, REQUEST
                         * SENSE, and LOGICAL UNIT NOT SUPPORTED otherwise) */
    const struct scsi_nexus *nexus;
    uint64_t lun;
    uint8_t cdb[SCSI_CDB_MAX];
    uint8_t cdb_len;
    bool write_dir, read_dir; /* what the transport's header says (iSCSI W/R) */
    /* Data-out, all of it, gathered by the transport before scsi_exec (the
     * expected transfer length the initiator announced, or less if it sent
     * less). The transport's memory, untouched until end. */
    const void *data_out;
    uint32_t data_out_len;
    /* The initiator's expected data-in length (iSCSI EDTL for reads): data
     * beyond it is not sent and counts as residual overflow. */
    uint32_t data_in_max;
    scsi_cmd_fn done, end;
    void *opaque; /* the transport's */

    /* The result, valid from done until scsi_cmd_put. */
    uint8_t status;                /* SCSI_STATUS_* */
    uint8_t sense_len;             /* 0 unless CHECK CONDITION */
    uint8_t sense[SCSI_SENSE_MAX]; /* fixed format, response code 0x70 */
    /* Data-in, in order, at most data_in_max bytes (the layer clips). */
    const struct iovec *iov;
    unsigned niov;
    uint32_t data_in_len;
    /* Bytes the CDB asked to move: reads, the data-in it wanted before
     * clipping to data_in_max; writes, the data-out it needed. The
     * transport sets residuals from it (RFC 7143 11.4.5.1). */
    uint32_t xfer_len;

    /* This layer's; transports do not touch these. */
    struct {
        struct vol_io io;  /* the core request (READ, WRITE, ...) */
        unsigned refs;     /* atomic: done's side and put's side */
        void *peek, *next; /* scsi_submit's callbacks (scsi_int.h) */
        bool held;         /* data-in points into io: put it at scsi_cmd_put */
        bool decided;      /* status set (by an op or peek) */
        unsigned step;     /* multi-step commands (EXTENDED COPY) */
        uint64_t cursor;   /* progress of a multi-step command */
        struct iovec one;  /* data-in from small[] */
        uint8_t small[SCSI_SMALL_DATA_MAX] __attribute__((aligned(8)));
    } priv;
};

/* Run c; see above. Never fails by itself: every error is a status. */
void scsi_exec(struct scsi_cmd *c);
void scsi_cmd_put(struct scsi_cmd *c);

/* The LU of a volume (made on first use), referenced; drop with
 * scsi_lu_put. NULL only when out of memory. */
struct scsi_lu *scsi_lu_get(struct engine *e, struct volume *v);
void scsi_lu_put(struct scsi_lu *lu);
struct volume *scsi_lu_volume(const struct scsi_lu *lu);

/* A nexus starts or ends (session login and logout): reservations held
 * through a vanished nexus are released as SPC-5 says for a lost I_T nexus
 * (a SPC-2 RESERVE is; persistent ones stay), and its pending unit
 * attentions are dropped. */
void scsi_lu_nexus_gone(struct scsi_lu *lu, const struct scsi_nexus *n);

/* LOGICAL UNIT RESET / TARGET WARM RESET, after the transport has finished
 * or dropped the LU's tasks: release SPC-2 reservations and set a unit
 * attention (power on, reset, or bus device reset occurred) for every
 * nexus the LU knows, `by` (the nexus that asked; may be NULL) included, as
 * SAM-5 says for a logical unit reset. */
void scsi_lu_reset(struct scsi_lu *lu, const struct scsi_nexus *by);

/* CLEAR TASK SET from another nexus aborted tasks of n (one task set for
 * all initiators): a unit attention COMMANDS CLEARED BY ANOTHER INITIATOR
 * for n (SAM-5 7.4). */
void scsi_lu_tasks_cleared(struct scsi_lu *lu, const struct scsi_nexus *n);

#endif
