/* The data path's steps on a volume: read, write, trim, zero, flush,
 * prefetch and extents, with the cache in between. Front ends do not call
 * these: they submit requests (core/submit.h), which drives these steps on
 * the right thread. Core unit tests call them directly.
 *
 * Each request is described by a `struct vol_req`. Ops that change or fetch
 * data run in two steps:
 *
 *   vol_xxx()         does the back end work; when it returns 0 the reply
 *                     may go out (for writes: the back end has
 *                     acknowledged; for reads: req->buf holds the data)
 *   vol_req_finish()  afterwards updates the cache (fingerprints and inserts
 *                     what was fetched or written, drops what a partial or
 *                     failed write covered), unpins a zero-copy hit and
 *                     records latency. It MUST be called for every request
 *                     that went through a vol_xxx() call, on success or
 *                     error, so the directory's race counters stay
 *                     balanced, and before the scratch passed to vol_xxx()
 *                     is used again; calling it again does nothing. It is
 *                     vol_req_update() (the cache update, which needs the
 *                     scratch) then vol_req_release() (unpin, latency),
 *                     which vol_submit runs at different times.
 *
 * Reads: req->buf must cover the block-aligned span of the request,
 * vol_read_span(off, len) bytes; the data for [off, off+len) is returned at
 * req->buf + (off & BLOCK_MASK). That lets misses be fetched as whole blocks
 * straight into the reply buffer.
 *
 * VOL_NOWAIT: vol_read() neither blocks nor waits. It serves what RAM has,
 * asks the back end only through its non-blocking read (pread_nowait, which
 * succeeds only when the data is at hand, e.g. in the page cache) and the
 * tiers only without waiting, and returns -EAGAIN, keeping nothing, when
 * anything would block; the caller then retries without NOWAIT on a thread
 * that may block.
 *
 * Asynchronous misses (VOL_NOWAIT with r->aio set, for back ends with
 * pread_async and no pread_nowait): a read whose misses are one range the
 * back end must give (nothing by key) starts that read and returns
 * -EINPROGRESS; r->aio->done (set by the caller) then runs on a back end
 * thread, where the caller calls vol_read_fetched with its status and then
 * goes on as after vol_read returned that. The scratch passed to vol_read
 * belongs to the request until its vol_req_update: the calling thread
 * needs another for its next request. Reads that cannot go this way return
 * -EAGAIN as with VOL_NOWAIT alone, keeping nothing.
 */
#ifndef SHOAL_CORE_VOLUME_IO_H
#define SHOAL_CORE_VOLUME_IO_H

#include <stdint.h>
#include <sys/uio.h>

#include "core/block.h"

struct volume;
struct be_aio;

#define VOL_FUA       (1u << 0)
#define VOL_NO_HOLE   (1u << 1)
#define VOL_FAST_ZERO (1u << 2)
#define VOL_NOWAIT    (1u << 3)

enum vol_op { VOL_OP_NONE = 0, VOL_OP_READ, VOL_OP_WRITE, VOL_OP_TRIM, VOL_OP_ZERO };

/* Extent flags for vol_extents, as NBD base:allocation defines them. */
#define VOL_EXTENT_HOLE (1u << 0)
#define VOL_EXTENT_ZERO (1u << 1)
/* Called for each consecutive extent, in order from the requested offset;
 * return non-zero to stop. */
typedef int (*vol_extent_fn)(void *opaque, uint64_t offset, uint64_t length, uint32_t flags);

/* Per-thread scratch for the finish step (race tickets and the fetched-block
 * map). Workers own one each; it is too large for a request. */
struct vol_scratch;
struct vol_scratch *vol_scratch_new(void);
void vol_scratch_free(struct vol_scratch *s);

struct vol_req {
    uint64_t offset;
    uint32_t length;
    uint32_t flags; /* VOL_* */
    void *buf;      /* read: aligned span buffer; write: payload */
    /* filled by the core for vol_req_finish */
    enum vol_op op;
    int status;        /* result of the back end step */
    uint64_t start_ns; /* for latency histograms */
    uint64_t reply_ns; /* when the reply went out; 0: when released */
    struct vol_scratch *scratch;
    uint8_t hit;     /* read served entirely from RAM */
    uint8_t updated; /* vol_req_update ran */
    uint32_t *pins;  /* zero-copy hit: pinned store entries to release */
    uint32_t npins;
    struct be_aio *aio; /* the caller's, for an asynchronous miss (above) */
};

