/* One iSCSI session of the iSCSI back end: log in (TCP connect, login,
 * TEST UNIT READY), run one SCSI command at a time and wait for it, map
 * its status to an errno, drop the session when the transport fails.
 *
 * A libiscsi context is not thread-safe, so each session has a mutex and
 * every function here that takes a session wants it held (_locked): the
 * caller owns the context for the whole round trip, drives its socket with
 * poll() + iscsi_service() itself, and nothing else touches it meanwhile.
 * libiscsi's own automatic reconnect is off: a dropped connection fails the
 * command (-ECONNRESET) and the caller decides whether to log in again. */
#ifndef SHOAL_BACKEND_ISCSI_SESSION_H
#define SHOAL_BACKEND_ISCSI_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

/* How to log in; shared by every session of a back end, read-only. */
struct isc_login {
    const char *spec; /* the URI with any password redacted, for messages */
    const char *portal;
    const char *target;
    const char *initiator;
    const char *user;     /* CHAP, or NULL */
    const char *password; /* with user */
    uint32_t lun;
    uint32_t isid_rnd; /* the same for every session of a back end ... */
    uint64_t connect_timeout_ms;
    enum iscsi_header_digest header_digest; /* what the login offers */
};

struct isc_session {
    pthread_mutex_t lock;
    struct iscsi_context *ctx; /* NULL while logged out */
    atomic_bool up;            /* ctx != NULL, for a look without the lock */
    unsigned idx;              /* ... and this tells them apart (ISID qualifier) */
    uint64_t last_attempt_ns;  /* last login attempt */
    /* Bumped (under the lock) whenever ctx changes: the idle service
     * (iscsi.c) polls sockets without the lock and must learn that the
     * one it watches is gone. */
    unsigned gen;
    /* The TCP connect callback's result: its private data must outlive the
     * call that starts it, so it lives here rather than on a stack. */
    bool conn_done;
    int conn_status;
    char conn_error[160]; /* libiscsi's words when the connect failed */
};

enum isc_kind {
    ISC_TUR,
    ISC_INQUIRY, /* evpd/page, alloc: data comes back in *keep */
    ISC_READ_CAPACITY16,
    ISC_MODE_SENSE6,
    ISC_READ16,
    ISC_WRITE16,
    ISC_SYNC_CACHE16,
    ISC_SYNC_CACHE10,
    ISC_UNMAP,
    ISC_WRITE_SAME16,
    ISC_GET_LBA_STATUS,
};

struct isc_cmd {
    enum isc_kind kind;
    uint32_t block; /* logical block size */
    uint64_t lba;
    uint32_t nblocks;
    void *buf; /* READ16/WRITE16: nblocks * block bytes; WRITE_SAME16: one block, kept until done */
    bool fua;  /* WRITE16, WRITE_SAME16 */
    bool unmap; /* WRITE_SAME16 */
    bool evpd;  /* INQUIRY */
    uint8_t page;
    uint32_t alloc; /* INQUIRY, MODE SENSE, GET LBA STATUS: allocation length */
};

/* Log s in (after dropping any old context), within the connect timeout.
 * 0 or a negative errno; the reason is in backend_open_error(), and is also
 * logged unless quiet (the caller reports it: a volume being opened). */
int isc_session_login_locked(const struct isc_login *l, struct isc_session *s, bool quiet);
/* Tear s's context down (no logout: the target may be gone). In-flight
 * commands are cancelled; the next login reinstates the session (same
 * ISID), which makes the target end whatever the old one still had. */
void isc_session_drop_locked(struct isc_session *s);

/* Run c on a logged-in session and wait, at most timeout_ms. Unit
 * attentions and busy targets are retried within that time. Returns 0 (a
 * data-in command's task in *keep if keep is not NULL: the caller
 * scsi_free_scsi_task()s it), a negative errno from the target's sense
 * data, -ECONNRESET when the transport failed or -ETIMEDOUT when the
 * target did not answer (both drop the session). */
int isc_session_run_locked(const struct isc_login *l, struct isc_session *s,
                           const struct isc_cmd *c, uint64_t timeout_ms, struct scsi_task **keep);

/* Answer what the target sent an idle session: its NOP-In pings (one with
 * a Target Transfer Tag wants a NOP-Out echoing it, or the target drops the
 * session, RFC 7143 11.19) and anything else unsolicited. Services only
 * what the socket has ready now, never waits; a NOP-Out that could not go
 * out yet leaves POLLOUT in iscsi_which_events(). 0, or -ECONNRESET when
 * the connection turned out dead (s is dropped; the next request logs in
 * again). */
int isc_session_service_idle_locked(const struct isc_login *l, struct isc_session *s);

/* The errno for a CHECK CONDITION's sense data (exported for the tests). */
int isc_sense_errno(int key, int ascq);

#endif
