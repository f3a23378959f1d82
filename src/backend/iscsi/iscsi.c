/* iSCSI back end: a volume's data on a LUN of an iSCSI array, reached with
 * libiscsi. Spec: iscsi://[user[%password]@]host[:port]/target-iqn/lun
 * (uri.h; CHAP secret preferably from ?secret-file=PATH).
 *
 * Concurrency: a libiscsi context is not thread-safe, so the back end keeps
 * a pool of sessions (backend_params.conns, default ISC_DEFAULT_SESSIONS),
 * each behind its own mutex. A request takes a free session (or waits for
 * one), issues its command and drives that session's socket itself until
 * the answer arrives (session.c); N sessions carry N requests at once.
 * SCSI's SYNCHRONIZE CACHE covers the LUN, so a flush needs one session.
 *
 * Failure: a session whose connection drops is torn down; the request that
 * found out logs in again once and re-issues its command (READ/WRITE/UNMAP/
 * WRITE SAME are idempotent, and the new login reinstates the session (same
 * initiator name and ISID), which makes the target end the old session's
 * commands first). If that fails too the request gets -EIO, and the session
 * is tried again no sooner than ISC_RELOGIN_NS later: while the target is
 * down, requests fail at once instead of each paying a login attempt. A
 * command the target does not answer within the timeout (60 s,
 * SHOAL_ISCSI_TIMEOUT_MS) drops its session and fails -EIO.
 *
 * Idle sessions: targets ping them with NOP-In and drop the ones that do
 * not answer (LIO's nopin_timeout, tgt's nop_interval/nop_count), which
 * would cost the next request a login. One thread per back end polls the
 * sockets of the sessions no request holds and, taking each session's lock
 * with trylock (a request never waits for it long, and the thread never
 * waits for a request), lets libiscsi read the ping and send its answer.
 * It sleeps in poll() until a socket has something, a request changed a
 * session's socket (login, drop: the eventfd), or, while some session was
 * busy, ISC_IDLE_BUSY_MS passed, after which it looks at that one again. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/iscsi/iscsi_int.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#define ISC_DEFAULT_SESSIONS   4
#define ISC_MAX_SESSIONS       16
#define ISC_DEFAULT_TIMEOUT_MS 60000
#define ISC_RELOGIN_NS         1000000000ull
#define ISC_LBA_DESCRIPTORS    64
#define ISC_SECRET_MAX         255
#define ISC_IDLE_BUSY_MS       1000

static struct isc_be *to_isc(struct backend *be)
{
    return be->priv;
}

/* ---- the session pool */

/* A session that is up, or may try to log in again, is worth taking. */
static bool usable(const struct isc_session *s)
{
    return s->ctx || now_ns() - s->last_attempt_ns >= ISC_RELOGIN_NS;
}

/* Lock and return a session: a free usable one; else wait for one that is
 * up (a session that just failed must not fail requests a busy healthy one
 * would serve); else, when none is up (the target is down), any, so the
 * request fails at once or tries to log in. */
static struct isc_session *grab(struct isc_be *ib)
{
    unsigned start = atomic_fetch_add_explicit(&ib->rr, 1, memory_order_relaxed);
    for (unsigned i = 0; i < ib->nsess; i++) {
        struct isc_session *s = &ib->sess[(start + i) % ib->nsess];
        if (pthread_mutex_trylock(&s->lock) != 0)
            continue;
        if (usable(s))
            return s;
        pthread_mutex_unlock(&s->lock);
    }
    struct isc_session *pick = &ib->sess[start % ib->nsess];
    for (unsigned i = 0; i < ib->nsess; i++) {
        struct isc_session *s = &ib->sess[(start + i) % ib->nsess];
        if (atomic_load(&s->up)) {
            pick = s;
            break;
        }
    }
    pthread_mutex_lock(&pick->lock);
    return pick;
}

/* Log s in again, and check it still reaches the LUN we learned at open:
 * a target that came back with another disk behind the same name must not
 * have its blocks served (or cached) as ours. */
