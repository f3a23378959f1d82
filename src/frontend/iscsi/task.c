/* SCSI commands over iSCSI (RFC 7143 sections 11.3-11.9): the task table,
 * write data (immediate, unsolicited, solicited with R2T), Data-In and
 * SCSI Response with residuals and sense, and task management. See conn.h
 * for threads and locks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/bufpool.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "frontend/iscsi/conn.h"
#include "frontend/iscsi/server.h"
#include "frontend/iscsi/session.h"

#define DATAIN_IOV_MAX 60 /* iovecs per Data-In PDU (pdu.c sends at most 64) */
#define SENSE_FIXED    18

int iscsi_tasks_init(struct iscsi_conn *c)
{
    c->tasks = calloc(ISCSI_TASKS, sizeof *c->tasks);
    if (!c->tasks)
        return -ENOMEM;
    for (unsigned i = 0; i < ISCSI_TASKS; i++) {
        c->tasks[i].c = c;
        c->tasks[i].index = i;
        c->tasks[i].state = TASK_FREE;
    }
    return 0;
}

void iscsi_tasks_free(struct iscsi_conn *c)
{
    free(c->tasks);
    c->tasks = NULL;
}

/* A task for a command. A non-immediate one already has its place in the
 * CmdSN window (cmdsn_accept took it with the CmdSN); an immediate one
 * takes one of the ISCSI_IMMEDIATE places here, or gets NULL. */
static struct iscsi_task *task_alloc(struct iscsi_conn *c, bool immediate)
{
    LOCK_GUARD(&c->lock);
    if (immediate && c->inflight_immediate >= ISCSI_IMMEDIATE)
        return NULL;
    /* Every slot taken: the window and the immediate commands hold fewer
     * than ISCSI_TASKS, so some are answered tasks the core is about to
     * let go of (on its workers, never waiting for this reader). */
    while (c->slots_used >= ISCSI_TASKS)
        pthread_cond_wait(&c->cond, &c->lock);
    for (unsigned i = 0; i < ISCSI_TASKS; i++) {
        struct iscsi_task *t = &c->tasks[i];
        if (t->state != TASK_FREE)
            continue;
        if (immediate)
            c->inflight_immediate++;
        c->slots_used++;
        t->state = TASK_DATA_OUT;
        t->immediate = immediate;
        t->aborted = t->local = t->responded = t->left_window = false;
        t->buf = NULL;
        t->buflen = 0;
        t->received = t->unsol_end = t->seq_datasn = t->r2t_next = t->r2tsn = 0;
        t->unsol_open = false;
        t->nr2t = 0;
        t->exp_datasn = 0;
        t->next = NULL;
        return t;
    }
    return NULL;
}

/* Give back the window place of a non-immediate command that got no task
 * (rejected): before the Reject goes out, whose MaxCmdSN then counts it. */
static void window_return(struct iscsi_conn *c, bool immediate)
{
    if (immediate)
        return;
    LOCK_GUARD(&c->lock);
    c->inflight_window--;
}

static void task_release(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    if (t->buf)
        bufpool_put(t->buf, t->buflen);
    t->buf = NULL;
    LOCK_GUARD(&c->lock);
    if (t->immediate)
        c->inflight_immediate--;
    else if (!t->left_window)
        c->inflight_window--;
    c->slots_used--;
    t->state = TASK_FREE;
    pthread_cond_broadcast(&c->cond);
}

/* ---- responses ---- */

/* Sense data from the transport itself (no command reached the SCSI layer). */
static void local_check(struct iscsi_task *t, uint8_t key, uint16_t asc)
{
    struct scsi_cmd *cmd = &t->cmd;
    t->local = true;
    cmd->status = SCSI_STATUS_CHECK_CONDITION;
    memset(cmd->sense, 0, sizeof cmd->sense);
    cmd->sense[0] = 0x70;
    cmd->sense[2] = key;
    cmd->sense[7] = SENSE_FIXED - 8;
    cmd->sense[12] = (uint8_t)(asc >> 8);
    cmd->sense[13] = (uint8_t)asc;
    cmd->sense_len = SENSE_FIXED;
    cmd->iov = NULL;
    cmd->niov = 0;
    cmd->data_in_len = 0;
    cmd->xfer_len = 0;
}

/* A status with no sense data (TASK SET FULL: the initiator retries). */
static void local_status(struct iscsi_task *t, uint8_t status)
{
    local_check(t, 0, 0);
    t->cmd.status = status;
    t->cmd.sense_len = 0;
}

/* Residual flags and count (RFC 7143 11.4.5.1): what the command wanted to
 * move against what the initiator expected. */
static uint8_t residual(const struct iscsi_task *t, uint32_t *count)
{
    uint32_t want = t->cmd.xfer_len, edtl = t->edtl;
    *count = 0;
    if (want > edtl) {
        *count = want - edtl;
        return ISCSI_RSP_OVER;
    }
    if (want < edtl) {
        *count = edtl - want;
        return ISCSI_RSP_UNDER;
    }
    return 0;
}

