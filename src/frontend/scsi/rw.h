/* The fields READ, WRITE, WRITE AND VERIFY and VERIFY share, decoded from
 * any of their CDB sizes, and the checks they share (rw.c). */
#ifndef SHOAL_FRONTEND_SCSI_RW_H
#define SHOAL_FRONTEND_SCSI_RW_H

#include "frontend/scsi/scsi_int.h"

struct scsi_rw {
    uint64_t lba;
    uint32_t blocks;
    uint8_t protect;  /* RDPROTECT / WRPROTECT / VRPROTECT */
    uint8_t check;    /* BYTCHK (2 bits) */
    uint8_t len_byte; /* where the transfer length starts in the CDB */
    bool fua;
};

/* 0, or -1 for an opcode that is none of these. */
int scsi_rw_decode(const struct scsi_cmd *c, struct scsi_rw *rw);
/* PROTECT, the LBA range and the transfer length: 0, or -1 with c's
 * CHECK CONDITION set. */
int scsi_rw_check(struct scsi_cmd *c, const struct scsi_rw *rw);
/* The data-out covers `need` bytes (sets xfer_len): 0, or -1 with c's
 * CHECK CONDITION set. */
int scsi_data_out_check(struct scsi_cmd *c, uint32_t need);

#endif
