/* See open_all.h. */
#include "daemon/open_all.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cluster/membership.h"
#include "common/log.h"
#include "core/volume.h" /* engine_add_volume_backend */

struct open_run {
    struct open_job *jobs;
    struct backend **be;
    size_t n;
    size_t next; /* atomic: the next job to take */
};

static void open_one(struct open_job *j, struct backend **out)
{
    /* As volume_open does: a read-only export opens its back end
     * read-only. */
    struct backend_params bp = j->cfg.backend;
    bp.readonly = bp.readonly || j->cfg.readonly;
    j->err = backend_open(&bp, out);
    if (j->err < 0) {
        /* The error is per thread: keep the words for the caller. */
        snprintf(j->why, sizeof j->why, "%s", backend_open_error());
        log_debug(main, "volume %s: cannot open back end '%s': %s", j->cfg.name, bp.spec,
                  strerror(-j->err));
        *out = NULL;
    }
}

/* A back end reached through a URI (nbd://, nbd+unix://...) is what can
 * hang; files and devices open at once, and in order, so that of two
 * volumes on one image the later one is refused, always the same. */
static bool is_remote(const struct open_job *j)
{
    return strstr(j->cfg.backend.spec, "://") != NULL;
}

static void *worker(void *arg)
{
    struct open_run *run = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&run->next, 1, __ATOMIC_RELAXED);
        if (i >= run->n)
            return NULL;
        if (is_remote(&run->jobs[i]))
            open_one(&run->jobs[i], &run->be[i]);
    }
}

int open_all(struct engine *e, struct open_job *jobs, size_t n, size_t *failed)
{
    *failed = 0;
    if (n == 0)
        return 0;
    /* One writer per volume in a cluster: refused before any back end is
     * opened, with the owner's name. */
    for (size_t k = 0; k < n; k++) {
        int c =
            cluster_claim(jobs[k].cfg.name, jobs[k].cfg.readonly, jobs[k].why, sizeof jobs[k].why);
        if (c < 0) {
            jobs[k].err = c;
            *failed = k;
            while (k-- > 0)
                cluster_release(jobs[k].cfg.name);
            return c;
        }
    }
    struct backend **be = calloc(n, sizeof *be);
    if (!be)
        return -ENOMEM;
    struct open_run run = {.jobs = jobs, .be = be, .n = n};
    pthread_t tids[OPEN_ALL_THREADS];
    size_t nremote = 0;
    for (size_t i = 0; i < n; i++)
        nremote += is_remote(&jobs[i]);
    size_t nt = 0, want = nremote < OPEN_ALL_THREADS ? nremote : OPEN_ALL_THREADS;
    /* This thread helps once the local ones are open: one remote volume
     * needs no other thread; nor does it matter when none can be made. */
    while (nt + 1 < want && pthread_create(&tids[nt], NULL, worker, &run) == 0)
        nt++;
    for (size_t i = 0; i < n; i++)
        if (!is_remote(&jobs[i]))
            open_one(&jobs[i], &be[i]);
    worker(&run);
    for (size_t t = 0; t < nt; t++)
        pthread_join(tids[t], NULL);

    size_t bad = 0;
    while (bad < n && jobs[bad].err == 0)
        bad++;
    int r = 0;
    if (bad < n) {
        r = jobs[bad].err;
        *failed = bad;
    }
    /* Nothing is registered when an open failed: start-up stops. */
    for (size_t k = 0; r == 0 && k < n; k++) {
        backend_set_open_error("%s", ""); /* so a refusal below says its own */
        struct backend *b = be[k];
        be[k] = NULL;
        /* Takes the back end, closing it on failure. */
        r = jobs[k].err = engine_add_volume_backend(e, &jobs[k].cfg, b);
        if (r < 0) {
            snprintf(jobs[k].why, sizeof jobs[k].why, "%s", backend_open_error());
            *failed = k;
        }
    }
    /* The back ends not registered are closed, so upstream connections end
     * cleanly. */
    for (size_t k = 0; k < n; k++)
        if (be[k])
            backend_close(be[k]);
    free(be);
    for (size_t k = 0; r < 0 && k < n; k++)
        cluster_release(jobs[k].cfg.name);
    return r;
}
