/* shoald's settings: command line and INI config file parsed into one
 * struct, validated before anything starts, so a bad value gets a one-line
 * message naming it and nothing is half-started.
 *
 * The daemon's own settings are fields here; each front end's are an
 * object of its own (frontend_opts[i] for daemon_frontends[i]), read
 * through the front end's option table (frontend/frontend.h): on the
 * command line as --NAME, in the config file as NAME in [shoald] or as KEY
 * in the front end's own section ([nbd]). */
#ifndef SHOAL_DAEMON_OPTIONS_H
#define SHOAL_DAEMON_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/engine.h"
#include "frontend/frontend.h"

#define MAX_VOLUMES      4096
#define MAX_BACKING_DIRS 16
#define MAX_FRONTENDS    4

/* The front ends shoald runs, in start order (stopped in reverse). */
extern const struct frontend_ops *const daemon_frontends[];
extern const unsigned daemon_nfrontends;

struct daemon_options {
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
    bool readonly; /* every volume, and every front end exports read-only */
    bool foreground;
    bool direct;
    int32_t readahead; /* volume_config.readahead for volumes without their own */
    unsigned threads;  /* the worker pool every front end shares */
    const char *pid_file;
    int verbosity;
    /* --user/--group: whom to run as once everything privileged is open
     * (privdrop.h); resolved while parsing, so a typo stops the start. */
    const char *user, *group;
    uid_t uid; /* (uid_t)-1: no --user */
    gid_t gid; /* --group, else the user's primary group */

    /* Each front end's options, by its index in daemon_frontends
     * (ops->opts_size bytes each, owned by these options). */
    void *frontend_opts[MAX_FRONTENDS];

    struct volume_config volumes[MAX_VOLUMES];
    unsigned nvolumes;
};

/* Parse argv (and the --config file it names). Returns 0 to run, 1 when
 * --help/--version was handled (exit 0), or -1 after printing a one-line
 * error (exit 1). Strings point into argv or into storage owned by opts. */
int options_parse(int argc, char **argv, struct daemon_options *opts);
void options_free(struct daemon_options *opts);

#endif
