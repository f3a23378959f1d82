/* Reload of the config file; see reload.h. */
#include "daemon/reload.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cluster/membership.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "mgmt/mgmt.h"
#include "mgmt/token.h"

/* A config-file volume as last applied (strings owned). */
struct applied {
    char *name, *spec;
    struct volume_config cfg; /* name and backend.spec point at the above */
};

struct reloader {
    pthread_mutex_t lock;
    int argc;
    char **argv;
    const struct daemon_options *running;
    struct daemon_options *baseline; /* the start's settings, as parsed */
    struct engine *engine;
    struct state *state;
    uint64_t cache_bytes; /* as last applied */
    struct applied *vols;
    size_t nvols;
};

static void applied_clear(struct applied *a)
{
    free(a->name);
    free(a->spec);
    memset(a, 0, sizeof *a);
}

/* A copy of cfg with its spec resolved already (spec is taken over). */
static int applied_set(struct applied *a, const struct volume_config *cfg, char *spec)
{
    char *name = strdup(cfg->name);
    if (!name) {
        free(spec);
        return -ENOMEM;
    }
    applied_clear(a);
    a->name = name;
    a->spec = spec;
    a->cfg = *cfg;
    a->cfg.name = a->name;
    a->cfg.backend.spec = a->spec;
    return 0;
}

static struct applied *applied_find(struct reloader *r, const char *name)
{
    for (size_t i = 0; i < r->nvols; i++)
        if (!strcmp(r->vols[i].name, name))
            return &r->vols[i];
    return NULL;
}

static struct applied *applied_add(struct reloader *r)
{
    struct applied *n = realloc(r->vols, (r->nvols + 1) * sizeof *n);
    if (!n)
        return NULL;
    r->vols = n;
    memset(&n[r->nvols], 0, sizeof n[0]);
    return &n[r->nvols++];
}

static void applied_drop(struct reloader *r, struct applied *a)
{
    applied_clear(a);
    size_t i = (size_t)(a - r->vols);
    memmove(&r->vols[i], &r->vols[i + 1], (r->nvols - i - 1) * sizeof r->vols[0]);
    r->nvols--;
}

