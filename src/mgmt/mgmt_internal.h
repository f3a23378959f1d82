/* Internals shared by the management server's files: the server object, the
 * transport-neutral request/reply pair that route handlers work on, and the
 * renderers. Only http.c talks to libmicrohttpd; handlers fill a
 * `struct mgmt_reply` and never see the connection, so they stay small and
 * testable.
 *
 * Threads: every connection runs on its own thread (see http.c). Nothing in
 * `struct mgmt` changes after mgmt_start, so handlers read it without locks;
 * all shared state lives in the engine, behind its own locks, and in the
 * table of asynchronous adds (pending.h), behind its own. */
#ifndef SHOAL_MGMT_MGMT_INTERNAL_H
#define SHOAL_MGMT_MGMT_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/mc_stats.h"
#include "common/util.h"
#include "core/engine.h"
#include "mgmt/mgmt.h"

/* Request bodies larger than this are refused with 413: the API only takes
 * small JSON documents. */
#define MGMT_MAX_BODY (64u * 1024)

struct MHD_Daemon;

struct mgmt {
    struct engine *engine;
    struct MHD_Daemon *daemon;
    char *token; /* never NULL once started: see auth_check */
    size_t token_len;
    char **backing_dirs; /* NULL-terminated, or NULL = anywhere */
    char *tls_cert;      /* PEM, kept while MHD runs; NULL = plain HTTP */
    char *tls_key;       /* PEM, wiped on stop */
    size_t tls_key_len;
    unsigned port;
    uint64_t start_ns;
    struct mgmt_hooks hooks; /* the daemon's (mgmt.h) */
    bool running;            /* atomic: MHD_start_daemon returned (see mhd_logger) */
    struct pending *pending; /* "wait": false adds (pending.h) */
    struct tier *memcached;  /* NULL: no memcached tier */
    struct gate *gate;       /* accepts the connections (gate.h) */
};

enum mgmt_method {
    MGMT_GET = 1u << 0, /* HEAD is routed as GET; the server drops the body */
    MGMT_POST = 1u << 1,
    MGMT_DELETE = 1u << 2,
    MGMT_PUT = 1u << 3,
    MGMT_PATCH = 1u << 4,
    MGMT_OTHER = 1u << 5,
};

/* Longest volume name the engine accepts (volume_name_valid). */
#define MGMT_NAME_MAX 255

struct mgmt_req {
    enum mgmt_method method;
    const char *path; /* decoded path, without the query */
    const char *body; /* NUL-terminated copy of the body, or NULL */
    size_t body_len;
    char name[MGMT_NAME_MAX + 1]; /* the path's "*" segment, if the route has one */
    /* Query argument lookup (implemented by the transport); NULL if absent,
     * "" if present without a value. */
    const char *(*query)(const struct mgmt_req *req, const char *key);
    /* Request header lookup by case-insensitive name (implemented by the
     * transport); NULL if absent. Only mgmt_precheck reads headers. */
    const char *(*header)(const struct mgmt_req *req, const char *name);
    /* Set by mgmt_precheck: the request carries the API token. GET
     * handlers show backing paths only when it is set. */
    bool authorized;
    void *transport; /* opaque to handlers */
};

struct mgmt_reply {
    unsigned status;
    char *body; /* malloc'ed, owned by the reply (may be NULL for 204) */
    size_t len;
    const char *content_type; /* static string */
    char allow[64];           /* "Allow" header for 405, or "" */
    char location[300];       /* "Location" header for 201, or "" */
    bool page;                /* a dashboard file: send the browser-hardening headers */
};

/* Scope-bound releases for the types handlers juggle. */
static inline void mgmt_volume_putp(struct volume **v)
{
    if (*v)
        volume_put(*v);
}
static inline void mgmt_json_decrefp(json_t **j)
{
    json_decref(*j);
}
#define _cleanup_volume_ __attribute__((cleanup(mgmt_volume_putp)))
#define _cleanup_json_   __attribute__((cleanup(mgmt_json_decrefp)))

