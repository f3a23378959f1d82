/* The NBD front end's option table, defaults and checks. See options.h. */
#include "frontend/nbd/options.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/ids.h"
#include "frontend/allow.h"

#define OPT(field) offsetof(struct nbd_options, field)

/* FE_OPT_ENUM stores an int. */
_Static_assert(sizeof(enum nbd_tls_mode) == sizeof(int), "tls mode is stored as an int");

static const char *const tls_modes[] = {
    [NBD_TLS_OFF] = "off",
    [NBD_TLS_ON] = "on",
    [NBD_TLS_REQUIRE] = "require",
    NULL,
};

/* Each value checked as it is read (frontend_option.check), so that a bad
 * one in a config file is refused with its FILE:LINE; nbd_options_check
 * resolves them again into unix_perms. */
static int check_mode(const char *val, char *why, size_t whylen)
{
    mode_t mode;
    if (ids_parse_mode(val, &mode) == 0)
        return 0;
    snprintf(why, whylen, "want an octal mode like 0660");
    return -1;
}

static int check_user(const char *val, char *why, size_t whylen)
{
    uid_t uid;
    gid_t gid;
    int r = ids_lookup_user(val, &uid, &gid);
    if (r == 0)
        return 0;
    snprintf(why, whylen, "%s", r == -ENOENT ? "no such user" : strerror(-r));
    return -1;
}

static int check_group(const char *val, char *why, size_t whylen)
{
    gid_t gid;
    int r = ids_lookup_group(val, &gid);
    if (r == 0)
        return 0;
    snprintf(why, whylen, "%s", r == -ENOENT ? "no such group" : strerror(-r));
    return -1;
}

const struct frontend_option nbd_option_table[] = {
    {.name = "listen",
     .short_name = 'l',
     .kind = FE_OPT_LISTEN,
     .offset = OPT(listen),
     .max = NBD_MAX_LISTEN,
     .port = NBD_DEFAULT_PORT_STR,
     .what = "listen address",
     .arg = "ADDR:PORT|unix:PATH",
     .help = "NBD listener (default " NBD_DEFAULT_LISTEN "; repeatable)"},
    {.name = "max-connections",
     .kind = FE_OPT_UINT,
     .offset = OPT(max_connections),
     .min = 1,
     .max = 100000,
     .what = "connection limit",
     .want = "want 1..100000",
     .arg = "N",
     .help = "NBD client limit (default 1024)"},
    {.name = "handshake-timeout",
     .kind = FE_OPT_DURATION,
     .offset = OPT(handshake_timeout_ms),
     .what = "handshake timeout",
     .want = "want a duration like 10s or 500ms",
     .arg = "DURATION",
     .help = "drop clients that do not finish the\nhandshake in time (default 10s)"},
    {.name = "io-timeout",
     .kind = FE_OPT_DURATION,
     .offset = OPT(io_timeout_ms),
     .what = "I/O timeout",
     .want = "want a duration like 60s or 500ms",
     .arg = "DURATION",
     .help = "drop clients that take no data for this long\nin the middle of a write's payload or "
             "of\na reply (default 60s)"},
    {.name = "tls",
     .kind = FE_OPT_ENUM,
     .offset = OPT(tls),
     .names = tls_modes,
     .what = "--tls mode",
     .want = "want off, on or require",
     .arg = "off|on|require",
     .help = "NBD over TLS (STARTTLS): off (default),\noffered, or required of every client"},
    {.name = "tls-certificates",
     .kind = FE_OPT_PATH,
     .offset = OPT(tls_certificates),
     .arg = "DIR",
     .help = "x509: DIR/server-cert.pem, server-key.pem\n(+ ca-cert.pem, ca-crl.pem)"},
    {.name = "tls-psk",
     .kind = FE_OPT_PATH,
     .offset = OPT(tls_psk),
     .arg = "FILE",
     .help = "PSK: username:hexkey lines (psktool)"},
    {.name = "tls-verify-peer",
     .kind = FE_OPT_FLAG,
     .offset = OPT(tls_verify_peer),
     .help = "x509: require client certificates signed\nby DIR/ca-cert.pem"},
    {.name = "allow",
     .kind = FE_OPT_LIST,
     .offset = OPT(allow),
     .max = FRONTEND_LIST_MAX,
     .what = "--allow",
     .check = allow_check_entry,
     .arg = "ADDR[/PREFIX]|unix",
     .help = "accept clients only from these addresses,\nNBD and iSCSI (repeatable; default: all)"},
    {.name = "socket-mode",
     .kind = FE_OPT_STRING,
     .offset = OPT(socket_mode),
     .what = "--socket-mode",
     .check = check_mode,
     .arg = "MODE",
     .help = "mode of unix: sockets, octal (default 0660:\nowner and group may connect)"},
    {.name = "socket-owner",
     .kind = FE_OPT_STRING,
     .offset = OPT(socket_owner),
     .what = "--socket-owner",
     .check = check_user,
     .arg = "USER",
     .help = "owner of unix: sockets (default: shoald's)"},
    {.name = "socket-group",
     .kind = FE_OPT_STRING,
     .offset = OPT(socket_group),
     .what = "--socket-group",
     .check = check_group,
     .arg = "GROUP",
     .help = "group of unix: sockets, e.g. kvm or\nlibvirt-qemu (default: shoald's)"},
    {.name = NULL},
};

