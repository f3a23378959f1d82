/* One iSCSI session: login, one command at a time, status mapping (see
 * session.h). */
#include "backend/iscsi/session.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "common/log.h"
#include "common/util.h"

/* Unit attentions (a fresh login reports "power on, reset" and the like)
 * and busy answers are retried this often before the command fails. */
#define ISC_RETRIES 8

/* A command waited for on the caller's stack; the callback runs on the
 * same thread, inside iscsi_service() or when the context is torn down. */
struct isc_wait {
    bool done;
    int status;
    /* libiscsi keeps pointers to these until the command is over. */
    struct scsi_iovec iov;
    struct unmap_list ul;
};

static void on_task(struct iscsi_context *ctx, int status, void *data, void *priv)
{
    (void)ctx;
    (void)data; /* the task: the caller kept the pointer it got at submit */
    struct isc_wait *w = priv;
    w->status = status;
    w->done = true;
}

/* libiscsi's last error without its trailing newline or function-name
 * prefix ("iscsi_service: socket error ..."). */
static const char *error_words(struct iscsi_context *ctx, char *buf, size_t len)
{
    const char *e = iscsi_get_error(ctx);
    const char *colon = strstr(e, ": ");
    if (!strncmp(e, "iscsi_", 6) && colon && colon - e < 40)
        e = colon + 2;
    snprintf(buf, len, "%s", e);
    buf[strcspn(buf, "\n")] = '\0';
    return buf[0] ? buf : "no reason given";
}

static void on_connect(struct iscsi_context *ctx, int status, void *data, void *priv)
{
    (void)data;
    struct isc_session *s = priv;
    s->conn_status = status;
    s->conn_done = true;
    /* Taken now: libiscsi overwrites it before the caller can look. */
    if (status != SCSI_STATUS_GOOD)
        error_words(ctx, s->conn_error, sizeof s->conn_error);
}

/* Drive ctx until *done (set by a callback) or the deadline. 0, -ETIMEDOUT,
 * or -ECONNRESET when libiscsi gave up on the connection. */
static int pump(struct iscsi_context *ctx, const bool *done, uint64_t deadline)
{
    while (!*done) {
        uint64_t now = now_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        int ms = (int)MIN((deadline - now) / 1000000u + 1, 1000u);
        int ev = iscsi_which_events(ctx);
        int fd = iscsi_get_fd(ctx);
        struct pollfd pfd = {.fd = fd, .events = (short)ev};
        int n;
        if (ev == 0 || fd < 0)
            n = poll(NULL, 0, MIN(ms, 100)); /* libiscsi asks for a pause */
        else
            n = poll(&pfd, 1, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -ECONNRESET;
        }
        int r = iscsi_service(ctx, n > 0 ? pfd.revents : 0);
        if (*done)
            return 0;
        if (r < 0)
            return -ECONNRESET;
    }
    return 0;
}

int isc_sense_errno(int key, int ascq)
{
    switch (key) {
    case SCSI_SENSE_ILLEGAL_REQUEST:
        switch (ascq) {
        case SCSI_SENSE_ASCQ_INVALID_OPERATION_CODE:
        case SCSI_SENSE_ASCQ_INVALID_FIELD_IN_CDB:
            return -EOPNOTSUPP; /* the target lacks this command or option */
        case SCSI_SENSE_ASCQ_LOGICAL_UNIT_NOT_SUPPORTED:
            return -ENXIO;
        default:
            return -EINVAL;
        }
    case SCSI_SENSE_DATA_PROTECTION:
        /* 27/07: thin provisioning ran out of space. */
        return ascq == 0x2707 ? -ENOSPC : -EROFS;
    default:
        return -EIO;
    }
}

