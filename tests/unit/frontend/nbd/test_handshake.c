/* NBD handshake: nbd_handshake() runs in a thread on one end of a
 * socketpair while the test plays a scripted client on the other, against
 * two fake exports that count their references. (The transport under it is
 * tested in ../test_conn_io.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/util.h"
#include "frontend/conn_io.h"
#include "frontend/nbd/handshake.h"
#include "frontend/nbd/proto.h"

#define MIB (1024u * 1024u)

/* ---- fake exports ---- */

struct fake_export {
    const char *name;
    struct nbd_export_info info;
    int refs;
};

struct fake {
    struct fake_export ex[2];
    int gets; /* references handed out */
    int puts; /* references returned */
    int bad_puts;
};

static struct fake_export *fake_find(struct fake *f, const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(f->ex); i++)
        if (strcmp(f->ex[i].name, name) == 0)
            return &f->ex[i];
    return NULL;
}

static int fake_get(void *opaque, const char *name, struct nbd_export_info *info, void **handle)
{
    struct fake *f = opaque;
    struct fake_export *e = fake_find(f, name);
    if (!e)
        return -ENOENT;
    *info = e->info;
    if (handle) {
        e->refs++;
        f->gets++;
        *handle = e;
    }
    return 0;
}

static void fake_put(void *opaque, void *handle)
{
    struct fake *f = opaque;
    struct fake_export *e = handle;
    /* Runs on the server thread, where cmocka's asserts must not be used:
     * count the mistake and let srv_finish() fail the test. */
    if (!e || e->refs <= 0) {
        f->bad_puts++;
        return;
    }
    e->refs--;
    f->puts++;
}

static int fake_list(void *opaque, int (*emit)(void *ctx, const char *name, const char *desc),
                     void *ctx)
{
    struct fake *f = opaque;
    for (size_t i = 0; i < ARRAY_SIZE(f->ex); i++) {
        int r = emit(ctx, f->ex[i].name, f->ex[i].info.description);
        if (r)
            return r;
    }
    return 0;
}

/* ---- the server side, in a thread ---- */

struct srv {
    int cfd; /* the test's (client's) end */
    int sfd;
    int timeout_ms;
    int deadline_ms; /* of the whole handshake, from the start; 0: none */
    pthread_t thread;
    struct fake fake;
    struct nbd_exports exports;
    struct nbd_handshake_cfg cfg;
    struct nbd_handshake_result res;
    int stopping; /* read atomically by the handshake */
    int starttls_calls;
    int starttls_ret;
    int ret;
};

static int fake_starttls(struct conn_io *io, void *opaque)
{
    struct srv *s = opaque;
    (void)io; /* no real TLS: the stream stays plain */
    s->starttls_calls++;
    return s->starttls_ret;
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    struct conn_io io;
    conn_io_init_plain(&io, s->sfd);
    io.timeout_ms = s->timeout_ms;
    if (s->deadline_ms)
        io.deadline_ns = now_ns() + (uint64_t)s->deadline_ms * 1000000u;
    s->ret = nbd_handshake(&io, &s->exports, &s->cfg, &s->res);
    /* Like the daemon after a failure (and the transmission phase's end on
     * success): the client then sees EOF, which the tests check for. */
    io.ops->close(&io);
    return NULL;
}

static struct srv *srv_new(enum nbd_tls_mode tls)
{
    struct srv *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->fake.ex[0] = (struct fake_export){
        .name = "a",
        .info = {.size = 1 * MIB,
                 .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY,
                 .min_block = 1,
                 .pref_block = 4096,
                 .max_block = 32 * MIB,
                 .description = "export a"},
    };
    /* "b" leaves the block sizes to the handshake's defaults. */
    s->fake.ex[1] = (struct fake_export){
        .name = "b",
        .info = {.size = 3 * MIB + 512, .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH},
    };
    s->exports = (struct nbd_exports){
        .opaque = &s->fake, .get = fake_get, .put = fake_put, .list = fake_list};
    s->cfg = (struct nbd_handshake_cfg){.tls = tls, .shutting_down = &s->stopping};
    if (tls != NBD_TLS_OFF) {
        s->cfg.starttls = fake_starttls;
        s->cfg.starttls_opaque = s;
    }
    s->timeout_ms = 5000;
    s->ret = 1; /* not a value nbd_handshake returns */
    return s;
}