static void fill_common(struct iscsi_task *t, uint8_t *bhs, uint8_t op)
{
    memset(bhs, 0, ISCSI_BHS_SIZE);
    bhs[0] = op;
    put_be32(bhs + ISCSI_BHS_ITT, t->itt);
}

/* Bytes of data-in from off that fit one PDU of at most max bytes and
 * DATAIN_IOV_MAX iovecs; the iovecs go to iov, their count to *n. */
static uint32_t datain_piece(const struct scsi_cmd *cmd, uint32_t off, uint32_t max,
                             struct iovec *iov, int *n)
{
    uint32_t len = MIN(max, cmd->data_in_len - off);
    while (len > 0) {
        int k = iscsi_iov_slice(cmd->iov, (int)cmd->niov, off, len, iov, DATAIN_IOV_MAX);
        if (k >= 0) {
            *n = k;
            return len;
        }
        len = len > 4096 ? len / 2 : len - 1; /* too many iovecs: a shorter PDU */
    }
    *n = 0;
    return 0;
}

/* t's final response goes out next: it leaves the CmdSN window now, so
 * the MaxCmdSN of that very response opens the slot (RFC 7143 11.4.3:
 * MaxCmdSN reflects the window as it is when the PDU is sent). An
 * initiator whose window was full can send its next command at once. */
static void leave_window(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    LOCK_GUARD(&c->lock);
    if (!t->left_window) {
        t->left_window = true; /* its tag is the initiator's again, too */
        if (!t->immediate)
            c->inflight_window--;
    }
}

static void send_response_locked(struct iscsi_task *t, bool with_data_in)
{
    struct iscsi_conn *c = t->c;
    struct scsi_cmd *cmd = &t->cmd;
    uint8_t bhs[ISCSI_BHS_SIZE];
    uint32_t resid;
    uint8_t rflags = residual(t, &resid);
    bool status_in_data = with_data_in && cmd->sense_len == 0 && cmd->data_in_len > 0;

    if (with_data_in && cmd->data_in_len > 0) {
        uint32_t off = 0, burst = 0;
        while (off < cmd->data_in_len) {
            struct iovec iov[DATAIN_IOV_MAX];
            int n;
            uint32_t max = MIN(c->p.initiator_mrdsl, c->p.max_burst - burst);
            uint32_t len = datain_piece(cmd, off, max, iov, &n);
            if (len == 0)
                break;
            bool last = off + len == cmd->data_in_len;
            burst += len;
            fill_common(t, bhs, ISCSI_OP_DATA_IN);
            put_be64(bhs + ISCSI_BHS_LUN, t->lun);
            put_be32(bhs + ISCSI_BHS_TTT, ISCSI_RESERVED_TAG);
            put_be32(bhs + ISCSI_DATA_DATASN, t->exp_datasn++);
            put_be32(bhs + ISCSI_DATA_OFFSET, off);
            if (last || burst == c->p.max_burst) {
                bhs[1] |= ISCSI_FLAG_F; /* a sequence ends every MaxBurstLength */
                burst = 0;
            }
            enum iscsi_statsn sn = STATSN_NONE;
            if (last && status_in_data) {
                bhs[1] |= ISCSI_DATAIN_S | rflags;
                bhs[3] = cmd->status;
                put_be32(bhs + ISCSI_RSP_RESID, resid);
                sn = STATSN_ADVANCE;
                leave_window(t);
            }
            if (iscsi_conn_send_locked(c, bhs, iov, n, len, sn) < 0)
                return;
            off += len;
        }
        if (status_in_data)
            return;
    }
    fill_common(t, bhs, ISCSI_OP_SCSI_RSP);
    bhs[1] = ISCSI_FLAG_F | rflags;
    bhs[2] = ISCSI_RESPONSE_COMPLETED;
    bhs[3] = cmd->status;
    put_be32(bhs + ISCSI_RSP_EXPDATASN, t->exp_datasn);
    put_be32(bhs + ISCSI_RSP_RESID, resid);
    uint8_t sense[2 + SCSI_SENSE_MAX];
    uint32_t dlen = 0;
    if (cmd->sense_len) {
        put_be16(sense, cmd->sense_len);
        memcpy(sense + 2, cmd->sense, cmd->sense_len);
        dlen = 2u + cmd->sense_len;
    }
    struct iovec iov = {sense, dlen};
    leave_window(t);
    iscsi_conn_send_locked(c, bhs, &iov, 1, dlen, STATSN_ADVANCE);
}

void iscsi_task_respond(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    {
        LOCK_GUARD(&c->send_lock);
        if (!iscsi_conn_broken(c))
            send_response_locked(t, true);
    }
    {
        LOCK_GUARD(&c->lock);
        t->responded = true;
        if (c->tmf_waiting)
            pthread_cond_broadcast(&c->cond);
    }
    if (t->local)
        task_release(t);
    else
        scsi_cmd_put(&t->cmd);
}

