/* The iSCSI front end's pure parts: CRC32C against RFC 7143's test
 * vectors, PDU framing over a socketpair (padding, header and data
 * digests, a corrupted digest, an oversized segment, AHS parsing and a
 * malformed AHS), key=value parsing, operational key negotiation, and the
 * CHAP encodings and MD5 response. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "frontend/conn_io.h"
#include "frontend/iscsi/chap.h"
#include "frontend/iscsi/crc32c.h"
#include "frontend/iscsi/params.h"
#include "frontend/iscsi/pdu.h"

static void test_crc32c_vectors(void **state)
{
    (void)state;
    uint8_t buf[32];
    memset(buf, 0, sizeof buf); /* RFC 7143 B.4: bytes aa 36 91 8a on the wire */
    assert_int_equal(crc32c(buf, sizeof buf), 0x8a9136aa);
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(crc32c(buf, sizeof buf), 0x62a8ab43);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(crc32c(buf, sizeof buf), 0x46dd794e);
    /* In pieces, unaligned: the same. */
    uint32_t c = crc32c_update(CRC32C_INIT, buf, 3);
    c = crc32c_update(c, buf + 3, 29);
    assert_int_equal(~c, 0x46dd794e);
}

struct link {
    int fd[2];
    struct conn_io out, in;
    struct iscsi_rx rx;
    uint8_t rbuf[4096];
};

static void link_open(struct link *l)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, l->fd), 0);
    conn_io_init_plain(&l->out, l->fd[0]);
    conn_io_init_plain(&l->in, l->fd[1]);
    l->in.timeout_ms = 2000;
    iscsi_rx_init(&l->rx, &l->in, l->rbuf, sizeof l->rbuf);
}

static void link_close(struct link *l)
{
    close(l->fd[0]);
    close(l->fd[1]);
}

static void nop_out(uint8_t *bhs)
{
    memset(bhs, 0, ISCSI_BHS_SIZE);
    bhs[0] = ISCSI_OP_NOP_OUT | ISCSI_FLAG_I;
    bhs[1] = ISCSI_FLAG_F;
    put_be32(bhs + ISCSI_BHS_ITT, 7);
}

static void test_pdu_roundtrip_digests(void **state)
{
    (void)state;
    struct link l;
    link_open(&l);
    uint8_t bhs[ISCSI_BHS_SIZE];
    nop_out(bhs);
    struct iovec iov[2] = {{"hel", 3}, {"lo", 2}}; /* 5 bytes: 3 of padding */
    assert_int_equal(iscsi_pdu_send(&l.out, true, true, bhs, iov, 2, 5), 0);
    struct iscsi_pdu p;
    int err;
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, true, 8192, &p, &err), ISCSI_HDR_OK);
    assert_int_equal(p.dlen, 5);
    assert_int_equal(get_be32(p.bhs + ISCSI_BHS_ITT), 7);
    char data[5];
    assert_int_equal(iscsi_pdu_recv_data(&l.rx, true, &p, data), 0);
    assert_memory_equal(data, "hello", 5);

    /* A flipped data byte: the data digest says so, the stream stays in sync. */
    assert_int_equal(iscsi_pdu_send(&l.out, false, true, bhs, iov, 2, 5), 0);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_OK);
    assert_int_equal(iscsi_pdu_recv_data(&l.rx, true, &p, data), 0);
    uint8_t raw[ISCSI_BHS_SIZE + 8 + 4];
    memcpy(raw, bhs, ISCSI_BHS_SIZE);
    memcpy(raw + ISCSI_BHS_SIZE, "hellX\0\0\0", 8);
    uint32_t good = ~crc32c_update(crc32c_update(CRC32C_INIT, "hello", 5), "\0\0\0", 3);
    raw[56] = (uint8_t)good, raw[57] = (uint8_t)(good >> 8), raw[58] = (uint8_t)(good >> 16),
    raw[59] = (uint8_t)(good >> 24);
    assert_int_equal(write(l.fd[0], raw, sizeof raw), (ssize_t)sizeof raw);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_OK);
    assert_int_equal(iscsi_pdu_recv_data(&l.rx, true, &p, data), -EBADMSG);
    assert_int_equal(iscsi_pdu_send(&l.out, false, false, bhs, NULL, 0, 0), 0);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_OK);
    assert_int_equal(p.dlen, 0);

    /* A corrupted header digest. */
    uint8_t hd[ISCSI_BHS_SIZE + 4];
    memcpy(hd, bhs, ISCSI_BHS_SIZE);
    hd[ISCSI_BHS_SIZE + 0] = 1;
    hd[ISCSI_BHS_SIZE + 1] = hd[ISCSI_BHS_SIZE + 2] = hd[ISCSI_BHS_SIZE + 3] = 2;
    assert_int_equal(write(l.fd[0], hd, sizeof hd), (ssize_t)sizeof hd);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, true, 8192, &p, &err), ISCSI_HDR_DIGEST);
    link_close(&l);
}

