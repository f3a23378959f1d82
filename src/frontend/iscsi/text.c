/* Text requests in full feature phase (RFC 7143 section 11.10-11.11):
 * SendTargets (discovery), requests in parts (C bit) gathered, answers
 * longer than the initiator takes in one PDU sent in parts. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "frontend/iscsi/conn.h"
#include "frontend/iscsi/server.h"

/* "ADDR:PORT,1" of our end of the connection (the portal the initiator
 * reached, so it works for whichever address it used). */
static void portal(struct iscsi_conn *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN + 2] = "127.0.0.1";
    unsigned port = 3260;
    if (getsockname(c->io->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
            } else {
                host[0] = '[';
                inet_ntop(AF_INET6, &in6->sin6_addr, host + 1, INET6_ADDRSTRLEN);
                strcat(host, "]");
            }
            port = ntohs(in6->sin6_port);
        }
    }
    snprintf(buf, len, "%s:%u,1", host, port);
}

struct st_ctx {
    struct iscsi_kv_out *out;
    const char *portal;
};

static void add_target(struct st_ctx *x, const char *volume)
{
    char name[ISCSI_NAME_MAX + 1];
    int n = snprintf(name, sizeof name, ISCSI_IQN_PREFIX "%s", volume);
    if (n < 0 || (size_t)n >= sizeof name)
        return; /* a volume name too long for an iSCSI name has no target */
    iscsi_kv_add(x->out, "TargetName", name);
    iscsi_kv_add(x->out, "TargetAddress", x->portal);
}

static int add_one(struct volume *v, void *opaque)
{
    add_target(opaque, volume_name(v));
    return 0;
}

void iscsi_send_targets(struct iscsi_conn *c, const char *what, struct iscsi_kv_out *out)
{
    char p[INET6_ADDRSTRLEN + 16];
    portal(c, p, sizeof p);
    struct st_ctx x = {out, p};
    if (!strcmp(what, "All")) {
        if (c->discovery)
            engine_for_each_volume(c->srv->engine, add_one, &x);
        else if (c->v)
            add_target(&x, volume_name(c->v)); /* a normal session sees its own target */
        return;
    }
    const char *name = what[0] ? what : c->target;
    struct volume *v = iscsi_target_volume(c->srv, name);
    if (v) {
        add_target(&x, volume_name(v));
        volume_put(v);
    }
}

struct text_ctx {
    struct iscsi_conn *c;
    struct iscsi_kv_out *out;
};

static int on_key(void *opaque, const char *key, const char *val)
{
    struct text_ctx *t = opaque;
    if (!strcmp(key, "SendTargets") && val)
        iscsi_send_targets(t->c, val, t->out);
    else
        iscsi_kv_add(t->out, key, "NotUnderstood");
    return 0;
}

/* A fresh tag for our side of a text exchange (never the reserved one). */
static uint32_t next_ttt(struct iscsi_conn *c)
{
    c->text_ttt = (c->text_ttt + 1) & 0x7fffffffu;
    return c->text_ttt;
}

/* Send the next part of the pending answer. */
static int send_part(struct iscsi_conn *c)
{
    size_t left = c->text_len - c->text_off;
    size_t n = MIN(left, (size_t)c->p.initiator_mrdsl);
    bool last = n == left;
    uint8_t bhs[ISCSI_BHS_SIZE] = {0};
    bhs[0] = ISCSI_OP_TEXT_RSP;
    bhs[1] = last ? ISCSI_FLAG_F : ISCSI_TEXT_C;
    put_be64(bhs + ISCSI_BHS_LUN, 0);
    put_be32(bhs + ISCSI_BHS_ITT, c->text_itt);
    put_be32(bhs + ISCSI_BHS_TTT, last ? ISCSI_RESERVED_TAG : next_ttt(c));
    struct iovec iov = {c->text_buf + c->text_off, n};
    c->text_off += n;
    int r = iscsi_conn_send(c, bhs, &iov, 1, (uint32_t)n, STATSN_ADVANCE);
    if (last) {
        free(c->text_buf);
        c->text_buf = NULL;
        c->text_len = c->text_off = 0;
    }
    return r;
}

static void drop_request(struct iscsi_conn *c)
{
    free(c->text_req);
    c->text_req = NULL;
    c->text_req_len = 0;
}

/* A part of a request in parts: gather it, and ask for the next with an
 * empty answer whose tag the initiator sends back (RFC 7143 11.10.2). 1
 * when this was the last part (the whole request is in c->text_req), 0
 * when more is asked for, or -errno. */
static int gather(struct iscsi_conn *c, const uint8_t *bhs, const char *data, uint32_t dlen,
                  bool more)
{
    if (!c->text_req) {
        c->text_req = malloc(ISCSI_TEXT_MAX);
        if (!c->text_req)
            return -ENOMEM;
        c->text_req_len = 0;
        c->text_req_itt = get_be32(bhs + ISCSI_BHS_ITT);
    }
    if (c->text_req_len + dlen > ISCSI_TEXT_MAX) {
        log_info(iscsi, "%s: text request over %u bytes: rejected", c->peer, ISCSI_TEXT_MAX);
        drop_request(c);
        int r = iscsi_conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
        return r < 0 ? r : 0;
    }
    memcpy(c->text_req + c->text_req_len, data, dlen);
    c->text_req_len += dlen;
    if (!more)
        return 1;
    uint8_t out[ISCSI_BHS_SIZE] = {0};
    out[0] = ISCSI_OP_TEXT_RSP;
    put_be32(out + ISCSI_BHS_ITT, c->text_req_itt);
    c->text_req_ttt = next_ttt(c);
    put_be32(out + ISCSI_BHS_TTT, c->text_req_ttt);
    return iscsi_conn_send(c, out, NULL, 0, 0, STATSN_ADVANCE);
}

int iscsi_text(struct iscsi_conn *c, const struct iscsi_pdu *pdu, const char *data)
{
    const uint8_t *bhs = pdu->bhs;
    uint32_t ttt = get_be32(bhs + ISCSI_BHS_TTT);
    uint32_t itt = get_be32(bhs + ISCSI_BHS_ITT);
    bool more = bhs[1] & ISCSI_TEXT_C;
    if (ttt != ISCSI_RESERVED_TAG && c->text_req && ttt == c->text_req_ttt &&
        itt == c->text_req_itt) {
        /* The next part of a request in parts. */
    } else if (ttt != ISCSI_RESERVED_TAG) {
        /* The initiator asks for the next part of our answer. */
        if (!c->text_buf || ttt != c->text_ttt || itt != c->text_itt || more)
            return iscsi_conn_reject(c, bhs, ISCSI_REJECT_INVALID_FIELD);
        return send_part(c);
    } else {
        /* A new request abandons unfinished ones, ours and theirs. */
        drop_request(c);
        free(c->text_buf);
        c->text_buf = NULL;
    }
    int r = gather(c, bhs, data, pdu->dlen, more);
    if (r <= 0)
        return r;
    free(c->text_buf);
    c->text_buf = malloc(ISCSI_TEXT_MAX);
    if (!c->text_buf)
        return -ENOMEM;
    struct iscsi_kv_out out = {.buf = c->text_buf, .cap = ISCSI_TEXT_MAX};
    struct text_ctx t = {c, &out};
    iscsi_kv_each(c->text_req, c->text_req_len, on_key, &t);
    drop_request(c);
    if (out.overflow)
        log_warn(iscsi, "%s: text answer over %u bytes truncated", c->peer, ISCSI_TEXT_MAX);
    c->text_len = out.len;
    c->text_off = 0;
    c->text_itt = itt;
    return send_part(c);
}
