/* NBD fixed newstyle handshake: greeting, client flags, then option haggling
 * until the client picks an export (NBD_OPT_GO / NBD_OPT_EXPORT_NAME) or
 * leaves. Wire formats follow the NBD protocol document (doc/proto.md).
 *
 * Memory is bounded: one NBD_MAX_OPTION_LEN buffer per handshake; larger
 * options are skipped without being stored. */
#include "frontend/nbd/handshake.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

/* Options above NBD_MAX_OPTION_LEN but at most this long are read, thrown
 * away and answered with NBD_REP_ERR_TOO_BIG; anything longer is not worth
 * reading and ends the connection. */
#define OPT_SKIP_MAX (1u << 20)
/* A client that never picks an export gets cut off after this many. */
#define MAX_OPTIONS 1024
/* Fixed by the protocol: the trailer after NBD_OPT_EXPORT_NAME's reply. */
#define EXPORT_NAME_ZEROES 124

#define OPT_HDR_LEN 16 /* IHAVEOPT, option, length */
#define REP_HDR_LEN 20 /* reply magic, option, type, length */

static const char base_allocation[] = "base:allocation";

/* Option handler outcome besides a negative errno (close). */
enum {
    OPT_NEXT = 0, /* keep haggling */
    OPT_DONE = 1, /* export chosen: enter transmission */
};

struct hs {
    struct conn_io *io;
    const struct nbd_exports *exports;
    const struct nbd_handshake_cfg *cfg;
    struct nbd_handshake_result *res;

    uint32_t opt; /* option being answered */
    uint32_t len; /* its data length (<= NBD_MAX_OPTION_LEN once read) */

    bool structured;
    bool meta_selected;                 /* base:allocation chosen by SET_META_CONTEXT... */
    int send_err;                       /* first send failure inside an exports->list() walk */
    char meta_export[NBD_MAX_NAME_BUF]; /* ...for this export */
    char name[NBD_MAX_NAME_BUF];        /* NUL-terminated copy of a name */
    uint8_t buf[NBD_MAX_OPTION_LEN];    /* option data */
};

static void hs_freep(struct hs **p)
{
    free(*p);
}

static const char *opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        return "EXPORT_NAME";
    case NBD_OPT_ABORT:
        return "ABORT";
    case NBD_OPT_LIST:
        return "LIST";
    case NBD_OPT_PEEK_EXPORT:
        return "PEEK_EXPORT";
    case NBD_OPT_STARTTLS:
        return "STARTTLS";
    case NBD_OPT_INFO:
        return "INFO";
    case NBD_OPT_GO:
        return "GO";
    case NBD_OPT_STRUCTURED_REPLY:
        return "STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT:
        return "LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT:
        return "SET_META_CONTEXT";
    case NBD_OPT_EXTENDED_HEADERS:
        return "EXTENDED_HEADERS";
    default:
        return "unknown";
    }
}

static bool shutting_down(const struct hs *h)
{
    return h->cfg->shutting_down && __atomic_load_n(h->cfg->shutting_down, __ATOMIC_ACQUIRE);
}

/* ---- replies ---- */

/* One option reply: header plus the concatenation of iov[0..n). */
static int reply_iov(struct hs *h, uint32_t type, const struct iovec *iov, int n)
{
    uint8_t hdr[REP_HDR_LEN];
    struct iovec v[1 + 3]; /* callers pass at most three pieces */
    size_t len = 0;

    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    put_be64(hdr, NBD_REP_MAGIC);
    put_be32(hdr + 8, h->opt);
    put_be32(hdr + 12, type);
    put_be32(hdr + 16, (uint32_t)len);
    v[0] = (struct iovec){hdr, sizeof hdr};
    for (int i = 0; i < n; i++)
        v[i + 1] = iov[i];
    return conn_io_writev_full(h->io, v, n + 1);
}

static int reply(struct hs *h, uint32_t type, const void *data, size_t len)
{
    struct iovec iov = {(void *)data, len};
    return reply_iov(h, type, &iov, 1);
}

