/* The volume data path: reads served from RAM or fetched and cached, writes
 * through to the back end with the directory kept coherent by the race rule
 * (core/dir.h). See core/volume_io.h for the two-step contract with front
 * ends (back end work, then finish after the reply). */
#include "core/volume.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/fingerprint.h"
#include "core/store.h"
#include "core/volume_io.h"

/* Largest span a read or write may cover: VOL_MAX_IO plus the two partial
 * blocks at its ends. The per-block bookkeeping in the scratch (todo[]) is
 * sized for it; trims and zeroes longer than that take the range path
 * (change_range) instead, which needs no per-block state. */
#define SPAN_BLOCKS_MAX ((VOL_MAX_IO >> BLOCK_SHIFT) + 2)
#define PREFETCH_CHUNK  (1u << 20)

struct vol_scratch {
    struct dir_tickets tk;
    uint64_t todo[DIV_ROUND_UP(SPAN_BLOCKS_MAX, 64)]; /* blocks to install in finish */
    uint8_t tail[BLOCK_SIZE];                         /* zero-padded last block */
    void *prefetch_buf;                               /* allocated on first use */
    /* Read-ahead (see read_ahead): when set, todo is relative to ra_first
     * and finish installs from prefetch_buf instead of the request buffer. */
    bool ra_active;
    uint64_t ra_first;
    uint32_t ra_nb;
};

struct vol_scratch *vol_scratch_new(void)
{
    return calloc(1, sizeof(struct vol_scratch));
}

static int scratch_buf(struct vol_scratch *s)
{
    if (!s->prefetch_buf)
        s->prefetch_buf = aligned_alloc(BLOCK_SIZE, PREFETCH_CHUNK);
    return s->prefetch_buf ? 0 : -ENOMEM;
}

void vol_scratch_free(struct vol_scratch *s)
{
    if (!s)
        return;
    free(s->prefetch_buf);
    free(s);
}

static inline void todo_set(struct vol_scratch *s, uint32_t i)
{
    s->todo[i / 64] |= 1ull << (i % 64);
}

static inline bool todo_test(const struct vol_scratch *s, uint32_t i)
{
    return (s->todo[i / 64] >> (i % 64)) & 1;
}

static void todo_clear(struct vol_scratch *s, uint32_t nb)
{
    memset(s->todo, 0, DIV_ROUND_UP(nb, 64) * sizeof(uint64_t));
}

static inline bool enabled(const struct volume *v)
{
    return __atomic_load_n(&v->enabled, __ATOMIC_ACQUIRE);
}

/* Bytes of [off, off+len) that fall in block blk. */
static inline void block_overlap(uint64_t blk, uint64_t off, uint64_t len, uint32_t *lo,
                                 uint32_t *n)
{
    uint64_t bs = block_start(blk), be = bs + BLOCK_SIZE;
    uint64_t s = MAX(bs, off), e = MIN(be, off + len);
    *lo = (uint32_t)(s - bs);
    *n = (uint32_t)(e - s);
}

int vol_check_range(const struct volume *v, uint64_t offset, uint64_t length, int past_end_err)
{
    if (offset + length < offset)
        return -EOVERFLOW;
    if (offset > v->size || length > v->size - offset)
        return past_end_err;
    return 0;
}

void vol_count_error(struct volume *v)
{
    STAT_ADD(v->c.errors, 1);
}

/* ---- reads ---- */

/* Zero blocks in zero-copy replies all point here. */
static const uint8_t zero_block[BLOCK_SIZE] __attribute__((aligned(4096)));

/* Blocks looked up per directory batch on the copy path. */
#define LOOKUP_WINDOW 64