static int relogin_locked(struct isc_be *ib, struct isc_session *s)
{
    int r = isc_session_login_locked(&ib->login, s, false);
    if (r < 0)
        return r;
    struct isc_cmd c = {.kind = ISC_READ_CAPACITY16};
    struct scsi_task *t = NULL;
    r = isc_session_run_locked(&ib->login, s, &c, ib->login.connect_timeout_ms, &t);
    if (r < 0)
        return r;
    struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(t);
    bool same =
        rc && rc->block_length == ib->block && rc->returned_lba == ib->be.size / ib->block - 1;
    if (!same)
        log_error(backend,
                  "iscsi: %s: after logging in again the LUN is %" PRIu64 " blocks of %u bytes, "
                  "not %" PRIu64 " of %u: not using it",
                  ib->be.spec, rc ? rc->returned_lba + 1 : 0, rc ? rc->block_length : 0,
                  ib->be.size / ib->block, ib->block);
    scsi_free_scsi_task(t);
    if (!same) {
        isc_session_drop_locked(s);
        return -EIO;
    }
    log_info(backend, "iscsi: %s: session %u logged in again", ib->be.spec, s->idx);
    return 0;
}

/* Run one command on some session: log in first if it is down, and once
 * more if the connection drops under the command (see the top comment). */
static void idle_wake(struct isc_be *ib)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so a wake-up is pending anyway. */
    if (write(ib->idle_efd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_warn(backend, "iscsi: %s: cannot wake the idle service: %s", ib->be.spec,
                 strerror(errno));
}

static int run(struct isc_be *ib, const struct isc_cmd *c, struct scsi_task **keep)
{
    struct isc_session *s = grab(ib);
    unsigned gen = s->gen;
    int r;
    for (unsigned attempt = 0;; attempt++) {
        if (!s->ctx) {
            if (attempt == 0 && now_ns() - s->last_attempt_ns < ISC_RELOGIN_NS) {
                r = -EIO;
                break;
            }
            r = relogin_locked(ib, s);
            if (r < 0)
                break;
        }
        r = isc_session_run_locked(&ib->login, s, c, ib->timeout_ms, keep);
        if (r != -ECONNRESET || attempt > 0)
            break;
    }
    bool moved = s->gen != gen;
    pthread_mutex_unlock(&s->lock);
    /* The idle service may be polling the socket this session had. */
    if (moved)
        idle_wake(ib);
    /* The transport's troubles are the client's I/O errors; the target's
     * own answers (EROFS, ENOSPC, ...) pass through. */
    if (r == -ECONNRESET || r == -ETIMEDOUT || r == -EACCES || r == -ECONNREFUSED ||
        r == -EHOSTUNREACH || r == -ENXIO || r == -ENOMEM || r == -EPROTO)
        r = -EIO;
    return r;
}

/* ---- the idle service (see the top comment) */

static void *idle_main(void *arg)
{
    struct isc_be *ib = arg;
    struct pollfd pfd[ISC_MAX_SESSIONS + 1];
    while (!atomic_load(&ib->idle_stop)) {
        nfds_t n = 0;
        bool busy = false;
        for (unsigned i = 0; i < ib->nsess; i++) {
            struct isc_session *s = &ib->sess[i];
            if (pthread_mutex_trylock(&s->lock) != 0) {
                busy = true; /* its request answers the pings meanwhile */
                continue;
            }
            /* Whatever woke us (or came while the session was busy and its
             * request did not read it) is served first, without waiting. */
            if (s->ctx)
                isc_session_service_idle_locked(&ib->login, s);
            if (s->ctx) {
                int fd = iscsi_get_fd(s->ctx), ev = iscsi_which_events(s->ctx);
                if (fd >= 0 && ev)
                    pfd[n++] = (struct pollfd){.fd = fd, .events = (short)ev};
            }
            pthread_mutex_unlock(&s->lock);
        }
        /* Unlocked from here: a request may take a session and even close
         * its socket; then it wakes us (run()), and a stale descriptor's
         * event only makes us look again under the lock above. */
        pfd[n] = (struct pollfd){.fd = ib->idle_efd, .events = POLLIN};
        int r = poll(pfd, n + 1, busy ? ISC_IDLE_BUSY_MS : -1);
        if (r < 0 && errno != EINTR) {
            log_error(backend, "iscsi: %s: idle service: poll: %s", ib->be.spec, strerror(errno));
            poll(NULL, 0, ISC_IDLE_BUSY_MS); /* not a tight loop on a lasting error */
        }
        if (r > 0 && pfd[n].revents) {
            uint64_t v;
            if (read(ib->idle_efd, &v, sizeof v) < 0 && errno != EAGAIN)
                log_warn(backend, "iscsi: %s: idle service: eventfd: %s", ib->be.spec,
                         strerror(errno));
        }
    }
    return NULL;
}

static int idle_start(struct isc_be *ib)
{
    ib->idle_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ib->idle_efd < 0) {
        int e = errno;
        backend_set_open_error("cannot create an eventfd: %s", strerror(e));
        return -e;
    }
    int r = -pthread_create(&ib->idle_thread, NULL, idle_main, ib);
    if (r < 0) {
        backend_set_open_error("cannot start the iSCSI idle service thread: %s", strerror(-r));
        return r;
    }
    ib->idle_started = true;
    return 0;
}