static void srv_start(struct srv *s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    s->cfd = sv[0];
    s->sfd = sv[1];
    /* A server bug must fail the test, not hang it. */
    struct timeval tv = {.tv_sec = 10};
    assert_int_equal(setsockopt(s->cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

static struct srv *srv_run(enum nbd_tls_mode tls)
{
    struct srv *s = srv_new(tls);
    srv_start(s);
    return s;
}

/* Join the server, check that references balance, and return its result. */
static int srv_finish(struct srv *s)
{
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    int ret = s->ret;
    if (ret == 0) {
        assert_non_null(s->res.handle);
        fake_put(&s->fake, s->res.handle);
    } else {
        assert_null(s->res.handle);
    }
    assert_int_equal(s->fake.bad_puts, 0);
    assert_int_equal(s->fake.gets, s->fake.puts);
    for (size_t i = 0; i < ARRAY_SIZE(s->fake.ex); i++)
        assert_int_equal(s->fake.ex[i].refs, 0);
    return ret;
}

static void srv_free(struct srv *s)
{
    close(s->cfd);
    free(s);
}

/* ---- the scripted client ---- */

static void c_write(struct srv *s, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(s->cfd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* 0 when all len bytes arrived, -1 on EOF or error. */
static int c_read(struct srv *s, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(s->cfd, p, len, 0);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void c_expect_eof(struct srv *s)
{
    char c;
    assert_int_equal(recv(s->cfd, &c, 1, 0), 0);
}

static void c_greet(struct srv *s, uint32_t client_flags)
{
    uint8_t g[18], f[4];
    assert_int_equal(c_read(s, g, sizeof g), 0);
    assert_true(get_be64(g) == NBD_MAGIC);
    assert_true(get_be64(g + 8) == NBD_IHAVEOPT);
    assert_int_equal(get_be16(g + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    put_be32(f, client_flags);
    c_write(s, f, sizeof f);
}

static void c_opt_hdr(struct srv *s, uint32_t opt, uint32_t len)
{
    uint8_t h[16];
    put_be64(h, NBD_IHAVEOPT);
    put_be32(h + 8, opt);
    put_be32(h + 12, len);
    c_write(s, h, sizeof h);
}

static void c_opt(struct srv *s, uint32_t opt, const void *data, uint32_t len)
{
    c_opt_hdr(s, opt, len);
    if (len)
        c_write(s, data, len);
}

struct rep {
    uint32_t opt, type, len;
    uint8_t data[8192];
};

static void c_reply(struct srv *s, struct rep *r)
{
    uint8_t h[20];
    assert_int_equal(c_read(s, h, sizeof h), 0);
    assert_true(get_be64(h) == NBD_REP_MAGIC);
    r->opt = get_be32(h + 8);
    r->type = get_be32(h + 12);
    r->len = get_be32(h + 16);
    assert_true(r->len <= sizeof r->data);
    assert_int_equal(c_read(s, r->data, r->len), 0);
}

static void c_expect(struct srv *s, uint32_t opt, uint32_t type, struct rep *r)
{
    c_reply(s, r);
    assert_int_equal(r->opt, opt);
    assert_int_equal(r->type, type);
    if (type & NBD_REP_FLAG_ERROR)
        assert_true(r->len > 0); /* errors explain themselves */
}

static void c_expect_simple(struct srv *s, uint32_t opt, uint32_t type)
{
    struct rep r;
    c_expect(s, opt, type, &r);
}

/* GO/INFO data: u32 name length, name, u16 count, u16 requests. */
static size_t build_go(uint8_t *buf, const char *name, const uint16_t *reqs, uint16_t nreq)
{
    size_t nlen = strlen(name);
    put_be32(buf, (uint32_t)nlen);
    memcpy(buf + 4, name, nlen);
    put_be16(buf + 4 + nlen, nreq);
    for (uint16_t i = 0; i < nreq; i++)
        put_be16(buf + 6 + nlen + 2u * i, reqs[i]);
    return 6 + nlen + 2u * nreq;
}

static void c_go(struct srv *s, uint32_t opt, const char *name, const uint16_t *reqs, uint16_t nreq)
{
    uint8_t buf[512];
    size_t len = build_go(buf, name, reqs, nreq);
    c_opt(s, opt, buf, (uint32_t)len);
}

/* What an INFO/GO exchange told the client. */
struct go_seen {
    bool export_seen, bs_seen;
    uint64_t size;
    uint16_t tflags;
    uint32_t min, pref, max;
    char name[64], desc[64];
};

/* Read NBD_REP_INFO replies up to the ACK. */
static void c_go_replies(struct srv *s, uint32_t opt, struct go_seen *g)
{
    memset(g, 0, sizeof *g);
    for (;;) {
        struct rep r;
        c_reply(s, &r);
        assert_int_equal(r.opt, opt);
        if (r.type == NBD_REP_ACK) {
            assert_int_equal(r.len, 0);
            break;
        }
        assert_int_equal(r.type, NBD_REP_INFO);
        assert_true(r.len >= 2);
        switch (get_be16(r.data)) {
        case NBD_INFO_EXPORT:
            assert_int_equal(r.len, 12);
            g->export_seen = true;
            g->size = get_be64(r.data + 2);
            g->tflags = get_be16(r.data + 10);
            break;
        case NBD_INFO_BLOCK_SIZE:
            assert_int_equal(r.len, 14);
            g->bs_seen = true;
            g->min = get_be32(r.data + 2);
            g->pref = get_be32(r.data + 6);
            g->max = get_be32(r.data + 10);
            break;
        case NBD_INFO_NAME:
            assert_true(r.len - 2 < sizeof g->name);
            memcpy(g->name, r.data + 2, r.len - 2);
            break;
        case NBD_INFO_DESCRIPTION:
            assert_true(r.len - 2 < sizeof g->desc);
            memcpy(g->desc, r.data + 2, r.len - 2);
            break;
        default:
            fail_msg("unexpected info type %u", get_be16(r.data));
        }
    }
    assert_true(g->export_seen); /* mandatory */
}

/* Meta context data: u32 name length, name, u32 count, (u32 len, query)*. */
static void c_meta(struct srv *s, uint32_t opt, const char *name, const char *const *q, uint32_t nq)
{
    uint8_t buf[1024];
    size_t nlen = strlen(name), pos = 0;
    put_be32(buf, (uint32_t)nlen);
    memcpy(buf + 4, name, nlen);
    put_be32(buf + 4 + nlen, nq);
    pos = 8 + nlen;
    for (uint32_t i = 0; i < nq; i++) {
        size_t ql = strlen(q[i]);
        put_be32(buf + pos, (uint32_t)ql);
        memcpy(buf + pos + 4, q[i], ql);
        pos += 4 + ql;
    }
    c_opt(s, opt, buf, (uint32_t)pos);
}

/* Expect one NBD_REP_META_CONTEXT for base:allocation, then the ACK. */
static void c_expect_base_allocation(struct srv *s, uint32_t opt, uint32_t id)
{
    struct rep r;
    c_expect(s, opt, NBD_REP_META_CONTEXT, &r);
    assert_int_equal(r.len, 4 + strlen("base:allocation"));
    assert_int_equal(get_be32(r.data), id);
    assert_memory_equal(r.data + 4, "base:allocation", r.len - 4);
    c_expect_simple(s, opt, NBD_REP_ACK);
}

static void c_structured(struct srv *s)
{
    c_opt(s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    c_expect_simple(s, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
}

static const uint32_t FIXED = NBD_FLAG_C_FIXED_NEWSTYLE;
static const uint32_t FIXED_NZ = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/* ---- EXPORT_NAME ---- */

static void test_export_name_zeroes(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED);
    c_opt(s, NBD_OPT_EXPORT_NAME, "a", 1);
    uint8_t out[8 + 2 + 124], zero[124] = {0};
    assert_int_equal(c_read(s, out, sizeof out), 0);
    assert_true(get_be64(out) == 1 * MIB);
    assert_int_equal(get_be16(out + 8), NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY);
    assert_memory_equal(out + 10, zero, sizeof zero);
    c_expect_eof(s);

    assert_int_equal(srv_finish(s), 0);
    assert_string_equal(s->res.name, "a");
    assert_false(s->res.no_zeroes);
    assert_false(s->res.structured);
    assert_false(s->res.base_allocation);
    assert_false(s->res.tls_active);
    assert_int_equal(s->res.tflags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY);
    assert_true(s->res.info.size == 1 * MIB);
    assert_int_equal(s->fake.gets, 1);
    srv_free(s);
}

static void test_export_name_no_zeroes(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_EXPORT_NAME, "b", 1);
    uint8_t out[10];
    assert_int_equal(c_read(s, out, sizeof out), 0);
    assert_true(get_be64(out) == 3 * MIB + 512);
    assert_int_equal(get_be16(out + 8), NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
    c_expect_eof(s); /* nothing after the flags */

    assert_int_equal(srv_finish(s), 0);
    assert_true(s->res.no_zeroes);
    assert_string_equal(s->res.name, "b");
    srv_free(s);
}

static void test_export_name_unknown_closes(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_EXPORT_NAME, "nope", 4);
    c_expect_eof(s);
    assert_true(srv_finish(s) < 0);
    srv_free(s);
}

static void test_export_name_nul_closes(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_EXPORT_NAME, "a\0", 2);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -EPROTO);
    srv_free(s);
}

/* A client without FIXED_NEWSTYLE (old nbd-client) may still pick an export. */
static void test_export_name_nonfixed_client(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, 0);
    c_opt(s, NBD_OPT_EXPORT_NAME, "a", 1);
    uint8_t out[134];
    assert_int_equal(c_read(s, out, sizeof out), 0);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), 0);
    srv_free(s);
}

/* ---- INFO / GO ---- */

static void test_go_block_size(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    const uint16_t reqs[] = {NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, 999 /* unknown: ignored */};
    c_go(s, NBD_OPT_GO, "a", reqs, 3);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_true(g.size == 1 * MIB);
    assert_int_equal(g.tflags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY);
    assert_true(g.bs_seen);
    assert_int_equal(g.min, 1);
    assert_int_equal(g.pref, 4096);
    assert_int_equal(g.max, 32 * MIB);
    assert_string_equal(g.name, "a");
    assert_string_equal(g.desc, ""); /* not requested */
    c_expect_eof(s);                 /* no EXPORT_NAME-style trailer */

    assert_int_equal(srv_finish(s), 0);
    assert_string_equal(s->res.name, "a");
    assert_int_equal(s->res.info.min_block, 1);
    assert_int_equal(s->res.tflags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY);
    srv_free(s);
}

/* Block sizes are sent even when not requested, with defaults filled in. */
static void test_go_block_size_defaults(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_go(s, NBD_OPT_GO, "b", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_true(g.size == 3 * MIB + 512);
    assert_true(g.bs_seen);
    assert_int_equal(g.min, 1);
    assert_int_equal(g.pref, NBD_PREFERRED_BLOCK);
    assert_int_equal(g.max, NBD_MAX_PAYLOAD);
    assert_string_equal(g.name, "");
    assert_int_equal(srv_finish(s), 0);
    assert_int_equal(s->res.info.pref_block, NBD_PREFERRED_BLOCK);
    srv_free(s);
}

static void test_info_then_go(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    const uint16_t reqs[] = {NBD_INFO_DESCRIPTION, NBD_INFO_NAME};
    c_go(s, NBD_OPT_INFO, "a", reqs, 2);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_INFO, &g);
    assert_string_equal(g.desc, "export a");
    assert_string_equal(g.name, "a");
    assert_true(g.size == 1 * MIB);

    /* "b" has no description: none is sent. */
    c_go(s, NBD_OPT_INFO, "b", reqs, 2);
    c_go_replies(s, NBD_OPT_INFO, &g);
    assert_string_equal(g.desc, "");
    assert_string_equal(g.name, "b");

    c_go(s, NBD_OPT_GO, "b", NULL, 0);
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_string_equal(s->res.name, "b");
    assert_int_equal(s->fake.gets, 1); /* INFO took no lasting reference */
    srv_free(s);
}

static void test_go_unknown_then_go(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_go(s, NBD_OPT_GO, "zzz", NULL, 0);
    struct rep r;
    c_expect(s, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, &r);
    c_go(s, NBD_OPT_INFO, "", NULL, 0); /* no default export here */
    c_expect_simple(s, NBD_OPT_INFO, NBD_REP_ERR_UNKNOWN);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_string_equal(s->res.name, "a");
    srv_free(s);
}

static void test_go_inconsistent_lengths(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    uint8_t buf[64];
    const uint16_t one[] = {NBD_INFO_NAME};

    /* Shorter than the fixed fields. */
    c_opt(s, NBD_OPT_GO, "\0\0\0", 3);
    c_expect_simple(s, NBD_OPT_GO, NBD_REP_ERR_INVALID);

    /* Name length past the end. */
    size_t len = build_go(buf, "a", NULL, 0);
    put_be32(buf, 200);
    c_opt(s, NBD_OPT_GO, buf, (uint32_t)len);
    c_expect_simple(s, NBD_OPT_GO, NBD_REP_ERR_INVALID);

    /* Request count claims more than is there. */
    len = build_go(buf, "a", one, 1);
    put_be16(buf + 5, 3);
    c_opt(s, NBD_OPT_GO, buf, (uint32_t)len);
    c_expect_simple(s, NBD_OPT_GO, NBD_REP_ERR_INVALID);

    /* Trailing garbage. */
    len = build_go(buf, "a", one, 1);
    buf[len++] = 0x55;
    c_opt(s, NBD_OPT_INFO, buf, (uint32_t)len);
    c_expect_simple(s, NBD_OPT_INFO, NBD_REP_ERR_INVALID);

    /* Name with an embedded NUL. */
    len = build_go(buf,
                   "a\x01"
                   "b",
                   NULL, 0);
    buf[5] = 0;
    c_opt(s, NBD_OPT_GO, buf, (uint32_t)len);
    c_expect_simple(s, NBD_OPT_GO, NBD_REP_ERR_INVALID);

    assert_int_equal(s->fake.gets, 0);
    c_opt(s, NBD_OPT_ABORT, NULL, 0);
    c_expect_simple(s, NBD_OPT_ABORT, NBD_REP_ACK);
    assert_int_equal(srv_finish(s), -ECONNABORTED);
    srv_free(s);
}

/* A name over NBD_MAX_STRING inside an otherwise valid option. */
static void test_go_name_too_long(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    uint32_t nlen = NBD_MAX_STRING + 1;
    uint8_t *buf = calloc(1, nlen + 6);
    assert_non_null(buf);
    put_be32(buf, nlen);
    memset(buf + 4, 'x', nlen);
    c_opt(s, NBD_OPT_GO, buf, nlen + 6);
    struct rep r;
    c_reply(s, &r);
    assert_true(r.type == NBD_REP_ERR_TOO_BIG || r.type == NBD_REP_ERR_INVALID);
    free(buf);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    srv_free(s);
}

/* True when buf[0..len) is well-formed UTF-8 (structure only). */
static bool utf8_ok(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = buf[i];
        size_t need = c < 0x80 ? 0 : c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 99;
        if (need == 99 || i + need >= len)
            return false;
        for (size_t k = 1; k <= need; k++)
            if ((buf[i + k] & 0xc0) != 0x80)
                return false;
        i += need + 1;
    }
    return true;
}

/* An error message quoting a long multi-byte name is cut on a character
 * boundary. */
static void test_error_message_utf8(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    char name[401];
    for (int i = 0; i < 200; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2); /* U+00E9 */
    name[400] = 0;
    uint8_t buf[512];
    size_t len = build_go(buf, name, NULL, 0);
    c_opt(s, NBD_OPT_GO, buf, (uint32_t)len);
    struct rep r;
    c_expect(s, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, &r);
    assert_true(r.len < 256);
    assert_true(utf8_ok(r.data, r.len));
    c_opt(s, NBD_OPT_ABORT, NULL, 0);
    c_expect_simple(s, NBD_OPT_ABORT, NBD_REP_ACK);
    assert_int_equal(srv_finish(s), -ECONNABORTED);
    srv_free(s);
}

/* ---- LIST, ABORT, unknown options ---- */

static void test_list(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_LIST, NULL, 0);

    struct rep r;
    c_expect(s, NBD_OPT_LIST, NBD_REP_SERVER, &r);
    assert_int_equal(get_be32(r.data), 1);
    assert_int_equal(r.len, 4 + 1 + strlen("export a"));
    assert_memory_equal(r.data + 4, "aexport a", r.len - 4);
    c_expect(s, NBD_OPT_LIST, NBD_REP_SERVER, &r);
    assert_int_equal(r.len, 5);
    assert_int_equal(get_be32(r.data), 1);
    assert_int_equal(r.data[4], 'b');
    c_expect_simple(s, NBD_OPT_LIST, NBD_REP_ACK);

    /* LIST takes no data. */
    c_opt(s, NBD_OPT_LIST, "x", 1);
    c_expect_simple(s, NBD_OPT_LIST, NBD_REP_ERR_INVALID);

    c_opt(s, NBD_OPT_ABORT, NULL, 0);
    c_expect_simple(s, NBD_OPT_ABORT, NBD_REP_ACK);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -ECONNABORTED);
    srv_free(s);
}

