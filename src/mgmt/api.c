/* The REST API: a table of routes (paths are a contract with scripts and
 * tests outside the project; see docs) and one handler per route. Handlers
 * read stats through snapshots and change things only through the engine's
 * control functions; engine errors map to HTTP statuses in errno_status().
 * Auth happened before (handle.c); handlers only honour req->authorized by
 * leaving backing paths out of what they show without it.
 *
 *   GET    /api/v1/stats                      cache + every volume's stats
 *   GET    /api/v1/stats/volumes/NAME         one volume's stats
 *   GET    /api/v1/mrc                        miss-ratio curves: the cache's, each volume's
 *   GET    /api/v1/cache                      cache stats
 *   POST   /api/v1/cache/resize               {"size": "2G" | bytes}
 *   GET    /api/v1/volumes                    short list (opening/failed adds too)
 *   POST   /api/v1/volumes                    {"name", "backing", "readonly"?, "enabled"?,
 *                                              "wait"?}; wait false: 202, opens in the
 *                                              background (pending.h)
 *   GET    /api/v1/volumes/NAME               a volume, or an opening/failed add
 *   DELETE /api/v1/volumes/NAME[?force=1]     a volume, or a failed add
 *   POST   /api/v1/volumes/NAME/enable|disable
 *   POST   /api/v1/volumes/NAME/invalidate    {"offset"?, "length"?}
 *   POST   /api/v1/volumes/NAME/prefetch      {"offset"?, "length"?}; 409 when disabled
 *   GET    /api/v1/volumes/NAME/prefetch      progress
 *   POST   /api/v1/volumes/NAME/move          {"to": NODE}: a warm move (daemon/move.h)
 *   POST   /api/v1/reload                     re-read the config file (daemon/reload.h)
 *   GET    /api/v1/cluster, POST /api/v1/cluster/memcached,
 *   DELETE /api/v1/cluster/memcached/HOST:PORT  (api_cluster.h)
 *   GET    /metrics                           Prometheus
 *   GET    /, /dashboard                      browser (static.c)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cluster/membership.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "mgmt/api_cluster.h"
#include "mgmt/mgmt_internal.h"
#include "mgmt/pending.h"

typedef void (*handler_fn)(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep);

/* HTTP status for an engine error. */
static unsigned errno_status(int err)
{
    switch (-err) {
    case ENOENT:
        return 404;
    case EEXIST:
    case EBUSY:
    case EALREADY:
    case ENOTSUP:
    case ESHUTDOWN:
        return 409;
    case EINVAL:
    case ERANGE:
    case EOVERFLOW:
        return 400;
    case EPERM:
    case EACCES:
    case EROFS:
        return 403;
    case ENOMEM:
    case EAGAIN:
        return 503;
    default:
        return 500;
    }
}

/* ---- request body helpers ---- */

/* Parse the body as a JSON object. An empty body counts as {} when
 * `optional`. On failure the reply is a 400 and NULL is returned. */
static json_t *body_object(const struct mgmt_req *req, struct mgmt_reply *rep, bool optional)
{
    if (req->body_len == 0) {
        if (optional)
            return json_object();
        reply_error(rep, 400, "a JSON object is required in the request body");
        return NULL;
    }
    json_error_t err;
    json_t *obj = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
    if (!obj) {
        reply_error(rep, 400, "invalid JSON at line %d column %d: %s", err.line, err.column,
                    err.text);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        reply_error(rep, 400, "the request body must be a JSON object");
        return NULL;
    }
    return obj;
}

/* Refuse keys the endpoint does not know: a typo ("read_only") should fail
 * loudly rather than be silently ignored. */
static bool only_keys(json_t *obj, const char *const *allowed, struct mgmt_reply *rep)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, key) == 0;
        if (!ok) {
            reply_error(rep, 400, "unknown field \"%s\"", key);
            return false;
        }
    }
    return true;
}

/* Optional boolean field; absent leaves *out unchanged. */
static bool get_bool(json_t *obj, const char *key, bool *out, struct mgmt_reply *rep)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return true;
    if (!json_is_boolean(v)) {
        reply_error(rep, 400, "\"%s\" must be true or false", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* Optional size field: a non-negative integer or a string such as "64K"
 * (binary units, parse_size). Absent leaves *out unchanged. */
static bool get_size(json_t *obj, const char *key, uint64_t *out, struct mgmt_reply *rep)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return true;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        /* Some clients send large integers as floats (1e9). */
        double d = json_real_value(v);
        if (d >= 0 && d < 18446744073709551616.0 && d == (double)(uint64_t)d) {
            *out = (uint64_t)d;
            return true;
        }
    }
    if (json_is_string(v) && parse_size(json_string_value(v), out) == 0)
        return true;
    reply_error(rep, 400, "\"%s\" must be a byte count (integer, or a string like \"64K\")", key);
    return false;
}

