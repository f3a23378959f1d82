/* The iSCSI front end's options (struct iscsi_options, given to the server
 * as frontend_config.opts) and their option table: on the command line
 * --iscsi, --iscsi-chap, ...; in a config file the same names in [shoald]
 * or the short keys in [iscsi]. */
#ifndef SHOAL_FRONTEND_ISCSI_OPTIONS_H
#define SHOAL_FRONTEND_ISCSI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/frontend.h"

#define ISCSI_DEFAULT_PORT_STR         "3260"
#define ISCSI_DEFAULT_LISTEN           "127.0.0.1:" ISCSI_DEFAULT_PORT_STR
#define ISCSI_DEFAULT_LOGIN_TIMEOUT_MS 15000
#define ISCSI_DEFAULT_NOP_INTERVAL_MS  30000
#define ISCSI_MAX_LISTEN               16

struct iscsi_options {
    /* --iscsi, repeatable: listen addresses, or "off". None given: the
     * default address, where a port already taken only costs a warning
     * (another target, such as tgt, may own it). */
    struct frontend_list listen;
    bool off;                   /* --iscsi off (set by the check) */
    bool defaulted;             /* no --iscsi given: listen is the default */
    const char *chap;           /* --iscsi-chap FILE (chap.h has the format) */
    struct frontend_list allow; /* --iscsi-allow: like NBD's --allow */
    unsigned max_connections;   /* 0: the listener's default */
    uint64_t login_timeout_ms;
    uint64_t nop_interval_ms;
    uint64_t nop_timeout_ms; /* 0: an unanswered ping never ends a connection */
};

extern const struct frontend_option iscsi_option_table[];
void iscsi_options_init(void *opts);
int iscsi_options_check(void *opts, char *err, size_t errlen, const char **about);

#endif