void reloader_free(struct reloader *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nvols; i++)
        applied_clear(&r->vols[i]);
    free(r->vols);
    if (r->baseline) {
        options_free(r->baseline);
        free(r->baseline);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int reloader_new(int argc, char **argv, const struct daemon_options *running, struct engine *engine,
                 struct state *state, struct reloader **out, char *err, size_t errlen)
{
    *out = NULL;
    struct reloader *r = calloc(1, sizeof *r);
    if (!r || !(r->baseline = calloc(1, sizeof *r->baseline))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&r->lock, NULL);
    r->argc = argc;
    r->argv = argv;
    r->running = running;
    r->engine = engine;
    r->state = state;
    r->cache_bytes = running->cache_bytes;
    /* The settings as written (main makes paths absolute in its copy), so
     * a reload compares like with like; from the text the daemon started
     * with, not a second read: a pipe would read empty (every volume
     * would look new to the first reload, or gone), and a file edited
     * since the start would not be what runs. */
    if (options_reparse_same(argc, argv, running, r->baseline, err, errlen) < 0) {
        reloader_free(r);
        return -EINVAL;
    }
    for (unsigned i = 0; i < r->baseline->nfile_volumes; i++) {
        const struct volume_config *c = &r->baseline->volumes[i];
        if (state_is_removed(state, c->name))
            continue; /* not started: see main */
        char *spec = NULL;
        struct applied *a = applied_add(r);
        if (!a || options_resolve_spec(r->baseline, c->backend.spec, &spec) < 0 ||
            applied_set(a, c, spec) < 0) {
            snprintf(err, errlen, "volume %s: cannot keep its settings for reloads", c->name);
            reloader_free(r);
            return -ENOMEM;
        }
    }
    *out = r;
    return 0;
}

/* ---- the report ---- */

struct report {
    json_t *obj, *applied, *pending, *restart, *errors;
};

static void say(json_t *list, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(json_t *list, enum log_level lvl, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log_enabled(main, (int)lvl))
        log_msg(LOG_C_main, lvl, "reload: %s", line);
    json_array_append_new(list, json_string(line));
}

/* ---- settings ---- */

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static bool list_eq(const char *const *a, unsigned na, const char *const *b, unsigned nb)
{
    if (na != nb)
        return false;
    for (unsigned i = 0; i < na; i++)
        if (!str_eq(a[i], b[i]))
            return false;
    return true;
}

/* Front end option opt of fe, unchanged between a and b? */
static bool fe_option_eq(const struct daemon_options *a, const struct daemon_options *b,
                         unsigned fe, const struct frontend_option *opt)
{
    const char *pa = (const char *)a->frontend_opts[fe] + opt->offset;
    const char *pb = (const char *)b->frontend_opts[fe] + opt->offset;
    switch (opt->kind) {
    case FE_OPT_STRING:
    case FE_OPT_PATH:
        return str_eq(*(const char *const *)(const void *)pa,
                      *(const char *const *)(const void *)pb);
    case FE_OPT_FLAG:
        return *(const bool *)pa == *(const bool *)pb;
    case FE_OPT_UINT:
        return *(const unsigned *)(const void *)pa == *(const unsigned *)(const void *)pb;
    case FE_OPT_DURATION:
        return *(const uint64_t *)(const void *)pa == *(const uint64_t *)(const void *)pb;
    case FE_OPT_ENUM:
        return *(const int *)(const void *)pa == *(const int *)(const void *)pb;
    case FE_OPT_LIST:
    case FE_OPT_LISTEN: {
        const struct frontend_list *la = (const void *)pa, *lb = (const void *)pb;
        return list_eq(la->v, la->n, lb->v, lb->n);
    }
    }
    return false;
}

/* Settings only a restart applies: each one that differs is reported. */
static void restart_settings(const struct daemon_options *was, const struct daemon_options *now,
                             struct report *rep)
{
    const struct {
        const char *name;
        bool same;
    } checks[] = {
        {"http", str_eq(was->http, now->http)},
        {"http-token-file", str_eq(was->http_token_file, now->http_token_file)},
        {"http-tls-certificates", str_eq(was->http_tls_certificates, now->http_tls_certificates)},
        {"backing-dir",
         list_eq(was->backing_dirs, was->nbacking_dirs, now->backing_dirs, now->nbacking_dirs)},
        {"io-memory", was->io_memory == now->io_memory},
        {"policy", str_eq(was->policy, now->policy)},
        {"threads", was->threads == now->threads},
        {"busy-poll", was->busy_poll_us == now->busy_poll_us},
        {"pid-file", str_eq(was->pid_file, now->pid_file)},
        {"user", str_eq(was->user, now->user)},
        {"group", str_eq(was->group, now->group)},
        {"readonly", was->readonly == now->readonly},
        {"direct", was->direct == now->direct},
        {"readahead", was->readahead == now->readahead},
        {"state-dir", str_eq(was->state_dir, now->state_dir)},
        {"memcached", str_eq(was->memcached, now->memcached)},
        {"memcached-timeout", was->memcached_timeout_ms == now->memcached_timeout_ms},
        {"memcached-put-queue", was->memcached_put_queue_bytes == now->memcached_put_queue_bytes},
        {"etcd", str_eq(was->etcd, now->etcd)},
        {"node-name", str_eq(was->node_name, now->node_name)},
        {"etcd-lease", was->etcd_lease_s == now->etcd_lease_s},
        {"etcd-cacert", str_eq(was->etcd_tls.cacert, now->etcd_tls.cacert)},
        {"etcd-cert", str_eq(was->etcd_tls.cert, now->etcd_tls.cert)},
        {"etcd-key", str_eq(was->etcd_tls.key, now->etcd_tls.key)},
    };
    for (size_t i = 0; i < ARRAY_SIZE(checks); i++)
        if (!checks[i].same)
            say(rep->restart, LOG_LVL_WARN, "%s changed: applied at the next restart",
                checks[i].name);
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++)
        for (const struct frontend_option *opt = daemon_frontends[fe]->options; opt->name; opt++)
            if (!fe_option_eq(was, now, fe, opt))
                say(rep->restart, LOG_LVL_WARN, "%s changed: applied at the next restart",
                    opt->name);
}

