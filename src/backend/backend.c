/* Back-end registry and the generic helpers of backend.h: pick the ops for a
 * spec, and paper over missing capabilities (FUA, zero, trim, extents) so the
 * volume layer can call one function whatever the storage supports.
 *
 * Ownership: ops->open allocates the whole instance (struct backend, priv,
 * spec copy) and ops->close releases all of it, including layers below. */
#include "backend/backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

/* Probed in order; the file back end accepts anything, so it comes last.
 * "fault" is the test-only layer, or in a build without it the entry that
 * refuses fault: specs: meson picks fault.c or absent.c, so this list is the
 * same in every build. */
static const struct backend_ops *const registry[] = {
    &backend_fault_ops,
    &backend_nbd_ops,
    &backend_iscsi_ops,
    &backend_file_ops,
};

/* Zeros for backend_zero's fallback. Not const: a const array this big would
 * be stored in .rodata (and in the binary); in .bss it costs nothing until
 * touched, and only reads ever touch it. Page-aligned so O_DIRECT accepts it. */
#define ZERO_BUF_SIZE (1u << 20)
static uint8_t zero_buf[ZERO_BUF_SIZE] __attribute__((aligned(4096)));

/* Big enough for a path and the format refusal's hint (file.c). */
static __thread char open_error[1024];

const char *backend_open_error(void)
{
    return open_error;
}

void backend_set_open_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(open_error, sizeof open_error, fmt, ap);
    va_end(ap);
}

int backend_open(const struct backend_params *p, struct backend **out)
{
    open_error[0] = '\0';
    if (!p || !p->spec || !*p->spec || !out)
        return -EINVAL;
    *out = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(registry); i++) {
        const struct backend_ops *ops = registry[i];
        if (ops->probe && !ops->probe(p->spec))
            continue;
        int r = ops->open(p, out);
        if (r < 0) {
            /* The caller reports the failure (with backend_open_error()). */
            if (!open_error[0])
                backend_set_open_error("%s", strerror(-r));
            log_debug(backend, "cannot open %s back end '%s': %s", ops->name, p->spec, open_error);
            *out = NULL;
            return r;
        }
        log_debug(backend, "opened %s back end '%s': size %llu caps 0x%x min_block %u", ops->name,
                  p->spec, (unsigned long long)(*out)->size, (*out)->caps, (*out)->min_block);
        return 0;
    }
    return -EINVAL; /* unreachable: the file back end accepts everything */
}

void backend_close(struct backend *be)
{
    if (be)
        be->ops->close(be);
}

/* Storage without native FUA: a flush after the write gives the same
 * guarantee (the flush covers every write completed before it). */
static int flush_for_fua(struct backend *be)
{
    if (!(be->caps & BE_CAN_FLUSH))
        return 0;
    return be->ops->flush(be);
}

int backend_pwrite(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                   uint32_t flags)
{
    if (!(flags & BE_FUA) || (be->caps & BE_CAN_FUA))
        return be->ops->pwrite(be, buf, count, offset, flags);
    int r = be->ops->pwrite(be, buf, count, offset, flags & ~BE_FUA);
    if (r < 0)
        return r;
    return flush_for_fua(be);
}

/* Write zeros as data, 1 MiB at a time from the shared zero buffer. */
static int zero_by_writing(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    while (count > 0) {
        uint32_t n = MIN(count, ZERO_BUF_SIZE);
        int r = be->ops->pwrite(be, zero_buf, n, offset, 0);
        if (r < 0)
            return r;
        count -= n;
        offset += n;
    }
    if (flags & BE_FUA)
        return flush_for_fua(be);
    return 0;
}

int backend_zero(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    if ((flags & BE_FAST_ZERO) && !(be->caps & BE_CAN_FAST_ZERO))
        return -ENOTSUP;
    if (be->ops->zero && (be->caps & BE_CAN_ZERO)) {
        bool emulate_fua = (flags & BE_FUA) && !(be->caps & BE_CAN_FUA);
        int r = be->ops->zero(be, count, offset, emulate_fua ? flags & ~BE_FUA : flags);
        if (r == 0 && emulate_fua)
            return flush_for_fua(be);
        /* ENOTSUP == EOPNOTSUPP on Linux: "cannot do this cheaply". With
         * FAST_ZERO that is the answer; otherwise write the zeros. */
        if (r != -EOPNOTSUPP)
            return r;
    }
    if (flags & BE_FAST_ZERO)
        return -ENOTSUP;
    return zero_by_writing(be, count, offset, flags & ~BE_FAST_ZERO);
}

int backend_trim(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    /* Trim is advisory: storage that cannot discard simply keeps the data. */
    if (!be->ops->trim || !(be->caps & BE_CAN_TRIM))
        return 0;
    if ((flags & BE_FUA) && !(be->caps & BE_CAN_FUA)) {
        int r = be->ops->trim(be, count, offset, flags & ~BE_FUA);
        if (r < 0)
            return r;
        return flush_for_fua(be);
    }
    return be->ops->trim(be, count, offset, flags);
}

int backend_extents(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                    void *opaque)
{
    if (!be->ops->extents || !(be->caps & BE_CAN_EXTENTS)) {
        fn(opaque, offset, count, 0); /* everything is data, as far as we know */
        return 0;
    }
    return be->ops->extents(be, count, offset, fn, opaque);
}

static uint32_t connect_timeout_ms; /* atomic; 0: BACKEND_CONNECT_TIMEOUT_MS */

void backend_set_connect_timeout(uint32_t ms)
{
    __atomic_store_n(&connect_timeout_ms, ms, __ATOMIC_RELAXED);
}

uint32_t backend_connect_timeout(void)
{
    uint32_t ms = __atomic_load_n(&connect_timeout_ms, __ATOMIC_RELAXED);
    return ms ? ms : BACKEND_CONNECT_TIMEOUT_MS;
}
