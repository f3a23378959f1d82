/* SHA-256 fingerprints through OpenSSL's SHA256_Init/Update/Final: the
 * same assembly (SHA-NI where the CPU has it) as the EVP interface, on a
 * context on the stack. The EVP interface of OpenSSL 3.0 frees and
 * allocates its provider context at every EVP_DigestInit (the _ex and _ex2
 * forms alike), and its one-shot SHA256() goes through EVP too: one malloc
 * per block hashed (every miss, write and tier check;
 * tests/unit/core/test_fingerprint.c counts them). These calls are
 * deprecated in 3.0 in favour of EVP but still in its API, hence the
 * define.
 *
 * Pairs of blocks (fp_compute2) go through sha256x2.h where the CPU has
 * it: OpenSSL hashes one message at a time. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "core/fingerprint.h"
#include "core/block.h"
#include "core/sha256x2.h"

#include <errno.h>
#include <openssl/sha.h>

_Static_assert(SHA256_DIGEST_LENGTH == FP_SIZE, "a fingerprint is a SHA-256");

int fp_compute_len(const void *buf, size_t len, struct fp *out)
{
    SHA256_CTX c;
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, buf, len) != 1 || SHA256_Final(out->b, &c) != 1)
        return -EIO;
    return 0;
}

int fp_compute(const void *block, struct fp *out)
{
    return fp_compute_len(block, BLOCK_SIZE, out);
}

int fp_compute2(const void *a, const void *b, struct fp *fa, struct fp *fb)
{
    if (sha256x2_available()) {
        sha256x2_4k(a, b, fa->b, fb->b);
        return 0;
    }
    int r = fp_compute(a, fa);
    return r < 0 ? r : fp_compute(b, fb);
}

static bool key_is(const struct fpkey *k, const struct fp *f)
{
    struct fpkey got = fpkey_of(f);
    return fpkey_equal(&got, k);
}

void fpkey_verify2(const struct fpkey *ka, const void *a, const struct fpkey *kb, const void *b,
                   bool *oka, bool *okb)
{
    struct fp fa, fb;
    bool ok = fp_compute2(a, b, &fa, &fb) == 0;
    *oka = ok && key_is(ka, &fa);
    *okb = ok && key_is(kb, &fb);
}

bool fpkey_verify(const struct fpkey *k, const void *block)
{
    struct fp f;
    return fp_compute(block, &f) == 0 && key_is(k, &f);
}

void fp_to_hex(const struct fp *f, char out[2 * FP_SIZE + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < FP_SIZE; i++) {
        out[2 * i] = hex[f->b[i] >> 4];
        out[2 * i + 1] = hex[f->b[i] & 15];
    }
    out[2 * FP_SIZE] = '\0';
}
