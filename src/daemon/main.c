/* shoald: parse settings, start the engine, the volumes, the worker pool,
 * every front end of the table (daemon/options.c) and the management
 * server, then wait for SIGTERM/SIGINT and stop them in reverse order. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cluster/membership.h"
#include "cluster/memcached.h"
#include "daemon/fence.h"
#include "daemon/move.h"
#include "common/bufpool.h"
#include "common/busy_poll.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "core/evict.h"
#include "daemon/notify.h"
#include "daemon/options.h"
#include "daemon/persist.h"
#include "daemon/privdrop.h"
#include "daemon/reload.h"
#include "daemon/state.h"
#include "frontend/frontend.h"
#include "mgmt/mgmt.h"
#include "mgmt/token.h"

/* path made absolute against the current directory (the file need not
 * exist yet). NULL on allocation failure. */
static char *absolute_path(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return strdup(path);
    char *out = NULL;
    if (asprintf(&out, "%s/%s", cwd, path) < 0)
        return NULL;
    return out;
}

/* Paths main made absolute, freed at exit. */
struct made_paths {
    char **v;
    size_t n;
};

/* *path made absolute if it is not (prefix: kept in front, as "unix:"). */
static void make_absolute(struct made_paths *m, const char **path, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (!*path || strncmp(*path, prefix, pl) != 0 || (*path)[pl] == '/')
        return;
    char *abs = absolute_path(*path + pl);
    char *full = NULL;
    if (abs && asprintf(&full, "%s%s", prefix, abs) < 0)
        full = NULL;
    free(abs);
    char **v = full ? realloc(m->v, (m->n + 1) * sizeof *v) : NULL;
    if (!v) {
        free(full);
        return; /* left relative: it still works in the foreground */
    }
    m->v = v;
    m->v[m->n++] = full;
    *path = full;
}

/* The paths of every front end's options (its certificate files, unix
 * sockets) are used after the daemon's chdir("/"). */
static void frontend_paths_absolute(struct daemon_options *o, struct made_paths *m)
{
    for (unsigned fe = 0; fe < daemon_nfrontends; fe++) {
        for (const struct frontend_option *opt = daemon_frontends[fe]->options; opt->name; opt++) {
            void *field = (char *)o->frontend_opts[fe] + opt->offset;
            if (opt->kind == FE_OPT_PATH) {
                make_absolute(m, field, "");
            } else if (opt->kind == FE_OPT_LISTEN) {
                struct frontend_list *l = field;
                for (unsigned i = 0; i < l->n; i++)
                    make_absolute(m, &l->v[i], "unix:");
            }
        }
    }
}

/* The API token: read from the file, or created there when missing (see
 * mgmt/token.h). A refusal is one line on stderr (still the terminal while
 * a daemon starts). 0 or -1 after printing it. */
static int load_token(const char *file, char **out)
{
    char def[4096];
    if (!file) {
        int r = token_default_path(def, sizeof def);
        if (r < 0) {
            fprintf(stderr,
                    "shoald: no default place for the API token (%s); give --http-token-file "
                    "FILE\n",
                    strerror(-r));
            return -1;
        }
        file = def;
    }
    char err[512] = "";
    bool created = false;
    int r = token_load_or_create(file, out, &created, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "shoald: %s\n", err[0] ? err : strerror(-r));
        return -1;
    }
    /* A new token is news for whoever must pass it to shoalctl or curl. */
    if (created)
        log_info(main, "API token created in %s (changes need \"Authorization: Bearer\" with it)",
                 file);
    else
        log_debug(main, "API token read from %s", file);
    return 0;
}

/* Fork; the parent waits on a pipe until the child is ready (or failed), so
 * `shoald ... && nbdinfo ...` works. Returns the write end in the child, or
 * -1 after printing why nothing was forked. */
static int daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        perror("shoald: pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("shoald: fork");
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        char status = 1;
        if (read(p[0], &status, 1) != 1)
            status = 1;
        _exit(status);
    }
    close(p[0]);
    setsid();
    if (chdir("/") < 0) {
        /* Not fatal: relative paths were resolved before. */
    }
    return p[1];
}

