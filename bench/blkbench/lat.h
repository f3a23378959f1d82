/* QD1 read latency: the same loop and the same timer for every device. */
#ifndef SHOAL_BENCH_BLKBENCH_LAT_H
#define SHOAL_BENCH_BLKBENCH_LAT_H

#include <stdint.h>
#include <stdio.h>

#include "dev.h"

struct lat_opts {
    uint32_t bs;     /* bytes per read */
    uint64_t range;  /* reads fall in [0, range); 0: the whole device */
    uint64_t ops;    /* timed reads per device */
    uint64_t warmup; /* untimed reads per device first */
    unsigned rounds; /* the timed reads in this many slices, devices interleaved */
    uint64_t seed;
};

/* Run the reads on every device and print one JSON object to out. 0 or
 * -errno (the first failed read ends the run). */
int lat_run(struct blkdev **devs, unsigned ndev, const struct lat_opts *o, FILE *out);

#endif