static void test_abort(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_ABORT, NULL, 0);
    c_expect_simple(s, NBD_OPT_ABORT, NBD_REP_ACK);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -ECONNABORTED);
    srv_free(s);
}

/* ABORT then an immediate close: the lost ACK must not matter. */
static void test_abort_without_waiting(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_ABORT, NULL, 0);
    shutdown(s->cfd, SHUT_RDWR);
    assert_int_equal(srv_finish(s), -ECONNABORTED);
    srv_free(s);
}

static void test_unknown_options(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, 99, "0123456789", 10);
    c_expect_simple(s, 99, NBD_REP_ERR_UNSUP);
    c_opt(s, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
    c_expect_simple(s, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_UNSUP);
    c_opt(s, NBD_OPT_PEEK_EXPORT, NULL, 0);
    c_expect_simple(s, NBD_OPT_PEEK_EXPORT, NBD_REP_ERR_UNSUP);
    c_opt(s, 0xffffffffu, "x", 1);
    c_expect_simple(s, 0xffffffffu, NBD_REP_ERR_UNSUP);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    srv_free(s);
}

/* ---- structured replies and meta contexts ---- */

static void test_structured_reply(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_STRUCTURED_REPLY, "x", 1);
    c_expect_simple(s, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID);
    c_structured(s);
    c_structured(s); /* a repeat is harmless */
    c_go(s, NBD_OPT_GO, "b", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(g.tflags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_DF);
    assert_int_equal(srv_finish(s), 0);
    assert_true(s->res.structured);
    assert_false(s->res.base_allocation);
    assert_int_equal(s->res.tflags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_DF);
    srv_free(s);
}