static void ready(int notify_fd, bool foreground)
{
    if (notify_fd < 0)
        return;
    if (!foreground) {
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
            if (nul > 2)
                close(nul);
        }
    }
    char ok = 0;
    if (write(notify_fd, &ok, 1) != 1) {
        /* The parent is gone; nothing to tell. */
    }
    close(notify_fd);
}

/* The --allow list, wherever a front end's table declares it (the NBD
 * front end's), for the front ends without an access list of their own. */
static const struct frontend_list *daemon_allow(const struct daemon_options *o)
{
    for (unsigned i = 0; i < daemon_nfrontends; i++)
        for (const struct frontend_option *opt = daemon_frontends[i]->options; opt && opt->name;
             opt++)
            if (strcmp(opt->name, "allow") == 0 && opt->kind == FE_OPT_LIST)
                return (const struct frontend_list *)((const char *)o->frontend_opts[i] +
                                                      opt->offset);
    return NULL;
}

/* What main has started or allocated so far: a start that fails part way
 * stops and frees exactly these (teardown), as the orderly stop does, so
 * no failed start leaves memory, threads, a claimed lease or a pid file
 * behind. */
struct daemon_run {
    struct daemon_options *o;
    char *abs_specs[MAX_VOLUMES];
    struct made_paths made;
    char *token;
    struct state *state;
    struct tier *mc_tier; /* the engine's once it exists */
    struct engine *engine;
    struct reloader *reloader;
    void *fe_state[MAX_FRONTENDS];
    bool hooks_set; /* fence_setup and move_setup ran */
    struct mgmt *mgmt;
    bool pid_written;
};

/* Stop and free what run holds, in the reverse order of the start. With
 * stopped (an orderly stop of a daemon that served) the global tier gets
 * a moment to send what it still queues. */
static void teardown(struct daemon_run *run, bool stopped)
{
    struct daemon_options *o = run->o;
    for (unsigned i = daemon_nfrontends; i-- > 0;)
        if (run->fe_state[i])
            daemon_frontends[i]->stop(run->fe_state[i]);
    mgmt_stop(run->mgmt);
    if (run->hooks_set) {
        move_stop();
        fence_stop();
    }
    reloader_free(run->reloader);
    /* Revokes the lease: this node's volumes are free for others at once
     * (a no-op without a cluster). Before the tier, which it feeds. */
    cluster_stop();
    /* Blocks read since the last put was sent are worth keeping for the
     * other nodes: give the queue a moment. */
    if (stopped && run->mc_tier && run->engine && tier_memcached_flush(run->mc_tier, 1000) < 0)
        log_warn(main, "memcached: puts still queued at exit were dropped");
    if (run->engine)
        engine_destroy(run->engine); /* closes the tier it owns */
    else if (run->mc_tier)
        tier_close(run->mc_tier);
    state_close(run->state);
    bufpool_drain();
    if (run->pid_written && unlink(o->pid_file) < 0 && errno != ENOENT)
        log_warn(main, "cannot remove the pid file %s: %s", o->pid_file, strerror(errno));
    for (unsigned i = 0; i < MAX_VOLUMES; i++)
        free(run->abs_specs[i]);
    for (size_t i = 0; i < run->made.n; i++)
        free(run->made.v[i]);
    free(run->made.v);
    if (run->token)
        explicit_bzero(run->token, strlen(run->token));
    free(run->token);
    options_free(o);
    free(o);
}

/* Everything up to "ready": 0, or 1 after one line on stderr saying why
 * the start failed (teardown then undoes what was done). *notify_fd: the
 * daemon's pipe to its parent, once forked. */
