/* See mc_alloc.h. */
#include "cluster/mc_alloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/stats.h"
#include "core/block.h"

_Static_assert(MC_ALLOC_SPARE >= BLOCK_SIZE + 1, "a block value and its NUL fit the spare");

/* Nothing libmemcached needs is near this (a handle with 64 servers takes
 * about 1 MiB); a larger request is a value a server claims to be that
 * big: refused (libmemcached fails the read) rather than allocated and
 * waited for, 2 GiB at a time. */
#define MC_ALLOC_MAX (8u << 20)

static void counted(struct mc_alloc *a)
{
    if (a->allocs)
        STAT_ADD(*a->allocs, 1);
}

/* The spare, if it is free and n is a block value's size. */
static void *lend(struct mc_alloc *a, size_t n)
{
    if (!a->spare || a->lent || n < BLOCK_SIZE || n > MC_ALLOC_SPARE)
        return NULL;
    a->lent = true;
    return a->spare;
}

static void *hook_malloc(const memcached_st *mc, const size_t n, void *ctx)
{
    (void)mc;
    struct mc_alloc *a = ctx;
    void *p = lend(a, n);
    if (p)
        return p;
    if (n > MC_ALLOC_MAX)
        return NULL;
    counted(a);
    return malloc(n);
}

static void *hook_calloc(const memcached_st *mc, size_t nelem, const size_t size, void *ctx)
{
    (void)mc;
    if (size && nelem > MC_ALLOC_MAX / size)
        return NULL;
    counted(ctx);
    return calloc(nelem, size);
}

static void *hook_realloc(const memcached_st *mc, void *p, const size_t n, void *ctx)
{
    struct mc_alloc *a = ctx;
    if (!p)
        return hook_malloc(mc, n, ctx);
    if (n > MC_ALLOC_MAX)
        return NULL;
    if (p == a->spare) {
        if (n <= MC_ALLOC_SPARE)
            return p;
        /* Grown past the spare (not a block): its bytes move to malloc. */
        counted(a);
        void *q = malloc(n);
        if (q) {
            memcpy(q, a->spare, MC_ALLOC_SPARE);
            a->lent = false;
        }
        return q;
    }
    counted(a);
    return realloc(p, n);
}

static void hook_free(const memcached_st *mc, void *p, void *ctx)
{
    (void)mc;
    mc_alloc_release(ctx, p);
}

void mc_alloc_init(struct mc_alloc *a, unsigned char *spare, uint64_t *allocs)
{
    a->spare = spare;
    a->lent = false;
    a->allocs = allocs;
}

int mc_alloc_attach(struct mc_alloc *a, memcached_st *mc)
{
    memcached_return_t rc =
        memcached_set_memory_allocators(mc, hook_malloc, hook_free, hook_realloc, hook_calloc, a);
    return memcached_failed(rc) ? -EINVAL : 0;
}

void mc_alloc_release(struct mc_alloc *a, void *value)
{
    if (value && value == a->spare)
        a->lent = false;
    else
        free(value);
}