static void test_set_meta_base_allocation(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_structured(s);
    const char *q[] = {"base:allocation"};
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "a", q, 1);
    c_expect_base_allocation(s, NBD_OPT_SET_META_CONTEXT, NBD_BASE_ALLOCATION_ID);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_true(s->res.structured);
    assert_true(s->res.base_allocation);
    srv_free(s);
}

/* The same, but chosen with EXPORT_NAME. */
static void test_set_meta_then_export_name(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_structured(s);
    const char *q[] = {"x-other:thing", "base:"};
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "b", q, 2);
    c_expect_base_allocation(s, NBD_OPT_SET_META_CONTEXT, NBD_BASE_ALLOCATION_ID);
    c_opt(s, NBD_OPT_EXPORT_NAME, "b", 1);
    uint8_t out[10];
    assert_int_equal(c_read(s, out, sizeof out), 0);
    assert_true(get_be16(out + 8) & NBD_FLAG_SEND_DF);
    assert_int_equal(srv_finish(s), 0);
    assert_true(s->res.base_allocation);
    srv_free(s);
}

static void test_meta_without_structured(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    const char *q[] = {"base:allocation"};
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "a", q, 1);
    c_expect_simple(s, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID);
    c_meta(s, NBD_OPT_LIST_META_CONTEXT, "a", NULL, 0);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_false(g.tflags & NBD_FLAG_SEND_DF);
    assert_int_equal(srv_finish(s), 0);
    assert_false(s->res.structured);
    assert_false(s->res.base_allocation);
    srv_free(s);
}

