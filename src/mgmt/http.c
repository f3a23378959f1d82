/* The HTTP transport of the management server: libmicrohttpd glue. It
 * collects the request body (bounded), hands a `struct mgmt_req` to
 * mgmt_handle() (handle.c decides who may do what; mgmt_precheck runs as
 * soon as the headers are in, so a refused request's body is never read)
 * and turns the `struct mgmt_reply` into an MHD response. With a
 * certificate directory it serves HTTPS (libmicrohttpd's GnuTLS support).
 *
 * Threading: MHD_USE_THREAD_PER_CONNECTION with an internal listening
 * thread. Handlers call engine control functions that may block for a long
 * time (opening an upstream NBD back end, a forced remove waiting for
 * connections to drain, a cache shrink that evicts); with a single polling
 * thread (epoll) one such call would stall every /metrics scrape and the
 * dashboard behind it. Management traffic is a handful of connections, so a
 * thread each is cheap; CONNECTION_LIMIT and CONNECTION_TIMEOUT bound the
 * cost of a misbehaving client. poll() rather than select() so descriptor
 * numbers above FD_SETSIZE (a daemon with many NBD clients) still work.
 *
 * libmicrohttpd does not accept the connections: gate.c does, and hands a
 * connection over only once its request head is in and well-formed, so a
 * client that trickles its head never holds one of these threads (gate.c
 * says why). Every response closes its connection, so the next request
 * passes the gate again. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "mgmt/gate.h"
#include "mgmt/mgmt.h"
#include "mgmt/mgmt_internal.h"
#include "mgmt/pending.h"

/* Requests being served at once (with a complete head: see gate.c); more
 * get 503. */
#define MGMT_CONNECTION_LIMIT   64
#define MGMT_CONNECTION_TIMEOUT 30 /* seconds of inactivity (body, response) */

/* Per-request state, kept in MHD's *con_cls between callbacks. */
struct pending {
    char *body;
    size_t len, cap;
    bool too_large;
    bool answered; /* a response was queued before the body was read */
};

unsigned mgmt_port(const struct mgmt *m)
{
    return m ? m->port : 0;
}

static enum mgmt_method parse_method(const char *method)
{
    static const struct {
        const char *name;
        enum mgmt_method m;
    } methods[] = {
        {MHD_HTTP_METHOD_GET, MGMT_GET},   {MHD_HTTP_METHOD_HEAD, MGMT_GET},
        {MHD_HTTP_METHOD_POST, MGMT_POST}, {MHD_HTTP_METHOD_DELETE, MGMT_DELETE},
        {MHD_HTTP_METHOD_PUT, MGMT_PUT},   {"PATCH", MGMT_PATCH},
    };
    for (size_t i = 0; i < ARRAY_SIZE(methods); i++)
        if (strcmp(method, methods[i].name) == 0)
            return methods[i].m;
    return MGMT_OTHER;
}

static const char *header_value(const struct mgmt_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->transport, MHD_HEADER_KIND, name);
}

/* "?force" without a value reads as "" (present), not as absent. */
static const char *query_arg(const struct mgmt_req *req, const char *key)
{
    const char *value = NULL;
    size_t value_len = 0;
    if (MHD_lookup_connection_value_n(req->transport, MHD_GET_ARGUMENT_KIND, key, strlen(key),
                                      &value, &value_len) != MHD_YES)
        return NULL;
    return value ? value : "";
}

