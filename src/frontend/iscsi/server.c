/* The iSCSI front end's lifecycle and target names; see server.h. */
#include "frontend/iscsi/server.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "frontend/iscsi/chap.h"
#include "frontend/iscsi/conn.h"
#include "frontend/listener.h"
#include "frontend/scsi/xcopy.h"

/* ---- target names ---- */

/* ---- connections ---- */

static void serve(void *opaque, struct listener_conn *lc)
{
    iscsi_conn_serve(opaque, lc);
}

void iscsi_serve_connection(struct iscsi_server *s, int fd)
{
    listener_serve_fd(s->listener, fd);
}

/* ---- lifecycle ---- */

static void start_error(const struct frontend_config *cfg, const char *msg)
{
    if (cfg->err && cfg->errlen)
        snprintf(cfg->err, cfg->errlen, "%s", msg);
    else
        log_error(iscsi, "%s", msg);
}

static void server_free(struct iscsi_server *s)
{
    iscsi_chap_free(s->chap);
    allow_free(&s->allow);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->unpinned);
    free(s);
}

static int start_listener(struct iscsi_server *s, const struct frontend_config *cfg)
{
    char err[320] = "";
    struct listener_config lc = {
        .proto = "iscsi",
        .listen = s->opts.off ? NULL : s->opts.listen.v,
        .nlisten = s->opts.off ? 0 : s->opts.listen.n,
        .default_port = ISCSI_DEFAULT_PORT_STR,
        .max_connections = s->opts.max_connections,
        .allow = &s->allow,
        .serve = serve,
        .opaque = s,
        .err = err,
        .errlen = sizeof err,
    };
    int r = listener_start(&lc, &s->listener);
    if (r == -EADDRINUSE && s->opts.defaulted) {
        /* Nobody asked for iSCSI here, and another target may own the
         * port: say so and serve the rest. */
        log_warn(iscsi, "%s: iSCSI is off (give --iscsi ADDR:PORT, or --iscsi off)", err);
        lc.listen = NULL;
        lc.nlisten = 0;
        lc.err = cfg->err;
        lc.errlen = cfg->errlen;
        r = listener_start(&lc, &s->listener);
    } else if (r < 0 && err[0]) {
        start_error(cfg, err);
    }
    return r;
}

/* Which volumes an EXTENDED COPY may name besides its own LU's: every
 * volume of this node is a target that any initiator admitted here (the
 * address list and CHAP are the same for all targets) may log in to, so
 * all of them; but under --readonly only volumes the core itself serves
 * read-only, since a volume added through the API later is read-only only
 * at this front end's door, which a copy would walk around. */
static bool copy_readonly; /* set before serving; one iSCSI server a daemon */

static bool copy_access(const struct scsi_nexus *n, const struct volume *v)
{
    (void)n;
    return !copy_readonly || volume_readonly(v);
}

int iscsi_server_start(struct engine *e, const struct frontend_config *cfg,
                       struct iscsi_server **out)
{
    struct iscsi_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->unpinned, NULL);
    s->engine = e;
    if (cfg->opts) {
        s->opts = *(const struct iscsi_options *)cfg->opts;
    } else {
        iscsi_options_init(&s->opts);
        s->opts.off = true; /* tests and fuzzing: connections come by fd */
    }
    s->readonly = cfg->readonly;
    copy_readonly = cfg->readonly;
    scsi_copy_set_access(copy_access);
    s->login_timeout_ms = (int)MIN(s->opts.login_timeout_ms, (uint64_t)INT_MAX);
    s->nop_interval_ms = (int)MIN(s->opts.nop_interval_ms, (uint64_t)INT_MAX);
    s->nop_timeout_ms = s->opts.nop_timeout_ms;
    /* Without --iscsi-allow, the daemon's --allow applies here too. */
    const struct frontend_list *al = &s->opts.allow;
    bool own = al->n > 0 || !cfg->allow;
    if (!own)
        al = cfg->allow;
    const char *bad = NULL;
    int r = allow_parse(al->v, al->n, &s->allow, &bad);
    if (r < 0) {
        if (r == -EINVAL) {
            char msg[320];
            snprintf(msg, sizeof msg, "invalid %s '%s' (want " ALLOW_SYNTAX ")",
                     own ? "--iscsi-allow" : "--allow", bad);
            start_error(cfg, msg);
        }
        server_free(s);
        return r;
    }
    if (s->opts.chap) {
        char msg[320];
        r = iscsi_chap_load(s->opts.chap, &s->chap, msg, sizeof msg);
        if (r < 0) {
            start_error(cfg, msg);
            server_free(s);
            return r;
        }
    }
    r = start_listener(s, cfg); /* last: connections may come at once */
    if (r < 0) {
        server_free(s);
        return r;
    }
    *out = s;
    return 0;
}

void iscsi_server_stop(struct iscsi_server *s)
{
    if (!s)
        return;
    listener_stop(s->listener); /* every connection has ended */
    server_free(s);
}

/* ---- frontend ops ---- */

static int fe_start(struct engine *e, const struct frontend_config *cfg, void **state)
{
    struct iscsi_server *s;
    int r = iscsi_server_start(e, cfg, &s);
    if (r == 0)
        *state = s;
    return r;
}

static void fe_stop(void *state)
{
    iscsi_server_stop(state);
}

static unsigned fe_connections(void *state)
{
    return listener_connections(((struct iscsi_server *)state)->listener);
}

static int fe_files_check(const void *opts, char *err, size_t errlen, const char **about)
{
    const struct iscsi_options *o = opts;
    if (!o->chap)
        return 0;
    struct iscsi_chap *c = NULL;
    int r = iscsi_chap_load(o->chap, &c, err, errlen);
    iscsi_chap_free(c);
    if (r < 0) {
        *about = "iscsi-chap";
        return r;
    }
    return 0;
}

const struct frontend_ops frontend_iscsi_ops = {
    .name = "iscsi",
    .title = "iSCSI",
    .section = "iscsi",
    .options = iscsi_option_table,
    .opts_size = sizeof(struct iscsi_options),
    .opts_init = iscsi_options_init,
    .opts_check = iscsi_options_check,
    .files_check = fe_files_check,
    .start = fe_start,
    .stop = fe_stop,
    .connections = fe_connections,
};