/* ---- files only a start opens ---- */

/* A changed setting's file is bad: the reload is refused, with the line of
 * the file that set it. Exception: shoald runs as --user and this process
 * may not read what the start reads as root (root_reads): said, not
 * refused. true when refused (err set). */
static bool file_refused(const struct reloader *r, struct opt_at at, const char *name, int e,
                         bool root_reads, const char *why, struct report *rep, char *err,
                         size_t errlen)
{
    if (root_reads && e == -EACCES && r->running->uid != (uid_t)-1) {
        say(rep->restart, LOG_LVL_WARN,
            "%s: %s: not checked (shoald runs as user %s; the next start reads it as root)", name,
            why, r->running->user);
        return false;
    }
    if (at.file)
        snprintf(err, errlen, "%s:%u: %s: %s", at.file, at.line, name, why);
    else
        snprintf(err, errlen, "%s: %s", name, why);
    return true;
}

/* What the start's open(O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW) of the
 * pid file would refuse, found without creating or truncating it. */
static int pid_file_check(const char *path, char *why, size_t len)
{
    struct stat st;
    int e = 0;
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode)) {
            snprintf(why, len, "cannot write pid file '%s': it is a symbolic link", path);
            return -ELOOP;
        }
        if (access(path, W_OK) < 0)
            e = errno;
    } else if (errno != ENOENT) {
        e = errno;
    } else {
        char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (!slash)
            e = ENOMEM; /* absolute: there is a slash */
        else {
            slash[slash == dir] = '\0';
            if (access(dir, W_OK | X_OK) < 0)
                e = errno;
        }
        free(dir);
    }
    if (e)
        snprintf(why, len, "cannot write pid file '%s': %s", path, strerror(e));
    return -e;
}

/* A front end's options with every path made absolute, checked with its
 * files_check. */
static int frontend_files_check(const struct daemon_options *now, unsigned fe, char *why,
                                size_t len, const char **about)
{
    const struct frontend_ops *ops = daemon_frontends[fe];
    void *copy = malloc(ops->opts_size);
    char *made[FE_MAX_OPTS];
    unsigned nmade = 0;
    int e = copy ? 0 : -ENOMEM;
    if (copy)
        memcpy(copy, now->frontend_opts[fe], ops->opts_size);
    for (const struct frontend_option *opt = ops->options; e == 0 && opt->name; opt++) {
        const char **field = (const char **)(void *)((char *)copy + opt->offset);
        if (opt->kind != FE_OPT_PATH || !*field || nmade == FE_MAX_OPTS)
            continue;
        if (!(made[nmade] = options_path(now, *field)))
            e = -ENOMEM;
        else
            *field = made[nmade++];
    }
    if (e == 0)
        e = ops->files_check(copy, why, len, about);
    else
        snprintf(why, len, "out of memory");
    for (unsigned i = 0; i < nmade; i++)
        free(made[i]);
    free(copy);
    return e;
}

/* Each changed setting naming a file only a start opens (certificates,
 * secrets, the pid file, the state dir) checked the way the start would,
 * applying nothing: a bad one refuses the whole reload, so that "applied
 * at the next restart" is not a restart that fails. 0 or -EINVAL (err). */