static void test_pdu_refusals(void **state)
{
    (void)state;
    struct link l;
    link_open(&l);
    struct iscsi_pdu p;
    int err;
    uint8_t bhs[ISCSI_BHS_SIZE];

    /* Over the limit: refused before anything else is read. */
    nop_out(bhs);
    bhs[ISCSI_BHS_DSL] = 0xff;
    bhs[ISCSI_BHS_AHSLEN] = 0xff;
    assert_int_equal(write(l.fd[0], bhs, sizeof bhs), (ssize_t)sizeof bhs);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_TOO_LONG);
    link_close(&l);

    /* A target opcode from an initiator. */
    link_open(&l);
    nop_out(bhs);
    bhs[0] = ISCSI_OP_SCSI_RSP;
    assert_int_equal(write(l.fd[0], bhs, sizeof bhs), (ssize_t)sizeof bhs);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_BAD_OPCODE);

    /* A SCSI command with an extended-CDB AHS of 16 more bytes. */
    uint8_t cmd[ISCSI_BHS_SIZE + 20];
    memset(cmd, 0, sizeof cmd);
    cmd[0] = ISCSI_OP_SCSI_CMD;
    cmd[1] = ISCSI_FLAG_F;
    cmd[ISCSI_BHS_AHSLEN] = 5; /* 20 bytes */
    put_be16(cmd + 48, 17);
    cmd[50] = ISCSI_AHS_EXT_CDB;
    for (int i = 0; i < 16; i++)
        cmd[52 + i] = (uint8_t)(0xa0 + i);
    assert_int_equal(write(l.fd[0], cmd, sizeof cmd), (ssize_t)sizeof cmd);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_OK);
    assert_int_equal(p.ext_cdb_len, 16);
    assert_int_equal(p.ext_cdb[15], 0xaf);

    /* The same AHS claiming more than it has; and an AHS on a NOP-Out. */
    put_be16(cmd + 48, 200);
    assert_int_equal(write(l.fd[0], cmd, sizeof cmd), (ssize_t)sizeof cmd);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_BAD_AHS);
    put_be16(cmd + 48, 17);
    cmd[0] = ISCSI_OP_NOP_OUT;
    assert_int_equal(write(l.fd[0], cmd, sizeof cmd), (ssize_t)sizeof cmd);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_BAD_AHS);

    /* EOF at a PDU boundary, then nothing. */
    shutdown(l.fd[0], SHUT_WR);
    assert_int_equal(iscsi_pdu_recv_hdr(&l.rx, false, 8192, &p, &err), ISCSI_HDR_EOF);
    link_close(&l);
}

static void test_iov_slice(void **state)
{
    (void)state;
    char a[10], b[10], c[10];
    struct iovec src[3] = {{a, 10}, {b, 10}, {c, 10}}, dst[3];
    assert_int_equal(iscsi_iov_slice(src, 3, 5, 10, dst, 3), 2);
    assert_ptr_equal(dst[0].iov_base, a + 5);
    assert_int_equal(dst[0].iov_len, 5);
    assert_int_equal(dst[1].iov_len, 5);
    assert_int_equal(iscsi_iov_slice(src, 3, 0, 30, dst, 2), -1);  /* too many */
    assert_int_equal(iscsi_iov_slice(src, 3, 25, 10, dst, 3), -1); /* too short */
}

struct kv_seen {
    char keys[8][32];
    char vals[8][32];
    int n;
};

static int collect(void *opaque, const char *key, const char *val)
{
    struct kv_seen *s = opaque;
    snprintf(s->keys[s->n], 32, "%s", key);
    snprintf(s->vals[s->n], 32, "%s", val ? val : "(null)");
    s->n++;
    return 0;
}

