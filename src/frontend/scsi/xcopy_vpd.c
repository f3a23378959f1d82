/* VPD page 0x8F (third-party copy, SPC-4 7.8.17) as the copy manager
 * describes itself: which copy commands and service actions it supports,
 * and which descriptor types. inquiry.c lists the page and returns these
 * bytes; initiators (libiscsi's ReceiveCopyResults tests, ESXi) look here
 * before they send EXTENDED COPY or RECEIVE COPY RESULTS. */
#include <string.h>

#include "frontend/scsi/xcopy.h"

/* Append one descriptor: type, length, body padded to a multiple of 4. */
static uint32_t descriptor(uint8_t *p, uint32_t at, uint32_t cap, uint16_t type,
                           const uint8_t *body, uint32_t len)
{
    uint32_t padded = (len + 3) & ~3u;
    if (at + 4 + padded <= cap) {
        scsi_put16(p + at, type);
        scsi_put16(p + at + 2, (uint16_t)padded);
        memset(p + at + 4, 0, padded);
        memcpy(p + at + 4, body, len);
    }
    return at + 4 + padded;
}

uint32_t scsi_copy_vpd_page(uint8_t *p, uint32_t cap)
{
    /* Supported Commands: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS's
     * service actions */
    static const uint8_t cmds[] = {
        9,                               /* COMMANDS SUPPORTED LIST LENGTH */
        0x83, 1, 0x00,                   /* EXTENDED COPY: LID1 */
        0x84, 4, 0x00, 0x01, 0x03, 0x04, /* RECEIVE COPY RESULTS */
    };
    /* Supported Descriptors: block to block, identification */
    static const uint8_t descs[] = {2, 0x02, 0xe4};
    uint32_t at = 4;
    at = descriptor(p, at, cap, 0x0001, cmds, sizeof cmds);
    at = descriptor(p, at, cap, 0x0009, descs, sizeof descs);
    if (cap >= 4) {
        p[0] = 0x00; /* a block device, connected */
        p[1] = 0x8f;
        scsi_put16(p + 2, (uint16_t)(at - 4));
    }
    return at;
}