/* ---- the SCSI layer's callbacks ---- */

static void cmd_done(struct scsi_cmd *cmd)
{
    struct iscsi_task *t = container_of(cmd, struct iscsi_task, cmd);
    struct iscsi_conn *c = t->c;
    bool aborted;
    {
        LOCK_GUARD(&c->lock);
        t->state = TASK_RESPOND;
        aborted = t->aborted;
        pthread_cond_broadcast(&c->cond);
    }
    if (aborted)
        scsi_cmd_put(cmd); /* an aborted task gets no response */
    else if (pthread_equal(pthread_self(), c->reader))
        iscsi_task_respond(t);
    else
        iscsi_conn_queue(c, t);
}

static void cmd_end(struct scsi_cmd *cmd)
{
    task_release(container_of(cmd, struct iscsi_task, cmd));
}

/* Opcodes that change the medium and carry data-out: refused under
 * --readonly. MODE SELECT, PERSISTENT RESERVE OUT and the like change no
 * data and go through. */
static bool writes_medium(const struct iscsi_task *t)
{
    switch (t->cmd.cdb[0]) {
    case 0x15: /* MODE SELECT(6) */
    case 0x55: /* MODE SELECT(10) */
    case 0x5f: /* PERSISTENT RESERVE OUT */
    case 0x1d: /* SEND DIAGNOSTIC */
        return false;
    default:
        return t->cmd.write_dir;
    }
}

static void exec(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    struct scsi_cmd *cmd = &t->cmd;
    cmd->data_out = t->buf;
    cmd->data_out_len = MIN(t->received, t->edtl);
    bool refuse = c->readonly && writes_medium(t);
    bool aborted;
    {
        /* A reset from another session marks our tasks under this lock:
         * either it finds this one running (and waits for it) or the
         * command never starts. */
        LOCK_GUARD(&c->lock);
        aborted = t->aborted;
        if (!aborted)
            t->state = refuse ? TASK_RESPOND : TASK_EXEC;
    }
    if (aborted) {
        task_release(t);
    } else if (refuse) {
        local_check(t, 0x7 /* DATA PROTECT */, 0x2700 /* WRITE PROTECTED */);
        iscsi_task_respond(t);
    } else {
        scsi_exec(cmd);
    }
}

/* ---- write data ---- */

static int send_r2t(struct iscsi_task *t, uint32_t off, uint32_t len, uint32_t ttt)
{
    uint8_t bhs[ISCSI_BHS_SIZE];
    fill_common(t, bhs, ISCSI_OP_R2T);
    bhs[1] = ISCSI_FLAG_F;
    put_be64(bhs + ISCSI_BHS_LUN, t->lun);
    put_be32(bhs + ISCSI_BHS_TTT, ttt);
    put_be32(bhs + ISCSI_R2T_R2TSN, t->r2tsn);
    put_be32(bhs + ISCSI_R2T_OFFSET, off);
    put_be32(bhs + ISCSI_R2T_LENGTH, len);
    return iscsi_conn_send(t->c, bhs, NULL, 0, 0, STATSN_PEEK);
}

/* Ask for more data, or run the command once all of it is in. */
static int advance(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    if (t->unsol_open)
        return 0;
    while (t->nr2t < MIN(c->p.max_outstanding_r2t, ARRAY_SIZE(t->r2t))) {
        uint32_t off = MAX(t->r2t_next, t->received);
        if (off >= t->edtl)
            break;
        uint32_t len = MIN(c->p.max_burst, t->edtl - off);
        /* The slot in the high bits finds the task; the R2TSN keeps tags of
         * one task apart. Never the reserved tag. */
        uint32_t ttt = (uint32_t)t->index << 16 | (t->r2tsn & 0xffff);
        int r = send_r2t(t, off, len, ttt);
        if (r < 0)
            return r;
        t->r2t[t->nr2t++] = (struct iscsi_r2t){off, len, ttt};
        t->r2t_next = off + len;
        t->r2tsn++;
        t->exp_datasn++;
    }
    if (t->nr2t == 0 && t->received >= t->edtl)
        exec(t);
    return 0;
}

/* Discard a PDU's data segment (a refused command's immediate data). */
static int skip_data(struct iscsi_conn *c, const struct iscsi_pdu *pdu)
{
    return pdu->dlen ? iscsi_pdu_recv_data(&c->rx, false, pdu, NULL) : 0;
}

/* The task tagged itt that is not free nor answered, or NULL (c->lock
 * held). Tags are unique among such tasks (a command reusing one is
 * rejected). Every task that is not free is counted in slots_used
 * (task_alloc and task_release change both under the lock): the scan ends
 * once it has seen that many, at once for a client with nothing else in
 * flight, instead of always walking all ISCSI_TASKS slots. */