static bool get_string(json_t *obj, const char *key, const char **out, struct mgmt_reply *rep)
{
    json_t *v = json_object_get(obj, key);
    if (!v || !json_is_string(v) || json_string_length(v) == 0) {
        reply_error(rep, 400, "\"%s\" is required and must be a non-empty string", key);
        return false;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        reply_error(rep, 400, "\"%s\" must not contain NUL characters", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* Look up the volume named by the path; 404 reply when there is none. */
static struct volume *path_volume(struct mgmt *m, const struct mgmt_req *req,
                                  struct mgmt_reply *rep)
{
    bool valid = volume_name_valid(req->name);
    struct volume *v = valid ? engine_get_volume(m->engine, req->name) : NULL;
    if (!v) {
        if (valid)
            reply_error(rep, 404, "no such volume: %s", req->name);
        else
            reply_error(rep, 404, "no such volume (invalid name)");
    }
    return v;
}

static void reply_volume(const struct mgmt_req *req, struct mgmt_reply *rep, unsigned status,
                         struct volume *v)
{
    struct mgmt_vol mv;
    mgmt_vol_fill(v, &mv, req->authorized);
    reply_json(rep, status, render_volume_json(&mv));
}

/* ---- stats ---- */

static void h_stats(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    struct mgmt_snap s;
    int r = mgmt_snap_take(m, &s, req->authorized);
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot collect stats: %s", strerror(-r));
        return;
    }
    reply_json(rep, 200, render_stats_json(m, &s));
    mgmt_snap_free(&s);
}

static void h_stats_volume(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    _cleanup_volume_ struct volume *v = path_volume(m, req, rep);
    if (!v)
        return;
    struct mgmt_vol mv;
    mgmt_vol_fill(v, &mv, req->authorized);
    reply_json(rep, 200, render_volume_stats_json(&mv));
}

/* What-if sizing: predicted hit ratios at other cache sizes. */
static void h_mrc(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    struct mgmt_snap s;
    int r = mgmt_snap_take(m, &s, req->authorized);
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot collect the curves: %s", strerror(-r));
        return;
    }
    json_t *vols = json_array();
    for (size_t i = 0; vols && i < s.nvols; i++)
        json_array_append_new(vols, json_pack("{s:s, s:o}", "name", s.vols[i].name, "mrc",
                                              render_mrc_json(&s.vols[i].mrc)));
    reply_json(rep, 200,
               json_pack("{s:o, s:o, s:o}", "capacity_bytes", json_u64(s.cache.capacity_bytes),
                         "cache", render_mrc_json(&s.mrc), "volumes", vols ? vols : json_null()));
    mgmt_snap_free(&s);
}

static void h_cache(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    (void)req;
    struct cache_snapshot c;
    cache_snapshot(m->engine, &c);
    reply_json(rep, 200, render_cache_json(&c));
}

static void h_cache_resize(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    static const char *const keys[] = {"size", NULL};
    _cleanup_json_ json_t *body = body_object(req, rep, false);
    if (!body || !only_keys(body, keys, rep))
        return;
    if (!json_object_get(body, "size")) {
        reply_error(rep, 400, "\"size\" is required");
        return;
    }
    uint64_t size = 0;
    if (!get_size(body, "size", &size, rep))
        return;
    /* The engine's -EINVAL alone ("Invalid argument") does not say which
     * way the size is wrong. */
    uint64_t max = engine_cache_max_bytes(m->engine);
    char want[32], most[32];
    format_size(size, want, sizeof want);
    if (size < BLOCK_SIZE) {
        reply_error(rep, 400,
                    "cannot resize the cache to %llu bytes: it needs at least one %u-byte block",
                    (unsigned long long)size, BLOCK_SIZE);
        return;
    }
    if (size > max) {
        reply_error(rep, 400,
                    "cannot resize the cache to %s: more than it can grow to while running (%s, "
                    "this machine's RAM)",
                    want, format_size(max, most, sizeof most));
        return;
    }
    int r = engine_resize_cache(m->engine, size);
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot resize the cache to %llu bytes: %s",
                    (unsigned long long)size, strerror(-r));
        return;
    }
    log_info(mgmt, "cache resized to %llu bytes", (unsigned long long)size);
    h_cache(m, req, rep);
}