static void test_kv(void **state)
{
    (void)state;
    static const char text[] = "A=1\0\0B=two=2\0C\0D=last"; /* no NUL at the end */
    struct kv_seen s = {0};
    assert_int_equal(iscsi_kv_each(text, sizeof text - 1, collect, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.keys[1], "B");
    assert_string_equal(s.vals[1], "two=2");
    assert_string_equal(s.vals[2], "(null)");
    assert_string_equal(s.vals[3], "last");

    char buf[16];
    struct iscsi_kv_out o = {.buf = buf, .cap = sizeof buf};
    iscsi_kv_add(&o, "Key", "Value");
    assert_int_equal(o.len, 10);
    iscsi_kv_add(&o, "Another", "pair");
    assert_true(o.overflow);
    assert_int_equal(o.len, 10);
}

/* Negotiate one key; the answer's value (or "" when there is none). */
static const char *nego(struct iscsi_params *p, const char *key, const char *val, int *r)
{
    static char buf[256];
    struct iscsi_kv_out o = {.buf = buf, .cap = sizeof buf};
    *r = iscsi_params_negotiate(p, key, val, &o);
    if (!o.len)
        return "";
    return strchr(buf, '=') + 1;
}

static void test_params(void **state)
{
    (void)state;
    struct iscsi_params p;
    iscsi_params_init(&p);
    int r;
    assert_string_equal(nego(&p, "HeaderDigest", "CRC32C,None", &r), "CRC32C");
    assert_true(p.header_digest);
    assert_string_equal(nego(&p, "DataDigest", "None,CRC32C", &r), "None");
    assert_string_equal(nego(&p, "HeaderDigest", "MD5", &r), "Reject");
    assert_int_equal(r, -1);
    /* The burst keys are answered once the request's keys are all read. */
    assert_string_equal(nego(&p, "MaxBurstLength", "1048576", &r), "");
    assert_int_equal(r, 1);
    assert_string_equal(nego(&p, "FirstBurstLength", "16777215", &r), "");
    assert_int_equal(r, 1);
    char ans[128];
    struct iscsi_kv_out o = {.buf = ans, .cap = sizeof ans};
    iscsi_params_settle(&p, &o);
    assert_int_equal(o.len, sizeof "MaxBurstLength=1048576" + sizeof "FirstBurstLength=262144");
    assert_string_equal(ans, "MaxBurstLength=1048576");
    assert_string_equal(ans + sizeof "MaxBurstLength=1048576", "FirstBurstLength=262144");
    /* FirstBurstLength over MaxBurstLength (in either order): the answer
     * is MaxBurstLength, what both sides then use. */
    assert_string_equal(nego(&p, "FirstBurstLength", "65536", &r), "");
    assert_string_equal(nego(&p, "MaxBurstLength", "1024", &r), "");
    o.len = 0;
    iscsi_params_settle(&p, &o);
    assert_string_equal(ans + sizeof "MaxBurstLength=1024", "FirstBurstLength=1024");
    assert_int_equal(p.first_burst, 1024);
    o.len = 0;
    iscsi_params_settle(&p, &o); /* answered once */
    assert_int_equal(o.len, 0);
    assert_string_equal(nego(&p, "MaxBurstLength", "16777216", &r), "Reject");
    assert_string_equal(nego(&p, "MaxBurstLength", "-1", &r), "Reject");
    assert_string_equal(nego(&p, "MaxConnections", "8", &r), "1");
    assert_string_equal(nego(&p, "InitialR2T", "No", &r), "No");
    assert_false(p.initial_r2t);
    assert_string_equal(nego(&p, "ImmediateData", "maybe", &r), "Reject");
    assert_string_equal(nego(&p, "ErrorRecoveryLevel", "2", &r), "0");
    assert_string_equal(nego(&p, "MaxOutstandingR2T", "100", &r), "4");
    assert_string_equal(nego(&p, "MaxRecvDataSegmentLength", "0x10000", &r), "");
    assert_int_equal(r, 1);
    assert_int_equal(p.initiator_mrdsl, 65536);
    assert_string_equal(nego(&p, "MaxRecvDataSegmentLength", "511", &r), "Reject");
    assert_string_equal(nego(&p, "X-com.example.Foo", "1", &r), "");
    assert_int_equal(r, 0); /* not ours: the login answers NotUnderstood */
    p.max_burst = 65536;
    p.first_burst = 262144;
    iscsi_params_settle(&p, NULL);
    assert_int_equal(p.first_burst, 65536);
}

static void test_chap(void **state)
{
    (void)state;
    uint8_t out[32];
    size_t n;
    assert_int_equal(iscsi_chap_decode("0xABC", out, sizeof out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 0x0a);
    assert_int_equal(out[1], 0xbc);
    assert_int_equal(iscsi_chap_decode("0bAQIDBAU=", out, sizeof out, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(out[4], 5);
    assert_int_equal(iscsi_chap_decode("0xZZ", out, sizeof out, &n), -EINVAL);
    assert_int_equal(iscsi_chap_decode("1234", out, sizeof out, &n), -EINVAL);
    assert_int_equal(iscsi_chap_decode("0x", out, sizeof out, &n), -EINVAL);
    assert_int_equal(iscsi_chap_decode("0x001122", out, 2, &n), -EINVAL); /* too long */

    uint8_t chal[16];
    for (int i = 0; i < 16; i++)
        chal[i] = (uint8_t)i;
    uint8_t md5[ISCSI_CHAP_DIGEST_LEN];
    assert_int_equal(iscsi_chap_md5(7, "alice-secret-123", chal, sizeof chal, md5), 0);
    char hex[2 * ISCSI_CHAP_DIGEST_LEN + 3];
    iscsi_chap_encode(md5, sizeof md5, hex);
    assert_string_equal(hex, "0x069b0b1fabfd1ebbb268989ee4ba4e7f");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_pdu_roundtrip_digests),
        cmocka_unit_test(test_pdu_refusals),
        cmocka_unit_test(test_iov_slice),
        cmocka_unit_test(test_kv),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_chap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
