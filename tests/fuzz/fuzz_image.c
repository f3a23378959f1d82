/* libFuzzer target for the file back end's image container probe
 * (src/backend/file/probe.c), which reads the first block and the last
 * bytes of every file a volume opens with format=auto.
 *
 * Input: the first block of a file (any length, as a short read would
 * give); its last 8 bytes are also used as the VHD footer cookie when the
 * input has at least 8 bytes. Beyond memory safety (ASan, UBSan), the
 * harness aborts when the probe breaks what file.c relies on: the answer
 * is NULL or one of the formats named in probe.h; it depends only on the
 * bytes (a shorter prefix never names a format that the full header's
 * signature contradicts: the same call on a copy gives the same answer);
 * and a header that starts with a signature is named. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/file/probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const known[] = {"qcow2", "qcow", "qed", "vmdk", "vhdx", "vhd", "luks", "vdi"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan sees any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    const char *f = image_probe_start(buf, size);
    if (f) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(f, known[i]) != 0)
            i++;
        if (i == sizeof known / sizeof known[0])
            abort(); /* a name file.c would print but probe.h does not list */
    }
    if (image_probe_start(buf, size) != f)
        abort(); /* not a function of the bytes */
    if (size >= 4 && memcmp(buf, "QFI\xfb", 4) == 0 && (!f || strncmp(f, "qcow", 4) != 0))
        abort(); /* a qcow signature that is not reported as one */
    if (size >= 8 && memcmp(buf, "vhdxfile", 8) == 0 && (!f || strcmp(f, "vhdx") != 0))
        abort();
    if (size >= 8) {
        bool vhd = image_probe_vhd_footer(buf + size - 8);
        if (vhd != (memcmp(buf + size - 8, "conectix", 8) == 0))
            abort();
    }
    free(buf);
    return 0;
}
