/* fp-speed: how fast one core fingerprints 4 KiB blocks through shoal's own
 * fp_compute (OpenSSL's SHA-256), and two at a time through fp_compute2
 * (what the miss and write paths and the tier checks use: sha256x2.h where
 * the CPU has it), next to memcpy of the same blocks and the all-zero
 * check, so bench/run can set them against `openssl speed -evp sha256
 * -bytes 4096`.
 *
 * Rates are bytes per second of this thread's CPU time, as `openssl speed`
 * reports them, so a busy machine (other jobs taking the cores) does not
 * lower them; the loop runs for the given wall-clock time.
 *
 *   fp-speed [--seconds S]     prints one JSON object (MB/s = 10^6 bytes/s)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "core/block.h"
#include "core/fingerprint.h"
#include "core/sha256x2.h"

#define WORKSET (8u << 20) /* bytes of random blocks cycled through */

static volatile uint64_t sink;

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double run(const char *what, const uint8_t *src, uint8_t *dst, double seconds)
{
    const size_t nblocks = WORKSET / BLOCK_SIZE;
    uint64_t bytes = 0, start = now_ns(), deadline = start + (uint64_t)(seconds * 1e9);
    double cpu0 = cpu_s();
    size_t i = 0;
    do {
        /* Check the clock every 256 blocks only. */
        for (int k = 0; k < 256; k++, i = (i + 1) % nblocks) {
            const uint8_t *b = src + i * BLOCK_SIZE;
            if (what[0] == 's') {
                struct fp f;
                if (fp_compute(b, &f) < 0)
                    return -1;
                sink += f.b[0];
            } else if (what[0] == 'p') {
                /* Pairs (i, i+1) at even i: every block once a pass. */
                struct fp f, g;
                if ((i & 1) == 0) {
                    if (fp_compute2(b, b + BLOCK_SIZE, &f, &g) < 0)
                        return -1;
                    sink += f.b[0] + g.b[0];
                }
            } else if (what[0] == 'm') {
                memcpy(dst + i * BLOCK_SIZE, b, BLOCK_SIZE);
                sink += dst[i * BLOCK_SIZE];
            } else {
                sink += buf_is_zero(b, BLOCK_SIZE);
            }
            bytes += BLOCK_SIZE;
        }
    } while (now_ns() < deadline);
    return (double)bytes / (cpu_s() - cpu0) / 1e6;
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else {
            fprintf(stderr, "usage: fp-speed [--seconds S]\n");
            return 2;
        }
    }
    if (!(seconds > 0))
        seconds = 1.0;
    uint8_t *src = malloc(WORKSET), *dst = malloc(WORKSET);
    if (!src || !dst)
        return 1;
    uint64_t x = 0x243f6a8885a308d3ull;
    for (size_t i = 0; i < WORKSET; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(src + i, &x, 8);
    }
    memset(dst, 1, WORKSET);
    double sha = run("sha256", src, dst, seconds);
    double pairs = run("pairs", src, dst, seconds);
    double cpy = run("memcpy", src, dst, seconds / 2);
    /* Worst case for the zero check: a block that is zero until its end. */
    memset(src, 0, WORKSET);
    for (size_t i = BLOCK_SIZE - 1; i < WORKSET; i += BLOCK_SIZE)
        src[i] = 1;
    double zero = run("zero", src, dst, seconds / 2);
    printf("{\"block_bytes\": %u, \"fingerprint_mb_s\": %.1f, \"fingerprint_pairs_mb_s\": %.1f, "
           "\"two_lane\": %s, \"memcpy_mb_s\": %.1f, \"zero_check_mb_s\": %.1f}\n",
           BLOCK_SIZE, sha, pairs, sha256x2_available() ? "true" : "false", cpy, zero);
    free(src);
    free(dst);
    return sha < 0 || pairs < 0 ? 1 : 0;
}