static struct iscsi_task *task_by_itt_locked(struct iscsi_conn *c, uint32_t itt)
{
    unsigned left = c->slots_used;
    for (unsigned i = 0; i < ISCSI_TASKS && left > 0; i++) {
        struct iscsi_task *t = &c->tasks[i];
        if (t->state == TASK_FREE)
            continue;
        /* An answered task still held by the core: the initiator may
         * reuse its tag as soon as it has the response. */
        if (t->itt == itt && !t->left_window)
            return t;
        left--;
    }
    return NULL;
}

static bool itt_busy(struct iscsi_conn *c, uint32_t itt)
{
    LOCK_GUARD(&c->lock);
    return task_by_itt_locked(c, itt) != NULL;
}

/* The LUN field (SAM-5 4.7): single-level peripheral or flat addressing. */
static uint64_t lun_number(const uint8_t *f)
{
    uint64_t rest = get_be64(f) & 0x0000ffffffffffffull;
    if (rest)
        return UINT64_MAX; /* multi-level: no such LU here */
    return (uint64_t)(f[0] & 0x3f) << 8 | f[1];
}

/* Answer a WRITE with the status already set on t (local_check or
 * local_status) without taking its data: the command's immediate data is
 * read and dropped first. */
static int answer_now(struct iscsi_conn *c, const struct iscsi_pdu *pdu, struct iscsi_task *t)
{
    int r = skip_data(c, pdu);
    if (r < 0) {
        task_release(t);
        return r;
    }
    {
        LOCK_GUARD(&c->lock);
        t->state = TASK_RESPOND;
    }
    iscsi_task_respond(t);
    return 0;
}

/* Release the tasks gathering data that a reset from another session
 * aborted (third_party_mark marks them; only this reader may free a task
 * gathering data, it may be writing into its buffer). Called between
 * PDUs, when the reader is inside no task. */
static void reap_abandoned(struct iscsi_conn *c)
{
    if (!__atomic_exchange_n(&c->abandoned, false, __ATOMIC_ACQ_REL))
        return;
    struct iscsi_task *drop[ISCSI_TASKS];
    unsigned ndrop = 0;
    {
        LOCK_GUARD(&c->lock);
        for (unsigned i = 0; i < ISCSI_TASKS; i++)
            if (c->tasks[i].state == TASK_DATA_OUT && c->tasks[i].aborted)
                drop[ndrop++] = &c->tasks[i];
    }
    for (unsigned i = 0; i < ndrop; i++)
        task_release(drop[i]);
}

