/* One iSCSI connection from accept to close: login, then the full feature
 * phase's PDU loop, the sender thread, NOP pings and logout. See conn.h
 * for threads and locks. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "frontend/allow.h"
#include "frontend/iscsi/conn.h"
#include "frontend/iscsi/server.h"
#include "frontend/iscsi/session.h"
#include "frontend/listener.h"

#define RXBUF_SIZE      (64u * 1024)
#define SEND_TIMEOUT_MS 60000

/* ---- full feature phase ---- */

static int read_data(struct iscsi_conn *c, const struct iscsi_pdu *pdu, char **out)
{
    *out = NULL;
    if (!pdu->dlen)
        return 0;
    char *buf = malloc(pdu->dlen + 1);
    if (!buf)
        return -ENOMEM;
    int r = iscsi_pdu_recv_data(&c->rx, c->p.data_digest, pdu, buf);
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[pdu->dlen] = '\0';
    *out = buf;
    return 0;
}

static int skip_data(struct iscsi_conn *c, const struct iscsi_pdu *pdu)
{
    return pdu->dlen ? iscsi_pdu_recv_data(&c->rx, false, pdu, NULL) : 0;
}

static int nop_out(struct iscsi_conn *c, const struct iscsi_pdu *pdu)
{
    const uint8_t *bhs = pdu->bhs;
    uint32_t itt = get_be32(bhs + ISCSI_BHS_ITT), ttt = get_be32(bhs + ISCSI_BHS_TTT);
    char *data;
    int r = read_data(c, pdu, &data);
    if (r == -EBADMSG)
        return iscsi_conn_reject(c, bhs, ISCSI_REJECT_DIGEST);
    if (r < 0)
        return r;
    if (ttt != ISCSI_RESERVED_TAG && ttt == c->ping_ttt)
        c->ping_ttt = ISCSI_RESERVED_TAG; /* the answer to our ping */
    if (itt != ISCSI_RESERVED_TAG) {
        /* A ping: echo its data (as much as the initiator takes). */
        uint8_t out[ISCSI_BHS_SIZE] = {0};
        out[0] = ISCSI_OP_NOP_IN;
        out[1] = ISCSI_FLAG_F;
        memcpy(out + ISCSI_BHS_LUN, bhs + ISCSI_BHS_LUN, 8);
        put_be32(out + ISCSI_BHS_ITT, itt);
        put_be32(out + ISCSI_BHS_TTT, ISCSI_RESERVED_TAG);
        uint32_t n = MIN(pdu->dlen, c->p.initiator_mrdsl);
        struct iovec iov = {data, n};
        r = iscsi_conn_send(c, out, &iov, 1, n, STATSN_ADVANCE);
    }
    free(data);
    return r;
}

/* Our ping on an idle connection. Initiators that only read when they
 * have a command of their own (libiscsi's synchronous API) answer late or
 * never, so a missing answer ends the connection only with a NOP timeout. */
static int ping(struct iscsi_conn *c)
{
    if (c->ping_ttt != ISCSI_RESERVED_TAG) {
        uint64_t tmo = c->srv->nop_timeout_ms;
        if (tmo && now_ns() - c->ping_ns >= tmo * 1000000u) {
            log_info(iscsi, "%s: no answer to a NOP-In ping in %llu ms: closing", c->peer,
                     (unsigned long long)tmo);
            return -ETIMEDOUT;
        }
        return 0; /* one ping at a time */
    }
    static uint32_t counter;
    uint32_t ttt = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) & 0x7fffffffu;
    c->ping_ttt = ttt;
    c->ping_ns = now_ns();
    uint8_t out[ISCSI_BHS_SIZE] = {0};
    out[0] = ISCSI_OP_NOP_IN;
    out[1] = ISCSI_FLAG_F;
    put_be32(out + ISCSI_BHS_ITT, ISCSI_RESERVED_TAG);
    put_be32(out + ISCSI_BHS_TTT, ttt);
    return iscsi_conn_send(c, out, NULL, 0, 0, STATSN_PEEK);
}

