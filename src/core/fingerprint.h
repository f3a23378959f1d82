/* Content fingerprints: SHA-256 of a 4 KiB cache block (OpenSSL libcrypto,
 * which uses the SHA-NI / AVX2 code paths when the CPU has them; two
 * blocks at once through sha256x2.h where the CPU allows).
 *
 * What names a content everywhere is its key: the first 160 bits of the
 * SHA-256 (struct fpkey). The content store indexes its entries by it (and
 * still confirms a dedup match by comparing the bytes), the directory
 * remembers it for blocks whose content left RAM, and other tiers are asked
 * for it and have their copies checked against it before use.
 *
 * Why 160 bits and not fewer: a guest chooses the data it writes. With a
 * key of b bits, making another volume's block read attacker-chosen data
 * needs a second preimage or, for content the attacker also controls, a
 * collision (2^(b/2) work); 160 bits keep that at 2^80. Why not 256: 12
 * more bytes for every cached and remembered block.
 *
 * The all-zero block is recognised before hashing and never stored. */
#ifndef SHOAL_CORE_FINGERPRINT_H
#define SHOAL_CORE_FINGERPRINT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define FP_SIZE 32

struct fp {
    uint8_t b[FP_SIZE];
};

/* Hash one BLOCK_SIZE block. Thread-safe, no allocation (a context on the
 * stack). Returns 0 or -EIO. */
int fp_compute(const void *block, struct fp *out);

/* Hash two BLOCK_SIZE blocks: where the CPU can (sha256x2.h) both at once,
 * about 1.6x the rate of two fp_compute calls; else one after the other.
 * Returns 0 or -EIO. */
int fp_compute2(const void *a, const void *b, struct fp *fa, struct fp *fb);

/* Hash an arbitrary buffer (used by tests and the block map). */
int fp_compute_len(const void *buf, size_t len, struct fp *out);

/* First 8 bytes as an integer: well-mixed, used for table indexing. */
static inline uint64_t fp_hash64(const struct fp *f)
{
    uint64_t h;
    memcpy(&h, f->b, sizeof h);
    return h;
}

static inline bool fp_equal(const struct fp *a, const struct fp *b)
{
    return memcmp(a->b, b->b, FP_SIZE) == 0;
}

/* The content's key: the first FPKEY_SIZE bytes of its SHA-256. */
#define FPKEY_SIZE 20

struct fpkey {
    uint8_t b[FPKEY_SIZE];
};

static inline struct fpkey fpkey_of(const struct fp *f)
{
    struct fpkey k;
    memcpy(k.b, f->b, FPKEY_SIZE);
    return k;
}

/* First 8 bytes as an integer, for table indexing. */
static inline uint64_t fpkey_hash64(const struct fpkey *k)
{
    uint64_t h;
    memcpy(&h, k->b, sizeof h);
    return h;
}

static inline bool fpkey_equal(const struct fpkey *a, const struct fpkey *b)
{
    return memcmp(a->b, b->b, FPKEY_SIZE) == 0;
}

/* Does this block's content have this key? (Verifies a copy fetched from
 * another tier: recomputes the SHA-256.) */
bool fpkey_verify(const struct fpkey *k, const void *block);

/* Two checks at once (fp_compute2): *oka for a against ka, *okb for b. */
void fpkey_verify2(const struct fpkey *ka, const void *a, const struct fpkey *kb, const void *b,
                   bool *oka, bool *okb);

/* Lower-case hex into out (2*FP_SIZE+1 bytes). */
void fp_to_hex(const struct fp *f, char out[2 * FP_SIZE + 1]);

#endif
