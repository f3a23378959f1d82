/* sha256x2.h with the x86 SHA extensions (FIPS 180-4 SHA-256; the
 * instructions' operand layout is Intel's: the working variables split as
 * ABEF and CDGH across two registers, four rounds per pair of SHA256RNDS2,
 * the message schedule by SHA256MSG1/MSG2).
 *
 * Two messages go through the compression function side by side: each
 * instruction of lane b sits next to the same one of lane a, so while one
 * lane's round waits for its previous round the other's runs. */
#include "core/sha256x2.h"

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#include "core/block.h"

#define SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The padding of a BLOCK_SIZE message: one block of its own (0x80, zeros,
 * the length in bits as a big-endian 64-bit number). */
static const uint8_t PAD[64] = {
    [0] = 0x80,
    [56] = (uint8_t)((uint64_t)BLOCK_SIZE * 8 >> 56),
    [57] = (uint8_t)((uint64_t)BLOCK_SIZE * 8 >> 48),
    [58] = (uint8_t)((uint64_t)BLOCK_SIZE * 8 >> 40),
    [59] = (uint8_t)((uint64_t)BLOCK_SIZE * 8 >> 32),
    [60] = (uint8_t)((uint64_t)BLOCK_SIZE * 8 >> 24),
    [61] = (uint8_t)((uint64_t)BLOCK_SIZE * 8 >> 16),
    [62] = (uint8_t)((uint64_t)BLOCK_SIZE * 8 >> 8),
    [63] = (uint8_t)((uint64_t)BLOCK_SIZE * 8),
};
_Static_assert(BLOCK_SIZE % 64 == 0, "whole SHA-256 blocks, padding in a block of its own");

bool sha256x2_available(void)
{
    static int known; /* 0 unknown, 1 yes, 2 no; a race only repeats CPUID */
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (!k) {
        unsigned a, b, c, d;
        bool ok = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSSE3) && (c & bit_SSE4_1) &&
                  __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
        k = ok ? 1 : 2;
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k == 1;
}

/* Message words W[4g..4g+3] from the four before: w0 = W[4g-16..], w1 =
 * W[4g-12..], w2 = W[4g-8..], w3 = W[4g-4..]. */
SHA_TARGET static inline __m128i schedule(__m128i w0, __m128i w1, __m128i w2, __m128i w3)
{
    __m128i t = _mm_sha256msg1_epu32(w0, w1);         /* W[t-16] + s0(W[t-15]) */
    t = _mm_add_epi32(t, _mm_alignr_epi8(w3, w2, 4)); /* + W[t-7] */
    return _mm_sha256msg2_epu32(t, w3);               /* + s1(W[t-2]) */
}

/* One 64-byte block of each message into its state (s[0] ABEF, s[1]
 * CDGH of a; s[2], s[3] of b). */
SHA_TARGET static inline void compress2(__m128i s[4], const uint8_t *pa, const uint8_t *pb)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i a0 = s[0], a1 = s[1], b0 = s[2], b1 = s[3];
    __m128i wa[4], wb[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16 * i)), bswap);
        wb[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16 * i)), bswap);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
        if (g >= 4) {
            wa[g & 3] = schedule(wa[g & 3], wa[(g + 1) & 3], wa[(g + 2) & 3], wa[(g + 3) & 3]);
            wb[g & 3] = schedule(wb[g & 3], wb[(g + 1) & 3], wb[(g + 2) & 3], wb[(g + 3) & 3]);
        }
        __m128i k = _mm_loadu_si128((const __m128i *)&K[4 * g]);
        __m128i ma = _mm_add_epi32(wa[g & 3], k);
        __m128i mb = _mm_add_epi32(wb[g & 3], k);
        /* Rounds 4g, 4g+1 take the low two words; then the high two. */
        a1 = _mm_sha256rnds2_epu32(a1, a0, ma);
        b1 = _mm_sha256rnds2_epu32(b1, b0, mb);
        a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(ma, 0x0E));
        b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(mb, 0x0E));
    }
    s[0] = _mm_add_epi32(s[0], a0);
    s[1] = _mm_add_epi32(s[1], a1);
    s[2] = _mm_add_epi32(s[2], b0);
    s[3] = _mm_add_epi32(s[3], b1);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ABEF / CDGH (words high to low) back to the digest's H0..H7 order. */
SHA_TARGET static void digest(__m128i abef, __m128i cdgh, uint8_t out[32])
{
    uint32_t x[4], y[4];
    _mm_storeu_si128((__m128i *)x, abef); /* x[3] A, x[2] B, x[1] E, x[0] F */
    _mm_storeu_si128((__m128i *)y, cdgh); /* y[3] C, y[2] D, y[1] G, y[0] H */
    const uint32_t h[8] = {x[3], x[2], y[3], y[2], x[1], x[0], y[1], y[0]};
    for (int i = 0; i < 8; i++)
        put_be32(out + 4 * i, h[i]);
}

SHA_TARGET void sha256x2_4k(const void *a, const void *b, uint8_t da[32], uint8_t db[32])
{
    const __m128i abef = _mm_set_epi32((int)IV[0], (int)IV[1], (int)IV[4], (int)IV[5]);
    const __m128i cdgh = _mm_set_epi32((int)IV[2], (int)IV[3], (int)IV[6], (int)IV[7]);
    __m128i s[4] = {abef, cdgh, abef, cdgh};
    const uint8_t *pa = a, *pb = b;
    for (size_t off = 0; off < BLOCK_SIZE; off += 64)
        compress2(s, pa + off, pb + off);
    compress2(s, PAD, PAD);
    digest(s[0], s[1], da);
    digest(s[2], s[3], db);
}
