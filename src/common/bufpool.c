/* I/O buffer pool implementation; see bufpool.h. */
#include "common/bufpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/util.h"

#define MIN_SHIFT 12
#define MAX_SHIFT 26
#define NCLASS    (MAX_SHIFT - MIN_SHIFT + 1)

struct freebuf {
    struct freebuf *next;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t limit;
    uint64_t allocated; /* bytes malloc'ed and not freed (in use + cached) */
    struct freebuf *free[NCLASS];
    unsigned nfree[NCLASS];
} pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
    .limit = 512ull << 20,
};

void bufpool_init(uint64_t limit)
{
    LOCK_GUARD(&pool.lock);
    pool.limit = limit;
}

uint64_t bufpool_limit(void)
{
    LOCK_GUARD(&pool.lock);
    return pool.limit;
}

static int class_of(size_t len)
{
    if (len <= (1u << MIN_SHIFT))
        return 0;
    int shift = 64 - __builtin_clzll((unsigned long long)len - 1);
    return shift > MAX_SHIFT ? -1 : shift - MIN_SHIFT;
}

/* Release cached buffers of other classes to make room; returns true if any. */
static bool reclaim_locked(void)
{
    bool any = false;
    for (int c = NCLASS - 1; c >= 0; c--) {
        while (pool.free[c]) {
            struct freebuf *f = pool.free[c];
            pool.free[c] = f->next;
            pool.nfree[c]--;
            pool.allocated -= 1ull << (c + MIN_SHIFT);
            free(f);
            any = true;
        }
    }
    return any;
}

static void *get(size_t len, bool wait)
{
    int c = class_of(len);
    if (c < 0)
        return NULL;
    size_t size = (size_t)1 << (c + MIN_SHIFT);
    LOCK_GUARD(&pool.lock);
    for (;;) {
        if (pool.free[c]) {
            struct freebuf *f = pool.free[c];
            pool.free[c] = f->next;
            pool.nfree[c]--;
            return f;
        }
        /* A single buffer larger than the whole budget is still served,
         * alone, so a big request cannot wedge forever. */
        if (pool.allocated + size <= pool.limit || pool.allocated == 0) {
            void *p = aligned_alloc(4096, size);
            if (!p)
                return NULL;
            pool.allocated += size;
            return p;
        }
        if (reclaim_locked())
            continue;
        if (!wait)
            return NULL;
        pthread_cond_wait(&pool.cond, &pool.lock);
    }
}

void *bufpool_get(size_t len)
{
    return get(len, true);
}

void *bufpool_try_get(size_t len)
{
    return get(len, false);
}

void bufpool_put(void *buf, size_t len)
{
    if (!buf)
        return;
    int c = class_of(len);
    LOCK_GUARD(&pool.lock);
    struct freebuf *f = buf;
    f->next = pool.free[c];
    pool.free[c] = f;
    pool.nfree[c]++;
    pthread_cond_broadcast(&pool.cond);
}

uint64_t bufpool_bytes(void)
{
    LOCK_GUARD(&pool.lock);
    return pool.allocated;
}

void bufpool_drain(void)
{
    LOCK_GUARD(&pool.lock);
    reclaim_locked();
}