static struct scsi_task *submit(struct iscsi_context *ctx, uint32_t lun, const struct isc_cmd *c,
                                struct isc_wait *w)
{
    int l = (int)lun;
    switch (c->kind) {
    case ISC_TUR:
        return iscsi_testunitready_task(ctx, l, on_task, w);
    case ISC_INQUIRY:
        return iscsi_inquiry_task(ctx, l, c->evpd, c->page, (int)c->alloc, on_task, w);
    case ISC_READ_CAPACITY16:
        return iscsi_readcapacity16_task(ctx, l, on_task, w);
    case ISC_MODE_SENSE6:
        return iscsi_modesense6_task(ctx, l, 1, SCSI_MODESENSE_PC_CURRENT,
                                     SCSI_MODEPAGE_RETURN_ALL_PAGES, 0, (unsigned char)c->alloc,
                                     on_task, w);
    case ISC_READ16:
        /* Into libiscsi's own buffer, not ours: only there does it say how
         * many bytes came (datain.size). With a buffer of ours it writes
         * each Data-In where it says and keeps no count, so a target that
         * sends less than asked without flagging the underflow would leave
         * stale bytes we would serve and cache (upstream_iscsi_short's
         * short-silent target). judge copies the data out: one copy, on a
         * path the network bounds anyway. */
        return iscsi_read16_task(ctx, l, c->lba, c->nblocks * c->block, (int)c->block, 0, 0, 0, 0,
                                 0, on_task, w);
    case ISC_WRITE16:
        w->iov = (struct scsi_iovec){c->buf, (size_t)c->nblocks * c->block};
        return iscsi_write16_iov_task(ctx, l, c->lba, NULL, c->nblocks * c->block, (int)c->block, 0,
                                      0, c->fua, 0, 0, on_task, w, &w->iov, 1);
    case ISC_SYNC_CACHE16:
        return iscsi_synchronizecache16_task(ctx, l, 0, 0, 0, 0, on_task, w);
    case ISC_SYNC_CACHE10:
        return iscsi_synchronizecache10_task(ctx, l, 0, 0, 0, 0, on_task, w);
    case ISC_UNMAP:
        w->ul = (struct unmap_list){.lba = c->lba, .num = c->nblocks};
        return iscsi_unmap_task(ctx, l, 0, 0, &w->ul, 1, on_task, w);
    case ISC_WRITE_SAME16:
        /* The _iov variant sends no data at all when data is NULL. */
        return iscsi_writesame16_task(ctx, l, c->lba, c->buf, c->block, c->nblocks, 0, c->unmap, 0,
                                      0, on_task, w);
    case ISC_GET_LBA_STATUS:
        return iscsi_get_lba_status_task(ctx, l, c->lba, c->alloc, on_task, w);
    }
    return NULL;
}

static const char *kind_name(enum isc_kind k)
{
    static const char *const names[] = {
        [ISC_TUR] = "TEST UNIT READY",
        [ISC_INQUIRY] = "INQUIRY",
        [ISC_READ_CAPACITY16] = "READ CAPACITY(16)",
        [ISC_MODE_SENSE6] = "MODE SENSE(6)",
        [ISC_READ16] = "READ(16)",
        [ISC_WRITE16] = "WRITE(16)",
        [ISC_SYNC_CACHE16] = "SYNCHRONIZE CACHE(16)",
        [ISC_SYNC_CACHE10] = "SYNCHRONIZE CACHE(10)",
        [ISC_UNMAP] = "UNMAP",
        [ISC_WRITE_SAME16] = "WRITE SAME(16)",
        [ISC_GET_LBA_STATUS] = "GET LBA STATUS",
    };
    return (unsigned)k < ARRAY_SIZE(names) && names[k] ? names[k] : "command";
}

