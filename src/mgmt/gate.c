/* The front door of the management API.
 *
 * libmicrohttpd gives every connection a thread and a slot of the
 * connection limit from the moment it is accepted, and only an idle
 * timeout ends one: a client that sends one byte every few seconds and never
 * finishes its request keeps its slot, and a few dozen such clients (any
 * local user can reach a loopback API) lock everyone else out. It also
 * answers requests it cannot parse with its own HTML pages, and takes a
 * request with two different Content-Length values (a framing error that
 * RFC 9112 section 6.3 says must be refused).
 *
 * So this thread accepts the connections itself and holds each one, in a
 * single epoll loop and without a thread, until the request head (request
 * line and header fields) is in, reading it with MSG_PEEK so libmicrohttpd
 * later reads the same bytes. Peeked bytes stay readable, so the waiting
 * connections are edge-triggered: a wake-up per arrival, not a spin. A head that is not complete
 * GATE_HEAD_DEADLINE_MS after the accept is answered 408 and closed,
 * however slowly its bytes trickle in; when GATE_MAX_WAITING connections
 * wait, the oldest is dropped for the new one. A complete head is checked
 * here (gate_check_head) against everything libmicrohttpd would refuse with
 * an HTML page, and against conflicting or malformed Content-Length and
 * any Transfer-Encoding but a lone "chunked"; a bad one gets the API's JSON
 * error. Only a good
 * head is handed to libmicrohttpd (MHD_add_connection), and every response
 * closes its connection (http.c), so each request passes through here.
 *
 * Over HTTPS the head is encrypted: connections are handed over at once,
 * and only the deadline applies: a connection whose head has not reached
 * the handler (gate_head_done) by then is shut down under libmicrohttpd's
 * thread, which then closes it. */
#include "mgmt/gate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "mgmt/mgmt_internal.h"

