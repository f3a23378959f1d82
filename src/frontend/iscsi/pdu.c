/* iSCSI PDU framing, checks and digests; see pdu.h. */
#include "frontend/iscsi/pdu.h"

#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "frontend/iscsi/crc32c.h"

void iscsi_rx_init(struct iscsi_rx *rx, struct conn_io *io, uint8_t *buf, size_t cap)
{
    memset(rx, 0, sizeof *rx);
    rx->io = io;
    rx->buf = buf;
    rx->cap = cap;
    rx->timed_fd = -1;
}

/* Read at least need bytes into the buffer. 0, 1 on EOF with nothing
 * buffered, or -errno. */
static int rx_fill(struct iscsi_rx *rx, size_t need)
{
    while (rx->end - rx->start < need) {
        if (rx->start > 0) {
            memmove(rx->buf, rx->buf + rx->start, rx->end - rx->start);
            rx->end -= rx->start;
            rx->start = 0;
        }
        if (rx->before_wait)
            rx->before_wait(rx->opaque);
        ssize_t n = conn_io_recv_polled(rx->io, &rx->poll, rx->buf + rx->end, rx->cap - rx->end,
                                        rx->timed_fd);
        if (n == 0)
            return rx->end == rx->start ? 1 : -ECONNRESET;
        if (n < 0)
            return (int)n;
        rx->end += (size_t)n;
    }
    return 0;
}

/* Move len bytes to dst (NULL: drop them), buffered bytes first, the rest
 * straight from the transport. */
static int rx_take(struct iscsi_rx *rx, void *dst, size_t len)
{
    size_t have = MIN(len, rx->end - rx->start);
    if (dst)
        memcpy(dst, rx->buf + rx->start, have);
    rx->start += have;
    len -= have;
    if (len == 0)
        return 0;
    if (rx->before_wait)
        rx->before_wait(rx->opaque);
    if (!dst)
        return conn_io_discard(rx->io, len);
    return conn_io_read_full(rx->io, (uint8_t *)dst + have, len);
}

static bool initiator_opcode(uint8_t op)
{
    switch (op) {
    case ISCSI_OP_NOP_OUT:
    case ISCSI_OP_SCSI_CMD:
    case ISCSI_OP_TMF_REQ:
    case ISCSI_OP_LOGIN_REQ:
    case ISCSI_OP_TEXT_REQ:
    case ISCSI_OP_DATA_OUT:
    case ISCSI_OP_LOGOUT:
    case ISCSI_OP_SNACK:
        return true;
    default:
        return false;
    }
}

/* Walk the AHS: every segment must fit, only the types RFC 7143 defines,
 * each at most once, and only on a SCSI Command. */
static bool parse_ahs(struct iscsi_pdu *p)
{
    uint32_t off = 0;
    bool seen_cdb = false;
    if (p->ahs_len && iscsi_pdu_opcode(p) != ISCSI_OP_SCSI_CMD)
        return false;
    while (off < p->ahs_len) {
        if (p->ahs_len - off < 4)
            return false;
        uint32_t len = get_be16(p->ahs + off);
        uint8_t type = p->ahs[off + 2];
        const uint8_t *body = p->ahs + off + 3; /* the AHS-specific bytes start with byte 3 */
        if (len == 0 || 3u + len > p->ahs_len - off)
            return false;
        switch (type) {
        case ISCSI_AHS_EXT_CDB:
            /* One reserved byte, then the CDB bytes past the 16th. */
            if (seen_cdb || len - 1 > ISCSI_EXT_CDB_MAX)
                return false;
            seen_cdb = true;
            p->ext_cdb_len = (uint8_t)(len - 1);
            memcpy(p->ext_cdb, body + 1, len - 1);
            break;
        case ISCSI_AHS_BIDI_READ:
            if (p->has_bidi_len || len != 5)
                return false;
            p->has_bidi_len = true;
            p->bidi_read_len = get_be32(body + 1);
            break;
        default:
            return false;
        }
        off += 3 + len;
        off += iscsi_pad4(off);
    }
    return true;
}

