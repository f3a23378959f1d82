/* Status and sense data (SPC-5 4.4: fixed format), and LBA ranges. */
#include <errno.h>
#include <string.h>

#include "core/engine.h"
#include "frontend/scsi/scsi_int.h"

enum scsi_exec_result scsi_good(struct scsi_cmd *c)
{
    c->status = SCSI_STATUS_GOOD;
    c->sense_len = 0;
    c->priv.decided = true;
    return SCSI_DONE;
}

/* A status that ends the command without data-in (the sense, if any, is
 * the caller's to fill). */
static void no_data_status(struct scsi_cmd *c, uint8_t status, uint8_t sense_len)
{
    c->status = status;
    c->sense_len = sense_len;
    c->data_in_len = 0;
    c->iov = NULL;
    c->niov = 0;
    c->priv.decided = true;
}

static uint8_t *sense_base(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
    uint8_t *s = c->sense;
    memset(s, 0, SCSI_SENSE_MAX);
    s[0] = 0x70; /* current error, fixed format */
    s[2] = key & 0x0f;
    s[7] = SCSI_SENSE_MAX - 8; /* additional sense length */
    s[12] = (uint8_t)(asc >> 8);
    s[13] = (uint8_t)asc;
    no_data_status(c, SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_MAX);
    return s;
}

enum scsi_exec_result scsi_check(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
    sense_base(c, key, asc);
    return SCSI_DONE;
}

enum scsi_exec_result scsi_check_field(struct scsi_cmd *c, uint8_t key, uint16_t asc, bool in_cdb,
                                       uint16_t byte, int bit)
{
    uint8_t *s = sense_base(c, key, asc);
    /* Sense-key specific: SKSV, C/D, BPV and the bit, then the byte. */
    s[15] = 0x80 | (in_cdb ? 0x40 : 0) | (bit >= 0 ? 0x08 | (bit & 7) : 0);
    scsi_put16(s + 16, byte);
    return SCSI_DONE;
}

enum scsi_exec_result scsi_check_info(struct scsi_cmd *c, uint8_t key, uint16_t asc, uint64_t info)
{
    uint8_t *s = sense_base(c, key, asc);
    /* Fixed format has 4 bytes of INFORMATION; larger values do not fit
     * and are left out (VALID=0), as SPC-5 allows. */
    if (info <= UINT32_MAX) {
        s[0] |= 0x80;
        scsi_put32(s + 3, (uint32_t)info);
    }
    return SCSI_DONE;
}

enum scsi_exec_result scsi_check_errno(struct scsi_cmd *c, int err, bool writing)
{
    switch (err) {
    case -EROFS:
    case -EPERM:
    case -EACCES:
        return scsi_check(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    case -ENOSPC:
    case -EOVERFLOW:
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    case -EINVAL:
    case -EOPNOTSUPP:
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
    case -ENOMEM:
        return scsi_check(c, SK_ABORTED_COMMAND, ASC_INSUFFICIENT_RESOURCES);
    case -ESHUTDOWN:
        /* the volume was removed with force: the LU is gone */
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
    default:
        return scsi_check(c, SK_MEDIUM_ERROR,
                          writing ? ASC_WRITE_ERROR : ASC_UNRECOVERED_READ_ERROR);
    }
}

enum scsi_exec_result scsi_conflict(struct scsi_cmd *c)
{
    no_data_status(c, SCSI_STATUS_RESERVATION_CONFLICT, 0);
    return SCSI_DONE;
}

enum scsi_exec_result scsi_data_in(struct scsi_cmd *c, uint32_t len, uint32_t alloc)
{
    if (len > SCSI_SMALL_DATA_MAX)
        len = SCSI_SMALL_DATA_MAX;
    uint32_t n = len < alloc ? len : alloc;
    if (n > c->data_in_max)
        n = c->data_in_max;
    c->xfer_len = len < alloc ? len : alloc;
    c->priv.one = (struct iovec){c->priv.small, n};
    c->iov = &c->priv.one;
    c->niov = n ? 1 : 0;
    c->data_in_len = n;
    c->status = SCSI_STATUS_GOOD;
    c->sense_len = 0;
    c->priv.decided = true;
    return SCSI_DONE;
}

uint64_t scsi_lu_blocks(const struct scsi_lu *lu)
{
    return volume_size(lu->v) >> SCSI_LBA_SHIFT;
}

int scsi_check_lba(struct scsi_cmd *c, uint64_t lba, uint64_t blocks)
{
    uint64_t n = scsi_lu_blocks(c->lu);
    if (lba > n || blocks > n - lba) {
        scsi_check(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return -1;
    }
    return 0;
}
