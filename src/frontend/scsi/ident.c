/* Stable identifiers of a logical unit, from its volume's name. */
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "frontend/scsi/scsi_int.h"

static void digest(const char *name, uint8_t out[SHA256_DIGEST_LENGTH])
{
    /* A prefix keeps these apart from any other use of the name's hash. */
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, "shoal-lu:", 9);
    SHA256_Update(&ctx, name, strlen(name));
    SHA256_Final(out, &ctx);
}

uint64_t scsi_naa_id(const char *volume_name)
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    digest(volume_name, d);
    /* NAA 3: locally assigned, 60 bits of our choosing. */
    return (uint64_t)3 << 60 | (scsi_get64(d) & ((UINT64_C(1) << 60) - 1));
}

void scsi_serial(const char *volume_name, char out[33])
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    digest(volume_name, d);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[16 + i]);
}
