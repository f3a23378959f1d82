/* The EXTENDED COPY (LID1) parameter list (SPC-5 6.6.2): a 16-byte header,
 * the CSCD (target) descriptors, the segment descriptors, inline data.
 * Only what shoal can do is accepted: identification descriptors (0xE4)
 * naming a logical unit, block-to-block segments (0x02), no inline data.
 * Every refusal names the parameter-list byte at fault. */
#include <errno.h>
#include <string.h>

#include "frontend/scsi/xcopy_int.h"

#define HDR_LEN     16
#define TARGET_LEN  32 /* identification descriptor */
#define SEGMENT_LEN 28 /* block-to-block: 4 + DESCRIPTOR LENGTH 0x18 */

static int fail(struct xcopy_error *e, uint8_t key, uint16_t asc, int field, int bit)
{
    *e = (struct xcopy_error){.key = key, .asc = asc, .field = field, .bit = bit};
    return -EINVAL;
}

static int bad_field(struct xcopy_error *e, int field, int bit)
{
    return fail(e, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM_LIST, field, bit);
}

/* A list longer or shorter than the length field at `field` says. */
static int bad_length(struct xcopy_error *e, int field)
{
    return fail(e, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR, field, -1);
}

static int parse_target(const uint8_t *d, uint32_t at, struct xcopy_target *t,
                        struct xcopy_error *e)
{
    if (d[0] != 0xe4)
        return fail(e, SK_ILLEGAL_REQUEST, XC_ASC_UNSUPPORTED_TARGET, (int)at, -1);
    /* LU ID TYPE and NUL are ignored (SPC-4 on); the device must be a
     * block device with our logical block size */
    if (d[1] & 0x1f)
        return bad_field(e, (int)at + 1, 4);
    if (scsi_get24(d + 29) != SCSI_LBA_SIZE)
        return bad_field(e, (int)at + 29, -1);
    uint8_t code_set = d[4] & 0x0f, assoc = (d[5] >> 4) & 3, type = d[5] & 0x0f, len = d[7];
    if (len > 20)
        return bad_field(e, (int)at + 7, -1);
    *t = (struct xcopy_target){.at = (uint16_t)at};
    /* a binary NAA designator of the logical unit: what VPD 0x83 gives */
    if (code_set == 1 && assoc == 0 && type == 3 && len == 8) {
        t->naa = true;
        t->id = scsi_get64(d + 8);
    }
    return 0;
}

static int parse_segment(const uint8_t *d, uint32_t at, uint32_t left, struct xcopy_segment *s,
                         struct xcopy_error *e)
{
    if (d[0] != 0x02)
        return fail(e, SK_ILLEGAL_REQUEST, XC_ASC_UNSUPPORTED_SEGMENT, (int)at, -1);
    /* Too short to hold its own length: the segment list's length
     * overshoots (a field pointer must stay inside the list sent). */
    if (left < 4)
        return bad_length(e, 8);
    if (scsi_get16(d + 2) != SEGMENT_LEN - 4)
        return bad_field(e, (int)at + 2, -1);
    if (left < SEGMENT_LEN)
        return bad_length(e, 8);
    *s = (struct xcopy_segment){
        .src = scsi_get16(d + 4),
        .dst = scsi_get16(d + 6),
        .blocks = scsi_get16(d + 10),
        .src_lba = scsi_get64(d + 12),
        .dst_lba = scsi_get64(d + 20),
        .at = (uint16_t)at,
    };
    return 0;
}

int xcopy_parse(const uint8_t *p, uint32_t len, struct xcopy_list *out, struct xcopy_error *e)
{
    memset(out, 0, sizeof *out);
    if (len < HDR_LEN) {
        bad_length(e, 10); /* the CDB's PARAMETER LIST LENGTH */
        e->in_cdb = true;
        return -EINVAL;
    }
    out->list_id = p[0];
    out->usage = (p[1] >> 3) & 3;
    uint32_t tlen = scsi_get16(p + 2), slen = scsi_get32(p + 8), ilen = scsi_get32(p + 12);
    if (out->usage == 1)
        return bad_field(e, 1, 4);
    if (out->usage == XCOPY_LIST_NONE && out->list_id != 0)
        return bad_field(e, 0, -1);
    if (ilen != 0)
        return fail(e, SK_ILLEGAL_REQUEST, XC_ASC_INLINE_DATA_EXCEEDED, 12, -1);
    /* the lists must fit in what was sent, and in our limit */
    /* the field that overshoots: the target list's length, or the
     * segment list's */
    if ((uint64_t)HDR_LEN + tlen + slen > len)
        return bad_length(e, HDR_LEN + tlen > len ? 2 : 8);
    if ((uint64_t)tlen + slen > XCOPY_MAX_DESC_LIST)
        return bad_length(e, tlen > XCOPY_MAX_DESC_LIST ? 2 : 8);
    if (tlen % TARGET_LEN)
        return bad_field(e, 2, -1);
    if (tlen / TARGET_LEN > XCOPY_MAX_TARGETS)
        return fail(e, SK_ILLEGAL_REQUEST, XC_ASC_TOO_MANY_TARGETS, 2, -1);

    uint32_t at = HDR_LEN;
    for (; at < HDR_LEN + tlen; at += TARGET_LEN) {
        int ret = parse_target(p + at, at, &out->t[out->ntargets], e);
        if (ret < 0)
            return ret;
        out->ntargets++;
    }
    uint32_t end = at + slen;
    while (at < end) {
        if (out->nsegments == XCOPY_MAX_SEGMENTS)
            return fail(e, SK_ILLEGAL_REQUEST, XC_ASC_TOO_MANY_SEGMENTS, 8, -1);
        int ret = parse_segment(p + at, at, end - at, &out->s[out->nsegments], e);
        if (ret < 0)
            return ret;
        out->nsegments++;
        at += SEGMENT_LEN;
    }
    return 0;
}