static void h_metrics(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    struct mgmt_snap s;
    int r = mgmt_snap_take(m, &s, req->authorized);
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot collect stats: %s", strerror(-r));
        return;
    }
    char *text;
    size_t len;
    r = render_prometheus(m, &s, &text, &len);
    mgmt_snap_free(&s);
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot render metrics: %s", strerror(-r));
        return;
    }
    reply_text(rep, 200, PROM_CONTENT_TYPE, text, len);
}

/* ---- volumes ---- */

/* Tell the daemon (state file) about a change that succeeded. False after
 * replacing the reply with a 500 saying the change will not survive a
 * restart: it is live, but the caller must know it is not kept. */
static bool persist(struct mgmt *m, enum mgmt_change_kind kind, const char *name,
                    const struct volume_config *cfg, struct mgmt_reply *rep)
{
    if (!m->hooks.changed)
        return true;
    char err[512] = "";
    int r = m->hooks.changed(m->hooks.opaque, kind, name, cfg, err, sizeof err);
    if (r == 0)
        return true;
    log_error(mgmt, "volume %s: change not saved: %s", name, err[0] ? err : strerror(-r));
    reply_free(rep);
    memset(rep, 0, sizeof *rep);
    reply_error(rep, 500,
                "volume %s: done, but not saved in the state file (%s): it is lost at "
                "restart",
                name, err[0] ? err : strerror(-r));
    return false;
}

