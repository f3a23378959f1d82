/* See vol_fence.h. */
#include "core/vol_fence.h"

#include <errno.h>
#include <pthread.h>

#include "common/cleanup.h"
#include "common/gate.h"
#include "common/log.h"
#include "core/dir.h"
#include "core/engine.h"
#include "core/volume.h"
#include "core/volume_io.h"

/* Orders the changes of `fenced` and `readonly` (both atomics: writes read
 * readonly under their gate, the read path and management read fenced
 * without one). Changes are rare; one lock for every volume. */
static pthread_mutex_t fence_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *why_text(int why)
{
    return why == VOL_FENCE_LEASE ? "this node's etcd lease may have expired" : "moving";
}

void volume_fence(struct volume *v, int why)
{
    int was;
    {
        LOCK_GUARD(&fence_lock);
        was = __atomic_load_n(&v->fenced, __ATOMIC_RELAXED);
        if (!was && vol_readonly(v))
            return; /* read-only: no writes to fence */
        __atomic_store_n(&v->fenced, was | why, __ATOMIC_RELEASE);
        __atomic_store_n(&v->readonly, true, __ATOMIC_RELEASE);
    }
    if (why == VOL_FENCE_LEASE && !(was & VOL_FENCE_LEASE)) {
        /* Reads now pass the cache by (vol_enabled); the ones that passed
         * it before took tickets this bumps: they cannot install. */
        dir_invalidate(v->dir, 0, v->nblocks);
    }
    if (why == VOL_FENCE_MOVE) {
        /* Every write checks readonly under the gate, held shared from
         * before its back end call to its answer: once it is had
         * exclusive, the writes that passed the check are done. A lease's
         * fence does not wait: waiting keeps no write from landing, and a
         * hung back end would hold back the fences of the volumes after
         * this one. */
        gate_excl(&v->gate);
        gate_excl_end(&v->gate);
    }
    if (why == VOL_FENCE_LEASE && !(was & why))
        log_warn(core, "volume %s: writes fenced (%s): they fail, reads go to the back end",
                 v->name, why_text(why));
    else if (!(was & why))
        log_info(core, "volume %s: writes fenced (%s)", v->name, why_text(why));
}

void volume_unfence(struct volume *v, int why)
{
    int was, now;
    {
        LOCK_GUARD(&fence_lock);
        was = __atomic_load_n(&v->fenced, __ATOMIC_RELAXED);
        now = was & ~why;
        __atomic_store_n(&v->fenced, now, __ATOMIC_RELEASE);
        if (why & VOL_FENCE_MOVE) /* writes may come again */
            __atomic_store_n(&v->settled, false, __ATOMIC_RELEASE);
        if (was && !now)
            __atomic_store_n(&v->readonly, false, __ATOMIC_RELEASE);
    }
    if (was & why)
        log_info(core, "volume %s: fence lifted (%s)%s", v->name,
                 why == VOL_FENCE_LEASE ? "etcd lease held again" : "the move failed",
                 now ? "; still fenced for another reason" : ": writes allowed again");
}

int volume_fenced(const struct volume *v)
{
    return __atomic_load_n(&v->fenced, __ATOMIC_ACQUIRE);
}

int volume_settle(struct volume *v)
{
    if (!(volume_fenced(v) & VOL_FENCE_MOVE))
        return -EINVAL;
    int r = vol_flush(v);
    __atomic_store_n(&v->settled, r == 0, __ATOMIC_RELEASE);
    return r;
}

bool volume_settled(const struct volume *v)
{
    return __atomic_load_n(&v->settled, __ATOMIC_ACQUIRE) && (volume_fenced(v) & VOL_FENCE_MOVE);
}