/* Largest read or write (front ends refuse longer ones: NBD advertises it
 * as its maximum block size). Trims and zeroes may cover the whole volume. */
#define VOL_MAX_IO (32u << 20)

/* Zero-copy RAM hits cover at most this many blocks (1 MiB). */
#define VOL_ZC_MAX_BLOCKS 256

static inline uint64_t vol_read_span(uint64_t off, uint32_t len)
{
    uint64_t first = off & ~BLOCK_MASK;
    uint64_t end = (off + len + BLOCK_MASK) & ~BLOCK_MASK;
    return len ? end - first : 0;
}

/* Zero-copy hit: if every block of the request is in RAM, pin them and
 * describe the data as iovecs pointing into the cache (zero blocks point at a
 * shared zero page), in order, covering exactly [offset, offset+length).
 * iov and pins need VOL_ZC_MAX_BLOCKS entries each and must stay valid until
 * vol_req_finish(), which unpins. Returns 0 and *niov, or -EAGAIN when a
 * block is not in RAM, the request is too large, or caching is off; never
 * touches the back end. r->buf is not used. */
int vol_read_zc(struct volume *v, struct vol_req *r, struct iovec *iov, uint32_t *pins,
                unsigned *niov);

/* All return 0 or a negative errno; range errors are the caller's job
 * (vol_check_range). `scratch` may be NULL only with VOL_NOWAIT. */
int vol_read(struct volume *v, struct vol_req *r, struct vol_scratch *scratch);
/* An asynchronous miss's data is in (status: the back end read's result):
 * returns the read's result, as vol_read would have. */
int vol_read_fetched(struct volume *v, struct vol_req *r, int status);
/* An asynchronous write (r->aio set, for back ends with pwrite_async): the
 * write gate taken without waiting, the blocks' write steps begun and the
 * back end's write started: -EINPROGRESS, and r->aio->done then runs on a
 * back end thread, where the caller calls vol_write_answered with its
 * status and goes on as after vol_write returned that. -EAGAIN when it
 * cannot go that way (the gate wanted exclusive, a refusal, no live
 * connection, FUA the back end emulates): nothing was written, the scratch
 * is free again, run vol_write on a thread that may wait. The scratch
 * belongs to the request until its vol_req_update, as for reads. */
int vol_write_async(struct volume *v, struct vol_req *r, struct vol_scratch *scratch);
int vol_write_answered(struct volume *v, struct vol_req *r, int status);
int vol_write(struct volume *v, struct vol_req *r, struct vol_scratch *scratch);
int vol_trim(struct volume *v, struct vol_req *r, struct vol_scratch *scratch);
int vol_zero(struct volume *v, struct vol_req *r, struct vol_scratch *scratch);
void vol_req_finish(struct volume *v, struct vol_req *r);
void vol_req_update(struct volume *v, struct vol_req *r);
void vol_req_release(struct volume *v, struct vol_req *r);

/* COMPARE AND WRITE (core/submit.h VOL_IO_COMPARE_WRITE): r->buf holds
 * r->length bytes to compare, then r->length bytes to write. Atomic against
 * every other change to v (v->gate held exclusive). -EILSEQ on a mismatch,
 * with *miscompare the offset of the first differing byte; then nothing was
 * written. r is the write's request: vol_req_finish it as a write's. */
int vol_compare_write(struct volume *v, struct vol_req *r, struct vol_scratch *scratch,
                      uint64_t *miscompare);
/* Copy [src_off, +r->length) of src to [r->offset, +r->length) of v: read
 * through src's cache into a buffer, then written as a write of r (r->buf
 * is set here; vol_req_finish r as a write's, before vol_copy_release). */
int vol_copy(struct volume *v, struct vol_req *r, struct vol_scratch *scratch, struct volume *src,
             uint64_t src_off, void **buf, size_t *buflen);

int vol_flush(struct volume *v);
/* Warm a range into RAM, synchronously, in chunks (VOL_IO_CACHE requests
 * and the background prefetch). */
int vol_prefetch(struct volume *v, uint64_t offset, uint64_t length, struct vol_scratch *scratch);
/* Block status over the back end, clipped to the request. */
int vol_extents(struct volume *v, uint64_t offset, uint32_t length, vol_extent_fn fn, void *opaque);

/* Bounds check: 0, or -EINVAL / -ENOSPC (beyond the end, as NBD wants it for
 * reads vs writes) / -EOVERFLOW (offset+length wraps). */
int vol_check_range(const struct volume *v, uint64_t offset, uint64_t length, int past_end_err);

#endif
