/* The volume data path: reads served from RAM or fetched and cached, writes
 * through to the back end with the directory kept coherent by the race rule
 * (core/dir.h). See core/volume_io.h for the two-step contract with front
 * ends (back end work, then finish after the reply). */
#include "core/volume.h"
#include "core/vol_mrc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "common/bufpool.h"
#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/dir.h"
#include "core/fingerprint.h"
#include "core/install.h"
#include "core/scratch.h"
#include "core/store.h"
#include "core/tier.h"
#include "core/vol_key.h"
#include "core/volume_io.h"

struct vol_scratch *vol_scratch_new(void)
{
    struct vol_scratch *s = calloc(1, sizeof(struct vol_scratch));
    if (s) {
        tier_req_init(&s->treq);
        s->kd = s->kd_small;
        s->kd_cap = TIER_BATCH_MAX;
    }
    return s;
}

/* Read-ahead is over for this read: its window buffer goes back. */
static void ra_release(struct vol_scratch *s)
{
    s->ra_active = false;
    if (s->ra_buf) {
        bufpool_put(s->ra_buf, (size_t)s->ra_nb * BLOCK_SIZE);
        s->ra_buf = NULL;
    }
}

void vol_scratch_free(struct vol_scratch *s)
{
    if (!s)
        return;
    tier_req_destroy(&s->treq);
    ra_release(s);
    if (s->kd != s->kd_small)
        free(s->kd);
    free(s->copy_vals);
    free(s);
}

static inline void todo_set(struct vol_scratch *s, uint32_t i)
{
    bitmap_set(s->todo, i);
}

static inline void todo_unset(struct vol_scratch *s, uint32_t i)
{
    bitmap_clear(s->todo, i);
}

static inline bool todo_test(const struct vol_scratch *s, uint32_t i)
{
    return bitmap_test(s->todo, i);
}

