/* Management server: HTTP/JSON API, Prometheus /metrics and the dashboard,
 * served by libmicrohttpd from its own thread(s). It reads stats through the
 * engine's snapshot functions and changes things only through the engine's
 * control functions, so it holds no lock of the data path.
 *
 * Safety (docs/security.md): a token is always configured. Every request
 * other than GET/HEAD needs "Authorization: Bearer TOKEN", from any peer,
 * loopback included; GETs are open but leave out volumes' backing paths
 * unless they carry the token too. Volumes added through the API may be
 * confined to backing directories. Listens on loopback by default; served
 * elsewhere without TLS it warns that the token travels in clear. */
#ifndef SHOAL_MGMT_MGMT_H
#define SHOAL_MGMT_MGMT_H

#include <stdbool.h>
#include <stddef.h>

struct engine;
struct mgmt;
struct json_t;
struct volume_config;
struct tier;

/* What changed through the API, for the daemon to persist (state file). */
enum mgmt_change_kind {
    MGMT_VOLUME_ADDED,
    MGMT_VOLUME_REMOVED,
    MGMT_VOLUME_ENABLED,
    MGMT_VOLUME_DISABLED,
};

/* The daemon's side of the API; any may be NULL. Called from the server's
 * threads, concurrently: each serialises its own work. */
struct mgmt_hooks {
    void *opaque;
    /* After a change succeeded in the engine (cfg: ADDED only, else NULL).
     * 0, or -errno with one line in err: the change stays live and the
     * reply says it will not survive a restart. */
    int (*changed)(void *opaque, enum mgmt_change_kind kind, const char *name,
                   const struct volume_config *cfg, char *err, size_t errlen);
    /* POST /api/v1/reload: re-read the config. 0 with *report (a JSON
     * object, reference passed on) once applied; -errno with one line in
     * err when nothing was changed (-EINVAL: the file is wrong,
     * -ENOENT: no config file). */
    int (*reload)(void *opaque, struct json_t **report, char *err, size_t errlen);
    /* POST /api/v1/volumes/NAME/move {"to": NODE}: hand the volume to
     * another node of the cluster (a warm move, docs/cluster.md). 0 with
     * *report (reference passed on); -errno with one line in err:
     * -ENOENT (no such volume or node), -EROFS (read-only: nothing to
     * move), -EINVAL (bad target), -ENOTCONN (not in a cluster), else the
     * cluster's error. */
    int (*move)(void *opaque, const char *name, const char *to, struct json_t **report, char *err,
                size_t errlen);
};

struct mgmt_config {
    const char *listen; /* "ADDR:PORT", "[v6]:PORT"; NULL or "off" = disabled */
    const char *token;  /* bearer token (required: NULL or "" is -EINVAL) */
    /* HTTPS: DIR/server-cert.pem and DIR/server-key.pem (the layout of the
     * NBD --tls-certificates); NULL serves plain HTTP. */
    const char *tls_certificates;
    /* NULL-terminated list of directories every file back end and unix
     * socket added through the API must lie beneath (backend_params
     * .backing_dirs); NULL = anywhere. Copied by mgmt_start. */
    const char *const *backing_dirs;
    struct mgmt_hooks hooks; /* copied */
    /* The memcached tier (cluster/memcached.h), whose servers the API,
     * /metrics and the dashboard show; NULL: none (no --memcached/--etcd). */
    struct tier *memcached;
};

/* Parse "ADDR:PORT" (IPv4, [IPv6], or "localhost"), without starting anything.
 * 0 or -EINVAL. Used by the daemon to validate options early. */
int mgmt_parse_listen(const char *listen, char *host, unsigned hostlen, unsigned *port);
/* True when the address is a loopback address (127/8, ::1, localhost). */
bool mgmt_listen_is_loopback(const char *listen);

/* Start serving. With listen NULL or "off", returns 0 and sets *out to NULL
 * (mgmt_stop(NULL) is a no-op). Port 0 binds an ephemeral port (tests).
 * -EINVAL without a token or with an unusable certificate directory. */
/* What mgmt_start reads from tls_certificates (server-cert.pem and
 * server-key.pem), read and dropped: a reload checks a changed directory
 * before calling it "applied at the next restart". 0 or -errno with one
 * line in err. */
int mgmt_tls_check(const char *dir, char *err, size_t errlen);
int mgmt_start(struct engine *e, const struct mgmt_config *cfg, struct mgmt **out);
void mgmt_stop(struct mgmt *m);
/* The TCP port actually bound (differs from the configured one for port 0). */
unsigned mgmt_port(const struct mgmt *m);

#endif
