/* Image container signatures; see probe.h. */
#include "backend/file/probe.h"

#include <string.h>

#include "common/util.h"

/* Container formats a raw export would serve as their own bytes, known by
 * what they write at offset 0 (the same signatures qemu-img probes). */
static const struct {
    const char *format;
    const char *magic;
    size_t len;
} image_magics[] = {
    {"qcow2", "QFI\xfb", 4}, /* qcow v1 too; told apart below */
    {"qed", "QED\0", 4},
    {"vmdk", "KDMV", 4},                   /* sparse extent */
    {"vmdk", "# Disk DescriptorFile", 21}, /* text descriptor */
    {"vhdx", "vhdxfile", 8},
    {"vhd", "conectix", 8}, /* dynamic VHD: a copy of the footer at 0 */
    {"luks", "LUKS\xba\xbe", 6},
};

#define VDI_SIGNATURE_OFFSET 0x40
#define VDI_SIGNATURE        0xbeda107fu

/* The format whose header starts buf (len bytes read at offset 0), or NULL. */
const char *image_probe_start(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(image_magics); i++) {
        if (len >= image_magics[i].len &&
            memcmp(buf, image_magics[i].magic, image_magics[i].len) == 0) {
            /* Big-endian version after the magic: 1 is the old qcow. */
            if (!strcmp(image_magics[i].format, "qcow2") && len >= 8 && buf[4] == 0 &&
                buf[5] == 0 && buf[6] == 0 && buf[7] == 1)
                return "qcow";
            return image_magics[i].format;
        }
    }
    /* VDI: a "<<< ..." text banner, then the signature, little-endian. */
    if (len >= VDI_SIGNATURE_OFFSET + 4 && memcmp(buf, "<<< ", 4) == 0) {
        const uint8_t *s = buf + VDI_SIGNATURE_OFFSET;
        uint32_t sig =
            (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
        if (sig == VDI_SIGNATURE)
            return "vdi";
    }
    return NULL;
}

bool image_probe_vhd_footer(const uint8_t *footer)
{
    return memcmp(footer, "conectix", 8) == 0;
}