static int check_start_files(const struct reloader *r, const struct daemon_options *now,
                             struct report *rep, char *err, size_t errlen)
{
    const struct daemon_options *was = r->baseline;
    bool api = strcmp(now->http, "off") != 0;
    char why[768] = "";
    const struct {
        const char *name, *now;
        bool changed, used;
        struct opt_at at;
        enum { HTTP_TLS, TOKEN, PID_FILE, STATE_DIR, ETCD_CACERT, ETCD_CERT, ETCD_KEY } kind;
    } files[] = {
        {"http-tls-certificates", now->http_tls_certificates,
         !str_eq(was->http_tls_certificates, now->http_tls_certificates), api, now->http_tls_at,
         HTTP_TLS},
        {"http-token-file", now->http_token_file,
         !str_eq(was->http_token_file, now->http_token_file), api, now->http_token_at, TOKEN},
        {"pid-file", now->pid_file, !str_eq(was->pid_file, now->pid_file), true, now->pid_file_at,
         PID_FILE},
        {"state-dir", now->state_dir, !str_eq(was->state_dir, now->state_dir),
         now->state_dir && strcmp(now->state_dir, "off") != 0, now->state_dir_at, STATE_DIR},
        {"etcd-cacert", now->etcd_tls.cacert, !str_eq(was->etcd_tls.cacert, now->etcd_tls.cacert),
         true, now->etcd_file_at[0], ETCD_CACERT},
        {"etcd-cert", now->etcd_tls.cert, !str_eq(was->etcd_tls.cert, now->etcd_tls.cert), true,
         now->etcd_file_at[1], ETCD_CERT},
        {"etcd-key", now->etcd_tls.key, !str_eq(was->etcd_tls.key, now->etcd_tls.key), true,
         now->etcd_file_at[2], ETCD_KEY},
    };
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        if (!files[i].now || !files[i].changed || !files[i].used)
            continue;
        char *path = options_path(now, files[i].now);
        if (!path) {
            snprintf(err, errlen, "out of memory");
            return -EINVAL;
        }
        int e = 0;
        char *tok = NULL;
        switch (files[i].kind) {
        case HTTP_TLS:
            e = mgmt_tls_check(path, why, sizeof why);
            break;
        case TOKEN:
            /* A missing one is created by the start. */
            e = token_read(path, TOKEN_STRICT, &tok, why, sizeof why);
            e = e == -ENOENT ? 0 : e;
            if (tok)
                explicit_bzero(tok, strlen(tok));
            free(tok);
            break;
        case PID_FILE:
            e = pid_file_check(path, why, sizeof why);
            break;
        case STATE_DIR:
            e = state_check(path, why, sizeof why);
            break;
        case ETCD_CACERT:
        case ETCD_CERT:
        case ETCD_KEY: {
            /* Read as whoever shoald runs as, at start and at each
             * connection: what this process cannot read is refused. */
            struct etcd_tls one = {0};
            const char *opt, *bad;
            *(files[i].kind == ETCD_CACERT ? &one.cacert
              : files[i].kind == ETCD_CERT ? &one.cert
                                           : &one.key) = path;
            e = etcd_tls_readable(&one, &opt, &bad);
            if (e < 0)
                snprintf(why, sizeof why, "%s: not readable (%s)", bad, strerror(-e));
        }
        }
        free(path);
        if (e < 0 && file_refused(r, files[i].at, files[i].name, e, files[i].kind < ETCD_CACERT,
                                  why, rep, err, errlen))
            return -EINVAL;
    }
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        const struct frontend_ops *ops = daemon_frontends[fe];
        bool changed = false;
        for (const struct frontend_option *opt = ops->options; opt->name && !changed; opt++)
            changed = !fe_option_eq(was, now, fe, opt);
        if (!changed || !ops->files_check)
            continue;
        const char *about = NULL;
        int e = frontend_files_check(now, fe, why, sizeof why, &about);
        if (e < 0 && file_refused(r, options_fe_where(now, fe, about), about ? about : ops->name, e,
                                  true, why, rep, err, errlen))
            return -EINVAL;
    }
    return 0;
}

