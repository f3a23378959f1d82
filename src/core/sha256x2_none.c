/* sha256x2.h on CPUs without a two-lane implementation: never available
 * (fingerprint.c hashes one block at a time). */
#include "core/sha256x2.h"

#include <stdlib.h>

bool sha256x2_available(void)
{
    return false;
}

void sha256x2_4k(const void *a, const void *b, uint8_t da[32], uint8_t db[32])
{
    (void)a, (void)b, (void)da, (void)db;
    abort(); /* callers check sha256x2_available() first */
}