static void h_volumes(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    struct mgmt_snap s;
    int r = mgmt_snap_take(m, &s, req->authorized);
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot list volumes: %s", strerror(-r));
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s.nvols; i++) {
        if (json_array_append_new(arr, render_volume_json(&s.vols[i])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    mgmt_snap_free(&s);
    pending_list(m->pending, arr, req->authorized);
    reply_json(rep, 200, arr);
}

static void h_volume_get(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    /* An add still opening or failed is no volume yet, but a client that
     * polls after a 202 must learn how it went: 200 with its state. */
    json_t *pend =
        volume_name_valid(req->name) ? pending_json(m->pending, req->name, req->authorized) : NULL;
    _cleanup_volume_ struct volume *v = engine_get_volume(m->engine, req->name);
    if (v) {
        json_decref(pend);
        reply_volume(req, rep, 200, v);
    } else if (pend) {
        reply_json(rep, 200, pend);
    } else {
        /* Added between the two looks: show it; else path_volume's 404. */
        _cleanup_volume_ struct volume *again = path_volume(m, req, rep);
        if (again)
            reply_volume(req, rep, 200, again);
    }
}

/* The cluster ownership an add took goes back when the add fails (r < 0
 * when it returns); -EEXIST: the volume of that name holds it. */
struct claim_guard {
    const char *name;
    const int *r;
};

static void claim_end(struct claim_guard *g)
{
    if (g->name && *g->r < 0 && *g->r != -EEXIST)
        cluster_release(g->name);
}

static void h_volume_add(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    static const char *const keys[] = {"name",  "backing", "readonly", "enabled", "direct",
                                       "conns", "format",  "wait",     NULL};
    _cleanup_json_ json_t *body = body_object(req, rep, false);
    if (!body || !only_keys(body, keys, rep))
        return;
    const char *name, *backing;
    bool readonly = false, enabled = true, direct = false, wait = true;
    uint64_t conns = 0;
    if (!get_string(body, "name", &name, rep) || !get_string(body, "backing", &backing, rep) ||
        !get_bool(body, "readonly", &readonly, rep) || !get_bool(body, "enabled", &enabled, rep) ||
        !get_bool(body, "direct", &direct, rep) || !get_bool(body, "wait", &wait, rep))
        return;
    json_t *jc = json_object_get(body, "conns");
    if (jc) {
        if (!json_is_integer(jc) || json_integer_value(jc) < 0 || json_integer_value(jc) > 64) {
            reply_error(rep, 400, "\"conns\" must be an integer from 0 to 64");
            return;
        }
        conns = (uint64_t)json_integer_value(jc);
    }
    enum backend_format format = BACKEND_FORMAT_AUTO;
    json_t *jf = json_object_get(body, "format");
    if (jf && (!json_is_string(jf) || backend_format_parse(json_string_value(jf), &format) < 0)) {
        reply_error(rep, 400, "\"format\" must be \"auto\" or \"raw\"");
        return;
    }
    if (!volume_name_valid(name)) {
        reply_error(rep, 400,
                    "invalid volume name \"%s\": use 1-255 of A-Z a-z 0-9 . _ -, "
                    "not starting with '.'",
                    name);
        return;
    }

    /* A read-only export never writes, so its back end is opened read-only
     * too: that also works on storage the daemon may only read. */
    struct volume_config vc = {
        .name = name,
        .backend = {.spec = backing,
                    .readonly = readonly,
                    .direct = direct,
                    .conns = (unsigned)conns,
                    .format = format,
                    .backing_dirs = (const char *const *)m->backing_dirs},
        .readonly = readonly,
        .disabled = !enabled,
    };
    /* Checked here as well as by the engine, so a "wait": false add is
     * refused at once rather than fail in the background. */
    _cleanup_volume_ struct volume *existing = engine_get_volume(m->engine, name);
    int r = existing ? -EEXIST : pending_claim(m->pending, name);
    if (r == -EBUSY) {
        reply_error(rep, 409, "volume %s is being opened already", name);
        return;
    }
    /* One writer per volume in a cluster: the owner's name if taken. */
    char owner[512];
    if (r == 0 && (r = cluster_claim(name, readonly, owner, sizeof owner)) < 0) {
        reply_error(rep, r == -EBUSY ? 409 : 503, "%s", owner);
        return;
    }
    __attribute__((cleanup(claim_end))) struct claim_guard claim = {r == 0 ? name : NULL, &r};
    if (r == 0 && !wait) {
        r = pending_begin(m, &vc);
        if (r == 0) {
            log_info(mgmt, "volume %s: opening %s in the background", name, backing);
            reply_json(rep, 202, json_pack("{s:s, s:s}", "name", name, "state", "opening"));
            snprintf(rep->location, sizeof rep->location, "/api/v1/volumes/%s", name);
            return;
        }
        if (r == -EBUSY) {
            claim.name = NULL; /* held by the add that is opening it */
            reply_error(rep, 409, "volume %s is being opened already", name);
            return;
        }
        reply_error(rep, errno_status(r), "cannot open volume %s in the background: %s", name,
                    strerror(-r));
        return;
    }
    if (r == 0) {
        /* Cleared first: an -EINVAL from before the back end opens must
         * not carry an older open's words (see below). */
        backend_set_open_error("%s", "");
        r = engine_add_volume(m->engine, &vc);
    }
    if (r == -EEXIST) {
        reply_error(rep, 409, "volume %s already exists", name);
        return;
    }
    if (r == -EINVAL) {
        /* A back end that refused its spec (a malformed iscsi:// URI, say)
         * said why. */
        const char *why = backend_open_error();
        if (why[0])
            reply_error(rep, 400, "cannot open back end %s: %s", backing, why);
        else
            reply_error(rep, 400, "cannot add volume %s: invalid configuration", name);
        return;
    }
    if (r == -EPERM) {
        /* A back end outside --backing-dir: the rule, not the file, says no. */
        const char *why = backend_open_error();
        reply_error(rep, 403, "cannot add volume %s: %s", name, why[0] ? why : strerror(-r));
        return;
    }
    if (r == -EBUSY) {
        /* The image is exported already, or another process (QEMU, a
         * second shoald) holds it: the back end's sentence names both. */
        const char *why = backend_open_error();
        reply_error(rep, 409, "volume %s: %s", name, why[0] ? why : strerror(-r));
        return;
    }
    if (r == -EMEDIUMTYPE) {
        /* An image in a format shoal does not serve: the back end's
         * sentence names the file and what to do instead. */
        const char *why = backend_open_error();
        reply_error(rep, 400, "volume %s: %s", name, why[0] ? why : strerror(-r));
        return;
    }
    if (r < 0) {
        /* Whatever the back end said (missing file, refused connection...)
         * is the client's to fix, hence 400 rather than 5xx. */
        const char *why = backend_open_error();
        reply_error(rep, 400, "cannot open back end %s: %s", backing, why[0] ? why : strerror(-r));
        return;
    }
    log_info(mgmt, "volume %s added (%s%s%s)", name, backing, readonly ? ", read-only" : "",
             enabled ? "" : ", disabled");
    if (!persist(m, MGMT_VOLUME_ADDED, name, &vc, rep))
        return;

    _cleanup_volume_ struct volume *v = engine_get_volume(m->engine, name);
    if (!v) {
        /* Removed again by a concurrent call before we could show it. */
        reply_error(rep, 404, "volume %s was removed concurrently", name);
        return;
    }
    reply_volume(req, rep, 201, v);
    snprintf(rep->location, sizeof rep->location, "/api/v1/volumes/%s", name);
}

/* "?force=1": 1/true/yes or a bare "?force" are true, 0/false/no false. */
static bool query_bool(const struct mgmt_req *req, const char *key, bool *out,
                       struct mgmt_reply *rep)
{
    const char *s = req->query ? req->query(req, key) : NULL;
    if (!s)
        return true;
    if (!*s || !strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes")) {
        *out = true;
        return true;
    }
    if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no")) {
        *out = false;
        return true;
    }
    reply_error(rep, 400, "query argument %s must be 1 or 0", key);
    return false;
}

static void h_volume_remove(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    bool force = false;
    if (!query_bool(req, "force", &force, rep))
        return;
    if (!volume_name_valid(req->name)) {
        reply_error(rep, 404, "no such volume (invalid name)");
        return;
    }
    int r = engine_remove_volume(m->engine, req->name, force);
    if (r == -ENOENT) {
        /* A failed asynchronous add was never saved: dropping it is all. */
        r = pending_remove(m->pending, req->name);
        if (r == 0) {
            log_info(mgmt, "volume %s: failed add dismissed", req->name);
            reply_empty(rep, 204);
            return;
        }
        if (r == -EBUSY) {
            reply_error(rep, 409, "volume %s is still opening: remove it once it is ready",
                        req->name);
            return;
        }
    }
    if (r == -ENOENT) {
        reply_error(rep, 404, "no such volume: %s", req->name);
        return;
    }
    if (r == -EBUSY) {
        reply_error(rep, 409, "volume %s has connected clients (use force to drop them)",
                    req->name);
        return;
    }
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot remove volume %s: %s", req->name, strerror(-r));
        return;
    }
    cluster_release(req->name);
    log_info(mgmt, "volume %s removed%s", req->name, force ? " (forced)" : "");
    if (persist(m, MGMT_VOLUME_REMOVED, req->name, NULL, rep))
        reply_empty(rep, 204);
}

