/* VERIFY (10/12/16) (SBC-4 5.38): BYTCHK 0 checks that the blocks can be
 * read (they can, as far as a cache in front of the storage knows: the
 * range is checked), 1 compares the data-out with the medium, 3 compares
 * one block of data-out with each block of the range. */
#include <string.h>

#include "frontend/scsi/ops.h"
#include "frontend/scsi/rw.h"

/* The first differing byte of the read data and the expected bytes
 * (`pattern`: data-out is one block, repeated), or -1. */
static int64_t first_diff(const struct vol_io *io, const uint8_t *want, bool pattern)
{
    uint64_t pos = 0;
    for (unsigned i = 0; i < io->niov; i++) {
        const uint8_t *got = io->iov[i].iov_base;
        size_t len = io->iov[i].iov_len;
        while (len) {
            size_t in_block = SCSI_LBA_SIZE - (pos & (SCSI_LBA_SIZE - 1));
            size_t n = len < in_block ? len : in_block;
            const uint8_t *w = pattern ? want + (pos & (SCSI_LBA_SIZE - 1)) : want + pos;
            if (memcmp(got, w, n) != 0) {
                for (size_t k = 0; k < n; k++)
                    if (got[k] != w[k])
                        return (int64_t)(pos + k);
            }
            got += n;
            pos += n;
            len -= n;
        }
    }
    return -1;
}

static void compare(struct scsi_cmd *c, const struct vol_io *io)
{
    if (io->status < 0)
        return; /* cmd.c turns the errno into sense data */
    bool pattern = ((c->cdb[1] >> 1) & 0x03) == 3;
    int64_t at = first_diff(io, c->data_out, pattern);
    if (at >= 0)
        scsi_check_info(c, SK_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY, (uint64_t)at);
    else
        scsi_good(c);
}

enum scsi_exec_result scsi_exec_verify(struct scsi_cmd *c)
{
    struct scsi_rw rw;
    scsi_rw_decode(c, &rw);
    if (rw.check == 2)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 2);
    if (scsi_rw_check(c, &rw) < 0)
        return SCSI_DONE;
    if (rw.check == 0 || rw.blocks == 0)
        return scsi_good(c);
    uint32_t need = rw.check == 3 ? SCSI_LBA_SIZE : rw.blocks << SCSI_LBA_SHIFT;
    if (scsi_data_out_check(c, need) < 0)
        return SCSI_DONE;
    struct vol_io *io = &c->priv.io;
    memset(io, 0, sizeof *io);
    io->op = VOL_IO_READ;
    io->offset = rw.lba << SCSI_LBA_SHIFT;
    io->length = (uint64_t)rw.blocks << SCSI_LBA_SHIFT;
    return scsi_submit(c, c->lu->v, compare, NULL);
}