/* 1: the session ends; 0: go on (the logout was refused). */
static int logout(struct iscsi_conn *c, const struct iscsi_pdu *pdu)
{
    const uint8_t *bhs = pdu->bhs;
    uint8_t reason = bhs[1] & 0x7f;
    int r = skip_data(c, pdu);
    if (r < 0)
        return r;
    uint8_t resp = ISCSI_LOGOUT_OK;
    if (reason == ISCSI_LOGOUT_RECOVERY)
        resp = ISCSI_LOGOUT_NO_RECOVERY;
    else if (reason == ISCSI_LOGOUT_CONNECTION && get_be16(bhs + ISCSI_LOGOUT_CID) != c->cid)
        resp = ISCSI_LOGOUT_NO_CID;
    else if (reason > ISCSI_LOGOUT_RECOVERY)
        return iscsi_conn_reject(c, bhs, ISCSI_REJECT_INVALID_FIELD);
    if (resp == ISCSI_LOGOUT_OK) {
        iscsi_tasks_drain(c); /* every response goes out before the logout's */
        /* The nexus ends with the logout, before its answer: an initiator
         * that logs in again and another that then RESERVEs must not find
         * this nexus's reservation still held (run_session's own release
         * after the loop then finds nothing left). */
        if (c->lu)
            scsi_lu_nexus_gone(c->lu, &c->nexus);
    }
    uint8_t out[ISCSI_BHS_SIZE] = {0};
    out[0] = ISCSI_OP_LOGOUT_RSP;
    out[1] = ISCSI_FLAG_F;
    out[2] = resp;
    put_be32(out + ISCSI_BHS_ITT, get_be32(bhs + ISCSI_BHS_ITT));
    r = iscsi_conn_send(c, out, NULL, 0, 0, STATSN_ADVANCE);
    if (r < 0)
        return r;
    return resp == ISCSI_LOGOUT_OK;
}

/* The CmdSN rules (RFC 7143 4.2.2.1): a non-immediate request must carry
 * ExpCmdSN; anything else outside the window is dropped silently. With
 * ISCSI_WINDOW commands in flight the window is closed (MaxCmdSN is
 * ExpCmdSN - 1): even ExpCmdSN is outside it, and is neither consumed nor
 * answered (a Reject would also be wrong: only immediate commands get one
 * for want of a slot).
 *
 * A SCSI command (window_slot) takes its place in the window with its
 * CmdSN, under one lock: were the count raised later (task_alloc), a PDU
 * sent in between would announce MaxCmdSN one too high, the initiator
 * would send a command the full window then ignores, and every later
 * CmdSN would be out of order: the session hangs (iscsi-test-cu's
 * MultipathIO.CompareAndWriteAsync under TSan did). The reader gives the
 * place back if the command is then rejected (iscsi_task_command). */
static bool cmdsn_accept(struct iscsi_conn *c, const uint8_t *bhs, bool window_slot)
{
    if (bhs[0] & ISCSI_FLAG_I)
        return true;
    uint32_t sn = get_be32(bhs + ISCSI_BHS_CMDSN);
    LOCK_GUARD(&c->lock);
    if (sn != c->exp_cmdsn || c->inflight_window >= ISCSI_WINDOW) {
        log_info(iscsi, "%s: CmdSN %u outside the window (expected %u, max %u): ignored", c->peer,
                 sn, c->exp_cmdsn, iscsi_conn_max_cmdsn_locked(c));
        return false;
    }
    c->exp_cmdsn++;
    if (window_slot)
        c->inflight_window++;
    return true;
}