static void live_settings(struct reloader *r, const struct daemon_options *now, struct report *rep)
{
    if (now->cache_bytes != r->cache_bytes) {
        char was[32], want[32];
        format_size(r->cache_bytes, was, sizeof was);
        format_size(now->cache_bytes, want, sizeof want);
        int e = engine_resize_cache(r->engine, now->cache_bytes);
        if (e == -EINVAL) {
            /* The store reserves its address space at start: growing past
             * that takes a restart. */
            say(rep->restart, LOG_LVL_WARN,
                "cache-size %s -> %s: more than this run can grow to: applied at the next restart",
                was, want);
        } else if (e < 0) {
            say(rep->errors, LOG_LVL_ERROR, "cache-size %s -> %s: %s", was, want, strerror(-e));
        } else {
            say(rep->applied, LOG_LVL_INFO, "cache-size %s -> %s", was, want);
            r->cache_bytes = now->cache_bytes;
        }
    }
    /* Cheap and idempotent: set from the new file each time (the connect
     * timeout is read at each back end's next connect). */
    options_apply_logging(now);
    backend_set_connect_timeout((uint32_t)now->connect_timeout_ms);
}

/* ---- volumes ---- */

/* What a live change cannot apply: the back end is opened with these. */
static bool same_export(const struct volume_config *a, const struct volume_config *b)
{
    return str_eq(a->backend.spec, b->backend.spec) && a->backend.format == b->backend.format &&
           a->backend.direct == b->backend.direct && a->backend.conns == b->backend.conns &&
           a->readonly == b->readonly && a->readahead == b->readahead;
}

static const char *open_error(int e)
{
    const char *why = backend_open_error();
    return why[0] ? why : strerror(-e);
}

static void volume_gone(struct reloader *r, struct applied *a, struct report *rep)
{
    struct volume *v = engine_get_volume(r->engine, a->name);
    if (!v || strcmp(volume_name(v), a->name) != 0) {
        /* Removed through the API meanwhile: nothing left to do. */
        if (v)
            volume_put(v);
        applied_drop(r, a);
        return;
    }
    unsigned clients = volume_connections(v);
    volume_put(v);
    int e = clients ? -EBUSY : engine_remove_volume(r->engine, a->name, false);
    if (e == -EBUSY) {
        say(rep->pending, LOG_LVL_WARN,
            "volume %s: no longer in the file, but %u client(s) are connected: kept (reload once "
            "they are gone, or shoalctl volume remove --force)",
            a->name, clients ? clients : 1);
        return;
    }
    if (e < 0 && e != -ENOENT) {
        say(rep->errors, LOG_LVL_ERROR, "volume %s: cannot remove: %s", a->name, strerror(-e));
        return;
    }
    cluster_release(a->name);
    say(rep->applied, LOG_LVL_INFO, "volume %s removed", a->name);
    applied_drop(r, a);
}

static void volume_new(struct reloader *r, const struct daemon_options *now, unsigned i, char *spec,
                       struct report *rep)
{
    struct volume_config c = now->volumes[i];
    const char *where = now->volume_file[i];
    unsigned line = now->volume_line[i];
    if (state_is_removed(r->state, c.name)) {
        say(rep->pending, LOG_LVL_INFO,
            "volume %s (%s:%u): removed through the API, so not added (shoalctl volume add "
            "brings it back)",
            c.name, where, line);
        free(spec);
        return;
    }
    struct volume *v = engine_get_volume(r->engine, c.name);
    bool taken = v && !strcmp(volume_name(v), c.name);
    if (v)
        volume_put(v);
    if (taken) {
        say(rep->errors, LOG_LVL_ERROR,
            "volume %s (%s:%u): a volume of that name was added through the API: left as it is",
            c.name, where, line);
        free(spec);
        return;
    }
    c.backend.spec = spec;
    c.backend.backing_dirs = r->running->nbacking_dirs ? r->running->backing_dirs : NULL;
    char owner[512];
    if (cluster_claim(c.name, c.readonly, owner, sizeof owner) < 0) {
        say(rep->errors, LOG_LVL_ERROR, "%s (%s:%u)", owner, where, line);
        free(spec);
        return;
    }
    int e = engine_add_volume(r->engine, &c);
    if (e < 0) {
        cluster_release(c.name);
        say(rep->errors, LOG_LVL_ERROR, "volume %s (%s:%u): cannot open '%s': %s", c.name, where,
            line, spec, open_error(e));
        free(spec);
        return;
    }
    struct applied *a = applied_add(r);
    if (!a || applied_set(a, &c, spec) < 0) {
        if (a)
            r->nvols--;
        else
            free(spec);
        say(rep->errors, LOG_LVL_ERROR, "volume %s: added, but out of memory to track it", c.name);
        return;
    }
    say(rep->applied, LOG_LVL_INFO, "volume %s added (%s)", c.name, a->spec);
}

