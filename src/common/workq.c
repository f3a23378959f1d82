/* Worker pool implementation; see workq.h. */
#include "common/workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/log.h"

struct workq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct work *head, *tail;
    unsigned queued;
    bool stopping;
    unsigned nthreads;
    pthread_t *threads;
    struct workq_config cfg;
};

static void *worker_main(void *arg)
{
    struct workq *q = arg;
    void *scratch = q->cfg.scratch_new ? q->cfg.scratch_new() : NULL;
    for (;;) {
        struct work *w;
        {
            LOCK_GUARD(&q->lock);
            while (!q->head && !q->stopping)
                pthread_cond_wait(&q->cond, &q->lock);
            if (!q->head)
                break;
            w = q->head;
            q->head = w->next;
            if (!q->head)
                q->tail = NULL;
            q->queued--;
        }
        w->next = NULL;
        w->fn(w, scratch);
    }
    if (q->cfg.scratch_free)
        q->cfg.scratch_free(scratch);
    return NULL;
}

int workq_create(const struct workq_config *cfg, struct workq **out)
{
    struct workq *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->cfg = *cfg;
    q->threads = calloc(cfg->threads, sizeof *q->threads);
    if (!q->threads) {
        free(q);
        return -ENOMEM;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (unsigned i = 0; i < cfg->threads; i++) {
        int r = pthread_create(&q->threads[i], &attr, worker_main, q);
        if (r != 0) {
            pthread_attr_destroy(&attr);
            q->nthreads = i;
            workq_destroy(q);
            return -r;
        }
        char name[16];
        snprintf(name, sizeof name, "%.10s/%u", cfg->name ? cfg->name : "worker", i % 1000);
        pthread_setname_np(q->threads[i], name);
        q->nthreads = i + 1;
    }
    pthread_attr_destroy(&attr);
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
        pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q->threads);
    free(q);
}

unsigned workq_queued(struct workq *q)
{
    LOCK_GUARD(&q->lock);
    return q->queued;
}