void nbd_options_init(void *opts)
{
    struct nbd_options *o = opts;
    memset(o, 0, sizeof *o);
    o->handshake_timeout_ms = NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    o->io_timeout_ms = NBD_DEFAULT_IO_TIMEOUT_MS;
    o->unix_perms =
        (struct netaddr_unix_perms){.mode = NETADDR_UNIX_MODE, .uid = (uid_t)-1, .gid = (gid_t)-1};
}

/* --socket-mode, --socket-owner, --socket-group into o->unix_perms
 * (checked as they were read; a user or group gone since fails here). */
static int resolve_unix_perms(struct nbd_options *o, char *err, size_t errlen, const char **about)
{
    gid_t primary;
    int r;
    if (o->socket_mode && ids_parse_mode(o->socket_mode, &o->unix_perms.mode) < 0) {
        snprintf(err, errlen, "invalid --socket-mode '%s': want an octal mode like 0660",
                 o->socket_mode);
        *about = "socket-mode";
        return -1;
    }
    if (o->socket_owner && (r = ids_lookup_user(o->socket_owner, &o->unix_perms.uid, &primary))) {
        snprintf(err, errlen, "invalid --socket-owner '%s': %s", o->socket_owner,
                 r == -ENOENT ? "no such user" : strerror(-r));
        *about = "socket-owner";
        return -1;
    }
    if (o->socket_group && (r = ids_lookup_group(o->socket_group, &o->unix_perms.gid))) {
        snprintf(err, errlen, "invalid --socket-group '%s': %s", o->socket_group,
                 r == -ENOENT ? "no such group" : strerror(-r));
        *about = "socket-group";
        return -1;
    }
    return 0;
}

int nbd_options_check(void *opts, char *err, size_t errlen, const char **about)
{
    struct nbd_options *o = opts;
    if (o->listen.n == 0)
        o->listen.v[o->listen.n++] = NBD_DEFAULT_LISTEN;
    if (resolve_unix_perms(o, err, errlen, about) < 0)
        return -1;
    if (o->socket_mode || o->socket_owner || o->socket_group) {
        /* Set on TCP listeners alone, they would do nothing: say so. */
        bool any_unix = false;
        for (unsigned i = 0; i < o->listen.n; i++)
            any_unix |= strncmp(o->listen.v[i], "unix:", 5) == 0;
        if (!any_unix) {
            *about = o->socket_mode    ? "socket-mode"
                     : o->socket_owner ? "socket-owner"
                                       : "socket-group";
            snprintf(err, errlen, "--%s applies to unix: listeners, and --listen has none", *about);
            return -1;
        }
    }
    if (o->tls != NBD_TLS_OFF && !o->tls_certificates && !o->tls_psk) {
        snprintf(err, errlen, "--tls=%s needs --tls-certificates DIR or --tls-psk FILE",
                 o->tls == NBD_TLS_ON ? "on" : "require");
        *about = "tls";
        return -1;
    }
    return 0;
}
