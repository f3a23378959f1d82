/* Front ends speak a wire protocol to clients and submit their requests to
 * the core (core/submit.h): they parse, validate and encode, nothing else.
 * One `struct frontend_ops` per protocol, in its own folder (nbd/); what
 * every protocol needs to be a TCP server (listeners, accept, connection
 * limits, the access list, conn_io, TLS) is in this folder, shared.
 *
 * The daemon keeps a table of front ends (daemon/options.c). For each it
 * reads the front end's options from the command line and the config file
 * through the front end's option table (below), then starts it with the
 * engine, and stops it at exit before the engine (and its worker pool)
 * goes. */
#ifndef SHOAL_FRONTEND_FRONTEND_H
#define SHOAL_FRONTEND_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;

/* ---- options ---- */

/* A repeatable option's values (FE_OPT_LIST, FE_OPT_LISTEN). */
#define FRONTEND_LIST_MAX 64
struct frontend_list {
    const char *v[FRONTEND_LIST_MAX];
    unsigned n;
};

enum frontend_opt_kind {
    FE_OPT_STRING,   /* const char *: any text */
    FE_OPT_PATH,     /* const char *: a file or directory, made absolute by the daemon */
    FE_OPT_FLAG,     /* bool: no value on the command line; true/false in a file */
    FE_OPT_UINT,     /* unsigned in [min, max] */
    FE_OPT_DURATION, /* uint64_t milliseconds, more than 0 ("10s", "500ms") */
    FE_OPT_ENUM,     /* int: the index of the value in names[] */
    FE_OPT_LIST,     /* struct frontend_list, up to max entries, appended to */
    /* struct frontend_list of listen addresses (netaddr.h), up to max:
     * checked and resolved while parsing; "unix:" paths made absolute by
     * the daemon; the command line's addresses replace the file's. */
    FE_OPT_LISTEN,
};

/* One option. On the command line it is --NAME (and -SHORT); in the
 * config file it is NAME in [shoald] and KEY in the front end's own
 * section. A bad value stops the daemon with one line:
 * "invalid WHAT 'VALUE': WANT". */
struct frontend_option {
    const char *name;
    const char *key; /* NULL: name */
    char short_name; /* 0: none */
    enum frontend_opt_kind kind;
    size_t offset;            /* of the value in the front end's options */
    unsigned min, max;        /* UINT: bounds; LIST, LISTEN: most entries */
    const char *const *names; /* ENUM: the values, NULL-terminated */
    const char *port;         /* LISTEN: the port of an address without one */
    const char *what, *want;  /* errors; what NULL: the name */
    const char *arg, *help;   /* --help: "ARG", lines separated by '\n' */
    /* Optional (STRING, PATH, LIST): checks one value as it is read, so a
     * bad one is refused with the FILE:LINE it came from, at start and on
     * a reload alike. 0, or -1 with why ("want ...", "no such user"). */
    int (*check)(const char *val, char *why, size_t whylen);
};

/* ---- a front end ---- */

/* What the daemon gives a front end when it starts. */
struct frontend_config {
    bool readonly;    /* export every volume read-only (--readonly) */
    const void *opts; /* the front end's options (ops->opts_size bytes) */
    /* The daemon's --allow (an option of the NBD front end), or NULL: a
     * front end without an access list of its own follows it, so one
     * --allow covers every protocol. */
    const struct frontend_list *allow;
    /* Optional: when start fails, one line saying what failed (e.g. which
     * address could not be bound) goes here instead of to the log, so the
     * daemon can exit with a single message. */
    char *err;
    size_t errlen;
};

struct frontend_ops {
    const char *name;  /* "nbd" */
    const char *title; /* "NBD": headings in --help */
    /* The config file section of its own ("nbd" reads [nbd]); its options
     * are also keys of [shoald]. */
    const char *section;
    const struct frontend_option *options; /* ends with a NULL name */
    size_t opts_size;
    /* Defaults, before any option is read. */
    void (*opts_init)(void *opts);
    /* After every option was read: defaults that depend on what was given,
     * and checks across options. 0, or -1 with one line in err and *about
     * the name of the option it is about (or left NULL): the daemon names
     * where in the config file that option was set. */
    int (*opts_check)(void *opts, char *err, size_t errlen, const char **about);
    /* For a reload (NULL: none): load what start would load from the files
     * the options name (certificates, secrets) and free it, starting
     * nothing, so a bad file is refused now rather than by the next
     * restart. Paths are absolute. 0, or -errno with one line in err and
     * *about as for opts_check. */
    int (*files_check)(const void *opts, char *err, size_t errlen, const char **about);

    int (*start)(struct engine *e, const struct frontend_config *cfg, void **state);
    /* Stop accepting, end connections (in-flight requests finish), free.
     * Returns only when none of its requests is left in the core. */
    void (*stop)(void *state);
    /* Live connection count, for stats. */
    unsigned (*connections)(void *state);
};

extern const struct frontend_ops frontend_nbd_ops;
extern const struct frontend_ops frontend_iscsi_ops;

#endif
