/* NBD front end: the per-connection handler behind the generic listener,
 * and the handshake's view of the engine's volumes. See server.h. */
#include "frontend/nbd/server.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "frontend/allow.h"
#include "frontend/listener.h"
#include "frontend/nbd/handshake.h"
#include "frontend/nbd/proto.h"
#include "frontend/nbd/transmit.h"
#include "frontend/tls.h"
#include "frontend/tls_creds.h"

struct nbd_server {
    struct engine *engine;
    struct nbd_options opts;
    bool readonly; /* export every volume read-only */
    int handshake_timeout_ms;
    struct nbd_transmit_ctx tctx; /* .stopping is set per connection */
    struct tls_creds *tls;        /* when opts.tls != NBD_TLS_OFF */
    struct allow_list allow;      /* --allow; empty: every client */
    struct listener *listener;
};

/* ---- exports: the handshake's view of the engine ---- */

static void fill_info(struct nbd_server *s, struct volume *v, struct nbd_export_info *info)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
                 NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN |
                 NBD_FLAG_SEND_FAST_ZERO;
    /* Every connection shares the one cache and writes go through before
     * they are acknowledged, so FLUSH/FUA are visible across connections:
     * CAN_MULTI_CONN holds. */
    if (volume_readonly(v) || s->readonly)
        f |= NBD_FLAG_READ_ONLY;
    struct vol_block_limits lim;
    volume_block_limits(v, &lim);
    info->size = volume_size(v);
    info->tflags = f;
    info->min_block = lim.min;
    info->pref_block = MAX(NBD_PREFERRED_BLOCK, lim.preferred);
    info->max_block = MIN(NBD_MAX_PAYLOAD, lim.max);
    info->description = NULL;
}

static int exp_get(void *opaque, const char *name, struct nbd_export_info *info, void **handle)
{
    struct nbd_server *s = opaque;
    struct volume *v = engine_get_volume(s->engine, name);
    if (!v)
        return -ENOENT;
    fill_info(s, v, info);
    if (handle)
        *handle = v;
    else
        volume_put(v);
    return 0;
}

static void exp_put(void *opaque, void *handle)
{
    (void)opaque;
    volume_put(handle);
}

struct list_ctx {
    int (*emit)(void *ctx, const char *name, const char *desc);
    void *ctx;
};

static int list_one(struct volume *v, void *opaque)
{
    struct list_ctx *l = opaque;
    /* Size and mode only: NBD_OPT_LIST answers any client that may
     * connect, before TLS where it is optional, and the back end's own
     * description names host paths and upstream addresses. */
    char desc[64], sz[32];
    snprintf(desc, sizeof desc, "shoal volume, %s, %s", format_size(volume_size(v), sz, sizeof sz),
             volume_readonly(v) ? "read-only" : "read-write");
    return l->emit(l->ctx, volume_name(v), desc);
}

static int exp_list(void *opaque, int (*emit)(void *ctx, const char *name, const char *desc),
                    void *ctx)
{
    struct nbd_server *s = opaque;
    struct list_ctx l = {emit, ctx};
    return engine_for_each_volume(s->engine, list_one, &l);
}

/* ---- one connection ---- */

/* The handshake's STARTTLS upgrade (opaque: the server's credentials). */
static int starttls(struct conn_io *io, void *opaque)
{
    return tls_server_start(io, opaque);
}

/* The listener's handler: handshake, then transmission. */
static void serve(void *opaque, struct listener_conn *lc)
{
    struct nbd_server *s = opaque;
    struct conn_io *io = &lc->io;
    /* The whole handshake must finish in time, not just each wait: a client
     * trickling a byte at a time must not hold a slot forever. */
    io->timeout_ms = s->handshake_timeout_ms;
    io->deadline_ns = now_ns() + (uint64_t)s->handshake_timeout_ms * 1000000u;

    struct nbd_exports exports = {
        .opaque = s,
        .get = exp_get,
        .put = exp_put,
        .list = exp_list,
    };
    struct nbd_handshake_cfg hcfg = {
        .tls = s->tls ? s->opts.tls : NBD_TLS_OFF,
        .starttls = s->tls ? starttls : NULL,
        .starttls_opaque = s->tls,
        .shutting_down = lc->stopping,
    };
    struct nbd_handshake_result *hs = calloc(1, sizeof *hs);
    int r = hs ? nbd_handshake(io, &exports, &hcfg, hs) : -ENOMEM;
    if (r == 0) {
        struct volume *v = hs->handle;
        log_debug(nbd, "client attached to '%s' (structured=%d, base:allocation=%d)",
                  volume_name(v), hs->structured, hs->base_allocation);
        io->timeout_ms = 0; /* idle clients may stay connected */
        io->deadline_ns = 0;
        struct nbd_transmit_ctx tctx = s->tctx;
        tctx.stopping = lc->stopping;
        r = nbd_transmit(&tctx, io, v, hs); /* gives v back */
        if (r < 0 && r != -ECONNRESET && r != -EPIPE)
            log_debug(nbd, "connection to '%s' ended: %s", hs->name, strerror(-r));
    } else if (r != -ECONNABORTED) {
        log_debug(nbd, "handshake failed: %s", strerror(-r));
    }
    free(hs);
}

void nbd_serve_connection(struct nbd_server *s, int fd)
{
    listener_serve_fd(s->listener, fd);
}

