/* Content fingerprints: SHA-256 of a 4 KiB cache block (OpenSSL libcrypto,
 * which uses the SHA-NI / AVX2 code paths when the CPU has them).
 *
 * The content store indexes blocks by the first 128 bits and confirms a
 * match by comparing the bytes (store.h), so dedup never depends on the
 * hash being collision-free; the full 256 bits are what a cluster peer
 * would be asked for.
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

/* Hash one BLOCK_SIZE block. Thread-safe, no allocation after the first call
 * on each thread (a per-thread digest context is reused). Returns 0 or -EIO. */
int fp_compute(const void *block, struct fp *out);

/* Hash an arbitrary buffer (used by tests and the cluster tier's verify). */
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

/* Lower-case hex into out (2*FP_SIZE+1 bytes). */
void fp_to_hex(const struct fp *f, char out[2 * FP_SIZE + 1]);

/* Release this thread's digest context now. Optional: a thread's context is
 * freed automatically when the thread exits; the main thread calls this
 * before exit to keep leak checkers quiet. */
void fp_thread_cleanup(void);

#endif
