/* shoald's settings: command line and INI config file parsed into one
 * struct, validated before anything starts, so a bad value gets a one-line
 * message naming it and nothing is half-started. */
#ifndef SHOAL_DAEMON_OPTIONS_H
#define SHOAL_DAEMON_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/engine.h"
#include "frontend/nbd/handshake.h"

#define MAX_LISTEN       16
#define MAX_VOLUMES      4096
#define MAX_BACKING_DIRS 16

struct daemon_options {
    const char *listen[MAX_LISTEN];
    unsigned nlisten;
    const char *http;                  /* "off" disables */
    const char *http_token_file;       /* NULL: the default path (mgmt/token.h) */
    const char *http_tls_certificates; /* HTTPS for the API, or NULL */
    /* --backing-dir, resolved (realpath) and NULL-terminated; every
     * volume's backend_params.backing_dirs points here when there is one. */
    const char *backing_dirs[MAX_BACKING_DIRS + 1];
    unsigned nbacking_dirs;
    uint64_t cache_bytes;
    uint64_t io_memory;
    const char *policy;
    bool readonly;
    bool foreground;
    bool direct;
    int32_t readahead; /* volume_config.readahead for volumes without their own */
    unsigned threads;
    unsigned max_connections;
    uint64_t handshake_timeout_ms;
    const char *pid_file;
    enum nbd_tls_mode tls;
    const char *tls_certificates;
    const char *tls_psk;
    bool tls_verify_peer;
    const char *allow[64];
    unsigned nallow;
    int verbosity;

    struct volume_config volumes[MAX_VOLUMES];
    unsigned nvolumes;
};

/* Parse argv (and the --config file it names). Returns 0 to run, 1 when
 * --help/--version was handled (exit 0), or -1 after printing a one-line
 * error (exit 1). Strings point into argv or into storage owned by opts. */
int options_parse(int argc, char **argv, struct daemon_options *opts);
void options_free(struct daemon_options *opts);

#endif
