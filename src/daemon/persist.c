/* Start-up volumes and the API's hooks; see persist.h. */
#include "daemon/persist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/open_all.h"

/* One line on stderr for a volume that could not be opened; why: the back
 * end's words, or "". */
static void open_failed(const char *prefix, const char *name, const char *spec, int r,
                        const char *why)
{
    /* A refused image format, an image in use: the back end's sentence
     * already names the file, and says what to do. */
    if ((r == -EMEDIUMTYPE || r == -EBUSY) && why[0])
        fprintf(stderr, "shoald: %svolume %s: %s\n", prefix, name, why);
    else
        fprintf(stderr, "shoald: %svolume %s: cannot open '%s': %s\n", prefix, name, spec,
                why[0] ? why : strerror(-r));
}

static bool in_options(const struct daemon_options *o, const char *name)
{
    for (unsigned i = 0; i < o->nvolumes; i++)
        if (!strcmp(o->volumes[i].name, name))
            return true;
    return false;
}

/* The API's volumes' back ends exist, checked before any volume is
 * opened so that a missing one is the only line (as for the config's). */
static int check_state_volumes(struct daemon_options *o, struct state *st)
{
    static struct volume_config api[MAX_VOLUMES];
    size_t n = state_volumes(st, api, MAX_VOLUMES);
    for (size_t i = 0; i < n; i++) {
        if (in_options(o, api[i].name))
            continue;
        char *spec = NULL;
        int r = options_resolve_spec(o, api[i].backend.spec, &spec);
        free(spec);
        if (r < 0) {
            fprintf(stderr, "shoald: %s: volume %s: cannot open '%s': %s\n", state_file(st),
                    api[i].name, api[i].backend.spec, strerror(-r));
            return -1;
        }
    }
    return 0;
}

int persist_start_volumes(struct engine *e, struct daemon_options *o, struct state *st)
{
    if (check_state_volumes(o, st) < 0)
        return -1;
    /* The config's volumes and the API's are opened together (open_all.h),
     * in this order: the config's first, as they always were. */
    struct open_job *jobs = calloc((size_t)o->nvolumes + MAX_VOLUMES, sizeof *jobs);
    char **specs = calloc(MAX_VOLUMES, sizeof *specs);
    const char **shown = calloc((size_t)o->nvolumes + MAX_VOLUMES, sizeof *shown);
    if (!jobs || !specs || !shown) {
        fprintf(stderr, "shoald: cannot open the volumes: %s\n", strerror(ENOMEM));
        free(jobs);
        free(specs);
        free(shown);
        return -1;
    }
    size_t njobs = 0, nconfig;
    for (unsigned i = 0; i < o->nvolumes; i++) {
        struct volume_config c = o->volumes[i];
        if (state_is_removed(st, c.name)) {
            log_info(main, "volume %s: not started: removed through the API (%s)", c.name,
                     state_file(st));
            continue;
        }
        int on = state_enabled(st, c.name);
        if (on >= 0)
            c.disabled = !on;
        shown[njobs] = c.backend.spec;
        jobs[njobs++].cfg = c;
    }
    nconfig = njobs;
    /* A volume made permanent in the config since it was added through
     * the API: the file's definition wins, the state file forgets the
     * API's. (Names first: forgetting frees the strings state_volumes
     * lends.) */
    static struct volume_config api[MAX_VOLUMES];
    size_t napi = state_volumes(st, api, MAX_VOLUMES);
    char names[64][256];
    size_t nnames = 0;
    for (size_t i = 0; i < napi && nnames < 64; i++)
        if (in_options(o, api[i].name))
            snprintf(names[nnames++], sizeof names[0], "%s", api[i].name);
    for (size_t i = 0; i < nnames; i++) {
        char err[512] = "";
        log_warn(main, "volume %s: in the config and added through the API: the config's is used",
                 names[i]);
        if (state_forget(st, names[i], err, sizeof err) < 0)
            log_warn(main, "%s", err);
    }
    napi = state_volumes(st, api, MAX_VOLUMES);
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s: ", state_file(st));
    int ret = 0;
    size_t nspecs = 0;
    for (size_t i = 0; i < napi; i++) {
        if (in_options(o, api[i].name))
            continue; /* more than 64 such: the rest wait for the next start */
        api[i].backend.backing_dirs = o->nbacking_dirs ? o->backing_dirs : NULL;
        /* As checked above: a relative path (curl may send one) from the
         * directory shoald started in, not from "/" of a daemon. */
        char *spec = NULL;
        int r = options_resolve_spec(o, api[i].backend.spec, &spec);
        if (r < 0) {
            open_failed(prefix, api[i].name, api[i].backend.spec, r, "");
            ret = -1;
            break;
        }
        specs[nspecs++] = spec;
        shown[njobs] = api[i].backend.spec;
        jobs[njobs].cfg = api[i];
        jobs[njobs++].cfg.backend.spec = spec;
    }
    size_t bad = 0;
    int r = ret < 0 ? 0 : open_all(e, jobs, njobs, &bad);
    if (r < 0) {
        open_failed(bad < nconfig ? "" : prefix, jobs[bad].cfg.name, shown[bad], r, jobs[bad].why);
        ret = -1;
    }
    for (size_t i = 0; i < nspecs; i++)
        free(specs[i]);
    free(specs);
    free(shown);
    free(jobs);
    return ret;
}

/* ---- the management server's hooks ---- */

struct persist_ctx {
    struct state *st;
    struct reloader *rl;
};
static struct persist_ctx hooks_ctx; /* one daemon per process */

static int hook_changed(void *opaque, enum mgmt_change_kind kind, const char *name,
                        const struct volume_config *cfg, char *err, size_t errlen)
{
    struct persist_ctx *c = opaque;
    switch (kind) {
    case MGMT_VOLUME_ADDED:
        return state_note_added(c->st, cfg, err, errlen);
    case MGMT_VOLUME_REMOVED:
        return state_note_removed(c->st, name, err, errlen);
    case MGMT_VOLUME_ENABLED:
    case MGMT_VOLUME_DISABLED:
        return state_note_enabled(c->st, name, kind == MGMT_VOLUME_ENABLED, err, errlen);
    }
    return -EINVAL;
}

static int hook_reload(void *opaque, json_t **report, char *err, size_t errlen)
{
    struct persist_ctx *c = opaque;
    return reloader_run(c->rl, report, err, errlen);
}

struct mgmt_hooks persist_hooks(struct state *st, struct reloader *rl)
{
    hooks_ctx = (struct persist_ctx){st, rl};
    return (struct mgmt_hooks){
        .opaque = &hooks_ctx,
        .changed = hook_changed,
        .reload = hook_reload,
    };
}
