/* COMPARE AND WRITE (SBC-4 5.3): one core VOL_IO_COMPARE_WRITE, which
 * reads, compares and writes atomically against every other change to the
 * volume from any front end. */
#include <errno.h>

#include "core/engine.h"
#include "frontend/scsi/caw.h"
#include "frontend/scsi/scsi_int.h"

/* A mismatch: MISCOMPARE with the offset of the first differing byte in
 * the INFORMATION field (the data-out's verify half starts at 0). */
static void caw_peek(struct scsi_cmd *c, const struct vol_io *io)
{
    if (io->status == -EILSEQ)
        scsi_check_info(c, SK_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY, io->miscompare);
}

static enum scsi_exec_result exec_caw(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    /* no protection information */
    if (cdb[1] & 0xe0)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 7);
    uint64_t lba = scsi_get64(cdb + 2);
    uint32_t n = cdb[13];
    if (n > SCSI_CAW_MAX_BLOCKS)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 13, -1);
    if (scsi_check_lba(c, lba, n) < 0)
        return SCSI_DONE;
    uint32_t len = n << SCSI_LBA_SHIFT;
    c->xfer_len = 2 * len;
    /* The data-out is the verify data then the write data, nothing else.
     * A mismatch means the CDB is not what the initiator meant: 256
     * blocks' worth of data with a NUMBER OF LOGICAL BLOCKS that wrapped
     * to 0, say (libiscsi sends exactly that past the VPD 0xB0 limit). */
    if (c->data_out_len != 2 * len)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 13, -1);
    /* SBC-4: zero blocks is no error and moves nothing */
    if (n == 0)
        return scsi_good(c);
    if (volume_readonly(c->lu->v))
        return scsi_check(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    struct vol_io *io = &c->priv.io;
    io->op = VOL_IO_COMPARE_WRITE;
    io->flags = (cdb[1] & 0x08) ? VOL_FUA : 0;
    io->offset = lba << SCSI_LBA_SHIFT;
    io->length = len;
    io->payload = (void *)c->data_out; /* read-only to the core */
    io->src = NULL;
    io->src_offset = 0;
    return scsi_submit(c, c->lu->v, caw_peek, NULL);
}

const struct scsi_op scsi_ops_caw[] = {
    {.opcode = 0x89,
     .service_action = -1,
     .cdb_len = 16,
     .flags = SCSI_OP_WRITES,
     /* DPO and FUA are taken (DPO means nothing to a RAM cache that
      * keeps what it reads anyway) */
     .usage = {0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0, 0},
     .name = "COMPARE AND WRITE",
     .exec = exec_caw},
    {.name = NULL},
};