/* ---- replies (reply.c) ---- */
/* Serialise `obj` (reference stolen) as the JSON reply body. */
void reply_json(struct mgmt_reply *rep, unsigned status, json_t *obj);
/* {"error": "..."} with a printf-style message. */
void reply_error(struct mgmt_reply *rep, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Take ownership of a malloc'ed text buffer. */
void reply_text(struct mgmt_reply *rep, unsigned status, const char *content_type, char *buf,
                size_t len);
void reply_empty(struct mgmt_reply *rep, unsigned status);
void reply_free(struct mgmt_reply *rep);

/* json_string() that never fails on bytes that are not UTF-8 (paths are
 * bytes): such strings are rendered with '?' in place of the bad bytes. */
json_t *json_string_lossy(const char *s);
/* An unsigned counter as a JSON integer (json_int_t is signed). */
json_t *json_u64(uint64_t v);
/* A ratio or other derived figure; NaN and infinities render as 0. */
json_t *json_ratio(double v);

/* ---- stat collection (snap.c) ---- */
/* Everything mgmt renders about one volume, copied while the engine held a
 * reference, so rendering needs no lock and no volume. */
struct mgmt_vol {
    char name[MGMT_NAME_MAX + 1];
    char backend[512];   /* "" when hidden */
    bool backend_hidden; /* the request had no token: renderers leave it out */
    bool readonly;
    bool enabled;
    int fenced; /* core/vol_fence.h: why its writes are fenced (0: they are not) */
    unsigned connections;
    struct volume_settings settings;
    /* In a cluster: the node that serves it read-write (this one), or
     * "every node" for a read-only one; "" without a cluster. */
    char owner[MGMT_NAME_MAX + 1];
    struct volume_snapshot snap;
    struct mrc_curve mrc;
};

struct mgmt_snap {
    struct cache_snapshot cache;
    struct mrc_curve mrc;
    struct mgmt_vol *vols;
    size_t nvols;
    /* the memcached tier, when the node has one (mcs: nmcs servers) */
    bool has_mc;
    struct mc_tier_snap mc;
    struct mc_server_snap *mcs;
    unsigned nmcs;
};

/* Snapshot the cache and every volume. 0 or -ENOMEM. Backing paths are
 * copied only with `show_backend` (the request carried the token): a
 * record without one cannot leak it through any renderer. */
int mgmt_snap_take(struct mgmt *m, struct mgmt_snap *out, bool show_backend);
void mgmt_snap_free(struct mgmt_snap *s);
/* Fill one volume's record from a live volume. */
void mgmt_vol_fill(struct volume *v, struct mgmt_vol *out, bool show_backend);

/* ---- renderers ---- */
/* render_json.c */
json_t *render_cache_json(const struct cache_snapshot *c);
json_t *render_volume_stats_json(const struct mgmt_vol *v);
json_t *render_volume_json(const struct mgmt_vol *v); /* the short form of /volumes */
json_t *render_stats_json(const struct mgmt *m, const struct mgmt_snap *s);
json_t *render_prefetch_json(const struct prefetch_status *st);
/* A miss-ratio curve: {"rate", "sampled_reads", "points": [{"factor",
 * "cache_bytes", "hit_ratio"}]} (core/mrc.h). */
json_t *render_mrc_json(const struct mrc_curve *c);
/* The memcached tier: {"tier": {...}, "servers": [{"server", "state",
 * ["stats_error"], every stat of the list}]}; one server's object alone. */
json_t *render_memcached_json(const struct mgmt_snap *s);
json_t *render_mc_server_json(const struct mc_server_snap *srv);
json_t *render_mc_tier_json(const struct mc_tier_snap *t);
/* Fill only the memcached part of a snapshot (GET /api/v1/cluster). 0 or
 * -ENOMEM; nothing without a tier. */
int mgmt_snap_take_mc(struct mgmt *m, struct mgmt_snap *out);
/* render_prom.c: Prometheus text format 0.0.4. 0 or -ENOMEM. */
int render_prometheus(const struct mgmt *m, const struct mgmt_snap *s, char **buf, size_t *len);
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- the entry every transport calls (handle.c) ---- */
/* The decisions that need only the headers: sets req->authorized; refuses
 * a change without the token (401), a browser change from another site
 * (403), a declared body over MGMT_MAX_BODY (413). Returns true when it
 * filled `rep` with such a refusal. A transport may call it as soon as the
 * headers are in, to refuse before reading a body; mgmt_handle calls it
 * again, so no transport can skip it. */
bool mgmt_precheck(const struct mgmt *m, struct mgmt_req *req, struct mgmt_reply *rep);
/* Auth, then routing: mgmt_precheck, the body limit, api_dispatch. `rep`
 * is always filled. */
void mgmt_handle(struct mgmt *m, struct mgmt_req *req, struct mgmt_reply *rep);

/* ---- routes (api.c) ---- */
/* Route a request to its handler and fill the reply (always filled). Only
 * mgmt_handle calls it: it does no auth of its own. */
void api_dispatch(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep);

/* ---- static pages (static.c) ---- */
/* Serve the dashboard: "/", "/dashboard" and "/dashboard/FILE". */
void static_serve(const char *path, struct mgmt_reply *rep);

/* ---- auth (auth.c) ---- */
/* True when the Authorization header value carries the configured token.
 * Compares in constant time. False when no token is configured. */
bool auth_check(const struct mgmt *m, const char *authorization);
/* Why a mutating request that came through a browser must be refused (a
 * message for the 403), or NULL. Arguments are the Host, Origin and
 * Sec-Fetch-Site headers, each NULL when absent. */
const char *auth_browser_refusal(const char *host, const char *origin, const char *fetch_site);

/* Seconds since mgmt_start (inline: the renderers need it, and they must
 * not call back into the HTTP server that calls them). */
static inline uint64_t mgmt_uptime_seconds(const struct mgmt *m)
{
    return (now_ns() - m->start_ns) / 1000000000ull;
}

#endif