int vol_read_zc(struct volume *v, struct vol_req *r, struct iovec *iov, uint32_t *pins,
                unsigned *niov)
{
    r->op = VOL_OP_NONE;
    r->pins = NULL;
    r->npins = 0;
    if (r->length == 0 || !enabled(v))
        return -EAGAIN;
    uint64_t first = block_of(r->offset);
    uint64_t last = block_of(r->offset + r->length - 1);
    uint32_t nb = (uint32_t)(last - first + 1);
    if (nb > VOL_ZC_MAX_BLOCKS)
        return -EAGAIN;
    uint64_t vals[VOL_ZC_MAX_BLOCKS];
    dir_lookup_range(v->dir, first, nb, vals);
    uint32_t np = 0;
    for (uint32_t i = 0; i < nb; i++) {
        uint32_t lo, n;
        block_overlap(first + i, r->offset, r->length, &lo, &n);
        const uint8_t *p;
        if (vals[i] == DIR_ZERO) {
            p = zero_block;
        } else if (vals[i] && store_pin(v->store, dir_ref(vals[i]), &p) == 0) {
            pins[np++] = (uint32_t)vals[i];
        } else {
            if (vals[i])
                dir_drop_stale(v->dir, first + i, vals[i]);
            for (uint32_t k = 0; k < np; k++)
                store_unpin(v->store, pins[k]);
            return -EAGAIN;
        }
        iov[i] = (struct iovec){(void *)(p + lo), n};
    }
    STAT_ADD(v->c.read_ops, 1);
    STAT_ADD(v->c.read_bytes, r->length);
    STAT_ADD(v->c.read_hit_bytes, r->length);
    r->op = VOL_OP_READ;
    r->status = 0;
    r->hit = 1;
    r->scratch = NULL;
    r->pins = pins;
    r->npins = np;
    *niov = nb;
    return 0;
}

/* Fetch blocks [a, b] from the back end into dst. With nowait, use the back
 * end's non-blocking read (-EAGAIN when it would block). */
static int fetch_run(struct volume *v, uint8_t *dst, uint64_t a, uint64_t b, bool nowait)
{
    uint64_t off = block_start(a);
    uint64_t end = MIN(block_start(b + 1), v->size);
    int r = nowait ? v->be->ops->pread_nowait(v->be, dst, (uint32_t)(end - off), off)
                   : v->be->ops->pread(v->be, dst, (uint32_t)(end - off), off);
    if (r == -EAGAIN && nowait)
        return r;
    STAT_ADD(v->c.backend_read_ops, 1);
    if (r < 0) {
        STAT_ADD(v->c.backend_errors, 1);
        return r;
    }
    STAT_ADD(v->c.backend_read_bytes, end - off);
    /* The last block of an odd-sized volume reads as zero padding beyond the
     * end, so its fingerprint is that of the padded block. */
    if (end < block_start(b + 1))
        memset(dst + (end - off), 0, (size_t)(block_start(b + 1) - end));
    return 0;
}

/* Fetch every run of blocks marked in s->todo (block i at first + i) into
 * buf + i * BLOCK_SIZE, one back end request per run. */
static int fetch_todo(struct volume *v, struct vol_scratch *s, uint8_t *buf, uint64_t first,
                      uint32_t nb, bool nowait)
{
    for (uint32_t i = 0; i < nb;) {
        if (!todo_test(s, i)) {
            i++;
            continue;
        }
        uint32_t j = i;
        while (j + 1 < nb && todo_test(s, j + 1))
            j++;
        int ret = fetch_run(v, buf + (size_t)i * BLOCK_SIZE, first + i, first + j, nowait);
        if (ret < 0)
            return ret;
        i = j + 1;
    }
    return 0;
}

/* A directory value that needs no fetch: a known zero block or live content. */
static inline bool val_cached(struct volume *v, uint64_t val)
{
    return val == DIR_ZERO || (val && store_ref_live(v->store, dir_ref(val)));
}

