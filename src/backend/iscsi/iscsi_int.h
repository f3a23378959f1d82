/* The iSCSI back end's instance, shared by its files: iscsi.c (the ops,
 * the session pool), lu.c (what the LUN is: size, block size, write
 * protection, provisioning). See iscsi.c for the design. */
#ifndef SHOAL_BACKEND_ISCSI_INT_H
#define SHOAL_BACKEND_ISCSI_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/iscsi/session.h"
#include "backend/iscsi/uri.h"

struct isc_be {
    struct backend be; /* first: be.priv points back at us */
    struct iscsi_uri uri;
    char portal[300];
    char initiator[ISCSI_URI_MAX_NAME + 1]; /* ours, when the URI names none */
    struct isc_login login;
    uint64_t timeout_ms; /* one command, retries included */

    /* Learned at open (lu.c), constant afterwards. */
    uint32_t block;     /* logical block size, bytes */
    uint32_t max_xfer;  /* bytes per READ(16)/WRITE(16), a multiple of block */
    uint32_t max_unmap; /* blocks per UNMAP; 0: no UNMAP */
    uint32_t max_ws;    /* blocks per WRITE SAME(16) */
    bool readonly;      /* asked for, or the target's write protect */
    bool fua;           /* MODE SENSE's DPOFUA: WRITE(16) takes FUA */
    bool lbpme, lbprz;  /* thin provisioned; unmapped blocks read as zeros */
    bool lbpws;         /* WRITE SAME(16) may unmap */
    char vendor[9], product[17];

    /* Commands the target turned out not to have: asked once, then not. */
    atomic_bool no_write_same, no_sync16, no_lba_status, no_unmap;

    unsigned nsess;
    struct isc_session *sess;
    atomic_uint rr; /* where the next request starts looking for a session */

    /* The idle service (iscsi.c): answers the target's NOP-Ins on the
     * sessions no request is driving. */
    pthread_t idle_thread;
    bool idle_started;
    int idle_efd; /* eventfd: a session's socket changed, or close */
    atomic_bool idle_stop;
    void *zero_block;
};

/* Learn the LUN through session 0 (logged in, not yet shared): fills the
 * fields above and be.size/caps/min_block. 0 or a negative errno with
 * backend_open_error() set. */
int isc_learn_lu(struct isc_be *ib, const struct backend_params *p);

#endif