static int handle(struct iscsi_conn *c, const struct iscsi_pdu *pdu)
{
    const uint8_t *bhs = pdu->bhs;
    uint8_t op = iscsi_pdu_opcode(pdu);
    bool sequenced =
        op == ISCSI_OP_SCSI_CMD || op == ISCSI_OP_TMF_REQ || op == ISCSI_OP_TEXT_REQ ||
        op == ISCSI_OP_LOGOUT ||
        (op == ISCSI_OP_NOP_OUT && get_be32(bhs + ISCSI_BHS_ITT) != ISCSI_RESERVED_TAG);
    if (sequenced && !cmdsn_accept(c, bhs, op == ISCSI_OP_SCSI_CMD))
        return skip_data(c, pdu);
    switch (op) {
    case ISCSI_OP_NOP_OUT:
        return nop_out(c, pdu);
    case ISCSI_OP_SCSI_CMD:
        return iscsi_task_command(c, pdu);
    case ISCSI_OP_DATA_OUT:
        return iscsi_task_data_out(c, pdu);
    case ISCSI_OP_TMF_REQ:
        return iscsi_task_tmf(c, pdu);
    case ISCSI_OP_TEXT_REQ: {
        char *data;
        int r = read_data(c, pdu, &data);
        if (r == -EBADMSG)
            return iscsi_conn_reject(c, bhs, ISCSI_REJECT_DIGEST);
        if (r < 0)
            return r;
        r = iscsi_text(c, pdu, data ? data : "");
        free(data);
        return r;
    }
    case ISCSI_OP_LOGOUT: {
        int r = logout(c, pdu);
        return r > 0 ? 1 : r;
    }
    case ISCSI_OP_SNACK:
    case ISCSI_OP_LOGIN_REQ:
    default: {
        /* SNACK needs ERL 1; a login is over. */
        log_info(iscsi, "%s: opcode 0x%02x in full feature phase rejected", c->peer, op);
        int r = skip_data(c, pdu);
        return r < 0
                   ? r
                   : iscsi_conn_reject(
                         c, bhs, op == ISCSI_OP_SNACK ? ISCSI_REJECT_SNACK : ISCSI_REJECT_PROTOCOL);
    }
    }
}

static int ffp_loop(struct iscsi_conn *c)
{
    struct iscsi_pdu *pdu = malloc(sizeof *pdu);
    if (!pdu)
        return -ENOMEM;
    int ret = 0;
    while (!iscsi_conn_broken(c)) {
        int err = 0;
        enum iscsi_hdr_error h =
            iscsi_pdu_recv_hdr(&c->rx, c->p.header_digest, c->p.target_mrdsl, pdu, &err);
        if (h == ISCSI_HDR_EOF)
            break;
        if (h == ISCSI_HDR_IDLE) {
            if ((ret = ping(c)) < 0)
                break;
            continue;
        }
        if (h == ISCSI_HDR_IO) {
            ret = err;
            break;
        }
        if (h == ISCSI_HDR_DIGEST || h == ISCSI_HDR_TOO_LONG) {
            if (h == ISCSI_HDR_DIGEST)
                log_info(iscsi, "%s: header digest error: closing", c->peer);
            else
                log_info(iscsi,
                         "%s: data segment of %u bytes over MaxRecvDataSegmentLength %u "
                         "(opcode 0x%02x): closing",
                         c->peer, pdu->dlen, c->p.target_mrdsl, iscsi_pdu_opcode(pdu));
            ret = -EPROTO;
            break;
        }
        if (h != ISCSI_HDR_OK) {
            log_info(iscsi, "%s: %s (opcode 0x%02x): rejected", c->peer,
                     h == ISCSI_HDR_BAD_AHS ? "malformed AHS" : "unknown opcode",
                     iscsi_pdu_opcode(pdu));
            if ((ret = skip_data(c, pdu)) < 0 ||
                (ret = iscsi_conn_reject(c, pdu->bhs,
                                         h == ISCSI_HDR_BAD_AHS ? ISCSI_REJECT_INVALID_FIELD
                                                                : ISCSI_REJECT_UNSUPPORTED)) < 0)
                break;
            continue;
        }
        ret = handle(c, pdu);
        if (ret != 0) {
            if (ret > 0)
                ret = 0; /* logout */
            break;
        }
    }
    free(pdu);
    return ret;
}