static int read_passthrough(struct volume *v, struct vol_req *r)
{
    uint8_t *dst = (uint8_t *)r->buf + (r->offset & BLOCK_MASK);
    int ret = v->be->ops->pread(v->be, dst, r->length, r->offset);
    STAT_ADD(v->c.backend_read_ops, 1);
    if (ret < 0) {
        STAT_ADD(v->c.backend_errors, 1);
        return ret;
    }
    STAT_ADD(v->c.backend_read_bytes, r->length);
    return 0;
}

/* Miss read-ahead. A read that misses fetches, in the same single back end
 * request, the uncached blocks around it up to the edges of its aligned
 * window of v->ra_blocks blocks (a request crossing windows gets both), and
 * caches them after the reply like its own blocks. Over a network back end
 * a 64 KiB read costs about what a 4 KiB one does, and boots, file reads
 * and clones touch neighbouring blocks soon after each other. The race rule
 * is the read's: tickets for every fetched block before the fetch, install
 * only if nothing changed since.
 *
 * Called with the request's misses in s->todo (relative to `first`) and
 * the hits already in r->buf. Returns 1 when it did the fetch (misses
 * copied into r->buf, s->todo/ra_* describe what to install), 0 when
 * read-ahead does not apply (the caller fetches as usual), -EAGAIN or an
 * error from the back end. */
static int read_ahead(struct volume *v, struct vol_req *r, struct vol_scratch *s, uint64_t first,
                      uint32_t nb, bool nowait)
{
    uint64_t ra = v->ra_blocks;
    uint64_t wa = first & ~(ra - 1);
    uint64_t wb = MIN((first + nb + ra - 1) & ~(ra - 1), v->nblocks);
    uint32_t wnb = (uint32_t)(wb - wa);
    if (wnb <= nb || (uint64_t)wnb * BLOCK_SIZE > PREFETCH_CHUNK || scratch_buf(s) < 0)
        return 0;
    /* The request's misses, window-relative; then the uncached neighbours. */
    uint64_t miss[DIV_ROUND_UP(PREFETCH_CHUNK / BLOCK_SIZE, 64)] = {0};
    uint32_t off = (uint32_t)(first - wa);
    for (uint32_t i = 0; i < nb; i++)
        if (todo_test(s, i))
            miss[(off + i) / 64] |= 1ull << ((off + i) % 64);
    todo_clear(s, wnb);
    uint32_t lo = UINT32_MAX, hi = 0;
    for (uint32_t i = 0; i < wnb; i++) {
        bool want = (miss[i / 64] >> (i % 64)) & 1;
        if (!want && (i < off || i >= off + nb)) {
            uint64_t val = dir_lookup(v->dir, wa + i);
            want = !val_cached(v, val);
        }
        if (!want)
            continue;
        todo_set(s, i);
        dir_read_ticket(v->dir, wa + i, &s->tk);
        lo = MIN(lo, i);
        hi = i;
    }
    /* One request from the first to the last block wanted; cached blocks in
     * between are fetched again but not installed. */
    uint8_t *ra_buf = s->prefetch_buf;
    int ret = fetch_run(v, ra_buf + (size_t)lo * BLOCK_SIZE, wa + lo, wa + hi, nowait);
    if (ret < 0) {
        if (!(ret == -EAGAIN && nowait)) {
            todo_clear(s, wnb); /* nothing to install */
            s->ra_active = false;
        }
        return ret;
    }
    uint64_t extra = 0;
    for (uint32_t i = lo; i <= hi; i++) {
        if (i >= off && i < off + nb) {
            if ((miss[i / 64] >> (i % 64)) & 1)
                memcpy((uint8_t *)r->buf + (size_t)(i - off) * BLOCK_SIZE,
                       ra_buf + (size_t)i * BLOCK_SIZE, BLOCK_SIZE);
        } else {
            extra += BLOCK_SIZE;
        }
    }
    STAT_ADD(v->c.readahead_bytes, extra);
    s->ra_active = true;
    s->ra_first = wa;
    s->ra_nb = wnb;
    return 1;
}

