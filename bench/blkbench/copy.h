/* Copying a range of one iSCSI LU to another: by EXTENDED COPY (LID1,
 * block-to-block segments; the target moves the data), or by the client
 * reading and writing it (READ(16) then WRITE(16), one command at a time,
 * as the XCOPY commands go). */
#ifndef SHOAL_BENCH_BLKBENCH_COPY_H
#define SHOAL_BENCH_BLKBENCH_COPY_H

#include <stdint.h>
#include <stdio.h>

#include "dev.h"

struct copy_opts {
    uint64_t bytes;    /* from offset 0 of each; 0: the whole source */
    uint32_t segment;  /* XCOPY: bytes per segment descriptor */
    unsigned segments; /* XCOPY: segment descriptors per command */
    uint32_t chunk;    /* read + write: bytes per command */
};

/* Print one JSON object with the bytes, commands and seconds. 0 or -errno. */
int copy_xcopy(struct blkdev *src, struct blkdev *dst, const struct copy_opts *o, FILE *out);
int copy_rw(struct blkdev *src, struct blkdev *dst, const struct copy_opts *o, FILE *out);

#endif
