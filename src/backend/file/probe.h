/* Which image container a file holds, by the signatures qemu-img probes:
 * the file back end refuses containers unless format=raw (file.c). Pure
 * functions over bytes already read, so the fuzz target (fuzz_image.c)
 * reaches the same code. */
#ifndef SHOAL_BACKEND_FILE_PROBE_H
#define SHOAL_BACKEND_FILE_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A fixed VHD is raw data followed by a footer of this size. */
#define VHD_FOOTER_SIZE 512

/* The format whose header starts buf (len bytes read at offset 0: "qcow2",
 * "qcow", "qed", "vmdk", "vhdx", "vhd", "luks", "vdi"), or NULL. */
const char *image_probe_start(const uint8_t *buf, size_t len);
/* True if the 8 bytes at footer (the file's last VHD_FOOTER_SIZE bytes
 * start there) are a VHD footer's cookie. */
bool image_probe_vhd_footer(const uint8_t *footer);

#endif