int vol_read(struct volume *v, struct vol_req *r, struct vol_scratch *scratch)
{
    r->op = VOL_OP_READ;
    r->status = 0;
    r->hit = 0;
    r->scratch = NULL;
    r->npins = 0;
    if (r->length == 0)
        return 0;
    if (r->length > VOL_MAX_IO) {
        r->op = VOL_OP_NONE;
        return r->status = -EINVAL; /* front ends cap reads at VOL_MAX_IO */
    }
    bool nowait = r->flags & VOL_NOWAIT;
    if (!enabled(v)) {
        if (nowait)
            return -EAGAIN;
        r->op = VOL_OP_NONE;
        STAT_ADD(v->c.read_ops, 1);
        STAT_ADD(v->c.read_bytes, r->length);
        STAT_ADD(v->c.read_miss_bytes, r->length);
        r->status = read_passthrough(v, r);
        return r->status;
    }

    uint64_t first = block_of(r->offset);
    uint64_t last = block_of(r->offset + r->length - 1);
    uint32_t nb = (uint32_t)(last - first + 1);
    uint8_t *buf = r->buf;
    uint64_t miss_bytes = 0;
    bool any_miss = false;
    /* Without a non-blocking back end read, a miss ends a NOWAIT attempt. */
    bool can_fetch = !nowait || (scratch && v->be->ops->pread_nowait);

    uint64_t vals[LOOKUP_WINDOW];
    for (uint32_t i = 0; i < nb; i++) {
        uint64_t blk = first + i;
        uint32_t lo, n;
        block_overlap(blk, r->offset, r->length, &lo, &n);
        if (i % LOOKUP_WINDOW == 0)
            dir_lookup_range(v->dir, blk, MIN((uint32_t)LOOKUP_WINDOW, nb - i), vals);
        uint64_t val = vals[i % LOOKUP_WINDOW];
        if (val == DIR_ZERO) {
            memset(buf + (size_t)i * BLOCK_SIZE + lo, 0, n);
            continue;
        }
        if (val) {
            if (store_read(v->store, dir_ref(val), buf + (size_t)i * BLOCK_SIZE + lo, lo, n) == 0)
                continue;
            dir_drop_stale(v->dir, blk, val);
        }
        if (!can_fetch)
            return -EAGAIN;
        if (!any_miss) {
            any_miss = true;
            todo_clear(scratch, nb);
            dir_tickets_reset(&scratch->tk);
            scratch->ra_active = false;
        }
        todo_set(scratch, i);
        miss_bytes += n;
    }

    int ra = 0;
    if (any_miss && v->ra_blocks && nb < v->ra_blocks) {
        ra = read_ahead(v, r, scratch, first, nb, nowait);
        if (ra == -EAGAIN && nowait)
            return ra; /* retried on a worker; nothing counted yet */
        if (ra < 0)
            r->status = ra;
        else if (ra == 1)
            r->scratch = scratch;
    }
    if (any_miss && ra == 0) {
        /* Tickets first, for every block we will fetch, then the back end. */
        for (uint32_t i = 0; i < nb; i++)
            if (todo_test(scratch, i))
                dir_read_ticket(v->dir, first + i, &scratch->tk);
        int ret = fetch_todo(v, scratch, buf, first, nb, nowait);
        if (ret == -EAGAIN && nowait)
            return ret; /* retried on a worker; nothing counted yet */
        if (ret < 0)
            r->status = ret;
        r->scratch = scratch;
    }
    STAT_ADD(v->c.read_ops, 1);
    STAT_ADD(v->c.read_bytes, r->length);
    STAT_ADD(v->c.read_hit_bytes, r->length - miss_bytes);
    STAT_ADD(v->c.read_miss_bytes, miss_bytes);
    r->hit = !any_miss;
    return r->status;
}

