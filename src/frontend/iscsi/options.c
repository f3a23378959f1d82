/* The iSCSI front end's option table, defaults and checks. See options.h. */
#include "frontend/iscsi/options.h"

#include <stdio.h>
#include <string.h>

#include "frontend/allow.h"
#include "frontend/netaddr.h"

#define OPT(field) offsetof(struct iscsi_options, field)

/* A portal as it is read (frontend_option.check): "off", or a TCP address,
 * so a bad one in a config file is refused with its FILE:LINE. */
static int check_portal(const char *val, char *why, size_t whylen)
{
    if (!strcmp(val, "off"))
        return 0;
    const char *bad = !strncmp(val, "unix:", 5) ? "iSCSI listens on TCP (want ADDR:PORT)"
                                                : netaddr_check_listen(val, ISCSI_DEFAULT_PORT_STR);
    if (!bad)
        return 0;
    snprintf(why, whylen, "%s", bad);
    return -1;
}

const struct frontend_option iscsi_option_table[] = {
    {.name = "iscsi",
     .key = "listen",
     .kind = FE_OPT_LIST,
     .offset = OPT(listen),
     .max = ISCSI_MAX_LISTEN,
     .what = "--iscsi",
     .check = check_portal,
     .arg = "ADDR:PORT|off",
     .help = "iSCSI target portal (default " ISCSI_DEFAULT_LISTEN ";\nrepeatable); off: no "
             "iSCSI"},
    {.name = "iscsi-chap",
     .key = "chap",
     .kind = FE_OPT_PATH,
     .offset = OPT(chap),
     .arg = "FILE",
     .help = "require CHAP: 'user NAME SECRET' lines,\n'target NAME SECRET' for mutual CHAP\n"
             "(a mode 0600 file)"},
    {.name = "iscsi-allow",
     .key = "allow",
     .kind = FE_OPT_LIST,
     .offset = OPT(allow),
     .max = FRONTEND_LIST_MAX,
     .what = "--iscsi-allow",
     .check = allow_check_entry,
     .arg = "ADDR[/PREFIX]",
     .help = "accept iSCSI initiators only from these\naddresses (repeatable; default: --allow's)"},
    {.name = "iscsi-max-connections",
     .key = "max-connections",
     .kind = FE_OPT_UINT,
     .offset = OPT(max_connections),
     .min = 1,
     .max = 100000,
     .what = "iSCSI connection limit",
     .want = "want 1..100000",
     .arg = "N",
     .help = "iSCSI connection limit (default 1024)"},
    {.name = "iscsi-login-timeout",
     .key = "login-timeout",
     .kind = FE_OPT_DURATION,
     .offset = OPT(login_timeout_ms),
     .what = "iSCSI login timeout",
     .want = "want a duration like 15s",
     .arg = "DURATION",
     .help = "drop initiators that do not finish the\nlogin in time (default 15s)"},
    {.name = "iscsi-nop-interval",
     .key = "nop-interval",
     .kind = FE_OPT_DURATION,
     .offset = OPT(nop_interval_ms),
     .what = "iSCSI NOP interval",
     .want = "want a duration like 30s",
     .arg = "DURATION",
     .help = "ping idle initiators (NOP-In) this often\n(default 30s)"},
    {.name = "iscsi-nop-timeout",
     .key = "nop-timeout",
     .kind = FE_OPT_DURATION,
     .offset = OPT(nop_timeout_ms),
     .what = "iSCSI NOP timeout",
     .want = "want a duration like 60s",
     .arg = "DURATION",
     .help = "close a connection whose ping stays\nunanswered this long (default: never)"},
    {.name = NULL},
};

void iscsi_options_init(void *opts)
{
    struct iscsi_options *o = opts;
    memset(o, 0, sizeof *o);
    o->login_timeout_ms = ISCSI_DEFAULT_LOGIN_TIMEOUT_MS;
    o->nop_interval_ms = ISCSI_DEFAULT_NOP_INTERVAL_MS;
}

int iscsi_options_check(void *opts, char *err, size_t errlen, const char **about)
{
    struct iscsi_options *o = opts;
    o->off = false;
    o->defaulted = false;
    if (o->listen.n)
        *about = "iscsi"; /* every error below is about it */
    for (unsigned i = 0; i < o->listen.n; i++) {
        if (!strcmp(o->listen.v[i], "off")) {
            if (o->listen.n > 1) {
                snprintf(err, errlen, "--iscsi off cannot be combined with an address");
                return -1;
            }
            o->off = true;
            o->listen.n = 0;
            return 0;
        }
        if (!strncmp(o->listen.v[i], "unix:", 5)) {
            snprintf(err, errlen, "invalid --iscsi '%s': iSCSI listens on TCP (want ADDR:PORT)",
                     o->listen.v[i]);
            return -1;
        }
        const char *why = netaddr_check_listen(o->listen.v[i], ISCSI_DEFAULT_PORT_STR);
        if (why) {
            snprintf(err, errlen, "invalid --iscsi '%s': %s", o->listen.v[i], why);
            return -1;
        }
    }
    if (o->listen.n == 0) {
        o->listen.v[o->listen.n++] = ISCSI_DEFAULT_LISTEN;
        o->defaulted = true;
    }
    return 0;
}