/* A volume in both files: enable/disable live; a new export if idle. */
static void volume_changed(struct reloader *r, struct applied *a, const struct daemon_options *now,
                           unsigned i, char *spec, struct report *rep)
{
    struct volume_config c = now->volumes[i];
    c.backend.spec = spec;
    c.backend.backing_dirs = r->running->nbacking_dirs ? r->running->backing_dirs : NULL;
    struct volume *v = engine_get_volume(r->engine, a->name);
    if (!v || strcmp(volume_name(v), a->name) != 0) {
        /* Removed through the API since: the state file says so. */
        if (v)
            volume_put(v);
        applied_drop(r, a);
        free(spec);
        return;
    }
    if (!same_export(&a->cfg, &c)) {
        unsigned clients = volume_connections(v);
        volume_put(v);
        if (clients) {
            say(rep->pending, LOG_LVL_WARN,
                "volume %s: its backing or export settings changed, but %u client(s) are "
                "connected: kept as it was (reload once they are gone)",
                a->name, clients);
            free(spec);
            return;
        }
        /* Made read-write: take the ownership first (a no-op if held). */
        char owner[512];
        if (cluster_claim(c.name, c.readonly, owner, sizeof owner) < 0) {
            say(rep->errors, LOG_LVL_ERROR, "%s (%s:%u): kept as it was", owner,
                now->volume_file[i], now->volume_line[i]);
            free(spec);
            return;
        }
        int e = engine_remove_volume(r->engine, a->name, false);
        if (e == 0)
            e = engine_add_volume(r->engine, &c);
        if (e == 0 && c.readonly)
            cluster_release(c.name); /* read-only now: any node may serve it */
        if (e < 0) {
            const char *why = open_error(e);
            /* Put the old one back: an export that worked beats none. */
            int back = engine_add_volume(r->engine, &a->cfg);
            say(rep->errors, LOG_LVL_ERROR, "volume %s (%s:%u): cannot open '%s': %s%s", a->name,
                now->volume_file[i], now->volume_line[i], spec, why,
                back == 0 ? " (the previous one is served again)" : "");
            if (back < 0)
                applied_drop(r, a);
            free(spec);
            return;
        }
        state_forget(r->state, a->name, NULL, 0);
        say(rep->applied, LOG_LVL_INFO, "volume %s exported again (%s)", a->name, spec);
        applied_set(a, &c, spec);
        return;
    }
    if (c.disabled != a->cfg.disabled) {
        int e = volume_set_enabled(v, !c.disabled);
        if (e < 0) {
            say(rep->errors, LOG_LVL_ERROR, "volume %s: cannot %s: %s", a->name,
                c.disabled ? "disable" : "enable", strerror(-e));
        } else {
            /* The file was edited: it now decides, not the API's choice. */
            char err[256] = "";
            if (state_forget(r->state, a->name, err, sizeof err) < 0)
                say(rep->errors, LOG_LVL_ERROR, "%s", err);
            say(rep->applied, LOG_LVL_INFO, "volume %s: acceleration %s", a->name,
                c.disabled ? "off" : "on");
            a->cfg.disabled = c.disabled;
        }
    }
    volume_put(v);
    free(spec);
}

/* Every [volume] spec of the new file resolved before anything changes: a
 * missing file is the file's error (FILE:LINE), as at start. */