static void test_list_meta(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_structured(s);

    c_meta(s, NBD_OPT_LIST_META_CONTEXT, "a", NULL, 0); /* everything */
    c_expect_base_allocation(s, NBD_OPT_LIST_META_CONTEXT, 0);

    const char *ns[] = {"base:"};
    c_meta(s, NBD_OPT_LIST_META_CONTEXT, "a", ns, 1);
    c_expect_base_allocation(s, NBD_OPT_LIST_META_CONTEXT, 0);

    /* Two queries that both match: still one context. */
    const char *both[] = {"base:allocation", "base:"};
    c_meta(s, NBD_OPT_LIST_META_CONTEXT, "b", both, 2);
    c_expect_base_allocation(s, NBD_OPT_LIST_META_CONTEXT, 0);

    const char *none[] = {"qemu:dirty-bitmap:x", "base:alloc"};
    c_meta(s, NBD_OPT_LIST_META_CONTEXT, "a", none, 2);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK);

    c_meta(s, NBD_OPT_LIST_META_CONTEXT, "zzz", NULL, 0);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_UNKNOWN);

    /* Listing selects nothing. */
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_false(s->res.base_allocation);
    srv_free(s);
}

static void test_meta_other_export_dropped(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_structured(s);
    const char *q[] = {"base:allocation"};
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "a", q, 1);
    c_expect_base_allocation(s, NBD_OPT_SET_META_CONTEXT, NBD_BASE_ALLOCATION_ID);
    c_go(s, NBD_OPT_GO, "b", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_string_equal(s->res.name, "b");
    assert_true(s->res.structured);
    assert_false(s->res.base_allocation);
    srv_free(s);
}