static int reply_ack(struct hs *h)
{
    return reply(h, NBD_REP_ACK, NULL, 0);
}

/* Length of s[0..len) without a trailing incomplete UTF-8 sequence, so a
 * truncated message (which may quote a client's name) stays valid UTF-8. */
static size_t utf8_trim(const char *s, size_t len)
{
    size_t i = len, cont = 0;
    while (i > 0 && cont < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
        i--;
        cont++;
    }
    if (i == 0)
        return len;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
    return cont < need ? i - 1 : len;
}

/* Error reply with a message for the human behind the client. Returns the
 * send result, so callers `return reply_err(...)` to keep haggling. */
__attribute__((format(printf, 3, 4))) static int reply_err(struct hs *h, uint32_t type,
                                                           const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : MIN((size_t)n, sizeof msg - 1);
    if (n > 0 && (size_t)n > len)
        len = utf8_trim(msg, len);
    return reply(h, type, msg, len);
}

/* ---- parsing helpers ---- */

/* Copy a wire string into h->name for the exports callbacks. Returns 0, or
 * -EINVAL when it contains a NUL or is too long for a name. */
static int take_name(struct hs *h, const uint8_t *p, uint32_t len)
{
    if (len > NBD_MAX_STRING || memchr(p, 0, len))
        return -EINVAL;
    memcpy(h->name, p, len);
    h->name[len] = '\0';
    return 0;
}

/* Fill what a sloppy provider left out rather than advertise nonsense
 * block sizes (a minimum of 0 would make every request invalid). */
static void block_size_defaults(struct nbd_export_info *info)
{
    if (info->min_block == 0)
        info->min_block = 1;
    if (info->pref_block == 0)
        info->pref_block = MAX(NBD_PREFERRED_BLOCK, info->min_block);
    if (info->max_block == 0)
        info->max_block = NBD_MAX_PAYLOAD;
}

/* Look h->name up; handle may be NULL for a reference-free check. Replies
 * NBD_REP_ERR_UNKNOWN itself and then returns 1 (keep haggling), or returns
 * 0 on success, or a negative errno if that reply failed. */
static int lookup(struct hs *h, struct nbd_export_info *info, void **handle)
{
    *info = (struct nbd_export_info){0};
    int r = h->exports->get(h->exports->opaque, h->name, info, handle);
    if (r == 0) {
        block_size_defaults(info);
        return 0;
    }
    if (handle)
        *handle = NULL;
    log_debug(nbd, "%s: export '%s' not available: %s", opt_name(h->opt), h->name, strerror(-r));
    r = reply_err(h, NBD_REP_ERR_UNKNOWN, "export '%s' not available", h->name);
    return r < 0 ? r : 1;
}