static void idle_stop(struct isc_be *ib)
{
    if (ib->idle_started) {
        atomic_store(&ib->idle_stop, true);
        idle_wake(ib);
        pthread_join(ib->idle_thread, NULL);
        ib->idle_started = false;
    }
    if (ib->idle_efd >= 0)
        close(ib->idle_efd);
    ib->idle_efd = -1;
}

/* ---- ops */

static bool aligned(const struct isc_be *ib, uint32_t count, uint64_t offset)
{
    return count % ib->block == 0 && offset % ib->block == 0;
}

static int isc_flush(struct backend *be)
{
    struct isc_be *ib = to_isc(be);
    if (!atomic_load(&ib->no_sync16)) {
        struct isc_cmd c = {.kind = ISC_SYNC_CACHE16};
        int r = run(ib, &c, NULL);
        if (r != -EOPNOTSUPP)
            return r;
        atomic_store(&ib->no_sync16, true);
        log_info(backend, "iscsi: %s: no SYNCHRONIZE CACHE(16); using the 10-byte one", be->spec);
    }
    struct isc_cmd c = {.kind = ISC_SYNC_CACHE10};
    return run(ib, &c, NULL);
}

static int isc_pread(struct backend *be, void *buf, uint32_t count, uint64_t offset)
{
    struct isc_be *ib = to_isc(be);
    if (!aligned(ib, count, offset))
        return -EINVAL;
    while (count > 0) {
        uint32_t n = MIN(count, ib->max_xfer);
        struct isc_cmd c = {.kind = ISC_READ16,
                            .block = ib->block,
                            .lba = offset / ib->block,
                            .nblocks = n / ib->block,
                            .buf = buf};
        int r = run(ib, &c, NULL);
        if (r < 0)
            return r;
        buf = (char *)buf + n;
        offset += n;
        count -= n;
    }
    return 0;
}

static int isc_pwrite(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                      uint32_t flags)
{
    struct isc_be *ib = to_isc(be);
    if (ib->readonly)
        return -EPERM;
    if (!aligned(ib, count, offset))
        return -EINVAL;
    bool fua = (flags & BE_FUA) && ib->fua;
    while (count > 0) {
        uint32_t n = MIN(count, ib->max_xfer);
        struct isc_cmd c = {.kind = ISC_WRITE16,
                            .block = ib->block,
                            .lba = offset / ib->block,
                            .nblocks = n / ib->block,
                            .buf = (void *)buf,
                            .fua = fua};
        int r = run(ib, &c, NULL);
        if (r < 0)
            return r;
        buf = (const char *)buf + n;
        offset += n;
        count -= n;
    }
    return (flags & BE_FUA) && !fua ? isc_flush(be) : 0;
}

/* UNMAP and WRITE SAME carry no FUA bit: a flush after them persists them. */
static int isc_trim(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct isc_be *ib = to_isc(be);
    if (ib->readonly)
        return -EPERM;
    if (!ib->max_unmap || atomic_load(&ib->no_unmap))
        return 0; /* advisory */
    /* Whole blocks only: a partial one keeps its data, as trim allows. */
    uint64_t first = DIV_ROUND_UP(offset, ib->block), end = (offset + count) / ib->block;
    while (first < end) {
        uint32_t n = (uint32_t)MIN(end - first, (uint64_t)ib->max_unmap);
        struct isc_cmd c = {.kind = ISC_UNMAP, .lba = first, .nblocks = n};
        int r = run(ib, &c, NULL);
        if (r == -EOPNOTSUPP) {
            /* VPD page B2 promised UNMAP; the target says no. Trim is
             * advisory: the data stays, as it may. */
            if (!atomic_exchange(&ib->no_unmap, true))
                log_info(backend, "iscsi: %s: UNMAP refused; trims are ignored", be->spec);
            return 0;
        }
        if (r < 0)
            return r;
        first += n;
    }
    return flags & BE_FUA ? isc_flush(be) : 0;
}

