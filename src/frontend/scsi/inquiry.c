/* INQUIRY (SPC-5 6.7): the standard data and the vital product data pages
 * 0x00, 0x80, 0x83 (SPC-5 7.7) and 0xB0, 0xB1, 0xB2 (SBC-4 6.6). */
#include <string.h>

#include "core/engine.h"
#include "frontend/scsi/ops.h"

/* The copy manager and COMPARE AND WRITE publish their limits here: VPD
 * 0xB0's MAXIMUM COMPARE AND WRITE LENGTH from caw.h, VPD 0x8F from
 * xcopy.h. */
#include "frontend/scsi/caw.h"
#include "frontend/scsi/xcopy.h"

#define VENDOR   "SHOAL   "         /* T10 vendor identification: 8 bytes */
#define PRODUCT  "shoal volume    " /* 16 bytes */
#define STD_LEN  96u                /* through the eight version descriptors + reserved */
#define TYPE_SBC 0x00               /* direct access block device */

/* Version descriptors (SPC-5 table 72): SAM-5, SPC-4, SBC-3, iSCSI. */
static const uint16_t versions[] = {0x00a0, 0x0460, 0x04c0, 0x0960};

static void put_text(uint8_t *dst, const char *s, size_t width)
{
    size_t n = strlen(s);
    memset(dst, ' ', width);
    memcpy(dst, s, n < width ? n : width);
}

static uint32_t standard(struct scsi_cmd *c, uint8_t *p)
{
    if (!c->lu) {
        /* Peripheral qualifier 3, type 0x1f: no LU can be at this LUN. */
        p[0] = 0x7f;
    } else {
        p[0] = TYPE_SBC;
    }
    /* SPC-4 (6): libiscsi's conformance test accepts versions 4 to 6 only,
     * and nothing here needs what SPC-5 added. */
    p[2] = 0x06;
    p[3] = 0x10 | 0x02; /* HISUP, response data format 2 */
    p[4] = STD_LEN - 5;
    /* 3PC when EXTENDED COPY is there; no TPGS (one target port group,
     * no ALUA). */
    p[5] = scsi_op_find(0x83, 0x00) ? 0x08 : 0;
    p[7] = 0x02; /* CMDQUE */
    put_text(p + 8, VENDOR, 8);
    put_text(p + 16, PRODUCT, 16);
    put_text(p + 32, SHOAL_VERSION, 4);
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
        scsi_put16(p + 58 + 2 * i, versions[i]);
    return STD_LEN;
}

/* In ascending order (libiscsi checks it). */
static const uint8_t vpd_pages[] = {0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2};

static uint32_t vpd_supported(uint8_t *p)
{
    memcpy(p + 4, vpd_pages, sizeof vpd_pages);
    return 4 + sizeof vpd_pages;
}

static uint32_t vpd_serial(struct scsi_cmd *c, uint8_t *p)
{
    size_t n = strlen(c->lu->serial);
    memcpy(p + 4, c->lu->serial, n);
    return (uint32_t)(4 + n);
}

/* One designation descriptor at p: its length in bytes. */
static uint32_t designator(uint8_t *p, uint8_t code_set, uint8_t assoc, uint8_t type,
                           const void *id, uint32_t len, uint32_t padded)
{
    p[0] = code_set;
    p[1] = (uint8_t)(assoc << 4 | type);
    p[3] = (uint8_t)padded;
    memcpy(p + 4, id, len);
    memset(p + 4 + len, 0, padded - len);
    return 4 + padded;
}

#define CS_BINARY 1
#define CS_ASCII  2
#define CS_UTF8   3

#define ASSOC_LU   0
#define ASSOC_PORT 1

#define DT_T10       1
#define DT_NAA       3
#define DT_REL_PORT  4
#define DT_NAME_STR  8
#define NAME_STR_MAX 224 /* SCSI name strings are at most 223 bytes + NUL */

