/* What libmemcached allocates for one of the tier's handles: a spare
 * buffer that a one-key get's value is read into and handed back in, so
 * that a remote hit allocates nothing (the project's "no malloc per I/O"),
 * and a count of everything that did reach malloc.
 *
 * memcached_get returns its value in a buffer the handle allocated and
 * gives up (libmemcached 1.1: realloc(NULL, 5120) for a 4 KiB value, the
 * value and its NUL grown in 1 KiB steps; the next get allocates again).
 * With mc_alloc_attach, an allocation of BLOCK_SIZE .. MC_ALLOC_SPARE
 * bytes while the spare is not lent gets the spare; anything else,
 * including a value that grows past the spare, goes to malloc/realloc/
 * calloc and is counted. Freeing the spare, through the handle or
 * mc_alloc_release, makes it free again; any other pointer goes to free.
 *
 * Ownership: a struct mc_alloc and its spare belong to one lookup worker
 * or inline slot (memcached.c) and outlive every handle built with them:
 * handles are rebuilt (mc_conn_refresh) on ring changes and after
 * failures, and a handle freed while it holds the spare (a get that failed
 * after the value was allocated) returns it here through its free hook.
 * Not thread-safe, like the handle: only the thread that uses the handle
 * (the worker's own, or the caller holding the inline slot) may call into
 * it or free it. The count is a relaxed atomic, read by any thread. */
#ifndef SHOAL_CLUSTER_MC_ALLOC_H
#define SHOAL_CLUSTER_MC_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

#include <libmemcached/memcached.h>

/* Room for a 4 KiB value as any libmemcached grows it (1.1 asks 5120). */
#define MC_ALLOC_SPARE (2 * 4096)

struct mc_alloc {
    unsigned char *spare; /* MC_ALLOC_SPARE bytes, or NULL: count only */
    bool lent;            /* spare is in a handle's result or with the caller */
    uint64_t *allocs;     /* allocations that reached malloc (may be NULL) */
};

/* spare: MC_ALLOC_SPARE bytes owned by the caller (NULL: nothing is lent,
 * allocations are only counted); allocs: a counter shared by several
 * mc_allocs, or NULL. */
void mc_alloc_init(struct mc_alloc *a, unsigned char *spare, uint64_t *allocs);
/* Make mc allocate through a (set at once after memcached_create, before
 * the handle allocates anything it keeps). 0 or -EINVAL. */
int mc_alloc_attach(struct mc_alloc *a, memcached_st *mc);
/* Free a value that a get on a handle attached to a returned (NULL is
 * fine): the spare is free again, anything else is freed. */
void mc_alloc_release(struct mc_alloc *a, void *value);

#endif
