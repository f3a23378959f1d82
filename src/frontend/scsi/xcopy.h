/* EXTENDED COPY (LID1) and RECEIVE COPY RESULTS: the limits the copy
 * manager enforces (RECEIVE COPY RESULTS OPERATING PARAMETERS reports
 * them; VPD 0x8F, the third-party copy page, should publish the same), and
 * what the rest of the layer and the transport call. */
#ifndef SHOAL_FRONTEND_SCSI_XCOPY_H
#define SHOAL_FRONTEND_SCSI_XCOPY_H

#include <stdbool.h>

#include "frontend/scsi/scsi_int.h"

/* Identification (0xE4) descriptors per command: a source and a
 * destination, with room for a few more. */
#define XCOPY_MAX_TARGETS 8
/* Block-to-block (0x02) segment descriptors per command. */
#define XCOPY_MAX_SEGMENTS 16
/* Target and segment descriptor lists together, in bytes. */
#define XCOPY_MAX_DESC_LIST 1024
/* One segment moves at most 65535 logical blocks (its NUMBER OF BLOCKS is
 * 16 bits), under 32 MiB: a command moves at most 16 x that, so it cannot
 * hold a worker for long. */
#define XCOPY_MAX_SEGMENT_BYTES (65535u << SCSI_LBA_SHIFT)
/* Copy operations with results held, per LU (also the most that may run
 * at once with a list identifier). */
#define XCOPY_MAX_RESULTS 16

/* Which volumes a nexus may name as a copy source or destination besides
 * its own LU's: the transport knows which volumes an initiator may reach
 * (its targets, CHAP, LUN maps). Without a policy only the LU's own volume
 * is reachable, so EXTENDED COPY never reads or writes a volume the
 * initiator could not address itself. Set once, before serving. */
typedef bool (*scsi_copy_access_fn)(const struct scsi_nexus *n, const struct volume *v);
void scsi_copy_set_access(scsi_copy_access_fn fn);

/* A nexus ended: its held copy results go (pr.c's scsi_pr_nexus_gone
 * calls this). Takes lu->lock. */
void scsi_copy_nexus_gone(struct scsi_lu *lu, const struct scsi_nexus *n);

/* VPD page 0x8F (third-party copy), header included, into p (at most cap
 * bytes written); returns its whole length. For inquiry.c. */
uint32_t scsi_copy_vpd_page(uint8_t *p, uint32_t cap);

/* The engine whose volumes an LU's copies may name. lu.c's (it is lu->e in
 * the scsi helper's struct scsi_lu); declared here until that lands. */
struct engine *scsi_lu_engine(const struct scsi_lu *lu);

#endif
