/* Worker pool implementation; see workq.h. */
#include "common/workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/log.h"

struct worker {
    struct workq *q;
    pthread_t thread;
};

struct workq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct work *head, *tail;
    unsigned queued;
    unsigned idle; /* workers waiting for work */
    bool stopping;
    unsigned nthreads;
    unsigned max;
    struct worker *workers; /* max entries */
    struct workq_config cfg;
};

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct workq *q = wk->q;
    for (;;) {
        struct work *w;
        {
            LOCK_GUARD(&q->lock);
            while (!q->head && !q->stopping) {
                q->idle++;
                pthread_cond_wait(&q->cond, &q->lock);
                q->idle--;
            }
            if (!q->head)
                break;
            w = q->head;
            q->head = w->next;
            if (!q->head)
                q->tail = NULL;
            q->queued--;
        }
        w->next = NULL;
        w->fn(w);
    }
    return NULL;
}

/* Start one more worker. Caller holds q->lock (or is the only user). */
static int spawn_locked(struct workq *q)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    unsigned i = q->nthreads;
    struct worker *wk = &q->workers[i];
    wk->q = q;
    int r = pthread_create(&wk->thread, &attr, worker_main, wk);
    pthread_attr_destroy(&attr);
    if (r != 0)
        return -r;
    char name[16];
    snprintf(name, sizeof name, "%.10s/%u", q->cfg.name ? q->cfg.name : "worker", i % 1000);
    pthread_setname_np(wk->thread, name);
    q->nthreads = i + 1;
    return 0;
}

int workq_create(const struct workq_config *cfg, struct workq **out)
{
    struct workq *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->cfg = *cfg;
    q->max = cfg->max_threads ? cfg->max_threads : 8 * cfg->threads;
    if (q->max < cfg->threads)
        q->max = cfg->threads;
    q->workers = calloc(q->max, sizeof *q->workers);
    if (!q->workers) {
        free(q);
        return -ENOMEM;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    for (unsigned i = 0; i < cfg->threads; i++) {
        int r;
        {
            LOCK_GUARD(&q->lock);
            r = spawn_locked(q);
        }
        if (r < 0) {
            workq_destroy(q);
            return r;
        }
    }
    *out = q;
    return 0;
}

void workq_submit(struct workq *q, struct work *w)
{
    w->next = NULL;
    LOCK_GUARD(&q->lock);
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->queued++;
    /* More work waiting than idle workers to take it (some workers perhaps
     * stuck on a slow back end): add one. Compare with queued, not just
     * idle == 0, since a signalled worker stays counted idle until it
     * wakes and a burst of submits would otherwise wait behind it. */
    if (q->queued > q->idle && q->nthreads < q->max && spawn_locked(q) < 0)
        log_warn(main, "cannot add a worker thread (%u running)", q->nthreads);
    pthread_cond_signal(&q->cond);
}

void workq_destroy(struct workq *q)
{
    if (!q)
        return;
    {
        LOCK_GUARD(&q->lock);
        q->stopping = true;
        pthread_cond_broadcast(&q->cond);
    }
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->workers[i].thread, NULL);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q->workers);
    free(q);
}

unsigned workq_threads(struct workq *q)
{
    LOCK_GUARD(&q->lock);
    return q->nthreads;
}

unsigned workq_queued(struct workq *q)
{
    LOCK_GUARD(&q->lock);
    return q->queued;
}