int iscsi_task_command(struct iscsi_conn *c, const struct iscsi_pdu *pdu)
{
    const uint8_t *bhs = pdu->bhs;
    bool rd = bhs[1] & ISCSI_CMD_R, wr = bhs[1] & ISCSI_CMD_W, final = bhs[1] & ISCSI_FLAG_F;
    bool immediate = bhs[0] & ISCSI_FLAG_I;
    uint32_t itt = get_be32(bhs + ISCSI_BHS_ITT);
    uint32_t edtl = get_be32(bhs + ISCSI_CMD_EDTL);
    const char *why = NULL;
    uint8_t reason = ISCSI_REJECT_PROTOCOL;

    if (c->discovery) {
        why = "a SCSI command in a discovery session";
        reason = ISCSI_REJECT_UNSUPPORTED;
    } else if (itt == ISCSI_RESERVED_TAG) {
        why = "the reserved task tag";
        reason = ISCSI_REJECT_INVALID_FIELD;
    } else if (pdu->dlen && (!wr || !c->p.immediate_data || pdu->dlen > c->p.first_burst)) {
        why = "immediate data not allowed here";
    } else if (!final && (!wr || c->p.initial_r2t)) {
        why = "unsolicited data announced without InitialR2T=No";
    } else if (itt_busy(c, itt)) {
        why = "a task tag already in use";
        reason = ISCSI_REJECT_TASK_BUSY;
    }
    if (why) {
        log_info(iscsi, "%s: SCSI command rejected: %s", c->peer, why);
        window_return(c, immediate);
        int r = skip_data(c, pdu);
        return r < 0 ? r : iscsi_conn_reject(c, bhs, reason);
    }
    reap_abandoned(c);
    struct iscsi_task *t = task_alloc(c, immediate);
    if (!t) {
        /* Only an immediate command can find no slot: the window keeps the
         * others within the table. */
        log_debug(iscsi, "%s: no slot for an immediate command", c->peer);
        window_return(c, immediate);
        int r = skip_data(c, pdu);
        return r < 0 ? r : iscsi_conn_reject(c, bhs, ISCSI_REJECT_IMMEDIATE);
    }
    t->itt = itt;
    t->cmdsn = get_be32(bhs + ISCSI_BHS_CMDSN);
    t->edtl = edtl;
    t->lun = get_be64(bhs + ISCSI_BHS_LUN);
    struct scsi_cmd *cmd = &t->cmd;
    uint64_t lun = lun_number(bhs + ISCSI_BHS_LUN);
    cmd->lu = lun == 0 ? c->lu : NULL;
    cmd->nexus = &c->nexus;
    cmd->lun = lun;
    memcpy(cmd->cdb, bhs + ISCSI_CMD_CDB, ISCSI_CMD_CDB_SIZE);
    memcpy(cmd->cdb + ISCSI_CMD_CDB_SIZE, pdu->ext_cdb, pdu->ext_cdb_len);
    cmd->cdb_len = (uint8_t)(ISCSI_CMD_CDB_SIZE + pdu->ext_cdb_len);
    cmd->write_dir = wr;
    cmd->read_dir = rd;
    cmd->data_out = NULL;
    cmd->data_out_len = 0;
    cmd->data_in_max = rd ? (wr && pdu->has_bidi_len ? pdu->bidi_read_len : edtl) : 0;
    cmd->done = cmd_done;
    cmd->end = cmd_end;
    cmd->opaque = t;

    if (!wr) {
        exec(t);
        return 0;
    }
    if (edtl > ISCSI_MAX_DATA_OUT) {
        local_check(t, 0x5 /* ILLEGAL REQUEST */, 0x2400 /* INVALID FIELD IN CDB */);
        return answer_now(c, pdu, t);
    }
    size_t want = MAX((size_t)edtl, (size_t)pdu->dlen);
    if (want) {
        /* Never wait for buffer memory here: this thread alone reads this
         * connection's Data-Out, and the buffers held by write tasks (this
         * connection's or another's) are waiting for Data-Out too, so a
         * reader blocked on the pool could be waiting for itself (found by
         * fuzz_iscsi: a few large WRITEs without their data filled the
         * pool and the connection hung). A full pool answers TASK SET
         * FULL, which initiators retry. */
        t->buf = bufpool_try_get(want);
        if (!t->buf) {
            local_status(t, SCSI_STATUS_TASK_SET_FULL);
            return answer_now(c, pdu, t);
        }
        t->buflen = want;
    }
    if (pdu->dlen) {
        int r = iscsi_pdu_recv_data(&c->rx, c->p.data_digest, pdu, t->buf);
        if (r == -EBADMSG) {
            log_info(iscsi, "%s: data digest error in a SCSI command", c->peer);
            task_release(t);
            return iscsi_conn_reject(c, bhs, ISCSI_REJECT_DIGEST);
        }
        if (r < 0) {
            task_release(t);
            return r;
        }
    }
    t->received = MIN(pdu->dlen, edtl);
    t->unsol_open = !final;
    t->unsol_end = c->p.initial_r2t ? t->received : MIN(edtl, c->p.first_burst);
    return advance(t);
}

static struct iscsi_task *find_gathering(struct iscsi_conn *c, uint32_t itt)
{
    /* Under the lock: workers free other tasks meanwhile, and a state read
     * while one is written is a data race even when neither value is the
     * one sought (TSan, iscsi_hostile's two WRITEs). Only the reader moves
     * a task out of TASK_DATA_OUT, and it is us: the task found stays in it
     * after the lock is dropped. */
    LOCK_GUARD(&c->lock);
    struct iscsi_task *t = task_by_itt_locked(c, itt);
    /* Aborted by another session's reset: released by reap_abandoned. */
    return t && t->state == TASK_DATA_OUT && !t->aborted ? t : NULL;
}

