/* Caching one block's content for a volume block (core-internal, used by
 * volume.c and vol_key.c): fingerprint, store, and map it in the directory
 * unless the race rule says no. */
#ifndef SHOAL_CORE_INSTALL_H
#define SHOAL_CORE_INSTALL_H

#include <stdbool.h>
#include <stdint.h>

struct volume;
struct dir_tickets;
struct fpkey;

/* vol_install_add flags. */
#define INSTALL_TIERS                                                                              \
    (1u << 0) /* offer the content to the engine's tiers (what the                                 \
               * back end returned, so other hosts find it) */
#define INSTALL_READ                                                                               \
    (1u << 1) /* a block a client read (else a write or read-ahead):                               \
               * for the miss-ratio curves */
#define INSTALL_AHEAD                                                                              \
    (1u << 2) /* read ahead, nobody asked for it yet: the eviction                                 \
               * policy is told (evict.h, prefetch_locked) */

/* A request's blocks installed in order and fingerprinted two at a time
 * (fp_compute2: the second hash nearly free on CPUs with sha256x2.h):
 * vol_install_add holds a block until the next one comes, then installs
 * both; vol_install_flush installs a held block alone. data: BLOCK_SIZE
 * bytes just read from the back end or written by a client. heat: for a
 * write, what the block's old content had (the store's store_unref_heat),
 * else 0. Start with `struct vol_installs in = {0}` and flush before the
 * request's tickets or buffers go: a held block's data is not copied. */
struct vol_installs {
    uint64_t blk;
    const uint8_t *data;
    unsigned flags, heat;
    bool held;
};
void vol_install_add(struct volume *v, struct vol_installs *in, uint64_t blk, const uint8_t *data,
                     struct dir_tickets *tk, unsigned flags, unsigned heat);
void vol_install_flush(struct volume *v, struct vol_installs *in, struct dir_tickets *tk);

/* The same for content whose key is known and was checked against the data
 * (a block a tier returned for a client's read): no second hash. */
void vol_install_keyed(struct volume *v, uint64_t blk, const uint8_t *data, const struct fpkey *fp,
                       struct dir_tickets *tk);

#endif