void isc_session_drop_locked(struct isc_session *s)
{
    if (!s->ctx)
        return;
    /* Cancels what is in flight: each callback runs with CANCELLED. */
    iscsi_destroy_context(s->ctx);
    s->ctx = NULL;
    s->gen++;
    atomic_store(&s->up, false);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* One attempt's outcome, before retries: 1 = retry, else 0 or -errno. */
static int judge(const struct isc_login *l, const struct isc_cmd *c, struct scsi_task *task,
                 int status, bool *busy)
{
    *busy = false;
    switch (status) {
    case SCSI_STATUS_GOOD:
        /* A short read would leave stale bytes in the caller's buffer,
         * whether the target flags the underflow or not. */
        if (c->kind == ISC_READ16) {
            size_t want = (size_t)c->nblocks * c->block;
            if ((task->residual_status == SCSI_RESIDUAL_UNDERFLOW && task->residual > 0) ||
                task->datain.size < 0 || (size_t)task->datain.size != want || !task->datain.data) {
                log_error(backend,
                          "iscsi: %s: READ(16) of %u blocks at %" PRIu64
                          " came back short (%d of %zu bytes)",
                          l->spec, c->nblocks, c->lba, task->datain.size, want);
                return -EIO;
            }
            memcpy(c->buf, task->datain.data, want);
        }
        /* A write the target took only part of is not on the LUN. */
        if (c->kind == ISC_WRITE16 && task->residual_status == SCSI_RESIDUAL_UNDERFLOW &&
            task->residual > 0) {
            log_error(backend,
                      "iscsi: %s: WRITE(16) of %u blocks at %" PRIu64
                      " taken short (residual %zu bytes)",
                      l->spec, c->nblocks, c->lba, task->residual);
            return -EIO;
        }
        return 0;
    case SCSI_STATUS_CHECK_CONDITION: {
        int key = task->sense.key, ascq = task->sense.ascq;
        if (key == SCSI_SENSE_UNIT_ATTENTION) {
            if (ascq == SCSI_SENSE_ASCQ_CAPACITY_DATA_HAS_CHANGED)
                log_warn(backend, "iscsi: %s: the target says the LUN's capacity changed", l->spec);
            return 1;
        }
        if (key == SCSI_SENSE_COMMAND_ABORTED)
            return 1;
        int r = isc_sense_errno(key, ascq);
        const char *what = scsi_sense_key_str(key);
        if (r == -EIO)
            log_error(backend, "iscsi: %s: %s failed: %s (%02x/%02x)", l->spec, kind_name(c->kind),
                      what ? what : "sense", (unsigned)ascq >> 8, (unsigned)ascq & 0xff);
        else
            log_debug(backend, "iscsi: %s: %s: %s (%02x/%02x)", l->spec, kind_name(c->kind),
                      what ? what : "sense", (unsigned)ascq >> 8, (unsigned)ascq & 0xff);
        return r;
    }
    case SCSI_STATUS_BUSY:
    case SCSI_STATUS_TASK_SET_FULL:
    case SCSI_STATUS_TASK_ABORTED:
        *busy = true;
        return 1;
    case SCSI_STATUS_RESERVATION_CONFLICT:
        log_error(backend, "iscsi: %s: %s: reservation conflict (another initiator holds the LUN)",
                  l->spec, kind_name(c->kind));
        return -EIO;
    default:
        log_error(backend, "iscsi: %s: %s: SCSI status 0x%x", l->spec, kind_name(c->kind), status);
        return -EIO;
    }
}

int isc_session_run_locked(const struct isc_login *l, struct isc_session *s,
                           const struct isc_cmd *c, uint64_t timeout_ms, struct scsi_task **keep)
{
    if (!s->ctx)
        return -ECONNRESET;
    uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
    char why[160];
    for (unsigned attempt = 0;; attempt++) {
        struct isc_wait w = {0};
        struct scsi_task *task = submit(s->ctx, l->lun, c, &w);
        if (!task) {
            log_error(backend, "iscsi: %s: cannot queue %s: %s", l->spec, kind_name(c->kind),
                      error_words(s->ctx, why, sizeof why));
            isc_session_drop_locked(s);
            return -ECONNRESET;
        }
        int r = pump(s->ctx, &w.done, deadline);
        if (r < 0) {
            if (r == -ETIMEDOUT)
                log_error(backend,
                          "iscsi: %s: session %u: %s got no answer within %" PRIu64
                          " ms, dropping the session",
                          l->spec, s->idx, kind_name(c->kind), timeout_ms);
            else
                log_warn(backend, "iscsi: %s: session %u lost: %s", l->spec, s->idx,
                         error_words(s->ctx, why, sizeof why));
            isc_session_drop_locked(s);
            scsi_free_scsi_task(task);
            return r;
        }
        if (w.status == SCSI_STATUS_CANCELLED || w.status == SCSI_STATUS_ERROR ||
            w.status == SCSI_STATUS_TIMEOUT) {
            log_warn(backend, "iscsi: %s: session %u lost (connection closed)", l->spec, s->idx);
            isc_session_drop_locked(s);
            scsi_free_scsi_task(task);
            return -ECONNRESET;
        }
        bool busy;
        r = judge(l, c, task, w.status, &busy);
        if (r == 0 && keep)
            *keep = task;
        else
            scsi_free_scsi_task(task);
        if (r <= 0)
            return r;
        uint64_t now = now_ns();
        if (attempt + 1 >= ISC_RETRIES || now >= deadline) {
            log_error(backend, "iscsi: %s: %s still refused after %u tries", l->spec,
                      kind_name(c->kind), attempt + 1);
            return -EIO;
        }
        if (busy)
            sleep_ms((unsigned)MIN((deadline - now) / 1000000u, 10u << attempt));
    }
}

/* ---- login */

static int set_up(const struct isc_login *l, struct isc_session *s, struct iscsi_context *ctx)
{
    if (iscsi_set_targetname(ctx, l->target) < 0 ||
        iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL) < 0 ||
        iscsi_set_header_digest(ctx, l->header_digest) < 0 ||
        iscsi_set_isid_random(ctx, l->isid_rnd, s->idx) < 0)
        return -EINVAL;
    if (l->user && iscsi_set_initiator_username_pwd(ctx, l->user, l->password) < 0)
        return -EINVAL;
    /* Our sessions log in again themselves, with a bound (see iscsi.c). */
    iscsi_set_noautoreconnect(ctx, 1);
    return 0;
}