static int isc_zero(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct isc_be *ib = to_isc(be);
    if (ib->readonly)
        return -EPERM;
    if (flags & BE_FAST_ZERO)
        return -ENOTSUP; /* WRITE SAME may write every block: not promised cheap */
    if (atomic_load(&ib->no_write_same))
        return -EOPNOTSUPP; /* backend_zero writes the zeros */
    if (!aligned(ib, count, offset))
        return -EINVAL;
    /* Unmapping is allowed only where unmapped blocks read as zeros. */
    bool unmap = ib->lbpws && ib->lbprz && !(flags & BE_NO_HOLE);
    uint64_t lba = offset / ib->block, end = (offset + count) / ib->block;
    while (lba < end) {
        uint32_t n = (uint32_t)MIN(end - lba, (uint64_t)ib->max_ws);
        struct isc_cmd c = {.kind = ISC_WRITE_SAME16,
                            .block = ib->block,
                            .lba = lba,
                            .nblocks = n,
                            .buf = ib->zero_block,
                            .unmap = unmap};
        int r = run(ib, &c, NULL);
        if (r == -EOPNOTSUPP) {
            /* What was zeroed so far stays zero; backend_zero redoes it all. */
            if (!atomic_exchange(&ib->no_write_same, true))
                log_info(backend, "iscsi: %s: no WRITE SAME(16); zeroing writes zeros", be->spec);
            return -EOPNOTSUPP;
        }
        if (r < 0)
            return r;
        lba += n;
    }
    return flags & BE_FUA ? isc_flush(be) : 0;
}

static int isc_extents(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                       void *opaque)
{
    struct isc_be *ib = to_isc(be);
    if (!ib->lbpme || atomic_load(&ib->no_lba_status)) {
        fn(opaque, offset, count, 0); /* all data, as far as we know */
        return 0;
    }
    uint64_t pos = offset, end = offset + count;
    /* The LBA holding pos: an unaligned start still learns its block. */
    while (pos < end) {
        struct isc_cmd c = {.kind = ISC_GET_LBA_STATUS,
                            .lba = pos / ib->block,
                            .alloc = 8 + 16 * ISC_LBA_DESCRIPTORS};
        struct scsi_task *t = NULL;
        int r = run(ib, &c, &t);
        if (r == -EOPNOTSUPP && pos == offset) {
            /* Thin provisioned, yet no GET LBA STATUS: report data. */
            if (!atomic_exchange(&ib->no_lba_status, true))
                log_info(backend, "iscsi: %s: no GET LBA STATUS; extents are all data", be->spec);
            fn(opaque, offset, count, 0);
            return 0;
        }
        if (r < 0)
            return r;
        struct scsi_get_lba_status *st = scsi_datain_unmarshall(t);
        uint64_t before = pos;
        int stop = 0;
        for (uint32_t i = 0; st && i < st->num_descriptors && pos < end && !stop; i++) {
            const struct scsi_lba_status_descriptor *d = &st->descriptors[i];
            uint64_t d_start = d->lba * ib->block;
            uint64_t d_end = d_start + (uint64_t)d->num_blocks * ib->block;
            if (d_start > pos || d_end <= pos)
                continue; /* not the extent at pos (a confused target): skip */
            uint32_t flags = 0;
            if (d->provisioning != SCSI_PROVISIONING_TYPE_MAPPED) {
                flags |= ib->lbprz ? BE_EXTENT_ZERO : 0;
                flags |= d->provisioning == SCSI_PROVISIONING_TYPE_DEALLOCATED ? BE_EXTENT_HOLE : 0;
            }
            uint64_t len = MIN(d_end, end) - pos;
            stop = fn(opaque, pos, len, flags);
            pos += len;
        }
        scsi_free_scsi_task(t);
        if (stop)
            return 0;
        if (pos == before)
            return -EIO; /* the target described nothing at pos: do not loop */
    }
    return 0;
}

static void isc_describe(struct backend *be, char *buf, size_t len)
{
    struct isc_be *ib = to_isc(be);
    char sz[32];
    snprintf(buf, len, "iscsi %s LUN %u at %s (%s%s%s, %s, %u-byte blocks, %u sessions%s)",
             ib->uri.target, ib->uri.lun, ib->portal, ib->vendor, ib->vendor[0] ? " " : "",
             ib->product, format_size(be->size, sz, sizeof(sz)), ib->block, ib->nsess,
             ib->readonly ? ", read-only" : "");
}

