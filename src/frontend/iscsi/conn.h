/* One iSCSI connection: its state from login to logout, shared by the
 * files that speak its parts (login.c, text.c, task.c, conn.c, send.c). Sessions
 * have exactly one connection (MaxConnections=1: no MC/S); an initiator
 * that wants several paths opens several sessions (multipath).
 *
 * Threads and locks of a connection:
 *   - the reader (the listener's thread for this client) runs the login,
 *     then reads every PDU, answers NOP-Out, Text, Logout and task
 *     management itself, gathers write data (immediate, unsolicited, R2T)
 *     and hands complete SCSI commands to the SCSI layer;
 *   - a command's done callback runs on the reader (commands the SCSI layer
 *     answers at once, RAM hits), which sends the response itself, or on a
 *     core worker, which only queues the task for the connection's sender
 *     thread: a worker never waits for a client;
 *   - send_lock serialises PDUs on the socket and guards statsn (StatSN is
 *     given when a PDU goes out, so it rises in wire order);
 *   - lock + cond guard the task table's states, the CmdSN window and the
 *     sender's queue (out_cond wakes the sender). Lock order: send_lock,
 *     then lock. */
#ifndef SHOAL_FRONTEND_ISCSI_CONN_H
#define SHOAL_FRONTEND_ISCSI_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "frontend/conn_io.h"
#include "frontend/iscsi/params.h"
#include "frontend/iscsi/pdu.h"
#include "frontend/iscsi/proto.h"
#include "frontend/scsi/scsi.h"

struct iscsi_server;
struct iscsi_session;
struct volume;

/* Non-immediate commands the CmdSN window admits at once (the queue depth
 * an initiator sees), and immediate ones on top of them. A command leaves
 * the window when its response goes out (that response's MaxCmdSN already
 * counts the slot free), but keeps its task slot until the core lets go of
 * it (the cache update after a read runs after the response): the table
 * has room for ISCSI_TAIL such tasks on top of the window. */
#define ISCSI_WINDOW    64
#define ISCSI_IMMEDIATE 8
#define ISCSI_TAIL      16
#define ISCSI_TASKS     (ISCSI_WINDOW + ISCSI_IMMEDIATE + ISCSI_TAIL)
/* Largest data-out one command may bring (COMPARE AND WRITE's two halves
 * of the core's largest I/O). */
#define ISCSI_MAX_DATA_OUT (64u << 20)
/* Login and text exchanges: the longest text we gather or answer. */
#define ISCSI_TEXT_MAX (64u * 1024)

enum iscsi_task_state {
    TASK_FREE,
    TASK_DATA_OUT, /* gathering write data */
    TASK_EXEC,     /* in the SCSI layer */
    TASK_RESPOND,  /* done: the response is going out */
};

struct iscsi_r2t {
    uint32_t offset, len, ttt;
};

struct iscsi_task {
    struct scsi_cmd cmd;
    struct iscsi_conn *c;
    unsigned index;
    enum iscsi_task_state state; /* under c->lock */
    bool immediate;
    bool aborted;     /* TMF: done sends nothing */
    bool local;       /* answered by the transport itself, never given to scsi_exec */
    bool responded;   /* its response is on the wire, or never will be (under c->lock) */
    bool left_window; /* final response sent or going out: out of the window (under c->lock) */
    uint32_t itt, cmdsn, edtl;
    uint64_t lun;
    uint8_t *buf; /* data-out, bufpool */
    size_t buflen;
    uint32_t received;       /* data-out bytes in, in order */
    uint32_t unsol_end;      /* where unsolicited data may end */
    bool unsol_open;         /* unsolicited Data-Out PDUs still come */
    uint32_t seq_datasn;     /* DataSN expected next in the current sequence */
    uint32_t r2t_next;       /* next offset to solicit */
    uint32_t r2tsn;          /* next R2TSN */
    struct iscsi_r2t r2t[8]; /* outstanding, oldest first */
    unsigned nr2t;
    uint32_t exp_datasn;     /* R2Ts and Data-Ins sent (the response's ExpDataSN) */
    struct iscsi_task *next; /* sender queue */
};

struct iscsi_conn {
    struct iscsi_server *srv;
    struct conn_io *io;
    const int *stopping;
    struct iscsi_rx rx;
    uint8_t *rxbuf;
    pthread_t reader;
    char peer[64]; /* for log lines */

    /* Who and what, from the login. */
    bool discovery;
    char initiator[ISCSI_NAME_MAX + 1];
    char target[ISCSI_NAME_MAX + 1]; /* normal sessions: the target's full name */
    uint8_t isid[6];
    uint16_t tsih, cid;
    struct volume *v;   /* normal sessions: the volume behind the target */
    struct scsi_lu *lu; /* its LU (LUN 0) */
    struct iscsi_session *sess;
    struct scsi_nexus nexus;
    char nexus_i[ISCSI_NAME_MAX + 32], nexus_t[ISCSI_NAME_MAX + 32];
    struct iscsi_params p;
    bool readonly; /* --readonly: refuse commands that write */

