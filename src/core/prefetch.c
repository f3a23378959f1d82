/* Background prefetch of a volume range (management's "prefetch"): one
 * thread per running prefetch, warming the range in 16 MiB steps through
 * vol_prefetch, with progress readable at any time. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/volume.h"
#include "core/volume_io.h"

static void *prefetch_main(void *arg)
{
    struct volume *v = arg;
    struct vol_scratch *s = vol_scratch_new();
    uint64_t off, len;
    {
        LOCK_GUARD(&v->pf_lock);
        off = v->pf.offset;
        len = v->pf.length;
    }
    int err = s ? 0 : -ENOMEM;
    const uint64_t step = 16u << 20;
    for (uint64_t done = 0; err == 0 && done < len;) {
        uint64_t n = MIN(step, len - done);
        err = vol_prefetch(v, off + done, n, s);
        done += n;
        LOCK_GUARD(&v->pf_lock);
        v->pf.done_bytes = done;
    }
    /* vol_prefetch warms nothing in pass-through (for NBD_CMD_CACHE that
     * is fine: it is advisory); a management prefetch that ends while the
     * volume is disabled did not do what it was asked, and says so. */
    if (err == 0 && !vol_enabled(v))
        err = -ECANCELED;
    vol_scratch_free(s);
    {
        LOCK_GUARD(&v->pf_lock);
        v->pf.running = false;
        v->pf.error = err;
    }
    log_info(core, "volume %s: prefetch %s", v->name,
             err == -ECANCELED ? "stopped: acceleration was turned off"
             : err             ? strerror(-err)
                               : "done");
    return NULL;
}

int volume_prefetch_start(struct volume *v, uint64_t offset, uint64_t length)
{
    if (offset > v->size)
        return -EINVAL;
    if (length == 0 || length > v->size - offset)
        length = v->size - offset;
    LOCK_GUARD(&v->pf_lock);
    if (v->pf.running)
        return -EBUSY;
    if (v->pf_joinable) {
        pthread_join(v->pf_thread, NULL);
        v->pf_joinable = false;
    }
    v->pf = (struct prefetch_status){.running = true, .offset = offset, .length = length};
    int r = pthread_create(&v->pf_thread, NULL, prefetch_main, v);
    if (r != 0) {
        v->pf.running = false;
        return -r;
    }
    v->pf_joinable = true;
    return 0;
}

void volume_prefetch_status(struct volume *v, struct prefetch_status *out)
{
    LOCK_GUARD(&v->pf_lock);
    *out = v->pf;
}

void volume_prefetch_stop(struct volume *v)
{
    __atomic_store_n(&v->pf_stop, 1, __ATOMIC_RELEASE);
    if (v->pf_joinable)
        pthread_join(v->pf_thread, NULL);
    v->pf_joinable = false;
}