/* A warm move: the daemon fences, publishes, hands over and removes
 * (daemon/move.c). */
static void h_volume_move(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    static const char *const keys[] = {"to", NULL};
    _cleanup_json_ json_t *body = body_object(req, rep, false);
    const char *to;
    if (!body || !only_keys(body, keys, rep) || !get_string(body, "to", &to, rep))
        return;
    if (!m->hooks.move) {
        reply_error(rep, 409, "this node cannot move volumes (not in a cluster)");
        return;
    }
    json_t *report = NULL;
    char err[1024] = "";
    int r = m->hooks.move(m->hooks.opaque, req->name, to, &report, err, sizeof err);
    if (r < 0) {
        unsigned st = r == -ENOENT                  ? 404
                      : r == -EROFS || r == -EINVAL ? 400
                      : r == -ENOTCONN              ? 409
                                                    : 503;
        reply_error(rep, st, "%s", err[0] ? err : strerror(-r));
        return;
    }
    reply_json(rep, 200, report);
}

static void set_enabled(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep, bool on)
{
    _cleanup_volume_ struct volume *v = path_volume(m, req, rep);
    if (!v)
        return;
    int r = volume_set_enabled(v, on);
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot %s volume %s: %s", on ? "enable" : "disable",
                    req->name, strerror(-r));
        return;
    }
    log_info(mgmt, "volume %s %s", req->name, on ? "enabled" : "disabled");
    if (persist(m, on ? MGMT_VOLUME_ENABLED : MGMT_VOLUME_DISABLED, req->name, NULL, rep))
        reply_volume(req, rep, 200, v);
}

static void h_enable(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    set_enabled(m, req, rep, true);
}

static void h_disable(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    set_enabled(m, req, rep, false);
}

/* Parse an optional {"offset", "length"} body and check it against the
 * volume. length 0 (or absent) means "to the end". */