    pthread_mutex_t send_lock;
    uint32_t statsn;   /* next StatSN; under send_lock */
    bool broken;       /* a send failed; atomic */
    uint32_t ping_ttt; /* our NOP-In ping awaiting its answer, or reserved */
    uint64_t ping_ns;  /* when it was sent */

    pthread_mutex_t lock;
    pthread_cond_t cond;     /* a task changed state */
    pthread_cond_t out_cond; /* work for the sender */
    uint32_t exp_cmdsn;
    unsigned inflight_window;    /* non-immediate commands, from their CmdSN to their response */
    unsigned inflight_immediate; /* immediate tasks not free */
    unsigned slots_used;         /* tasks not free */
    bool tmf_waiting;            /* a task management function waits on cond for responses */
    bool abandoned;              /* another session's reset aborted tasks gathering data; atomic */
    struct iscsi_task *outq_head, *outq_tail;
    bool sender_stop;
    pthread_t sender;
    bool sender_running;

    /* A text response longer than one PDU (SendTargets), sent in parts. */
    char *text_buf;
    size_t text_len, text_off;
    uint32_t text_ttt, text_itt;
    /* A text request in parts (C bit), gathered until its last part. */
    char *text_req;
    size_t text_req_len;
    uint32_t text_req_ttt, text_req_itt;

    /* The task table: made once a normal session is logged in (a
     * connection still logging in, or a discovery session, has none). */
    struct iscsi_task *tasks;
};

/* ---- conn.c ---- */
struct listener_conn;
/* The listener's handler: one connection from login to close. */
void iscsi_conn_serve(struct iscsi_server *s, struct listener_conn *lc);

/* ---- send.c ---- */
/* What a PDU's StatSN field holds. */
enum iscsi_statsn {
    STATSN_NONE,    /* reserved (Data-In without status) */
    STATSN_PEEK,    /* the next StatSN, not consumed (R2T, pings) */
    STATSN_ADVANCE, /* a status: the next StatSN, consumed */
};
/* Fill in StatSN, ExpCmdSN and MaxCmdSN, and send. 0 or -errno (the
 * connection is then marked broken). */
int iscsi_conn_send(struct iscsi_conn *c, uint8_t *bhs, const struct iovec *iov, int niov,
                    uint32_t dlen, enum iscsi_statsn sn);
/* Same, with send_lock already held. */
int iscsi_conn_send_locked(struct iscsi_conn *c, uint8_t *bhs, const struct iovec *iov, int niov,
                           uint32_t dlen, enum iscsi_statsn sn);
/* Hand a finished task to the sender thread. */
void iscsi_conn_queue(struct iscsi_conn *c, struct iscsi_task *t);
/* A Reject of the PDU whose header is bhs. */
int iscsi_conn_reject(struct iscsi_conn *c, const uint8_t *bhs, uint8_t reason);
/* MaxCmdSN to announce now; under c->lock. */
uint32_t iscsi_conn_max_cmdsn_locked(const struct iscsi_conn *c);
bool iscsi_conn_broken(const struct iscsi_conn *c);
/* The sender thread of a logged-in connection (task.c). */
int iscsi_conn_sender_start(struct iscsi_conn *c);
void iscsi_conn_sender_stop(struct iscsi_conn *c);

/* ---- login.c ---- */
/* Run the login phase on a fresh connection: 0 once in full feature phase
 * (c describes the session), or -errno after the refusal was sent (or the
 * connection failed). */
int iscsi_login(struct iscsi_conn *c);

/* ---- text.c ---- */
/* A Text Request in full feature phase (SendTargets). pdu's data is in
 * data. 0, or -errno to drop the connection. */
int iscsi_text(struct iscsi_conn *c, const struct iscsi_pdu *pdu, const char *data);
/* Append the SendTargets answer for `what` ("All", a target name, or "" for
 * this session's target) to out. */
struct iscsi_kv_out;
void iscsi_send_targets(struct iscsi_conn *c, const char *what, struct iscsi_kv_out *out);

/* ---- task.c ---- */
/* Make the task table (0 or -ENOMEM); free it once no task is in flight. */
int iscsi_tasks_init(struct iscsi_conn *c);
void iscsi_tasks_free(struct iscsi_conn *c);
/* A SCSI Command PDU (header read, data segment not yet). 0 or -errno. */
int iscsi_task_command(struct iscsi_conn *c, const struct iscsi_pdu *pdu);
/* A Data-Out PDU (header read, data not yet). 0 or -errno. */
int iscsi_task_data_out(struct iscsi_conn *c, const struct iscsi_pdu *pdu);
/* A Task Management Function Request. 0 or -errno. */
int iscsi_task_tmf(struct iscsi_conn *c, const struct iscsi_pdu *pdu);
/* Send the response of a task whose done ran (the sender thread, or the
 * reader for commands answered at once). */
void iscsi_task_respond(struct iscsi_task *t);
/* Wait until no task is in flight; tasks still gathering data are dropped. */
void iscsi_tasks_drain(struct iscsi_conn *c);

#endif