static void conn_free(struct iscsi_conn *c)
{
    pthread_mutex_destroy(&c->send_lock);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    pthread_cond_destroy(&c->out_cond);
    iscsi_tasks_free(c);
    free(c->text_buf);
    free(c->text_req);
    free(c->rxbuf);
    free(c);
}

/* The idle timeout as the socket's SO_RCVTIMEO, so the reader waits for
 * the next command in recv alone (pdu.h, timed_fd). Where the option does
 * not apply (not a socket) the transport's poll + recv stays. */
static void idle_timeout_in_socket(struct iscsi_conn *c)
{
    int ms = c->io->timeout_ms;
    if (ms <= 0 || c->io->tls)
        return; /* no timeout: the transport's recv is already one call */
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    if (setsockopt(c->io->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0)
        c->rx.timed_fd = c->io->fd;
}

/* A forced remove of the volume (engine.h): the reader sees the end of
 * the stream; tasks already received are still answered. */
static void kick(void *opaque)
{
    shutdown(*(const int *)opaque, SHUT_RD);
}

/* The full feature phase of a logged-in connection. */
static int run_session(struct iscsi_conn *c)
{
    struct iscsi_server *s = c->srv;
    struct volume_conn vc = {.kick = kick, .opaque = &c->io->fd};
    if (!c->discovery) {
        if (iscsi_tasks_init(c) < 0)
            return -ENOMEM;
        c->lu = scsi_lu_get(s->engine, c->v);
        if (!c->lu)
            return -ENOMEM;
        volume_conn_attach(c->v, &vc);
        iscsi_session_activate(s, c, true);
    }
    c->io->deadline_ns = 0;
    c->io->timeout_ms = s->nop_interval_ms; /* idle: a ping, not an end */
    c->io->send_timeout_ms = SEND_TIMEOUT_MS;
    idle_timeout_in_socket(c);
    int r = iscsi_conn_sender_start(c);
    if (r == 0) {
        r = ffp_loop(c);
        iscsi_tasks_drain(c);
        iscsi_conn_sender_stop(c);
    } else {
        log_warn(iscsi, "cannot start a sender thread: %s", strerror(-r));
    }
    if (c->lu) {
        iscsi_session_activate(s, c, false);
        scsi_lu_nexus_gone(c->lu, &c->nexus);
        scsi_lu_put(c->lu);
        c->lu = NULL;
        volume_conn_detach(c->v, &vc);
    }
    return r;
}

void iscsi_conn_serve(struct iscsi_server *s, struct listener_conn *lc)
{
    struct iscsi_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->rxbuf = malloc(RXBUF_SIZE);
    if (!c->rxbuf) {
        free(c);
        return;
    }
    c->srv = s;
    c->io = &lc->io;
    c->stopping = lc->stopping;
    c->reader = pthread_self();
    c->readonly = s->readonly;
    c->statsn = 1;
    c->ping_ttt = ISCSI_RESERVED_TAG;
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_cond_init(&c->out_cond, NULL);
    iscsi_rx_init(&c->rx, c->io, c->rxbuf, RXBUF_SIZE);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(c->io->fd, (struct sockaddr *)&ss, &sl) == 0)
        allow_format_peer((struct sockaddr *)&ss, sl, c->peer, sizeof c->peer);
    else
        snprintf(c->peer, sizeof c->peer, "client");

    /* The whole login must finish in time, not only each wait. */
    c->io->timeout_ms = s->login_timeout_ms;
    c->io->deadline_ns = now_ns() + (uint64_t)s->login_timeout_ms * 1000000u;
    int r = iscsi_login(c);
    if (r == 0)
        r = run_session(c);
    if (r < 0 && r != -ECONNRESET && r != -EPIPE && r != -EACCES)
        log_debug(iscsi, "%s: connection ended: %s", c->peer, strerror(-r));
    iscsi_session_remove(s, c);
    if (c->v)
        volume_put(c->v);
    conn_free(c);
}