/* Fingerprint a block and map blk to it, unless the race rule says no. */
static void install_block(struct volume *v, uint64_t blk, const uint8_t *data,
                          struct dir_tickets *tk)
{
    if (buf_is_zero(data, BLOCK_SIZE)) {
        if (!dir_install(v->dir, blk, tk, DIR_ZERO))
            STAT_ADD(v->c.insert_races, 1);
        return;
    }
    struct fp fp;
    struct store_ref ref;
    if (fp_compute(data, &fp) < 0)
        return;
    if (store_get_or_insert(v->store, &fp, data, &ref) < 0)
        return; /* no room or too many references: stays a miss */
    if (!dir_install(v->dir, blk, tk, dir_val(ref))) {
        STAT_ADD(v->c.insert_races, 1);
        store_unref(v->store, ref);
    }
}

static void finish_read(struct volume *v, struct vol_req *r)
{
    struct vol_scratch *s = r->scratch;
    if (!s)
        return;
    bool ra = s->ra_active;
    s->ra_active = false;
    if (r->status != 0 || !enabled(v))
        return;
    if (ra) {
        for (uint32_t i = 0; i < s->ra_nb; i++)
            if (todo_test(s, i))
                install_block(v, s->ra_first + i,
                              (uint8_t *)s->prefetch_buf + (size_t)i * BLOCK_SIZE, &s->tk);
        return;
    }
    uint64_t first = block_of(r->offset);
    uint32_t nb = (uint32_t)(block_of(r->offset + r->length - 1) - first + 1);
    for (uint32_t i = 0; i < nb; i++)
        if (todo_test(s, i))
            install_block(v, first + i, (uint8_t *)r->buf + (size_t)i * BLOCK_SIZE, &s->tk);
}

/* ---- writes, trims, zeroes ---- */

static void drop(struct volume *v, uint64_t val)
{
    if (dir_val_is_ref(val))
        store_unref(v->store, dir_ref(val));
}

static void begin_range(struct volume *v, uint64_t first, uint32_t nb, struct vol_scratch *s)
{
    dir_tickets_reset(&s->tk);
    todo_clear(s, nb);
    for (uint32_t i = 0; i < nb; i++)
        drop(v, dir_write_begin(v->dir, first + i, &s->tk));
}

/* End every block; mark the clean ones that the request fully covers (or
 * covers to the end of the volume) for installation in finish. */
static void end_range(struct volume *v, struct vol_req *r, uint64_t first, uint32_t nb,
                      bool may_install)
{
    struct vol_scratch *s = r->scratch;
    uint64_t end = r->offset + r->length;
    for (uint32_t i = 0; i < nb; i++) {
        uint64_t blk = first + i;
        bool clean;
        drop(v, dir_write_end(v->dir, blk, &s->tk, &clean));
        if (!clean || !may_install)
            continue;
        uint64_t bs = block_start(blk);
        bool covered = bs >= r->offset && (bs + BLOCK_SIZE <= end || end == v->size);
        if (covered)
            todo_set(s, i);
    }
}

typedef int (*be_op_fn)(struct volume *v, struct vol_req *r);

/* A trim or zero too long for the scratch's per-block state (up to the
 * whole volume in one request). The race rule's write steps done for the
 * whole range at once: dir_invalidate bumps every touched stripe's seq and
 * clears the range's cells, before the back end (begin) and again after it
 * answered, before the reply (end). A fetch that started earlier cannot
 * install after the first; whatever a fetch installed while the back end
 * worked is cleared by the second. Nothing is installed: later reads fetch
 * the new content (cheaply, for trimmed or zeroed blocks). The cost is a
 * walk over the cached cells, not over the range's blocks. */
static int change_range(struct volume *v, struct vol_req *r, uint64_t first, uint64_t nb,
                        be_op_fn fn)
{
    dir_invalidate(v->dir, first, nb);
    r->status = fn(v, r);
    if (r->status < 0)
        STAT_ADD(v->c.backend_errors, 1);
    dir_invalidate(v->dir, first, nb);
    r->op = VOL_OP_NONE; /* nothing for vol_req_finish to install */
    return r->status;
}