/* A later SET replaces the selection, also with nothing, and also on error. */
static void test_set_meta_replaces(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_structured(s);
    const char *q[] = {"base:allocation"};
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "a", q, 1);
    c_expect_base_allocation(s, NBD_OPT_SET_META_CONTEXT, NBD_BASE_ALLOCATION_ID);
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "a", NULL, 0); /* SET with no queries: none */
    c_expect_simple(s, NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_false(s->res.base_allocation);
    srv_free(s);

    s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_structured(s);
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "a", q, 1);
    c_expect_base_allocation(s, NBD_OPT_SET_META_CONTEXT, NBD_BASE_ALLOCATION_ID);
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "zzz", q, 1);
    c_expect_simple(s, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_UNKNOWN);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_false(s->res.base_allocation);
    srv_free(s);
}

static void test_meta_bad_lengths(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_structured(s);
    uint8_t buf[64];

    /* Too short for name length + count. */
    c_opt(s, NBD_OPT_LIST_META_CONTEXT, "\0\0\0\0\0", 5);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);

    /* name "a", 1 query "base:" : 4+1+4+4+5 = 18 bytes. */
    put_be32(buf, 1);
    buf[4] = 'a';
    put_be32(buf + 5, 1);
    put_be32(buf + 9, 5);
    memcpy(buf + 13, "base:", 5);
    c_opt(s, NBD_OPT_SET_META_CONTEXT, buf, 18); /* sanity: valid as is */
    c_expect_base_allocation(s, NBD_OPT_SET_META_CONTEXT, NBD_BASE_ALLOCATION_ID);

    put_be32(buf, 100); /* name length past the end */
    c_opt(s, NBD_OPT_SET_META_CONTEXT, buf, 18);
    c_expect_simple(s, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID);
    put_be32(buf, 1);

    put_be32(buf + 5, 2); /* count says 2, only 1 there */
    c_opt(s, NBD_OPT_LIST_META_CONTEXT, buf, 18);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);
    put_be32(buf + 5, 1000000); /* count absurd */
    c_opt(s, NBD_OPT_LIST_META_CONTEXT, buf, 18);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);
    put_be32(buf + 5, 1);

    put_be32(buf + 9, 6); /* query length past the end */
    c_opt(s, NBD_OPT_LIST_META_CONTEXT, buf, 18);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);
    put_be32(buf + 9, 5);

    buf[18] = 'z'; /* trailing byte */
    c_opt(s, NBD_OPT_LIST_META_CONTEXT, buf, 19);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);

    buf[13 + 4] = 0; /* NUL inside the query */
    c_opt(s, NBD_OPT_LIST_META_CONTEXT, buf, 18);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);
    buf[13 + 4] = ':';

    buf[4] = 0; /* NUL as the export name */
    c_opt(s, NBD_OPT_LIST_META_CONTEXT, buf, 18);
    c_expect_simple(s, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);
    buf[4] = 'a';

    /* The failed SETs above cleared the selection. */
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_false(s->res.base_allocation);
    srv_free(s);
}

/* Option numbers as real clients send them (libnbd, qemu): literal values,
 * so a wrong constant in proto.h cannot hide behind the same constant here. */
static void test_option_numbers_on_the_wire(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, 8, NULL, 0); /* STRUCTURED_REPLY */
    c_expect_simple(s, 8, NBD_REP_ACK);
    const char *q[] = {"base:allocation"};
    c_meta(s, 9, "a", q, 1); /* LIST_META_CONTEXT */
    c_expect_base_allocation(s, 9, 0);
    c_meta(s, 10, "a", q, 1); /* SET_META_CONTEXT */
    c_expect_base_allocation(s, 10, NBD_BASE_ALLOCATION_ID);
    c_opt(s, 11, NULL, 0); /* EXTENDED_HEADERS: not (yet) supported */
    c_expect_simple(s, 11, NBD_REP_ERR_UNSUP);
    c_go(s, 7, "a", NULL, 0); /* GO */
    struct go_seen g;
    c_go_replies(s, 7, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_true(s->res.base_allocation);
    srv_free(s);
}

/* ---- protocol violations and limits ---- */

static void test_bad_magic(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    uint8_t h[16];
    put_be64(h, NBD_MAGIC); /* not IHAVEOPT */
    put_be32(h + 8, NBD_OPT_GO);
    put_be32(h + 12, 0);
    c_write(s, h, sizeof h);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -EPROTO);
    srv_free(s);
}

static void test_bad_client_flags(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ | (1u << 2));
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -EPROTO);
    srv_free(s);

    s = srv_run(NBD_TLS_OFF);
    c_greet(s, 0x80000000u);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -EPROTO);
    srv_free(s);
}

static void test_option_too_big_skipped(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    uint32_t len = 200 * 1024;
    uint8_t *junk = malloc(len);
    assert_non_null(junk);
    memset(junk, 0xa5, len);
    c_opt(s, NBD_OPT_GO, junk, len); /* the server drains it as we write */
    free(junk);
    c_expect_simple(s, NBD_OPT_GO, NBD_REP_ERR_TOO_BIG);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    srv_free(s);
}

static void test_option_huge_closes(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt_hdr(s, NBD_OPT_INFO, 0x80000000u);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -EPROTO);
    srv_free(s);

    /* EXPORT_NAME has no error reply: an over-long name closes at once. */
    s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt_hdr(s, NBD_OPT_EXPORT_NAME, NBD_MAX_STRING + 1);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -EPROTO);
    srv_free(s);
}

