/* SHA-256 fingerprints through OpenSSL's EVP interface with one reusable
 * context per thread, so hashing a block costs no allocation. */
#include "core/fingerprint.h"
#include "core/block.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>

static EVP_MD *sha256_md;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static __thread EVP_MD_CTX *tl_ctx;
/* Frees a thread's context when the thread exits, whoever created it. */
static pthread_key_t ctx_key;

static void ctx_destroy(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void md_init(void)
{
    /* Fetch once: EVP_sha256() would look the implementation up per call. */
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    pthread_key_create(&ctx_key, ctx_destroy);
}

int fp_compute_len(const void *buf, size_t len, struct fp *out)
{
    pthread_once(&md_once, md_init);
    if (!sha256_md)
        return -EIO;
    if (!tl_ctx) {
        tl_ctx = EVP_MD_CTX_new();
        if (!tl_ctx)
            return -ENOMEM;
        pthread_setspecific(ctx_key, tl_ctx);
    }
    unsigned int n = 0;
    if (EVP_DigestInit_ex2(tl_ctx, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(tl_ctx, buf, len) != 1 || EVP_DigestFinal_ex(tl_ctx, out->b, &n) != 1 ||
        n != FP_SIZE)
        return -EIO;
    return 0;
}

int fp_compute(const void *block, struct fp *out)
{
    return fp_compute_len(block, BLOCK_SIZE, out);
}

bool fpkey_verify(const struct fpkey *k, const void *block)
{
    struct fp f;
    if (fp_compute(block, &f) < 0)
        return false;
    struct fpkey got = fpkey_of(&f);
    return fpkey_equal(&got, k);
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

void fp_thread_cleanup(void)
{
    if (!tl_ctx)
        return;
    pthread_setspecific(ctx_key, NULL);
    EVP_MD_CTX_free(tl_ctx);
    tl_ctx = NULL;
}
