/* I/O buffer pool: request payload buffers without a malloc per I/O.
 *
 * Buffers come in power-of-two size classes from 4 KiB to 64 MiB, page
 * aligned (O_DIRECT-safe). Freed buffers go back to a per-class free list
 * and are reused; the pool only allocates to grow. Memory allocated (handed
 * out + cached) is capped (bufpool_init): when a request would exceed the
 * cap, cached buffers of every class are freed first, then the caller waits
 * until buffers come back, which applies back-pressure to clients instead of
 * growing without bound. One buffer bigger than the whole cap is served when
 * the pool holds nothing else, so a big request cannot wait forever.
 *
 * Lock rules: one mutex (and its condvar, for the waiters) guards the free
 * lists and the budget.
 */
#ifndef SHOAL_COMMON_BUFPOOL_H
#define SHOAL_COMMON_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

/* limit: most bytes outstanding + cached at once. */
void bufpool_init(uint64_t limit);
/* A buffer of at least len bytes (len <= 64 MiB), blocking while the
 * budget is exhausted. NULL only if len is too big or memory is truly out. */
void *bufpool_get(size_t len);
/* The same without waiting: NULL when the budget is exhausted (for threads
 * that must not block, e.g. one holding replies only it will send). */
void *bufpool_try_get(size_t len);
void bufpool_put(void *buf, size_t len);
/* The cap given to bufpool_init (front ends size per-client shares by it). */
uint64_t bufpool_limit(void);
/* Bytes currently allocated by the pool (in use + cached). */
uint64_t bufpool_bytes(void);
/* Free every cached buffer (shutdown, tests). */
void bufpool_drain(void);

#endif
