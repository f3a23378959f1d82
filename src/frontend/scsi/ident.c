/* Stable identifiers of a logical unit, from its volume's name. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "frontend/scsi/scsi_int.h"

#define DIGEST_LEN 32

static void digest(const char *name, uint8_t out[DIGEST_LEN])
{
    /* A prefix keeps these apart from any other use of the name's hash;
     * names are at most 255 bytes. */
    char buf[300];
    int n = snprintf(buf, sizeof buf, "shoal-lu:%s", name);
    unsigned len = 0;
    if (n < 0 || (size_t)n >= sizeof buf ||
        !EVP_Digest(buf, (size_t)n, out, &len, EVP_sha256(), NULL))
        memset(out, 0, DIGEST_LEN);
}

uint64_t scsi_naa_id(const char *volume_name)
{
    uint8_t d[DIGEST_LEN];
    digest(volume_name, d);
    /* NAA 3: locally assigned, 60 bits of our choosing. */
    return (uint64_t)3 << 60 | (scsi_get64(d) & ((UINT64_C(1) << 60) - 1));
}

void scsi_serial(const char *volume_name, char out[33])
{
    uint8_t d[DIGEST_LEN];
    digest(volume_name, d);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[16 + i]);
}
