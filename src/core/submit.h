/* The protocol-neutral request path: what a front end calls for every
 * request once it has parsed and validated it. The core decides where the
 * request runs and when the cache is updated; the front end only encodes
 * the result and sends it.
 *
 *   vol_submit(io)   the front end hands a filled struct vol_io over.
 *   io->done(io)     the core: the result is ready (io->status; for reads the
 *                    data in io->iov). Called exactly once, on the thread
 *                    that got the result: the submitting thread for RAM hits,
 *                    small misses the back end answers without blocking and
 *                    refusals; a pool worker otherwise. The front end sends
 *                    the reply now, or queues it for any thread to send.
 *   vol_io_put(io)   the front end: the reply is out (or will never be);
 *                    called exactly once, from any thread, also from done.
 *   io->end(io)      the core: it no longer uses io (the cache is updated,
 *                    pinned blocks and the core's buffers are released);
 *                    the front end may reuse or free io and its payload.
 *                    Called exactly once, after both done has returned and
 *                    vol_io_put was called, on either of those threads.
 *
 * Where a request runs. A read whose blocks are all in RAM is a zero-copy
 * hit: io->iov points into the cache (pinned until end) and done runs at
 * once on the submitting thread. A read of at most VOL_INLINE_MISS_MAX whose
 * misses the back end can read without blocking (page cache) is also served
 * there: a hand-off costs more than the read. One whose misses are a single
 * range a network back end reads asynchronously (pread_async) sends that
 * read from there, and done runs on the back end's thread that got the
 * answer (volume_io.h): no worker, two thread wake-ups fewer. A write
 * goes out the same way with pwrite_async when the write gate can be had
 * without waiting. Everything else goes to the engine's worker pool (or
 * runs on the submitting thread when the engine has none), so a thread
 * that parses requests never waits on storage.
 *
 * The cache update (fingerprints, installs) runs on the thread that calls
 * done, with that thread's scratch: for a read of at most
 * VOL_UPDATE_FIRST_MAX bytes just before done, for a larger one and for
 * every write right after done returns (after the reply when done sent it:
 * hashing 1 MiB takes about 0.7 ms). A client at queue depth 1 sends its
 * next request within microseconds of a reply, and that request must find
 * what this one fetched: run after the reply, the update often lost that
 * race on a busy host (the fiu-mail trace's hit ratio at QD1 varied
 * 0.052-0.065 where the simulator says 0.065). A write's reply waits for
 * the back end anyway, and its hash before the reply showed in its latency
 * (asynchronous 4 KiB writes over a 1 ms nbdkit, by hand: about 1.06x the
 * array's with the update first, 1.05x after); daemon-sim's write mixes
 * stay within their bounds. The race rule (core/dir.h) makes either order
 * correct. Latency histograms count from vol_submit to vol_io_put: what
 * the client waits for.
 *
 * With a worker pool, vol_submit never waits: not for the back end, and not
 * for the buffer pool's budget either (the submitting thread may hold
 * replies that only it will send, which would free that budget): a read
 * that finds no buffer at once gets it on a worker.
 *
 * done must not submit another request from the same thread before it
 * returns (the thread's scratch still holds this one's state). */
#ifndef SHOAL_CORE_SUBMIT_H
#define SHOAL_CORE_SUBMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backend/backend.h"
#include "common/workq.h"
#include "core/volume_io.h"

struct volume;

