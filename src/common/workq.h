/* Worker pool: threads running submitted work items in FIFO order. Used for
 * everything that may block on a back end, so the threads that parse
 * requests never wait on storage.
 *
 * The pool starts with `threads` workers and grows by one, up to
 * `max_threads`, whenever a submit leaves more items queued than workers
 * idle: one slow or hung back end must not take every worker and stall
 * volumes on healthy storage. Workers added this way stay until the pool is
 * destroyed (bounded by max_threads).
 *
 * Lock rules: one mutex + condvar guards the queue; items run unlocked. */
#ifndef SHOAL_COMMON_WORKQ_H
#define SHOAL_COMMON_WORKQ_H

struct work {
    void (*fn)(struct work *w);
    struct work *next;
};

struct workq;

struct workq_config {
    unsigned threads;     /* started at creation */
    unsigned max_threads; /* growth limit (0: 8 x threads) */
    const char *name;     /* thread name prefix (<= 10 chars) */
};

int workq_create(const struct workq_config *cfg, struct workq **out);
void workq_submit(struct workq *q, struct work *w);
/* Runs everything queued, then stops and joins the threads. */
void workq_destroy(struct workq *q);
unsigned workq_queued(struct workq *q);
unsigned workq_threads(struct workq *q);

#endif
