/* Back ends: where a volume's data lives (a local file or block device, an
 * upstream NBD export, ...). Each kind is one `struct backend_ops`; layers
 * stack by wrapping a `next` backend (the fault layer does this: a test-only
 * back end, built only with meson -Dfault_backend=true).
 *
 * Contract for every op:
 *   - returns 0 or a negative errno (-EIO, -ENOSPC, -EINVAL, -ENOTSUP, ...);
 *   - a request lies within [0, size) (the volume layer checks bounds);
 *   - ops are called concurrently from many threads on the same backend;
 *     each implementation makes that safe (pread/pwrite are; the NBD back end
 *     multiplexes commands over its connections);
 *   - a write is complete (the storage acknowledged it) when the op returns
 *     0; with BE_FUA it is also persistent;
 *   - an op may block: it runs on a thread that may wait (a worker, the
 *     prefetch thread; open, close and describe on the thread that adds,
 *     removes or shows the volume). The exceptions are pread_nowait,
 *     pread_async and pwrite_async, which the core's request path
 *     (core/submit.c) calls on the thread that submits a request (a front
 *     end's parsing thread), so that a page-cache hit or a network round
 *     trip needs no hand-off to a worker: they must never block.
 */
#ifndef SHOAL_BACKEND_BACKEND_H
#define SHOAL_BACKEND_BACKEND_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* Flags for write/trim/zero. */
#define BE_FUA       (1u << 0) /* persist before returning */
#define BE_NO_HOLE   (1u << 1) /* zero: allocate, do not punch */
#define BE_FAST_ZERO (1u << 2) /* zero: fail with -ENOTSUP unless cheap */

/* Capabilities reported by a back end. */
#define BE_CAN_FLUSH      (1u << 0)
#define BE_CAN_FUA        (1u << 1) /* native FUA (else emulated with flush) */
#define BE_CAN_TRIM       (1u << 2)
#define BE_CAN_ZERO       (1u << 3) /* efficient zeroing (else written as data) */
#define BE_CAN_FAST_ZERO  (1u << 4)
#define BE_CAN_EXTENTS    (1u << 5) /* can report holes / zero extents */
#define BE_READONLY       (1u << 6) /* storage itself refuses writes */
#define BE_CAN_MULTI_CONN (1u << 7)
#define BE_REMOTE         (1u << 8) /* across a network: each request pays a round trip */

/* Extent flags, same meaning as NBD base:allocation. */
#define BE_EXTENT_HOLE (1u << 0)
#define BE_EXTENT_ZERO (1u << 1)

/* Called by extents() for each consecutive extent, in order, starting at
 * the requested offset. Return 0 to continue, non-zero to stop early. */
typedef int (*backend_extent_fn)(void *opaque, uint64_t offset, uint64_t length, uint32_t flags);

struct backend;

/* The parts of a read's buffer a network back end's reply has filled:
 * sorted, disjoint runs of absolute offsets, merged where they touch. An
 * NBD server may answer a read in several chunks, in any order, and libnbd
 * does not check that they cover the request exactly once; a read that
 * succeeded with a gap would hand out (and cache) whatever the buffer held
 * before. Two runs inline; more (chunks out of order) go to the heap. */
struct be_cover {
    uint64_t off;     /* where the read starts */
    uint64_t want;    /* bytes the read asked for */
    uint64_t covered; /* bytes filled, summed over the runs */
    unsigned n, cap;  /* runs in use; room in heap (0: inline) */
    bool bad;         /* a chunk overlapped another, or too many runs */
    struct be_cover_run {
        uint64_t off, end;
    } inl[2], *heap;
};

/* One read or write started with pread_async or pwrite_async. The caller
 * embeds it (no allocation per I/O), sets `done`, and keeps it and the
 * buffer alive until done is called. done runs exactly once, on one of the
 * back end's own threads (possibly before the start call has returned),
 * with 0 (a read's buffer holds the data, a write is acknowledged) or a
 * negative errno; it must not block long (it delays the back end's other
 * completions). The other fields are the back end's while the request is
 * in flight. */
struct be_aio {
    void (*done)(struct be_aio *a, int status);
    struct be_aio *next, *prev;
    void *owner;
    uint64_t deadline_ns;
    unsigned pending; /* atomic */
    unsigned issued, completed;
    int err;
    struct be_cover cover; /* a read's: what the reply filled */
};

/* What a file back end holds. shoal serves raw images only; a qcow2, qed,
 * vmdk, vhdx, vdi, vhd or luks container opened as one would be exported as its
 * container bytes, which a guest sees as garbage. AUTO (the default) opens
 * the file as raw after checking it does not start with such a header, and
 * refuses it (-EMEDIUMTYPE, backend_open_error() naming the format and the
 * supported layout) when it does. RAW exports the bytes unchecked: for the
 * rare raw disk whose guest wrote one of those headers at offset 0, and
 * for a volume whose first block must not be read at open. */
enum backend_format {
    BACKEND_FORMAT_AUTO = 0,
    BACKEND_FORMAT_RAW,
};

/* "auto" / "raw" -> *out; 0 or -EINVAL. Inline so the option parser and
 * the API share it without linking the back ends. */
static inline int backend_format_parse(const char *s, enum backend_format *out)
{
    if (!strcmp(s, "auto"))
        *out = BACKEND_FORMAT_AUTO;
    else if (!strcmp(s, "raw"))
        *out = BACKEND_FORMAT_RAW;
    else
        return -EINVAL;
    return 0;
}

/* How to open a back end (parsed from the command line / config). */
#define BACKEND_CONNECT_TIMEOUT_MS 10000
/* The longest connect timeout a volume, --connect-timeout or a state file
 * may set: an hour. */
#define BACKEND_CONNECT_TIMEOUT_MAX_MS 3600000

