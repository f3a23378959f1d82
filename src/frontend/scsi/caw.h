/* COMPARE AND WRITE's limit, which VPD 0xB0 (MAXIMUM COMPARE AND WRITE
 * LENGTH) publishes and caw.c enforces. */
#ifndef SHOAL_FRONTEND_SCSI_CAW_H
#define SHOAL_FRONTEND_SCSI_CAW_H

/* Logical blocks per COMPARE AND WRITE: the most the one-byte NUMBER OF
 * LOGICAL BLOCKS field can say (255 x 512 bytes). VMware's ATS uses one
 * block; larger ones hold the volume's write gate (core/volume.h) a little
 * longer, which costs other writers at most one 127.5 KiB read. */
#define SCSI_CAW_MAX_BLOCKS 255u

#endif
