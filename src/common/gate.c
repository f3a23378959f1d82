/* The write gate (gate.h). */
#include "common/gate.h"

#include "common/cleanup.h"

void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->shared = 0;
    g->excl_waiting = 0;
    g->excl = false;
}

void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

void gate_shared(struct gate *g)
{
    LOCK_GUARD(&g->lock);
    while (g->excl || g->excl_waiting)
        pthread_cond_wait(&g->cond, &g->lock);
    g->shared++;
}

bool gate_try_shared(struct gate *g)
{
    LOCK_GUARD(&g->lock);
    if (g->excl || g->excl_waiting)
        return false;
    g->shared++;
    return true;
}

void gate_shared_end(struct gate *g)
{
    LOCK_GUARD(&g->lock);
    if (--g->shared == 0 && g->excl_waiting)
        pthread_cond_broadcast(&g->cond);
}

void gate_excl(struct gate *g)
{
    LOCK_GUARD(&g->lock);
    g->excl_waiting++;
    while (g->excl || g->shared)
        pthread_cond_wait(&g->cond, &g->lock);
    g->excl_waiting--;
    g->excl = true;
}

void gate_excl_end(struct gate *g)
{
    LOCK_GUARD(&g->lock);
    g->excl = false;
    pthread_cond_broadcast(&g->cond);
}