static void isc_close(struct backend *be)
{
    if (!be)
        return;
    struct isc_be *ib = to_isc(be);
    idle_stop(ib);
    for (unsigned i = 0; ib->sess && i < ib->nsess; i++) {
        struct isc_session *s = &ib->sess[i];
        /* No logout: it would wait on a target that may be gone. */
        pthread_mutex_lock(&s->lock);
        isc_session_drop_locked(s);
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_destroy(&s->lock);
    }
    free(ib->sess);
    free(ib->zero_block);
    iscsi_uri_clear(&ib->uri);
    free(be->spec);
    free(ib);
}

static bool isc_probe(const char *spec)
{
    return strncmp(spec, ISCSI_URI_PREFIX, strlen(ISCSI_URI_PREFIX)) == 0;
}

/* ---- open */

static bool path_beneath(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 1 && dir[0] == '/')
        return path[0] == '/' && path[1] != '\0';
    return strncmp(path, dir, n) == 0 && path[n] == '/' && path[n + 1] != '\0';
}

/* The CHAP secret: the first line of the secret file. With --backing-dir
 * the file must lie beneath one of them: otherwise whoever may add volumes
 * could have shoald answer a CHAP challenge of their own target with any
 * file shoald can read, and guess the file from the answer offline. */
static int read_secret(const struct backend_params *p, const char *path, char **out)
{
    _cleanup_free_ char *real = realpath(path, NULL);
    if (!real) {
        int e = errno;
        backend_set_open_error("secret-file %s: %s", path, strerror(e));
        return -e;
    }
    if (p->backing_dirs) {
        bool ok = false;
        for (const char *const *d = p->backing_dirs; *d && !ok; d++)
            ok = path_beneath(*d, real);
        if (!ok) {
            backend_set_open_error("refused by --backing-dir: secret-file %s (%s) is not beneath "
                                   "any of the backing directories",
                                   path, real);
            return -EPERM;
        }
    }
    _cleanup_close_ int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        backend_set_open_error("secret-file %s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        backend_set_open_error("secret-file %s is not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & 0077)
        log_warn(backend, "iscsi: secret-file %s can be read by others than its owner (chmod 600)",
                 path);
    char buf[ISC_SECRET_MAX + 2];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) {
        int e = errno;
        backend_set_open_error("secret-file %s: %s", path, strerror(e));
        return -e;
    }
    buf[n] = '\0';
    size_t len = strcspn(buf, "\r\n");
    int r = 0;
    if (memchr(buf, '\0', len))
        r = -EINVAL;
    if (len == 0 || len > ISC_SECRET_MAX || (len == (size_t)n && n == ISC_SECRET_MAX + 1))
        r = -EINVAL;
    if (r == 0 && !(*out = strndup(buf, len)))
        r = -ENOMEM;
    explicit_bzero(buf, sizeof buf);
    if (r == -EINVAL)
        backend_set_open_error("secret-file %s: want the CHAP secret (1 to %d bytes) on its first "
                               "line",
                               path, ISC_SECRET_MAX);
    return r;
}

/* The default initiator name: one per host, as arrays grant LUNs to
 * initiator names. A host name holds letters, digits, '-' and '.'; an
 * iSCSI name is lower case. */
static void default_initiator(char *buf, size_t len)
{
    char host[HOST_NAME_MAX + 1] = "";
    if (gethostname(host, sizeof host) < 0 || !host[0])
        snprintf(host, sizeof host, "initiator");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
        else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.'))
            *c = '-';
    }
    snprintf(buf, len, "%s%s", ISCSI_URI_INITIATOR_PREFIX, host);
}

static uint64_t timeout_from_env(void)
{
    const char *s = getenv("SHOAL_ISCSI_TIMEOUT_MS");
    if (s && *s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (*end == '\0' && v > 0 && v <= 3600000)
            return v;
        log_warn(backend, "iscsi: ignoring bad SHOAL_ISCSI_TIMEOUT_MS '%s'", s);
    }
    return ISC_DEFAULT_TIMEOUT_MS;
}

