/* Building replies: JSON bodies via jansson, error bodies, plain buffers. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "mgmt/mgmt_internal.h"

/* A smaller precision than jansson's default 17 digits keeps ratios readable
 * (0.1 instead of 0.10000000000000001) and is far beyond what they mean. */
#define JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(12))

void reply_free(struct mgmt_reply *rep)
{
    free(rep->body);
    rep->body = NULL;
    rep->len = 0;
}

void reply_text(struct mgmt_reply *rep, unsigned status, const char *content_type, char *buf,
                size_t len)
{
    reply_free(rep);
    rep->status = status;
    rep->content_type = content_type;
    rep->body = buf;
    rep->len = len;
}

void reply_empty(struct mgmt_reply *rep, unsigned status)
{
    reply_text(rep, status, NULL, NULL, 0);
}

/* When jansson itself cannot allocate, a constant body still tells the client. */
static void reply_oom(struct mgmt_reply *rep)
{
    static const char msg[] = "{\"error\":\"out of memory\"}\n";
    char *body = strdup(msg);
    reply_text(rep, 500, "application/json", body, body ? sizeof msg - 1 : 0);
}

void reply_json(struct mgmt_reply *rep, unsigned status, json_t *obj)
{
    if (!obj) {
        reply_oom(rep);
        return;
    }
    char *text = json_dumps(obj, JSON_FLAGS);
    json_decref(obj);
    if (!text) {
        reply_oom(rep);
        return;
    }
    size_t n = strlen(text);
    /* A trailing newline makes `curl` output end cleanly in a terminal. */
    char *body = realloc(text, n + 2);
    if (!body) {
        free(text);
        reply_oom(rep);
        return;
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    reply_text(rep, status, "application/json", body, n + 1);
}

void reply_error(struct mgmt_reply *rep, unsigned status, const char *fmt, ...)
{
    /* Room for a back end's open error (up to 1 KiB: a path and the image
     * format refusal's hint) behind "volume NAME: ". */
    char msg[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_debug(mgmt, "reply %u: %s", status, msg);
    json_t *obj = json_object();
    if (obj)
        json_object_set_new(obj, "error", json_string_lossy(msg));
    reply_json(rep, status, obj);
}

json_t *json_string_lossy(const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (j)
        return j;
    /* Not valid UTF-8: keep ASCII, replace everything else. */
    _cleanup_free_ char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    return json_string(copy);
}

json_t *json_u64(uint64_t v)
{
    if (v > (uint64_t)LLONG_MAX)
        return json_real((double)v);
    return json_integer((json_int_t)v);
}

json_t *json_ratio(double v)
{
    /* JSON has no NaN or infinity; an undefined ratio (0/0) reads as 0. */
    if (!isfinite(v))
        v = 0;
    return json_real(v);
}
