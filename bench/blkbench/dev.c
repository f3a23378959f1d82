/* blkdev_open: the protocol by the URL's scheme. */
#include "dev.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int blkdev_open(const char *url, struct blkdev **out)
{
    *out = NULL;
    if (strncmp(url, "iscsi://", 8) == 0)
        return blkdev_open_iscsi(url, out);
    if (strncmp(url, "nbd://", 6) == 0 || strncmp(url, "nbd+unix://", 11) == 0)
        return blkdev_open_nbd(url, out);
    fprintf(stderr, "shoal-blkbench: %s: not an nbd://, nbd+unix:// or iscsi:// URL\n", url);
    return -EINVAL;
}

void blkdev_close(struct blkdev *d)
{
    if (d)
        d->ops->close(d);
}
