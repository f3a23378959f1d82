/* The NBD side of blkdev: libnbd's synchronous calls (nbd_pread waits for
 * its reply in libnbd's own poll loop, as libiscsi's _sync calls do). */
#include <errno.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>

#include "dev.h"

static int nbd_err(struct blkdev *d, const char *what)
{
    int e = nbd_get_errno();
    fprintf(stderr, "shoal-blkbench: %s: %s: %s\n", d->url, what, nbd_get_error());
    return e > 0 ? -e : -EIO;
}

static int nbd_dev_pread(struct blkdev *d, void *buf, uint32_t len, uint64_t off)
{
    if (nbd_pread(d->priv, buf, len, off, 0) < 0)
        return nbd_err(d, "read");
    return 0;
}

static int nbd_dev_pwrite(struct blkdev *d, const void *buf, uint32_t len, uint64_t off)
{
    if (nbd_pwrite(d->priv, buf, len, off, 0) < 0)
        return nbd_err(d, "write");
    return 0;
}

static void nbd_dev_close(struct blkdev *d)
{
    nbd_close(d->priv);
    free(d);
}

static const struct blkdev_ops nbd_dev_ops = {
    .name = "nbd",
    .pread = nbd_dev_pread,
    .pwrite = nbd_dev_pwrite,
    .close = nbd_dev_close,
};

int blkdev_open_nbd(const char *url, struct blkdev **out)
{
    struct blkdev *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->ops = &nbd_dev_ops;
    d->url = url;
    d->block_size = 1;
    struct nbd_handle *h = nbd_create();
    if (!h) {
        free(d);
        fprintf(stderr, "shoal-blkbench: nbd_create: %s\n", nbd_get_error());
        return -ENOMEM;
    }
    d->priv = h;
    int64_t size;
    if (nbd_connect_uri(h, url) < 0 || (size = nbd_get_size(h)) < 0) {
        int r = nbd_err(d, "connect");
        nbd_dev_close(d);
        return r;
    }
    d->size = (uint64_t)size;
    *out = d;
    return 0;
}
