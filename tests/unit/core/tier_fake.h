/* A test-only tier: an in-process map from key to block, answered from its
 * own thread after an injected delay, with injected errors, corruption and
 * hangs (the tier-side counterpart of the fault back end). */
#ifndef SHOAL_TESTS_TIER_FAKE_H
#define SHOAL_TESTS_TIER_FAKE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tier.h"

enum tier_fake_mode {
    TIER_FAKE_OK,
    TIER_FAKE_FAIL,    /* every lookup ends with -EIO */
    TIER_FAKE_CORRUPT, /* delivered blocks have one byte flipped */
    TIER_FAKE_HANG,    /* lookups never end (until cancelled) */
};

struct tier_fake_ctl {
    enum tier_fake_mode mode; /* set atomically */
    uint32_t delay_ms;        /* before a lookup is answered */
    unsigned puts, lookups;   /* atomic */
    /* Set before tier_fake_new. put_queue 0: a put lands at once; else up
     * to put_queue puts wait for the next flush and more are dropped
     * (put_drops), like a sender that has fallen behind. with_map: the
     * tier's block -> key map is ready (map_put, map_lookup). */
    unsigned put_queue;
    bool with_map;
    unsigned put_drops;   /* under the tier's lock: read after a flush */
    unsigned map_fails;   /* atomic: the next map lookups fail (-ETIMEDOUT) */
    unsigned map_lookups; /* atomic */
};

/* A new tier (the engine takes ownership). ctl stays owned by the test and
 * must outlive the tier. */
struct tier *tier_fake_new(struct tier_fake_ctl *ctl, uint32_t timeout_ms);

/* Has a put of this key landed (queued ones have not)? */
bool tier_fake_holds(struct tier *t, const struct fpkey *key);

#endif
