/* UNMAP (SBC-4 5.32) and GET LBA STATUS (SBC-4 5.21): logical block
 * provisioning. An unmapped range is a core ZERO that may deallocate: the
 * core's TRIM is advisory (the storage may keep the data, or keep partial
 * blocks at the edges), and VPD 0xB2 promises LBPRZ, so unmapped blocks
 * must read as zeros. The storage's extents tell what is deallocated. */
#include <string.h>

#include "core/volume_io.h"
#include "frontend/scsi/ops.h"
#include "frontend/scsi/rw.h"

#define HDR  8  /* parameter list / parameter data header */
#define DESC 16 /* an unmap block descriptor, an LBA status descriptor */

static const uint8_t *desc_at(const struct scsi_cmd *c, uint64_t i)
{
    return (const uint8_t *)c->data_out + HDR + i * DESC;
}

static enum scsi_exec_result unmap_step(struct scsi_cmd *c, const struct vol_io *io);

/* The next descriptor with blocks to unmap, from c->priv.cursor on. */
static enum scsi_exec_result unmap_next(struct scsi_cmd *c)
{
    unsigned n = c->priv.step;
    while (c->priv.cursor < n && scsi_get32(desc_at(c, c->priv.cursor) + 8) == 0)
        c->priv.cursor++;
    if (c->priv.cursor >= n)
        return scsi_good(c);
    const uint8_t *d = desc_at(c, c->priv.cursor++);
    struct vol_io *io = &c->priv.io;
    memset(io, 0, sizeof *io);
    io->op = VOL_IO_ZERO; /* no VOL_NO_HOLE: deallocate where possible */
    io->offset = scsi_get64(d) << SCSI_LBA_SHIFT;
    io->length = (uint64_t)scsi_get32(d + 8) << SCSI_LBA_SHIFT;
    return scsi_submit(c, c->lu->v, NULL, unmap_step);
}

static enum scsi_exec_result unmap_step(struct scsi_cmd *c, const struct vol_io *io)
{
    if (io->status < 0)
        return scsi_check_errno(c, io->status, true);
    return unmap_next(c);
}

enum scsi_exec_result scsi_exec_unmap(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    if (cdb[1] & 0x01) /* ANCHOR: ANC_SUP=0 */
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 0);
    uint32_t plen = scsi_get16(cdb + 7);
    if (plen == 0)
        return scsi_good(c);
    if (plen < HDR)
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    if (scsi_data_out_check(c, plen) < 0)
        return SCSI_DONE;
    const uint8_t *p = c->data_out;
    uint32_t data_len = scsi_get16(p), desc_len = scsi_get16(p + 2);
    /* Both lengths count bytes that must be in the list. */
    if (data_len + 2u > plen)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 0,
                                -1);
    if (desc_len + (uint32_t)HDR > plen)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 2,
                                -1);
    /* A trailing partial descriptor is ignored (SBC-4 5.32.2). */
    uint32_t n = desc_len / DESC;
    if (n > SCSI_MAX_UNMAP_DESCS)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 2,
                                -1);
    /* Every descriptor is checked before anything is unmapped. */
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *d = desc_at(c, i);
        uint32_t blocks = scsi_get32(d + 8);
        if (scsi_check_lba(c, scsi_get64(d), blocks) < 0)
            return SCSI_DONE;
        total += blocks;
        if (total > SCSI_MAX_UNMAP_BLOCKS)
            return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false,
                                    (uint16_t)(HDR + i * DESC + 8), -1);
    }
    c->priv.step = n;
    c->priv.cursor = 0;
    return unmap_next(c);
}

/* ---- GET LBA STATUS ---- */

/* How far one command looks: the status of at most this many bytes
 * (and as many descriptors as the small buffer holds). */
#define LBAS_SPAN  (1ull << 30)
#define LBAS_DESCS ((SCSI_SMALL_DATA_MAX - HDR) / DESC)

#define PROV_MAPPED      0
#define PROV_DEALLOCATED 1

/* Collect extents as LBA status descriptors in c->priv.small: step counts
 * them, cursor is the first LBA not yet described. */
static int lbas_extent(void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
    struct scsi_cmd *c = opaque;
    uint64_t end = (offset + length + SCSI_LBA_SIZE - 1) >> SCSI_LBA_SHIFT;
    uint64_t end_all = (c->priv.io.offset + c->priv.io.length) >> SCSI_LBA_SHIFT;
    if (end > end_all)
        end = end_all;
    if (end <= c->priv.cursor)
        return 0;
    /* Deallocated only when the storage says the range is a hole that
     * reads as zeros: what LBPRZ promises. */
    uint8_t prov =
        (flags & VOL_EXTENT_HOLE) && (flags & VOL_EXTENT_ZERO) ? PROV_DEALLOCATED : PROV_MAPPED;
    uint8_t *base = c->priv.small + HDR;
    unsigned n = c->priv.step;
    uint8_t *last = n ? base + (n - 1) * DESC : NULL;
    uint64_t blocks = end - c->priv.cursor;
    if (last && last[12] == prov && scsi_get32(last + 8) + blocks <= UINT32_MAX) {
        scsi_put32(last + 8, (uint32_t)(scsi_get32(last + 8) + blocks));
    } else {
        if (n == LBAS_DESCS)
            return 1;
        uint8_t *d = base + n * DESC;
        memset(d, 0, DESC);
        scsi_put64(d, c->priv.cursor);
        scsi_put32(d + 8, (uint32_t)blocks);
        d[12] = prov;
        c->priv.step = n + 1;
    }
    c->priv.cursor = end;
    return 0;
}

static void lbas_done(struct scsi_cmd *c, const struct vol_io *io)
{
    if (io->status < 0)
        return;
    uint8_t *p = c->priv.small;
    unsigned n = c->priv.step;
    if (n == 0) {
        /* The storage said nothing: all of it is data as far as we know. */
        memset(p + HDR, 0, DESC);
        scsi_put64(p + HDR, io->offset >> SCSI_LBA_SHIFT);
        scsi_put32(p + HDR + 8, (uint32_t)(io->length >> SCSI_LBA_SHIFT));
        n = 1;
    }
    memset(p, 0, HDR);
    scsi_put32(p, 4 + n * DESC); /* parameter data length: bytes after itself */
    scsi_data_in(c, HDR + n * DESC, scsi_get32(c->cdb + 10));
}

enum scsi_exec_result scsi_exec_get_lba_status(struct scsi_cmd *c)
{
    uint64_t lba = scsi_get64(c->cdb + 2);
    uint64_t n = scsi_lu_blocks(c->lu);
    if (lba >= n)
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    if (scsi_get32(c->cdb + 10) == 0)
        return scsi_good(c);
    uint64_t len = (n - lba) << SCSI_LBA_SHIFT;
    struct vol_io *io = &c->priv.io;
    memset(io, 0, sizeof *io);
    io->op = VOL_IO_EXTENTS;
    io->offset = lba << SCSI_LBA_SHIFT;
    io->length = len < LBAS_SPAN ? len : LBAS_SPAN;
    io->extent_fn = lbas_extent;
    io->extent_opaque = c;
    c->priv.step = 0;
    c->priv.cursor = lba;
    return scsi_submit(c, c->lu->v, lbas_done, NULL);
}
