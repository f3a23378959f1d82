/* One synchronous block device client over either protocol shoal speaks:
 * libnbd for nbd:// and nbd+unix:// URIs, libiscsi for iscsi:// URLs. The
 * benchmarks drive both through the same calls so a latency difference is
 * the servers', not two different client programs'. */
#ifndef SHOAL_BENCH_BLKBENCH_DEV_H
#define SHOAL_BENCH_BLKBENCH_DEV_H

#include <stdint.h>

struct iscsi_context;

struct blkdev;

struct blkdev_ops {
    const char *name;
    /* Exactly len bytes at off, waiting for the answer. 0 or -errno. */
    int (*pread)(struct blkdev *d, void *buf, uint32_t len, uint64_t off);
    int (*pwrite)(struct blkdev *d, const void *buf, uint32_t len, uint64_t off);
    void (*close)(struct blkdev *d);
};

struct blkdev {
    const struct blkdev_ops *ops;
    const char *url;
    uint64_t size;
    uint32_t block_size; /* the protocol's logical block (NBD: 1) */
    /* iSCSI only (NULL for NBD): the session and its LUN, for commands the
     * generic calls do not cover (EXTENDED COPY, INQUIRY). */
    struct iscsi_context *iscsi;
    int lun;
    void *priv;
};

/* Connect to url. 0 or -errno, with one line on stderr saying why. */
int blkdev_open(const char *url, struct blkdev **out);
void blkdev_close(struct blkdev *d);

static inline int blkdev_pread(struct blkdev *d, void *buf, uint32_t len, uint64_t off)
{
    return d->ops->pread(d, buf, len, off);
}

static inline int blkdev_pwrite(struct blkdev *d, const void *buf, uint32_t len, uint64_t off)
{
    return d->ops->pwrite(d, buf, len, off);
}

/* The two back ends of blkdev_open. */
int blkdev_open_nbd(const char *url, struct blkdev **out);
int blkdev_open_iscsi(const char *url, struct blkdev **out);

#endif