static void test_truncated_header(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    uint8_t h[8];
    put_be64(h, NBD_IHAVEOPT);
    c_write(s, h, sizeof h);
    shutdown(s->cfd, SHUT_WR);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -ECONNRESET);
    srv_free(s);
}

static void test_truncated_data(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt_hdr(s, NBD_OPT_GO, 100);
    c_write(s, "abc", 3);
    shutdown(s->cfd, SHUT_WR);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -ECONNRESET);
    srv_free(s);
}

static void test_eof_between_options(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_structured(s);
    shutdown(s->cfd, SHUT_WR);
    assert_int_equal(srv_finish(s), -ECONNABORTED);
    srv_free(s);
}

static void test_timeout(void **state)
{
    (void)state;
    struct srv *s = srv_new(NBD_TLS_OFF);
    s->timeout_ms = 100;
    srv_start(s);
    c_greet(s, FIXED_NZ);
    c_opt_hdr(s, NBD_OPT_GO, 100); /* ...and the data never comes */
    uint64_t t0 = now_ns();
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -ETIMEDOUT);
    assert_true(now_ns() - t0 < 3000000000ull);
    srv_free(s);
}

static void test_option_limit(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    unsigned answered = 0;
    for (;;) {
        /* Once the server gives up, this send may fail with EPIPE. */
        uint8_t o[16];
        put_be64(o, NBD_IHAVEOPT);
        put_be32(o + 8, NBD_OPT_STRUCTURED_REPLY);
        put_be32(o + 12, 0);
        if (send(s->cfd, o, sizeof o, MSG_NOSIGNAL) != (ssize_t)sizeof o)
            break;
        uint8_t h[20];
        if (c_read(s, h, sizeof h) < 0)
            break;
        assert_int_equal(get_be32(h + 12), NBD_REP_ACK);
        answered++;
        assert_true(answered <= 100000);
    }
    assert_true(answered >= 16);
    assert_int_equal(srv_finish(s), -EPROTO);
    srv_free(s);
}

/* ---- TLS and shutdown ---- */

static void test_starttls_off(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_STARTTLS, NULL, 0);
    c_expect_simple(s, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_false(s->res.tls_active);
    srv_free(s);
}

static void test_tls_require(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_REQUIRE);
    c_greet(s, FIXED_NZ);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    c_expect_simple(s, NBD_OPT_GO, NBD_REP_ERR_TLS_REQD);
    c_opt(s, NBD_OPT_LIST, NULL, 0);
    c_expect_simple(s, NBD_OPT_LIST, NBD_REP_ERR_TLS_REQD);
    c_opt(s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    c_expect_simple(s, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_TLS_REQD);
    c_opt(s, NBD_OPT_STARTTLS, "x", 1);
    c_expect_simple(s, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID);
    assert_int_equal(s->starttls_calls, 0);

    c_opt(s, NBD_OPT_STARTTLS, NULL, 0);
    c_expect_simple(s, NBD_OPT_STARTTLS, NBD_REP_ACK);
    /* (a real client would run the TLS handshake now) */
    c_opt(s, NBD_OPT_STARTTLS, NULL, 0);
    c_expect_simple(s, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID);
    c_structured(s);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_int_equal(s->starttls_calls, 1);
    assert_true(s->res.tls_active);
    assert_true(s->res.structured);
    srv_free(s);
}

static void test_tls_require_export_name_closes(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_REQUIRE);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_EXPORT_NAME, "a", 1);
    c_expect_eof(s);
    assert_true(srv_finish(s) < 0);
    srv_free(s);
}

/* Negotiation in the clear does not survive the upgrade. */
static void test_tls_forgets_cleartext_state(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_ON);
    c_greet(s, FIXED_NZ);
    c_structured(s);
    const char *q[] = {"base:allocation"};
    c_meta(s, NBD_OPT_SET_META_CONTEXT, "a", q, 1);
    c_expect_base_allocation(s, NBD_OPT_SET_META_CONTEXT, NBD_BASE_ALLOCATION_ID);
    c_opt(s, NBD_OPT_STARTTLS, NULL, 0);
    c_expect_simple(s, NBD_OPT_STARTTLS, NBD_REP_ACK);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_false(g.tflags & NBD_FLAG_SEND_DF);
    assert_int_equal(srv_finish(s), 0);
    assert_true(s->res.tls_active);
    assert_false(s->res.structured);
    assert_false(s->res.base_allocation);
    srv_free(s);
}

/* TLS_ON: options work without TLS too. */
static void test_tls_optional(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_ON);
    c_greet(s, FIXED_NZ);
    c_go(s, NBD_OPT_GO, "b", NULL, 0);
    struct go_seen g;
    c_go_replies(s, NBD_OPT_GO, &g);
    assert_int_equal(srv_finish(s), 0);
    assert_false(s->res.tls_active);
    assert_int_equal(s->starttls_calls, 0);
    srv_free(s);
}

static void test_starttls_failure_closes(void **state)
{
    (void)state;
    struct srv *s = srv_new(NBD_TLS_REQUIRE);
    s->starttls_ret = -EIO;
    srv_start(s);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_STARTTLS, NULL, 0);
    c_expect_simple(s, NBD_OPT_STARTTLS, NBD_REP_ACK);
    c_expect_eof(s);
    assert_int_equal(srv_finish(s), -EIO);
    assert_int_equal(s->starttls_calls, 1);
    srv_free(s);
}

