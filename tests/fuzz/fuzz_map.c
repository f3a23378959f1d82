/* libFuzzer target for the cluster map's chunk values
 * (src/cluster/memcached_map.c: mc_map_decode, mc_map_encode): what a node
 * reads from memcached, where anyone who can reach a server may write.
 *
 * Input: a first byte choosing the case, then bytes.
 *   0: the bytes are a value as memcached returns it, decoded under a fixed
 *      key and secret: it must be refused (a wrong length, or a MAC that
 *      does not match: -EBADMSG) unless it is exactly an encoding of its
 *      own decode.
 *   1: the bytes make a chunk (present bitmap and keys) and a tamper
 *      position: the chunk's encoding decodes to the same chunk, and the
 *      encoding with one bit flipped, or read under another key, is
 *      refused with -EBADMSG.
 * Beyond memory safety (ASan, UBSan) the harness aborts when a property
 * above fails: a forged or replayed entry must never reach the read path. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/memcached_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t secret[MC_MAP_SECRET] = {1, 2,  3,  4,  5,  6,  7,  8,
                                              9, 10, 11, 12, 13, 14, 15, 16};
static const char key[] = "m1:00112233445566778899aabbccddeeff:2a";
static const char other_key[] = "m1:00112233445566778899aabbccddeeff:2b";

static bool same_chunk(const struct mc_map_chunk *a, const struct mc_map_chunk *b)
{
    if (a->present != b->present)
        return false;
    for (unsigned i = 0; i < MC_MAP_CHUNK; i++)
        if ((a->present >> i & 1) && memcmp(a->keys[i].b, b->keys[i].b, FPKEY_SIZE) != 0)
            return false;
    return true;
}

static void raw_value(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan sees any read past the end. */
    uint8_t *v = malloc(size ? size : 1);
    if (!v)
        return;
    memcpy(v, data, size);
    struct mc_map_chunk c;
    int r = mc_map_decode(v, size, key, sizeof key - 1, secret, &c);
    if (r == 0) {
        uint8_t again[MC_MAP_VALUE_LEN];
        mc_map_encode(&c, key, sizeof key - 1, secret, again);
        /* Accepted: it was a genuine encoding (absent keys are zeros). */
        if (size != MC_MAP_VALUE_LEN || memcmp(again, v, size) != 0)
            abort();
    } else if (r != -EINVAL && r != -EBADMSG && r != -ENOMEM) {
        abort();
    } else if (r == -EINVAL && size == MC_MAP_VALUE_LEN) {
        abort(); /* the right length is judged by its MAC */
    }
    free(v);
}

static void round_trip(const uint8_t *data, size_t size)
{
    struct mc_map_chunk c;
    memset(&c, 0, sizeof c);
    size_t n = size < 8 ? size : 8;
    for (size_t i = 0; i < n; i++)
        c.present |= (uint64_t)data[i] << (8 * i);
    data += n;
    size -= n;
    for (unsigned i = 0; i < MC_MAP_CHUNK && size; i++) {
        size_t k = size < FPKEY_SIZE ? size : FPKEY_SIZE;
        memcpy(c.keys[i].b, data, k);
        data += k;
        size -= k;
    }
    uint8_t v[MC_MAP_VALUE_LEN];
    mc_map_encode(&c, key, sizeof key - 1, secret, v);
    struct mc_map_chunk d;
    if (mc_map_decode(v, sizeof v, key, sizeof key - 1, secret, &d) != 0 || !same_chunk(&c, &d))
        abort();
    /* Replayed under another chunk's key: refused. */
    if (mc_map_decode(v, sizeof v, other_key, sizeof other_key - 1, secret, &d) != -EBADMSG)
        abort();
    /* One bit flipped anywhere (a position drawn from the chunk): refused. */
    size_t pos = (c.present ^ (c.present >> 17)) % (sizeof v * 8);
    v[pos / 8] ^= (uint8_t)(1u << (pos % 8));
    if (mc_map_decode(v, sizeof v, key, sizeof key - 1, secret, &d) != -EBADMSG)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        round_trip(data + 1, size - 1);
    else
        raw_value(data + 1, size - 1);
    return 0;
}