struct waiting {
    int fd;
    uint64_t deadline_ns;
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

/* An HTTPS connection handed over, its head not seen yet. */
struct watched {
    int fd;
    uint64_t deadline_ns;
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

struct gate {
    int listen_fd;
    int epoll_fd;
    int stop_pipe[2];
    pthread_t thread;
    bool started;
    bool inspect;
    struct MHD_Daemon *mhd;
    unsigned limit;
    unsigned active; /* atomic: handed over and not yet closed by MHD */
    size_t n;
    struct waiting w[GATE_MAX_WAITING];
    struct epoll_event ev[GATE_MAX_WAITING + 2];
    /* HTTPS only; under lock: gate_head_done and gate_release run on
     * MHD's threads. */
    pthread_mutex_t lock;
    size_t nwatched;
    struct watched watched[GATE_MAX_WAITING];
    char buf[GATE_MAX_HEAD];
};

/* ---- the request head ------------------------------------------------ */

static enum gate_result refuse(struct gate_verdict *v, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum gate_result refuse(struct gate_verdict *v, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
    v->status = status;
    return GATE_REFUSE;
}

/* RFC 9110 section 5.6.2: the characters of a method or a field name. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

/* The end of the line starting at buf[pos] (the index of its '\n'), -1 if
 * not there yet, -2 for a bare CR or LF (RFC 9112 section 2.2: CRLF only,
 * so this reading and libmicrohttpd's cannot differ). */
static long line_end(const char *buf, size_t n, size_t pos)
{
    for (size_t i = pos; i < n; i++) {
        if (buf[i] == '\n')
            return i > pos && buf[i - 1] == '\r' ? (long)i : -2;
        if (buf[i] == '\r' && i + 1 < n && buf[i + 1] != '\n')
            return -2;
    }
    return -1;
}

static enum gate_result check_request_line(const char *s, size_t len, bool *http11,
                                           struct gate_verdict *v)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == len || s[i] != ' ')
        return refuse(v, 400, "malformed request line");
    size_t t0 = ++i;
    while (i < len && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f)
        i++;
    if (i - t0 > GATE_MAX_TARGET)
        return refuse(v, 414, "request target too long (limit %u bytes)", GATE_MAX_TARGET);
    if (i == t0 || i == len || s[i] != ' ')
        return refuse(v, 400, "malformed request line");
    const char *ver = s + i + 1;
    size_t vlen = len - i - 1;
    if (vlen == 8 && memcmp(ver, "HTTP/1.1", 8) == 0) {
        *http11 = true;
        return GATE_PASS;
    }
    if (vlen == 8 && memcmp(ver, "HTTP/1.0", 8) == 0) {
        *http11 = false;
        return GATE_PASS;
    }
    if (vlen == 8 && memcmp(ver, "HTTP/", 5) == 0 && ver[5] >= '0' && ver[5] <= '9' &&
        ver[6] == '.' && ver[7] >= '0' && ver[7] <= '9')
        return refuse(v, 505, "HTTP version not supported (HTTP/1.1 or HTTP/1.0)");
    return refuse(v, 400, "malformed request line");
}

/* A Content-Length value: digits only (no list: a list of equal values is
 * something libmicrohttpd would refuse with its own page). */
static bool parse_length(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

enum gate_result gate_check_head(const char *buf, size_t n, struct gate_verdict *v)
{
    size_t pos = 0;
    /* RFC 9112 section 2.2: empty lines before the request line are
     * ignored (libmicrohttpd does too). */
    while (pos + 1 < n && buf[pos] == '\r' && buf[pos + 1] == '\n')
        pos += 2;
    long eol = line_end(buf, n, pos);
    if (eol == -2)
        return refuse(v, 400, "malformed request line");
    if (eol == -1) {
        /* Say 414 as soon as the target alone is too long. */
        const char *sp = memchr(buf + pos, ' ', n - pos);
        if (sp && n - (size_t)(sp - buf) > GATE_MAX_TARGET + 1 &&
            !memchr(sp + 1, ' ', n - (size_t)(sp + 1 - buf)))
            return refuse(v, 414, "request target too long (limit %u bytes)", GATE_MAX_TARGET);
        if (n >= GATE_MAX_HEAD)
            return refuse(v, 431, "request head too large (limit %u bytes)", GATE_MAX_HEAD);
        return GATE_MORE;
    }
    bool http11 = false;
    if (check_request_line(buf + pos, (size_t)eol - 1 - pos, &http11, v) == GATE_REFUSE)
        return GATE_REFUSE;
    pos = (size_t)eol + 1;

    unsigned hosts = 0;
    unsigned te = 0;
    bool have_length = false, chunked = false;
    uint64_t length = 0;
    for (;;) {
        eol = line_end(buf, n, pos);
        if (eol == -2)
            return refuse(v, 400, "malformed header field (lines end with CRLF)");
        if (eol == -1) {
            if (n >= GATE_MAX_HEAD)
                return refuse(v, 431, "request head too large (limit %u bytes)", GATE_MAX_HEAD);
            return GATE_MORE;
        }
        const char *s = buf + pos;
        size_t len = (size_t)eol - 1 - pos;
        pos = (size_t)eol + 1;
        if (len == 0)
            break; /* the end of the head */
        if (s[0] == ' ' || s[0] == '\t')
            return refuse(v, 400, "folded header field (obsolete line folding)");
        size_t nl = 0;
        while (nl < len && is_tchar((unsigned char)s[nl]))
            nl++;
        if (nl == 0 || nl == len || s[nl] != ':')
            return refuse(v, 400, "malformed header field");
        size_t a = nl + 1, b = len;
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        for (size_t i = a; i < b; i++) {
            unsigned char c = (unsigned char)s[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return refuse(v, 400, "control character in header field");
        }
        if (name_is(s, nl, "Content-Length")) {
            uint64_t l;
            if (!parse_length(s + a, b - a, &l))
                return refuse(v, 400, "invalid Content-Length");
            /* RFC 9110 section 8.6, RFC 9112 section 6.3: differing
             * lengths leave the message's end unknown. */
            if (have_length && l != length)
                return refuse(v, 400, "conflicting Content-Length headers");
            have_length = true;
            length = l;
        } else if (name_is(s, nl, "Transfer-Encoding")) {
            te++;
            chunked = b - a == 7 && strncasecmp(s + a, "chunked", 7) == 0;
        } else if (name_is(s, nl, "Host")) {
            hosts++;
        }
    }
    /* RFC 9112 section 6.1: Transfer-Encoding with Content-Length, or in
     * HTTP/1.0, is a framing error; "chunked" is the one coding taken. */
    if (te && (have_length || !http11))
        return refuse(v, 400, "Transfer-Encoding with Content-Length or in HTTP/1.0");
    if (te > 1 || (te && !chunked))
        return refuse(v, 501, "only the chunked transfer coding is supported");
    if (http11 && hosts != 1)
        return refuse(v, 400, "an HTTP/1.1 request needs exactly one Host header");
    /* A declared body above MGMT_MAX_BODY is libmicrohttpd's to refuse
     * (mgmt_precheck: 413 in JSON), after the token check. */
    return GATE_PASS;
}

/* ---- connections ----------------------------------------------------- */

static const char *reason(unsigned status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* Answer with the API's JSON error and close. Best effort: the socket is
 * non-blocking and the answer is small, so it fits the send buffer. */
static void answer_close(int fd, unsigned status, const char *message)
{
    struct mgmt_reply rep = {0};
    reply_error(&rep, status, "%s", message);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-store\r\n"
                      "X-Content-Type-Options: nosniff\r\n%s\r\n",
                      status, reason(status), rep.len, status == 503 ? "Retry-After: 1\r\n" : "");
    if (hl > 0 && (size_t)hl < sizeof head &&
        send(fd, head, (size_t)hl, MSG_NOSIGNAL | (rep.len ? MSG_MORE : 0)) == hl && rep.len)
        (void)!send(fd, rep.body, rep.len, MSG_NOSIGNAL);
    reply_free(&rep);
    /* Read what the client already sent (we only peeked): closing with
     * unread data would reset the connection, and the client could lose
     * the answer. Bounded: a client that keeps sending gets the reset. */
    char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* ---- HTTPS: the deadline for handed-over connections ------------------ */

static void unwatch_locked(struct gate *g, int fd)
{
    for (size_t i = 0; i < g->nwatched; i++)
        if (g->watched[i].fd == fd) {
            g->watched[i] = g->watched[--g->nwatched];
            return;
        }
}

static void unwatch(struct gate *g, int fd)
{
    pthread_mutex_lock(&g->lock);
    unwatch_locked(g, fd);
    pthread_mutex_unlock(&g->lock);
}

static void watch(struct gate *g, int fd, const struct sockaddr *addr, socklen_t len)
{
    pthread_mutex_lock(&g->lock);
    /* An entry that a lost close notification left (see below) goes. */
    unwatch_locked(g, fd);
    if (g->nwatched < ARRAY_SIZE(g->watched) && len <= sizeof g->watched[0].addr) {
        struct watched *w = &g->watched[g->nwatched++];
        w->fd = fd;
        w->deadline_ns = now_ns() + (uint64_t)GATE_HEAD_DEADLINE_MS * 1000000u;
        memcpy(&w->addr, addr, len);
        w->addr_len = len;
    }
    pthread_mutex_unlock(&g->lock);
}

/* Still the connection we handed over? MHD removes the entry (through
 * gate_release) before it closes the socket, so the number cannot have
 * been reused; this guards the one case it could, a connection MHD failed
 * to start after taking it, which it closes without a notification. */
static bool same_peer(const struct watched *w)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return getpeername(w->fd, (struct sockaddr *)&ss, &len) == 0 && len == w->addr_len &&
           memcmp(&ss, &w->addr, len) == 0;
}

/* Shut down the expired ones; returns ms to the next deadline, -1 if none. */
static int expire_watched(struct gate *g, uint64_t now)
{
    int timeout = -1;
    pthread_mutex_lock(&g->lock);
    for (size_t i = g->nwatched; i-- > 0;) {
        struct watched *w = &g->watched[i];
        if (now >= w->deadline_ns) {
            if (same_peer(w)) {
                log_debug(mgmt, "HTTPS request head not complete after %u ms: closing",
                          GATE_HEAD_DEADLINE_MS);
                /* MHD's thread sees the end of the stream and closes. */
                shutdown(w->fd, SHUT_RDWR);
            }
            *w = g->watched[--g->nwatched];
            continue;
        }
        int ms = (int)((w->deadline_ns - now + 999999) / 1000000);
        if (timeout < 0 || ms < timeout)
            timeout = ms;
    }
    pthread_mutex_unlock(&g->lock);
    return timeout;
}

void gate_head_done(struct gate *g, int fd)
{
    if (g && !g->inspect)
        unwatch(g, fd);
}

static void hand_over(struct gate *g, int fd, const struct sockaddr *addr, socklen_t len)
{
    if (__atomic_add_fetch(&g->active, 1, __ATOMIC_ACQ_REL) > g->limit) {
        __atomic_sub_fetch(&g->active, 1, __ATOMIC_ACQ_REL);
        if (g->inspect)
            answer_close(fd, 503, "too many management API requests at once; try again");
        else
            close(fd); /* HTTPS: a plain-text answer would be garbage */
        return;
    }
    if (!g->inspect)
        watch(g, fd, addr, len);
    /* MHD closes the socket when it cannot take it. */
    if (MHD_add_connection(g->mhd, fd, addr, len) != MHD_YES) {
        if (!g->inspect)
            unwatch(g, fd);
        __atomic_sub_fetch(&g->active, 1, __ATOMIC_ACQ_REL);
        log_debug(mgmt, "libmicrohttpd refused a connection: %s", strerror(errno));
    }
}

static void drop(struct gate *g, size_t i)
{
    g->w[i] = g->w[--g->n];
}

/* Look at what waiting connection i sent. Returns true when it left the
 * list (handed over, answered or closed). */
static bool examine(struct gate *g, size_t i)
{
    struct waiting *w = &g->w[i];
    ssize_t r = recv(w->fd, g->buf, sizeof g->buf, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false;
    if (r <= 0) { /* the client went away */
        close(w->fd);
        drop(g, i);
        return true;
    }
    struct gate_verdict v;
    switch (gate_check_head(g->buf, (size_t)r, &v)) {
    case GATE_MORE:
        return false;
    case GATE_PASS: {
        struct waiting copy = *w;
        /* MHD watches it from now on; this loop must not see it again,
         * nor a later socket that gets the number. */
        epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, copy.fd, NULL);
        drop(g, i);
        hand_over(g, copy.fd, (struct sockaddr *)&copy.addr, copy.addr_len);
        return true;
    }
    case GATE_REFUSE:
    default:
        log_debug(mgmt, "request refused before libmicrohttpd: %u %s", v.status, v.message);
        answer_close(w->fd, v.status, v.message);
        drop(g, i);
        return true;
    }
}

static void accept_some(struct gate *g, uint64_t now)
{
    for (int k = 0; k < 32; k++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(g->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_debug(mgmt, "management API accept: %s", strerror(errno));
            return;
        }
        if (!g->inspect) {
            hand_over(g, fd, (struct sockaddr *)&ss, len);
            continue;
        }
        if (g->n == GATE_MAX_WAITING) {
            /* The oldest has had the most time to send its head. */
            size_t old = 0;
            for (size_t i = 1; i < g->n; i++)
                if (g->w[i].deadline_ns < g->w[old].deadline_ns)
                    old = i;
            log_debug(mgmt, "%u connections wait for their request head: dropping the oldest",
                      GATE_MAX_WAITING);
            close(g->w[old].fd);
            drop(g, old);
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
        if (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            log_debug(mgmt, "management API: epoll_ctl: %s", strerror(errno));
            close(fd);
            continue;
        }
        struct waiting *w = &g->w[g->n++];
        w->fd = fd;
        w->deadline_ns = now + (uint64_t)GATE_HEAD_DEADLINE_MS * 1000000u;
        w->addr = ss;
        w->addr_len = len;
        examine(g, g->n - 1);
    }
}

static void *gate_thread(void *arg)
{
    struct gate *g = arg;
    for (;;) {
        uint64_t now = now_ns();
        int timeout = g->inspect ? -1 : expire_watched(g, now);
        for (size_t i = 0; i < g->n; i++) {
            uint64_t left = g->w[i].deadline_ns > now ? g->w[i].deadline_ns - now : 0;
            int ms = (int)((left + 999999) / 1000000);
            if (timeout < 0 || ms < timeout)
                timeout = ms;
        }
        int nev = epoll_wait(g->epoll_fd, g->ev, (int)ARRAY_SIZE(g->ev), timeout);
        if (nev < 0) {
            if (errno != EINTR) {
                log_error(mgmt, "management API: epoll_wait: %s", strerror(errno));
                usleep(100000);
            }
            continue;
        }
        bool accept_ready = false;
        for (int k = 0; k < nev; k++) {
            int fd = g->ev[k].data.fd;
            if (fd == g->stop_pipe[0])
                return NULL;
            if (fd == g->listen_fd) {
                accept_ready = true;
                continue;
            }
            for (size_t i = 0; i < g->n; i++)
                if (g->w[i].fd == fd) {
                    examine(g, i);
                    break;
                }
        }
        now = now_ns();
        for (size_t i = g->n; i-- > 0;) {
            /* Backwards: drop() moves the last entry, already seen, into i. */
            if (now >= g->w[i].deadline_ns) {
                log_debug(mgmt, "request head not complete after %u ms: closing",
                          GATE_HEAD_DEADLINE_MS);
                answer_close(g->w[i].fd, 408, "request head not complete in time");
                drop(g, i);
            }
        }
        if (accept_ready)
            accept_some(g, now);
    }
}

/* ---- life cycle ------------------------------------------------------ */

int gate_open(const struct sockaddr *addr, socklen_t len, unsigned *port, struct gate **out)
{
    *out = NULL;
    struct gate *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->stop_pipe[0] = g->stop_pipe[1] = -1;
    g->epoll_fd = -1;
    pthread_mutex_init(&g->lock, NULL);
    g->listen_fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    int err = 0;
    if (g->listen_fd < 0)
        err = errno;
    else if (setsockopt(g->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
             (addr->sa_family == AF_INET6 &&
              setsockopt(g->listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
             bind(g->listen_fd, addr, len) < 0 || listen(g->listen_fd, SOMAXCONN) < 0 ||
             pipe2(g->stop_pipe, O_CLOEXEC) < 0 || (g->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        err = errno;
    struct epoll_event ev[2] = {{.events = EPOLLIN, .data.fd = g->listen_fd},
                                {.events = EPOLLIN, .data.fd = g->stop_pipe[0]}};
    if (!err && (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, g->listen_fd, &ev[0]) < 0 ||
                 epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, g->stop_pipe[0], &ev[1]) < 0))
        err = errno;
    if (err) {
        gate_free(g);
        return -err;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *port = 0;
    if (getsockname(g->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *out = g;
    return 0;
}

int gate_start(struct gate *g, struct MHD_Daemon *mhd, unsigned limit, bool inspect)
{
    g->mhd = mhd;
    g->limit = limit;
    g->inspect = inspect;
    int r = pthread_create(&g->thread, NULL, gate_thread, g);
    if (r)
        return -r;
    g->started = true;
    return 0;
}

void gate_release(struct gate *g, int fd)
{
    if (!g)
        return;
    if (!g->inspect)
        unwatch(g, fd);
    __atomic_sub_fetch(&g->active, 1, __ATOMIC_ACQ_REL);
}

void gate_stop(struct gate *g)
{
    if (!g)
        return;
    if (g->started) {
        (void)!write(g->stop_pipe[1], "x", 1);
        pthread_join(g->thread, NULL);
        g->started = false;
    }
    for (size_t i = 0; i < g->n; i++)
        close(g->w[i].fd);
    g->n = 0;
    if (g->listen_fd >= 0)
        close(g->listen_fd);
    g->listen_fd = -1;
    if (g->epoll_fd >= 0)
        close(g->epoll_fd);
    g->epoll_fd = -1;
    for (int i = 0; i < 2; i++) {
        if (g->stop_pipe[i] >= 0)
            close(g->stop_pipe[i]);
        g->stop_pipe[i] = -1;
    }
}

void gate_free(struct gate *g)
{
    gate_stop(g);
    if (g)
        pthread_mutex_destroy(&g->lock);
    free(g);
}
