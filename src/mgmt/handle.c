/* The one entry of the management API that every transport calls (http.c
 * for libmicrohttpd, the fuzz harness directly): who may do what, then the
 * routes. Keeping the decision here, on a transport-neutral request, means
 * the fuzzer and the unit tests exercise the same code the daemon runs.
 *
 * The rules (docs/security.md):
 *   - any method but GET/HEAD needs the bearer token, from every peer,
 *     loopback included: 401 without it;
 *   - a change through a browser must come from this server's own page: 403;
 *   - a GET is answered without the token, but backing paths are shown
 *     only to a request that carries it (req->authorized). */
#include <stdlib.h>

#include "common/log.h"
#include "mgmt/mgmt_internal.h"

static const char *method_name(enum mgmt_method m)
{
    switch (m) {
    case MGMT_GET:
        return "GET";
    case MGMT_POST:
        return "POST";
    case MGMT_DELETE:
        return "DELETE";
    case MGMT_PUT:
        return "PUT";
    case MGMT_PATCH:
        return "PATCH";
    default:
        return "request";
    }
}

static const char *header(const struct mgmt_req *req, const char *name)
{
    return req->header ? req->header(req, name) : NULL;
}

bool mgmt_precheck(const struct mgmt *m, struct mgmt_req *req, struct mgmt_reply *rep)
{
    req->authorized = auth_check(m, header(req, "Authorization"));
    if (req->method != MGMT_GET) {
        if (!req->authorized) {
            log_warn(mgmt, "%s %s refused: missing or wrong bearer token", method_name(req->method),
                     req->path ? req->path : "");
            reply_error(rep, 401,
                        "a valid \"Authorization: Bearer TOKEN\" header is required for changes "
                        "(the token is in shoald's --http-token-file)");
            return true;
        }
        const char *why = auth_browser_refusal(header(req, "Host"), header(req, "Origin"),
                                               header(req, "Sec-Fetch-Site"));
        if (why) {
            log_warn(mgmt, "%s %s refused: %s", method_name(req->method),
                     req->path ? req->path : "", why);
            reply_error(rep, 403, "%s", why);
            return true;
        }
    }
    const char *cl = header(req, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > MGMT_MAX_BODY) {
        reply_error(rep, 413, "request body too large (limit %u bytes)", MGMT_MAX_BODY);
        return true;
    }
    return false;
}

void mgmt_handle(struct mgmt *m, struct mgmt_req *req, struct mgmt_reply *rep)
{
    if (mgmt_precheck(m, req, rep))
        return;
    if (req->body_len > MGMT_MAX_BODY) {
        reply_error(rep, 413, "request body too large (limit %u bytes)", MGMT_MAX_BODY);
        return;
    }
    api_dispatch(m, req, rep);
}