static int start(int argc, char **argv, struct daemon_run *run, sigset_t *sigs, int *notify_fd)
{
    struct daemon_options *o = run->o;
    options_apply_logging(o);

    /* Absolute paths before a daemon's chdir("/"), and an early check that
     * backing files exist, so a typo gets one line and nothing starts. */
    for (unsigned i = 0; i < o->nvolumes; i++) {
        const char *spec = o->volumes[i].backend.spec;
        int r = options_resolve_spec(o, spec, &run->abs_specs[i]);
        if (r < 0) {
            fprintf(stderr, "shoald: volume %s: cannot open '%s': %s\n", o->volumes[i].name, spec,
                    strerror(-r));
            return 1;
        }
        o->volumes[i].backend.spec = run->abs_specs[i];
    }
    /* The pid file, the API's certificates and the token file are used
     * after the daemon's chdir("/"); so are the front ends' paths. */
    struct made_paths *made = &run->made;
    make_absolute(made, &o->pid_file, "");
    make_absolute(made, &o->http_tls_certificates, "");
    make_absolute(made, &o->http_token_file, "");
    make_absolute(made, &o->etcd_tls.cacert, "");
    make_absolute(made, &o->etcd_tls.cert, "");
    make_absolute(made, &o->etcd_tls.key, "");
    frontend_paths_absolute(o, made);

    /* Before anything starts, so a bad token file is the only line. */
    if (strcmp(o->http, "off") != 0 && load_token(o->http_token_file, &run->token) < 0)
        return 1;

    /* The state file (API changes) is read before any volume is added; a
     * corrupt one stops the start rather than be overwritten later. */
    bool state_implicit;
    const char *state_dir = state_dir_choose(o->state_dir, &state_implicit);
    make_absolute(made, &state_dir, "");
    char state_err[1024] = "";
    int serr = state_open(state_dir, &run->state, state_err, sizeof state_err);
    if (serr < 0 && !(state_implicit && (serr == -EACCES || serr == -EPERM || serr == -EBUSY ||
                                         serr == -EROFS || serr == -EAGAIN || serr == -ENOENT))) {
        fprintf(stderr, "shoald: %s\n", state_err);
        return 1;
    }
    struct state *state = run->state;
    /* A directory nobody named: unusable is not fatal (a user's shoald, a
     * second daemon beside the system's). Said below. */
    bool state_skipped = serr < 0;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGHUP);
    /* Blocked before any thread exists, so only sigwait below sees them. */
    pthread_sigmask(SIG_BLOCK, sigs, NULL);

    if (!o->foreground && (*notify_fd = daemonize()) < 0)
        return 1;

    bufpool_init(o->io_memory);
    busy_poll_setup(o->busy_poll_us, 0);
    backend_set_connect_timeout((uint32_t)o->connect_timeout_ms);
    /* The cluster's global tier, asked after the local store and before
     * the back end (owned by the engine once it is created). */
    if (o->memcached || o->etcd) {
        /* With etcd, the list is the cluster's (membership.h). */
        struct tier_memcached_config mcc = {
            .servers = o->etcd ? "" : o->memcached,
            .dynamic = o->etcd != NULL,
            .timeout_ms = (uint32_t)o->memcached_timeout_ms,
            .put_queue_bytes = o->memcached_put_queue_bytes,
        };
        int e = tier_memcached_open(&mcc, &run->mc_tier);
        if (e < 0) {
            fprintf(stderr, "shoald: cannot use memcached '%s': %s\n", o->memcached, strerror(-e));
            return 1;
        }
    }
    struct tier *mc_tier = run->mc_tier;
    if (o->etcd) {
        struct cluster_config cc = {.etcd = o->etcd,
                                    .node_name = o->node_name,
                                    .memcached = o->memcached,
                                    .api = o->http,
                                    .tls = o->etcd_tls,
                                    .lease_ttl_s = (uint32_t)o->etcd_lease_s,
                                    .tier = mc_tier};
        char cl_err[1024] = "";
        int e = cluster_start(&cc, cl_err, sizeof cl_err);
        if (e < 0) {
            fprintf(stderr, "shoald: cluster: %s\n", cl_err[0] ? cl_err : strerror(-e));
            return 1;
        }
        /* A start that ends in exit() rather than through teardown still
         * leaves the cluster at once, not a lease later (a no-op after
         * cluster_stop). */
        atexit(cluster_stop);
    }
    /* One worker pool for the back end work of every front end: the
     * engine's, started with it and stopped after the front ends. */
    const char *policy = o->policy ? o->policy : evict_find(NULL)->name;
    struct engine_config ec = {
        .cache_bytes = o->cache_bytes,
        .policy = policy,
        .workers = o->threads,
        .tiers = mc_tier ? &mc_tier : NULL,
        .ntiers = mc_tier ? 1 : 0,
    };
    int r = engine_create(&ec, &run->engine);
    if (r < 0) {
        run->engine = NULL;
        fprintf(stderr, "shoald: cannot create the cache (%s): %s\n", policy, strerror(-r));
        return 1;
    }
    struct engine *engine = run->engine;
    if (persist_start_volumes(engine, o, state) < 0)
        return 1;
    char rl_err[1024] = "";
    if (reloader_new(argc, argv, o, engine, state, &run->reloader, rl_err, sizeof rl_err) < 0) {
        fprintf(stderr, "shoald: %s\n", rl_err);
        return 1;
    }

    const struct frontend_list *allow = daemon_allow(o);
    for (unsigned i = 0; i < daemon_nfrontends; i++) {
        const struct frontend_ops *fe = daemon_frontends[i];
        char fe_err[320] = "";
        struct frontend_config fcfg = {
            .readonly = o->readonly,
            .opts = o->frontend_opts[i],
            .allow = allow,
            .err = fe_err,
            .errlen = sizeof fe_err,
        };
        r = fe->start(engine, &fcfg, &run->fe_state[i]);
        if (r < 0) {
            run->fe_state[i] = NULL;
            if (fe_err[0])
                fprintf(stderr, "shoald: %s\n", fe_err);
            else
                fprintf(stderr, "shoald: cannot start the %s server: %s\n", fe->name, strerror(-r));
            return 1;
        }
    }

    /* Warm moves: volumes handed to this node are adopted from now on. */
    struct mgmt_hooks hooks = persist_hooks(state, run->reloader);
    fence_setup(engine);
    move_setup(engine, &hooks, o->nbacking_dirs ? (const char *const *)o->backing_dirs : NULL);
    run->hooks_set = true;
    if (strcmp(o->http, "off") != 0) {
        struct mgmt_config mc = {
            .listen = o->http,
            .token = run->token,
            .tls_certificates = o->http_tls_certificates,
            .backing_dirs = o->nbacking_dirs ? o->backing_dirs : NULL,
            .hooks = hooks,
            .memcached = mc_tier,
        };
        r = mgmt_start(engine, &mc, &run->mgmt);
        if (r < 0) {
            run->mgmt = NULL;
            fprintf(stderr, "shoald: cannot start the management API on %s: %s\n", o->http,
                    strerror(-r));
            return 1;
        }
        /* --http HOST:0: the cluster's node record names the port bound. */
        size_t hl = strlen(o->http);
        if (o->etcd && hl > 2 && strcmp(o->http + hl - 2, ":0") == 0) {
            char api[300];
            snprintf(api, sizeof api, "%.*s:%u", (int)(hl - 2), o->http, mgmt_port(run->mgmt));
            if (cluster_set_api(api) < 0)
                log_warn(main, "cluster: cannot register the API address %s", api);
        }
    }

    if (o->pid_file) {
        /* Not through a symlink: root writing a path another user could
         * point elsewhere (a pid file in a shared directory) would clobber
         * the file it points at. */
        int pfd = open(o->pid_file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        /* Ours from here (a failed write leaves an empty one): teardown
         * removes it. */
        run->pid_written = pfd >= 0;
        if (pfd < 0 || dprintf(pfd, "%d\n", (int)getpid()) < 0) {
            int e = errno;
            fprintf(stderr, "shoald: cannot write pid file '%s': %s\n", o->pid_file,
                    e == ELOOP ? "it is a symbolic link" : strerror(e));
            if (pfd >= 0)
                close(pfd);
            return 1;
        }
        close(pfd);
    }

    /* Last: every listener is bound, every volume open, the pid and token
     * files written. */
    if (o->uid != (uid_t)-1) {
        char why[256];
        if (state_give_to(state, o->uid, o->gid) < 0)
            log_warn(main, "cannot give state dir %s to %s: %s", state_dir, o->user,
                     strerror(errno));
        r = privdrop(o->user, o->uid, o->gid, why, sizeof why);
        if (r < 0) {
            fprintf(stderr, "shoald: --user %s: %s\n", o->user, why);
            return 1;
        }
        log_info(main, "running as user %s (uid %u, gid %u)", o->user, (unsigned)o->uid,
                 (unsigned)o->gid);
        /* etcd's TLS files are read again at each connection (etcd.c):
         * one this user cannot read would lose the lease a TTL later. */
        const char *opt, *path;
        r = etcd_tls_readable(&o->etcd_tls, &opt, &path);
        if (r < 0) {
            fprintf(stderr, "shoald: %s %s: not readable by user %s (%s)\n", opt, path, o->user,
                    strerror(-r));
            return 1;
        }
    }
    if (state && access(state_dir, W_OK) < 0)
        log_warn(main, "state dir %s is not writable (%s): API changes will not be saved",
                 state_dir, strerror(errno));
    if (state)
        log_info(main, "API changes are kept in %s", state_file(state));
    else if (state_skipped)
        log_warn(main,
                 "no state file: %s (API changes last until shoald stops; "
                 "--state-dir DIR keeps them elsewhere)",
                 state_err);
    else
        log_info(main, "no state dir: volume changes made through the API last until shoald "
                       "stops (--state-dir DIR keeps them)");

    char sz[32];
    log_info(main, "shoald %s ready: %u volume(s), cache %s, policy %s", SHOAL_VERSION,
             engine_volume_count(engine), format_size(o->cache_bytes, sz, sizeof sz), policy);
    if (!o->foreground)
        log_use_syslog("shoald");
    ready(*notify_fd, o->foreground);
    notify_ready("serving %u volume(s), cache %s", engine_volume_count(engine), sz);
    return 0;
}