/* ---- lifecycle ---- */

/* Why starting failed: into the caller's buffer when it gave one, else the log. */
__attribute__((format(printf, 2, 3))) static void start_error(const struct frontend_config *cfg,
                                                              const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cfg->err && cfg->errlen)
        snprintf(cfg->err, cfg->errlen, "%s", msg);
    else
        log_error(nbd, "%s", msg);
}

int nbd_server_start(struct engine *e, const struct frontend_config *cfg, struct nbd_server **out)
{
    struct nbd_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->engine = e;
    if (cfg->opts)
        s->opts = *(const struct nbd_options *)cfg->opts;
    else
        nbd_options_init(&s->opts);
    s->readonly = cfg->readonly;
    uint64_t hto = s->opts.handshake_timeout_ms;
    s->handshake_timeout_ms =
        hto == 0 ? NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS : (int)MIN(hto, (uint64_t)INT_MAX);
    uint64_t iot = s->opts.io_timeout_ms;
    s->tctx.io_timeout_ms = iot == 0 ? NBD_DEFAULT_IO_TIMEOUT_MS : (int)MIN(iot, (uint64_t)INT_MAX);

    const char *bad = NULL;
    int r = allow_parse(s->opts.allow.v, s->opts.allow.n, &s->allow, &bad);
    if (r < 0) {
        if (r == -EINVAL)
            start_error(cfg, "invalid --allow '%s' (want " ALLOW_SYNTAX ")", bad);
        free(s);
        return r;
    }
    if (s->opts.tls != NBD_TLS_OFF) {
        struct tls_creds_config tc = {
            .certificates_dir = s->opts.tls_certificates,
            .psk_file = s->opts.tls_psk,
            .verify_peer = s->opts.tls_verify_peer,
        };
        r = tls_creds_load(&tc, &s->tls);
        if (r < 0) {
            allow_free(&s->allow);
            free(s);
            return r;
        }
        /* Said here, not by tls_creds_load: a reload loads them too, only
         * to check them. */
        log_info(tls, "TLS enabled:%s%s%s", tc.certificates_dir ? " x509" : "",
                 tc.certificates_dir && tc.verify_peer ? " (clients verified)" : "",
                 tc.psk_file ? " psk" : "");
    }
    /* Last: connections may be served before it returns. */
    struct listener_config lc = {
        .proto = "nbd",
        .listen = s->opts.listen.v,
        .nlisten = s->opts.listen.n,
        .default_port = NBD_DEFAULT_PORT_STR,
        .unix_perms = &s->opts.unix_perms,
        .max_connections = s->opts.max_connections,
        .allow = &s->allow,
        .serve = serve,
        .opaque = s,
        .err = cfg->err,
        .errlen = cfg->errlen,
    };
    r = listener_start(&lc, &s->listener);
    if (r < 0) {
        tls_creds_free(s->tls);
        allow_free(&s->allow);
        free(s);
        return r;
    }
    *out = s;
    return 0;
}

void nbd_server_stop(struct nbd_server *s)
{
    if (!s)
        return;
    /* Every connection has ended when this returns: nothing uses the
     * credentials, the access list or the worker pool any more. */
    listener_stop(s->listener);
    tls_creds_free(s->tls);
    allow_free(&s->allow);
    free(s);
}

unsigned nbd_server_connections(struct nbd_server *s)
{
    return listener_connections(s->listener);
}

/* ---- frontend ops ---- */

static int fe_start(struct engine *e, const struct frontend_config *cfg, void **state)
{
    struct nbd_server *s;
    int r = nbd_server_start(e, cfg, &s);
    if (r == 0)
        *state = s;
    return r;
}

static void fe_stop(void *state)
{
    nbd_server_stop(state);
}

static unsigned fe_connections(void *state)
{
    return nbd_server_connections(state);
}

static int fe_files_check(const void *opts, char *err, size_t errlen, const char **about)
{
    const struct nbd_options *o = opts;
    if (o->tls == NBD_TLS_OFF)
        return 0;
    /* One at a time, so the error names the option whose file is bad. */
    const struct {
        const char *name, *path;
        struct tls_creds_config tc;
    } parts[] = {
        {"tls-certificates",
         o->tls_certificates,
         {.certificates_dir = o->tls_certificates, .verify_peer = o->tls_verify_peer}},
        {"tls-psk", o->tls_psk, {.psk_file = o->tls_psk}},
    };
    for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
        if (!parts[i].path)
            continue;
        struct tls_creds *c = NULL;
        int r = tls_creds_load(&parts[i].tc, &c);
        tls_creds_free(c);
        if (r < 0) {
            /* tls_creds_load logged the file and what is wrong in it. */
            snprintf(err, errlen, "%s: cannot load: %s (the log above says why)", parts[i].path,
                     strerror(-r));
            *about = parts[i].name;
            return r;
        }
    }
    return 0;
}

const struct frontend_ops frontend_nbd_ops = {
    .name = "nbd",
    .title = "NBD",
    .section = "nbd",
    .options = nbd_option_table,
    .opts_size = sizeof(struct nbd_options),
    .opts_init = nbd_options_init,
    .opts_check = nbd_options_check,
    .files_check = fe_files_check,
    .start = fe_start,
    .stop = fe_stop,
    .connections = fe_connections,
};
