/* The iSCSI side of blkdev: libiscsi's synchronous READ(16)/WRITE(16),
 * reads straight into the caller's buffer (an iovec, as nbd_pread does),
 * no digests (NBD has none). */
#include <errno.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdio.h>
#include <stdlib.h>

#include "dev.h"

#define INITIATOR "iqn.2026-12.org.shoal.bench:blkbench"

static int scsi_err(struct blkdev *d, const char *what, struct scsi_task *t)
{
    if (!t)
        fprintf(stderr, "shoal-blkbench: %s: %s: %s\n", d->url, what, iscsi_get_error(d->iscsi));
    else
        fprintf(stderr, "shoal-blkbench: %s: %s: status 0x%02x, sense %s/0x%04x\n", d->url, what,
                t->status, scsi_sense_key_str(t->sense.key), t->sense.ascq);
    if (t)
        scsi_free_scsi_task(t);
    return -EIO;
}

static int check_range(struct blkdev *d, uint32_t len, uint64_t off)
{
    if (off % d->block_size || len % d->block_size) {
        fprintf(stderr, "shoal-blkbench: %s: %u bytes at %llu: not whole %u-byte blocks\n", d->url,
                len, (unsigned long long)off, d->block_size);
        return -EINVAL;
    }
    return 0;
}

static int iscsi_dev_pread(struct blkdev *d, void *buf, uint32_t len, uint64_t off)
{
    int r = check_range(d, len, off);
    if (r < 0)
        return r;
    struct scsi_iovec iov = {.iov_base = buf, .iov_len = len};
    struct scsi_task *t = iscsi_read16_iov_sync(d->iscsi, d->lun, off / d->block_size, len,
                                                (int)d->block_size, 0, 0, 0, 0, 0, &iov, 1);
    if (!t || t->status != SCSI_STATUS_GOOD)
        return scsi_err(d, "READ(16)", t);
    scsi_free_scsi_task(t);
    return 0;
}

static int iscsi_dev_pwrite(struct blkdev *d, const void *buf, uint32_t len, uint64_t off)
{
    int r = check_range(d, len, off);
    if (r < 0)
        return r;
    struct scsi_task *t =
        iscsi_write16_sync(d->iscsi, d->lun, off / d->block_size, (unsigned char *)buf, len,
                           (int)d->block_size, 0, 0, 0, 0, 0);
    if (!t || t->status != SCSI_STATUS_GOOD)
        return scsi_err(d, "WRITE(16)", t);
    scsi_free_scsi_task(t);
    return 0;
}

static void iscsi_dev_close(struct blkdev *d)
{
    if (d->iscsi) {
        if (iscsi_is_logged_in(d->iscsi))
            iscsi_logout_sync(d->iscsi);
        iscsi_destroy_context(d->iscsi);
    }
    free(d);
}

static const struct blkdev_ops iscsi_dev_ops = {
    .name = "iscsi",
    .pread = iscsi_dev_pread,
    .pwrite = iscsi_dev_pwrite,
    .close = iscsi_dev_close,
};

static int capacity(struct blkdev *d)
{
    struct scsi_task *t = iscsi_readcapacity16_sync(d->iscsi, d->lun);
    if (!t || t->status != SCSI_STATUS_GOOD)
        return scsi_err(d, "READ CAPACITY(16)", t);
    struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(t);
    if (!rc || rc->block_length == 0) {
        scsi_free_scsi_task(t);
        fprintf(stderr, "shoal-blkbench: %s: READ CAPACITY(16): no usable answer\n", d->url);
        return -EIO;
    }
    d->block_size = rc->block_length;
    d->size = (rc->returned_lba + 1) * rc->block_length;
    scsi_free_scsi_task(t);
    return 0;
}

int blkdev_open_iscsi(const char *url, struct blkdev **out)
{
    struct blkdev *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->ops = &iscsi_dev_ops;
    d->url = url;
    d->iscsi = iscsi_create_context(INITIATOR);
    if (!d->iscsi) {
        free(d);
        fprintf(stderr, "shoal-blkbench: iscsi_create_context failed\n");
        return -ENOMEM;
    }
    struct iscsi_url *u = iscsi_parse_full_url(d->iscsi, url);
    if (!u) {
        fprintf(stderr, "shoal-blkbench: %s: %s\n", url, iscsi_get_error(d->iscsi));
        iscsi_dev_close(d);
        return -EINVAL;
    }
    d->lun = u->lun;
    int r = 0;
    if (iscsi_set_targetname(d->iscsi, u->target) != 0 ||
        iscsi_set_session_type(d->iscsi, ISCSI_SESSION_NORMAL) != 0 ||
        iscsi_set_header_digest(d->iscsi, ISCSI_HEADER_DIGEST_NONE) != 0 ||
        iscsi_full_connect_sync(d->iscsi, u->portal, u->lun) != 0) {
        fprintf(stderr, "shoal-blkbench: %s: login: %s\n", url, iscsi_get_error(d->iscsi));
        r = -ECONNREFUSED;
    }
    iscsi_destroy_url(u);
    if (r == 0)
        r = capacity(d);
    if (r < 0) {
        iscsi_dev_close(d);
        return r;
    }
    *out = d;
    return 0;
}
