/* evict-sim's synthetic workloads (synth.c) as simulator operations. */
#ifndef SHOAL_BENCH_SYNTH_H
#define SHOAL_BENCH_SYNTH_H

#include "sim.h"

enum synth {
    SYNTH_ZIPF,
    SYNTH_ZIPF_SCAN,
    SYNTH_LOOP,
    SYNTH_STORM,
    SYNTH_VDI,
    SYNTH_WRITE_MIX,
    SYNTH_SHIFT,
    SYNTH__COUNT
};

extern const char *const synth_names[SYNTH__COUNT];

/* Build workload w for a cache of `cache` blocks (some workloads scale
 * with it): about `accesses` block operations, the random draws seeded
 * with seed. 0 or -ENOMEM. */
int synth_build(enum synth w, unsigned cache, uint64_t accesses, uint64_t seed,
                struct sim_ops *out);

#endif
