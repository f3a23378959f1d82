/* WRITE SAME (10/16) (SBC-4 5.48, 5.49). Zeros (or NDOB) become one core
 * ZERO over the range: deallocating (holes where the storage can punch
 * them) with the UNMAP bit, allocated without it. Any other pattern is
 * written in bounded chunks, one core WRITE after the other. */
#include <stdlib.h>
#include <string.h>

#include "frontend/scsi/ops.h"
#include "frontend/scsi/rw.h"

/* A pattern is written this much at a time (one buffer of repeats). */
#define CHUNK (1u << 20)

/* The state of a pattern write, kept in c->priv.small (WRITE SAME has no
 * data-in); c->priv.cursor is the next byte to write. */
struct ws_state {
    uint8_t *buf;
    uint64_t end;
    uint32_t flags;
};

static struct ws_state *state(struct scsi_cmd *c)
{
    return (struct ws_state *)(void *)c->priv.small;
}

static enum scsi_exec_result submit_chunk(struct scsi_cmd *c);

static enum scsi_exec_result chunk_done(struct scsi_cmd *c, const struct vol_io *io)
{
    struct ws_state *s = state(c);
    if (io->status < 0 || c->priv.cursor + io->length >= s->end) {
        free(s->buf);
        s->buf = NULL;
        if (io->status < 0)
            return scsi_check_errno(c, io->status, true);
        return scsi_good(c);
    }
    c->priv.cursor += io->length;
    return submit_chunk(c);
}

static enum scsi_exec_result submit_chunk(struct scsi_cmd *c)
{
    struct ws_state *s = state(c);
    uint64_t left = s->end - c->priv.cursor;
    struct vol_io *io = &c->priv.io;
    memset(io, 0, sizeof *io);
    io->op = VOL_IO_WRITE;
    io->flags = s->flags;
    io->offset = c->priv.cursor;
    io->length = left < CHUNK ? left : CHUNK;
    io->payload = s->buf;
    return scsi_submit(c, c->lu->v, NULL, chunk_done);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

enum scsi_exec_result scsi_exec_write_same(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    bool ws16 = cdb[0] == 0x93;
    uint64_t lba = ws16 ? scsi_get64(cdb + 2) : scsi_get32(cdb + 2);
    uint32_t blocks = ws16 ? scsi_get32(cdb + 10) : scsi_get16(cdb + 7);
    uint8_t len_byte = ws16 ? 10 : 7;
    bool unmap = cdb[1] & 0x08;
    bool ndob = ws16 && (cdb[1] & 0x01);

    if (cdb[1] & 0xe0) /* WRPROTECT: no protection information */
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 7);
    if (cdb[1] & 0x10) /* ANCHOR: no anchored state (ANC_SUP=0 in VPD 0xB2) */
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 4);
    /* WSNZ=1: 0 blocks is refused rather than meaning "to the end". */
    if (blocks == 0 || blocks > SCSI_MAX_WRITE_SAME_BLOCKS)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, len_byte,
                                -1);
    if (scsi_check_lba(c, lba, blocks) < 0)
        return SCSI_DONE;
    const uint8_t *data = c->data_out;
    if (!ndob) {
        if (scsi_data_out_check(c, SCSI_LBA_SIZE) < 0)
            return SCSI_DONE;
        /* More than one block of data-out is as wrong as less. */
        if (c->data_out_len != SCSI_LBA_SIZE)
            return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
    }
    uint64_t off = lba << SCSI_LBA_SHIFT, len = (uint64_t)blocks << SCSI_LBA_SHIFT;
    struct vol_io *io = &c->priv.io;
    if (ndob || all_zero(data, SCSI_LBA_SIZE)) {
        memset(io, 0, sizeof *io);
        io->op = VOL_IO_ZERO;
        io->flags = unmap ? 0 : VOL_NO_HOLE;
        io->offset = off;
        io->length = len;
        return scsi_submit(c, c->lu->v, NULL, NULL);
    }
    uint32_t chunk = len < CHUNK ? (uint32_t)len : CHUNK;
    uint8_t *buf = malloc(chunk);
    if (!buf)
        return scsi_check(c, SK_ABORTED_COMMAND, ASC_INSUFFICIENT_RESOURCES);
    for (uint32_t i = 0; i < chunk; i += SCSI_LBA_SIZE)
        memcpy(buf + i, data, SCSI_LBA_SIZE);
    struct ws_state *s = state(c);
    s->buf = buf;
    s->end = off + len;
    s->flags = 0;
    c->priv.cursor = off;
    return submit_chunk(c);
}