int iscsi_task_data_out(struct iscsi_conn *c, const struct iscsi_pdu *pdu)
{
    const uint8_t *bhs = pdu->bhs;
    uint32_t itt = get_be32(bhs + ISCSI_BHS_ITT), ttt = get_be32(bhs + ISCSI_BHS_TTT);
    uint32_t datasn = get_be32(bhs + ISCSI_DATA_DATASN);
    uint32_t off = get_be32(bhs + ISCSI_DATA_OFFSET);
    bool final = bhs[1] & ISCSI_FLAG_F;
    if (c->tasks)
        reap_abandoned(c);
    struct iscsi_task *t = c->tasks ? find_gathering(c, itt) : NULL;
    if (!t) {
        /* A task we refused or aborted: its data goes nowhere. */
        log_debug(iscsi, "%s: Data-Out for unknown task 0x%08x dropped", c->peer, itt);
        return skip_data(c, pdu);
    }
    bool unsol = ttt == ISCSI_RESERVED_TAG;
    uint32_t seq_end = unsol ? t->unsol_end : t->nr2t ? t->r2t[0].offset + t->r2t[0].len : 0;
    const char *why = NULL;
    uint16_t asc = 0x4b00; /* DATA PHASE ERROR */
    if (unsol && !t->unsol_open) {
        why = "unsolicited data not allowed";
    } else if (!unsol && (!t->nr2t || ttt != t->r2t[0].ttt)) {
        why = "unknown target transfer tag";
        asc = 0x4b01; /* INVALID TARGET PORT TRANSFER TAG RECEIVED */
    } else if (datasn != t->seq_datasn) {
        why = "DataSN out of order";
    } else if (off != t->received) {
        why = "buffer offset out of order";
        asc = 0x4b05; /* DATA OFFSET ERROR */
    } else if ((uint64_t)off + pdu->dlen > seq_end) {
        why = "more data than asked for";
        asc = 0x4b02; /* TOO MUCH WRITE DATA */
    }
    if (why) {
        /* ERL 0 cannot recover the sequence: the command fails (its later
         * Data-Out PDUs find no task and are dropped), the session goes on. */
        log_info(iscsi, "%s: Data-Out of task 0x%08x: %s (DataSN %u, offset %u, %u bytes)", c->peer,
                 itt, why, datasn, off, pdu->dlen);
        int r = skip_data(c, pdu);
        if (r < 0)
            return r;
        local_check(t, 0xb /* ABORTED COMMAND */, asc);
        {
            LOCK_GUARD(&c->lock);
            t->state = TASK_RESPOND;
        }
        iscsi_task_respond(t);
        return 0;
    }
    int r = iscsi_pdu_recv_data(&c->rx, c->p.data_digest, pdu, pdu->dlen ? t->buf + off : NULL);
    if (r == -EBADMSG) {
        /* ERL 0 cannot ask for the data again. */
        log_info(iscsi, "%s: data digest error in Data-Out: closing", c->peer);
        iscsi_conn_reject(c, bhs, ISCSI_REJECT_DIGEST);
        return -EPROTO;
    }
    if (r < 0)
        return r;
    t->received += pdu->dlen;
    t->seq_datasn++;
    if (!final)
        return 0;
    t->seq_datasn = 0;
    if (unsol) {
        t->unsol_open = false;
    } else {
        if (t->received != seq_end) {
            log_info(iscsi, "%s: R2T sequence of task 0x%08x ended short: closing", c->peer, itt);
            return -EPROTO;
        }
        memmove(t->r2t, t->r2t + 1, (t->nr2t - 1) * sizeof t->r2t[0]);
        t->nr2t--;
    }
    return advance(t);
}

/* ---- task management ---- */

/* Abort t (c->lock held): a task still gathering data is dropped now; one
 * in the SCSI layer is marked so its done sends nothing. */
static void abort_locked(struct iscsi_task *t, bool *wait)
{
    if (t->state == TASK_DATA_OUT) {
        /* Released without the lock: the caller does it. */
        t->aborted = true;
    } else if (t->state == TASK_EXEC) {
        t->aborted = true;
        *wait = true;
    }
}

/* What abort_mark found: tasks to release, and whether to wait (for
 * tasks in the SCSI layer, or for responses still going out). */
struct abort_set {
    unsigned n, ndrop;
    bool wait;
    bool sending[ISCSI_TASKS];
    struct iscsi_task *drop[ISCSI_TASKS];
};

/* Mark every task of ours (all: the reader handles PDUs in order, so each
 * was received before the request), or the one tagged itt, as aborted. */
static void abort_mark(struct iscsi_conn *c, bool all, uint32_t itt, struct abort_set *set)
{
    set->n = set->ndrop = 0;
    set->wait = false;
    memset(set->sending, 0, sizeof set->sending);
    LOCK_GUARD(&c->lock);
    for (unsigned i = 0; i < ISCSI_TASKS; i++) {
        struct iscsi_task *t = &c->tasks[i];
        if (t->state == TASK_FREE)
            continue;
        if (!all && t->itt != itt)
            continue;
        if (t->state == TASK_RESPOND) {
            /* done: its response goes out, before ours */
            set->sending[i] = !t->responded;
            set->wait |= set->sending[i];
            continue;
        }
        set->n++;
        abort_locked(t, &set->wait);
        if (t->state == TASK_DATA_OUT)
            set->drop[set->ndrop++] = t;
    }
}

/* Release the marked tasks that gathered data; wait until none of them is
 * in the SCSI layer, and until the responses of those that were already
 * done are on the wire: the TMF response concludes the tasks it names
 * (RFC 7143 4.2.3.3-4: the initiator receives their responses, then the
 * TMF's), so none may follow it, where the initiator could take it for a
 * new task reusing the tag. */
static void abort_finish(struct iscsi_conn *c, const struct abort_set *set)
{
    for (unsigned i = 0; i < set->ndrop; i++)
        task_release(set->drop[i]);
    if (!set->wait)
        return;
    LOCK_GUARD(&c->lock);
    c->tmf_waiting = true;
    for (;;) {
        bool busy = false;
        for (unsigned i = 0; i < ISCSI_TASKS; i++) {
            const struct iscsi_task *t = &c->tasks[i];
            /* Only the reader allocates tasks, and it is here: a slot
             * that was sending is free or still that task. */
            busy |= (t->state == TASK_EXEC && t->aborted) ||
                    (set->sending[i] && t->state == TASK_RESPOND && !t->responded);
        }
        if (!busy)
            break;
        pthread_cond_wait(&c->cond, &c->lock);
    }
    c->tmf_waiting = false;
}

