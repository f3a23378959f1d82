/* See vol_fence.h. */
#include "core/vol_fence.h"

#include "common/gate.h"
#include "common/log.h"
#include "core/dir.h"
#include "core/volume.h"

static const char *why_text(int why)
{
    return why == VOL_FENCE_LEASE ? "this node's etcd lease may have expired" : "moving";
}

void volume_fence(struct volume *v, int why)
{
    gate_excl(&v->gate);
    int was = __atomic_load_n(&v->fenced, __ATOMIC_RELAXED);
    if (!was && v->readonly) {
        gate_excl_end(&v->gate); /* read-only: no writes to fence */
        return;
    }
    /* Atomics: management and the read path read them without the gate. */
    __atomic_store_n(&v->readonly, true, __ATOMIC_RELEASE);
    __atomic_store_n(&v->fenced, was | why, __ATOMIC_RELEASE);
    gate_excl_end(&v->gate);
    if (why == VOL_FENCE_LEASE && !(was & VOL_FENCE_LEASE)) {
        /* Reads now pass the cache by (vol_enabled); the ones that passed
         * it before took tickets this bumps: they cannot install. */
        dir_invalidate(v->dir, 0, v->nblocks);
    }
    if (!(was & why))
        log_warn(core, "volume %s: writes fenced (%s)%s", v->name, why_text(why),
                 why == VOL_FENCE_LEASE ? ": they fail, reads go to the back end" : "");
}

void volume_unfence(struct volume *v, int why)
{
    gate_excl(&v->gate);
    int was = __atomic_load_n(&v->fenced, __ATOMIC_RELAXED);
    int now = was & ~why;
    __atomic_store_n(&v->fenced, now, __ATOMIC_RELEASE);
    if (was && !now)
        __atomic_store_n(&v->readonly, false, __ATOMIC_RELEASE);
    gate_excl_end(&v->gate);
    if (was & why)
        log_info(core, "volume %s: fence lifted (%s)%s", v->name,
                 why == VOL_FENCE_LEASE ? "etcd lease held again" : "the move failed",
                 now ? "; still fenced for another reason" : ": writes allowed again");
}

int volume_fenced(const struct volume *v)
{
    return __atomic_load_n(&v->fenced, __ATOMIC_ACQUIRE);
}