static int isc_setup(struct isc_be *ib, const struct backend_params *p)
{
    char err[256];
    int r = iscsi_uri_parse(p->spec, &ib->uri, err, sizeof err);
    if (r < 0) {
        backend_set_open_error("%s", err);
        return r;
    }
    if (ib->uri.password)
        log_warn(backend,
                 "iscsi: %s: a password in the URI shows in logs and the API; use "
                 "?secret-file=PATH",
                 ib->be.spec);
    if (ib->uri.secret_file && (r = read_secret(p, ib->uri.secret_file, &ib->uri.password)) < 0)
        return r;
    if (iscsi_uri_portal(&ib->uri, ib->portal, sizeof ib->portal) < 0)
        return -EINVAL;
    default_initiator(ib->initiator, sizeof ib->initiator);
    uint32_t rnd;
    if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
        rnd = (uint32_t)now_ns() ^ (uint32_t)getpid();
    ib->login = (struct isc_login){
        .spec = ib->be.spec,
        .portal = ib->portal,
        .target = ib->uri.target,
        .initiator = ib->uri.initiator ? ib->uri.initiator : ib->initiator,
        .user = ib->uri.user,
        .password = ib->uri.password,
        .lun = ib->uri.lun,
        .isid_rnd = rnd,
        .connect_timeout_ms =
            p->connect_timeout_ms ? p->connect_timeout_ms : backend_connect_timeout(),
        /* auto: None first (digests cost CPU on every PDU; TCP's checksum
         * and the LAN's CRC usually suffice), CRC32C if the target insists. */
        .header_digest =
            ib->uri.header_digest == ISCSI_URI_DIGEST_CRC32C ? ISCSI_HEADER_DIGEST_CRC32C
            : ib->uri.header_digest == ISCSI_URI_DIGEST_NONE ? ISCSI_HEADER_DIGEST_NONE
                                                             : ISCSI_HEADER_DIGEST_NONE_CRC32C,
    };
    ib->timeout_ms = timeout_from_env();
    ib->nsess = p->conns ? MIN(p->conns, ISC_MAX_SESSIONS) : ISC_DEFAULT_SESSIONS;
    ib->sess = calloc(ib->nsess, sizeof *ib->sess);
    if (!ib->sess)
        return -ENOMEM;
    for (unsigned i = 0; i < ib->nsess; i++) {
        ib->sess[i].idx = i;
        pthread_mutex_init(&ib->sess[i].lock, NULL);
    }
    return 0;
}

static int isc_open(const struct backend_params *p, struct backend **out)
{
    struct isc_be *ib = calloc(1, sizeof(*ib));
    if (!ib)
        return -ENOMEM;
    ib->be.ops = &backend_iscsi_ops;
    ib->be.priv = ib;
    ib->idle_efd = -1;
    ib->be.spec = iscsi_uri_redact(p->spec);
    if (!ib->be.spec) {
        free(ib);
        return -ENOMEM;
    }
    int r = isc_setup(ib, p);
    if (r == 0) {
        /* Not shared yet: the lock only keeps the _locked contract. */
        pthread_mutex_lock(&ib->sess[0].lock);
        r = isc_session_login_locked(&ib->login, &ib->sess[0], true);
        pthread_mutex_unlock(&ib->sess[0].lock);
    }
    if (r == 0)
        r = isc_learn_lu(ib, p);
    if (r == 0 && !(ib->zero_block = calloc(1, ib->block)))
        r = -ENOMEM;
    for (unsigned i = 1; r == 0 && i < ib->nsess; i++) {
        pthread_mutex_lock(&ib->sess[i].lock);
        r = isc_session_login_locked(&ib->login, &ib->sess[i], true);
        pthread_mutex_unlock(&ib->sess[i].lock);
    }
    if (r == 0)
        r = idle_start(ib);
    if (r < 0) {
        isc_close(&ib->be);
        return r;
    }
    log_info(backend,
             "iscsi: %s: %" PRIu64 " bytes, %u-byte blocks, %u session(s) as %s, caps 0x%x, "
             "up to %u bytes per command",
             ib->be.spec, ib->be.size, ib->block, ib->nsess, ib->login.initiator, ib->be.caps,
             ib->max_xfer);
    *out = &ib->be;
    return 0;
}

const struct backend_ops backend_iscsi_ops = {
    .name = "iscsi",
    .probe = isc_probe,
    .open = isc_open,
    .close = isc_close,
    .pread = isc_pread,
    .pwrite = isc_pwrite,
    .flush = isc_flush,
    .trim = isc_trim,
    .zero = isc_zero,
    .extents = isc_extents,
    .describe = isc_describe,
};