int main(int argc, char **argv)
{
    static struct daemon_run run; /* MAX_VOLUMES pointers: not on the stack */
    run.o = calloc(1, sizeof *run.o);
    if (!run.o)
        return 1;
    int pr = options_parse(argc, argv, run.o);
    if (pr != 0) {
        teardown(&run, false);
        return pr > 0 ? 0 : 1;
    }
    sigset_t sigs;
    int notify_fd = -1;
    if (start(argc, argv, &run, &sigs, &notify_fd) != 0) {
        /* The parent of a daemon learns it from the pipe's end (exit 1). */
        teardown(&run, false);
        return 1;
    }

    for (;;) {
        int sig = 0;
        if (notify_wait_signal(&sigs, &sig) < 0)
            continue;
        if (sig == SIGHUP) {
            /* reloader_run logs what it did, or why it changed nothing. */
            json_t *report = NULL;
            char err[1024] = "";
            log_info(main, "SIGHUP: reloading the configuration");
            notify_reloading("reloading the configuration");
            int rr = reloader_run(run.reloader, &report, err, sizeof err);
            json_decref(report);
            /* STATUS= is what `systemctl status` shows after `systemctl
             * reload`: a refused reload must not read as done. */
            if (rr < 0)
                notify_ready("serving %u volume(s); reload refused: %s",
                             engine_volume_count(run.engine), err);
            else
                notify_ready("serving %u volume(s), configuration reloaded",
                             engine_volume_count(run.engine));
            continue;
        }
        log_info(main, "%s: shutting down", strsignal(sig));
        notify_stopping("shutting down (%s)", strsignal(sig));
        break;
    }
    teardown(&run, true);
    log_info(main, "stopped");
    return 0;
}