static void todo_clear(struct vol_scratch *s, uint32_t nb)
{
    bits_clear(s->todo, nb);
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

/* ---- reads ---- */

/* A read found blk in RAM (or zero): if it was read ahead and not read
 * since, read-ahead's budget gets it back (core/ra_budget.h). */
static inline void ra_hit(struct volume *v, uint64_t blk)
{
    if (v->ra_blocks && ra_pending_hit(&v->ra_budget, v->ra_blocks, blk))
        STAT_ADD(v->c.readahead_used_bytes, BLOCK_SIZE);
}

/* Zero blocks in zero-copy replies all point here. */
static const uint8_t zero_block[BLOCK_SIZE] __attribute__((aligned(4096)));

/* Blocks looked up per directory batch on the copy path. */
#define LOOKUP_WINDOW 64

int vol_read_zc(struct volume *v, struct vol_req *r, struct iovec *iov, uint32_t *pins,
                unsigned *niov)
{
    r->op = VOL_OP_NONE;
    r->updated = 0;
    r->pins = NULL;
    r->npins = 0;
    if (r->length == 0 || !vol_enabled(v))
        return -EAGAIN;
    uint64_t first = block_of(r->offset);
    uint64_t last = block_of(r->offset + r->length - 1);
    uint32_t nb = (uint32_t)(last - first + 1);
    if (nb > VOL_ZC_MAX_BLOCKS)
        return -EAGAIN;
    _Static_assert(VOL_ZC_MAX_BLOCKS <= STORE_PIN_MANY_MAX, "one store_pin_many a request");
    uint64_t vals[VOL_ZC_MAX_BLOCKS];
    struct store_ref refs[VOL_ZC_MAX_BLOCKS];
    const uint8_t *data[VOL_ZC_MAX_BLOCKS];
    dir_lookup_range(v->dir, first, nb, vals);
    uint32_t np = 0, zeros = 0;
    for (uint32_t i = 0; i < nb; i++) {
        if (vals[i] == DIR_ZERO) {
            zeros++;
        } else if (dir_val_is_ref(vals[i])) {
            pins[np] = (uint32_t)vals[i];
            refs[np++] = dir_ref(vals[i]);
        } else {
            return -EAGAIN; /* a miss (the worker's vol_read may still find it by key) */
        }
    }
    if (np && store_pin_many(v->store, refs, np, data) < 0)
        return -EAGAIN; /* stale or pinned too often: the same */
    for (uint32_t i = 0, k = 0; i < nb; i++) {
        uint32_t lo, n;
        block_overlap(first + i, r->offset, r->length, &lo, &n);
        const uint8_t *p = vals[i] == DIR_ZERO ? zero_block : data[k++];
        ra_hit(v, first + i);
        iov[i] = (struct iovec){(void *)(p + lo), n};
    }
    /* Counted once served: a request that falls back to vol_read is
     * counted there (a block counted in both would look used twice to a
     * frequency-aware policy). */
    store_used(v->store, pins, np);
    for (uint32_t k = 0; k < np; k++)
        vol_mrc_note(v, store_pinned_key(v->store, pins[k]), MRC_READ);
    vol_mrc_reads(v, np, true);
    vol_mrc_zero_reads(v, zeros);
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

/* Blocks a read or write of r covers, from block_of(r->offset). */
static inline uint32_t req_nblocks(const struct vol_req *r)
{
    return (uint32_t)(block_of(r->offset + r->length - 1) - block_of(r->offset) + 1);
}

/* A back end read's result in the stats. */
static int fetch_counted(struct volume *v, uint64_t len, int r)
{
    STAT_ADD(v->c.backend_read_ops, 1);
    if (r < 0) {
        STAT_ADD(v->c.backend_errors, 1);
        return r;
    }
    STAT_ADD(v->c.backend_read_bytes, len);
    return 0;
}

/* Fetch bytes [off, end) from the back end into dst. With nowait, use the
 * back end's non-blocking read (-EAGAIN when it would block). With
 * s->fetch_defer (an asynchronous miss: volume_io.h), only note the one
 * range to fetch in s; vol_read starts it. */
static int fetch_bytes(struct volume *v, struct vol_scratch *s, uint8_t *dst, uint64_t off,
                       uint64_t end, bool nowait)
{
    if (s && s->fetch_defer) {
        if (s->af_len)
            return -EAGAIN; /* one range per asynchronous read (vol_read checks) */
        s->af_dst = dst;
        s->af_off = off;
        s->af_len = (uint32_t)(end - off);
        return 0;
    }
    int r = nowait ? v->be->ops->pread_nowait(v->be, dst, (uint32_t)(end - off), off)
                   : v->be->ops->pread(v->be, dst, (uint32_t)(end - off), off);
    if (r == -EAGAIN && nowait)
        return r;
    return fetch_counted(v, end - off, r);
}

/* Fetch blocks [a, b] into dst. The last block of an odd-sized volume reads
 * as zero padding beyond the end, so its fingerprint is that of the padded
 * block. */
static int fetch_run(struct volume *v, struct vol_scratch *s, uint8_t *dst, uint64_t a, uint64_t b,
                     bool nowait)
{
    uint64_t off = block_start(a), end = MIN(block_start(b + 1), v->size);
    int r = fetch_bytes(v, s, dst, off, end, nowait);
    /* Outside the fetched range: done now even when the fetch is deferred. */
    if (r == 0 && end < block_start(b + 1))
        memset(dst + (end - off), 0, (size_t)(block_start(b + 1) - end));
    return r;
}

/* Fetch every run of blocks marked in s->todo (block i at first + i) into
 * buf + i * BLOCK_SIZE, one back end request per run. With r, a run that
 * starts at an exact head block starts at r's first byte, and one that ends
 * at an exact tail block ends at r's last (core/partial.h). */
static int fetch_todo(struct volume *v, struct vol_scratch *s, uint8_t *buf, uint64_t first,
                      uint32_t nb, bool nowait, const struct vol_req *r)
{
    for (uint32_t i = 0; i < nb;) {
        if (!todo_test(s, i)) {
            i++;
            continue;
        }
        uint32_t j = i;
        while (j + 1 < nb && todo_test(s, j + 1))
            j++;
        int ret;
        bool head = r && i == 0 && s->exact_head, cut = r && j == nb - 1 && s->exact_tail;
        if (head || cut) {
            /* Exact to the unit the back end reads without extra work
             * (edge_exact: < a block). */
            uint64_t mb = backend_io_align(v->be);
            uint64_t lo = block_start(first + i), hi = block_start(first + j + 1);
            uint64_t off = head ? r->offset - r->offset % mb : lo;
            uint64_t rend = r->offset + r->length;
            uint64_t end = MIN(cut ? rend + (mb - rend % mb) % mb : hi, v->size);
            uint8_t *dst = buf + (size_t)i * BLOCK_SIZE;
            ret = fetch_bytes(v, s, dst + (off - lo), off, end, nowait);
            if (ret == 0 && !cut && end < hi)
                memset(dst + (end - lo), 0, (size_t)(hi - end));
        } else {
            ret = fetch_run(v, s, buf + (size_t)i * BLOCK_SIZE, first + i, first + j, nowait);
        }
        if (ret < 0)
            return ret;
        i = j + 1;
    }
    return 0;
}

/* A directory value that needs no fetch: a known zero block or live content. */
static inline bool val_cached(struct volume *v, uint64_t val)
{
    return val == DIR_ZERO || (dir_val_is_ref(val) && store_ref_live(v->store, dir_ref(val)));
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
 * request, the uncached blocks after it up to the end of its aligned window
 * (4 blocks up to v->ra_blocks; a request crossing windows gets both), and
 * caches them after the reply like its own blocks, as read-ahead for the
 * eviction policy (INSTALL_AHEAD). Over a network back end a 64 KiB read
 * costs about what a 4 KiB one does, and file reads and copies touch the
 * next blocks soon after. What the neighbours cost is paid from the
 * volume's read-ahead budget (core/ra_budget.h), so that read-ahead never
 * costs the back end much more than it saves. The race rule is the read's:
 * tickets for every fetched block before anything is fetched, install only
 * if nothing changed since.
 *
 * ra_plan, called with the request's misses in s->todo (relative to
 * `first`), widens todo to the window (window-relative from then on,
 * s->ra_active) with the uncached neighbours of its window of size class
 * c (core/ra_budget.h), if that class's credit pays for them. Returns
 * RA_PLANNED, RA_UNPAID (a smaller window may do) or RA_NONE (read-ahead
 * does not apply: no smaller window would either). */
enum { RA_NONE, RA_UNPAID, RA_PLANNED };
static int ra_plan(struct volume *v, struct vol_scratch *s, uint64_t first, uint32_t nb, unsigned c)
{
    uint64_t ra = ra_class_window(v->ra_blocks, c);
    uint64_t wa = first & ~(ra - 1);
    uint64_t wb = MIN((first + nb + ra - 1) & ~(ra - 1), v->nblocks);
    uint32_t wnb = (uint32_t)(wb - wa);
    if (wnb <= nb || (uint64_t)wnb * BLOCK_SIZE > PREFETCH_CHUNK)
        return RA_NONE;
    /* Forward only: what comes before the request in its window is not
     * the stream's (a stream's own earlier blocks are cached). */
    uint64_t want[BITMAP_WORDS(PREFETCH_CHUNK / BLOCK_SIZE)] = {0};
    uint32_t off = (uint32_t)(first - wa), extra = 0;
    for (uint32_t i = 0; i < nb; i++)
        if (todo_test(s, i))
            bitmap_set(want, off + i);
    for (uint32_t i = off + nb; i < wnb; i++) {
        if (!val_cached(v, dir_lookup(v->dir, wa + i))) {
            bitmap_set(want, i);
            extra++;
        }
    }
    if (extra == 0)
        return RA_NONE;
    if (!ra_credit_spend(&v->ra_budget, c, extra))
        return RA_UNPAID;
    /* Never waits: without a buffer to spare, the read fetches just itself. */
    s->ra_buf = bufpool_try_get((size_t)wnb * BLOCK_SIZE);
    if (!s->ra_buf) {
        ra_credit_add(&v->ra_budget, v->ra_blocks, c, (int64_t)extra * RA_UNIT);
        return RA_NONE;
    }
    s->ra_nb = wnb; /* ra_release gives back ra_nb blocks */
    s->ra_paid = extra;
    s->ra_class = c;
    todo_clear(s, wnb);
    for (uint32_t i = 0; i < wnb; i++)
        if (bitmap_test(want, i))
            todo_set(s, i);
    s->ra_active = true;
    s->ra_first = wa;
    return RA_PLANNED;
}

/* Read-ahead pays only on a sequential stream: on random reads every
 * window costs up to ra_blocks blocks for one that was asked (a TPC-C
 * trace read 8.9x its client bytes from the back end with it), and reads
 * that merely land near each other waste most of theirs (a web search
 * trace: +56% back end bytes when "near" was one window). So a miss reads
 * ahead only when it starts exactly where an earlier miss's fetch ended
 * and that stream already had RA_MIN_RUN such misses in a row: the first
 * misses of a stream fetch just themselves. A stream's slot holds its
 * fetch end (low 48 bits) and its run of sequential misses (high 16). The
 * table is a few relaxed atomics: two requests racing on a slot only cost
 * or save one window. */
#define RA_MIN_RUN  2
#define RA_END_MASK ((UINT64_C(1) << 48) - 1)

/* The slot of the stream a miss at `first` continues (its run in *run),
 * or -1. */
static int ra_stream_of(struct volume *v, uint64_t first, unsigned *run)
{
    for (unsigned i = 0; i < VOL_RA_STREAMS; i++) {
        uint64_t s = __atomic_load_n(&v->ra_streams[i], __ATOMIC_RELAXED);
        if (s && (s & RA_END_MASK) == first) {
            *run = (unsigned)(s >> 48);
            return (int)i;
        }
    }
    *run = 0;
    return -1;
}

/* Remember where this miss's fetch ended and the stream's run: in the
 * stream it continued (slot), or in the oldest slot. */
static void ra_note(struct volume *v, int slot, uint64_t end, unsigned run)
{
    unsigned i = slot >= 0 ? (unsigned)slot
                           : __atomic_fetch_add(&v->ra_next, 1, __ATOMIC_RELAXED) % VOL_RA_STREAMS;
    uint64_t r = run < 0xffff ? run : 0xffff;
    __atomic_store_n(&v->ra_streams[i], (r << 48) | (end & RA_END_MASK), __ATOMIC_RELAXED);
}

/* The first and last block (window-relative) a read-ahead still wants;
 * false if none (everything came by key). */
static bool ra_span(const struct vol_scratch *s, uint32_t *lo, uint32_t *hi)
{
    *lo = UINT32_MAX;
    *hi = 0;
    for (uint32_t i = 0; i < s->ra_nb; i++) {
        if (todo_test(s, i)) {
            *lo = MIN(*lo, i);
            *hi = i;
        }
    }
    return *lo != UINT32_MAX;
}

/* The read-ahead fetch: one back end request from the first to the last
 * block still wanted (cached or key-served blocks in between are fetched
 * again but neither installed nor copied); ra_copy then copies the
 * request's own blocks into r->buf. */
static int ra_fetch(struct volume *v, struct vol_scratch *s, bool nowait)
{
    uint32_t lo, hi;
    if (!ra_span(s, &lo, &hi))
        return 0;
    return fetch_run(v, s, (uint8_t *)s->ra_buf + (size_t)lo * BLOCK_SIZE, s->ra_first + lo,
                     s->ra_first + hi, nowait);
}

static void ra_copy(struct volume *v, struct vol_req *r, struct vol_scratch *s, uint64_t first,
                    uint32_t nb)
{
    uint32_t lo, hi, off = (uint32_t)(first - s->ra_first);
    if (!ra_span(s, &lo, &hi))
        return;
    uint8_t *ra_buf = s->ra_buf;
    uint64_t extra = 0;
    for (uint32_t i = lo; i <= hi; i++) {
        if (i >= off && i < off + nb) {
            if (todo_test(s, i))
                memcpy((uint8_t *)r->buf + (size_t)(i - off) * BLOCK_SIZE,
                       ra_buf + (size_t)i * BLOCK_SIZE, BLOCK_SIZE);
        } else if (todo_test(s, i)) {
            extra += BLOCK_SIZE;
            ra_pending_note(&v->ra_budget, s->ra_first + i, s->ra_class);
        }
    }
    STAT_ADD(v->c.readahead_bytes, extra);
}

/* A read that failed or gives up (ret < 0) fetched no neighbours: what
 * its window was paid goes back to the budget. Returns ret. */
static int ra_unpaid(struct volume *v, struct vol_scratch *s, int ret)
{
    if (ret < 0 && s->ra_active && s->ra_paid) {
        ra_credit_add(&v->ra_budget, v->ra_blocks, s->ra_class, (int64_t)s->ra_paid * RA_UNIT);
        s->ra_paid = 0;
    }
    return ret;
}

/* Whether r's edge block i (its first or its last), if the back end must
 * still give it (in s->todo, after the store and the tiers), is read
 * exactly: the read covers it only in part and it was not read that way
 * lately (core/partial.h). Exact to the back end's I/O unit (its smallest,
 * or the one it reads without extra work, as an O_DIRECT file's 4 KiB:
 * backend_io_align; a client may ignore the block size we advertise);
 * never when that unit is a whole block. */
static bool edge_exact(struct volume *v, const struct vol_req *r, const struct vol_scratch *s,
                       uint64_t first, uint32_t i)
{
    uint64_t blk = first + i;
    uint32_t lo, n;
    block_overlap(blk, r->offset, r->length, &lo, &n);
    return backend_io_align(v->be) < BLOCK_SIZE && todo_test(s, i) &&
           n < MIN((uint64_t)BLOCK_SIZE, v->size - block_start(blk)) &&
           !partial_seen(v->partial_seen, blk);
}

/* Edge block i was served exactly: noted, and not installed by finish_read. */
static void edge_done(struct volume *v, struct vol_scratch *s, uint64_t first, uint32_t i)
{
    partial_note(v->partial_seen, first + i);
    todo_unset(s, i);
    STAT_ADD(v->c.partial_exact_blocks, 1);
}

/* What a read's misses need once the back end answered (ret: its result). */
static int misses_fetched(struct volume *v, struct vol_req *r, struct vol_scratch *s,
                          uint64_t first, uint32_t nb, int ret)
{
    if (ret == 0 && s->ra_active)
        ra_copy(v, r, s, first, nb);
    if (ret == 0 && s->exact_head)
        edge_done(v, s, first, 0);
    if (ret == 0 && s->exact_tail && nb > 1)
        edge_done(v, s, first, nb - 1);
    return ra_unpaid(v, s, ret);
}

/* The misses of a read (in s->todo, request-relative): take every ticket
 * first, then get what the local store and the tiers have by key, then the
 * rest from the back end. Returns 0, -EAGAIN (nowait: retry on a worker,
 * nothing kept) or the back end's error; *by_key: bytes of the request that
 * came by key. */
static int read_misses(struct volume *v, struct vol_req *r, struct vol_scratch *s, uint64_t first,
                       uint32_t nb, bool any_keyed, bool nowait, uint64_t *by_key)
{
    *by_key = 0;
    ra_release(s); /* none held: every read's update released it */
    s->nkeyed = 0;
    if (v->ra_blocks) {
        unsigned run;
        int slot = ra_stream_of(v, first, &run);
        if (slot >= 0 && run >= RA_MIN_RUN) {
            /* A miss read-ahead could have saved earns its bonus. */
            ra_credit_add(&v->ra_budget, v->ra_blocks, 0, (int64_t)nb * RA_SEQ_BONUS);
            /* The window grows with the stream (4 blocks, then 8, ... up to
             * ra_blocks), so a stream that stops wastes little; a size
             * whose credit is spent falls back to a smaller one. */
            for (int c = (int)MIN(run - RA_MIN_RUN, ra_top_class(v->ra_blocks)); c >= 0; c--) {
                int p = ra_plan(v, s, first, nb, (unsigned)c);
                if (p == RA_NONE || p == RA_PLANNED)
                    break;
                STAT_ADD(v->c.readahead_denied, 1);
            }
        }
        ra_note(v, slot, s->ra_active ? s->ra_first + s->ra_nb : first + nb,
                slot >= 0 ? run + 1 : 0);
    }
    uint32_t n = s->ra_active ? s->ra_nb : nb;
    uint64_t base = s->ra_active ? s->ra_first : first;
    for (uint32_t i = 0; i < n; i++)
        if (todo_test(s, i))
            dir_read_ticket(v->dir, base + i, &s->tk);
    if (any_keyed) {
        uint64_t key_blocks, tier_blocks;
        int ret = vol_key_resolve(v, s, r->buf, first, nb, nowait, &key_blocks, &tier_blocks);
        if (ret < 0)
            return ra_unpaid(v, s, ret);
        STAT_ADD(v->c.key_hit_blocks, key_blocks);
        STAT_ADD(v->c.tier_hit_blocks, tier_blocks);
        for (unsigned k = 0; k < s->nkeyed; k++) {
            uint32_t lo, len;
            block_overlap(first + s->kd[k].pos, r->offset, r->length, &lo, &len);
            *by_key += len;
        }
    }
    /* A read-ahead window is fetched whole; a one-block read's head is its
     * tail. */
    s->exact_head = !s->ra_active && edge_exact(v, r, s, first, 0);
    s->exact_tail = nb > 1 ? !s->ra_active && edge_exact(v, r, s, first, nb - 1) : s->exact_head;
    int ret =
        s->ra_active ? ra_fetch(v, s, nowait) : fetch_todo(v, s, r->buf, first, nb, nowait, r);
    if (ret == -EAGAIN && nowait)
        vol_key_finish(v, s, r->buf, first, false); /* retried on a worker */
    if (ret == 0 && s->fetch_defer)
        return 0; /* misses_fetched once the data is in (vol_read_fetched) */
    return misses_fetched(v, r, s, first, nb, ret);
}

/* Hits of one copied read noted in the miss-ratio curves: the first this
 * many (a sample of a sample; large reads are few). */
#define MRC_NOTE_BATCH 64

int vol_read(struct volume *v, struct vol_req *r, struct vol_scratch *scratch)
{
    r->op = VOL_OP_READ;
    r->updated = 0;
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
    /* Misses may go out through the back end's asynchronous read
     * (volume_io.h): a single range, nothing asked of the tiers by key. */
    bool async = nowait && r->aio && scratch && vol_reads_async(v);
    if (!vol_enabled(v)) {
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
    bool any_miss = false, any_keyed = false;
    /* Hits for the miss-ratio curves, noted once the read is served (a
     * NOWAIT attempt may give up and run again). */
    uint32_t keys[MRC_NOTE_BATCH], nkeys = 0, zeros = 0, stored_hits = 0;
    /* Without a non-blocking back end read, a miss ends a NOWAIT attempt. */
    bool can_fetch = !nowait || (scratch && v->be->ops->pread_nowait) || async;

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
            zeros++;
            ra_hit(v, blk);
            continue;
        }
        uint32_t key;
        if (dir_val_is_ref(val) &&
            store_read_key(v->store, dir_ref(val), buf + (size_t)i * BLOCK_SIZE + lo, lo, n,
                           &key) == 0) {
            if (nkeys < MRC_NOTE_BATCH)
                keys[nkeys++] = key;
            stored_hits++;
            ra_hit(v, blk);
            continue;
        }
        if (!can_fetch)
            return -EAGAIN;
        if (async && (val || __atomic_load_n(&v->map_tier, __ATOMIC_RELAXED) ||
                      (any_miss && !todo_test(scratch, i - 1))))
            return -EAGAIN; /* by key, or a second range: on a worker */
        if (v->ra_blocks)
            ra_pending_miss(&v->ra_budget, blk); /* read ahead, gone unread */
        if (!any_miss) {
            any_miss = true;
            todo_clear(scratch, nb);
            bits_clear(scratch->keyed, nb);
            dir_tickets_reset(&scratch->tk);
        }
        todo_set(scratch, i);
        /* Remembered, or evicted (its key may still be known); a block
         * the directory knows nothing of may be in the cluster's map. */
        if (val) {
            bitmap_set(scratch->keyed, i);
            any_keyed = true;
        } else if (__atomic_load_n(&v->map_tier, __ATOMIC_RELAXED)) {
            any_keyed = true;
        }
        miss_bytes += n;
    }

    bool pending = false;
    if (any_miss) {
        uint64_t by_key;
        scratch->fetch_defer = async;
        scratch->af_len = 0;
        int ret = read_misses(v, r, scratch, first, nb, any_keyed, nowait, &by_key);
        if (ret == 0 && scratch->fetch_defer) {
            if (scratch->af_len) {
                ret = v->be->ops->pread_async(v->be, scratch->af_dst, scratch->af_len,
                                              scratch->af_off, r->aio);
                if (ret == 0) {
                    pending = true; /* vol_read_fetched finishes it */
                    STAT_ADD(v->c.async_ops, 1);
                } else if (ret == -EAGAIN)
                    ra_unpaid(v, scratch, ret);
                else
                    ret = misses_fetched(v, r, scratch, first, nb, fetch_counted(v, 0, ret));
            } else {
                ret = misses_fetched(v, r, scratch, first, nb, 0);
            }
        }
        scratch->fetch_defer = false;
        if (ret == -EAGAIN && nowait) {
            ra_release(scratch);
            return ret; /* retried on a worker; nothing counted yet */
        }
        if (ret < 0)
            r->status = ret;
        r->scratch = scratch;
        miss_bytes -= by_key;
    }
    for (uint32_t k = 0; k < nkeys; k++)
        vol_mrc_note(v, keys[k], MRC_READ);
    vol_mrc_reads(v, stored_hits, true);
    vol_mrc_zero_reads(v, zeros);
    STAT_ADD(v->c.read_ops, 1);
    STAT_ADD(v->c.read_bytes, r->length);
    STAT_ADD(v->c.read_hit_bytes, r->length - miss_bytes);
    STAT_ADD(v->c.read_miss_bytes, miss_bytes);
    r->hit = !any_miss;
    return pending ? -EINPROGRESS : r->status;
}

int vol_read_fetched(struct volume *v, struct vol_req *r, int status)
{
    struct vol_scratch *s = r->scratch;
    uint64_t first = block_of(r->offset);
    uint32_t nb = req_nblocks(r);
    int ret = misses_fetched(v, r, s, first, nb, fetch_counted(v, s->af_len, status));
    if (ret < 0)
        r->status = ret;
    return r->status;
}

static void finish_read(struct volume *v, struct vol_req *r)
{
    struct vol_scratch *s = r->scratch;
    if (!s)
        return;
    bool ra = s->ra_active;
    uint64_t first = block_of(r->offset);
    bool ok = r->status == 0 && vol_enabled(v);
    vol_key_finish(v, s, r->buf, first, ok);
    if (!ok) {
        ra_release(s);
        return;
    }
    uint32_t nb = req_nblocks(r);
    struct vol_installs in = {0};
    if (ra) {
        /* Blocks around the request were not asked for: inserts, not reads. */
        for (uint32_t i = 0; i < s->ra_nb; i++) {
            uint64_t blk = s->ra_first + i;
            if (todo_test(s, i))
                vol_install_add(v, &in, blk, (uint8_t *)s->ra_buf + (size_t)i * BLOCK_SIZE, &s->tk,
                                INSTALL_TIERS | (blk >= first && blk < first + nb ? INSTALL_READ
                                                                                  : INSTALL_AHEAD),
                                0);
        }
        vol_install_flush(v, &in, &s->tk);
        ra_release(s);
        return;
    }
    for (uint32_t i = 0; i < nb; i++)
        if (todo_test(s, i))
            vol_install_add(v, &in, first + i, (uint8_t *)r->buf + (size_t)i * BLOCK_SIZE, &s->tk,
                            INSTALL_TIERS | INSTALL_READ, 0);
    vol_install_flush(v, &in, &s->tk);
}

/* ---- writes, trims, zeroes ---- */

/* Returns the dropped content's heat for the eviction policy (evict.h). */
static unsigned drop(struct volume *v, uint64_t val)
{
    return dir_val_is_ref(val) ? store_unref_heat(v->store, dir_ref(val)) : 0;
}

static void begin_range(struct volume *v, uint64_t first, uint32_t nb, struct vol_scratch *s)
{
    dir_tickets_reset(&s->tk);
    todo_clear(s, nb);
    for (uint32_t i = 0; i < nb; i++) {
        struct fpkey forgot;
        bool remembered = false;
        uint64_t old = dir_write_begin(v->dir, first + i, &s->tk, &forgot, &remembered);
        unsigned h = drop(v, old);
        if (remembered && !h)
            h = store_key_heat(v->store, &forgot);
        s->heat[i] = (uint8_t)(h < UINT8_MAX ? h : UINT8_MAX);
    }
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
        (void)drop(v, dir_write_end(v->dir, blk, &s->tk, &clean));
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

/* The common shape of everything that changes data: change_begin, the
 * back end's call, change_end. change_begin returns 1 when the call is to
 * be made, the per-block steps begun for [*first, +*nb); else 0 with
 * r->status the request's result, or 2 for a trim or zero too long for
 * per-block state (change_range's). */
static int change_begin(struct volume *v, struct vol_req *r, struct vol_scratch *s, enum vol_op op,
                        uint64_t *first, uint64_t *nblocks)
{
    r->op = op;
    r->updated = 0;
    r->status = 0;
    r->scratch = s;
    r->hit = 0;
    if (vol_readonly(v)) { /* under the gate: a move's fence waits for it */
        r->status = -EPERM;
        return 0;
    }
    if (r->length == 0) {
        r->op = VOL_OP_NONE;
        return 0;
    }
    *first = block_of(r->offset);
    *nblocks = block_of(r->offset + r->length - 1) - *first + 1;
    if (*nblocks > SPAN_BLOCKS_MAX || (op == VOL_OP_WRITE && r->length > VOL_MAX_IO)) {
        if (op == VOL_OP_WRITE) {
            r->op = VOL_OP_NONE;
            r->status = -EINVAL; /* front ends cap payloads at VOL_MAX_IO */
            return 0;
        }
        return 2;
    }
    begin_range(v, *first, (uint32_t)*nblocks, s);
    return 1;
}

static void change_end(struct volume *v, struct vol_req *r, uint64_t first, uint32_t nb)
{
    if (r->status < 0)
        STAT_ADD(v->c.backend_errors, 1);
    /* Only writes and zeroes know the new content; a trim leaves it to the
     * back end. Installing is pointless while disabled. */
    bool may_install = r->status == 0 && r->op != VOL_OP_TRIM && vol_enabled(v);
    end_range(v, r, first, nb, may_install);
}

static int change(struct volume *v, struct vol_req *r, struct vol_scratch *s, enum vol_op op,
                  be_op_fn fn)
{
    uint64_t first = 0, nb = 0;
    int go = change_begin(v, r, s, op, &first, &nb);
    if (go == 0)
        return r->status;
    if (go == 2)
        return change_range(v, r, first, nb, fn);
    r->status = fn(v, r);
    change_end(v, r, first, (uint32_t)nb);
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

/* A change under the write gate, shared (volume.h). */
static int gated(struct volume *v, struct vol_req *r, struct vol_scratch *s, enum vol_op op,
                 be_op_fn fn)
{
    gate_shared(&v->gate);
    int ret = change(v, r, s, op, fn);
    gate_shared_end(&v->gate);
    return ret;
}

int vol_write(struct volume *v, struct vol_req *r, struct vol_scratch *s)
{
    STAT_ADD(v->c.write_ops, 1);
    STAT_ADD(v->c.write_bytes, r->length);
    return gated(v, r, s, VOL_OP_WRITE, be_write);
}

int vol_write_async(struct volume *v, struct vol_req *r, struct vol_scratch *s)
{
    if (!r->aio || !v->be->ops->pwrite_async || !gate_try_shared(&v->gate))
        return -EAGAIN;
    uint64_t first = 0, nb = 0;
    if (change_begin(v, r, s, VOL_OP_WRITE, &first, &nb) != 1) {
        gate_shared_end(&v->gate);
        r->op = VOL_OP_NONE;
        return -EAGAIN; /* refusals and empty writes: the worker's */
    }
    int ret = v->be->ops->pwrite_async(v->be, r->buf, r->length, r->offset,
                                       (r->flags & VOL_FUA) ? BE_FUA : 0, r->aio);
    if (ret == 0) {
        STAT_ADD(v->c.write_ops, 1);
        STAT_ADD(v->c.write_bytes, r->length);
        STAT_ADD(v->c.async_ops, 1);
        return -EINPROGRESS; /* vol_write_answered ends it */
    }
    /* Not started: what begin took out of the directory stays out (a
     * lost cell costs a fetch, never a stale read); a worker writes. */
    end_range(v, r, first, (uint32_t)nb, false);
    gate_shared_end(&v->gate);
    r->op = VOL_OP_NONE;
    r->scratch = NULL;
    return -EAGAIN;
}

int vol_write_answered(struct volume *v, struct vol_req *r, int status)
{
    uint64_t first = block_of(r->offset);
    uint32_t nb = req_nblocks(r);
    r->status = status;
    change_end(v, r, first, nb);
    gate_shared_end(&v->gate);
    return r->status;
}

int vol_write_gate_held(struct volume *v, struct vol_req *r, struct vol_scratch *s)
{
    STAT_ADD(v->c.write_ops, 1);
    STAT_ADD(v->c.write_bytes, r->length);
    return change(v, r, s, VOL_OP_WRITE, be_write);
}

int vol_trim(struct volume *v, struct vol_req *r, struct vol_scratch *s)
{
    STAT_ADD(v->c.trim_ops, 1);
    STAT_ADD(v->c.trim_bytes, r->length);
    return gated(v, r, s, VOL_OP_TRIM, be_trim);
}

int vol_zero(struct volume *v, struct vol_req *r, struct vol_scratch *s)
{
    STAT_ADD(v->c.zero_ops, 1);
    STAT_ADD(v->c.zero_bytes, r->length);
    return gated(v, r, s, VOL_OP_ZERO, be_zero);
}

/* A copied block whose source content is in RAM: take one more reference
 * on it rather than hash the data again, once the bytes are checked (the
 * source may have changed since they were read). False: install by hash. */
static bool install_shared(struct volume *v, struct vol_scratch *s, uint32_t i, uint64_t blk,
                           const uint8_t *data)
{
    uint64_t val = s->copy_vals[i];
    if (!dir_val_is_ref(val))
        return false;
    struct store_ref src = dir_ref(val), ref;
    const uint8_t *p;
    if (store_pin(v->store, src, &p) < 0)
        return false;
    bool same = memcmp(p, data, BLOCK_SIZE) == 0;
    uint32_t key = store_pinned_key(v->store, src.idx);
    store_unpin(v->store, src.idx);
    if (!same || store_ref_dup(v->store, src, &ref) < 0)
        return false;
    vol_mrc_note(v, key, MRC_WRITE);
    int r = dir_install(v->dir, blk, &s->tk, dir_val(ref));
    if (r == DIR_REFUSED)
        STAT_ADD(v->c.insert_races, 1);
    if (r != DIR_HELD)
        store_unref(v->store, ref);
    STAT_ADD(v->c.copy_shared_blocks, 1);
    return true;
}

static void finish_change(struct volume *v, struct vol_req *r)
{
    struct vol_scratch *s = r->scratch;
    bool copy = s && s->copy_active;
    if (s)
        s->copy_active = false;
    if (r->status != 0 || r->op == VOL_OP_TRIM)
        return;
    uint64_t first = block_of(r->offset);
    uint32_t nb = req_nblocks(r);
    struct vol_installs in = {0};
    for (uint32_t i = 0; i < nb; i++) {
        if (!todo_test(s, i))
            continue;
        uint64_t blk = first + i;
        if (r->op == VOL_OP_ZERO) {
            if (dir_install(v->dir, blk, &s->tk, DIR_ZERO) == DIR_REFUSED)
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
        } else if (copy) {
            vol_install_flush(v, &in, &s->tk); /* blocks in order */
            if (install_shared(v, s, i, blk, data))
                continue;
        }
        vol_install_add(v, &in, blk, data, &s->tk, 0, s->heat[i]);
    }
    vol_install_flush(v, &in, &s->tk);
}

void vol_req_update(struct volume *v, struct vol_req *r)
{
    if (r->updated)
        return;
    r->updated = 1;
    switch (r->op) {
    case VOL_OP_READ:
        finish_read(v, r);
        break;
    case VOL_OP_WRITE:
    case VOL_OP_ZERO:
    case VOL_OP_TRIM:
        if (r->scratch)
            finish_change(v, r);
        break;
    case VOL_OP_NONE:
        break;
    }
    r->scratch = NULL;
}

void vol_req_release(struct volume *v, struct vol_req *r)
{
    uint64_t end = r->reply_ns ? r->reply_ns : now_ns();
    switch (r->op) {
    case VOL_OP_READ:
        store_unpin_many(v->store, r->pins, r->npins);
        r->npins = 0;
        if (r->start_ns)
            hist_record(r->hit ? &v->lat_read_hit : &v->lat_read_miss, end - r->start_ns);
        break;
    case VOL_OP_WRITE:
        if (r->start_ns)
            hist_record(&v->lat_write, end - r->start_ns);
        break;
    default:
        break;
    }
    r->op = VOL_OP_NONE;
}

void vol_req_finish(struct volume *v, struct vol_req *r)
{
    vol_req_update(v, r);
    vol_req_release(v, r);
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
    if (!vol_enabled(v))
        return 0; /* nothing to warm; NBD_CMD_CACHE is advisory */
    /* From the buffer pool, like a client's read of the same size. */
    uint8_t *buf = bufpool_get(PREFETCH_CHUNK);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    /* Whole blocks only: a prefetch is for the cache, not for a reply. */
    uint64_t pos = offset & ~BLOCK_MASK;
    uint64_t end = MIN(offset + length, v->size);
    while (pos < end) {
        /* A removed volume stops warming at once (per 1 MiB chunk). */
        if (vol_defunct(v) || __atomic_load_n(&v->pf_stop, __ATOMIC_ACQUIRE)) {
            ret = -ESHUTDOWN;
            break;
        }
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
            struct vol_req r = {.offset = pos, .length = n, .buf = buf};
            ret = fetch_todo(v, s, buf, first, nb, false, NULL);
            if (ret < 0)
                break;
            r.op = VOL_OP_READ;
            r.scratch = s;
            ra_release(s);
            s->nkeyed = 0;
            finish_read(v, &r);
        }
        pos += n;
    }
    bufpool_put(buf, PREFETCH_CHUNK);
    return ret;
}

_Static_assert(VOL_EXTENT_HOLE == BE_EXTENT_HOLE && VOL_EXTENT_ZERO == BE_EXTENT_ZERO,
               "vol_extents passes the back end's flags through");

int vol_extents(struct volume *v, uint64_t offset, uint32_t length, vol_extent_fn fn, void *opaque)
{
    STAT_ADD(v->c.block_status_ops, 1);
    int r = backend_extents(v->be, length, offset, fn, opaque);
    if (r < 0)
        STAT_ADD(v->c.backend_errors, 1);
    return r;
}
