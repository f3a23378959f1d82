/* The commands' exec functions that one file's table lists and another
 * file implements, and the limits several files and the VPD pages share
 * (what VPD 0xB0 promises is what the commands enforce). */
#ifndef SHOAL_FRONTEND_SCSI_OPS_H
#define SHOAL_FRONTEND_SCSI_OPS_H

#include "core/submit.h"
#include "core/volume_io.h"
#include "frontend/scsi/scsi_int.h"

/* Largest READ / WRITE / VERIFY in logical blocks: the core's largest I/O. */
#define SCSI_MAX_XFER_BLOCKS (VOL_MAX_IO >> SCSI_LBA_SHIFT)
/* PRE-FETCH: the core warms at most VOL_CACHE_MAX per request. */
#define SCSI_MAX_PREFETCH_BLOCKS (VOL_CACHE_MAX >> SCSI_LBA_SHIFT)
/* UNMAP and WRITE SAME. Deallocating costs the back end little, but one
 * whose storage cannot punch holes writes zeros: these bound a command's
 * time (libiscsi also wants explicit limits below 1 Mi). */
#define SCSI_MAX_UNMAP_BLOCKS      (1u << 20)
#define SCSI_MAX_UNMAP_DESCS       128u
#define SCSI_MAX_WRITE_SAME_BLOCKS (1u << 20)
/* The cache block in logical blocks: VPD 0xB0's optimal granularity of
 * every transfer and unmap, which is where initiators take their alignment
 * from (Linux's io_min). READ CAPACITY (16) reports one logical block per
 * physical block: shoal takes any 512-byte write whole (a partial cache
 * block is written through, never torn), and with an exponent above 0 a
 * block status request at an unaligned LBA has no answer that both starts
 * at the LBA asked (SBC-4, QEMU) and satisfies libiscsi's conformance test
 * (docs/scsi.md). */
#define SCSI_CACHE_BLOCKS 8u
#define SCSI_PHYS_EXP     0u

/* inquiry.c */
enum scsi_exec_result scsi_exec_inquiry(struct scsi_cmd *c);
/* rsoc.c */
enum scsi_exec_result scsi_exec_rsoc(struct scsi_cmd *c);
/* verify.c */
enum scsi_exec_result scsi_exec_verify(struct scsi_cmd *c);
/* write_same.c */
enum scsi_exec_result scsi_exec_write_same(struct scsi_cmd *c);
/* unmap.c */
enum scsi_exec_result scsi_exec_unmap(struct scsi_cmd *c);
enum scsi_exec_result scsi_exec_get_lba_status(struct scsi_cmd *c);

#endif