static uint16_t tflags_for(const struct hs *h, const struct nbd_export_info *info)
{
    uint16_t f = (uint16_t)((info->tflags | NBD_FLAG_HAS_FLAGS) & ~NBD_FLAG_SEND_DF);
    /* DF is only meaningful (and only allowed) with structured replies. */
    if (h->structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

/* Record the chosen export; takes over the reference in handle. */
static void finish(struct hs *h, const struct nbd_export_info *info, void *handle)
{
    struct nbd_handshake_result *res = h->res;
    res->handle = handle;
    memcpy(res->name, h->name, sizeof res->name);
    res->info = *info;
    res->tflags = tflags_for(h, info);
    res->structured = h->structured;
    /* Contexts were selected for one export; a different one gets none. */
    res->base_allocation =
        h->structured && h->meta_selected && strcmp(h->meta_export, h->name) == 0;
}

/* ---- options ---- */

static int opt_export_name(struct hs *h)
{
    struct nbd_export_info info = {0};
    void *handle = NULL;

    /* No error path exists for this option: every refusal is a close. */
    if (take_name(h, h->buf, h->len) < 0) {
        log_warn(nbd, "EXPORT_NAME: invalid name");
        return -EPROTO;
    }
    int r = h->exports->get(h->exports->opaque, h->name, &info, &handle);
    if (r < 0) {
        log_debug(nbd, "EXPORT_NAME: export '%s' not available, closing", h->name);
        return r;
    }
    block_size_defaults(&info);

    uint8_t out[8 + 2 + EXPORT_NAME_ZEROES] = {0};
    uint16_t tflags = tflags_for(h, &info);
    put_be64(out, info.size);
    put_be16(out + 8, tflags);
    r = conn_io_write_full(h->io, out, h->res->no_zeroes ? 10 : sizeof out);
    if (r < 0) {
        h->exports->put(h->exports->opaque, handle);
        return r;
    }
    finish(h, &info, handle);
    return OPT_DONE;
}

static int send_info_string(struct hs *h, uint16_t type, const char *s)
{
    uint8_t t[2];
    put_be16(t, type);
    struct iovec iov[2] = {{t, 2}, {(void *)s, strnlen(s, NBD_MAX_STRING)}};
    return reply_iov(h, NBD_REP_INFO, iov, 2);
}

/* NBD_OPT_INFO and NBD_OPT_GO: u32 name length, name, u16 count, u16 each. */
static int opt_info_go(struct hs *h)
{
    const uint8_t *p = h->buf;
    uint32_t len = h->len;

    if (len < 4 + 2)
        return reply_err(h, NBD_REP_ERR_INVALID, "option too short");
    uint32_t nlen = get_be32(p);
    if (nlen > len - 6)
        return reply_err(h, NBD_REP_ERR_INVALID, "name length exceeds option length");
    uint16_t nreq = get_be16(p + 4 + nlen);
    if ((uint64_t)len != 4ull + nlen + 2 + 2ull * nreq)
        return reply_err(h, NBD_REP_ERR_INVALID, "option length does not match its content");
    if (nlen > NBD_MAX_STRING)
        return reply_err(h, NBD_REP_ERR_TOO_BIG, "export name too long");
    if (take_name(h, p + 4, nlen) < 0)
        return reply_err(h, NBD_REP_ERR_INVALID, "export name contains NUL");

    bool want_name = false, want_desc = false;
    for (uint16_t i = 0; i < nreq; i++) {
        /* Unknown requests are ignored, as the protocol asks. */
        switch (get_be16(p + 4 + nlen + 2 + 2u * i)) {
        case NBD_INFO_NAME:
            want_name = true;
            break;
        case NBD_INFO_DESCRIPTION:
            want_desc = true;
            break;
        }
    }

    bool go = h->opt == NBD_OPT_GO;
    struct nbd_export_info info;
    void *handle = NULL;
    int r = lookup(h, &info, go ? &handle : NULL);
    if (r != 0)
        return r < 0 ? r : OPT_NEXT;

    uint8_t ex[2 + 8 + 2];
    put_be16(ex, NBD_INFO_EXPORT);
    put_be64(ex + 2, info.size);
    put_be16(ex + 10, tflags_for(h, &info));
    r = reply(h, NBD_REP_INFO, ex, sizeof ex);

    /* Always sent: a client that did not ask ignores it, and those that
     * do ask (qemu, libnbd) learn our limits either way. */
    uint8_t bs[2 + 4 + 4 + 4];
    put_be16(bs, NBD_INFO_BLOCK_SIZE);
    put_be32(bs + 2, info.min_block);
    put_be32(bs + 6, info.pref_block);
    put_be32(bs + 10, info.max_block);
    if (r == 0)
        r = reply(h, NBD_REP_INFO, bs, sizeof bs);
    if (r == 0 && want_name)
        r = send_info_string(h, NBD_INFO_NAME, h->name);
    if (r == 0 && want_desc && info.description)
        r = send_info_string(h, NBD_INFO_DESCRIPTION, info.description);
    if (r == 0)
        r = reply_ack(h);
    if (r < 0) {
        if (handle)
            h->exports->put(h->exports->opaque, handle);
        return r;
    }
    if (!go)
        return OPT_NEXT;
    finish(h, &info, handle);
    return OPT_DONE;
}

static int list_emit(void *ctx, const char *name, const char *desc)
{
    struct hs *h = ctx;
    size_t nlen = strnlen(name, NBD_MAX_STRING + 1);
    if (nlen > NBD_MAX_STRING)
        return 0; /* a client could not ask for it anyway */
    uint8_t l[4];
    put_be32(l, (uint32_t)nlen);
    struct iovec iov[3] = {{l, 4}, {(void *)name, nlen}, {(void *)desc, 0}};
    if (desc)
        iov[2].iov_len = strnlen(desc, NBD_MAX_STRING);
    int r = reply_iov(h, NBD_REP_SERVER, iov, 3);
    if (r < 0)
        h->send_err = r;
    return r;
}

static int opt_list(struct hs *h)
{
    if (h->len != 0)
        return reply_err(h, NBD_REP_ERR_INVALID, "LIST takes no data");
    if (!h->exports->list)
        return reply_err(h, NBD_REP_ERR_POLICY, "export listing disabled");
    h->send_err = 0;
    int r = h->exports->list(h->exports->opaque, list_emit, h);
    if (h->send_err < 0)
        return h->send_err;
    if (r < 0)
        return reply_err(h, NBD_REP_ERR_POLICY, "export listing failed: %s", strerror(-r));
    return reply_ack(h);
}

static int opt_abort(struct hs *h)
{
    /* The client may already be gone; that changes nothing. */
    (void)reply_ack(h);
    return -ECONNABORTED;
}

static int opt_structured_reply(struct hs *h)
{
    if (h->len != 0)
        return reply_err(h, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
    int r = reply_ack(h);
    if (r == 0)
        h->structured = true;
    return r;
}

/* Does query q (not NUL-terminated) select base:allocation? */
static bool query_matches(const uint8_t *q, uint32_t qlen)
{
    static const char ns[] = "base:";
    if (qlen == sizeof ns - 1 && memcmp(q, ns, qlen) == 0)
        return true;
    return qlen == sizeof base_allocation - 1 && memcmp(q, base_allocation, qlen) == 0;
}

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: u32 export name
 * length, name, u32 query count, then u32 length + string per query. */
static int opt_meta_context(struct hs *h)
{
    const uint8_t *p = h->buf;
    uint32_t len = h->len;
    bool set = h->opt == NBD_OPT_SET_META_CONTEXT;

    /* A new SET replaces the old selection, even if it fails. */
    if (set)
        h->meta_selected = false;
    if (!h->structured)
        return reply_err(h, NBD_REP_ERR_INVALID, "negotiate structured replies first");
    if (len < 4 + 4)
        return reply_err(h, NBD_REP_ERR_INVALID, "option too short");
    uint32_t nlen = get_be32(p);
    if (nlen > len - 8)
        return reply_err(h, NBD_REP_ERR_INVALID, "name length exceeds option length");
    uint32_t nq = get_be32(p + 4 + nlen);
    uint32_t pos = 8 + nlen;
    if (nq > (len - pos) / 4)
        return reply_err(h, NBD_REP_ERR_INVALID, "query count exceeds option length");

    /* Validate every query before answering any of them. */
    bool match = nq == 0 && !set; /* LIST without queries: everything */
    bool too_long = false;
    for (uint32_t i = 0; i < nq; i++) {
        if (len - pos < 4)
            return reply_err(h, NBD_REP_ERR_INVALID, "query %u truncated", i);
        uint32_t qlen = get_be32(p + pos);
        pos += 4;
        if (qlen > len - pos)
            return reply_err(h, NBD_REP_ERR_INVALID, "query %u exceeds option length", i);
        if (memchr(p + pos, 0, qlen))
            return reply_err(h, NBD_REP_ERR_INVALID, "query %u contains NUL", i);
        if (qlen > NBD_MAX_STRING)
            too_long = true;
        else if (query_matches(p + pos, qlen))
            match = true;
        pos += qlen;
    }
    if (pos != len)
        return reply_err(h, NBD_REP_ERR_INVALID, "option length does not match its content");
    if (too_long)
        return reply_err(h, NBD_REP_ERR_TOO_BIG, "query too long");
    if (nlen > NBD_MAX_STRING)
        return reply_err(h, NBD_REP_ERR_TOO_BIG, "export name too long");
    if (take_name(h, p + 4, nlen) < 0)
        return reply_err(h, NBD_REP_ERR_INVALID, "export name contains NUL");

    struct nbd_export_info info;
    int r = lookup(h, &info, NULL);
    if (r != 0)
        return r < 0 ? r : OPT_NEXT;

    if (match) {
        uint8_t id[4];
        /* LIST replies carry a reserved id of 0; SET gives the real one. */
        put_be32(id, set ? NBD_BASE_ALLOCATION_ID : 0);
        struct iovec iov[2] = {{id, 4}, {(void *)base_allocation, sizeof base_allocation - 1}};
        r = reply_iov(h, NBD_REP_META_CONTEXT, iov, 2);
        if (r < 0)
            return r;
    }
    r = reply_ack(h);
    if (r < 0)
        return r;
    if (set && match) {
        h->meta_selected = true;
        memcpy(h->meta_export, h->name, sizeof h->meta_export);
    }
    return OPT_NEXT;
}

static int opt_starttls(struct hs *h)
{
    const struct nbd_handshake_cfg *cfg = h->cfg;

    if (h->len != 0)
        return reply_err(h, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
    if (cfg->tls == NBD_TLS_OFF)
        return reply_err(h, NBD_REP_ERR_POLICY, "TLS is not enabled on this server");
    if (h->res->tls_active)
        return reply_err(h, NBD_REP_ERR_INVALID, "TLS is already active");
    if (!cfg->starttls) {
        log_warn(nbd, "STARTTLS: TLS enabled but no upgrade callback");
        return reply_err(h, NBD_REP_ERR_POLICY, "TLS is not available");
    }
    int r = reply_ack(h);
    if (r < 0)
        return r;
    r = cfg->starttls(h->io, cfg->starttls_opaque);
    if (r < 0) {
        log_debug(nbd, "STARTTLS: upgrade failed: %s", strerror(-r));
        return r;
    }
    h->res->tls_active = true;
    /* Whatever was negotiated in the clear could have been tampered
     * with; the protocol discards it. */
    h->structured = false;
    h->meta_selected = false;
    return OPT_NEXT;
}

/* ---- the loop ---- */

/* Read an option header. EOF before its first byte is the client leaving
 * between options: -ECONNABORTED. */
static int read_opt_header(struct hs *h, uint8_t hdr[OPT_HDR_LEN])
{
    ssize_t n = h->io->ops->recv(h->io, hdr, OPT_HDR_LEN);
    if (n == 0)
        return -ECONNABORTED;
    if (n < 0)
        return (int)n;
    return conn_io_read_full(h->io, hdr + n, OPT_HDR_LEN - (size_t)n);
}

/* Answer one option. Returns OPT_NEXT, OPT_DONE or -errno. */
static int handle_option(struct hs *h)
{
    uint8_t hdr[OPT_HDR_LEN];
    int r = read_opt_header(h, hdr);
    if (r < 0)
        return r;
    if (get_be64(hdr) != NBD_IHAVEOPT) {
        log_warn(nbd, "bad option magic 0x%016llx", (unsigned long long)get_be64(hdr));
        return -EPROTO;
    }
    h->opt = get_be32(hdr + 8);
    h->len = get_be32(hdr + 12);
    log_debug(nbd, "option %s (%u), %u bytes", opt_name(h->opt), h->opt, h->len);

    if (h->opt == NBD_OPT_EXPORT_NAME && h->len > NBD_MAX_STRING) {
        log_warn(nbd, "EXPORT_NAME of %u bytes", h->len);
        return -EPROTO;
    }
    if (h->len > NBD_MAX_OPTION_LEN) {
        if (h->len > OPT_SKIP_MAX) {
            log_warn(nbd, "option %u of %u bytes, closing", h->opt, h->len);
            return -EPROTO;
        }
        r = conn_io_discard(h->io, h->len);
        if (r < 0)
            return r;
        return reply_err(h, NBD_REP_ERR_TOO_BIG, "option data too large");
    }
    r = conn_io_read_full(h->io, h->buf, h->len);
    if (r < 0)
        return r;

    if (shutting_down(h) && h->opt != NBD_OPT_ABORT) {
        if (h->opt == NBD_OPT_EXPORT_NAME)
            return -ESHUTDOWN;
        return reply_err(h, NBD_REP_ERR_SHUTDOWN, "server is shutting down");
    }
    if (h->cfg->tls == NBD_TLS_REQUIRE && !h->res->tls_active && h->opt != NBD_OPT_STARTTLS &&
        h->opt != NBD_OPT_ABORT) {
        if (h->opt == NBD_OPT_EXPORT_NAME) {
            log_debug(nbd, "EXPORT_NAME without TLS, closing");
            return -EACCES;
        }
        return reply_err(h, NBD_REP_ERR_TLS_REQD, "TLS is required");
    }

    switch (h->opt) {
    case NBD_OPT_EXPORT_NAME:
        return opt_export_name(h);
    case NBD_OPT_ABORT:
        return opt_abort(h);
    case NBD_OPT_LIST:
        return opt_list(h);
    case NBD_OPT_STARTTLS:
        return opt_starttls(h);
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info_go(h);
    case NBD_OPT_STRUCTURED_REPLY:
        return opt_structured_reply(h);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return opt_meta_context(h);
    default:
        return reply_err(h, NBD_REP_ERR_UNSUP, "option %u not supported", h->opt);
    }
}

static int greet(struct hs *h)
{
    uint8_t g[8 + 8 + 2];
    put_be64(g, NBD_MAGIC);
    put_be64(g + 8, NBD_IHAVEOPT);
    put_be16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    int r = conn_io_write_full(h->io, g, sizeof g);
    if (r < 0)
        return r;

    uint8_t cf[4];
    ssize_t n = h->io->ops->recv(h->io, cf, sizeof cf);
    if (n == 0)
        return -ECONNABORTED; /* a port probe, not worth a warning */
    if (n < 0)
        return (int)n;
    r = conn_io_read_full(h->io, cf + n, sizeof cf - (size_t)n);
    if (r < 0)
        return r;
    uint32_t flags = get_be32(cf);
    if (flags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        log_warn(nbd, "unknown client flags 0x%x", flags);
        return -EPROTO;
    }
    h->res->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    return 0;
}

int nbd_handshake(struct conn_io *io, const struct nbd_exports *exports,
                  const struct nbd_handshake_cfg *cfg, struct nbd_handshake_result *res)
{
    *res = (struct nbd_handshake_result){0};

    __attribute__((cleanup(hs_freep))) struct hs *h = malloc(sizeof *h);
    if (!h)
        return -ENOMEM;
    h->io = io;
    h->exports = exports;
    h->cfg = cfg;
    h->res = res;
    h->opt = 0;
    h->len = 0;
    h->structured = false;
    h->meta_selected = false;
    h->send_err = 0;
    h->meta_export[0] = '\0';
    h->name[0] = '\0';

    int r = greet(h);
    for (unsigned i = 0; r == 0; i++) {
        if (i == MAX_OPTIONS) {
            log_warn(nbd, "client sent %u options without choosing an export", i);
            r = -EPROTO;
            break;
        }
        r = handle_option(h);
    }
    if (r == OPT_DONE) {
        log_debug(nbd, "export '%s' chosen (structured=%d, base:allocation=%d, tls=%d)", res->name,
                  res->structured, res->base_allocation, res->tls_active);
        return 0;
    }
    /* No handle is held on failure: options release theirs before failing. */
    res->handle = NULL;
    return r;
}
