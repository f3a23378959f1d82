/* EXTENDED COPY parameter lists (SPC-4 6.4, LID1) built here: two
 * identification CSCD descriptors (0xE4) carrying each LU's designator
 * from VPD page 0x83, and block-to-block segment descriptors (0x02). */
#include "copy.h"

#include <errno.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HDR_LEN     16
#define CSCD_LEN    32
#define SEGMENT_LEN 28

struct designator {
    uint8_t code_set, assoc_type, len;
    uint8_t id[16];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* The LU's NAA designator (association: logical unit), which is what a
 * copy manager matches CSCD descriptors against. */
static int lu_designator(struct blkdev *d, struct designator *out)
{
    struct scsi_task *t =
        iscsi_inquiry_sync(d->iscsi, d->lun, 1, SCSI_INQUIRY_PAGECODE_DEVICE_IDENTIFICATION, 255);
    if (!t || t->status != SCSI_STATUS_GOOD) {
        fprintf(stderr, "shoal-blkbench: %s: INQUIRY VPD 0x83 failed\n", d->url);
        if (t)
            scsi_free_scsi_task(t);
        return -EIO;
    }
    struct scsi_inquiry_device_identification *id = scsi_datain_unmarshall(t);
    int r = -ENOENT;
    for (struct scsi_inquiry_device_designator *x = id ? id->designators : NULL; x; x = x->next) {
        if (x->association != SCSI_ASSOCIATION_LOGICAL_UNIT ||
            x->designator_type != SCSI_DESIGNATOR_TYPE_NAA || x->designator_length > 16)
            continue;
        out->code_set = (uint8_t)x->code_set;
        out->assoc_type = (uint8_t)x->designator_type; /* association 0: the LU */
        out->len = (uint8_t)x->designator_length;
        memcpy(out->id, x->designator, out->len);
        r = 0;
        break;
    }
    scsi_free_scsi_task(t);
    if (r < 0)
        fprintf(stderr, "shoal-blkbench: %s: no NAA designator of the LU in VPD 0x83\n", d->url);
    return r;
}

static void put_cscd(uint8_t *p, const struct designator *des, uint32_t block_size)
{
    memset(p, 0, CSCD_LEN);
    p[0] = 0xe4; /* identification descriptor; byte 1: peripheral type 0 (block) */
    p[4] = des->code_set;
    p[5] = des->assoc_type;
    p[7] = des->len;
    memcpy(p + 8, des->id, des->len);
    p[29] = (uint8_t)(block_size >> 16); /* DISK BLOCK LENGTH */
    p[30] = (uint8_t)(block_size >> 8);
    p[31] = (uint8_t)block_size;
}

static void put_segment(uint8_t *p, uint16_t blocks, uint64_t src_lba, uint64_t dst_lba)
{
    memset(p, 0, SEGMENT_LEN);
    p[0] = 0x02; /* block device to block device */
    put_be16(p + 2, SEGMENT_LEN - 4);
    put_be16(p + 4, 0); /* source: CSCD 0 */
    put_be16(p + 6, 1); /* destination: CSCD 1 */
    put_be16(p + 10, blocks);
    put_be64(p + 12, src_lba);
    put_be64(p + 20, dst_lba);
}

static int check(struct blkdev *src, struct blkdev *dst, const struct copy_opts *o, uint64_t *bytes)
{
    if (!src->iscsi || !dst->iscsi) {
        fprintf(stderr, "shoal-blkbench: copies are between iscsi:// LUs\n");
        return -EINVAL;
    }
    if (src->block_size != dst->block_size) {
        fprintf(stderr, "shoal-blkbench: block sizes differ (%u, %u)\n", src->block_size,
                dst->block_size);
        return -EINVAL;
    }
    *bytes = o->bytes ? o->bytes : src->size;
    if (*bytes > src->size || *bytes > dst->size || *bytes % src->block_size) {
        fprintf(stderr, "shoal-blkbench: %llu bytes: not whole blocks within both LUs\n",
                (unsigned long long)*bytes);
        return -EINVAL;
    }
    return 0;
}

int copy_xcopy(struct blkdev *src, struct blkdev *dst, const struct copy_opts *o, FILE *out)
{
    uint64_t bytes;
    int r = check(src, dst, o, &bytes);
    if (r < 0)
        return r;
    uint32_t bsz = src->block_size;
    uint64_t seg_blocks = o->segment / bsz;
    if (seg_blocks == 0 || seg_blocks > 0xffff || o->segments == 0) {
        fprintf(stderr, "shoal-blkbench: a segment is 1 to 65535 blocks of %u bytes\n", bsz);
        return -EINVAL;
    }
    struct designator ds, dd;
    if ((r = lu_designator(src, &ds)) < 0 || (r = lu_designator(dst, &dd)) < 0)
        return r;
    size_t cap = HDR_LEN + 2 * CSCD_LEN + (size_t)o->segments * SEGMENT_LEN;
    uint8_t *list = malloc(cap);
    if (!list)
        return -ENOMEM;
    uint64_t total = bytes / bsz, lba = 0, commands = 0;
    double t0 = now_s();
    while (lba < total && r == 0) {
        unsigned nseg = 0;
        uint8_t *p = list + HDR_LEN + 2 * CSCD_LEN;
        for (; nseg < o->segments && lba < total; nseg++, p += SEGMENT_LEN) {
            uint64_t n = total - lba < seg_blocks ? total - lba : seg_blocks;
            put_segment(p, (uint16_t)n, lba, lba);
            lba += n;
        }
        memset(list, 0, HDR_LEN);
        list[1] = 0x18; /* LIST ID USAGE 11b: no list identifier, no results held */
        put_be16(list + 2, 2 * CSCD_LEN);
        put_be32(list + 8, nseg * SEGMENT_LEN);
        put_cscd(list + HDR_LEN, &ds, bsz);
        put_cscd(list + HDR_LEN + CSCD_LEN, &dd, bsz);
        struct iscsi_data data = {.size = (size_t)(p - list), .data = list};
        struct scsi_task *t = iscsi_extended_copy_sync(src->iscsi, src->lun, &data);
        if (!t || t->status != SCSI_STATUS_GOOD) {
            if (t)
                fprintf(stderr, "shoal-blkbench: EXTENDED COPY: status 0x%02x, sense %s/0x%04x\n",
                        t->status, scsi_sense_key_str(t->sense.key), t->sense.ascq);
            else
                fprintf(stderr, "shoal-blkbench: EXTENDED COPY: %s\n", iscsi_get_error(src->iscsi));
            r = -EIO;
        }
        if (t)
            scsi_free_scsi_task(t);
        commands++;
    }
    double secs = now_s() - t0;
    free(list);
    if (r == 0)
        fprintf(out,
                "{\"mode\": \"xcopy\", \"bytes\": %llu, \"commands\": %llu, "
                "\"segment_bytes\": %llu, \"segments_per_command\": %u, \"seconds\": %.6f}\n",
                (unsigned long long)bytes, (unsigned long long)commands,
                (unsigned long long)(seg_blocks * bsz), o->segments, secs);
    return r;
}

int copy_rw(struct blkdev *src, struct blkdev *dst, const struct copy_opts *o, FILE *out)
{
    uint64_t bytes;
    int r = check(src, dst, o, &bytes);
    if (r < 0)
        return r;
    if (o->chunk == 0 || o->chunk % src->block_size) {
        fprintf(stderr, "shoal-blkbench: the chunk must be whole %u-byte blocks\n",
                src->block_size);
        return -EINVAL;
    }
    void *buf;
    if (posix_memalign(&buf, 4096, o->chunk) != 0)
        return -ENOMEM;
    uint64_t commands = 0;
    double t0 = now_s();
    for (uint64_t off = 0; off < bytes && r == 0; off += o->chunk) {
        uint32_t n = bytes - off < o->chunk ? (uint32_t)(bytes - off) : o->chunk;
        r = blkdev_pread(src, buf, n, off);
        if (r == 0)
            r = blkdev_pwrite(dst, buf, n, off);
        commands += 2;
    }
    double secs = now_s() - t0;
    free(buf);
    if (r == 0)
        fprintf(out,
                "{\"mode\": \"rwcopy\", \"bytes\": %llu, \"commands\": %llu, "
                "\"chunk_bytes\": %u, \"seconds\": %.6f}\n",
                (unsigned long long)bytes, (unsigned long long)commands, o->chunk, secs);
    return r;
}