static int connection_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info ? info->connect_fd : -1;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct mgmt_reply *rep)
{
    struct MHD_Response *resp;
    if (rep->body) {
        resp = MHD_create_response_from_buffer(rep->len, rep->body, MHD_RESPMEM_MUST_FREE);
        if (resp)
            rep->body = NULL; /* now MHD's */
    } else {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) {
        reply_free(rep);
        return MHD_NO; /* MHD closes the connection */
    }
    if (rep->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    if (rep->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep->allow);
    if (rep->location[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, rep->location);
    if (rep->status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"shoal\"");
    /* Stats are live; a cached copy would mislead. The dashboard's files
     * are small and change with the binary: not caching them either keeps
     * an upgraded daemon from running next to an old page. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    /* The next request on this connection would bypass gate.c's checks. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (rep->page) {
        /* The page loads only its own files and talks only to this
         * server; no inline script, no framing by another site. */
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    }
    enum MHD_Result ret = MHD_queue_response(conn, rep->status, resp);
    MHD_destroy_response(resp);
    reply_free(rep);
    return ret;
}

/* Answer before the body is read (bad token, declared size too large).
 * MHD then skips the body and closes the connection. */
static enum MHD_Result answer_early(struct MHD_Connection *conn, struct pending *p,
                                    struct mgmt_reply *rep)
{
    p->answered = true;
    return send_reply(conn, rep);
}

static bool body_append(struct pending *p, const char *data, size_t n)
{
    if (p->too_large || n > MGMT_MAX_BODY - p->len) {
        /* Keep reading (and dropping) so the 413 goes out on a clean
         * request boundary. */
        p->too_large = true;
        free(p->body);
        p->body = NULL;
        p->len = p->cap = 0;
        return true;
    }
    if (p->len + n + 1 > p->cap) {
        size_t cap = MAX(p->cap * 2, p->len + n + 1);
        cap = MIN(cap, (size_t)MGMT_MAX_BODY + 1);
        char *nb = realloc(p->body, cap);
        if (!nb)
            return false;
        p->body = nb;
        p->cap = cap;
    }
    memcpy(p->body + p->len, data, n);
    p->len += n;
    p->body[p->len] = '\0';
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct mgmt *m = cls;
    struct pending *p = *con_cls;
    struct mgmt_reply rep = {0};
    (void)version;

    struct mgmt_req req = {
        .method = parse_method(method),
        .path = url,
        .query = query_arg,
        .header = header_value,
        .transport = conn,
    };
    if (!p) {
        /* First call: headers only. Refuse what we can before reading a
         * body. */
        gate_head_done(m->gate, connection_fd(conn));
        p = calloc(1, sizeof *p);
        if (!p)
            return MHD_NO;
        *con_cls = p;
        if (mgmt_precheck(m, &req, &rep))
            return answer_early(conn, p, &rep);
        /* A GET needs no token: were it to carry a body, anyone could
         * hold a connection by sending that body slowly. */
        const char *cl = header_value(&req, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (req.method == MGMT_GET && ((cl && strtoull(cl, NULL, 10) > 0) ||
                                       header_value(&req, MHD_HTTP_HEADER_TRANSFER_ENCODING))) {
            reply_error(&rep, 400, "a GET request takes no body");
            return answer_early(conn, p, &rep);
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        if (!p->answered && !body_append(p, upload_data, *upload_data_size))
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (p->answered)
        return MHD_YES;

    if (p->too_large) {
        reply_error(&rep, 413, "request body too large (limit %u bytes)", MGMT_MAX_BODY);
        return send_reply(conn, &rep);
    }

    req.body = p->body;
    req.body_len = p->len;
    mgmt_handle(m, &req, &rep);
    log_debug(mgmt, "%s %s -> %u", method, url, rep.status);
    return send_reply(conn, &rep);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct mgmt *m = cls;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        gate_release(m->gate, connection_fd(conn));
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct pending *p = *con_cls;
    if (p) {
        free(p->body);
        free(p);
        *con_cls = NULL;
    }
}

/* MHD decodes %XX in the path and the query in place, and hands us the
 * path as a C string: a "%00" would cut it there, so DELETE
 * /api/v1/volumes/a%00b removed volume "a". A string with an encoded NUL
 * stays undecoded instead: as a name it is invalid (404), as a query value
 * it is refused (400), never a shorter string that names something else. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    for (const char *p = strchr(s, '%'); p; p = strchr(p + 1, '%'))
        if (p[1] == '0' && p[2] == '0')
            return strlen(s);
    return MHD_http_unescape(s);
}

/* While starting, MHD's messages explain a failure (bind errors) and are
 * warnings. Once running they are mostly about clients sending nonsense,
 * which any client could use to flood the log: debug level. */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    struct mgmt *m = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (__atomic_load_n(&m->running, __ATOMIC_ACQUIRE))
        log_debug(mgmt, "libmicrohttpd: %s", msg);
    else
        log_warn(mgmt, "libmicrohttpd: %s", msg);
}

/* Resolve the parsed host into a socket address (numeric only; "localhost"
 * is 127.0.0.1). */
static int make_sockaddr(const char *host, unsigned port, struct sockaddr_storage *ss, bool *v6)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *v6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *v6 = true;
        return 0;
    }
    return -EINVAL;
}

/* A whole PEM file, dir/name, into *out (malloc'ed, NUL-terminated as MHD
 * wants it). 0 or -errno with one line in err. */
static int read_pem(const char *dir, const char *name, char **out, size_t *len, char *err,
                    size_t errlen)
{
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot read %s for the HTTPS management API: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (1 << 20)) {
        snprintf(err, errlen,
                 "cannot use %s for the HTTPS management API: not a PEM file of 1 MiB or less",
                 path);
        return -EINVAL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    buf[got] = '\0';
    if (got != n) {
        snprintf(err, errlen, "cannot read %s for the HTTPS management API: short read", path);
        explicit_bzero(buf, n + 1);
        free(buf);
        return -EIO;
    }
    *out = buf;
    *len = n + 1;
    return 0;
}

/* The certificate and key of dir into *cert and *key (malloc'ed). 0 or
 * -errno with one line in err. */
static int read_tls(const char *dir, char **cert, char **key, size_t *key_len, char *err,
                    size_t errlen)
{
    *cert = *key = NULL;
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS: cannot serve HTTPS");
        return -ENOTSUP;
    }
    size_t cert_len;
    int r = read_pem(dir, "server-cert.pem", cert, &cert_len, err, errlen);
    if (r == 0)
        r = read_pem(dir, "server-key.pem", key, key_len, err, errlen);
    if (r < 0) {
        free(*cert);
        *cert = NULL;
    }
    return r;
}

