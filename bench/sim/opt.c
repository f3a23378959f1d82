/* Belady's MIN over the simulator's operations: a separate, simple model of
 * the store (contents with reference counts, cells with live references)
 * whose only difference from the daemon is the victim: the cached content
 * whose next read is furthest in the future. A content read again is
 * inserted like in the store (no bypass), so this is the best any policy
 * can do under the daemon's rules, not the best of any cache. One rule it
 * does not follow: a partly read block that misses is cached here at once,
 * where the daemon reads it exactly the first time (core/partial.h), so on
 * traces with partial reads MIN is a bound a little below the daemon's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "sim.h"

#define NEVER UINT64_MAX

struct heap_ent {
    uint64_t next; /* op index of the next read */
    uint32_t cid;
};

struct opt {
    const struct sim_ops *o;
    uint64_t *nxt;  /* by op: the next read of the op's content after it */
    uint64_t *when; /* by cid: its next read now */
    uint32_t *inc;  /* by cid: incarnation, bumped at each eviction */
    uint32_t *refs; /* by cid: live cells (0: not cached) */
    struct cellx {
        uint32_t cid, inc;
        bool zero;
    } * cells;
    struct heap_ent *heap; /* max-heap on next; stale entries skipped */
    uint64_t hn, hcap;
    uint64_t used, cap, evictions;
};

static int heap_push(struct opt *p, uint64_t next, uint32_t cid)
{
    if (p->hn == p->hcap) {
        uint64_t cap = p->hcap ? p->hcap * 2 : 4096;
        struct heap_ent *h = realloc(p->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        p->heap = h;
        p->hcap = cap;
    }
    uint64_t i = p->hn++;
    while (i > 0 && p->heap[(i - 1) / 2].next < next) {
        p->heap[i] = p->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    p->heap[i] = (struct heap_ent){next, cid};
    return 0;
}

static struct heap_ent heap_pop(struct opt *p)
{
    struct heap_ent top = p->heap[0], last = p->heap[--p->hn];
    uint64_t i = 0;
    for (;;) {
        uint64_t c = 2 * i + 1;
        if (c >= p->hn)
            break;
        if (c + 1 < p->hn && p->heap[c + 1].next > p->heap[c].next)
            c++;
        if (p->heap[c].next <= last.next)
            break;
        p->heap[i] = p->heap[c];
        i = c;
    }
    if (p->hn)
        p->heap[i] = last;
    return top;
}

static bool live(const struct opt *p, const struct cellx *c)
{
    return c->cid != SIM_NONE && !c->zero && p->refs[c->cid] && p->inc[c->cid] == c->inc;
}

static void unref(struct opt *p, struct cellx *c)
{
    if (live(p, c) && --p->refs[c->cid] == 0)
        p->used--; /* nobody maps it: freed, like store_unref */
    c->cid = SIM_NONE;
    c->zero = false;
}

static void evict(struct opt *p)
{
    while (p->hn) {
        struct heap_ent e = heap_pop(p);
        if (p->refs[e.cid] && p->when[e.cid] == e.next) {
            p->refs[e.cid] = 0;
            p->inc[e.cid]++; /* every cell's reference goes stale */
            p->used--;
            p->evictions++;
            return;
        }
    }
}

/* Map cell c to content cid (held already: one more reference). */
static int admit(struct opt *p, struct cellx *c, uint32_t cid, uint64_t i)
{
    if (!p->refs[cid]) {
        if (p->used >= p->cap)
            evict(p);
        p->used++;
    }
    p->refs[cid]++;
    c->cid = cid;
    c->inc = p->inc[cid];
    c->zero = false;
    p->when[cid] = p->nxt[i];
    return heap_push(p, p->nxt[i], cid);
}

static int step(struct opt *p, uint64_t i, struct sim_result *res)
{
    const struct sim_op *op = &p->o->ops[i];
    struct cellx *c = &p->cells[op->addr];
    if (op->kind == SIM_DROP) {
        unref(p, c);
        return 0;
    }
    bool zero = p->o->zero[op->cid];
    if (op->kind == SIM_READ) {
        res->read_bytes += op->bytes;
        res->read_blocks++;
        if (c->cid == op->cid && (zero ? c->zero : p->refs[op->cid] != 0)) {
            if (zero)
                return 0;
            if (!live(p, c)) { /* the remembered key found it */
                p->refs[op->cid]++;
                c->inc = p->inc[op->cid];
            }
            p->when[op->cid] = p->nxt[i];
            return heap_push(p, p->nxt[i], op->cid);
        }
        res->miss_bytes += op->bytes;
        res->miss_blocks++;
    }
    unref(p, c);
    if (zero) {
        c->cid = op->cid;
        c->zero = true;
        return 0;
    }
    return admit(p, c, op->cid, i);
}

int sim_run_opt(const struct sim_ops *o, uint64_t cache_blocks, struct sim_result *res)
{
    memset(res, 0, sizeof *res);
    _cleanup_free_ uint64_t *nxt = malloc(o->n * sizeof *nxt + 1);
    _cleanup_free_ uint64_t *when = malloc((size_t)o->ncids * sizeof *when + 1);
    _cleanup_free_ uint32_t *inc = calloc((size_t)o->ncids + 1, sizeof *inc);
    _cleanup_free_ uint32_t *refs = calloc((size_t)o->ncids + 1, sizeof *refs);
    _cleanup_free_ struct cellx *cells = malloc((size_t)o->naddrs * sizeof *cells + 1);
    if (!nxt || !when || !inc || !refs || !cells)
        return -ENOMEM;
    /* Next reads, from the end: when[] is the scan's "next read so far". */
    for (uint32_t c = 0; c < o->ncids; c++)
        when[c] = NEVER;
    for (uint64_t i = o->n; i-- > 0;) {
        const struct sim_op *op = &o->ops[i];
        if (op->kind == SIM_DROP)
            continue;
        nxt[i] = when[op->cid];
        if (op->kind == SIM_READ)
            when[op->cid] = i;
    }
    for (uint32_t a = 0; a < o->naddrs; a++)
        cells[a] = (struct cellx){SIM_NONE, 0, false};
    struct opt p = {.o = o,
                    .nxt = nxt,
                    .when = when,
                    .inc = inc,
                    .refs = refs,
                    .cells = cells,
                    .cap = cache_blocks ? cache_blocks : 1};
    int r = 0;
    for (uint64_t i = 0; i < o->n && r == 0; i++)
        r = step(&p, i, res);
    free(p.heap);
    res->evictions = p.evictions;
    return r;
}
