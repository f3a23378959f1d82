/* The NBD front end's option table, defaults and checks. See options.h. */
#include "frontend/nbd/options.h"

#include <stdio.h>
#include <string.h>

#define OPT(field) offsetof(struct nbd_options, field)

/* FE_OPT_ENUM stores an int. */
_Static_assert(sizeof(enum nbd_tls_mode) == sizeof(int), "tls mode is stored as an int");

static const char *const tls_modes[] = {
    [NBD_TLS_OFF] = "off",
    [NBD_TLS_ON] = "on",
    [NBD_TLS_REQUIRE] = "require",
    NULL,
};

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
     .arg = "ADDR[/PREFIX]|unix",
     .help = "accept NBD clients only from these\naddresses (repeatable; default: all)"},
    {.name = NULL},
};

void nbd_options_init(void *opts)
{
    struct nbd_options *o = opts;
    memset(o, 0, sizeof *o);
    o->handshake_timeout_ms = NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS;
}

int nbd_options_check(void *opts, char *err, size_t errlen)
{
    struct nbd_options *o = opts;
    if (o->listen.n == 0)
        o->listen.v[o->listen.n++] = NBD_DEFAULT_LISTEN;
    if (o->tls != NBD_TLS_OFF && !o->tls_certificates && !o->tls_psk) {
        snprintf(err, errlen, "--tls=%s needs --tls-certificates DIR or --tls-psk FILE",
                 o->tls == NBD_TLS_ON ? "on" : "require");
        return -1;
    }
    return 0;
}
