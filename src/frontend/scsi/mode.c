/* MODE SENSE and MODE SELECT (6/10) (SPC-5 6.13-6.16): the caching page
 * (SBC-4 6.5.5; WCE=0: shoal is write-through, every write is on the
 * storage when it completes), the control page (SPC-5 7.5.8) and the
 * informational exceptions control page (SPC-5 7.5.12). No field can be
 * changed and none can be saved: MODE SELECT accepts the pages as they are
 * and refuses any change. */
#include <string.h>

#include "core/engine.h"
#include "frontend/scsi/ops.h"

#define PAGE_CACHING  0x08
#define PAGE_CONTROL  0x0a
#define PAGE_IEC      0x1c
#define PAGE_ALL      0x3f
#define PC_CURRENT    0
#define PC_CHANGEABLE 1
#define PC_DEFAULT    2
#define PC_SAVED      3

static const uint8_t page_codes[] = {PAGE_CACHING, PAGE_CONTROL, PAGE_IEC};

/* The page's current (= default) values, or its changeable mask (all
 * zeros), at p: its length, or 0 for a page that does not exist. */
static uint32_t page(uint8_t code, int pc, uint8_t *p)
{
    uint32_t len;
    switch (code) {
    case PAGE_CACHING:
        len = 20;
        break;
    case PAGE_CONTROL:
    case PAGE_IEC:
        len = 12;
        break;
    default:
        return 0;
    }
    memset(p, 0, len);
    p[0] = code;
    p[1] = (uint8_t)(len - 2);
    if (pc == PC_CHANGEABLE)
        return len;
    switch (code) {
    case PAGE_CACHING:
        /* WCE=0, RCD=0: reads are cached, writes are not held back. */
        break;
    case PAGE_CONTROL:
        p[2] = 0x02;               /* GLTSD: no log parameters are saved */
        p[3] = 0x10;               /* queue algorithm modifier 1: unrestricted reordering */
        scsi_put16(p + 8, 0xffff); /* busy timeout period: unlimited */
        break;
    case PAGE_IEC:
        p[2] = 0x08; /* DEXCPT: no informational exceptions are reported */
        break;
    }
    return len;
}

struct ms_args {
    bool ten, dbd, llbaa;
    int pc;
    uint8_t code, subpage;
    uint32_t alloc;
};

static enum scsi_exec_result mode_sense(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    struct ms_args a = {
        .ten = cdb[0] == 0x5a,
        .dbd = cdb[1] & 0x08,
        .llbaa = cdb[0] == 0x5a && (cdb[1] & 0x10),
        .pc = cdb[2] >> 6,
        .code = cdb[2] & 0x3f,
        .subpage = cdb[3],
        .alloc = cdb[0] == 0x5a ? scsi_get16(cdb + 7) : cdb[4],
    };
    if (a.pc == PC_SAVED)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_SAVING_PARAMS_UNSUPPORTED, true, 2, 7);
    /* Subpages: none but 0x00; 0xff with ALL means "all subpages too". */
    if (a.subpage != 0 && !(a.code == PAGE_ALL && a.subpage == 0xff))
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 3, -1);

    uint8_t *p = c->priv.small;
    uint32_t hdr = a.ten ? 8 : 4;
    uint32_t n = hdr;
    memset(p, 0, hdr);
    /* Device-specific parameter: WP for a read-only volume, DPOFUA. */
    p[a.ten ? 3 : 2] = (uint8_t)((volume_readonly(c->lu->v) ? 0x80 : 0) | 0x10);
    if (!a.dbd) {
        uint64_t blocks = scsi_lu_blocks(c->lu);
        uint8_t *d = p + n;
        if (a.llbaa) {
            memset(d, 0, 16);
            scsi_put64(d, blocks);
            scsi_put32(d + 12, SCSI_LBA_SIZE);
            n += 16;
            p[4] = 0x01; /* LONGLBA */
        } else {
            memset(d, 0, 8);
            scsi_put32(d, blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)blocks);
            d[5] = (uint8_t)(SCSI_LBA_SIZE >> 16);
            d[6] = (uint8_t)(SCSI_LBA_SIZE >> 8);
            d[7] = (uint8_t)SCSI_LBA_SIZE;
            n += 8;
        }
        if (a.ten)
            scsi_put16(p + 6, (uint16_t)(n - hdr));
        else
            p[3] = (uint8_t)(n - hdr);
    }
    if (a.code == PAGE_ALL) {
        for (size_t i = 0; i < sizeof page_codes; i++)
            n += page(page_codes[i], a.pc, p + n);
    } else {
        uint32_t len = page(a.code, a.pc, p + n);
        if (!len)
            return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 2, 5);
        n += len;
    }
    /* MODE DATA LENGTH counts the bytes after itself. */
    if (a.ten)
        scsi_put16(p, (uint16_t)(n - 2));
    else
        p[0] = (uint8_t)(n - 1);
    return scsi_data_in(c, n, a.alloc);
}

