/* See tier_fake.h. One answering thread with a queue of lookups; cancel
 * takes a lookup out of the queue, or waits while the thread is answering
 * it, so that after cancel the tier never touches it again. */
#include "tier_fake.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/block.h"

struct item {
    struct fpkey key;
    uint8_t data[BLOCK_SIZE];
    struct item *next;
};

struct pending {
    struct tier_req *r;
    uint64_t due_ns;
    struct pending *next;
};

struct map_entry {
    struct tier_map_id id;
    uint64_t blk;
    struct fpkey key;
    struct map_entry *next;
};

struct fake {
    struct tier t;
    struct tier_fake_ctl *ctl;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct item *items;
    struct item *queued; /* puts waiting for a flush (ctl->put_queue) */
    unsigned nqueued;
    struct map_entry *map;
    struct pending *queue;
    struct tier_req *answering; /* the request the thread is answering now */
    bool stop;
    pthread_t thread;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct item *find_locked(struct fake *f, const struct fpkey *k)
{
    for (struct item *it = f->items; it; it = it->next)
        if (fpkey_equal(&it->key, k))
            return it;
    return NULL;
}

static void answer(struct fake *f, struct tier_req *r)
{
    enum tier_fake_mode mode = __atomic_load_n(&f->ctl->mode, __ATOMIC_ACQUIRE);
    if (mode == TIER_FAKE_FAIL) {
        tier_req_done(r, -EIO);
        return;
    }
    uint8_t copy[BLOCK_SIZE];
    for (unsigned i = 0; i < r->n; i++) {
        pthread_mutex_lock(&f->lock);
        struct item *it = find_locked(f, &r->keys[i]);
        if (it)
            memcpy(copy, it->data, BLOCK_SIZE);
        pthread_mutex_unlock(&f->lock);
        if (!it)
            continue;
        if (mode == TIER_FAKE_CORRUPT)
            copy[BLOCK_SIZE / 2] ^= 0x5a;
        tier_req_deliver(r, i, copy);
    }
    tier_req_done(r, 0);
}

static void *answer_main(void *arg)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (!f->stop && !f->queue)
            pthread_cond_wait(&f->cond, &f->lock);
        if (f->stop)
            break;
        struct pending *p = f->queue;
        uint64_t now = mono_ns();
        bool hang = __atomic_load_n(&f->ctl->mode, __ATOMIC_ACQUIRE) == TIER_FAKE_HANG;
        if (hang || p->due_ns > now) {
            /* Wait until it is due (or cancelled, or the mode changes). */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t wait = hang ? 10000000u : p->due_ns - now;
            uint64_t ns = (uint64_t)ts.tv_nsec + wait;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&f->cond, &f->lock, &ts);
            continue;
        }
        f->queue = p->next;
        f->answering = p->r;
        pthread_mutex_unlock(&f->lock);
        answer(f, p->r);
        free(p);
        pthread_mutex_lock(&f->lock);
        f->answering = NULL;
        pthread_cond_broadcast(&f->cond);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static void fk_lookup(struct tier *t, struct tier_req *r)
{
    struct fake *f = t->priv;
    __atomic_fetch_add(&f->ctl->lookups, 1, __ATOMIC_RELAXED);
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        tier_req_done(r, -ENOMEM);
        return;
    }
    p->r = r;
    p->due_ns = mono_ns() + (uint64_t)f->ctl->delay_ms * 1000000u;
    pthread_mutex_lock(&f->lock);
    struct pending **tail = &f->queue;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void fk_cancel(struct tier *t, struct tier_req *r)
{
    struct fake *f = t->priv;
    pthread_mutex_lock(&f->lock);
    for (struct pending **pp = &f->queue; *pp; pp = &(*pp)->next) {
        if ((*pp)->r == r) {
            struct pending *p = *pp;
            *pp = p->next;
            free(p);
            break;
        }
    }
    while (f->answering == r)
        pthread_cond_wait(&f->cond, &f->lock);
    pthread_mutex_unlock(&f->lock);
}

static void land_locked(struct fake *f, struct item *it)
{
    if (find_locked(f, &it->key)) {
        free(it);
        return;
    }
    it->next = f->items;
    f->items = it;
}

static void fk_put(struct tier *t, const struct fpkey *key, const void *block)
{
    struct fake *f = t->priv;
    __atomic_fetch_add(&f->ctl->puts, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&f->lock);
    if (f->ctl->put_queue && f->nqueued == f->ctl->put_queue) {
        f->ctl->put_drops++;
        pthread_mutex_unlock(&f->lock);
        return;
    }
    struct item *it = malloc(sizeof *it);
    if (it) {
        it->key = *key;
        memcpy(it->data, block, BLOCK_SIZE);
        if (f->ctl->put_queue) {
            it->next = f->queued;
            f->queued = it;
            f->nqueued++;
        } else {
            land_locked(f, it);
        }
    }
    pthread_mutex_unlock(&f->lock);
}