static int load_tls(struct mgmt *m, const char *dir)
{
    char err[512];
    int r = read_tls(dir, &m->tls_cert, &m->tls_key, &m->tls_key_len, err, sizeof err);
    if (r < 0) {
        log_error(mgmt, "%s", err);
        return r == -ENOTSUP ? r : -EINVAL;
    }
    return 0;
}

int mgmt_tls_check(const char *dir, char *err, size_t errlen)
{
    char *cert, *key;
    size_t key_len = 0;
    int r = read_tls(dir, &cert, &key, &key_len, err, errlen);
    if (key)
        explicit_bzero(key, key_len);
    free(key);
    free(cert);
    return r;
}

static char **copy_dirs(const char *const *dirs)
{
    size_t n = 0;
    while (dirs[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++) {
        out[i] = strdup(dirs[i]);
        if (!out[i]) {
            for (size_t k = 0; k < i; k++)
                free(out[k]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void mgmt_free(struct mgmt *m)
{
    if (!m)
        return;
    /* Before what its threads use (the hooks, backing_dirs); MHD is
     * stopped already, so no request adds one meanwhile. */
    pending_free(m->pending);
    gate_free(m->gate); /* MHD is stopped: no gate_release any more */
    if (m->token)
        explicit_bzero(m->token, m->token_len);
    free(m->token);
    if (m->tls_key)
        explicit_bzero(m->tls_key, m->tls_key_len);
    free(m->tls_key);
    free(m->tls_cert);
    for (size_t i = 0; m->backing_dirs && m->backing_dirs[i]; i++)
        free(m->backing_dirs[i]);
    free(m->backing_dirs);
    free(m);
}

int mgmt_start(struct engine *e, const struct mgmt_config *cfg, struct mgmt **out)
{
    *out = NULL;
    if (!cfg || !cfg->listen || strcmp(cfg->listen, "off") == 0) {
        log_info(mgmt, "management API disabled");
        return 0;
    }
    char host[64];
    unsigned port;
    if (mgmt_parse_listen(cfg->listen, host, sizeof host, &port) < 0) {
        log_error(mgmt,
                  "invalid management listen address \"%s\" (want ADDR:PORT, [V6]:PORT "
                  "or localhost:PORT)",
                  cfg->listen);
        return -EINVAL;
    }
    if (!cfg->token || !cfg->token[0]) {
        log_error(mgmt, "the management API needs a token (none was given)");
        return -EINVAL;
    }
    struct sockaddr_storage ss;
    bool v6;
    if (make_sockaddr(host, port, &ss, &v6) < 0)
        return -EINVAL;

    struct mgmt *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->engine = e;
    m->start_ns = now_ns();
    m->hooks = cfg->hooks;
    m->memcached = cfg->memcached;
    m->token = strdup(cfg->token);
    m->token_len = m->token ? strlen(m->token) : 0;
    m->pending = pending_new();
    if (!m->token || !m->pending ||
        (cfg->backing_dirs && !(m->backing_dirs = copy_dirs(cfg->backing_dirs)))) {
        mgmt_free(m);
        return -ENOMEM;
    }
    if (cfg->tls_certificates) {
        int r = load_tls(m, cfg->tls_certificates);
        if (r < 0) {
            mgmt_free(m);
            return r;
        }
    }

    int r = gate_open((struct sockaddr *)&ss,
                      v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in), &m->port,
                      &m->gate);
    if (r < 0) {
        log_error(mgmt, "cannot serve the management API on %s: %s", cfg->listen, strerror(-r));
        mgmt_free(m);
        return r;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC |
                     (m->tls_cert ? MHD_USE_TLS : 0);
    /* Options that only apply over TLS go last: with plain HTTP the list
     * ends before them. */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, m->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, m->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    if (!m->tls_cert)
        tls_opts[0].option = MHD_OPTION_END;
    errno = 0;
    /* The logger goes first so MHD routes every message through it. */
    /* gate.c keeps to MGMT_CONNECTION_LIMIT; MHD's own limit is above it,
     * so MHD never silently closes a connection gate handed over. */
    m->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, m,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)MGMT_CONNECTION_LIMIT + 16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)MGMT_CONNECTION_TIMEOUT,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, m, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        m, MHD_OPTION_UNESCAPE_CALLBACK, unescape, m, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    __atomic_store_n(&m->running, true, __ATOMIC_RELEASE);
    if (m->daemon &&
        (r = gate_start(m->gate, m->daemon, MGMT_CONNECTION_LIMIT, !m->tls_cert)) < 0) {
        MHD_stop_daemon(m->daemon);
        m->daemon = NULL;
        errno = -r;
    }
    if (!m->daemon) {
        int err = errno > 0 ? errno : EIO;
        log_error(mgmt, "cannot serve the management API on %s: %s", cfg->listen, strerror(err));
        mgmt_free(m);
        return -err;
    }
    log_info(mgmt, "management API on %s://%s%s%s:%u/ (token required for changes)",
             m->tls_cert ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", m->port);
    if (!m->tls_cert && !mgmt_listen_is_loopback(cfg->listen))
        log_warn(mgmt,
                 "the management API on %s is plain HTTP: the token travels in clear over the "
                 "network (serve it over TLS with --http-tls-certificates)",
                 cfg->listen);
    *out = m;
    return 0;
}

void mgmt_stop(struct mgmt *m)
{
    if (!m)
        return;
    /* First the gate, so that nothing is handed over to a stopping MHD. */
    gate_stop(m->gate);
    /* Joins MHD's own thread and every connection thread. */
    MHD_stop_daemon(m->daemon);
    mgmt_free(m);
}
