/* Asynchronous volume adds: see pending.h. */
#include "mgmt/pending.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cluster/membership.h"
#include "common/log.h"
#include "mgmt/mgmt_internal.h"

struct entry {
    struct entry *next;
    struct pending *p;
    struct mgmt *m;
    struct volume_config cfg; /* name and spec point to the copies below */
    char name[MGMT_NAME_MAX + 1];
    char *spec;
    char error[1024];
    pthread_t thread;
    bool failed;   /* the open failed: error says why */
    bool hidden;   /* opened, or a failed entry dismissed: no longer shown */
    bool finished; /* the thread is done with the entry (set last, locked) */
    bool joined;
};

struct pending {
    pthread_mutex_t lock;
    struct entry *head;
};

struct pending *pending_new(void)
{
    struct pending *p = calloc(1, sizeof *p);
    if (p)
        pthread_mutex_init(&p->lock, NULL);
    return p;
}

static void entry_free(struct entry *e)
{
    free(e->spec);
    free(e);
}

/* Join finished threads and free the entries nobody shows any more.
 * Called locked: a finished thread has released the lock already. */
static void reap_locked(struct pending *p)
{
    for (struct entry **pp = &p->head; *pp;) {
        struct entry *e = *pp;
        if (e->finished && !e->joined) {
            pthread_join(e->thread, NULL);
            e->joined = true;
        }
        if (e->hidden && e->joined) {
            *pp = e->next;
            entry_free(e);
            continue;
        }
        pp = &e->next;
    }
}

void pending_free(struct pending *p)
{
    if (!p)
        return;
    /* No request adds entries any more (the server stopped first); the
     * threads still running take the lock to finish, so join unlocked. */
    pthread_mutex_lock(&p->lock);
    struct entry *head = p->head;
    p->head = NULL;
    pthread_mutex_unlock(&p->lock);
    for (struct entry *e = head; e; e = e->next)
        if (!e->joined)
            pthread_join(e->thread, NULL);
    while (head) {
        struct entry *next = head->next;
        entry_free(head);
        head = next;
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static struct entry *find_locked(struct pending *p, const char *name)
{
    for (struct entry *e = p->head; e; e = e->next)
        if (!e->hidden && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void *open_thread(void *arg)
{
    struct entry *e = arg;
    struct mgmt *m = e->m;
    const char *name = e->cfg.name;
    char why[sizeof e->error] = "";
    int r = engine_add_volume(m->engine, &e->cfg);
    if (r == -EEXIST) {
        snprintf(why, sizeof why, "a volume named %s was added meanwhile", name);
    } else if (r < 0) {
        const char *be = backend_open_error();
        snprintf(why, sizeof why, "%s", be[0] ? be : strerror(-r));
    }
    if (r < 0) {
        if (r != -EEXIST)
            cluster_release(name); /* taken by the API's add */
        log_error(mgmt, "volume %s: cannot open back end %s: %s", name, e->spec, why);
    } else {
        log_info(mgmt, "volume %s added (%s%s%s)", name, e->spec,
                 e->cfg.readonly ? ", read-only" : "", e->cfg.disabled ? ", disabled" : "");
        /* Kept exactly as a synchronous add would be; a failure leaves the
         * volume live, as there, but only the log can say so now. */
        char err[512] = "";
        int pr = m->hooks.changed ? m->hooks.changed(m->hooks.opaque, MGMT_VOLUME_ADDED, name,
                                                     &e->cfg, err, sizeof err)
                                  : 0;
        if (pr < 0)
            log_error(mgmt, "volume %s: change not saved: %s: it is lost at restart", name,
                      err[0] ? err : strerror(-pr));
    }
    pthread_mutex_lock(&e->p->lock);
    if (r < 0) {
        e->failed = true;
        memcpy(e->error, why, sizeof e->error);
    } else {
        e->hidden = true;
    }
    e->finished = true;
    pthread_mutex_unlock(&e->p->lock);
    return NULL;
}

int pending_claim(struct pending *p, const char *name)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    reap_locked(p);
    struct entry *e = find_locked(p, name);
    int r = 0;
    if (e && !e->failed)
        r = -EBUSY;
    else if (e)
        e->hidden = true;
    pthread_mutex_unlock(&p->lock);
    return r;
}

int pending_begin(struct mgmt *m, const struct volume_config *cfg)
{
    struct pending *p = m->pending;
    if (!p)
        return -ENOTSUP;
    struct entry *e = calloc(1, sizeof *e);
    if (!e || !(e->spec = strdup(cfg->backend.spec))) {
        free(e);
        return -ENOMEM;
    }
    e->p = p;
    e->m = m;
    snprintf(e->name, sizeof e->name, "%s", cfg->name);
    e->cfg = *cfg;
    e->cfg.name = e->name;
    e->cfg.backend.spec = e->spec;

    pthread_mutex_lock(&p->lock);
    reap_locked(p);
    struct entry *old = find_locked(p, cfg->name);
    if (old && !old->failed) {
        pthread_mutex_unlock(&p->lock);
        entry_free(e);
        return -EBUSY;
    }
    /* Created locked, so the thread cannot finish before it is listed. */
    int r = pthread_create(&e->thread, NULL, open_thread, e);
    if (r != 0) {
        pthread_mutex_unlock(&p->lock);
        entry_free(e);
        return -r;
    }
    if (old)
        old->hidden = true;
    e->next = p->head;
    p->head = e;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int pending_remove(struct pending *p, const char *name)
{
    if (!p)
        return -ENOENT;
    pthread_mutex_lock(&p->lock);
    struct entry *e = find_locked(p, name);
    int r = -ENOENT;
    if (e && !e->failed) {
        r = -EBUSY;
    } else if (e) {
        e->hidden = true;
        r = 0;
    }
    reap_locked(p);
    pthread_mutex_unlock(&p->lock);
    return r;
}

static json_t *entry_json(const struct entry *e, bool authorized)
{
    json_t *o = json_pack("{s:o, s:s, s:b}", "name", json_string_lossy(e->name), "state",
                          e->failed ? "failed" : "opening", "backend_hidden", !authorized);
    if (!o)
        return NULL;
    if (authorized)
        json_object_set_new(o, "backend", json_string_lossy(e->spec));
    if (e->failed)
        json_object_set_new(o, "error",
                            json_string_lossy(authorized ? e->error
                                                         : "(hidden: needs the API "
                                                           "token)"));
    return o;
}

json_t *pending_json(struct pending *p, const char *name, bool authorized)
{
    if (!p)
        return NULL;
    pthread_mutex_lock(&p->lock);
    struct entry *e = find_locked(p, name);
    json_t *o = e ? entry_json(e, authorized) : NULL;
    pthread_mutex_unlock(&p->lock);
    return o;
}

void pending_list(struct pending *p, json_t *arr, bool authorized)
{
    if (!p || !arr)
        return;
    pthread_mutex_lock(&p->lock);
    /* Oldest first, as the engine lists volumes: the list is newest first. */
    size_t n = 0;
    for (struct entry *e = p->head; e; e = e->next)
        n += !e->hidden;
    for (size_t k = n; k-- > 0;) {
        size_t i = 0;
        for (struct entry *e = p->head; e; e = e->next) {
            if (e->hidden)
                continue;
            if (i++ == k) {
                json_array_append_new(arr, entry_json(e, authorized));
                break;
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
}
