/* CRC32C (Castagnoli), the iSCSI header and data digest (RFC 7143
 * section 13.1, polynomial 0x1EDC6F41, reflected). The digest goes on the
 * wire least significant byte first. Uses the SSE 4.2 instruction when the
 * CPU has it, a table otherwise. */
#ifndef SHOAL_FRONTEND_ISCSI_CRC32C_H
#define SHOAL_FRONTEND_ISCSI_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#define CRC32C_INIT 0xffffffffu

/* Running CRC: start from CRC32C_INIT, feed buffers in order, then the
 * digest is ~crc. */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);

static inline uint32_t crc32c(const void *buf, size_t len)
{
    return ~crc32c_update(CRC32C_INIT, buf, len);
}

#endif