static bool parse_range(const struct mgmt_req *req, struct volume *v, uint64_t *offset,
                        uint64_t *length, struct mgmt_reply *rep)
{
    static const char *const keys[] = {"offset", "length", NULL};
    _cleanup_json_ json_t *body = body_object(req, rep, true);
    if (!body || !only_keys(body, keys, rep))
        return false;
    *offset = 0;
    *length = 0;
    if (!get_size(body, "offset", offset, rep) || !get_size(body, "length", length, rep))
        return false;
    uint64_t size = volume_size(v);
    if (*offset > size || *length > size - *offset) {
        reply_error(rep, 400, "range %llu+%llu is outside the volume (%llu bytes)",
                    (unsigned long long)*offset, (unsigned long long)*length,
                    (unsigned long long)size);
        return false;
    }
    return true;
}

static void h_invalidate(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    _cleanup_volume_ struct volume *v = path_volume(m, req, rep);
    if (!v)
        return;
    uint64_t offset, length;
    if (!parse_range(req, v, &offset, &length, rep))
        return;
    int r = volume_invalidate(v, offset, length);
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot invalidate %s: %s", req->name, strerror(-r));
        return;
    }
    uint64_t effective = length ? length : volume_size(v) - offset;
    log_info(mgmt, "volume %s: invalidated %llu bytes at %llu", req->name,
             (unsigned long long)effective, (unsigned long long)offset);
    reply_json(rep, 200,
               json_pack("{s:b, s:s, s:o, s:o}", "invalidated", 1, "volume", req->name, "offset",
                         json_u64(offset), "length", json_u64(effective)));
}

static void h_prefetch_start(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    _cleanup_volume_ struct volume *v = path_volume(m, req, rep);
    if (!v)
        return;
    uint64_t offset, length;
    if (!parse_range(req, v, &offset, &length, rep))
        return;
    if (length == 0)
        length = volume_size(v) - offset;
    /* A volume in pass-through caches nothing, so a prefetch would read the
     * whole range and keep none of it, then report success: refuse it so
     * the caller learns why nothing got faster. (A disable while one runs
     * is not seen here: only the engine's prefetch loop could notice.) */
    if (!volume_enabled(v)) {
        reply_error(rep, 409,
                    "volume %s: acceleration is off (pass-through): enable it before prefetching",
                    req->name);
        return;
    }
    int r = volume_prefetch_start(v, offset, length);
    if (r == -EBUSY) {
        reply_error(rep, 409, "a prefetch is already running on %s", req->name);
        return;
    }
    if (r < 0) {
        reply_error(rep, errno_status(r), "cannot prefetch %s: %s", req->name, strerror(-r));
        return;
    }
    log_info(mgmt, "volume %s: prefetch of %llu bytes at %llu started", req->name,
             (unsigned long long)length, (unsigned long long)offset);
    reply_json(rep, 202,
               json_pack("{s:b, s:s, s:o, s:o}", "started", 1, "volume", req->name, "offset",
                         json_u64(offset), "length", json_u64(length)));
}

static void h_prefetch_status(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    _cleanup_volume_ struct volume *v = path_volume(m, req, rep);
    if (!v)
        return;
    struct prefetch_status st;
    memset(&st, 0, sizeof st);
    volume_prefetch_status(v, &st);
    reply_json(rep, 200, render_prefetch_json(&st));
}

/* ---- reload ---- */

/* The daemon re-reads its config file and reconciles volumes and
 * settings; the reply is its report (what was applied, what waits for
 * idle clients or a restart, what failed). A file with an error changes
 * nothing: 400 with its FILE:LINE line. */
static void h_reload(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    (void)req;
    if (!m->hooks.reload) {
        reply_error(rep, 409, "this server cannot reload its configuration");
        return;
    }
    char err[1024] = "";
    json_t *report = NULL;
    int r = m->hooks.reload(m->hooks.opaque, &report, err, sizeof err);
    if (r < 0) {
        unsigned status = r == -EINVAL ? 400 : r == -ENOENT ? 409 : errno_status(r);
        reply_error(rep, status, "%s", err[0] ? err : strerror(-r));
        return;
    }
    reply_json(rep, 200, report);
}

/* ---- routing ---- */

struct route {
    const char *pattern; /* "*" matches one non-empty path segment */
    enum mgmt_method method;
    handler_fn fn;
};