/* The connect timeout of back ends whose params leave it 0 (shoald's
 * --connect-timeout: every volume, however it was added). 0 restores
 * BACKEND_CONNECT_TIMEOUT_MS. */
void backend_set_connect_timeout(uint32_t ms);
uint32_t backend_connect_timeout(void);

struct backend_params {
    const char *spec; /* path, nbd://..., nbd+unix://..., iscsi://... */
    bool readonly;    /* open read-only */
    bool direct;      /* file: O_DIRECT */
    unsigned conns;   /* nbd: upstream connections, iscsi: sessions (0 = default) */
    /* nbd, iscsi: give up a connection attempt (connect and handshake or
     * login) after this long. A server that accepts and never
     * answers otherwise holds startup or `volume add` that long. 0: the
     * default, backend_connect_timeout(); at most
     * BACKEND_CONNECT_TIMEOUT_MAX_MS. */
    uint32_t connect_timeout_ms;
    /* file: see enum backend_format. nbd: ignored, the upstream server
     * decides what its export holds. */
    enum backend_format format;
    /* --backing-dir: NULL-terminated list of absolute, symlink-free
     * directories. When set, a file or device must lie beneath one of them
     * (opened with openat2 RESOLVE_BENEATH from the directory, so ".." and
     * symlinks cannot leave it) and an nbd+unix socket must realpath()
     * beneath one; a refusal is -EPERM with backend_open_error() naming the
     * rule. NULL = any path. */
    const char *const *backing_dirs;
};

struct backend_ops {
    const char *name; /* "file", "nbd", "fault" */

    /* Recognise a spec (e.g. "nbd://" prefix); NULL means "anything" (file). */
    bool (*probe)(const char *spec);
    /* Open; on success *out is a new backend with ops/name/size/caps filled. */
    int (*open)(const struct backend_params *p, struct backend **out);
    void (*close)(struct backend *be);

    int (*pread)(struct backend *be, void *buf, uint32_t count, uint64_t offset);
    /* Optional: like pread but never blocks: -EAGAIN if the data is not
     * immediately available (e.g. not in the page cache). Lets the core
     * serve such misses on the submitting thread instead of handing them
     * to a worker. */
    int (*pread_nowait)(struct backend *be, void *buf, uint32_t count, uint64_t offset);
    /* Optional: start a read and return at once, without blocking (like
     * pread_nowait, called on a front end's parsing thread); a->done
     * reports the result (struct be_aio). 0: started. -EAGAIN: it cannot
     * start without waiting (no live connection, too large for one
     * command): use pread on a thread that may wait. Any other error:
     * nothing started, done is never called. Lets a miss over a network
     * back end go out from the thread that parsed it and be answered from
     * the thread that read the reply, with no worker in between. */
    int (*pread_async)(struct backend *be, void *buf, uint32_t count, uint64_t offset,
                       struct be_aio *a);
    /* Optional: the same for a write (BE_FUA honoured; -EAGAIN where the
     * blocking path does more, as FUA emulated with a flush). done's 0
     * means what pwrite's does: the storage acknowledged it. */
    int (*pwrite_async)(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                        uint32_t flags, struct be_aio *a);
    int (*pwrite)(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                  uint32_t flags);
    int (*flush)(struct backend *be);
    /* Optional (NULL when the capability bit is clear). */
    int (*trim)(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags);
    int (*zero)(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags);
    int (*extents)(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                   void *opaque);
    /* Optional: a one-line human description for the dashboard/CLI. */
    void (*describe)(struct backend *be, char *buf, size_t len);
};

/* Common header of every backend instance; implementations embed it first
 * or allocate it with their private data behind `priv`. */
struct backend {
    const struct backend_ops *ops;
    struct backend *next; /* layered back ends: the one below, else NULL */
    void *priv;
    uint64_t size;      /* bytes */
    uint32_t caps;      /* BE_CAN_* */
    uint32_t min_block; /* smallest I/O unit the storage accepts (1 = any) */
    /* The unit the storage takes without extra work (an O_DIRECT file's
     * alignment): a back end that serves smaller or unaligned requests
     * itself (min_block 1) does it at a cost, so the core fetches and
     * front ends prefer whole units of it. 0: min_block. */
    uint32_t io_align;
    char *spec; /* as given, for display */
};

/* The unit the core aligns its own fetches to: io_align, at least min_block. */
static inline uint32_t backend_io_align(const struct backend *be)
{
    uint32_t mb = be->min_block > 1 ? be->min_block : 1;
    return be->io_align > mb ? be->io_align : mb;
}

/* Registry: pick the back end whose probe() accepts the spec (nbd URIs go to
 * "nbd", iscsi:// to "iscsi", fault: prefix to "fault", everything else to
 * "file"). Without
 * -Dfault_backend, "fault" refuses every spec with -ENOTSUP and a one-line
 * backend_open_error() (fault/absent.c). */
int backend_open(const struct backend_params *p, struct backend **out);
void backend_close(struct backend *be);

/* Why the last backend_open on this thread failed, in words ("No such file
 * or directory", "connection refused by the upstream server", ...), so the
 * caller can report it in one message. Empty after a success. */
const char *backend_open_error(void);
/* For back end implementations: record that detail while opening. */
void backend_set_open_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Generic helpers built on the ops, used when a capability is missing:
 * zero by writing zero buffers, FUA by write + flush. */
int backend_pwrite(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                   uint32_t flags);
int backend_zero(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags);
int backend_trim(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags);
int backend_extents(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                    void *opaque);

extern const struct backend_ops backend_file_ops;
extern const struct backend_ops backend_nbd_ops;
extern const struct backend_ops backend_iscsi_ops;
extern const struct backend_ops backend_fault_ops;

#endif
