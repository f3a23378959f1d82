/* Inside the copy manager: the results it holds per LU (xcopy_results.c)
 * and the parameter-list parser (xcopy_parse.c) that EXTENDED COPY
 * (xcopy.c) and the fuzz target use.
 *
 * Lock rules: struct copy_state (lu->copy_state) is guarded by lu->lock. */
#ifndef SHOAL_FRONTEND_SCSI_XCOPY_INT_H
#define SHOAL_FRONTEND_SCSI_XCOPY_INT_H

#include "frontend/scsi/xcopy.h"

/* Sense codes of the copy manager (SPC-5 6.6 and the ASC table). */
/* (scsi_int.h's ASC_TOO_MANY_SEGMENT_DESCS says 0x2606, which is TOO MANY
 * TARGET DESCRIPTORS; these are the copy manager's own.) */
#define XC_ASC_OPERATION_IN_PROGRESS 0x0016
#define XC_ASC_TOO_MANY_TARGETS      0x2606
#define XC_ASC_UNSUPPORTED_TARGET    0x2607
#define XC_ASC_TOO_MANY_SEGMENTS     0x2608
#define XC_ASC_UNSUPPORTED_SEGMENT   0x2609
#define XC_ASC_INLINE_DATA_EXCEEDED  0x260b
#define XC_ASC_NO_ADDITIONAL_SENSE   0x0000

/* LIST ID USAGE */
#define XCOPY_LIST_HOLD    0x0 /* results held, identifier unique */
#define XCOPY_LIST_DISCARD 0x2 /* no held data, identifier unique */
#define XCOPY_LIST_NONE    0x3 /* no identifier (must be 0), nothing kept */

/* COPY MANAGER STATUS */
#define XCOPY_RUNNING 0x00
#define XCOPY_GOOD    0x01
#define XCOPY_FAILED  0x02

struct copy_result {
    bool used;
    uint8_t list_id;
    uint8_t status; /* XCOPY_* */
    uint16_t segments;
    uint64_t nexus;
    uint64_t bytes;
    uint64_t age;
    uint8_t sense_len;
    uint8_t sense[SCSI_SENSE_MAX];
};

struct copy_state {
    uint64_t clock;
    struct copy_result r[XCOPY_MAX_RESULTS];
};

/* A parsed parameter list. Targets are the designators the identification
 * descriptors name (NAA only); segments are block-to-block. */
struct xcopy_target {
    bool naa; /* an 8-byte NAA designator for a logical unit */
    uint64_t id;
    uint16_t at; /* the descriptor's offset in the parameter list */
};

struct xcopy_segment {
    uint16_t src, dst; /* target descriptor indexes */
    uint32_t blocks;
    uint64_t src_lba, dst_lba;
    uint16_t at;
};

struct xcopy_list {
    uint8_t list_id, usage;
    unsigned ntargets, nsegments;
    struct xcopy_target t[XCOPY_MAX_TARGETS];
    struct xcopy_segment s[XCOPY_MAX_SEGMENTS];
};

/* Why a parameter list is refused: the sense to report, with the field
 * pointer: a byte of the parameter list, or of the CDB when in_cdb (the
 * PARAMETER LIST LENGTH, for a list too short for its own header). */
struct xcopy_error {
    uint8_t key;
    uint16_t asc;
    bool in_cdb;
    int field; /* -1: none */
    int bit;
};

/* Parse len bytes of an LID1 parameter list (len > 0). 0, or -EINVAL with
 * *err filled. Pure: no LU, no volume; the fuzz target calls it. */
int xcopy_parse(const uint8_t *p, uint32_t len, struct xcopy_list *out, struct xcopy_error *err);

/* Results (take lu->lock). begin: a slot for (nexus, list id) marked
 * running, or -EBUSY (that list identifier is running), -ENOSPC (every
 * slot is running), -ENOMEM. end: the outcome, from c's status. */
int copy_result_begin(struct scsi_lu *lu, uint64_t nexus, uint8_t list_id);
void copy_result_end(struct scsi_lu *lu, int slot, const struct scsi_cmd *c, uint16_t segments,
                     uint64_t bytes);

/* May c's nexus name v in a copy (scsi_copy_set_access)? */
bool xcopy_may_reach(const struct scsi_lu *lu, const struct scsi_nexus *n, const struct volume *v);

enum scsi_exec_result scsi_exec_xcopy(struct scsi_cmd *c);
enum scsi_exec_result scsi_exec_copy_results(struct scsi_cmd *c);

#endif
