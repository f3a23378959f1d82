/* An in-memory fake back end for the core's unit tests: can pause a
 * fetch (to interleave it with a write) and inject errors. Its trim leaves
 * 0xEE garbage, so a cache that assumed zeros after a trim would show. */
#ifndef SHOAL_TESTS_FAKE_BE_H
#define SHOAL_TESTS_FAKE_BE_H

#include <pthread.h>
#include <stdint.h>

#include "backend/backend.h"

struct fake {
    struct backend be;
    uint8_t *data;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Pause: a pread covering pause_off copies its data, then waits until
     * released, as if the reply were still on the wire. */
    int pause_armed, paused, released;
    uint64_t pause_off;
    int fail_reads, fail_writes;
    unsigned preads, pwrites;
};

/* size bytes filled with a pattern that depends on fill_seed and the block
 * number; it repeats every 256 blocks (so a volume dedups against itself),
 * and two fakes with one seed are equal. */
struct fake *fake_new(uint64_t size, uint8_t fill_seed);

/* The pause: arm it for the next pread covering off; wait until a pread
 * stalls there; let it go on. */
void fake_pause(struct fake *f, uint64_t off);
void fake_wait_paused(struct fake *f);
void fake_release(struct fake *f);

#endif
