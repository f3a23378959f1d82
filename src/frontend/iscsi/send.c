/* A connection's send side: PDUs out under the send lock, responses queued
 * for the sender thread (task.c), rejects, and the broken flag every thread
 * checks. The receive loop and the connection's life are in conn.c; see
 * conn.h for threads and locks. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "frontend/iscsi/conn.h"
#include "frontend/iscsi/session.h"

bool iscsi_conn_broken(const struct iscsi_conn *c)
{
    return __atomic_load_n(&c->broken, __ATOMIC_ACQUIRE);
}

static void mark_broken(struct iscsi_conn *c, int err)
{
    if (!__atomic_exchange_n(&c->broken, true, __ATOMIC_ACQ_REL)) {
        log_debug(iscsi, "%s: send failed: %s", c->peer, strerror(-err));
        shutdown(c->io->fd, SHUT_RDWR); /* the reader sees the end */
    }
}

uint32_t iscsi_conn_max_cmdsn_locked(const struct iscsi_conn *c)
{
    return c->exp_cmdsn + (ISCSI_WINDOW - c->inflight_window) - 1;
}

int iscsi_conn_send_locked(struct iscsi_conn *c, uint8_t *bhs, const struct iovec *iov, int niov,
                           uint32_t dlen, enum iscsi_statsn sn)
{
    if (iscsi_conn_broken(c))
        return -EPIPE;
    switch (sn) {
    case STATSN_NONE:
        put_be32(bhs + ISCSI_BHS_STATSN, 0);
        break;
    case STATSN_PEEK:
        put_be32(bhs + ISCSI_BHS_STATSN, c->statsn);
        break;
    case STATSN_ADVANCE:
        put_be32(bhs + ISCSI_BHS_STATSN, c->statsn++);
        break;
    }
    {
        LOCK_GUARD(&c->lock);
        put_be32(bhs + ISCSI_BHS_EXPCMD, c->exp_cmdsn);
        put_be32(bhs + ISCSI_BHS_MAXCMD, iscsi_conn_max_cmdsn_locked(c));
    }
    /* Digests start with the full feature phase (RFC 7143 13.1). */
    bool ffp = c->sender_running;
    int r = iscsi_pdu_send(c->io, ffp && c->p.header_digest, ffp && c->p.data_digest, bhs, iov,
                           niov, dlen);
    if (r < 0)
        mark_broken(c, r);
    return r;
}

int iscsi_conn_send(struct iscsi_conn *c, uint8_t *bhs, const struct iovec *iov, int niov,
                    uint32_t dlen, enum iscsi_statsn sn)
{
    LOCK_GUARD(&c->send_lock);
    return iscsi_conn_send_locked(c, bhs, iov, niov, dlen, sn);
}

int iscsi_conn_reject(struct iscsi_conn *c, const uint8_t *rejected, uint8_t reason)
{
    uint8_t bhs[ISCSI_BHS_SIZE] = {0};
    uint8_t copy[ISCSI_BHS_SIZE];
    memcpy(copy, rejected, sizeof copy);
    bhs[0] = ISCSI_OP_REJECT;
    bhs[1] = ISCSI_FLAG_F;
    bhs[2] = reason;
    put_be32(bhs + ISCSI_BHS_ITT, ISCSI_RESERVED_TAG);
    struct iovec iov = {copy, sizeof copy};
    return iscsi_conn_send(c, bhs, &iov, 1, sizeof copy, STATSN_ADVANCE);
}

void iscsi_conn_queue(struct iscsi_conn *c, struct iscsi_task *t)
{
    LOCK_GUARD(&c->lock);
    t->next = NULL;
    if (c->outq_tail)
        c->outq_tail->next = t;
    else
        c->outq_head = t;
    c->outq_tail = t;
    pthread_cond_signal(&c->out_cond);
}
