/* The NBD front end's options: what they are (struct nbd_options, given to
 * the server as frontend_config.opts) and how they are spelt (the option
 * table the daemon reads the command line and the config file with). Their
 * keys sit in [shoald], where they always were, or in [nbd]. */
#ifndef SHOAL_FRONTEND_NBD_OPTIONS_H
#define SHOAL_FRONTEND_NBD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/frontend.h"
#include "frontend/netaddr.h"
#include "frontend/nbd/handshake.h"
#include "frontend/nbd/proto.h"

#define NBD_STR_(x)                      #x
#define NBD_STR(x)                       NBD_STR_(x)
#define NBD_DEFAULT_PORT_STR             NBD_STR(NBD_DEFAULT_PORT)
#define NBD_DEFAULT_LISTEN               "127.0.0.1:" NBD_DEFAULT_PORT_STR
#define NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define NBD_DEFAULT_IO_TIMEOUT_MS        60000
#define NBD_MAX_LISTEN                   16

struct nbd_options {
    struct frontend_list listen;   /* --listen; none: NBD_DEFAULT_LISTEN (after opts_check) */
    struct frontend_list allow;    /* --allow: client addresses allowed (allow.h); none: all */
    unsigned max_connections;      /* 0: LISTENER_DEFAULT_MAX_CONNECTIONS */
    uint64_t handshake_timeout_ms; /* 0: NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS */
    uint64_t io_timeout_ms;        /* 0: NBD_DEFAULT_IO_TIMEOUT_MS */
    enum nbd_tls_mode tls;
    const char *tls_certificates; /* directory with ca-cert.pem, server-cert.pem, server-key.pem */
    const char *tls_psk;          /* PSK file (username:hexkey lines) */
    bool tls_verify_peer;         /* x509: require a client certificate signed by ca-cert.pem */
    /* Unix listeners: --socket-mode (octal), --socket-owner USER,
     * --socket-group GROUP as given; unix_perms is what they resolve to
     * (in nbd_options_check, so an unknown user is one line at start). */
    const char *socket_mode;
    const char *socket_owner;
    const char *socket_group;
    struct netaddr_unix_perms unix_perms;
};

extern const struct frontend_option nbd_option_table[];
void nbd_options_init(void *opts);
int nbd_options_check(void *opts, char *err, size_t errlen, const char **about);

#endif
