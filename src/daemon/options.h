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

#include "cluster/etcd.h"
#include "core/engine.h"
#include "frontend/frontend.h"

#define MAX_VOLUMES      4096
#define MAX_BACKING_DIRS 16
#define MAX_FRONTENDS    4
#define MAX_CONFIGS      4 /* -c given more than once: read in order */
#define MAX_DEBUG_SPECS  32
#define FE_MAX_OPTS      256

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
    unsigned busy_poll_us; /* 0: front ends never busy poll */
    const char *policy;
    bool readonly; /* every volume, and every front end exports read-only */
    bool foreground;
    bool direct;
    int32_t readahead; /* volume_config.readahead for volumes without their own */
    unsigned threads;  /* the worker pool every front end shares */
    const char *pid_file;
    int verbosity;
    /* -D and debug = ...: applied by options_apply_logging, not while
     * parsing, so a file refused later in the parse changes no level. */
    const char *debug_specs[MAX_DEBUG_SPECS];
    unsigned ndebug_specs;
    /* --connect-timeout: NBD back ends' connect + handshake limit (0:
     * the back end's default). */
    uint64_t connect_timeout_ms;
    /* [cluster] / --memcached: the global tier's servers (NULL: none),
     * how long a read waits for it, and the bytes of blocks its put queue
     * holds (0: the tier's default, TIER_MEMCACHED_PUT_QUEUE_BYTES). */
    const char *memcached;
    uint64_t memcached_timeout_ms;
    uint64_t memcached_put_queue_bytes;
    /* [cluster] / --etcd: membership and volume ownership (NULL: none);
     * the node's name (NULL: the host name) and lease TTL (0: default). */
    const char *etcd;
    const char *node_name;
    uint64_t etcd_lease_s;
    /* --etcd-cacert/--etcd-cert/--etcd-key: for https:// endpoints. */
    struct etcd_tls etcd_tls;
    /* --state-dir as given ("off" or NULL: see daemon/state.h). */
    const char *state_dir;
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
    /* volumes[0 .. nfile_volumes) come from config files (their section
     * header at volume_file[i]:volume_line[i]), the rest from the command
     * line. */
    unsigned nfile_volumes;
    const char *volume_file[MAX_VOLUMES];
    unsigned volume_line[MAX_VOLUMES];

    /* The config files (-c), absolute, and the directory shoald started
     * in: a reload reads the same files and resolves relative backing
     * paths the same way after the daemon's chdir("/"). */
    const char *config_files[MAX_CONFIGS];
    unsigned nconfig_files;
    const char *start_dir;
    /* Each config file's text as this parse read it (owned): the reloader
     * parses the start's configuration from it (options_reparse_same)
     * rather than reading the files a second time, which a pipe (-c
     * <(...)) would give empty and an edit meanwhile would make differ
     * from what the daemon runs. */
    const char *config_text[MAX_CONFIGS];
    size_t config_len[MAX_CONFIGS];

    /* ---- the parser's own ---- */
    char **owned; /* strings duplicated while parsing, freed by options_free */
    unsigned nowned;
    /* Whether the command line already dropped a list option's values
     * from the config file (its own replace them). */
    bool cli_replaced[MAX_FRONTENDS][FE_MAX_OPTS];
    const char *at_file; /* where the value being parsed is: FILE:LINE in errors */
    unsigned at_line;
    /* Where the file set what finish() checks against the machine (cache
     * size vs RAM, --user, --group): its errors name the line too. */
    struct opt_at {
        const char *file;
        unsigned line;
    } cache_at, user_at, group_at, etcd_tls_at;
    /* Where the file set what only a start opens (a reload checks a
     * changed one and names this line when it is bad); etcd_file_at: the
     * cacert, cert and key. */
    struct opt_at http_token_at, http_tls_at, pid_file_at, state_dir_at, etcd_file_at[3];
    /* Where each front end's option was last set (file NULL: not by a
     * file), for the errors of the front end's checks across options. */
    struct opt_at fe_at[MAX_FRONTENDS][FE_MAX_OPTS];
    char *error; /* the one-line error of a reparse, or NULL (printed) */
    size_t error_len;
};

/* Parse argv (and the --config file it names). Returns 0 to run, 1 when
 * --help/--version was handled (exit 0), or -1 after printing a one-line
 * error (exit 1). Strings point into argv or into storage owned by opts. */
int options_parse(int argc, char **argv, struct daemon_options *opts);
/* Parse again for a reload: the same command line, the config files and
 * start directory of `running`, read again. A config file that is not a
 * regular file (a pipe: -c <(...)) is refused: it cannot be read again.
 * Nothing is printed: the one-line error (without "shoald: ") goes to
 * err. Log levels are not touched. 0 or -1. */
int options_reparse(int argc, char **argv, const struct daemon_options *running,
                    struct daemon_options *out, char *err, size_t errlen);
/* As options_reparse, from the text `running` read its config files from
 * (nothing is read): what the daemon started with, as written. */
int options_reparse_same(int argc, char **argv, const struct daemon_options *running,
                         struct daemon_options *out, char *err, size_t errlen);
/* path made absolute against opts->start_dir (malloc'ed; NULL: out of
 * memory): where the daemon, whose own directory is "/" once it runs,
 * finds a path the file gives relative. */
char *options_path(const struct daemon_options *opts, const char *path);
/* A volume's backing spec as the daemon opens it, in *out (malloc'ed): a
 * URI or fault: spec as is; a path made absolute against opts->start_dir,
 * spelled as given under --backing-dir (the back end checks the spelling),
 * else resolved (realpath) and checked readable. 0 or -errno. */
int options_resolve_spec(const struct daemon_options *opts, const char *spec, char **out);
/* Set every component's log level from the options: info, then each -D
 * spec in order, then -v. */
/* Where front end fe's option `name` was last set ({NULL, 0}: not by a
 * file). */
struct opt_at options_fe_where(const struct daemon_options *opts, unsigned fe, const char *name);
void options_apply_logging(const struct daemon_options *opts);
void options_free(struct daemon_options *opts);

#endif