/* The common shape of everything that changes data. */
static int change(struct volume *v, struct vol_req *r, struct vol_scratch *s, enum vol_op op,
                  be_op_fn fn)
{
    r->op = op;
    r->status = 0;
    r->scratch = s;
    r->hit = 0;
    if (v->readonly)
        return r->status = -EPERM;
    if (r->length == 0) {
        r->op = VOL_OP_NONE;
        return 0;
    }
    uint64_t first = block_of(r->offset);
    uint64_t nblocks = block_of(r->offset + r->length - 1) - first + 1;
    if (nblocks > SPAN_BLOCKS_MAX || (op == VOL_OP_WRITE && r->length > VOL_MAX_IO)) {
        if (op == VOL_OP_WRITE) {
            r->op = VOL_OP_NONE;
            return r->status = -EINVAL; /* front ends cap payloads at VOL_MAX_IO */
        }
        return change_range(v, r, first, nblocks, fn);
    }
    uint32_t nb = (uint32_t)nblocks;
    begin_range(v, first, nb, s);
    r->status = fn(v, r);
    if (r->status < 0)
        STAT_ADD(v->c.backend_errors, 1);
    /* Only writes and zeroes know the new content; a trim leaves it to the
     * back end. Installing is pointless while disabled. */
    bool may_install = r->status == 0 && op != VOL_OP_TRIM && enabled(v);
    end_range(v, r, first, nb, may_install);
    return r->status;
}

static int be_write(struct volume *v, struct vol_req *r)
{
    return backend_pwrite(v->be, r->buf, r->length, r->offset, (r->flags & VOL_FUA) ? BE_FUA : 0);
}

static int be_trim(struct volume *v, struct vol_req *r)
{
    return backend_trim(v->be, r->length, r->offset, (r->flags & VOL_FUA) ? BE_FUA : 0);
}

static int be_zero(struct volume *v, struct vol_req *r)
{
    uint32_t f = 0;
    if (r->flags & VOL_FUA)
        f |= BE_FUA;
    if (r->flags & VOL_NO_HOLE)
        f |= BE_NO_HOLE;
    if (r->flags & VOL_FAST_ZERO)
        f |= BE_FAST_ZERO;
    return backend_zero(v->be, r->length, r->offset, f);
}

int vol_write(struct volume *v, struct vol_req *r, struct vol_scratch *s)
{
    STAT_ADD(v->c.write_ops, 1);
    STAT_ADD(v->c.write_bytes, r->length);
    return change(v, r, s, VOL_OP_WRITE, be_write);
}

int vol_trim(struct volume *v, struct vol_req *r, struct vol_scratch *s)
{
    STAT_ADD(v->c.trim_ops, 1);
    STAT_ADD(v->c.trim_bytes, r->length);
    return change(v, r, s, VOL_OP_TRIM, be_trim);
}

int vol_zero(struct volume *v, struct vol_req *r, struct vol_scratch *s)
{
    STAT_ADD(v->c.zero_ops, 1);
    STAT_ADD(v->c.zero_bytes, r->length);
    return change(v, r, s, VOL_OP_ZERO, be_zero);
}

static void finish_change(struct volume *v, struct vol_req *r)
{
    struct vol_scratch *s = r->scratch;
    if (r->status != 0 || r->op == VOL_OP_TRIM)
        return;
    uint64_t first = block_of(r->offset);
    uint32_t nb = (uint32_t)(block_of(r->offset + r->length - 1) - first + 1);
    for (uint32_t i = 0; i < nb; i++) {
        if (!todo_test(s, i))
            continue;
        uint64_t blk = first + i;
        if (r->op == VOL_OP_ZERO) {
            if (!dir_install(v->dir, blk, &s->tk, DIR_ZERO))
                STAT_ADD(v->c.insert_races, 1);
            continue;
        }
        const uint8_t *data = (const uint8_t *)r->buf + (block_start(blk) - r->offset);
        if (block_start(blk) + BLOCK_SIZE > r->offset + r->length) {
            /* Tail of an odd-sized volume: pad with zeros like a fetch would. */
            size_t n = (size_t)(r->offset + r->length - block_start(blk));
            memcpy(s->tail, data, n);
            memset(s->tail + n, 0, BLOCK_SIZE - n);
            data = s->tail;
        }
        install_block(v, blk, data, &s->tk);
    }
}