static uint32_t vpd_ident(struct scsi_cmd *c, uint8_t *p)
{
    uint32_t n = 4;
    uint8_t naa[8];
    scsi_put64(naa, c->lu->naa_id);
    n += designator(p + n, CS_BINARY, ASSOC_LU, DT_NAA, naa, 8, 8);

    /* T10 vendor ID: the vendor, then the serial (stable like the NAA). */
    uint8_t t10[8 + 32];
    memcpy(t10, VENDOR, 8);
    memcpy(t10 + 8, c->lu->serial, 32);
    n += designator(p + n, CS_ASCII, ASSOC_LU, DT_T10, t10, sizeof t10, sizeof t10);

    const struct scsi_nexus *nx = c->nexus;
    if (nx) {
        uint8_t rel[4] = {0, 0, (uint8_t)(nx->rel_tgt_port >> 8), (uint8_t)nx->rel_tgt_port};
        n += designator(p + n, CS_BINARY, ASSOC_PORT, DT_REL_PORT, rel, 4, 4);
        if (nx->target) {
            /* NUL-terminated, padded to a multiple of 4 (SPC-5 7.7.6.11). */
            size_t len = strnlen(nx->target, NAME_STR_MAX - 1);
            uint32_t padded = (uint32_t)((len + 1 + 3) & ~(size_t)3);
            n += designator(p + n, CS_UTF8, ASSOC_PORT, DT_NAME_STR, nx->target, (uint32_t)len,
                            padded);
        }
    }
    return n;
}

static uint32_t vpd_block_limits(uint8_t *p)
{
    p[4] = 0x01; /* WSNZ: WRITE SAME with 0 blocks is refused, not "to the end" */
    p[5] = scsi_op_find(0x89, -1) ? SCSI_CAW_MAX_BLOCKS : 0;
    scsi_put16(p + 6, SCSI_CACHE_BLOCKS);           /* optimal transfer length granularity */
    scsi_put32(p + 8, SCSI_MAX_XFER_BLOCKS);        /* maximum transfer length */
    scsi_put32(p + 12, SCSI_MAX_XFER_BLOCKS);       /* optimal transfer length */
    scsi_put32(p + 16, SCSI_MAX_PREFETCH_BLOCKS);   /* maximum prefetch length */
    scsi_put32(p + 20, SCSI_MAX_UNMAP_BLOCKS);      /* maximum unmap LBA count */
    scsi_put32(p + 24, SCSI_MAX_UNMAP_DESCS);       /* maximum unmap block descriptor count */
    scsi_put32(p + 28, SCSI_CACHE_BLOCKS);          /* optimal unmap granularity */
    scsi_put32(p + 32, 0x80000000u);                /* UGAVALID, alignment 0 */
    scsi_put64(p + 36, SCSI_MAX_WRITE_SAME_BLOCKS); /* maximum write same length */
    return 64;
}

static uint32_t vpd_characteristics(uint8_t *p)
{
    scsi_put16(p + 4, 0x0001); /* non-rotating medium */
    return 64;
}

static uint32_t vpd_provisioning(uint8_t *p)
{
    /* LBPU, LBPWS, LBPWS10, LBPRZ (001b): unmapped blocks read as zeros,
     * which holds on every back end because deallocation is a core ZERO
     * (holes where the storage can punch them, zeros written where not). */
    p[5] = 0x80 | 0x40 | 0x20 | 0x04;
    p[6] = 0x02; /* provisioning type: thin */
    return 8;
}

enum scsi_exec_result scsi_exec_inquiry(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    uint32_t alloc = scsi_get16(cdb + 3);
    uint8_t *p = c->priv.small;
    memset(p, 0, 512);
    if (cdb[1] & 0x02) /* CMDDT, obsolete */
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 1);
    if (!(cdb[1] & 0x01)) {
        if (cdb[2] != 0)
            return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, -1);
        return scsi_data_in(c, standard(c, p), alloc);
    }
    if (!c->lu)
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
    uint32_t len;
    switch (cdb[2]) {
    case 0x00:
        len = vpd_supported(p);
        break;
    case 0x80:
        len = vpd_serial(c, p);
        break;
    case 0x83:
        len = vpd_ident(c, p);
        break;
    case 0x8f:
        /* The copy manager writes the whole page, header included. */
        len = scsi_copy_vpd_page(p, SCSI_SMALL_DATA_MAX);
        if (len > SCSI_SMALL_DATA_MAX)
            len = SCSI_SMALL_DATA_MAX;
        return scsi_data_in(c, len, alloc);
    case 0xb0:
        len = vpd_block_limits(p);
        break;
    case 0xb1:
        len = vpd_characteristics(p);
        break;
    case 0xb2:
        len = vpd_provisioning(p);
        break;
    default:
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, -1);
    }
    p[0] = TYPE_SBC;
    p[1] = cdb[2];
    scsi_put16(p + 2, (uint16_t)(len - 4));
    return scsi_data_in(c, len, alloc);
}