enum vol_io_op {
    VOL_IO_READ = 1,
    VOL_IO_WRITE,
    VOL_IO_TRIM,
    VOL_IO_ZERO,
    VOL_IO_FLUSH,
    VOL_IO_CACHE,   /* warm [offset, +length) into RAM; advisory */
    VOL_IO_EXTENTS, /* allocation status, reported through extent_fn */
    /* SCSI COMPARE AND WRITE: payload holds 2 x length bytes, the data to
     * compare with [offset, +length) and then the data to write there. The
     * read, compare and write are atomic against every other write, trim,
     * zero, copy and compare-and-write to the volume, from any front end.
     * A mismatch writes nothing: status -EILSEQ, and io->miscompare is the
     * offset of the first differing byte from io->offset. */
    VOL_IO_COMPARE_WRITE,
    /* Copy [src_offset, +length) of io->src (the front end holds a reference
     * until end; it may be io->v) to [offset, +length) of io->v: read
     * through the cache, written to the back end like a write. */
    VOL_IO_COPY,
};

/* Reads of at most this size may be served on the submitting thread when
 * the back end has the data at hand; larger ones go to a worker, where
 * hashing runs in parallel with the next request's parsing. */
#define VOL_INLINE_MISS_MAX (64u * 1024)

/* Asynchronous misses and writes (pread_async, pwrite_async) may be this
 * long: their hashing runs on the back end's thread, not on the one that
 * parses requests. */
#define VOL_ASYNC_MISS_MAX (1024u * 1024)

/* Reads of at most this size update the cache before done (above). */
#define VOL_UPDATE_FIRST_MAX (32u * 1024)

/* A prefetch request warms at most the largest read's worth, so one request
 * cannot hold a shared worker for minutes; whole volumes are warmed in the
 * background (volume_prefetch_start). */
#define VOL_CACHE_MAX VOL_MAX_IO

/* Zero-copy hits of up to this many blocks keep their iovecs in the
 * request; larger ones borrow an array from the buffer pool. */
#define VOL_IO_INLINE_IOV 4

struct vol_io;
typedef void (*vol_io_fn)(struct vol_io *io);

struct vol_io {
    /* Set by the front end before vol_submit. */
    struct volume *v; /* referenced by the front end until end */
    enum vol_io_op op;
    uint32_t flags; /* VOL_FUA, VOL_NO_HOLE, VOL_FAST_ZERO */
    uint64_t offset;
    uint64_t length;         /* reads and writes: at most VOL_MAX_IO */
    void *payload;           /* WRITE: length bytes, the front end's, read-only here */
    vol_extent_fn extent_fn; /* EXTENTS: called on the worker */
    void *extent_opaque;
    struct volume *src;  /* COPY: the source volume */
    uint64_t src_offset; /* COPY: where in it */
    vol_io_fn done;
    vol_io_fn end;
    void *opaque; /* the front end's */

    /* The result, valid from done until vol_io_put. */
    int status;              /* 0 or a negative errno */
    const struct iovec *iov; /* READ: exactly [offset, offset+length), in order */
    unsigned niov;
    /* READ: every block came from RAM, the back end was not asked. A front
     * end may hold such replies back a little to send several at once. */
    bool hit;
    uint64_t miscompare; /* COMPARE_WRITE with -EILSEQ: first differing byte */

    /* The core's; front ends do not touch these. */
    struct {
        struct work work;
        struct vol_req vr;
        unsigned refs; /* atomic: done's side and vol_io_put's side */
        void *buf;     /* read span buffer (buffer pool) */
        size_t buflen;
        void *zc_array; /* pool array for a large zero-copy hit */
        struct iovec one;
        struct iovec iov_inline[VOL_IO_INLINE_IOV];
        uint32_t pins_inline[VOL_IO_INLINE_IOV];
        /* An asynchronous miss or write (submit.c): the back end's
         * request, the scratch that goes with it, and two references (the
         * submitter's, the back end request's): the last one finishes it. */
        struct be_aio aio;
        struct vol_scratch *scratch;
        unsigned aio_refs; /* atomic */
        int aio_status;
    } priv;
};

/* Start io. Never fails by itself: every error (out of range, volume
 * removed, no memory, the back end's) comes back through done. */
void vol_submit(struct vol_io *io);
/* The front end is done with the reply; see above. */
void vol_io_put(struct vol_io *io);

#endif