static enum scsi_exec_result bad_param(struct scsi_cmd *c, uint32_t byte)
{
    return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, false,
                            (uint16_t)byte, -1);
}

static enum scsi_exec_result mode_select(struct scsi_cmd *c)
{
    const uint8_t *cdb = c->cdb;
    bool ten = cdb[0] == 0x55;
    uint32_t plen = ten ? scsi_get16(cdb + 7) : cdb[4];
    if (cdb[1] & 0x01) /* SP: nothing can be saved */
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 0);
    if (plen == 0)
        return scsi_good(c);
    uint32_t hdr = ten ? 8 : 4;
    if (plen < hdr)
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
    if (c->data_out_len < plen || !c->data_out) {
        c->xfer_len = plen;
        return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
    }
    c->xfer_len = plen;
    const uint8_t *p = c->data_out;
    uint32_t bdl = ten ? scsi_get16(p + 6) : p[3];
    bool longlba = ten && (p[4] & 0x01);
    uint32_t dlen = longlba ? 16 : 8;
    if (hdr + bdl > plen || bdl % dlen)
        return bad_param(c, ten ? 6 : 3);
    /* A block descriptor may restate the block length; it cannot change
     * it (the number of blocks is ignored, as SBC-4 allows). */
    for (uint32_t off = hdr; off < hdr + bdl; off += dlen) {
        uint32_t blen = longlba ? scsi_get32(p + off + 12) : scsi_get24(p + off + 5);
        if (blen != SCSI_LBA_SIZE)
            return bad_param(c, longlba ? off + 12 : off + 5);
    }
    uint8_t cur[32];
    for (uint32_t off = hdr + bdl; off < plen;) {
        if (p[off] & 0x40) /* SPF: no subpages */
            return bad_param(c, off);
        uint32_t len = page(p[off] & 0x3f, PC_CURRENT, cur);
        if (!len)
            return bad_param(c, off);
        if (off + 2 > plen || p[off + 1] != len - 2)
            return bad_param(c, off + 1);
        if (off + len > plen)
            return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
        /* Nothing is changeable: every byte after the header must be the
         * current value (PS, bit 7 of byte 0, is reserved here). */
        for (uint32_t i = 2; i < len; i++)
            if (p[off + i] != cur[i])
                return bad_param(c, off + i);
        off += len;
    }
    return scsi_good(c);
}

const struct scsi_op scsi_ops_mode[] = {
    {.opcode = 0x1a,
     .service_action = -1,
     .cdb_len = 6,
     .usage = {0x1a, 0x08, 0xff, 0xff, 0xff, 0x07},
     .name = "MODE SENSE (6)",
     .exec = mode_sense},
    {.opcode = 0x5a,
     .service_action = -1,
     .cdb_len = 10,
     .usage = {0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x07},
     .name = "MODE SENSE (10)",
     .exec = mode_sense},
    {.opcode = 0x15,
     .service_action = -1,
     .cdb_len = 6,
     .usage = {0x15, 0x11, 0, 0, 0xff, 0x07},
     .name = "MODE SELECT (6)",
     .exec = mode_select},
    {.opcode = 0x55,
     .service_action = -1,
     .cdb_len = 10,
     .usage = {0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07},
     .name = "MODE SELECT (10)",
     .exec = mode_select},
    {.name = NULL},
};
