/* SHA-256 of two 4 KiB blocks at once, for the CPUs whose SHA extensions
 * make it pay (x86-64 SHA-NI). One message's rounds form a single chain
 * of dependent instructions, so a core hashing one block waits on each
 * round's latency; two independent chains interleaved fill those waits
 * (bench/fp-speed reports both rates). Used by fingerprint.c only, which
 * falls back to one block at a time through OpenSSL where this is
 * unavailable.
 *
 * The implementation is chosen at build time by CPU family (meson), so
 * neither file carries architecture #ifdefs: sha256x2_ni.c (x86-64),
 * sha256x2_none.c (others: never available). */
#ifndef SHOAL_CORE_SHA256X2_H
#define SHOAL_CORE_SHA256X2_H

#include <stdbool.h>
#include <stdint.h>

/* Does this CPU run sha256x2_4k? (CPUID, read once; thread-safe.) */
bool sha256x2_available(void);

/* The SHA-256 digests of the BLOCK_SIZE (4096) bytes at a and at b. Only
 * when sha256x2_available(). No allocation, no shared state. */
void sha256x2_4k(const void *a, const void *b, uint8_t da[32], uint8_t db[32]);

#endif
