/* Blocks made from a seed, for the directory tests: every byte the seed's
 * low byte, the first four the seed itself, so distinct seeds give
 * distinct contents. */
#ifndef SHOAL_TESTS_SEEDED_H
#define SHOAL_TESTS_SEEDED_H

#include <stdint.h>
#include <string.h>

#include "core/block.h"
#include "core/dir.h"
#include "core/fingerprint.h"
#include "core/store.h"

static inline void seeded_block(uint32_t seed, uint8_t b[BLOCK_SIZE])
{
    memset(b, (int)seed, BLOCK_SIZE);
    memcpy(b, &seed, sizeof seed);
}

static inline struct fpkey seeded_key(uint32_t seed)
{
    uint8_t b[BLOCK_SIZE];
    seeded_block(seed, b);
    struct fp fp;
    fp_compute(b, &fp);
    return fpkey_of(&fp);
}

/* A directory value for the seed's content: one more store reference each
 * call (the store holds each content once), or 0 if the store refused. */
static inline uint64_t seeded_ref(struct store *st, uint32_t seed)
{
    uint8_t b[BLOCK_SIZE];
    seeded_block(seed, b);
    struct fp fp;
    struct store_ref r;
    fp_compute(b, &fp);
    return store_get_or_insert(st, &fp, b, &r) == 0 ? dir_val(r) : 0;
}

#endif