/* Abort our tasks (all, or the one tagged itt) and wait as abort_finish
 * says. Returns how many were aborted. */
static unsigned abort_tasks(struct iscsi_conn *c, bool all, uint32_t itt)
{
    struct abort_set set;
    abort_mark(c, all, itt, &set);
    abort_finish(c, &set);
    return set.n;
}

/* Third-party tasks (RFC 7143 4.2.3.3 and 11.5.1, SAM-5 5.6): the tasks
 * of another session p of the LU, which a reset ends too. The control mode
 * page says TAS=0 (mode.c), so they end silently: no response, no TASK
 * ABORTED status; p's initiator learns of the reset from the unit
 * attention its next command gets. A task still gathering write data is
 * marked and never runs (p's reader frees it: its Data-Out PDUs are
 * dropped); one in the SCSI layer cannot be recalled (a write may already
 * be on its way to the back end): it is marked so its done sends nothing,
 * and clear_lu waits for it as for ours, so nothing of it lands after the
 * TMF response. A task already done still gets its response. */
static unsigned third_party_mark(struct iscsi_conn *p)
{
    bool gathering = false;
    unsigned n = 0;
    LOCK_GUARD(&p->lock);
    for (unsigned i = 0; i < ISCSI_TASKS; i++) {
        struct iscsi_task *t = &p->tasks[i];
        if (t->state == TASK_DATA_OUT || t->state == TASK_EXEC) {
            gathering |= t->state == TASK_DATA_OUT;
            t->aborted = true;
            n++;
        }
    }
    if (gathering)
        __atomic_store_n(&p->abandoned, true, __ATOMIC_RELEASE);
    return n;
}

static void third_party_wait(struct iscsi_conn *p)
{
    LOCK_GUARD(&p->lock);
    for (;;) {
        bool busy = false;
        for (unsigned i = 0; i < ISCSI_TASKS && !busy; i++)
            busy = p->tasks[i].state == TASK_EXEC && p->tasks[i].aborted;
        if (!busy)
            return;
        pthread_cond_wait(&p->cond, &p->lock); /* cmd_done broadcasts */
    }
}

/* Sessions of one LU a reset reaches at once besides ours (the pins are
 * on the stack); more are unusual enough that the rest of them keep their
 * tasks, with a warning. */
#define RESET_PEERS_MAX 64

enum clear_kind { CLEAR_TASKS, RESET_WARM, RESET_COLD };

/* LOGICAL UNIT RESET, and TARGET WARM/COLD RESET (one LU per target):
 * every task of every session of the LU is aborted (SAM-5 6.3.3), ours as
 * ABORT TASK SET does, the others' as third-party tasks; the unit
 * attention goes to every nexus; the TMF response waits until none of
 * them is still running. A cold reset ends the other sessions'
 * connections too (ours ends after the response, RFC 7143 11.5.1).
 * CLEAR TASK SET (SAM-5 7.4) aborts the same tasks, since the control
 * mode page says one task set for all initiators (TST=000), but resets
 * nothing: the sessions whose tasks it aborted get COMMANDS CLEARED BY
 * ANOTHER INITIATOR, the one that asked nothing. */
static void clear_lu(struct iscsi_conn *c, enum clear_kind kind)
{
    struct iscsi_conn *peers[RESET_PEERS_MAX];
    unsigned npeers = iscsi_session_pin_peers(c->srv, c, peers, RESET_PEERS_MAX);
    if (npeers == RESET_PEERS_MAX)
        log_warn(iscsi, "%s: LU reset: %u other sessions or more; any beyond keep their tasks",
                 c->peer, RESET_PEERS_MAX);
    bool cleared[RESET_PEERS_MAX];
    for (unsigned i = 0; i < npeers; i++)
        cleared[i] = third_party_mark(peers[i]) > 0;
    struct abort_set set;
    abort_mark(c, true, 0, &set);
    /* After the marks: a command a third-party task set about to start
     * cannot take the attention and then be silenced. */
    if (c->lu && kind != CLEAR_TASKS)
        scsi_lu_reset(c->lu, &c->nexus);
    for (unsigned i = 0; c->lu && kind == CLEAR_TASKS && i < npeers; i++)
        if (cleared[i])
            scsi_lu_tasks_cleared(c->lu, &peers[i]->nexus);
    abort_finish(c, &set);
    for (unsigned i = 0; i < npeers; i++) {
        third_party_wait(peers[i]);
        if (kind == RESET_COLD)
            shutdown(peers[i]->io->fd, SHUT_RDWR);
    }
    iscsi_session_unpin(c->srv, peers, npeers);
}