void vol_req_finish(struct volume *v, struct vol_req *r)
{
    switch (r->op) {
    case VOL_OP_READ:
        for (uint32_t i = 0; i < r->npins; i++)
            store_unpin(v->store, r->pins[i]);
        r->npins = 0;
        finish_read(v, r);
        if (r->start_ns)
            hist_record(r->hit ? &v->lat_read_hit : &v->lat_read_miss, now_ns() - r->start_ns);
        break;
    case VOL_OP_WRITE:
        finish_change(v, r);
        if (r->start_ns)
            hist_record(&v->lat_write, now_ns() - r->start_ns);
        break;
    case VOL_OP_ZERO:
    case VOL_OP_TRIM:
        finish_change(v, r);
        break;
    case VOL_OP_NONE:
        break;
    }
    r->op = VOL_OP_NONE;
    r->scratch = NULL;
}

/* ---- the rest ---- */

int vol_flush(struct volume *v)
{
    STAT_ADD(v->c.flush_ops, 1);
    if (!(v->be->caps & BE_CAN_FLUSH))
        return 0;
    int r = v->be->ops->flush(v->be);
    if (r < 0)
        STAT_ADD(v->c.backend_errors, 1);
    return r;
}

int vol_prefetch(struct volume *v, uint64_t offset, uint64_t length, struct vol_scratch *s)
{
    STAT_ADD(v->c.cache_ops, 1);
    if (!enabled(v))
        return 0; /* nothing to warm; NBD_CMD_CACHE is advisory */
    if (scratch_buf(s) < 0)
        return -ENOMEM;
    /* Whole blocks only: a prefetch is for the cache, not for a reply. */
    uint64_t pos = offset & ~BLOCK_MASK;
    uint64_t end = MIN(offset + length, v->size);
    while (pos < end) {
        /* A removed volume stops warming at once (per 1 MiB chunk). */
        if (volume_defunct(v) || __atomic_load_n(&v->pf_stop, __ATOMIC_ACQUIRE))
            return -ESHUTDOWN;
        uint32_t n = (uint32_t)MIN((uint64_t)PREFETCH_CHUNK, end - pos);
        uint64_t first = block_of(pos);
        uint32_t nb = (uint32_t)(block_of(pos + n - 1) - first + 1);
        bool any = false;
        todo_clear(s, nb);
        dir_tickets_reset(&s->tk);
        for (uint32_t i = 0; i < nb; i++) {
            uint64_t val = dir_lookup(v->dir, first + i);
            if (val_cached(v, val))
                continue;
            todo_set(s, i);
            dir_read_ticket(v->dir, first + i, &s->tk);
            any = true;
        }
        if (any) {
            struct vol_req r = {.offset = pos, .length = n, .buf = s->prefetch_buf};
            int ret = fetch_todo(v, s, s->prefetch_buf, first, nb, false);
            if (ret < 0)
                return ret;
            r.op = VOL_OP_READ;
            r.scratch = s;
            s->ra_active = false;
            finish_read(v, &r);
        }
        pos += n;
    }
    return 0;
}

int vol_extents(struct volume *v, uint64_t offset, uint32_t length, backend_extent_fn fn,
                void *opaque)
{
    STAT_ADD(v->c.block_status_ops, 1);
    int r = backend_extents(v->be, length, offset, fn, opaque);
    if (r < 0)
        STAT_ADD(v->c.backend_errors, 1);
    return r;
}
