/* iSCSI PDUs on a byte stream (RFC 7143 section 11): reading one PDU in two
 * steps (header, then its data segment into a place the caller chooses, so
 * write data lands in the command's buffer without a copy), strict checks
 * of what the header claims, and sending one PDU with its padding and
 * optional CRC32C digests.
 *
 * A PDU is: the 48-byte Basic Header Segment, TotalAHSLength*4 bytes of
 * Additional Header Segments, a header digest (if negotiated), the data
 * segment padded to 4 bytes, a data digest (if negotiated).
 *
 * Lock rules: an iscsi_rx is used by its connection's reader only; sending
 * needs the connection's send lock (conn.c). */
#ifndef SHOAL_FRONTEND_ISCSI_PDU_H
#define SHOAL_FRONTEND_ISCSI_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/busy_poll.h"
#include "frontend/conn_io.h"
#include "frontend/iscsi/proto.h"

#define ISCSI_AHS_MAX     (255u * 4) /* TotalAHSLength is one byte of words */
#define ISCSI_EXT_CDB_MAX 16         /* CDB bytes past 16 we accept (32-byte CDBs) */

/* Buffered reader of one connection. */
struct iscsi_rx {
    struct conn_io *io;
    uint8_t *buf;
    size_t start, end, cap;
    /* Called before the reader may block for input (the connection sends
     * what it batched); may be NULL. */
    void (*before_wait)(void *opaque);
    void *opaque;
    /* A socket whose SO_RCVTIMEO holds the idle timeout (conn.c sets it
     * for the full feature phase), or -1. Waiting for a header is then one
     * blocking recv instead of the transport's poll + recv: a syscall less
     * per command, which is most of the difference at queue depth 1. */
    int timed_fd;
    struct busy_poll poll; /* for the wait for the next PDU (conn_io.h) */
};

struct iscsi_pdu {
    uint8_t bhs[ISCSI_BHS_SIZE];
    uint32_t ahs_len; /* bytes of AHS */
    uint8_t ahs[ISCSI_AHS_MAX];
    uint32_t dlen; /* DataSegmentLength, without padding */
    /* Parsed AHS. */
    uint8_t ext_cdb_len; /* CDB bytes beyond the BHS's 16 */
    uint8_t ext_cdb[ISCSI_EXT_CDB_MAX];
    bool has_bidi_len;
    uint32_t bidi_read_len;
};

static inline uint8_t iscsi_pdu_opcode(const struct iscsi_pdu *p)
{
    return p->bhs[0] & ISCSI_OPCODE_MASK;
}

static inline uint32_t iscsi_pad4(uint32_t n)
{
    return (4 - (n & 3)) & 3;
}

/* Why a header was refused (iscsi_pdu_recv_hdr's result), so the caller
 * can pick the answer: a Reject when the stream is still in sync, else a
 * closed connection. */
enum iscsi_hdr_error {
    ISCSI_HDR_OK = 0,
    ISCSI_HDR_EOF,        /* orderly end before a header */
    ISCSI_HDR_IDLE,       /* the receive timeout passed before a header began: retry */
    ISCSI_HDR_IO,         /* transport error (errno in *err) */
    ISCSI_HDR_DIGEST,     /* header digest mismatch: lengths untrustworthy, close */
    ISCSI_HDR_TOO_LONG,   /* data segment over the limit: close */
    ISCSI_HDR_BAD_AHS,    /* AHS malformed, in sync: Reject (invalid field) */
    ISCSI_HDR_BAD_OPCODE, /* not an initiator opcode, in sync: Reject (not supported) */
};

void iscsi_rx_init(struct iscsi_rx *rx, struct conn_io *io, uint8_t *buf, size_t cap);

/* Read a BHS, its AHS and header digest; parse the AHS. max_dlen is our
 * MaxRecvDataSegmentLength (login PDUs: the login limit). On a refusal
 * where the stream stays in sync, the data segment is still unread. */
enum iscsi_hdr_error iscsi_pdu_recv_hdr(struct iscsi_rx *rx, bool hdigest, uint32_t max_dlen,
                                        struct iscsi_pdu *p, int *err);

/* Read the data segment, its padding and digest: into dst (dlen bytes), or
 * discarded when dst is NULL. 0, -EBADMSG on a data digest mismatch (the
 * stream is in sync), or -errno. */
int iscsi_pdu_recv_data(struct iscsi_rx *rx, bool ddigest, const struct iscsi_pdu *p, void *dst);

/* Send a target PDU: bhs (its DataSegmentLength and TotalAHSLength are set
 * here), then dlen bytes of data gathered from iov, padding, digests. 0 or
 * -errno. */
int iscsi_pdu_send(struct conn_io *io, bool hdigest, bool ddigest, uint8_t *bhs,
                   const struct iovec *iov, int niov, uint32_t dlen);

/* Copy the iovec entries covering [off, off + len) of src into dst (at
 * most dst_max entries, trimmed at both ends). Returns the count, or -1 if
 * dst is too small or src too short. */
int iscsi_iov_slice(const struct iovec *src, int nsrc, size_t off, size_t len, struct iovec *dst,
                    int dst_max);

#endif