static int login(const struct isc_login *l, struct isc_session *s, uint64_t deadline)
{
    double secs = (double)l->connect_timeout_ms / 1000.0;
    struct iscsi_context *ctx = s->ctx;
    if (set_up(l, s, ctx) < 0) {
        char why[160];
        backend_set_open_error("cannot set up the iSCSI session: %s",
                               error_words(ctx, why, sizeof why));
        return -EINVAL;
    }

    char why[160];
    s->conn_done = false;
    snprintf(s->conn_error, sizeof s->conn_error, "connection failed");
    if (iscsi_connect_async(ctx, l->portal, on_connect, s) < 0) {
        backend_set_open_error("cannot connect to %s: %s", l->portal,
                               error_words(ctx, why, sizeof why));
        return -EHOSTUNREACH;
    }
    int r = pump(ctx, &s->conn_done, deadline);
    if (r == -ETIMEDOUT) {
        backend_set_open_error("no connection to %s within %.1f s", l->portal, secs);
        return r;
    }
    if (r < 0 || s->conn_status != SCSI_STATUS_GOOD) {
        backend_set_open_error("cannot connect to %s: %s", l->portal, s->conn_error);
        return -ECONNREFUSED;
    }

    struct isc_wait w = {0};
    if (iscsi_login_async(ctx, on_task, &w) < 0) {
        backend_set_open_error("cannot log in to %s: %s", l->portal,
                               error_words(ctx, why, sizeof why));
        return -EIO;
    }
    r = pump(ctx, &w.done, deadline);
    if (r == -ETIMEDOUT) {
        backend_set_open_error("connected to %s, but no iSCSI login answer within %.1f s (target "
                               "hung, or not an iSCSI target?)",
                               l->portal, secs);
        return r;
    }
    if (r < 0 || w.status != SCSI_STATUS_GOOD) {
        /* libiscsi's words carry the target's reason ("Authentication
         * failure", "Target not found", ...). */
        backend_set_open_error("login to target %s at %s as %s failed: %s", l->target, l->portal,
                               l->initiator, error_words(ctx, why, sizeof why));
        return -EACCES;
    }

    /* Consume the unit attentions of a new nexus, and check the LUN. */
    uint64_t now = now_ns();
    uint64_t left = deadline > now ? (deadline - now) / 1000000u : 0;
    struct isc_cmd tur = {.kind = ISC_TUR};
    r = isc_session_run_locked(l, s, &tur, left ? left : 1, NULL);
    if (r == -ENXIO) {
        backend_set_open_error("target %s at %s has no LUN %u", l->target, l->portal, l->lun);
        return -ENXIO;
    }
    if (r == -ETIMEDOUT) {
        backend_set_open_error("logged in to %s, but TEST UNIT READY got no answer within %.1f s",
                               l->target, secs);
        return r;
    }
    if (r < 0) {
        backend_set_open_error("LUN %u of %s is not ready (%s)", l->lun, l->target,
                               strerror(r == -ECONNRESET ? ECONNRESET : -r));
        return -EIO;
    }
    return 0;
}

int isc_session_login_locked(const struct isc_login *l, struct isc_session *s, bool quiet)
{
    isc_session_drop_locked(s);
    s->last_attempt_ns = now_ns();
    uint64_t deadline = s->last_attempt_ns + l->connect_timeout_ms * 1000000ull;
    s->ctx = iscsi_create_context(l->initiator);
    if (!s->ctx) {
        backend_set_open_error("cannot create an iSCSI context (initiator name %s)", l->initiator);
        return -ENOMEM;
    }
    int r = login(l, s, deadline);
    if (r < 0) {
        isc_session_drop_locked(s);
        if (!quiet)
            log_error(backend, "iscsi: %s: session %u: %s", l->spec, s->idx, backend_open_error());
        return r;
    }
    s->gen++;
    atomic_store(&s->up, true);
    return 0;
}

int isc_session_service_idle_locked(const struct isc_login *l, struct isc_session *s)
{
    /* A few rounds: reading a NOP-In queues the NOP-Out, which the next
     * round writes if the socket takes it. */
    for (int round = 0; s->ctx && round < 4; round++) {
        int fd = iscsi_get_fd(s->ctx);
        int ev = iscsi_which_events(s->ctx);
        if (fd < 0)
            goto lost; /* logged in, yet no socket: libiscsi gave up on it */
        if (ev == 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = (short)ev};
        int n = poll(&pfd, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto lost;
        if (n == 0)
            return 0;
        if (iscsi_service(s->ctx, pfd.revents) < 0)
            goto lost;
    }
    return 0;
lost:;
    char why[160];
    log_warn(backend, "iscsi: %s: idle session %u lost: %s", l->spec, s->idx,
             s->ctx ? error_words(s->ctx, why, sizeof why) : "connection closed");
    isc_session_drop_locked(s);
    return -ECONNRESET;
}
