/* The core's side of a tier lookup: wait with a deadline, cancel on
 * timeout, verify what came back. See tier.h. */
#include "core/tier.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/stats.h"
#include "common/util.h"
#include "core/block.h"

void tier_req_init(struct tier_req *r)
{
    memset(r, 0, sizeof *r);
    r->held = -1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
}

void tier_req_destroy(struct tier_req *r)
{
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
}

static void mark_locked(struct tier_req *r, unsigned i, bool ok)
{
    if (ok)
        bitmap_set(r->found, i);
    else
        r->corrupt++;
}

void tier_req_deliver(struct tier_req *r, unsigned i, const void *block)
{
    /* Unlocked: the caller leaves keys[] and bufs[] alone until tier_lookup
     * returns, which is after cancel, and a tier delivers only until cancel
     * returns (tier.h); held is the delivering thread's. A block lands in
     * its buffer at once, checked or not: only `found` says it is usable,
     * and a buffer not found is the back end's to fill. */
    if (i >= r->n)
        return;
    memcpy(r->bufs[i], block, BLOCK_SIZE);
    if (r->held < 0) {
        r->held = (int)i;
        return;
    }
    unsigned h = (unsigned)r->held;
    r->held = -1;
    bool okh, ok;
    fpkey_verify2(&r->keys[h], r->bufs[h], &r->keys[i], r->bufs[i], &okh, &ok);
    LOCK_GUARD(&r->lock);
    if (!r->open)
        return;
    mark_locked(r, h, okh);
    mark_locked(r, i, ok);
}

void tier_req_done(struct tier_req *r, int status)
{
    int h = r->held;
    bool ok = h >= 0 && fpkey_verify(&r->keys[h], r->bufs[h]);
    r->held = -1;
    LOCK_GUARD(&r->lock);
    if (!r->open)
        return;
    if (h >= 0)
        mark_locked(r, (unsigned)h, ok);
    r->open = false;
    r->done = true;
    r->status = status;
    pthread_cond_signal(&r->cond);
}

int tier_lookup(struct tier *t, struct tier_req *r)
{
    if (r->n == 0 || r->n > TIER_BATCH_MAX)
        return -EINVAL;
    {
        LOCK_GUARD(&r->lock);
        memset(r->found, 0, sizeof r->found);
        r->status = 0;
        r->corrupt = 0;
        r->held = -1;
        r->done = false;
        r->open = true;
    }
    STAT_ADD(t->c.lookups, 1);
    STAT_ADD(t->c.keys, r->n);
    t->ops->lookup(t, r);

    struct timespec until;
    deadline_after_ms(t->timeout_ms, &until);
    bool timed_out = false;
    {
        LOCK_GUARD(&r->lock);
        while (!r->done && !timed_out)
            timed_out = pthread_cond_timedwait(&r->cond, &r->lock, &until) == ETIMEDOUT;
        if (!r->done)
            r->open = false; /* later deliveries are ignored */
    }
    if (timed_out) {
        /* After cancel the tier no longer touches r; blocks it marked
         * found before that are whole and checked, so still usable. */
        t->ops->cancel(t, r);
        STAT_ADD(t->c.timeouts, 1);
    }
    LOCK_GUARD(&r->lock);
    if (r->done && r->status < 0) {
        STAT_ADD(t->c.errors, 1);
        memset(r->found, 0, sizeof r->found);
        return r->status;
    }
    /* Every found block was checked before it was marked found. */
    STAT_ADD(t->c.corrupt, r->corrupt);
    int usable = 0;
    for (unsigned i = 0; i < r->n; i++)
        usable += tier_req_found(r, i);
    STAT_ADD(t->c.hits, (uint64_t)usable);
    return usable ? usable : (timed_out ? -ETIMEDOUT : 0);
}

void tier_put(struct tier *t, const struct fpkey *key, const void *block)
{
    STAT_ADD(t->c.puts, 1);
    t->ops->put(t, key, block);
}

void tier_close(struct tier *t)
{
    if (t)
        t->ops->close(t);
}

int tier_map_lookup(struct tier *t, const struct tier_map_id *id, uint64_t first, unsigned n,
                    struct fpkey *keys, uint64_t *found)
{
    if (!t->ops->map_lookup)
        return -ENOTSUP;
    if (n == 0 || n > TIER_BATCH_MAX)
        return -EINVAL;
    memset(found, 0, DIV_ROUND_UP(n, 64) * sizeof *found);
    STAT_ADD(t->c.map_lookups, 1);
    int r = t->ops->map_lookup(t, id, first, n, keys, found);
    if (r > 0)
        STAT_ADD(t->c.map_hits, (uint64_t)r);
    return r;
}

void tier_map_put(struct tier *t, const struct tier_map_id *id, uint64_t blk,
                  const struct fpkey *key)
{
    if (!t->ops->map_put)
        return;
    STAT_ADD(t->c.map_puts, 1);
    t->ops->map_put(t, id, blk, key);
}
