/* The two SCSI offloads the core does itself: COMPARE AND WRITE (atomic
 * under the volume's write gate) and COPY (a read through the source's
 * cache written to the destination). Both end as an ordinary write of the
 * caller's request, so the cache update after the reply is a write's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bufpool.h"
#include "core/dir.h"
#include "core/scratch.h"
#include "core/volume.h"
#include "core/volume_io.h"

/* Read [off, +len) of v into a new span buffer; *data points at the bytes.
 * The read is finished here (its cache update too), so the scratch is free
 * for the write that follows. */
static int read_span(struct volume *v, uint64_t off, uint32_t len, struct vol_scratch *s,
                     void **buf, size_t *buflen, const uint8_t **data)
{
    size_t span = vol_read_span(off, len);
    void *p = bufpool_get(span);
    if (!p)
        return -ENOMEM;
    struct vol_req rr = {.offset = off, .length = len, .buf = p};
    int ret = vol_read(v, &rr, s);
    vol_req_finish(v, &rr);
    if (ret < 0) {
        bufpool_put(p, span);
        return ret;
    }
    *buf = p;
    *buflen = span;
    *data = (const uint8_t *)p + (off & BLOCK_MASK);
    return 0;
}

/* The write that ends both, when it fails before reaching the back end:
 * a request vol_req_finish can take. */
static int refuse(struct vol_req *r, int err)
{
    r->op = VOL_OP_NONE;
    r->updated = 0;
    r->scratch = NULL;
    r->npins = 0;
    return r->status = err;
}

int vol_compare_write(struct volume *v, struct vol_req *r, struct vol_scratch *s,
                      uint64_t *miscompare)
{
    if (vol_readonly(v))
        return refuse(r, -EPERM);
    const uint8_t *expect = r->buf;
    gate_excl(&v->gate);
    if (vol_readonly(v)) { /* fenced while it waited for the gate */
        gate_excl_end(&v->gate);
        return refuse(r, -EPERM);
    }
    void *buf = NULL;
    size_t buflen = 0;
    const uint8_t *cur;
    int ret = read_span(v, r->offset, r->length, s, &buf, &buflen, &cur);
    if (ret < 0) {
        gate_excl_end(&v->gate);
        return refuse(r, ret);
    }
    if (memcmp(cur, expect, r->length) != 0) {
        uint32_t i = 0;
        while (cur[i] == expect[i])
            i++;
        *miscompare = i;
        bufpool_put(buf, buflen);
        gate_excl_end(&v->gate);
        return refuse(r, -EILSEQ);
    }
    bufpool_put(buf, buflen);
    r->buf = (uint8_t *)r->buf + r->length;
    ret = vol_write_gate_held(v, r, s);
    gate_excl_end(&v->gate);
    return ret;
}

int vol_copy(struct volume *v, struct vol_req *r, struct vol_scratch *s, struct volume *src,
             uint64_t src_off, void **buf, size_t *buflen)
{
    if (vol_readonly(v))
        return refuse(r, -EPERM);
    const uint8_t *data;
    int ret = read_span(src, src_off, r->length, s, buf, buflen, &data);
    if (ret < 0)
        return refuse(r, ret);
    r->buf = (void *)data;
    /* Same place within a block on both sides: each written block is one
     * source block, whose cached content the write's install can share
     * (volume.c, install_shared) instead of hashing it again. */
    s->copy_active = false;
    if (r->length && ((src_off ^ r->offset) & BLOCK_MASK) == 0 && v->store == src->store &&
        (s->copy_vals || (s->copy_vals = malloc(SPAN_BLOCKS_MAX * sizeof *s->copy_vals)))) {
        uint64_t first = block_of(src_off);
        uint32_t nb = (uint32_t)(block_of(src_off + r->length - 1) - first + 1);
        dir_lookup_range(src->dir, first, nb, s->copy_vals);
        s->copy_active = true;
    }
    ret = vol_write(v, r, s);
    if (r->op != VOL_OP_WRITE)
        s->copy_active = false; /* refused before the back end: no finish */
    return ret;
}