static void test_shutting_down(void **state)
{
    (void)state;
    struct srv *s = srv_new(NBD_TLS_OFF);
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    srv_start(s);
    c_greet(s, FIXED_NZ);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    c_expect_simple(s, NBD_OPT_GO, NBD_REP_ERR_SHUTDOWN);
    c_opt(s, NBD_OPT_LIST, NULL, 0);
    c_expect_simple(s, NBD_OPT_LIST, NBD_REP_ERR_SHUTDOWN);
    c_opt(s, NBD_OPT_ABORT, NULL, 0);
    c_expect_simple(s, NBD_OPT_ABORT, NBD_REP_ACK);
    assert_int_equal(srv_finish(s), -ECONNABORTED);
    assert_int_equal(s->fake.gets, 0);
    srv_free(s);

    s = srv_new(NBD_TLS_OFF);
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    srv_start(s);
    c_greet(s, FIXED_NZ);
    c_opt(s, NBD_OPT_EXPORT_NAME, "a", 1);
    c_expect_eof(s);
    assert_true(srv_finish(s) < 0);
    srv_free(s);
}

/* The client vanishes while the server is answering GO: the reference
 * taken for GO must be returned. */
static void test_go_send_failure_releases(void **state)
{
    (void)state;
    struct srv *s = srv_run(NBD_TLS_OFF);
    c_greet(s, FIXED_NZ);
    c_go(s, NBD_OPT_GO, "a", NULL, 0);
    shutdown(s->cfd, SHUT_RDWR); /* replies now fail with EPIPE */
    int r = srv_finish(s);
    /* The kernel may have accepted the replies before the shutdown. */
    assert_true(r == 0 || r == -EPIPE || r == -ECONNRESET);
    srv_free(s);
}

/* A client that sends options and never reads the replies must not hold
 * the handshake past its deadline: sends wait within it too (a flood of
 * NBD_OPT_LIST once held a connection slot forever). */
static void test_option_flood_without_reading(void **state)
{
    (void)state;
    struct srv *s = srv_new(NBD_TLS_OFF);
    s->deadline_ms = 300;
    srv_start(s);
    c_greet(s, FIXED_NZ);
    uint64_t t0 = now_ns();
    assert_int_equal(fcntl(s->cfd, F_SETFL, O_NONBLOCK), 0);
    uint8_t h[16];
    put_be64(h, NBD_IHAVEOPT);
    put_be32(h + 8, NBD_OPT_LIST);
    put_be32(h + 12, 0);
    unsigned sent = 0;
    while (now_ns() - t0 < 2000000000ull) {
        ssize_t n = send(s->cfd, h, sizeof h, MSG_NOSIGNAL);
        if (n == (ssize_t)sizeof h)
            sent++;
        else if (n < 0 && errno == EAGAIN)
            usleep(1000); /* both buffers full: the server is stuck sending */
        else
            break; /* closed by the server */
    }
    assert_int_equal(srv_finish(s), -ETIMEDOUT);
    uint64_t took = now_ns() - t0;
    assert_true(sent > 100);           /* replies did fill the buffers */
    assert_true(took < 1500000000ull); /* ended by the deadline, not by us */
    srv_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_name_zeroes),
        cmocka_unit_test(test_export_name_no_zeroes),
        cmocka_unit_test(test_export_name_unknown_closes),
        cmocka_unit_test(test_export_name_nul_closes),
        cmocka_unit_test(test_export_name_nonfixed_client),
        cmocka_unit_test(test_go_block_size),
        cmocka_unit_test(test_go_block_size_defaults),
        cmocka_unit_test(test_info_then_go),
        cmocka_unit_test(test_go_unknown_then_go),
        cmocka_unit_test(test_go_inconsistent_lengths),
        cmocka_unit_test(test_go_name_too_long),
        cmocka_unit_test(test_error_message_utf8),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_abort_without_waiting),
        cmocka_unit_test(test_unknown_options),
        cmocka_unit_test(test_structured_reply),
        cmocka_unit_test(test_set_meta_base_allocation),
        cmocka_unit_test(test_set_meta_then_export_name),
        cmocka_unit_test(test_meta_without_structured),
        cmocka_unit_test(test_list_meta),
        cmocka_unit_test(test_meta_other_export_dropped),
        cmocka_unit_test(test_set_meta_replaces),
        cmocka_unit_test(test_meta_bad_lengths),
        cmocka_unit_test(test_option_numbers_on_the_wire),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_bad_client_flags),
        cmocka_unit_test(test_option_too_big_skipped),
        cmocka_unit_test(test_option_huge_closes),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_eof_between_options),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_option_limit),
        cmocka_unit_test(test_starttls_off),
        cmocka_unit_test(test_tls_require),
        cmocka_unit_test(test_tls_require_export_name_closes),
        cmocka_unit_test(test_tls_forgets_cleartext_state),
        cmocka_unit_test(test_tls_optional),
        cmocka_unit_test(test_starttls_failure_closes),
        cmocka_unit_test(test_shutting_down),
        cmocka_unit_test(test_go_send_failure_releases),
        cmocka_unit_test(test_option_flood_without_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