static const struct route routes[] = {
    {"/api/v1/stats", MGMT_GET, h_stats},
    {"/api/v1/stats/volumes/*", MGMT_GET, h_stats_volume},
    {"/api/v1/mrc", MGMT_GET, h_mrc},
    {"/api/v1/cache", MGMT_GET, h_cache},
    {"/api/v1/cache/resize", MGMT_POST, h_cache_resize},
    {"/api/v1/volumes", MGMT_GET, h_volumes},
    {"/api/v1/volumes", MGMT_POST, h_volume_add},
    {"/api/v1/volumes/*", MGMT_GET, h_volume_get},
    {"/api/v1/volumes/*", MGMT_DELETE, h_volume_remove},
    {"/api/v1/volumes/*/enable", MGMT_POST, h_enable},
    {"/api/v1/volumes/*/disable", MGMT_POST, h_disable},
    {"/api/v1/volumes/*/invalidate", MGMT_POST, h_invalidate},
    {"/api/v1/volumes/*/prefetch", MGMT_POST, h_prefetch_start},
    {"/api/v1/volumes/*/move", MGMT_POST, h_volume_move},
    {"/api/v1/volumes/*/prefetch", MGMT_GET, h_prefetch_status},
    {"/api/v1/reload", MGMT_POST, h_reload},
    {"/api/v1/cluster", MGMT_GET, api_cluster_get},
    {"/api/v1/cluster/memcached", MGMT_POST, api_cluster_mc_add},
    {"/api/v1/cluster/memcached/*", MGMT_DELETE, api_cluster_mc_remove},
    {"/metrics", MGMT_GET, h_metrics},
};

static bool route_match(const char *pattern, const char *path, char *name, size_t namelen)
{
    const char *p = pattern, *s = path;
    while (*p) {
        if (*p == '*') {
            size_t n = strcspn(s, "/");
            if (n == 0 || n >= namelen)
                return false;
            memcpy(name, s, n);
            name[n] = '\0';
            s += n;
            p++;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return false;
        }
    }
    return *s == '\0';
}

static void set_allow(struct mgmt_reply *rep, unsigned mask)
{
    static const struct {
        enum mgmt_method bit;
        const char *text;
    } names[] = {{MGMT_GET, "GET, HEAD"}, {MGMT_POST, "POST"}, {MGMT_DELETE, "DELETE"}};
    size_t off = 0;
    rep->allow[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (!(mask & names[i].bit))
            continue;
        int n = snprintf(rep->allow + off, sizeof rep->allow - off, "%s%s", off ? ", " : "",
                         names[i].text);
        if (n < 0 || (size_t)n >= sizeof rep->allow - off)
            break;
        off += (size_t)n;
    }
}

static bool is_static_path(const char *path)
{
    return !strcmp(path, "/") || !strcmp(path, "/dashboard") || !strncmp(path, "/dashboard/", 11);
}

void api_dispatch(struct mgmt *m, const struct mgmt_req *req_in, struct mgmt_reply *rep)
{
    /* Work on a copy: the path loses a trailing '/' and gains the captured
     * name. */
    struct mgmt_req req = *req_in;
    _cleanup_free_ char *path = strdup(req_in->path ? req_in->path : "");
    if (!path) {
        reply_json(rep, 500, NULL);
        return;
    }
    size_t len = strlen(path);
    if (len > 1 && path[len - 1] == '/' && strncmp(path, "/dashboard/", 11) != 0)
        path[len - 1] = '\0';
    req.path = path;

    if (is_static_path(path)) {
        if (req.method != MGMT_GET) {
            set_allow(rep, MGMT_GET);
            reply_error(rep, 405, "method not allowed (allowed: %s)", rep->allow);
            return;
        }
        static_serve(path, rep);
        return;
    }

    unsigned allowed = 0;
    for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
        char name[sizeof req.name];
        if (!route_match(routes[i].pattern, path, name, sizeof name))
            continue;
        if (routes[i].method == req.method) {
            memcpy(req.name, name, sizeof name);
            routes[i].fn(m, &req, rep);
            if (rep->status == 0) /* a handler bug must still answer */
                reply_error(rep, 500, "internal error: no reply");
            return;
        }
        allowed |= routes[i].method;
    }
    if (allowed) {
        set_allow(rep, allowed);
        reply_error(rep, 405, "method not allowed (allowed: %s)", rep->allow);
        return;
    }
    reply_error(rep, 404, "not found");
}