enum iscsi_hdr_error iscsi_pdu_recv_hdr(struct iscsi_rx *rx, bool hdigest, uint32_t max_dlen,
                                        struct iscsi_pdu *p, int *err)
{
    *err = 0;
    int r = rx_fill(rx, ISCSI_BHS_SIZE);
    if (r == 1)
        return ISCSI_HDR_EOF;
    if (r == -ETIMEDOUT && rx->start == rx->end)
        return ISCSI_HDR_IDLE;
    if (r < 0) {
        *err = r;
        return ISCSI_HDR_IO;
    }
    memcpy(p->bhs, rx->buf + rx->start, ISCSI_BHS_SIZE);
    rx->start += ISCSI_BHS_SIZE;
    p->ahs_len = 4u * p->bhs[ISCSI_BHS_AHSLEN];
    p->dlen = (uint32_t)p->bhs[ISCSI_BHS_DSL] << 16 | (uint32_t)p->bhs[ISCSI_BHS_DSL + 1] << 8 |
              p->bhs[ISCSI_BHS_DSL + 2];
    p->ext_cdb_len = 0;
    p->has_bidi_len = false;
    p->bidi_read_len = 0;
    /* Before reading on: a length we refuse must not make us wait for it. */
    if (p->dlen > max_dlen)
        return ISCSI_HDR_TOO_LONG;
    if (p->ahs_len && (r = rx_take(rx, p->ahs, p->ahs_len)) < 0) {
        *err = r;
        return ISCSI_HDR_IO;
    }
    if (hdigest) {
        uint8_t d[ISCSI_DIGEST_SIZE];
        if ((r = rx_take(rx, d, sizeof d)) < 0) {
            *err = r;
            return ISCSI_HDR_IO;
        }
        uint32_t c = crc32c_update(CRC32C_INIT, p->bhs, ISCSI_BHS_SIZE);
        c = ~crc32c_update(c, p->ahs, p->ahs_len);
        if (c !=
            ((uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24))
            return ISCSI_HDR_DIGEST;
    }
    if (!initiator_opcode(iscsi_pdu_opcode(p)))
        return ISCSI_HDR_BAD_OPCODE;
    if (!parse_ahs(p))
        return ISCSI_HDR_BAD_AHS;
    return ISCSI_HDR_OK;
}

int iscsi_pdu_recv_data(struct iscsi_rx *rx, bool ddigest, const struct iscsi_pdu *p, void *dst)
{
    uint8_t tail[4 + ISCSI_DIGEST_SIZE];
    uint32_t pad = iscsi_pad4(p->dlen);
    size_t tail_len = pad + (ddigest && p->dlen ? ISCSI_DIGEST_SIZE : 0);
    int r = rx_take(rx, dst, p->dlen);
    if (r == 0 && tail_len)
        r = rx_take(rx, tail, tail_len);
    if (r < 0 || !dst || !ddigest || !p->dlen)
        return r;
    uint32_t c = crc32c_update(CRC32C_INIT, dst, p->dlen);
    c = ~crc32c_update(c, tail, pad);
    const uint8_t *d = tail + pad;
    if (c != ((uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24))
        return -EBADMSG;
    return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#define SEND_IOV_MAX 64

int iscsi_pdu_send(struct conn_io *io, bool hdigest, bool ddigest, uint8_t *bhs,
                   const struct iovec *iov, int niov, uint32_t dlen)
{
    static const uint8_t zeros[4];
    uint8_t hd[ISCSI_DIGEST_SIZE], dd[ISCSI_DIGEST_SIZE];
    struct iovec out[SEND_IOV_MAX + 4];
    int n = 0;
    if (niov > SEND_IOV_MAX)
        return -E2BIG;
    bhs[ISCSI_BHS_AHSLEN] = 0;
    bhs[ISCSI_BHS_DSL] = (uint8_t)(dlen >> 16);
    bhs[ISCSI_BHS_DSL + 1] = (uint8_t)(dlen >> 8);
    bhs[ISCSI_BHS_DSL + 2] = (uint8_t)dlen;
    out[n++] = (struct iovec){bhs, ISCSI_BHS_SIZE};
    if (hdigest) {
        put_le32(hd, crc32c(bhs, ISCSI_BHS_SIZE));
        out[n++] = (struct iovec){hd, sizeof hd};
    }
    if (dlen) {
        uint32_t c = CRC32C_INIT;
        size_t left = dlen;
        for (int i = 0; i < niov && left; i++) {
            size_t l = MIN(left, iov[i].iov_len);
            out[n++] = (struct iovec){iov[i].iov_base, l};
            if (ddigest)
                c = crc32c_update(c, iov[i].iov_base, l);
            left -= l;
        }
        if (left)
            return -EINVAL;
        uint32_t pad = iscsi_pad4(dlen);
        if (pad) {
            out[n++] = (struct iovec){(void *)zeros, pad};
            if (ddigest)
                c = crc32c_update(c, zeros, pad);
        }
        if (ddigest) {
            put_le32(dd, ~c);
            out[n++] = (struct iovec){dd, sizeof dd};
        }
    }
    return conn_io_writev_full(io, out, n);
}

int iscsi_iov_slice(const struct iovec *src, int nsrc, size_t off, size_t len, struct iovec *dst,
                    int dst_max)
{
    int n = 0;
    for (int i = 0; i < nsrc && len; i++) {
        size_t l = src[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        if (n == dst_max)
            return -1;
        size_t take = MIN(l - off, len);
        dst[n++] = (struct iovec){(uint8_t *)src[i].iov_base + off, take};
        off = 0;
        len -= take;
    }
    return len ? -1 : n;
}