int iscsi_task_tmf(struct iscsi_conn *c, const struct iscsi_pdu *pdu)
{
    const uint8_t *bhs = pdu->bhs;
    uint8_t fn = bhs[1] & 0x7f;
    uint64_t lun = lun_number(bhs + ISCSI_BHS_LUN);
    uint8_t resp = ISCSI_TMF_COMPLETE;
    bool close = false;
    int r = skip_data(c, pdu);
    if (r < 0)
        return r;
    if (c->discovery)
        return iscsi_conn_reject(c, bhs, ISCSI_REJECT_UNSUPPORTED);
    switch (fn) {
    case ISCSI_TMF_ABORT_TASK: {
        uint32_t rtt = get_be32(bhs + ISCSI_TMF_RTT);
        /* Not found, or already answering: the task completed. With one
         * connection a CmdSN below ExpCmdSN was received, so RFC 7143
         * 11.5.1's "never received" case cannot arise. */
        if (abort_tasks(c, false, rtt) == 0)
            resp = ISCSI_TMF_NO_TASK;
        break;
    }
    case ISCSI_TMF_ABORT_TASK_SET:
    case ISCSI_TMF_CLEAR_TASK_SET:
    case ISCSI_TMF_LUN_RESET:
        if (lun != 0) {
            resp = ISCSI_TMF_NO_LUN;
            break;
        }
        if (fn == ISCSI_TMF_ABORT_TASK_SET) /* this nexus's tasks only */
            abort_tasks(c, true, 0);
        else
            clear_lu(c, fn == ISCSI_TMF_CLEAR_TASK_SET ? CLEAR_TASKS : RESET_WARM);
        break;
    case ISCSI_TMF_TARGET_WARM_RESET:
    case ISCSI_TMF_TARGET_COLD_RESET:
        /* One LU per target: a target reset is a reset of that LU. A cold
         * reset also ends the connections (RFC 7143 11.5.1). */
        clear_lu(c, fn == ISCSI_TMF_TARGET_COLD_RESET ? RESET_COLD : RESET_WARM);
        close = fn == ISCSI_TMF_TARGET_COLD_RESET;
        break;
    case ISCSI_TMF_CLEAR_ACA:
        resp = ISCSI_TMF_NOT_SUPPORTED;
        break;
    case ISCSI_TMF_TASK_REASSIGN:
        resp = 4; /* allegiance reassignment not supported (ERL 0) */
        break;
    default:
        resp = ISCSI_TMF_REJECTED;
        break;
    }
    uint8_t out[ISCSI_BHS_SIZE] = {0};
    out[0] = ISCSI_OP_TMF_RSP;
    out[1] = ISCSI_FLAG_F;
    out[2] = resp;
    put_be32(out + ISCSI_BHS_ITT, get_be32(bhs + ISCSI_BHS_ITT));
    r = iscsi_conn_send(c, out, NULL, 0, 0, STATSN_ADVANCE);
    if (r == 0 && close)
        r = -ECONNRESET;
    return r;
}

void iscsi_tasks_drain(struct iscsi_conn *c)
{
    if (!c->tasks)
        return;
    /* Tasks still waiting for data never get it; the others finish. */
    struct iscsi_task *drop[ISCSI_TASKS];
    unsigned ndrop = 0;
    {
        LOCK_GUARD(&c->lock);
        for (unsigned i = 0; i < ISCSI_TASKS; i++)
            if (c->tasks[i].state == TASK_DATA_OUT)
                drop[ndrop++] = &c->tasks[i];
    }
    for (unsigned i = 0; i < ndrop; i++)
        task_release(drop[i]);
    LOCK_GUARD(&c->lock);
    while (c->slots_used)
        pthread_cond_wait(&c->cond, &c->lock);
}

/* ---- the sender thread: sends the responses iscsi_conn_queue queued ---- */

#define SENDER_STACK (256u * 1024)

static void *sender_main(void *arg)
{
    struct iscsi_conn *c = arg;
    for (;;) {
        struct iscsi_task *list;
        {
            LOCK_GUARD(&c->lock);
            while (!c->outq_head && !c->sender_stop)
                pthread_cond_wait(&c->out_cond, &c->lock);
            if (!c->outq_head)
                return NULL;
            list = c->outq_head;
            c->outq_head = c->outq_tail = NULL;
        }
        while (list) {
            struct iscsi_task *next = list->next;
            iscsi_task_respond(list);
            list = next;
        }
    }
}

int iscsi_conn_sender_start(struct iscsi_conn *c)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SENDER_STACK);
    int r = -pthread_create(&c->sender, &attr, sender_main, c);
    pthread_attr_destroy(&attr);
    if (r == 0)
        c->sender_running = true;
    return r;
}

void iscsi_conn_sender_stop(struct iscsi_conn *c)
{
    {
        LOCK_GUARD(&c->lock);
        c->sender_stop = true;
        pthread_cond_signal(&c->out_cond);
    }
    pthread_join(c->sender, NULL);
}