static int resolve_all(const struct daemon_options *now, char **specs, char *err, size_t errlen)
{
    for (unsigned i = 0; i < now->nfile_volumes; i++) {
        int e = options_resolve_spec(now, now->volumes[i].backend.spec, &specs[i]);
        if (e < 0) {
            snprintf(err, errlen, "%s:%u: volume %s: cannot open '%s': %s", now->volume_file[i],
                     now->volume_line[i], now->volumes[i].name, now->volumes[i].backend.spec,
                     strerror(-e));
            return -EINVAL;
        }
    }
    return 0;
}

static void reconcile_volumes(struct reloader *r, const struct daemon_options *now, char **specs,
                              struct report *rep)
{
    for (size_t i = r->nvols; i-- > 0;) {
        bool kept = false;
        for (unsigned j = 0; j < now->nfile_volumes && !kept; j++)
            kept = !strcmp(now->volumes[j].name, r->vols[i].name);
        if (!kept)
            volume_gone(r, &r->vols[i], rep);
    }
    for (unsigned i = 0; i < now->nfile_volumes; i++) {
        struct applied *a = applied_find(r, now->volumes[i].name);
        char *spec = specs[i];
        specs[i] = NULL;
        if (a)
            volume_changed(r, a, now, i, spec, rep);
        else
            volume_new(r, now, i, spec, rep);
    }
}

int reloader_run(struct reloader *r, json_t **report, char *err, size_t errlen)
{
    *report = NULL;
    LOCK_GUARD(&r->lock);
    if (r->running->nconfig_files == 0) {
        snprintf(err, errlen, "shoald was started without a config file (-c): nothing to reload");
        return -ENOENT;
    }
    struct daemon_options *now = calloc(1, sizeof *now);
    char **specs = calloc(MAX_VOLUMES, sizeof *specs);
    struct report rep = {
        .obj = json_object(),
        .applied = json_array(),
        .pending = json_array(),
        .restart = json_array(),
        .errors = json_array(),
    };
    json_t *files = json_array();
    int ret = 0;
    if (!now || !specs || !rep.obj || !rep.applied || !rep.pending || !rep.restart || !rep.errors ||
        !files) {
        snprintf(err, errlen, "out of memory");
        ret = -ENOMEM;
    } else if (options_reparse(r->argc, r->argv, r->running, now, err, errlen) < 0) {
        ret = -EINVAL;
    } else {
        ret = resolve_all(now, specs, err, errlen);
        if (ret == 0)
            ret = check_start_files(r, now, &rep, err, errlen);
    }
    if (ret == 0) {
        for (unsigned i = 0; i < now->nconfig_files; i++)
            json_array_append_new(files, json_string(now->config_files[i]));
        log_info(main, "reload: reading %s%s", now->config_files[0],
                 now->nconfig_files > 1 ? " and more" : "");
        restart_settings(r->baseline, now, &rep);
        live_settings(r, now, &rep);
        reconcile_volumes(r, now, specs, &rep);
        json_object_set_new(rep.obj, "config", files);
        json_object_set_new(rep.obj, "applied", rep.applied);
        json_object_set_new(rep.obj, "pending", rep.pending);
        json_object_set_new(rep.obj, "restart_needed", rep.restart);
        json_object_set_new(rep.obj, "errors", rep.errors);
        log_info(main, "reload: done (%zu applied, %zu pending, %zu need a restart, %zu errors)",
                 json_array_size(rep.applied), json_array_size(rep.pending),
                 json_array_size(rep.restart), json_array_size(rep.errors));
        *report = rep.obj;
    } else {
        log_error(main, "reload refused, nothing changed: %s", err);
        json_decref(files);
        json_decref(rep.obj);
        json_decref(rep.applied);
        json_decref(rep.pending);
        json_decref(rep.restart);
        json_decref(rep.errors);
    }
    for (unsigned i = 0; specs && i < MAX_VOLUMES; i++)
        free(specs[i]);
    free(specs);
    if (now) {
        options_free(now);
        free(now);
    }
    return ret;
}
