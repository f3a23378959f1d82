/* The HTTP transport of the management server: libmicrohttpd glue. It
 * collects the request body (bounded), enforces the token on mutating
 * methods, hands a `struct mgmt_req` to api_dispatch() and turns the
 * `struct mgmt_reply` into an MHD response.
 *
 * Threading: MHD_USE_THREAD_PER_CONNECTION with an internal listening
 * thread. Handlers call engine control functions that may block for a long
 * time (opening an upstream NBD back end, a forced remove waiting for
 * connections to drain, a cache shrink that evicts); with a single polling
 * thread (epoll) one such call would stall every /metrics scrape and the
 * dashboard behind it. Management traffic is a handful of connections, so a
 * thread each is cheap; CONNECTION_LIMIT and CONNECTION_TIMEOUT bound the
 * cost of a misbehaving client. poll() rather than select() so descriptor
 * numbers above FD_SETSIZE (a daemon with many NBD clients) still work. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "mgmt/mgmt.h"
#include "mgmt/mgmt_internal.h"

#define MGMT_CONNECTION_LIMIT   64
#define MGMT_CONNECTION_TIMEOUT 30 /* seconds of inactivity */

/* Per-request state, kept in MHD's *con_cls between callbacks. */
struct pending {
    char *body;
    size_t len, cap;
    bool too_large;
    bool answered; /* a response was queued before the body was read */
};

uint64_t mgmt_uptime_seconds(const struct mgmt *m)
{
    return (now_ns() - m->start_ns) / 1000000000ull;
}

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

    if (!p) {
        /* First call: headers only. Refuse what we can before reading a
         * body. */
        p = calloc(1, sizeof *p);
        if (!p)
            return MHD_NO;
        *con_cls = p;
        enum mgmt_method mm = parse_method(method);
        if (mm != MGMT_GET &&
            !auth_check(m, MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                       MHD_HTTP_HEADER_AUTHORIZATION))) {
            log_warn(mgmt, "%s %s refused: missing or wrong bearer token", method, url);
            reply_error(&rep, 401, "a valid \"Authorization: Bearer TOKEN\" header is required");
            return answer_early(conn, p, &rep);
        }
        const char *why =
            mm == MGMT_GET
                ? NULL
                : auth_browser_refusal(
                      m, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
                      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"),
                      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site"));
        if (why) {
            log_warn(mgmt, "%s %s refused: %s", method, url, why);
            reply_error(&rep, 403, "%s", why);
            return answer_early(conn, p, &rep);
        }
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > MGMT_MAX_BODY) {
            reply_error(&rep, 413, "request body too large (limit %u bytes)", MGMT_MAX_BODY);
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

    struct mgmt_req req = {
        .method = parse_method(method),
        .path = url,
        .body = p->body,
        .body_len = p->len,
        .query = query_arg,
        .transport = conn,
    };
    api_dispatch(m, &req, &rep);
    log_debug(mgmt, "%s %s -> %u", method, url, rep.status);
    return send_reply(conn, &rep);
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
    bool has_token = cfg->token && cfg->token[0];
    if (!has_token && !mgmt_listen_is_loopback(cfg->listen)) {
        log_error(mgmt,
                  "refusing to serve the management API on non-loopback address %s without a "
                  "token: anyone who can reach it could change volumes; give a token "
                  "(--http-token-file) or listen on 127.0.0.1",
                  cfg->listen);
        return -EPERM;
    }
    struct sockaddr_storage ss;
    bool v6;
    if (make_sockaddr(host, port, &ss, &v6) < 0)
        return -EINVAL;

    _cleanup_free_ struct mgmt *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->engine = e;
    m->start_ns = now_ns();
    if (has_token) {
        m->token = strdup(cfg->token);
        if (!m->token)
            return -ENOMEM;
        m->token_len = strlen(m->token);
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    errno = 0;
    /* The logger goes first so MHD routes every message through it. */
    m->daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, m,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, m, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)MGMT_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)MGMT_CONNECTION_TIMEOUT, MHD_OPTION_NOTIFY_COMPLETED,
                                 on_completed, m, MHD_OPTION_END);
    __atomic_store_n(&m->running, true, __ATOMIC_RELEASE);
    if (!m->daemon) {
        int err = errno > 0 ? errno : EIO;
        log_error(mgmt, "cannot serve the management API on %s: %s", cfg->listen, strerror(err));
        free(m->token);
        return -err;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info && info->port ? info->port : port;
    log_info(mgmt, "management API on http://%s%s%s:%u/ (%s)", v6 ? "[" : "", host, v6 ? "]" : "",
             m->port, m->token ? "token required for changes" : "no token, loopback only");
    *out = TAKE_PTR(m);
    return 0;
}

void mgmt_stop(struct mgmt *m)
{
    if (!m)
        return;
    /* Joins the listening thread and every connection thread. */
    MHD_stop_daemon(m->daemon);
    free(m->token);
    free(m);
}