static int fk_flush(struct tier *t, uint32_t timeout_ms)
{
    (void)timeout_ms;
    struct fake *f = t->priv;
    pthread_mutex_lock(&f->lock);
    while (f->queued) {
        struct item *it = f->queued;
        f->queued = it->next;
        land_locked(f, it);
    }
    f->nqueued = 0;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

static void fk_map_put(struct tier *t, const struct tier_map_id *id, uint64_t blk,
                       const struct fpkey *key)
{
    struct fake *f = t->priv;
    struct map_entry *m = malloc(sizeof *m);
    if (!m)
        return;
    *m = (struct map_entry){.id = *id, .blk = blk, .key = *key};
    pthread_mutex_lock(&f->lock);
    m->next = f->map;
    f->map = m;
    pthread_mutex_unlock(&f->lock);
}

static int fk_map_lookup(struct tier *t, const struct tier_map_id *id, uint64_t first, unsigned n,
                         struct fpkey *keys, uint64_t *found)
{
    struct fake *f = t->priv;
    __atomic_fetch_add(&f->ctl->map_lookups, 1, __ATOMIC_RELAXED);
    unsigned fails = __atomic_load_n(&f->ctl->map_fails, __ATOMIC_RELAXED);
    while (fails && !__atomic_compare_exchange_n(&f->ctl->map_fails, &fails, fails - 1, false,
                                                 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    if (fails)
        return -ETIMEDOUT;
    int hits = 0;
    pthread_mutex_lock(&f->lock);
    /* Newest first: the latest entry of a block wins. */
    for (struct map_entry *m = f->map; m; m = m->next) {
        if (m->blk < first || m->blk >= first + n || memcmp(&m->id, id, sizeof *id) != 0)
            continue;
        unsigned i = (unsigned)(m->blk - first);
        if (found[i / 64] & (1ull << (i % 64)))
            continue;
        found[i / 64] |= 1ull << (i % 64);
        keys[i] = m->key;
        hits++;
    }
    pthread_mutex_unlock(&f->lock);
    return hits;
}

static void fk_forget(struct tier *t, const struct fpkey *key)
{
    struct fake *f = t->priv;
    pthread_mutex_lock(&f->lock);
    for (struct item **pp = &f->items; *pp; pp = &(*pp)->next) {
        if (fpkey_equal(&(*pp)->key, key)) {
            struct item *it = *pp;
            *pp = it->next;
            free(it);
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
}

static void free_items(struct item *it)
{
    while (it) {
        struct item *next = it->next;
        free(it);
        it = next;
    }
}

static void fk_close(struct tier *t)
{
    struct fake *f = t->priv;
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    while (f->queue) {
        struct pending *p = f->queue;
        f->queue = p->next;
        free(p);
    }
    free_items(f->items);
    free_items(f->queued);
    while (f->map) {
        struct map_entry *m = f->map;
        f->map = m->next;
        free(m);
    }
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    free(f);
}

/* The map is there only for a tier made with ctl->with_map. */
static bool fk_map_ready(struct tier *t)
{
    return ((struct fake *)t->priv)->ctl->with_map;
}

static const struct tier_ops fake_tier_ops = {
    .name = "fake",
    .lookup = fk_lookup,
    .cancel = fk_cancel,
    .put = fk_put,
    .forget = fk_forget,
    .close = fk_close,
    .map_lookup = fk_map_lookup,
    .map_put = fk_map_put,
    .map_ready = fk_map_ready,
    .flush = fk_flush,
};

struct tier *tier_fake_new(struct tier_fake_ctl *ctl, uint32_t timeout_ms)
{
    struct fake *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->ctl = ctl;
    f->t.ops = &fake_tier_ops;
    f->t.priv = f;
    f->t.timeout_ms = timeout_ms;
    strcpy(f->t.name, "fake");
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    if (pthread_create(&f->thread, NULL, answer_main, f) != 0) {
        free(f);
        return NULL;
    }
    return &f->t;
}

bool tier_fake_holds(struct tier *t, const struct fpkey *key)
{
    struct fake *f = t->priv;
    pthread_mutex_lock(&f->lock);
    bool held = find_locked(f, key) != NULL;
    pthread_mutex_unlock(&f->lock);
    return held;
}
